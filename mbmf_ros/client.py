"""FollowClient: drive a running follow graph from Python, in the spirit of nav2_simple_commander's BasicNavigator.

    from mbmf_ros.client import FollowClient
    with FollowClient() as robot:                       # its own rclpy context and node
        robot.wait_until_ready()
        robot.follow_path([(0, 0), (0.4, 0), (0.6, 0.25)])   # metres, relative to the robot (frame odom)
        robot.wait(timeout=60, progress=True)           # a progress bar; or progress=callable(FollowStatus)
        print(robot.result(), robot.status().tracking.cross_track_error)
        robot.cancel()                                  # the robot stops and stays stopped

It talks to the graph only through its topics, as any ROS client may:
  /waypoints (nav_msgs/Path): the path to follow; an EMPTY Path means stop (the waypoint_manager clears the
  reference, the planner sends zero actions until the next path). `cancel()` publishes one.
  /mbmf/tracking (TrackingStatus): the waypoint_manager's answer; path_stamp names the Path it is about, so the
  client knows the answer to its own path (and that a newer path from someone else replaced it).
  /mbmf/mpc_status (MpcStatus): what the planner does (K, H, solve time, why it sends zeros).
  /mbmf/model (ModelInfo, latched): `set_model(path)` announces a checkpoint; the planner loads it between two
  steps (status().mpc.model_version tells when).
Nothing here is specific to simulation: the same calls drive a real robot's graph.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

# result() values, as nav2's TaskResult
NONE, RUNNING, SUCCEEDED, REJECTED, CANCELED, REPLACED, ABORTED = (
    'none', 'running', 'succeeded', 'rejected', 'canceled', 'replaced', 'aborted')


@dataclass
class FollowStatus:
    """The latest TrackingStatus about the client's path (None before the first) and the latest MpcStatus."""
    tracking: object | None
    mpc: object | None
    result: str


