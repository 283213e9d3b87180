"""robot_emulator: an emulated VelociRoACH, a motor board on a pseudo-terminal plus a motion-capture system
(``mbmf_ros.hardware.emulator``; `mbmf-ros emulate-robot` runs this node).

Prints `robot_emulator: serial port <pty> ...` on stdout once the pty is open: give that path (or `link_path`,
a symlink kept pointing at the current pty, like udev's /dev/serial/by-id names) to hardware_bridge as its port.
Publishes /mocap/pose (geometry_msgs/PoseStamped, frame odom, stamped at capture, delivered mocap_latency_ms
later; noise and dropouts as configured) and /diagnostics (the emulator's counters, injected faults included).
Services: /emulator/reset (mbmf_ros/srv/ResetSim: the operator puts the robot back), /emulator/unplug
(std_srvs/Trigger: the serial link disappears for `unplug_s` seconds, then a new pty appears).
Parameters (defaults: the robot_emulator and /** sections of config/defaults.yaml): link_path, unplug_s,
diagnostics_period_s, the emulator's settings (agent, seed, baud, latency and fault rates, sensor noise, mocap:
``mbmf_ros.hardware.emulator.KEYS``), and config: a YAML file of some of those settings, applied on top (a fault
file, `--emulator-config FILE`; '' = none).
"""
from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_srvs.srv import Trigger

from mbmf_ros import topics as T
from mbmf_ros.msg import ActionCommand  # noqa: F401 - the interfaces must be importable (a clear error if not)
from mbmf_ros.nodes.common import SENSOR, declare_settings, run_node, sec_to_stamp
from mbmf_ros.srv import ResetSim


def flatten(prefix: str, value, out: list) -> list:
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f'{prefix}.{k}' if prefix else k, v, out)
    else:
        out.append(KeyValue(key=prefix, value=str(value)))
    return out


class RobotEmulatorNode(Node):
    def __init__(self):
        super().__init__('robot_emulator')
        from mbmf_ros.hardware.emulator import RobotEmulator, load_emulator_config
        v = declare_settings(self, 'robot_emulator')
        link_path, self.unplug_s = v['link_path'], v['unplug_s']
        for name in ('unplug_s', 'diagnostics_period_s'):
            if not v[name] > 0:
                raise SystemExit(f'robot_emulator: parameter {name}: must be > 0, found {v[name]}')
        try:
            self.config = load_emulator_config(v['config'] or None, base=v)
            self.emulator = RobotEmulator(self.config, link_path=link_path or None, on_mocap=self.on_mocap,
                                          log=self._log)
        except ValueError as e:
            raise SystemExit(f'robot_emulator: {e}')
        self.pub_mocap = self.create_publisher(PoseStamped, T.MOCAP_POSE, SENSOR)
        self.pub_diag = self.create_publisher(DiagnosticArray, T.DIAGNOSTICS, 10)
        self.create_service(ResetSim, T.EMULATOR_RESET, self.on_reset)
        self.create_service(Trigger, T.EMULATOR_UNPLUG, self.on_unplug)
        self.create_timer(v['diagnostics_period_s'], self.publish_diagnostics)
        path = self.emulator.start()
        faults = {k: self.config[k] for k in ('byte_corruption_rate', 'byte_drop_rate', 'latency_ms',
                                              'mocap_noise_m', 'mocap_dropout_rate', 'mocap_latency_ms')}
        print(f'robot_emulator: serial port {path}' + (f' (link {link_path})' if link_path else '')
              + f', {self.config["baud"]} baud; faults {faults}', flush=True)

    def _log(self, level, text):
        if level == 'warn':      # rclpy wants one severity per call site
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def on_mocap(self, stamp, position, quaternion):
        msg = PoseStamped()
        msg.header.stamp, msg.header.frame_id = sec_to_stamp(stamp), T.WORLD_FRAME
        p, q = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = (float(v) for v in position)
        q.w, q.x, q.y, q.z = (float(v) for v in quaternion)
        self.pub_mocap.publish(msg)

    def on_reset(self, request, response):
        episode = self.emulator.reset(seed=None if request.seed < 0 else int(request.seed))
        response.success, response.episode = True, episode
        response.message = f'robot put back (episode {episode})'
        return response

    def on_unplug(self, request, response):
        self.emulator.disconnect(self.unplug_s)
        response.success, response.message = True, f'serial link unplugged for {self.unplug_s:g} s'
        return response

    def publish_diagnostics(self):
        status = DiagnosticStatus(name='robot_emulator', hardware_id=str(self.emulator.path),
                                  level=DiagnosticStatus.OK, message='emulated robot running')
        status.values = flatten('', self.emulator.stats(), [])
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.pub_diag.publish(msg)

    def close(self):
        stats = self.emulator.stats()
        self.emulator.stop()
        self.get_logger().info(f'emulator stats: {stats}')


def main(args=None):
    return run_node(lambda: RobotEmulatorNode(), args)


if __name__ == '__main__':
    sys.exit(main())
