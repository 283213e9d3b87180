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
    from mbmf_ros.commands.follow import load_path_file
    try:
        frame, points = load_path_file(args.path)
    except ValueError as e:
        print(f'mbmf-ros send-path: {e}', file=sys.stderr)
        return 2

    import rclpy

    from mbmf_ros import topics as T
    from mbmf_ros.core.waypoints import path_length
    from mbmf_ros.msg import TrackingStatus
    from mbmf_ros.nodes.common import CONTROL, stamp_ns
    from mbmf_ros.nodes.waypoint_manager import path_to_msg
    from nav_msgs.msg import Path as PathMsg

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f'send_path_{os.getpid()}', context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    statuses: list = []
    node.create_subscription(TrackingStatus, T.TRACKING, statuses.append, CONTROL)
    solve_times: list = []           # --report: the planner's time per plan (MpcStatus), seconds
    if args.report:
        from mbmf_ros.msg import MpcStatus
        node.create_subscription(MpcStatus, T.MPC_STATUS,
                                 lambda m: solve_times.append(m.solve_time_s) if m.active else None, CONTROL)
    pub = node.create_publisher(PathMsg, T.WAYPOINTS, CONTROL)

    def spin_until(predicate, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                return False
            executor.spin_once(timeout_sec=0.05)
        return True

    try:
        if not spin_until(lambda: pub.get_subscription_count() >= 1, args.connect_timeout):
            print(f'mbmf-ros send-path: nobody subscribes to {T.WAYPOINTS} after {args.connect_timeout:.0f} s: '
                  'is the follow graph running (mbmf-ros launch follow)?', file=sys.stderr)
            return 2
        msg = path_to_msg(points, frame, node.get_clock().now().to_msg())   # wall-clock stamp: unique
        mine = stamp_ns(msg.header.stamp)
        answers, replaced = [], []

        def answered():
            for s in statuses:
                if stamp_ns(s.path_stamp) == mine:
                    answers.append(s)
                elif answers and stamp_ns(s.path_stamp):
                    replaced.append(s)   # one publisher keeps its order: a status of another path after
                                         # ours is about a newer path
            statuses.clear()
            return any(s.valid or s.message.startswith('rejected') for s in answers)

        pub.publish(msg)
        if not spin_until(answered, args.connect_timeout):
            print(f'mbmf-ros send-path: no answer from the waypoint_manager in {args.connect_timeout:.0f} s '
                  f"(last: {answers[-1].message if answers else 'nothing'})", file=sys.stderr)
            return 1
        first = next(s for s in answers if s.valid or s.message.startswith('rejected'))
        if not first.valid:
            print(f'mbmf-ros send-path: the waypoint_manager {first.message}', file=sys.stderr)
            return 1
        print(f'{args.path}: accepted, {len(points)} waypoints, {path_length(points):.2f} m')
        if not args.wait:
            return 0
        t0 = time.monotonic()
        solve_times.clear()
        code = _watch(answers, replaced, answered, spin_until, args.timeout)
        if args.report:
            _write_report(args.report, args.path, answers, time.monotonic() - t0, code, solve_times)
        return code
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


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


def _watch(answers: list, replaced: list, answered, spin_until, timeout: float) -> int:
    """Progress bar of the path's TrackingStatus until done (0), or a timeout / a replaced path (1)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    columns = (TextColumn('following'), BarColumn(), TextColumn('{task.percentage:>3.0f}%'),
               TextColumn('cross-track {task.fields[cte]:5.1f} cm, segment {task.fields[seg]}'), TimeElapsedColumn())
    worst = 0.0
    tenths = [0]       # without a terminal (a log file) the bar is not drawn: a line per tenth of the path instead
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task('path', total=1.0, cte=0.0, seg='-')

        def done():
            answered()
            if answers:
                s = answers[-1]
                nonlocal worst
                worst = max(worst, s.cross_track_error)
                bar.update(task, completed=s.progress, cte=s.cross_track_error * 100,
                           seg=f'{s.segment + 1}/{s.num_segments}')
                if not bar.console.is_terminal and s.valid and int(s.progress * 10) > tenths[0]:
                    tenths[0] = int(s.progress * 10)
                    print(f'progress {s.progress:.2f}, cross-track {s.cross_track_error * 100:.1f} cm', flush=True)
            return bool(replaced) or answers[-1].done or not answers[-1].valid

        finished = spin_until(done, timeout)
    last = answers[-1]
    if finished and last.done:
        print(f'done: {last.progress_m:.2f} of {last.path_length_m:.2f} m, max cross-track {worst * 100:.1f} cm')
        return 0
    why = (f'no end after {timeout:.0f} s' if not finished else
           'another path replaced this one' if replaced else last.message)
    print(f'mbmf-ros send-path: {why} (progress {last.progress:.2f})', file=sys.stderr)
    return 1
