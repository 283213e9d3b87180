"""mpc_planner: model predictive control with the learned dynamics model (paper Sec. IV-C, Alg. 2).

Answers every non-terminal AgentState with exactly one ActionCommand (header.stamp and step copied: the
lock-step pairing), planned with random shooting, CEM or MPPI over the latest dynamics model.

Subscribes
  /mbmf/state (mbmf_ros/AgentState), /mbmf/reference (nav_msgs/Path, latched; empty = no reference),
  /mbmf/model (mbmf_ros/ModelInfo, latched): the checkpoint is loaded in a background thread and swapped in
  between two steps, so no step waits for it. A model for another agent or state/action layout is refused
  (logged) and the current one kept.
Publishes
  /mbmf/action (mbmf_ros/ActionCommand, source 'mpc' or 'zero'), /mbmf/mpc_status (mbmf_ros/MpcStatus, one
  per answered state), /mbmf/predicted_path (nav_msgs/Path, frame odom: the chosen plan's predicted poses).
A zero action is sent, with the reason in MpcStatus, when: there is no model, no reference (trajectory
following; with drop_path_on_robot_stop, the workstation part of a split graph, a state flagged
'watchdog_stop' by the bridge drops the reference: the robot waits for a new path instead of resuming an old
plan), the state is stale (older than stale_after_periods control periods by the node clock, the
/clock with use_sim_time), it is flagged invalid (a stale or missing sensor such as the motion-capture pose;
parameter stop_on_invalid, true on a robot), its layout is not the agent's, it has non-finite values, or the path is done.
Parameters (defaults and what each means: config/defaults.yaml, mpc_planner and /** sections; per agent:
config/<agent>.yaml)
  agent, task (trajectory_following | moving_forward), planner (mbmf_ros.core.planners.PLANNERS), num_samples K
  and horizon H (moving_forward.num_samples / .horizon for the moving-forward task), alpha, beta,
  heading_weight, reverse_weight, lookahead_m, goal_tolerance_m, clamp_progress, seed (-1: random), model_path
  ('': wait for /mbmf/model), stale_after_periods, num_threads, world_frames, wait_for_reference (in lock-step, a state that
  comes before the first reference is answered only once one arrives, so a run does not depend on which of the
  two reaches the planner first; after a cancel it answers with zeros), latest_state_only (on a robot: keep only
  the newest state when planning falls behind), and the agent's /** values (dt, ...). Precision, device and the
  iCEM settings come from config/planners.yaml. drop_path_on_robot_stop, delay_compensation and
  max_compensation_steps (plan from the state rolled forward, with the model and the last action sent, by its
  age plus the recent plan time in whole control periods: a robot whose planner is slower than the period).
  The /mbmf/state subscription takes ROS 2 QoS overrides (config/realtime_qos.yaml).
"""
from __future__ import annotations

import math
import sys
import threading
import time

import numpy as np
from nav_msgs.msg import Path
from rclpy.node import Node

from mbmf_ros import topics as T
from mbmf_ros.core.waypoints import PathError, WaypointPath
from mbmf_ros.msg import ActionCommand, AgentState, ModelInfo, MpcStatus
from mbmf_ros.nodes.common import (CONTROL, HISTORY, LATCHED, LATEST, WATCHDOG_FLAG, agent_of, check_state,
                                   declare_settings, overridable, run_node, stamp_to_sec)
from mbmf_ros.nodes.waypoint_manager import msg_to_points, path_to_msg


