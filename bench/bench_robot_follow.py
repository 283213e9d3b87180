"""Path following on the emulated robot (sim:=false, real time through the serial link), per model and path.

Runs `mbmf-ros follow --robot emulator` for each path of config/paths/ (or --paths) with each model, in real
time: the model trained on the emulated robot's own data beside the shipped simulation model measures the
sim-to-real gap. Writes one report JSON per run into --out (a run whose report exists is kept: resumable) and
prints the table (mean cross-track in body lengths, completion, solve time, the link's counters).

    .venv/bin/python bench/bench_robot_follow.py --quick                     # shipped model, straight path
    .venv/bin/python bench/bench_robot_follow.py --models robot=runs/robot/models/robot.pt \\
        sim=config/models/hexapod.pt --out runs/robot/follow [--emulator-config FAULTS.yaml] \\
        [--unplug-at-step 60] [--num-samples 200]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='the shipped model on the straight path only')
    ap.add_argument('--models', nargs='+', default=['sim=config/models/hexapod.pt'], help='label=checkpoint ...')
    ap.add_argument('--paths', nargs='+', help='path files (default: config/paths/*.yaml)')
    ap.add_argument('--out', default='runs/bench_robot_follow', help='folder for the reports')
    ap.add_argument('--num-samples', type=int, default=200,
                    help='K (default 200: a plan fits the 50 ms period on one core of this machine)')
    ap.add_argument('--horizon', type=int, default=10)
    ap.add_argument('--planner', default='random_shooting', choices=['random_shooting', 'cem', 'mppi'])
    ap.add_argument('--delay-compensation', action='store_true', help='see mbmf-ros follow --delay-compensation')
    ap.add_argument('--emulator-config', default='', help='faults for every run (YAML, robot_emulator keys of config/defaults.yaml)')
    ap.add_argument('--unplug-at-step', type=int, default=0)
    ap.add_argument('--unplug-s', type=float, default=2.0)
    args = ap.parse_args()
    paths = [Path(p) for p in args.paths] if args.paths else sorted((REPO / 'config' / 'paths').glob('*.yaml'))
    if args.quick:
        paths = [p for p in paths if p.stem == 'straight'] or paths[:1]
        args.models = args.models[:1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    rows = []
    for spec in args.models:
        label, _, model = spec.partition('=')
        for path in paths:
            report = out / f'{label}_{path.stem}.json'
            if not report.exists():
                cmd = [sys.executable, '-m', 'mbmf_ros.cli', 'follow', '--robot', 'emulator', '--model', model,
                       '--path', str(path), '--report', str(report), '--num-samples', str(args.num_samples),
                       '--horizon', str(args.horizon), '--plot', str(report.with_suffix('.png')),
                       '--planner', args.planner,
                       '--unplug-at-step', str(args.unplug_at_step), '--unplug-s', str(args.unplug_s)]
                if args.delay_compensation:
                    cmd.append('--delay-compensation')
                if args.emulator_config:
                    cmd += ['--emulator-config', args.emulator_config]
                t0 = time.monotonic()
                done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f'{label} {path.stem}: follow failed ({done.returncode}): {done.stderr[-2000:]}',
                          file=sys.stderr)
                    continue
                print(f'{label} {path.stem}: {time.monotonic() - t0:.0f} s', flush=True)
            r = json.loads(report.read_text())
            link, emu = r.get('link', {}), r.get('emulator', {})
            rows.append((label, path.stem, r['mean_cross_track_body_lengths'], r['completion'],
                         r['mean_solve_time_s'] * 1e3, r.get('invalid_states', 0), link.get('frames_ok', 0),
                         link.get('frames_corrupt', 0), link.get('frames_missing', 0),
                         emu.get('to_host.frames_damaged', 0), link.get('reconnects', 0),
                         link.get('rtt_ms_mean') or 0.0))
    print('\n| model | path | mean cross-track (BL) | completion | ms per plan | invalid states | frames ok | '
          'corrupt | missing | damaged (injected) | reconnects | round trip (ms) |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for row in rows:
        print('| {} | {} | {:.3f} | {:.2f} | {:.0f} | {} | {} | {} | {} | {} | {} | {:.0f} |'.format(*row))
    failed = [r for r in rows if not (r[2] < 0.5 and r[3] >= 0.9)]
    print(f'\n{len(rows) - len(failed)}/{len(rows)} runs within the bar (mean cross-track < 0.5 BL, completion >= 0.9)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
