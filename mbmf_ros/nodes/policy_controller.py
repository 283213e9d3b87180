"""policy_controller: runs a policy distilled from the MPC (core/policy.py) in place of mpc_planner.

A drop-in for mpc_planner for a robot whose onboard computer cannot run K x H dynamics predictions per step:
the same topics in and out, the same lock-step pairing (one ActionCommand per non-terminal AgentState, stamp
and step copied) and the same safety: a zero action, with the reason in MpcStatus, when there is no policy, no
reference (path-following policies), the state is stale (older than stale_after_periods control periods by the
node clock), it is flagged invalid (a stale or missing sensor such as the motion-capture pose; parameter
stop_on_invalid, true on a robot), its layout is not the agent's, it has non-finite values, or the path is done.

Subscribes
  /mbmf/state (mbmf_ros/AgentState), /mbmf/reference (nav_msgs/Path, latched; empty = no reference).
Publishes
  /mbmf/action (mbmf_ros/ActionCommand, source 'policy' or 'zero'), /mbmf/mpc_status (mbmf_ros/MpcStatus, one
  per answered state: planner 'policy', samples 0, horizon 0, solve_time_s = the time to compute the action).
Parameters (defaults: the policy_controller and /** sections of config/defaults.yaml)
  agent, policy_path ('' : no policy, zero actions), lookahead_m (m of path ahead searched for the closest
  segment), stale_after_periods, num_threads, world_frames, wait_for_reference (true: in lock-step, hold a state
  that comes before any reference until one arrives, as mpc_planner does), stop_on_invalid.
A policy checkpoint for another agent or state layout is refused at start with both names.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from nav_msgs.msg import Path
from rclpy.node import Node

from mbmf_ros import topics as T
from mbmf_ros.core.waypoints import PathError, ProgressTracker, WaypointPath
from mbmf_ros.msg import ActionCommand, AgentState, MpcStatus
from mbmf_ros.nodes.common import (CONTROL, HISTORY, LATCHED, agent_of, check_state, declare_settings, overridable,
                                   run_node)
from mbmf_ros.nodes.waypoint_manager import msg_to_points


class PolicyController(Node):
    def __init__(self):
        super().__init__('policy_controller')
        import torch

        from mbmf_ros.io.checkpoint import load_policy

        # Every parameter and its default: config/defaults.yaml (policy_controller, /**) and config/<agent>.yaml.
        v = declare_settings(self, 'policy_controller')
        agent, policy_path = v['agent'], v['policy_path']
        self.lookahead_m = v['lookahead_m']
        self.stale_after_periods = v['stale_after_periods']
        num_threads = v['num_threads']
        self.world_frames = tuple(v['world_frames'])
        self.wait_for_reference = v['wait_for_reference']
        self.stop_on_invalid = v['stop_on_invalid']
        self.spec = agent_of('policy_controller', v)
        if not self.stale_after_periods > 0:
            raise SystemExit(f'policy_controller: stale_after_periods must be > 0, found {self.stale_after_periods}')
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        self.policy = None
        if policy_path:
            try:
                self.policy, _ = load_policy(policy_path, agent=self.spec.name, state_names=self.spec.state_names,
                                             action_names=self.spec.action_names)
            except FileNotFoundError as e:
                raise SystemExit(f'policy_controller: parameter policy_path: {e}; make one with `mbmf-ros '
                                 f'distill-follower --agent {agent} --out {policy_path}`')
            except (OSError, ValueError) as e:
                raise SystemExit(f'policy_controller: parameter policy_path: {e}')
            self.policy.act(np.zeros(self.policy.observation.dim, np.float32))     # warm-up
        self.follows_path = self.policy is not None and self.policy.observation.kind == 'path'
        self.path = None
        self.tracker = None
        self.reference_reason = 'no reference'
        self.held_state = None
        self.stale_after_s = self.stale_after_periods * self.spec.dt
        self.episode = None
        self.answered = 0
        self.pub_action = self.create_publisher(ActionCommand, T.ACTION, HISTORY)
        self.pub_status = self.create_publisher(MpcStatus, T.MPC_STATUS, CONTROL)
        self.create_subscription(AgentState, T.STATE, self.on_state, **overridable(CONTROL))
        self.create_subscription(Path, T.REFERENCE, self.on_reference, LATCHED)
        what = f'policy {policy_path} ({self.policy.observation.kind} observation)' if self.policy else 'no policy'
        self.get_logger().info(f'{what} for {self.spec.name}; stale after {self.stale_after_s:.3f} s')

    def on_reference(self, msg: Path) -> None:
        if not msg.poses:
            self.path = self.tracker = None
            self.reference_reason = 'no reference (empty path)'
            return
        try:
            self.path = WaypointPath(msg_to_points(msg), msg.header.frame_id, self.world_frames, source=T.REFERENCE)
        except PathError as e:
            self.path = self.tracker = None
            self.reference_reason = f'reference rejected: {e}'
            self.get_logger().warning(self.reference_reason)
            return
        self.tracker = ProgressTracker(self.path, self.lookahead_m if self.lookahead_m > 0 else None)
        self.get_logger().info(f'new reference: {len(self.path)} waypoints, {self.path.length:.3f} m')
        held, self.held_state = self.held_state, None
        if held is not None:
            self.on_state(held)

    def on_state(self, msg: AgentState) -> None:
        if msg.terminal:
            return
        if self.wait_for_reference and self.follows_path and self.path is None:
            self.held_state = msg
            return
        if self.episode is not None and msg.episode != self.episode and self.tracker is not None:
            self.tracker.reset()
        self.episode = msg.episode
        status = MpcStatus()
        status.header.stamp, status.header.frame_id = msg.header.stamp, T.WORLD_FRAME
        status.planner = 'policy'
        reason, state = self._check(msg)
        if state is not None and self.follows_path and self.tracker is not None:
            tracking = self.tracker.update(state[:2])
            status.cross_track_error, status.segment = tracking.cross_track_m, tracking.segment
            if reason is None and tracking.done:
                reason = 'path done'
        if reason is None:
            try:
                t0 = time.perf_counter()
                obs = self.policy.observation(state, self.path, self.tracker.last.progress_m) \
                    if self.follows_path else self.policy.observation(state)
                action = self.policy.act(obs)
                status.solve_time_s = time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001 - a failing policy must still answer the state
                reason = f'policy failed: {type(e).__name__}: {e}'
                self.get_logger().error(reason)
        if reason is not None:
            self._send(msg, np.zeros(self.spec.action_dim), 'zero')
            status.active, status.reason = False, reason
        else:
            self._send(msg, action, 'policy')
            status.active, status.reason = True, 'ok'
        self.pub_status.publish(status)

    def _check(self, msg: AgentState):
        """(reason for a zero action or None, state (S,) float64 or None)."""
        reason, state = check_state(msg, self.spec, self.get_clock().now().nanoseconds * 1e-9, self.stale_after_s,
                                    self.stop_on_invalid)
        if reason is not None:
            return reason, state
        if self.policy is None:
            return 'no policy', state
        if self.follows_path and self.path is None:
            return self.reference_reason, state
        return None, state

    def _send(self, state_msg: AgentState, values, source: str) -> None:
        cmd = ActionCommand()
        cmd.header.stamp = state_msg.header.stamp
        cmd.header.frame_id = state_msg.header.frame_id
        cmd.values = [float(min(max(v, -1.0), 1.0)) for v in values]
        cmd.step = state_msg.step
        cmd.source = source
        self.pub_action.publish(cmd)
        self.answered += 1


def main(args=None):
    return run_node(lambda: PolicyController(), args)


if __name__ == '__main__':
    sys.exit(main())