class FollowClient:
    """A client of the follow graph (see the module docstring). ``node_name``: default follow_client_<pid>;
    ``namespace``: the graph's namespace ('' : none). Owns an rclpy context unless ``context`` is given."""

    def __init__(self, node_name: str | None = None, namespace: str = '', context=None):
        import rclpy
        from nav_msgs.msg import Path as PathMsg

        from mbmf_ros import topics as T
        from mbmf_ros.msg import ModelInfo, MpcStatus, TrackingStatus
        from mbmf_ros.nodes.common import CONTROL, LATCHED
        self._own_context = context is None
        self.context = context or rclpy.Context()
        if self._own_context:
            rclpy.init(context=self.context)
        self.node = rclpy.create_node(node_name or f'follow_client_{os.getpid()}', namespace=namespace,
                                      context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._tracking: list = []
        self.mpc = None
        self._sub_tracking = self.node.create_subscription(
            TrackingStatus, T.TRACKING.lstrip('/') if namespace else T.TRACKING, self._tracking.append, CONTROL)
        self._sub_mpc = self.node.create_subscription(MpcStatus, T.MPC_STATUS.lstrip('/') if namespace else T.MPC_STATUS,
                                      self._on_mpc, CONTROL)
        self._pub_path = self.node.create_publisher(PathMsg, T.WAYPOINTS.lstrip('/') if namespace else T.WAYPOINTS,
                                                    CONTROL)
        self._pub_model = self.node.create_publisher(ModelInfo, T.MODEL.lstrip('/') if namespace else T.MODEL,
                                                     LATCHED)
        self._PathMsg, self._ModelInfo = PathMsg, ModelInfo
        self._mine = None           # stamp (ns) of the client's current Path (a path or a cancel)
        self._canceling = False
        self._answers: list = []    # TrackingStatus about the client's current Path
        self._replaced = False
        self._model_version = 0

    # --- plumbing --------------------------------------------------------------------------------------------
    def _on_mpc(self, msg) -> None:
        self.mpc = msg

    def spin(self, seconds: float = 0.02) -> None:
        """Process incoming messages for ``seconds``: one message per spin_once, so the default drains a backlog
        of some hundred messages (a lock-step graph can publish faster than one call per message)."""
        deadline = time.monotonic() + seconds
        while True:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))
            self._sort()
            if time.monotonic() >= deadline:
                return

    def spin_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Spin until ``predicate()``; False after ``timeout`` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not predicate():
            if deadline is not None and time.monotonic() > deadline:
                return False
            if not self.context.ok():     # Ctrl-C reached rclpy's handler: stop waiting
                raise KeyboardInterrupt('the ROS context was shut down')
            self.executor.spin_once(timeout_sec=0.05)
            self._sort()
        return True

    def _sort(self) -> None:
        from mbmf_ros.nodes.common import stamp_ns
        for s in self._tracking:
            stamp = stamp_ns(s.path_stamp)
            if self._mine is not None and stamp == self._mine:
                self._answers.append(s)
            elif self._answers and stamp:
                self._replaced = True    # one publisher keeps its order: a status about another path after
                                         # ours is about a newer path
        self._tracking.clear()

    def wait_until_ready(self, timeout: float = 30.0, planner: bool = True) -> bool:
        """True once a waypoint_manager listens on /waypoints and this client hears its tracking status and (with
        ``planner``) the planner's or policy's MpcStatus: their publishers matched, since a short path can be
        done before a late-matched status reaches us. planner=False for a graph without one (a baseline
        actor). False after ``timeout`` s."""
        return self.spin_until(lambda: self._pub_path.get_subscription_count() >= 1
                               and self._sub_tracking.get_publisher_count() >= 1
                               and (not planner or self._sub_mpc.get_publisher_count() >= 1), timeout)

    def _publish(self, msg) -> None:
        from mbmf_ros.nodes.common import stamp_ns
        self._mine = stamp_ns(msg.header.stamp)
        self._answers, self._replaced = [], False
        self._tracking.clear()
        self._pub_path.publish(msg)

    def _answered(self) -> bool:
        # any status about this Path: accepted, rejected, stopped, or accepted and waiting for the robot's pose
        return bool(self._answers)

    # --- the API ---------------------------------------------------------------------------------------------
    def follow_path(self, path, frame: str = 'odom', timeout: float = 30.0) -> bool:
        """Send a path and wait (at most ``timeout`` s) for the waypoint_manager's answer.

        path: a nav_msgs/Path, or points (N, 2) in metres (relative to the robot's pose when the path arrives, in
        the follow graph). Returns True when accepted (possibly waiting for the robot's first pose), False when
        rejected (``status().tracking.message`` says why). ValueError for points that are not a valid path;
        TimeoutError when no waypoint_manager answers (the path is re-sent every 2 s meanwhile: an endpoint of a
        graph that just ended may have taken it).
        """
        from mbmf_ros.nodes.waypoint_manager import path_to_msg
        if isinstance(path, self._PathMsg):
            msg = path
            msg.header.stamp = self.node.get_clock().now().to_msg()   # a fresh stamp names this request
        else:
            from mbmf_ros.core.waypoints import DEFAULT_WORLD_FRAMES, validate_path
            points = validate_path(np.asarray(path, dtype=np.float64), frame, DEFAULT_WORLD_FRAMES,
                                   source='follow_path')
            msg = path_to_msg(points, frame, self.node.get_clock().now().to_msg())   # wall-clock stamp: unique
        self._canceling = False
        self._send_until_answered(msg, timeout, 'the path')
        return not any(s.message.startswith('rejected') for s in self._answers)

    def _send_until_answered(self, msg, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        self._publish(msg)
        while not self.spin_until(self._answered, min(2.0, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                raise TimeoutError(f'no answer from a waypoint_manager to {what} in {timeout:.0f} s (is the follow '
                                   'graph running? mbmf-ros launch follow)')
            self._pub_path.publish(msg)

    def cancel(self, timeout: float = 10.0) -> None:
        """Stop: publish an empty Path on /waypoints and wait for the waypoint_manager's answer. The planner
        then sends zero actions until the next path (the robot stops and stays stopped)."""
        from mbmf_ros.nodes.waypoint_manager import path_to_msg
        self._canceling = True
        self._send_until_answered(path_to_msg([], 'odom', self.node.get_clock().now().to_msg()), timeout,
                                  'the cancel')

    def result(self) -> str:
        """none | running | succeeded | rejected | canceled | replaced (another client's newer path) | aborted (the
        waypoint_manager dropped it: status().tracking.message says why)."""
        if self._mine is None:
            return NONE
        if self._canceling:
            return CANCELED if self._answered() else RUNNING
        if any(s.message.startswith('rejected') for s in self._answers):
            return REJECTED
        if self._answers and self._answers[-1].done:
            return SUCCEEDED
        if self._replaced:
            return REPLACED
        if self._answers and not self._answers[-1].valid and any(s.valid for s in self._answers):
            return ABORTED       # the waypoint_manager dropped it (e.g. the robot's watchdog stopped the robot)
        return RUNNING

    def is_done(self) -> bool:
        """True when the path is finished one way or the other (see ``result``); processes messages first."""
        self.spin()
        return self.result() not in (RUNNING,)

    def status(self) -> FollowStatus:
        """The latest TrackingStatus about this client's path and the latest MpcStatus (processes messages)."""
        self.spin()
        return FollowStatus(self._answers[-1] if self._answers else None, self.mpc, self.result())

    def wait(self, timeout: float | None = None, progress: bool | Callable[[FollowStatus], None] = False) -> bool:
        """Wait until ``is_done()`` (True) or ``timeout`` seconds (False). progress: True shows a progress bar
        (rich), a callable gets every new FollowStatus."""
        if progress is True:
            return self._wait_with_bar(timeout)
        seen = [None]

        def done():
            if callable(progress) and self._answers and self._answers[-1] is not seen[0]:
                seen[0] = self._answers[-1]
                progress(FollowStatus(seen[0], self.mpc, self.result()))
            return self.result() != RUNNING
        return self.spin_until(done, timeout)

    def _wait_with_bar(self, timeout: float | None) -> bool:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        columns = (TextColumn('following'), BarColumn(), TextColumn('{task.percentage:>3.0f}%'),
                   TextColumn('cross-track {task.fields[cte]:5.1f} cm, segment {task.fields[seg]}'),
                   TimeElapsedColumn())
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task('path', total=1.0, cte=0.0, seg='-')

            def show(s: FollowStatus):
                t = s.tracking
                bar.update(task, completed=t.progress, cte=t.cross_track_error * 100,
                           seg=f'{t.segment + 1}/{t.num_segments}' if t.valid else '-')
            return self.wait(timeout, show)

    def set_model(self, path: str) -> int:
        """Announce a dynamics checkpoint on /mbmf/model (latched); the planner checks it is for its agent and
        state layout, loads it in the background and swaps it in between two steps. Returns the version sent
        (``status().mpc.model_version`` equals it once the planner plans with it). FileNotFoundError or
        ValueError (naming the file) for a missing or unreadable checkpoint."""
        from mbmf_ros.io.checkpoint import read_checkpoint
        path = os.path.abspath(path)
        data = read_checkpoint(path)
        self.spin()
        self._model_version = max(self._model_version, self.mpc.model_version if self.mpc else 0) + 1
        msg = self._ModelInfo()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.checkpoint_path, msg.version = path, self._model_version
        msg.agent = str(data['agent'])
        msg.state_names, msg.action_names = list(data['state_names']), list(data['action_names'])
        self._pub_model.publish(msg)
        return self._model_version

    def close(self) -> None:
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> 'FollowClient':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
