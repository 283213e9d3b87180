"""mujoco_bridge: a simulated robot behind the same topics as the hardware bridge.

Publishes per control step, all with the same stamp (sim time, monotonic across episodes):
  /clock (rosgraph_msgs/Clock), then /odom (nav_msgs/Odometry: root pose in `odom`, twist in `base_link`),
  /imu (sensor_msgs/Imu: orientation, gyro, accelerometer), /joint_states (sensor_msgs/JointState: the
  agent's state joints, angle and speed), /mocap/pose (geometry_msgs/PoseStamped), and last
  /mbmf/episode (mbmf_ros/AgentState carrying only agent, episode, step, terminal and flags
  ['terminated'|'truncated'|'reset'], no values): how the state estimator and, through it, the recorder and
  training know episode boundaries.
Subscribes /mbmf/action (mbmf_ros/ActionCommand). Service /mbmf/reset (mbmf_ros/srv/ResetSim).

Modes (parameter `mode`):
  lockstep: one control step only when the action answering the last state (same header.stamp) arrives:
    deterministic, independent of CPU speed. Starts once the graph is connected (sensor topics subscribed,
    an action publisher, `min_state_subscribers` subscribers of /mbmf/state), or with `wait_for_reset` only when
    /mbmf/reset is called. After a terminal state the
    next episode starts at once (`auto_reset`), from the bridge's seeded random stream.
  realtime: steps on a wall-clock timer at 1/dt (zero-order hold of the latest action, never past
    `action_timeout_s` after it arrived: then zeros, the watchdog stops the robot and says so in the log, and
    every state carries the flag 'watchdog_stop' until an action arrives again; in a graph split across a
    link, the waypoint_manager and the planner drop their path when they see it, so a robot whose workstation
    or link came back waits for a new path).
Bad actions (wrong length, NaN/inf) are rejected, counted (`rejected_actions` in the log) and replaced by
zeros (the robot stops).
"""
from __future__ import annotations

import sys
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState

from mbmf_ros import topics as T
from mbmf_ros.msg import ActionCommand, AgentState
from mbmf_ros.nodes.common import (CONTROL, SENSOR, WATCHDOG_FLAG, agent_of, declare_settings, overridable,
                                   run_node, sec_to_stamp,
                                   stamp_ns)
from mbmf_ros.srv import ResetSim

SENSOR_TOPICS = (T.ODOM, T.IMU, T.JOINT_STATES, T.MOCAP_POSE)


