"""state_estimator: builds mbmf_ros/AgentState on /mbmf/state from the sensor topics, by the agent spec.

The same node serves the simulator and the real robot (the maths is ``core.estimation.StateEstimator``):
pose from /mocap/pose (or /odom, parameter `pose_source`), twist from /odom when the agent's
velocity_source is 'twist', else filtered pose differences; gyro from /imu; joint angles and speeds from
/joint_states (by joint name).

Triggers (parameter `trigger`):
  episode: one state per /mbmf/episode message (the mujoco_bridge's lock-step and real-time modes), built
    from the sensor messages with exactly that stamp; episode/step/terminal are copied from it. A sensor
    still missing `max_wait_s` after its episode message is flagged and its last value held.
  With `sensor_sync` latest (a real robot: hardware_bridge ticks the episode on the wall clock while the
    motion capture and the board's telemetry arrive at their own rates), the state is built at once from the
    latest message of each sensor; one older than `max_age_s` at the episode stamp (or never received) is
    flagged stale/missing and the state is invalid: the planner then stops the robot. With `average_rates`
    (default: the agent's simulator setting) the gyro and joint speeds are the means of the messages of the last
    control period, as the simulator's sensors report them.
  rate: one state per 1/`rate_hz` s from the latest sensor messages (a robot without episode messages);
    a sensor older than `max_age_s` is flagged stale. Episode stays 0 and step counts up.
Values are never NaN: missing sensors hold their last value and set valid=false with a flag naming them.
"""
from __future__ import annotations

import collections
import copy
import sys
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import Imu, JointState

from mbmf_ros import topics as T
from mbmf_ros.msg import AgentState
from mbmf_ros.nodes.common import (CONTROL, HISTORY, SENSOR, agent_of, declare_settings, overridable, run_node,
                                   stamp_ns, stamp_to_sec)


