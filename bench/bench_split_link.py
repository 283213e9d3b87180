"""Tracking across a bad link: the follow graph split between a robot and a workstation network namespace, the
link between them degraded by our relay (one-way latency with jitter, frame loss), the example paths followed in
real time at each setting. Needs root (`ip netns`).

For every link setting a fresh pair of namespaces and both parts of the graph start (discovery happens over the
bad link too), each example path is sent with `mbmf-ros send-path --wait --report` from the workstation and the
waypoint manager's figures are kept: mean and max cross-track error, completion, time per plan.

    sudo .venv/bin/python bench/bench_split_link.py                 # latency 0/20/50/100 ms, loss 0/1/5 %
    sudo .venv/bin/python bench/bench_split_link.py --quick         # 0 and 50 ms, 0 and 5 %, one path
    sudo .venv/bin/python bench/bench_split_link.py --resume        # skip settings already in the output

Writes <out>/results.json (one row per setting and path, with the command, commit and graph settings),
<out>/table.md and <out>/split_link.png; the processes' logs go to --logs (runs/split_link).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mbmf_ros.core.agents import get_agent
from mbmf_ros.graphs import config_dir
from mbmf_ros.link.relay import LinkSettings
from mbmf_ros.link.split import SplitFollow

GRAPH = {'planner': 'mppi', 'num_samples': 100, 'horizon': 10, 'action_timeout_s': 0.5}


def settings_list(latencies, losses, jitter_frac) -> list[dict]:
    """Latency sweep without loss, then loss sweep without added latency (the 0/0 point once)."""
    rows = [{'delay_ms': d, 'jitter_ms': d * jitter_frac, 'loss': 0.0} for d in latencies]
    rows += [{'delay_ms': 0.0, 'jitter_ms': 0.0, 'loss': p} for p in losses if p > 0]
    return rows


def key(s: dict) -> str:
    return f"delay {s['delay_ms']:g} ms +- {s['jitter_ms']:g}, loss {s['loss'] * 100:g} %"


def run_setting(setting: dict, paths: list[Path], logs: Path, timeout_s: float) -> list[dict]:
    log_dir = logs / key(setting).replace(' ', '_').replace('+-', 'pm').replace(',', '').replace('%', 'pct')
    split = SplitFollow(log_dir, GRAPH, link=LinkSettings(**setting))
    rows = []
    try:
        t0 = time.monotonic()
        split.start_part('robot')
        split.start_part('offboard')
        for path in paths:
            report = log_dir / f'{path.stem}.json'
            resends = 0
            while True:
                res = split.send_path(path, report, timeout_s=timeout_s, connect_timeout_s=120)
                # A watchdog stop (no action for the watchdog period: a slow plan on a busy machine, or the link)
                # cancels the path, as it must; the operator sends it again, here up to twice, and it is counted.
                if res.returncode == 1 and "the robot's watchdog stopped it" in res.stderr and resends < 2:
                    resends += 1
                    continue
                break
            row = json.loads(report.read_text()) if report.exists() else {
                'done': False, 'completion': 0.0, 'mean_cross_track_m': float('nan'), 'exit_code': res.returncode,
                'last_message': (res.stderr or res.stdout)[-300:]}
            row.update(setting=setting, path=path.stem, resends=resends)
            rows.append(row)
            print(f'  {path.stem:12s} done {row["done"]!s:5s} completion {row["completion"]:.2f} mean CTE '
                  f'{row["mean_cross_track_m"] * 100:.2f} cm, {row.get("wall_time_s", float("nan")):.1f} s, '
                  f'{row.get("mean_solve_time_s", float("nan")) * 1e3:.0f} ms/plan, resent {resends}', flush=True)
        print(f'  ({time.monotonic() - t0:.0f} s)', flush=True)
        watchdog = split.log_events('robot', 'watchdog: last action')
        for row in rows:
            row['watchdog_stops_in_run'] = len(watchdog)
    finally:
        split.close()
    return rows


def table(rows: list[dict], body_length: float) -> str:
    lines = ['| one-way latency (ms) | loss | mean cross-track (BL) per path | worst completion | all done | '
             'paths resent after a watchdog stop | ms per plan |', '|---|---|---|---|---|---|---|']
    by_setting: dict[str, list] = {}
    for row in rows:
        by_setting.setdefault(key(row['setting']), []).append(row)
    for _, group in by_setting.items():
        s = group[0]['setting']
        ctes = ', '.join(f"{r['path']} {r['mean_cross_track_m'] / body_length:.2f}" for r in group)
        solve = np.nanmean([r.get('mean_solve_time_s', np.nan) for r in group]) * 1e3
        lines.append(f"| {s['delay_ms']:g} +- {s['jitter_ms']:g} | {s['loss'] * 100:g} % | {ctes} | "
                     f"{min(r['completion'] for r in group):.2f} | {all(r['done'] for r in group)} | "
                     f"{sum(r.get('resends', 0) for r in group)} | {solve:.0f} |")
    return '\n'.join(lines)


def plot(rows: list[dict], body_length: float, out: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (name, pick, xs) in zip(axes, (
            ('one-way latency (ms)', lambda s: s['loss'] == 0, lambda s: s['delay_ms']),
            ('frame loss (%)', lambda s: s['delay_ms'] == 0, lambda s: s['loss'] * 100))):
        chosen = [r for r in rows if pick(r['setting'])]
        for path in sorted({r['path'] for r in chosen}):
            pts = sorted((xs(r['setting']), r['mean_cross_track_m'] / body_length, r['completion'])
                         for r in chosen if r['path'] == path)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], 'o-', label=path)
        ax.axhline(0.5, color='k', lw=0.8, ls='--')
        ax.set_xlabel(name)
        ax.set_ylabel('mean cross-track (body lengths)')
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle('hexapod, split follow graph across a degraded link (MPPI K=100 H=10, 20 Hz)', fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--latency-ms', type=float, nargs='+', default=[0, 20, 50, 100], help='one-way, added')
    ap.add_argument('--loss', type=float, nargs='+', default=[0, 0.01, 0.05], help='frame loss probabilities')
    ap.add_argument('--jitter-frac', type=float, default=0.2, help='jitter = +- this fraction of the latency')
    ap.add_argument('--paths', nargs='+', help='path files (default: config/paths/*.yaml)')
    ap.add_argument('--timeout', type=float, default=90.0, help='seconds allowed per path')
    ap.add_argument('--out', default='results/split_link')
    ap.add_argument('--logs', default='runs/split_link', help="each run's process logs and reports (not kept in git)")
    ap.add_argument('--quick', action='store_true', help='0 and 50 ms, 0 and 5 %% loss, the U-turn only')
    ap.add_argument('--resume', action='store_true', help='keep rows of settings already in the output')
    args = ap.parse_args()
    if os.geteuid() != 0:
        print('bench_split_link: needs root for network namespaces (ip netns)', file=sys.stderr)
        return 2
    paths = [Path(p) for p in args.paths] if args.paths else sorted((config_dir() / 'paths').glob('*.yaml'))
    if args.quick:
        args.latency_ms, args.loss = [0, 50], [0, 0.05]
        paths = [p for p in paths if p.stem == 'u_turn'] or paths[:1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / 'results.json'
    rows = json.loads(results.read_text())['rows'] if args.resume and results.exists() else []
    done = {key(r['setting']) for r in rows}
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
    spec = get_agent('hexapod')
    todo = [s for s in settings_list(args.latency_ms, args.loss, args.jitter_frac) if key(s) not in done]
    for i, setting in enumerate(todo):
        print(f'[{i + 1}/{len(todo)}] {key(setting)}', flush=True)
        rows += run_setting(setting, paths, Path(args.logs), args.timeout)
        results.write_text(json.dumps({'command': ' '.join(sys.argv), 'commit': commit, 'graph': GRAPH,
                                       'agent': 'hexapod', 'body_length_m': spec.body_length, 'rows': rows},
                                      indent=1))
    text = table(rows, spec.body_length)
    (out / 'table.md').write_text(text + '\n')
    plot(rows, spec.body_length, out / 'split_link.png')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