class MujocoBridge(Node):
    def __init__(self):
        super().__init__('mujoco_bridge')
        from mbmf_ros.sim.simulation import Simulation
        # Every parameter and its default: config/defaults.yaml and config/<agent>.yaml (mujoco_bridge, /**).
        v = declare_settings(self, 'mujoco_bridge')
        self.mode, seed, max_steps = v['mode'], v['seed'], v['max_episode_steps']
        self.max_episodes, self.min_state_subscribers = v['max_episodes'], v['min_state_subscribers']
        self.action_timeout, self.auto_reset = v['action_timeout_s'], v['auto_reset']
        self.resend_s, self.settle_s = v['lockstep_resend_s'], v['start_settle_s']
        # the agent's heading_noise (/**: trajectory-following data) unless a graph sets it; '' = the model's floor
        heading_noise, terrain = v['heading_noise'], v['terrain']
        # A client that must see every state of an episode (mbmf-ros follow) starts it with /mbmf/reset itself,
        # rather than trust a subscriber count that a departed participant can still inflate.
        self.wait_for_reset = v['wait_for_reset']
        if self.mode not in ('lockstep', 'realtime'):
            raise SystemExit(f'mujoco_bridge: parameter mode: expected lockstep or realtime, found {self.mode!r}')
        if max_steps < -1 or self.max_episodes < 0:
            raise SystemExit(f'mujoco_bridge: max_episode_steps must be >= -1 and max_episodes >= 0, '
                             f'found {max_steps} and {self.max_episodes}')
        self.spec = agent_of('mujoco_bridge', v)
        # max_episode_steps <= 0: no limit (an interactive robot waiting for paths)
        self.sim = Simulation(self.spec, max_episode_steps=max(max_steps, 0), seed=seed, heading_noise=heading_noise,
                              terrain=terrain or None)
        self.joint_names = [j.mujoco_joint for j in self.spec.joints]

        self.pub_clock = self.create_publisher(Clock, T.CLOCK, 10)
        self.pub_odom = self.create_publisher(Odometry, T.ODOM, SENSOR)
        self.pub_imu = self.create_publisher(Imu, T.IMU, SENSOR)
        self.pub_joints = self.create_publisher(JointState, T.JOINT_STATES, SENSOR)
        self.pub_mocap = self.create_publisher(PoseStamped, T.MOCAP_POSE, SENSOR)
        self.pub_episode = self.create_publisher(AgentState, T.EPISODE, CONTROL)
        self.create_subscription(ActionCommand, T.ACTION, self.on_action, **overridable(CONTROL))
        self.create_service(ResetSim, T.RESET, self.on_reset)

        self.rejected = 0
        self.ignored = 0
        self.steps_total = 0
        self.episodes_done = 0
        self.started = False
        self.stopped = False
        self.connected_since = None
        self.last = None              # the last StepResult published
        self.last_sent_wall = 0.0
        self.latest_action = None     # realtime: (values, wall time)
        self.watchdog_stops = 0       # realtime: times the watchdog replaced a stale action by zeros
        self.watchdog_tripped = False
        self.exit_code = None
        if self.mode == 'lockstep':
            self.create_timer(0.05, self.lockstep_watch)
        else:
            self.create_timer(self.spec.dt, self.realtime_tick)
        self.get_logger().info(f'{self.spec.name} in {self.mode} mode, dt {self.spec.dt} s, '
                               f'{self.sim.max_episode_steps or "no limit of"} steps per episode, seed {seed}')

    # --- publishing ---------------------------------------------------------------------------------------
    def publish(self, result, flags=()):
        r = result.reading
        stamp = sec_to_stamp(r.stamp)
        self.pub_clock.publish(Clock(clock=stamp))
        q = r.orientation
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id, odom.child_frame_id = stamp, T.WORLD_FRAME, T.BASE_FRAME
        p = odom.pose.pose
        p.position.x, p.position.y, p.position.z = (float(v) for v in r.position)
        p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = (float(v) for v in q)
        tw = odom.twist.twist
        tw.linear.x, tw.linear.y, tw.linear.z = (float(v) for v in r.linear_velocity)
        tw.angular.x, tw.angular.y, tw.angular.z = (float(v) for v in r.angular_velocity)
        self.pub_odom.publish(odom)
        imu = Imu()
        imu.header.stamp, imu.header.frame_id = stamp, T.BASE_FRAME
        imu.orientation = p.orientation
        imu.angular_velocity = tw.angular
        a = self.sim.accelerometer()
        imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = (float(v) for v in a)
        self.pub_imu.publish(imu)
        js = JointState()
        js.header.stamp = stamp
        js.name = list(self.joint_names)
        js.position = [float(r.joints[n][0]) for n in self.joint_names]
        js.velocity = [float(r.joints[n][1]) for n in self.joint_names]
        self.pub_joints.publish(js)
        mocap = PoseStamped()
        mocap.header.stamp, mocap.header.frame_id = stamp, T.WORLD_FRAME
        mocap.pose = p
        self.pub_mocap.publish(mocap)
        ep = AgentState()
        ep.header.stamp, ep.header.frame_id = stamp, T.WORLD_FRAME
        ep.agent, ep.episode, ep.step = self.spec.name, self.sim.episode, self.sim.step_count
        ep.terminal, ep.valid = result.terminal, True
        ep.flags = list(flags) + (['terminated'] if result.terminated else []) + \
            (['truncated'] if result.truncated and not result.terminated else [])
        self.pub_episode.publish(ep)
        self.last = result
        self.last_sent_wall = time.monotonic()

    def new_episode(self, seed=None, why='reset'):
        if self.max_episodes and self.episodes_done >= self.max_episodes:
            self.stopped = True
            self.get_logger().info(f'{self.episodes_done} episodes done: stepping stops')
            return
        self.publish(self.sim.reset(seed=seed), flags=[why])

    def advance(self, values, flags=()):
        result = self.sim.step(values)
        self.steps_total += 1
        self.publish(result, flags=flags)
        if result.terminal:
            self.episodes_done += 1
            if self.auto_reset:
                self.new_episode(why='auto_reset')

    # --- lock-step ----------------------------------------------------------------------------------------
    def graph_connected(self) -> bool:
        return (all(self.count_subscribers(t) >= 1 for t in (T.MOCAP_POSE, T.IMU, T.JOINT_STATES, T.EPISODE))
                and self.count_publishers(T.ACTION) >= 1
                and self.count_subscribers(T.STATE) >= self.min_state_subscribers)

    def lockstep_watch(self):
        if self.stopped:
            return
        if not self.started:
            if self.wait_for_reset or not self.graph_connected():
                self.connected_since = None
                return
            # Discovery precedes endpoint matching by a little: wait a short settle time once connected.
            self.connected_since = self.connected_since or time.monotonic()
            if time.monotonic() - self.connected_since < self.settle_s:
                return
            self.started = True
            self.get_logger().info('graph connected: lock-step starts')
            self.new_episode(why='start')
            return
        if (self.last is not None and not self.last.terminal and self.resend_s > 0
                and time.monotonic() - self.last_sent_wall > self.resend_s):
            self.get_logger().warning(f'no action for step {self.sim.step_count} of episode {self.sim.episode} '
                                      f'in {self.resend_s} s: sending the state again')
            self.publish(self.last)

    def check(self, msg):
        """The action values (action_dim,), or zeros when the action is malformed (counted and logged)."""
        from mbmf_ros.sim.simulation import check_action
        a = check_action(np.asarray(msg.values, dtype=np.float64), self.spec.action_dim)
        if a is None:
            self.rejected += 1
            self.get_logger().warning(
                f'rejected action #{self.rejected} from {msg.source or "?"}: expected {self.spec.action_dim} '
                f'finite values, found {list(msg.values)}; using zeros (robot stops)',
                throttle_duration_sec=1.0)
            return np.zeros(self.spec.action_dim)
        return a

    def on_action(self, msg: ActionCommand):
        if self.mode == 'realtime':
            self.latest_action = (self.check(msg), time.monotonic())
            if self.watchdog_tripped:
                self.watchdog_tripped = False
                self.get_logger().info('watchdog: actions are back, resuming')
            return
        if self.stopped or self.last is None or self.last.terminal:
            return
        if stamp_ns(msg.header.stamp) != stamp_ns(sec_to_stamp(self.last.reading.stamp)):
            self.ignored += 1   # an answer to an older state (e.g. a duplicate after a resend)
            return
        self.advance(self.check(msg))

    # --- real time ----------------------------------------------------------------------------------------
    def realtime_tick(self):
        if self.stopped:
            return
        if self.last is None:
            self.new_episode(why='start')
            return
        action = np.zeros(self.spec.action_dim)
        if self.latest_action is not None:
            age = time.monotonic() - self.latest_action[1]
            # An action is never held past action_timeout_s, even when this tick or the next comes up to a
            # period late (a busy computer): the robot stops at most action_timeout_s after the last action.
            if age + 2 * self.spec.dt <= self.action_timeout:
                action = self.latest_action[0]
            elif not self.watchdog_tripped:
                self.watchdog_tripped = True
                self.watchdog_stops += 1
                self.get_logger().warning(f'watchdog: last action {age:.2f} s old (action_timeout_s '
                                          f'{self.action_timeout:g}): zero command, the robot stops (planner '
                                          'gone or link down?)')
        self.advance(action, flags=[WATCHDOG_FLAG] if self.watchdog_tripped else [])

    # --- reset service --------------------------------------------------------------------------------------
    def on_reset(self, request, response):
        seed = None if request.seed < 0 else int(request.seed)
        self.started = True
        self.stopped = False
        self.new_episode(seed=seed, why='reset')
        response.success, response.episode = True, self.sim.episode
        response.message = f'episode {self.sim.episode} started' + (f' with seed {seed}' if seed is not None else '')
        return response

    def close(self):
        self.get_logger().info(f'{self.steps_total} steps, {self.episodes_done} episodes, '
                               f'{self.rejected} rejected actions, {self.ignored} stale actions ignored'
                               + (f', {self.watchdog_stops} watchdog stops' if self.mode == 'realtime' else ''))


def main(args=None):
    return run_node(lambda: MujocoBridge(), args)


if __name__ == '__main__':
    sys.exit(main())
