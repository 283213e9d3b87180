"""waypoint_manager: checks the user's waypoint path, publishes it as the active reference, tracks progress.

Subscribes
  /waypoints (nav_msgs/Path; reliable, volatile: a publisher should wait for this subscriber first): the
  path to follow, (x, y) of each pose in metres. Accepted at any time; a new path replaces the old one.
  An EMPTY Path means stop (cancel): the reference is cleared and the planner sends zero actions until the
  next path; TrackingStatus says 'stopped: ...' (mbmf_ros.client.FollowClient.cancel sends one).
  /mbmf/state (mbmf_ros/AgentState): the robot's pose, for progress and for ``relative_to_start``.
Publishes
  /mbmf/reference (nav_msgs/Path, latched, frame ``odom``): the accepted path in the world frame, each pose
  facing along its segment; an EMPTY path when the last input was rejected (the planner then stops).
  /mbmf/tracking (mbmf_ros/TrackingStatus): on every state, and at once when a path is accepted or rejected;
  path_stamp is the header.stamp of the Path it is about, so a sender can tell the answer to its own path.
Parameters (defaults: config/defaults.yaml, waypoint_manager and /** sections)
  world_frames (string list): frame_ids treated as the world frame.
  relative_to_start (bool): the path is given relative to the robot's pose (x forward, y left) when
  it arrives (the next state's pose if none came yet), and is moved into the world frame with it.
  lookahead_m (float): progress tracking looks for the closest segment at most this far (m of path)
  ahead of the progress so far (<= 0: the whole rest of the path).
  goal_tolerance_m (float): the path is done when the progress is within this of its end (m).
  drop_path_on_robot_stop (bool; true in the workstation part of a split graph): the path is cancelled
  (empty reference, the reason in TrackingStatus.message) when the robot's states start to carry the bridge's
  'watchdog_stop' flag: no action reached the robot in time, so the workstation or the link was gone, and the
  robot must wait for a new path rather than resume an old plan. On one host nothing but the whole graph can go
  away, and a robot stopped by a planner that was slow for a moment (a busy machine) goes on when it is back.
A path is rejected, with the reason logged and in TrackingStatus.message, when it has 1 pose,
a non-finite coordinate, two equal consecutive points or an unknown frame_id.
"""
from __future__ import annotations

import math
import sys

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rclpy.node import Node

from mbmf_ros import topics as T
from mbmf_ros.core.waypoints import PathError, ProgressTracker, WaypointPath, transform_points, validate_path
from mbmf_ros.msg import AgentState, TrackingStatus
from mbmf_ros.nodes.common import CONTROL, LATCHED, WATCHDOG_FLAG, declare_settings, overridable, run_node


def path_to_msg(points, frame_id: str, stamp) -> Path:
    """A nav_msgs/Path through points (N, 2), each pose's orientation along its segment (the last one keeps
    the last segment's heading)."""
    msg = Path()
    msg.header.frame_id, msg.header.stamp = frame_id, stamp
    pts = np.asarray(points, dtype=np.float64)
    for i, (x, y) in enumerate(pts):
        j = min(i, len(pts) - 2)
        yaw = math.atan2(pts[j + 1, 1] - pts[j, 1], pts[j + 1, 0] - pts[j, 0]) if len(pts) > 1 else 0.0
        pose = PoseStamped()
        pose.header = msg.header
        pose.pose.position.x, pose.pose.position.y = float(x), float(y)
        pose.pose.orientation.z, pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        msg.poses.append(pose)
    return msg


def msg_to_points(msg: Path) -> list:
    """[(x, y), ...] of a nav_msgs/Path's poses (metres)."""
    return [(p.pose.position.x, p.pose.position.y) for p in msg.poses]


