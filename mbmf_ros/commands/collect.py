"""Collect random-action rollouts into bags: bridge + estimator + random actor + recorder over DDS, lock-step.

    mbmf-ros collect --agent hexapod --rollouts 3 --steps 200 --out bags/random --seed 1
    mbmf-ros collect --robot emulator --rollouts 40 --steps 200 --out bags/robot   # the emulated robot, real time
    mbmf-ros collect --robot serial --port /dev/ttyUSB0 ...                        # a real robot

Leaves <out>/episode_0000 ... one rosbag2 (MCAP) per rollout with /mbmf/state, /mbmf/action and the sensor
topics. Lock-step makes the contents a function of the seed only (not of CPU speed): the same command twice
gives identical states and actions. Ends when the recorder has written the last rollout.
On a robot (--robot emulator|serial) the graph runs in real time through hardware_bridge: each rollout is
steps x dt seconds of the robot's life; between rollouts the emulated robot is put back (/emulator/reset),
a real one goes on from where it stands.
"""
from __future__ import annotations

import os
import sys
import time


def add_arguments(parser):
    parser.add_argument('--agent', default='hexapod', help='agent name (default hexapod)')
    parser.add_argument('--rollouts', type=int, default=3, help='rollouts to record (default 3)')
    parser.add_argument('--steps', type=int, default=200, help='control steps per rollout (default 200)')
    parser.add_argument('--out', default='bags/random', help='output folder (default bags/random)')
    parser.add_argument('--seed', type=int, default=0, help='seed of start states and actions (default 0)')
    parser.add_argument('--hold-steps', type=int, default=1,
                        help='keep each random action this many steps (default 1: i.i.d. as in the paper)')
    parser.add_argument('--params-file', default='', help='your ROS 2 parameter file, loaded by every node after '
                        'config/defaults.yaml and config/<agent>.yaml (node_name: ros__parameters: ...)')
    parser.add_argument('--robot', default='sim', choices=['sim', 'emulator', 'serial'],
                        help='sim (MuJoCo, lock-step; default), emulator (the emulated robot over a serial pty, in '
                             'real time) or serial (a real robot on --port)')
    parser.add_argument('--port', default='', help='serial device of a real robot (--robot serial)')
    parser.add_argument('--emulator-config', default='', help='a fault file: YAML of robot_emulator settings (config/defaults.yaml) on top')
    parser.add_argument('--task', choices=('follow', 'forward'), default='follow',
                        help='the task the data is for (default follow): forward draws no start heading from '
                             'U(-pi, pi) (paper A.1: only the swimmer\'s trajectory-following data does)')
    parser.add_argument('--timeout', type=float, default=0.0,
                        help='give up after this many seconds (default 0: 60 s + 0.05 s per step)')


def run(args) -> int:
    from mbmf_ros.core.agents import get_agent
    params_file = os.path.abspath(args.params_file) if args.params_file else ''
    try:
        spec = get_agent(args.agent, [params_file] if params_file else ())
    except ValueError as e:
        print(f'mbmf-ros collect: {e}', file=sys.stderr)
        return 2
    if args.rollouts < 1 or args.steps < 1 or args.hold_steps < 1:
        print(f'mbmf-ros collect: --rollouts, --steps and --hold-steps must be >= 1, found {args.rollouts}, '
              f'{args.steps}, {args.hold_steps}', file=sys.stderr)
        return 2
    out = os.path.abspath(os.path.expanduser(args.out))
    existing = [n for n in os.listdir(out) if n.startswith('episode_')] if os.path.isdir(out) else []
    if existing:   # recorded data is never overwritten
        print(f'mbmf-ros collect: --out {out} already holds {len(existing)} episode bags; choose a new folder',
              file=sys.stderr)
        return 2
    # callers such as make-model pass only the simulator's options
    robot, port = getattr(args, 'robot', 'sim'), getattr(args, 'port', '')
    emulator_config = getattr(args, 'emulator_config', '')
    if robot == 'serial' and not port:
        print('mbmf-ros collect: --robot serial needs --port DEVICE (e.g. /dev/ttyUSB0)', file=sys.stderr)
        return 2
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from mbmf_ros.launcher import exit_status, start_graph
    # real time: dt per step and a little per reset; lock-step: CPU speed
    per_step = spec.dt * 1.3 if robot != 'sim' else 0.05
    timeout = args.timeout or 60.0 + per_step * args.rollouts * args.steps
    print(f'collecting {args.rollouts} x {args.steps} steps of {spec.name} (dt {spec.dt} s) on {robot} '
          f'into {out}',
          flush=True)
    t0 = time.monotonic()
    graph = start_graph('collect', {'agent': spec.name, 'rollouts': str(args.rollouts),
                                    'steps': str(args.steps), 'out': out, 'seed': str(args.seed),
                                    'hold_steps': str(args.hold_steps), 'params_file': params_file,
                                    'robot': robot, 'port': port,
                                    'emulator_config': os.path.abspath(emulator_config) if emulator_config else '',
                                    'heading_noise': 'false' if getattr(args, 'task', 'follow') == 'forward'
                                    else 'default'})
    try:
        code = graph.wait(timeout)
        if code is None:
            print(f'mbmf-ros collect: not done after {timeout:.0f} s; stopping (bags written so far are kept)',
                  file=sys.stderr)
            graph.stop()
            return 1
    except KeyboardInterrupt:
        code = graph.stop()
    if code == 0 and graph.exit_node not in (None, 'recorder'):
        print(f'mbmf-ros collect: {graph.exit_node} ended the graph first', file=sys.stderr)
        code = 1
    bags = sorted(n for n in os.listdir(out) if n.startswith('episode_')) if os.path.isdir(out) else []
    print(f'{len(bags)} bag(s) in {out} after {time.monotonic() - t0:.1f} s', flush=True)
    return exit_status(code)
