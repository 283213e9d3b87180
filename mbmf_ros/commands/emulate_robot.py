"""Run an emulated robot: a motor board on a pseudo-terminal (MuJoCo hexapod physics, real time) + motion capture.

    mbmf-ros emulate-robot [--config FAULTS.yaml] [--link /tmp/robot]
    # prints "robot_emulator: serial port /dev/pts/N ..."; then, elsewhere:
    mbmf-ros launch follow sim:=false port:=/dev/pts/N      (or port:=/tmp/robot)

The board speaks the serial protocol of docs/protocol.md, enforces its own command watchdog and sends noisy
telemetry; /mocap/pose comes at mocap_rate_hz with noise, latency and dropouts. Faults and noise: the
robot_emulator section of config/defaults.yaml, overridden by the keys of --config. Services: /emulator/reset (put the robot back), /emulator/unplug
(pull the serial cable for --unplug-s seconds). Ctrl-C ends it.
"""
from __future__ import annotations

import os


def add_arguments(parser):
    parser.add_argument('--config', default='', help='a fault file: YAML of robot_emulator settings '
                        '(config/defaults.yaml: faults, noise, rates) applied on top')
    parser.add_argument('--link', default='', help='also make this path a symlink to the current pty (kept across '
                                                   're-plugs, like /dev/serial/by-id names)')
    parser.add_argument('--unplug-s', type=float, default=None,
                        help='how long /emulator/unplug keeps the link away (default: robot_emulator unplug_s)')


def run(args) -> int:
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from mbmf_ros.nodes.robot_emulator import main
    argv = ['mbmf-ros-emulate-robot', '--ros-args']
    if args.unplug_s is not None:
        argv += ['-p', f'unplug_s:={float(args.unplug_s)}']
    if args.config:       # rcl refuses an empty `-p name:=`: unset means the node's default ('')
        argv += ['-p', f'config:={os.path.abspath(args.config)}']
    if args.link:
        argv += ['-p', f'link_path:={os.path.abspath(args.link)}']
    return main(argv)