class WaypointManager(Node):
    def __init__(self):
        super().__init__('waypoint_manager')
        # Every parameter and its default: config/defaults.yaml (waypoint_manager, /**).
        v = declare_settings(self, 'waypoint_manager')
        self.world_frames = tuple(v['world_frames'])
        self.relative_to_start = v['relative_to_start']
        self.lookahead_m = v['lookahead_m'] if v['lookahead_m'] > 0 else None
        self.goal_tolerance_m = v['goal_tolerance_m']
        self.drop_path_on_robot_stop = v['drop_path_on_robot_stop']
        if not self.world_frames or self.goal_tolerance_m < 0 or not math.isfinite(self.goal_tolerance_m):
            raise SystemExit(f'waypoint_manager: expected a non-empty world_frames and goal_tolerance_m >= 0; '
                             f'found {list(self.world_frames)}, {self.goal_tolerance_m}')
        self.tracker: ProgressTracker | None = None
        self.message = 'no path received yet'
        self.path_stamp = None
        self.pending: np.ndarray | None = None      # a relative path waiting for the robot's pose
        self.last_pose = None
        self.episode = None
        self.robot_stopped = False     # the last state carried the bridge's watchdog flag
        self.pub_ref = self.create_publisher(Path, T.REFERENCE, LATCHED)
        self.pub_status = self.create_publisher(TrackingStatus, T.TRACKING, CONTROL)
        self.create_subscription(Path, T.WAYPOINTS, self.on_waypoints, CONTROL)
        self.create_subscription(AgentState, T.STATE, self.on_state, **overridable(CONTROL))
        self.get_logger().info(f'waiting for {T.WAYPOINTS} (frames {list(self.world_frames)}, '
                               f'relative_to_start={self.relative_to_start})')

    # --- input ---------------------------------------------------------------------------------------------
    def on_waypoints(self, msg: Path) -> None:
        frame = msg.header.frame_id
        self.path_stamp = msg.header.stamp   # statuses name the Path they are about: a sender knows its answer
        if not msg.poses:
            self.stop()
            return
        try:
            points = validate_path(msg_to_points(msg), frame, self.world_frames, source=T.WAYPOINTS)
        except PathError as e:
            self.reject(str(e))
            return
        if self.relative_to_start:
            if self.last_pose is None:
                self.pending = points
                self.tracker = None
                self.message = 'path received, waiting for the robot pose (relative_to_start)'
                self.pub_ref.publish(path_to_msg([], T.WORLD_FRAME, self.get_clock().now().to_msg()))
                self.get_logger().info(f'{self.message}: {len(points)} waypoints')
                self.publish_status(None)
                return
            points = transform_points(points, self.last_pose)
        self.accept(points, frame)

    def accept(self, points: np.ndarray, frame: str) -> None:
        try:
            path = WaypointPath(points, T.WORLD_FRAME, source=T.WAYPOINTS)
        except PathError as e:          # e.g. a transformed path that lost precision
            self.reject(str(e))
            return
        self.pending = None
        self.tracker = ProgressTracker(path, self.lookahead_m, self.goal_tolerance_m)
        self.message = 'ok'
        self.pub_ref.publish(path_to_msg(path.points, T.WORLD_FRAME, self.get_clock().now().to_msg()))
        how = f'relative to the robot pose {np.round(self.last_pose, 3).tolist()}' if self.relative_to_start \
            else f'in frame {frame!r}'
        self.get_logger().info(f'accepted a path of {len(path)} waypoints, {path.num_segments} segments, '
                               f'{path.length:.3f} m, {how}')
        self.publish_status(None)

    def stop(self) -> None:
        """An empty Path: the cancel of any ROS client. The reference is cleared, the planner sends zeros."""
        self.tracker = None
        self.pending = None
        self.message = 'stopped: an empty path cancels the current one'
        self.get_logger().info(f'{self.message}; the reference is cleared, the robot stops')
        self.pub_ref.publish(path_to_msg([], T.WORLD_FRAME, self.get_clock().now().to_msg()))
        self.publish_status(None)

    def reject(self, reason: str) -> None:
        self.tracker = None
        self.pending = None
        self.message = f'rejected: {reason}'
        self.get_logger().warning(f'path {self.message}; the reference is cleared, the robot stops')
        self.pub_ref.publish(path_to_msg([], T.WORLD_FRAME, self.get_clock().now().to_msg()))
        self.publish_status(None)

    def cancel(self, reason: str) -> None:
        """Drop the path in hand (an old plan by now): the reference is cleared and the robot waits."""
        self.tracker = None
        self.pending = None
        self.message = f'cancelled: {reason}'
        self.get_logger().warning(f'path {self.message}')
        self.pub_ref.publish(path_to_msg([], T.WORLD_FRAME, self.get_clock().now().to_msg()))

    def on_state(self, msg: AgentState) -> None:
        if len(msg.values) < 3 or not all(math.isfinite(v) for v in msg.values[:3]):
            return
        self.last_pose = (msg.values[0], msg.values[1], msg.values[2])
        stopped = WATCHDOG_FLAG in msg.flags
        if (self.drop_path_on_robot_stop and stopped and not self.robot_stopped
                and (self.tracker is not None or self.pending is not None)):
            self.cancel("the robot's watchdog stopped it (no action reached it in time: planner or link gone); "
                        'send a new path')
        self.robot_stopped = stopped
        if self.episode is not None and msg.episode != self.episode and self.tracker is not None:
            self.tracker.reset()      # a new episode is a new attempt at the same path
        self.episode = msg.episode
        if self.pending is not None:
            self.accept(transform_points(self.pending, self.last_pose), 'relative')
        if self.tracker is not None:
            self.tracker.update(self.last_pose[:2])
        self.publish_status(msg.header.stamp)

    # --- output --------------------------------------------------------------------------------------------
    def publish_status(self, stamp) -> None:
        st = TrackingStatus()
        st.header.stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
        st.header.frame_id = T.WORLD_FRAME
        st.message = self.message
        if self.path_stamp is not None:
            st.path_stamp = self.path_stamp
        if self.tracker is None:
            st.valid = False
            self.pub_status.publish(st)
            return
        s = self.tracker.state()
        st.valid = True
        st.segment, st.num_segments = s.segment, s.num_segments
        st.progress, st.progress_m, st.path_length_m = s.progress, s.progress_m, s.path_length_m
        st.cross_track_error = s.cross_track_m if math.isfinite(s.cross_track_m) else 0.0
        st.done = s.done
        self.pub_status.publish(st)


def main(args=None):
    return run_node(lambda: WaypointManager(), args)


if __name__ == '__main__':
    sys.exit(main())