class StateEstimatorNode(Node):
    def __init__(self):
        super().__init__('state_estimator')
        from mbmf_ros.core.estimation import StateEstimator
        # Every parameter and its default: config/defaults.yaml and config/<agent>.yaml (state_estimator, /**;
        # velocity_source and velocity_filter_alpha are the agent's /** values).
        v = declare_settings(self, 'state_estimator')
        self.trigger, self.rate_hz, self.pose_source = v['trigger'], v['rate_hz'], v['pose_source']
        max_age, self.max_wait = v['max_age_s'], v['max_wait_s']
        self.sensor_sync = v['sensor_sync']
        # latest sync: gyro and joint speeds averaged over the last control period, as the simulator's sensors
        # are (agent sim average_rates): a 100 Hz board reports 10 ms rates, the model's state holds 50 ms ones
        average = v['average_rates']
        if self.sensor_sync not in ('stamp', 'latest'):
            raise SystemExit(f'state_estimator: parameter sensor_sync: expected stamp or latest, found '
                             f'{self.sensor_sync!r}')
        if self.trigger not in ('episode', 'rate'):
            raise SystemExit(f'state_estimator: parameter trigger: expected episode or rate, found {self.trigger!r}')
        if self.pose_source not in ('mocap', 'odom'):
            raise SystemExit(f'state_estimator: parameter pose_source: expected mocap or odom, '
                             f'found {self.pose_source!r}')
        self.spec = agent_of('state_estimator', v)
        try:
            self.est = StateEstimator(self.spec, max_age=max_age)
        except ValueError as e:
            raise SystemExit(f'state_estimator: {e}')
        self.average_rates = (bool(self.spec.sim.get('average_rates', False)) if average == ''
                              else str(average).lower() == 'true')
        self.recent = {'imu': collections.deque(maxlen=100), 'joints': collections.deque(maxlen=100)}
        self.need = {'pose': self.pose_source, 'imu': 'imu', 'joints': 'joints'}
        if self.est.velocity_source == 'twist':
            self.need['twist'] = 'odom'
        # stamp (ns) -> {'mocap'|'odom'|'imu'|'joints': msg}; bounded so a dead topic cannot grow memory
        self.buffer = collections.OrderedDict()
        self.latest = {}
        self.pending = collections.OrderedDict()   # stamp (ns) -> (episode msg, wall time received)
        self.sent = collections.OrderedDict()      # stamp (ns) -> AgentState published (for resends)
        self.step = 0
        self.pub = self.create_publisher(AgentState, T.STATE, **overridable(HISTORY))
        self.create_subscription(PoseStamped, T.MOCAP_POSE, lambda m: self.on_sensor('mocap', m), SENSOR)
        self.create_subscription(Odometry, T.ODOM, lambda m: self.on_sensor('odom', m), SENSOR)
        self.create_subscription(Imu, T.IMU, lambda m: self.on_sensor('imu', m), SENSOR)
        self.create_subscription(JointState, T.JOINT_STATES, lambda m: self.on_sensor('joints', m), SENSOR)
        if self.trigger == 'episode':
            self.create_subscription(AgentState, T.EPISODE, self.on_episode, CONTROL)
            self.create_timer(0.05, self.flush_late)
        else:
            self.create_timer(1.0 / self.rate_hz, self.on_rate)
        self.get_logger().info(f'{self.spec.name}: trigger {self.trigger}, pose from {self.pose_source}, '
                               f'velocity from {self.est.velocity_source}')

    # --- inputs -----------------------------------------------------------------------------------------
    def on_sensor(self, kind, msg):
        key = stamp_ns(msg.header.stamp)
        self.latest[kind] = msg
        if kind in self.recent:
            self.recent[kind].append(msg)
        self.buffer.setdefault(key, {})[kind] = msg
        while len(self.buffer) > 200:
            self.buffer.popitem(last=False)
        if key in self.pending:
            self.try_emit(key)

    def on_episode(self, msg: AgentState):
        key = stamp_ns(msg.header.stamp)
        if key in self.sent:   # the bridge sent this step again (its lock-step resend): so do we
            self.pub.publish(self.sent[key])
            return
        if self.sensor_sync == 'latest':
            self.emit_latest(msg)
            return
        self.pending[key] = (msg, time.monotonic())
        self.try_emit(key)

    def emit_latest(self, ep: AgentState):
        """The state at the episode message's stamp from the latest message of each sensor (ages flagged)."""
        stamp = stamp_to_sec(ep.header.stamp)
        ages = {s: max(0.0, stamp - stamp_to_sec(m.header.stamp)) for s, m in self.latest.items()}
        if ep.step == 0:
            self.est.reset()
        got = dict(self.latest)
        if self.average_rates:
            got.update(self.rate_averages(stamp))
        state = self.build(stamp, got, ages)
        state.header = ep.header
        state.episode, state.step, state.terminal = ep.episode, ep.step, ep.terminal
        state.flags = list(state.flags) + [f for f in ep.flags if f not in ('reset', 'start', 'auto_reset')]
        self.pub.publish(state)
        self.sent[stamp_ns(ep.header.stamp)] = state
        while len(self.sent) > 50:
            self.sent.popitem(last=False)

    def have_all(self, got: dict) -> bool:
        return all(src in got for src in self.need.values())

    def try_emit(self, key, force=False):
        got = self.buffer.get(key, {})
        if not (force or self.have_all(got)):
            return
        # Emit in stamp order: an older pending step goes first (it is complete or late by now).
        for older in [k for k in self.pending if k < key]:
            self.try_emit(older, force=True)
        ep, _ = self.pending.pop(key)
        ages = {}
        if not self.have_all(got):
            missing = [s for s in self.need.values() if s not in got]
            got = dict(got)
            for s in missing:
                if s in self.latest:
                    got[s] = self.latest[s]
        if ep.step == 0:
            self.est.reset()
        state = self.build(stamp_to_sec(ep.header.stamp), got, ages)
        state.header = ep.header
        state.episode, state.step, state.terminal = ep.episode, ep.step, ep.terminal
        state.flags = list(state.flags) + [f for f in ep.flags if f not in ('reset', 'start', 'auto_reset')]
        self.pub.publish(state)
        self.sent[key] = state
        while len(self.sent) > 50:
            self.sent.popitem(last=False)
        self.buffer.pop(key, None)

    def rate_averages(self, stamp: float) -> dict:
        """Imu and JointState messages whose rates are the mean over (stamp - dt, stamp] of those received
        (the latest ones when none fell in that window)."""
        out = {}
        for kind, attr in (('imu', 'angular_velocity'), ('joints', 'velocity')):
            window = [m for m in self.recent[kind] if stamp - self.spec.dt < stamp_to_sec(m.header.stamp) <= stamp]
            if len(window) < 2:
                continue
            msg = copy.deepcopy(window[-1])
            if kind == 'imu':
                w = np.mean([[m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z] for m in window], 0)
                msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in w)
            else:
                n = len(msg.velocity)
                v = np.mean([list(m.velocity)[:n] for m in window if len(m.velocity) >= n], 0)
                msg.velocity = [float(x) for x in v]
            out[kind] = msg
        return out

    def flush_late(self):
        now = time.monotonic()
        for key, (_, t) in list(self.pending.items()):
            if key in self.pending and now - t > self.max_wait:
                self.try_emit(key, force=True)

    def on_rate(self):
        now = self.get_clock().now().nanoseconds * 1e-9
        ages = {}
        for s, msg in self.latest.items():
            ages[s] = max(0.0, now - stamp_to_sec(msg.header.stamp))
        state = self.build(now, dict(self.latest), ages)
        state.header.stamp = self.get_clock().now().to_msg()
        state.header.frame_id = T.WORLD_FRAME
        state.step = self.step
        self.step += 1
        self.pub.publish(state)

    # --- the estimate -------------------------------------------------------------------------------------
    def build(self, stamp: float, got: dict, ages: dict) -> AgentState:
        from mbmf_ros.core.estimation import SensorReading
        r = SensorReading(stamp=stamp, joints={})
        r.ages = {}
        pose_msg = got.get(self.pose_source)
        if pose_msg is not None:
            pose = pose_msg.pose.pose if self.pose_source == 'odom' else pose_msg.pose
            r.position = np.array([pose.position.x, pose.position.y, pose.position.z])
            o = pose.orientation
            r.orientation = np.array([o.w, o.x, o.y, o.z])
            r.ages['position'] = r.ages['orientation'] = ages.get(self.pose_source, 0.0)
            r.pose_stamp = stamp_to_sec(pose_msg.header.stamp)
        odom = got.get('odom')
        if odom is not None:
            v = odom.twist.twist.linear
            r.linear_velocity = np.array([v.x, v.y, v.z])
            r.ages['linear_velocity'] = ages.get('odom', 0.0)
        imu = got.get('imu')
        if imu is not None:
            w = imu.angular_velocity
            r.angular_velocity = np.array([w.x, w.y, w.z])
            r.ages['angular_velocity'] = ages.get('imu', 0.0)
        js = got.get('joints')
        if js is not None:
            for i, name in enumerate(js.name):
                pos = js.position[i] if i < len(js.position) else float('nan')
                vel = js.velocity[i] if i < len(js.velocity) else 0.0
                r.joints[name] = (pos, vel)
                r.ages[f'joint {name}'] = ages.get('joints', 0.0)
        e = self.est.update(r)
        msg = AgentState()
        msg.agent = self.spec.name
        msg.names = list(self.spec.state_names)
        msg.values = [float(v) for v in e.values]
        msg.valid = e.valid
        msg.flags = list(e.flags)
        return msg


def main(args=None):
    return run_node(lambda: StateEstimatorNode(), args)


if __name__ == '__main__':
    sys.exit(main())
