"""hardware_bridge: a real two-motor robot behind the same topics as mujoco_bridge, over the serial protocol of
docs/protocol.md (pyserial: a UART, USB serial, a radio, or the emulator's pseudo-terminal).

Subscribes /mbmf/action (mbmf_ros/ActionCommand): each action goes out at once as a motor command. An action
with the wrong length, a non-finite value or a value outside [-1, 1] never reaches the link: it is counted
(`commands_rejected`) and a zero command is sent instead (the robot stops).
Publishes, from the board's telemetry (stamped at the sample time: device clock mapped to the host's):
  /joint_states (sensor_msgs/JointState: both cranks' angle in rad and speed in rad/s, named as the agent's
  joints), /imu (sensor_msgs/Imu: gyro and accelerometer, body frame; no orientation, covariance[0] = -1),
  /battery (sensor_msgs/BatteryState), /diagnostics (diagnostic_msgs/DiagnosticArray: link up/down, frames ok,
  corrupt, missing, round-trip latency, reconnects, commands sent and rejected, watchdog stops, battery), and
  /mbmf/episode at the control rate 1/dt on the wall clock (mbmf_ros/AgentState with episode, step, terminal):
  the state estimator builds one state per tick from the latest motion-capture pose and telemetry.
Service /mbmf/reset (mbmf_ros/srv/ResetSim): start a new episode now (step 0). With `reset_service` set (the
emulator's /emulator/reset, or an operator's service), episodes after the first end with a call to it.

Safety, at two levels: this node's watchdog sends zero commands when no action came for `command_timeout_s`
(and keeps sending them at the control rate); the board's own watchdog (`device_command_timeout_ms`, set by the
config frame) stops the motors when commands stop arriving, e.g. when the link is lost. A lost link (port error
or `link_timeout_s` without a valid frame) is closed and reopened with exponential back-off; garbage on the
line is counted, never raised. Parameters: the hardware_bridge and /** sections of config/defaults.yaml.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import BatteryState, Imu, JointState

from mbmf_ros import topics as T
from mbmf_ros.hardware import protocol as P
from mbmf_ros.hardware.link import HostLink, LinkSettings, validate_action
from mbmf_ros.msg import ActionCommand, AgentState
from mbmf_ros.nodes.common import (CONTROL, SENSOR, WATCHDOG_FLAG, agent_of, declare_settings, overridable, run_node,
                                   sec_to_stamp)
from mbmf_ros.srv import ResetSim


class HardwareBridge(Node):
    def __init__(self):
        super().__init__('hardware_bridge')
        # Every parameter and its default: config/defaults.yaml (hardware_bridge, /**) and config/<agent>.yaml.
        v = declare_settings(self, 'hardware_bridge')
        port, baud = v['port'], v['baud']
        self.command_timeout = v['command_timeout_s']
        link_timeout = v['link_timeout_s']
        backoff, backoff_max = v['reconnect_backoff_s'], v['reconnect_backoff_max_s']
        heartbeat = v['heartbeat_period_s']
        device_timeout = v['device_command_timeout_ms']
        telemetry_hz = v['telemetry_rate_hz']
        gains = [int(round(v[k] * 256)) for k in ('kp', 'ki', 'kd')]     # Q8.8 counts, as the config frame carries them
        poll = v['poll_period_s']
        self.battery_low = v['battery_low_v']
        self.max_steps = v['max_episode_steps']
        self.max_episodes = v['max_episodes']
        self.wait_for_reset = v['wait_for_reset']
        self.min_state_subscribers = v['min_state_subscribers']
        reset_service = v['reset_service']
        diag_period = v['diagnostics_period_s']
        if not port:
            raise SystemExit('hardware_bridge: parameter port: empty; give the serial device, e.g. '
                             'port:=/dev/ttyUSB0 (or the path `mbmf-ros emulate-robot` prints)')
        positive = (('baud', baud), ('command_timeout_s', self.command_timeout), ('link_timeout_s', link_timeout),
                    ('reconnect_backoff_s', backoff), ('poll_period_s', poll), ('heartbeat_period_s', heartbeat),
                    ('diagnostics_period_s', diag_period))
        problems = [f'{n} must be > 0, found {x}' for n, x in positive if not x > 0]
        problems += [f'max_episode_steps and max_episodes must be >= 0, found {self.max_steps}, {self.max_episodes}']\
            if self.max_steps < 0 or self.max_episodes < 0 else []
        if problems:
            raise SystemExit('hardware_bridge: ' + '; '.join(problems))
        self.spec = agent_of('hardware_bridge', v)
        if self.spec.action_dim != 2 or len(self.spec.joints) != 2:
            raise SystemExit(f'hardware_bridge: agent {self.spec.name} has {self.spec.action_dim} actions and '
                             f'{len(self.spec.joints)} joints; the board protocol drives two motors (left, right)')
        config = P.Config(*gains, telemetry_rate_hz=telemetry_hz, command_timeout_ms=device_timeout)
        self.link = HostLink(LinkSettings(port=port, baud=baud, link_timeout_s=link_timeout,
                                          reconnect_backoff_s=backoff, reconnect_backoff_max_s=backoff_max,
                                          heartbeat_period_s=heartbeat, config=config), log=self._log)
        self.joint_names = [j.mujoco_joint for j in self.spec.joints]
        self.pub_joints = self.create_publisher(JointState, T.JOINT_STATES, SENSOR)
        self.pub_imu = self.create_publisher(Imu, T.IMU, SENSOR)
        self.pub_battery = self.create_publisher(BatteryState, T.BATTERY, SENSOR)
        self.pub_diag = self.create_publisher(DiagnosticArray, T.DIAGNOSTICS, 10)
        self.pub_episode = self.create_publisher(AgentState, T.EPISODE, CONTROL)
        self.create_subscription(ActionCommand, T.ACTION, self.on_action, **overridable(CONTROL))
        self.create_service(ResetSim, T.RESET, self.on_reset)
        self.reset_client = self.create_client(ResetSim, reset_service) if reset_service else None
        self.reset_future = None

        self.rejected = 0
        self.watchdog_stops = 0          # this node's watchdog
        self.watchdog_tripped = True     # no action yet: zero commands
        self.last_action_s = None
        self.last_command_s = 0.0
        self.last_values = (0.0, 0.0)
        self.episode = -1
        self.step = 0
        self.running = False             # an episode is ticking
        self.finished = False
        self.episodes_done = 0
        self.connected_since = None
        self.last_battery_pub = 0.0
        self.create_timer(poll, self.on_poll)
        self.create_timer(self.spec.dt, self.on_tick)
        self.create_timer(diag_period, self.publish_diagnostics)
        self.get_logger().info(f'{self.spec.name} on {port} at {baud} baud; command timeout {self.command_timeout} s '
                               f'(device {device_timeout} ms), telemetry {telemetry_hz} Hz, episodes of '
                               f'{self.max_steps or "unlimited"} steps' + (f', reset by {reset_service}'
                                                                          if reset_service else ''))

    def _log(self, level, text):
        # rclpy wants one severity per call site
        if level == 'warn':
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    # --- commands -----------------------------------------------------------------------------------------
    def on_action(self, msg: ActionCommand):
        values, reason = validate_action(msg.values, self.spec.action_dim)
        if values is None:
            self.rejected += 1
            self.get_logger().warning(f'rejected action #{self.rejected} from {msg.source or "?"}: {reason}; '
                                      'sending zero (robot stops)', throttle_duration_sec=1.0)
            values = (0.0, 0.0)
        self.last_action_s = time.monotonic()
        if self.watchdog_tripped and reason is None:
            self.watchdog_tripped = False
        self.send(values)

    def send(self, values):
        self.last_values = tuple(values)
        self.last_command_s = time.monotonic()
        self.link.send_command(*values)

    def on_poll(self):
        now = time.monotonic()
        for sample in self.link.poll():
            self.publish_telemetry(sample, now)
        # bridge watchdog: a stale action becomes zero; zeros keep going out at the control rate
        if self.last_action_s is not None and not self.watchdog_tripped \
                and now - self.last_action_s > self.command_timeout:
            self.watchdog_tripped = True
            self.watchdog_stops += 1
            self.get_logger().warning(f'watchdog: no action for {now - self.last_action_s:.2f} s '
                                      f'(command_timeout_s {self.command_timeout:g}): zero command, the robot stops')
            self.send((0.0, 0.0))
        elif self.watchdog_tripped and now - self.last_command_s >= self.spec.dt:
            self.send((0.0, 0.0))

    # --- telemetry ------------------------------------------------------------------------------------------
    def ros_stamp(self, monotonic_s: float, now_mono: float):
        ros_now = self.get_clock().now().nanoseconds * 1e-9
        return sec_to_stamp(ros_now - (now_mono - monotonic_s))

    def publish_telemetry(self, sample, now_mono):
        t = sample.telemetry
        stamp = self.ros_stamp(sample.host_time_s, now_mono)
        js = JointState()
        js.header.stamp = stamp
        js.name = list(self.joint_names)
        js.position = [float(a) for a in t.angles]
        js.velocity = [float(v) for v in t.speeds]
        js.effort = [t.left_back_emf * 1e-3, t.right_back_emf * 1e-3]   # back-EMF, V (the board's measure of load)
        self.pub_joints.publish(js)
        imu = Imu()
        imu.header.stamp, imu.header.frame_id = stamp, T.BASE_FRAME
        imu.orientation_covariance[0] = -1.0            # REP 145: no orientation estimate
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = (float(v) for v in t.gyro)
        a = t.accel
        imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = (float(v) for v in a)
        self.pub_imu.publish(imu)
        if now_mono - self.last_battery_pub >= 1.0:
            self.last_battery_pub = now_mono
            b = BatteryState()
            b.header.stamp = stamp
            b.voltage = t.battery_v
            b.present = True
            b.current = b.charge = b.capacity = b.design_capacity = b.percentage = b.temperature = math.nan
            b.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
            b.power_supply_health = (BatteryState.POWER_SUPPLY_HEALTH_DEAD if t.status & P.STATUS_LOW_BATTERY
                                     else BatteryState.POWER_SUPPLY_HEALTH_GOOD)
            b.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_LIPO
            self.pub_battery.publish(b)

    def counters(self) -> dict:
        """The link's counters and this node's: the follow report's `link` object."""
        out = self.link.summary()
        out.update(commands_rejected=self.rejected, bridge_watchdog_stops=self.watchdog_stops)
        latest = self.link.latest
        out['battery_v'] = latest.telemetry.battery_v if latest else None
        out['device_watchdog_stopped'] = bool(latest.telemetry.status & P.STATUS_WATCHDOG_STOPPED) if latest else None
        return out

    def publish_diagnostics(self):
        c = self.counters()
        status = DiagnosticStatus()
        status.name = 'hardware_bridge: serial link'
        status.hardware_id = self.link.s.port
        battery = c['battery_v']
        if c['state'] != 'up':
            status.level = DiagnosticStatus.ERROR
            status.message = f'link {c["state"]}: {c["last_error"] or "no frames yet"}'
        elif battery is not None and battery < self.battery_low:
            status.level, status.message = DiagnosticStatus.WARN, f'battery low: {battery:.2f} V'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'link up'
        status.values = [KeyValue(key=k, value='' if v is None else (f'{v:.3f}' if isinstance(v, float) else str(v)))
                         for k, v in c.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.pub_diag.publish(msg)

    # --- episodes -------------------------------------------------------------------------------------------
    def graph_connected(self) -> bool:
        return (self.count_subscribers(T.EPISODE) >= 1 and self.count_publishers(T.ACTION) >= 1
                and self.count_subscribers(T.STATE) >= self.min_state_subscribers)

    def start_episode(self, why: str):
        self.episode += 1
        self.step = 0
        self.running = True
        self.publish_episode([why])

    def publish_episode(self, flags=()):
        ep = AgentState()
        ep.header.stamp = self.get_clock().now().to_msg()
        ep.header.frame_id = T.WORLD_FRAME
        ep.agent, ep.episode, ep.step, ep.valid = self.spec.name, self.episode, self.step, True
        ep.terminal = 0 < self.max_steps <= self.step
        ep.flags = list(flags) + (['truncated'] if ep.terminal else [])
        self.pub_episode.publish(ep)
        if ep.terminal:
            self.running = False
            self.episodes_done += 1
            if self.max_episodes and self.episodes_done >= self.max_episodes:
                self.finished = True
                self.get_logger().info(f'{self.episodes_done} episodes done: episode ticks stop')
            else:
                self.request_reset()

    def request_reset(self):
        if self.reset_client is None:
            self.start_pending = 'auto_reset'
        else:
            self.reset_wanted = True      # called from the tick once the service is there

    start_pending = None
    reset_wanted = False

    def on_tick(self):
        if self.finished:
            return
        if self.running:
            self.step += 1
            # While this node's watchdog holds the robot (after an action had come), every state says so: a
            # workstation that comes back across the link drops its old path (README, "Robot and workstation").
            self.publish_episode([WATCHDOG_FLAG] if self.watchdog_tripped and self.last_action_s is not None else [])
            return
        if self.reset_wanted and self.reset_future is None:
            if not self.reset_client.service_is_ready():
                return
            self.reset_wanted = False
            self.reset_future = self.reset_client.call_async(ResetSim.Request(seed=-1))
        if self.reset_future is not None:
            if self.reset_future.done():
                self.reset_future = None
                self.start_episode('auto_reset')
            return
        if self.start_pending:
            why, self.start_pending = self.start_pending, None
            self.start_episode(why)
            return
        if self.episode < 0 and not self.wait_for_reset:
            # the first episode: once the graph listens and the robot talks, after a short settle time
            if not (self.graph_connected() and self.link.state == 'up'):
                self.connected_since = None
                return
            self.connected_since = self.connected_since or time.monotonic()
            if time.monotonic() - self.connected_since >= 0.5:
                self.get_logger().info('graph connected and link up: the first episode starts')
                self.request_reset() if self.reset_client is not None else self.start_episode('start')

    def on_reset(self, request, response):
        self.finished = False
        self.reset_future = None
        self.reset_wanted = False
        self.start_pending = None
        self.start_episode('reset')
        response.success, response.episode = True, self.episode
        response.message = f'episode {self.episode} started'
        return response

    def close(self):
        self.link.close()
        c = self.counters()
        self.get_logger().info('link counters: ' + ', '.join(f'{k} {v}' for k, v in c.items()))


def main(args=None):
    return run_node(lambda: HardwareBridge(), args)


if __name__ == '__main__':
    sys.exit(main())
