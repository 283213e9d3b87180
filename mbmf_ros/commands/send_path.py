"""Send a path file to a running follow graph (/waypoints) and, with --wait, show its progress until done.

    mbmf-ros launch follow                     # terminal 1 (= ros2 launch mbmf_ros follow.launch.py)
    mbmf-ros send-path config/paths/u_turn.yaml --wait      # terminal 2

The path file is checked here first (at least 2 waypoints, finite, a world frame); then it is published once the
waypoint_manager is listening, and the answer to this very path (TrackingStatus.path_stamp) is awaited:
exit 0 when accepted (with --wait: when the robot reaches the end), 1 when the waypoint_manager rejects it or
--wait times out, 2 for a bad file or no waypoint_manager.
"""
from __future__ import annotations

import os
import sys


def add_arguments(parser):
    parser.add_argument('path', help='path YAML {frame_id, waypoints: [[x, y], ...]} (metres, relative to the robot)')
    parser.add_argument('--wait', action='store_true', help='follow the progress until the path is done')
    parser.add_argument('--timeout', type=float, default=300.0,
                        help='seconds to wait for the end of the path with --wait (default 300)')
    parser.add_argument('--connect-timeout', type=float, default=30.0,
                        help='seconds to wait for the waypoint_manager and its answer (default 30)')


def run(args) -> int:
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from mbmf_ros.io.paths import load_path_file
    try:
        frame, points = load_path_file(args.path)
    except ValueError as e:
        print(f'mbmf-ros send-path: {e}', file=sys.stderr)
        return 2

    from mbmf_ros import topics as T
    from mbmf_ros.client import REPLACED, SUCCEEDED, FollowClient
    from mbmf_ros.core.waypoints import path_length

    with FollowClient(f'send_path_{os.getpid()}') as client:
        if not client.wait_until_ready(args.connect_timeout):
            print(f'mbmf-ros send-path: nobody subscribes to {T.WAYPOINTS} after {args.connect_timeout:.0f} s: '
                  'is the follow graph running (mbmf-ros launch follow)?', file=sys.stderr)
            return 2
        try:
            accepted = client.follow_path(points, frame, timeout=args.connect_timeout)
        except TimeoutError:
            last = client.status().tracking
            print(f'mbmf-ros send-path: no answer from the waypoint_manager in {args.connect_timeout:.0f} s '
                  f"(last: {last.message if last else 'nothing'})", file=sys.stderr)
            return 1
        if not accepted:
            print(f'mbmf-ros send-path: the waypoint_manager {client.status().tracking.message}', file=sys.stderr)
            return 1
        print(f'{args.path}: accepted, {len(points)} waypoints, {path_length(points):.2f} m')
        if not args.wait:
            return 0
        worst = [0.0]

        def show(status):
            worst[0] = max(worst[0], status.tracking.cross_track_error)
        finished = client.wait(args.timeout, progress=True) if sys.stdout.isatty() else client.wait(args.timeout,
                                                                                                      show)
        status = client.status()
        last = status.tracking
        if finished and status.result == SUCCEEDED:
            print(f'done: {last.progress_m:.2f} of {last.path_length_m:.2f} m'
                  + (f', max cross-track {worst[0] * 100:.1f} cm' if worst[0] else ''))
            return 0
        why = (f'no end after {args.timeout:.0f} s' if not finished else
               'another path replaced this one' if status.result == REPLACED else last.message)
        print(f'mbmf-ros send-path: {why} (progress {last.progress:.2f})', file=sys.stderr)
        return 1
