#!/usr/bin/env python3
"""A mission in a few lines with mbmf_ros.client.FollowClient: two paths, then a stop.

    mbmf-ros launch follow            # terminal 1 (= ros2 launch mbmf_ros follow.launch.py)
    python3 examples/follow_mission.py   # terminal 2

Paths are in metres, relative to where the robot stands when each arrives (x forward, y left).
"""
import sys

from mbmf_ros.client import SUCCEEDED, FollowClient


def main() -> int:
    with FollowClient() as robot:
        if not robot.wait_until_ready(timeout=30):
            print('no follow graph: start it with `mbmf-ros launch follow`', file=sys.stderr)
            return 2
        for name, points in (('ahead', [(0, 0), (0.3, 0)]), ('left turn', [(0, 0), (0.2, 0), (0.3, 0.15)])):
            if not robot.follow_path(points):
                print(f'{name}: rejected: {robot.status().tracking.message}', file=sys.stderr)
                return 1
            robot.wait(timeout=60, progress=True)
            status = robot.status()
            print(f'{name}: {status.result}, cross-track now {status.tracking.cross_track_error * 100:.1f} cm, '
                  f'planner {status.mpc.planner} K={status.mpc.samples} H={status.mpc.horizon}')
            if status.result != SUCCEEDED:
                return 1
        robot.follow_path([(0, 0), (1.0, 0)])
        robot.spin(1.0)        # walk for a second ...
        robot.cancel()         # ... then stop (any ROS client can: an empty nav_msgs/Path on /waypoints)
        print(f'stopped: {robot.status().result}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
