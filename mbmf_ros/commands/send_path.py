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
import time


def add_arguments(parser):
    parser.add_argument('path', help='path YAML {frame_id, waypoints: [[x, y], ...]} (metres, relative to the robot)')
    parser.add_argument('--wait', action='store_true', help='follow the progress until the path is done')
    parser.add_argument('--timeout', type=float, default=300.0,
                        help='seconds to wait for the end of the path with --wait (default 300)')
    parser.add_argument('--connect-timeout', type=float, default=30.0,
                        help='seconds to wait for the waypoint_manager and its answer (default 30)')
    parser.add_argument('--report', help='with --wait: write the tracking figures of this path (JSON: mean and '
                                         'max cross-track, completion, wall time) as the waypoint_manager saw them')


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
        solve_times: list = []           # --report: the planner's time per plan (MpcStatus), seconds
        if args.report:
            from mbmf_ros.msg import MpcStatus
            from mbmf_ros.nodes.common import CONTROL
            client.node.create_subscription(MpcStatus, T.MPC_STATUS,
                                            lambda m: solve_times.append(m.solve_time_s) if m.active else None,
                                            CONTROL)
        if not client.wait_until_ready(args.connect_timeout, planner=False):
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
        t0 = time.monotonic()
        solve_times.clear()
        seen, worst, tenths = [], [0.0], [0]

        def show(status):
            seen.append(status.tracking)
            worst[0] = max(worst[0], status.tracking.cross_track_error)
            t = status.tracking      # without a terminal (a log file): a line per tenth of the path
            if t.valid and int(t.progress * 10) > tenths[0]:
                tenths[0] = int(t.progress * 10)
                print(f'progress {t.progress:.2f}, cross-track {t.cross_track_error * 100:.1f} cm', flush=True)
        try:
            finished = client.wait(args.timeout, progress=True if sys.stdout.isatty() and not args.report else show)
        except KeyboardInterrupt:
            return 130
        status = client.status()
        last = status.tracking
        if finished and status.result == SUCCEEDED:
            print(f'done: {last.progress_m:.2f} of {last.path_length_m:.2f} m'
                  + (f', max cross-track {worst[0] * 100:.1f} cm' if worst[0] else ''))
            code = 0
        else:
            why = (f'no end after {args.timeout:.0f} s' if not finished else
                   'another path replaced this one' if status.result == REPLACED else last.message)
            print(f'mbmf-ros send-path: {why} (progress {last.progress:.2f})', file=sys.stderr)
            code = 1
        if args.report:
            _write_report(args.report, args.path, seen or [last], time.monotonic() - t0, code, solve_times)
        return code


def _write_report(out: str, path_file: str, answers: list, wall_s: float, code: int, solve_times: list) -> None:
    """Tracking figures of one path from its TrackingStatus messages (one per state the waypoint_manager got:
    cross-track error to the active segment, progress along the path, as `mbmf-ros follow` measures them)."""
    import json
    from pathlib import Path
    tracked = [s for s in answers if s.valid]
    cross = [s.cross_track_error for s in tracked]
    report = {'path_file': str(path_file), 'done': bool(tracked and tracked[-1].done), 'exit_code': code,
              'completion': float(min(1.0, tracked[-1].progress)) if tracked else 0.0,
              'mean_cross_track_m': sum(cross) / len(cross) if cross else float('nan'),
              'max_cross_track_m': max(cross) if cross else float('nan'),
              'path_length_m': float(tracked[-1].path_length_m) if tracked else 0.0,
              'states_seen': len(tracked), 'wall_time_s': wall_s,
              'mean_solve_time_s': sum(solve_times) / len(solve_times) if solve_times else float('nan'),
              'max_solve_time_s': max(solve_times) if solve_times else float('nan'),
              'last_message': answers[-1].message if answers else ''}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))