class MpcPlanner(Node):
    def __init__(self):
        super().__init__('mpc_planner')
        import torch

        from mbmf_ros.core.planners import PLANNERS, make_planner
        from mbmf_ros.core.tasks import TASKS, TrajectoryFollowingTask, make_task

        # Every parameter and its default: config/defaults.yaml and config/<agent>.yaml (mpc_planner, /**).
        v = declare_settings(self, 'mpc_planner')
        self.settings = v
        self.task_name, self.planner_name = v['task'], v['planner']
        alpha, beta, heading = v['alpha'], v['beta'], v['heading_weight']
        lookahead, goal_tolerance = v['lookahead_m'], v['goal_tolerance_m']
        clamp_progress, seed, model_path = v['clamp_progress'], v['seed'], v['model_path']
        self.stale_after_periods = v['stale_after_periods']
        self.stop_on_invalid, self.latest_state_only = v['stop_on_invalid'], v['latest_state_only']
        self.delay_compensation = v['delay_compensation']
        self.max_compensation_steps = v['max_compensation_steps']
        self.last_values = None
        self.solve_ema = 0.0
        # split graph: a state flagged 'watchdog_stop' drops the path (the workstation or the link was gone)
        self.drop_path_on_robot_stop = v['drop_path_on_robot_stop']
        # lock-step: hold the answer to a state until a reference arrives (the simulated robot waits with it)
        self.wait_for_reference = v['wait_for_reference']
        num_threads = v['num_threads']
        self.world_frames = tuple(v['world_frames'])
        self.spec = agent_of('mpc_planner', v)
        agent = self.spec.name
        if self.planner_name not in PLANNERS:
            raise SystemExit(f'mpc_planner: parameter planner: expected one of {list(PLANNERS)}, found '
                             f'{self.planner_name!r}')
        if self.task_name not in TASKS:
            raise SystemExit(f'mpc_planner: parameter task: expected one of {list(TASKS)}, found '
                             f'{self.task_name!r}')
        # K and H of the task: num_samples/horizon (trajectory following) or moving_forward.*
        prefix = '' if self.task_name == 'trajectory_following' else 'moving_forward.'
        self.num_samples, self.horizon = v[prefix + 'num_samples'], v[prefix + 'horizon']
        if self.num_samples < 1 or self.horizon < 1 or not self.stale_after_periods > 0:
            raise SystemExit(f'mpc_planner: expected {prefix}num_samples >= 1, {prefix}horizon >= 1, '
                             f'stale_after_periods > 0; found {self.num_samples}, {self.horizon}, '
                             f'{self.stale_after_periods}')
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            self.task = make_task(self.task_name, self.spec, alpha=alpha, beta=beta, heading_weight=heading,
                                  lookahead_m=lookahead if lookahead > 0 else None,
                                  goal_tolerance_m=goal_tolerance, clamp_progress=clamp_progress,
                                  reverse_weight=v['reverse_weight']) \
                if self.task_name == 'trajectory_following' else make_task(self.task_name, self.spec)
            self.planner = make_planner(self.planner_name, self.spec.action_dim, self.horizon, self.num_samples,
                                        None if seed < 0 else seed)
        except ValueError as e:
            raise SystemExit(f'mpc_planner: {e}')
        self.follows_path = isinstance(self.task, TrajectoryFollowingTask)
        self.has_reference = not self.follows_path
        self.held_state = None           # wait_for_reference: the state answered once a reference arrives
        self.had_reference = False       # after a first path, a cancel (empty path) is answered with zeros
        self.reference_reason = 'no reference'
        self.stale_after_s = self.stale_after_periods * self.spec.dt

        self.model = None
        self.model_version = 0
        self.model_path = ''
        self._lock = threading.Lock()
        self._pending = None             # (model, version, path) loaded by a background thread
        self._load_seq = 0               # the newest requested load wins
        self._loaders: list[threading.Thread] = []
        self.episode = None
        self.answered = 0
        self.robot_stopped = False       # the last state carried the bridge's watchdog flag

        self.pub_action = self.create_publisher(ActionCommand, T.ACTION, HISTORY)
        self.pub_status = self.create_publisher(MpcStatus, T.MPC_STATUS, CONTROL)
        self.pub_path = self.create_publisher(Path, T.PREDICTED_PATH, CONTROL)
        if model_path:
            try:
                self.model, _ = self._load(model_path)
            except FileNotFoundError as e:
                raise SystemExit(f'mpc_planner: parameter model_path: {e}; make one with `mbmf-ros make-model '
                                 f'--agent {agent} --out {model_path}` (collect random data, train), or train from '
                                 f'your bags with `mbmf-ros train`')
            except (OSError, ValueError) as e:
                raise SystemExit(f'mpc_planner: parameter model_path: {e}')
            self.model_path = model_path
            self.get_logger().info(f'model {model_path} loaded')
        # latest_state_only (a robot in real time): a plan slower than the control period answers the newest state
        # rather than a backlog of states that are all stale by then
        self.create_subscription(AgentState, T.STATE, self.on_state,
                                 **overridable(LATEST if self.latest_state_only else CONTROL))
        self.create_subscription(Path, T.REFERENCE, self.on_reference, LATCHED)
        self.create_subscription(ModelInfo, T.MODEL, self.on_model, LATCHED)
        self.get_logger().info(
            f'{self.planner_name} planner for {self.spec.name}, task {self.task_name}, K={self.num_samples}, '
            f'H={self.horizon}, dt={self.spec.dt} s; stale after {self.stale_after_s:.3f} s')

    # --- model ---------------------------------------------------------------------------------------------
    def _load(self, path: str):
        """Load and check a checkpoint for this agent; one warm-up prediction so the first plan is not slow."""
        import torch

        from mbmf_ros.io.checkpoint import load_checkpoint
        model, meta = load_checkpoint(path, agent=self.spec.name, state_names=self.spec.state_names,
                                      action_names=self.spec.action_names)
        model.predict(torch.zeros(self.num_samples, self.spec.state_dim),
                      torch.zeros(self.num_samples, self.spec.action_dim))
        return model, meta

    def on_model(self, msg: ModelInfo) -> None:
        problems = []
        if msg.agent and msg.agent != self.spec.name:
            problems.append(f'agent {msg.agent!r} (this planner runs {self.spec.name!r})')
        if msg.state_names and tuple(msg.state_names) != tuple(self.spec.state_names):
            problems.append(f'state names {list(msg.state_names)} (expected {list(self.spec.state_names)})')
        if msg.action_names and tuple(msg.action_names) != tuple(self.spec.action_names):
            problems.append(f'action names {list(msg.action_names)} (expected {list(self.spec.action_names)})')
        if problems:
            self.get_logger().error(f'refused model {msg.checkpoint_path} v{msg.version}: made for '
                                    + '; '.join(problems) + f'; keeping {self._current_model_text()}')
            return
        self._load_seq += 1
        seq = self._load_seq
        thread = threading.Thread(target=self._load_in_background, args=(msg.checkpoint_path, msg.version, seq),
                                  name=f'model-loader-{seq}', daemon=True)
        self._loaders = [t for t in self._loaders if t.is_alive()] + [thread]
        thread.start()

    def _current_model_text(self) -> str:
        return f'model v{self.model_version} ({self.model_path})' if self.model is not None else 'no model'

    def _load_in_background(self, path: str, version: int, seq: int) -> None:
        t0 = time.perf_counter()
        try:
            model, _ = self._load(path)
        except Exception as e:  # noqa: BLE001 - any failure keeps the old model; the reason is logged
            self.get_logger().error(f'refused model {path} v{version}: {e}; keeping {self._current_model_text()}')
            return
        with self._lock:
            if seq == self._load_seq:
                self._pending = (model, version, path)
        self.get_logger().info(f'model {path} v{version} loaded in {time.perf_counter() - t0:.2f} s')

    def _swap_model(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.model, self.model_version, self.model_path = pending
            self.planner.reset()        # the old plan was made for another model
            self.get_logger().info(f'now planning with model v{self.model_version} ({self.model_path})')

    # --- reference -----------------------------------------------------------------------------------------
    def on_reference(self, msg: Path) -> None:
        if not self.follows_path:
            return
        self.planner.reset()
        if not msg.poses:
            self.task.set_path(None)
            self.has_reference = False
            self.reference_reason = 'no reference (empty path)'
            self.get_logger().info('reference cleared: sending zero actions')
            return
        try:
            path = WaypointPath(msg_to_points(msg), msg.header.frame_id, self.world_frames, source=T.REFERENCE)
        except PathError as e:
            self.task.set_path(None)
            self.has_reference = False
            self.reference_reason = f'reference rejected: {e}'
            self.get_logger().warning(self.reference_reason)
            return
        self.task.set_path(path)
        self.has_reference = self.had_reference = True
        self.get_logger().info(f'new reference: {len(path)} waypoints, {path.length:.3f} m')
        held, self.held_state = self.held_state, None
        if held is not None:
            self.on_state(held)

    # --- control loop --------------------------------------------------------------------------------------
    def on_state(self, msg: AgentState) -> None:
        if msg.terminal:
            return          # the last state of an episode is answered by no action (lock-step contract)
        self._watch_robot_stop(msg)
        if self.wait_for_reference and self.follows_path and not self.has_reference and not self.had_reference:
            if self.held_state is None:
                self.get_logger().info(f'holding step {msg.step} of episode {msg.episode} until a reference '
                                       'arrives (wait_for_reference)')
            self.held_state = msg
            return
        self._swap_model()
        if self.episode is not None and msg.episode != self.episode:
            self.planner.reset()
            self.task.reset()
        self.episode = msg.episode
        status = MpcStatus()
        status.header.stamp, status.header.frame_id = msg.header.stamp, T.WORLD_FRAME
        status.planner, status.samples, status.horizon = self.planner_name, self.num_samples, self.horizon
        status.model_version = self.model_version
        reason, state = self._check(msg)
        tracking = None
        if state is not None and self.follows_path and self.has_reference:
            tracking = self.task.update(state)
            status.cross_track_error, status.segment = tracking.cross_track_m, tracking.segment
            if reason is None and tracking.done:
                reason = 'path done'
        if reason is not None:
            self._send(msg, np.zeros(self.spec.action_dim), 'zero')
            status.active, status.reason = False, reason
            self.pub_status.publish(status)
            return
        try:
            result = self.planner.plan(self.model, self.task, self._compensate(msg, state))
        except Exception as e:  # noqa: BLE001 - a failing plan must still answer the state
            self._send(msg, np.zeros(self.spec.action_dim), 'zero')
            status.active, status.reason = False, f'planning failed: {type(e).__name__}: {e}'
            self.get_logger().error(status.reason)
            self.pub_status.publish(status)
            return
        if 'reason' in result.info:     # every candidate predicted non-finite: the planner chose zeros
            self._send(msg, result.action, 'zero')
            status.active, status.reason = False, result.info['reason']
            status.solve_time_s = result.solve_time_s
            self.pub_status.publish(status)
            return
        self._send(msg, result.action, 'mpc')
        self.solve_ema = 0.8 * self.solve_ema + 0.2 * result.solve_time_s
        status.active, status.reason = True, 'ok'
        status.solve_time_s, status.best_predicted_reward = result.solve_time_s, result.best_reward
        pred = result.predicted_states
        status.predicted_x = [float(v) for v in pred[:, 0]]
        status.predicted_y = [float(v) for v in pred[:, 1]]
        self.pub_status.publish(status)
        path = path_to_msg(pred[:, :2], T.WORLD_FRAME, msg.header.stamp)
        for pose, yaw in zip(path.poses, pred[:, 2]):     # the predicted heading, not the segment direction
            pose.pose.orientation.z, pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        self.pub_path.publish(path)

    def _watch_robot_stop(self, msg: AgentState) -> None:
        """The robot's watchdog stopped it (no action reached it in time: this planner or the link was gone).
        The path in hand is an old plan by now: drop it, so the robot waits for a new one."""
        stopped = WATCHDOG_FLAG in msg.flags
        if (self.drop_path_on_robot_stop and stopped and not self.robot_stopped and self.follows_path
                and self.has_reference):
            self.task.set_path(None)
            self.planner.reset()
            self.has_reference = False
            self.reference_reason = "no reference (dropped: the robot's watchdog stopped it; send a new path)"
            self.get_logger().warning(f'step {msg.step}: the robot says its watchdog stopped it; dropping the '
                                      'path, zero actions until a new one arrives')
        self.robot_stopped = stopped

    def _check(self, msg: AgentState):
        """(reason for a zero action or None, state (S,) float32 or None)."""
        reason, state = check_state(msg, self.spec, self.get_clock().now().nanoseconds * 1e-9, self.stale_after_s,
                                    self.stop_on_invalid)
        if state is not None:
            state = state.astype(np.float32)
        if reason is not None:
            return reason, state
        if self.model is None:
            return 'no model', state
        if not self.has_reference:
            return self.reference_reason, state
        return None, state

    def _compensate(self, msg: AgentState, state):
        """delay_compensation (a robot in real time): the action will land when the state is already old by its
        age plus a plan's time; roll the state forward by that many whole control periods (at most
        max_compensation_steps) under the last action sent, with the model, and plan from there."""
        if not self.delay_compensation or self.last_values is None:
            return state
        import torch
        age = self.get_clock().now().nanoseconds * 1e-9 - stamp_to_sec(msg.header.stamp)
        steps = min(self.max_compensation_steps, int(round((age + self.solve_ema) / self.spec.dt)))
        if steps <= 0:
            return state
        s = torch.as_tensor(state, dtype=torch.float32)[None]
        a = torch.as_tensor(self.last_values, dtype=torch.float32)[None]
        for _ in range(steps):
            s = self.model.predict(s, a).reshape(1, -1)
        return s[0].numpy()

    def _send(self, state_msg: AgentState, values, source: str) -> None:
        cmd = ActionCommand()
        cmd.header.stamp = state_msg.header.stamp
        cmd.header.frame_id = state_msg.header.frame_id
        cmd.values = [float(min(max(v, -1.0), 1.0)) for v in values]
        self.last_values = list(cmd.values)
        cmd.step = state_msg.step
        cmd.source = source
        self.pub_action.publish(cmd)
        self.answered += 1

    def close(self) -> None:
        for t in self._loaders:
            t.join(timeout=5.0)


def main(args=None):
    return run_node(lambda: MpcPlanner(), args)


if __name__ == '__main__':
    sys.exit(main())
