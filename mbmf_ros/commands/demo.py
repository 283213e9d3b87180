"""The follow demo: the simulated hexapod follows every example path with MPC over the shipped model, beside
the zero-action and random-action baselines on the same path and step budget.

    mbmf-ros demo [--agent hexapod] [--paths config/paths/*.yaml] [--out runs/demo] [--no-baselines]

Writes <out>/<path>.json (MPC report with the baselines inside) and <out>/<path>.png, prints a table, and
exits 1 if MPC misses the target on a path (mean cross-track error < 0.5 body length, completion >= 0.9).
"""
import json
import os
import sys
import time
from pathlib import Path

MAX_MEAN_CROSS_TRACK_BODY_LENGTHS = 0.5
MIN_COMPLETION = 0.9


def add_arguments(parser):
    from mbmf_ros.settings import config_dir
    parser.add_argument('--agent', default='hexapod')
    parser.add_argument('--model', default='', help='dynamics checkpoint (default: the shipped one)')
    parser.add_argument('--paths', nargs='+', default=sorted(str(p) for p in (config_dir() / 'paths').glob('*.yaml')))
    parser.add_argument('--out', default='runs/demo', help='folder for reports and plots')
    parser.add_argument('--no-baselines', action='store_true', help='skip the zero/random baselines')
    parser.add_argument('--verbose', action='store_true', help="show the nodes' output")


def run(args) -> int:
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from rich.console import Console
    from rich.table import Table

    from mbmf_ros.commands.follow import plot_runs, run_follow
    from mbmf_ros.io.paths import load_path_file
    from mbmf_ros.graphs import default_model_path, resolve_path
    console = Console(width=max(110, Console().width))   # the whole table, also in a log or a CI page
    model = args.model or resolve_path(default_model_path(args.agent))
    if not Path(model).is_file():
        console.print(f'[red]no model at {model}[/red]: make one with `mbmf-ros make-model --agent {args.agent}`')
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = Table(title=f'{args.agent} following paths with MPC ({Path(model).name}); baselines on the same budget')
    for column in ('path', 'controller', 'mean CTE (cm)', 'mean CTE (BL)', 'max CTE (cm)', 'completion',
                   'steps', 'sim s', 'wall s'):
        table.add_column(column, justify='right' if column != 'path' else 'left')
    missed, t0 = [], time.monotonic()
    for path_file in args.paths:
        name = Path(path_file).stem
        try:
            frame, points = load_path_file(path_file)
            runs = {'mpc': run_follow(args.agent, points, frame, model=model, quiet=not args.verbose)}
            if not args.no_baselines:
                steps = runs['mpc'].report['steps']
                for baseline in ('zero', 'random'):
                    runs[baseline] = run_follow(args.agent, points, frame, controller=baseline, max_steps=steps,
                                                quiet=not args.verbose)
        except (ValueError, TimeoutError, RuntimeError) as e:
            console.print(f'[red]{name}: {e}[/red]')
            missed.append(name)
            continue
        report = dict(runs['mpc'].report, path_file=str(path_file),
                      baselines={k: v.report for k, v in runs.items() if k != 'mpc'})
        (out / f'{name}.json').write_text(json.dumps(report, indent=2))
        plot_runs(runs['mpc'].path_xy, runs, str(out / f'{name}.png'), title=f'{args.agent}: {name}')
        for label, result in runs.items():
            r = result.report
            table.add_row(name if label == 'mpc' else '', label, f"{r['mean_cross_track_m'] * 100:.1f}",
                          f"{r['mean_cross_track_body_lengths']:.2f}", f"{r['max_cross_track_m'] * 100:.1f}",
                          f"{r['completion']:.2f}", str(r['steps']), f"{r['duration_s']:.1f}",
                          f"{r['wall_time_s']:.1f}")
        ok = (report['mean_cross_track_body_lengths'] < MAX_MEAN_CROSS_TRACK_BODY_LENGTHS
              and report['completion'] >= MIN_COMPLETION)
        if not ok:
            missed.append(name)
        console.print(f"{name}: mean CTE {report['mean_cross_track_body_lengths']:.2f} BL, completion "
                      f"{report['completion']:.2f} -> {'[green]ok[/green]' if ok else '[red]missed target[/red]'}")
    console.print(table)
    console.print(f'reports and plots in {out}/ ({time.monotonic() - t0:.0f} s)')
    if missed:
        console.print(f'[red]target missed (mean CTE < {MAX_MEAN_CROSS_TRACK_BODY_LENGTHS} BL, completion >= '
                      f'{MIN_COMPLETION}) on: {", ".join(missed)}[/red]')
        return 1
    return 0
