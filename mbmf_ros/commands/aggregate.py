"""Model-based RL with data aggregation (the paper's Alg. 1) over the real follow graph: `mbmf-ros mbrl`'s loop
(commands/mbrl.run_mbrl) with its rollouts run as `mbmf-ros follow --record` (DDS, lock-step), starting from a
given model and random-action bags. Each iteration follows every path with the current model while recording
(D_rl), then retrains it warm-started on D_rand mixed with every recorded run (10-90 as in the paper); at the end
the last model follows every path once more. Prints each model's tracking figures; <out>/summary.json holds them.

    mbmf-ros aggregate --agent hexapod --rand-bags runs/make_model/hexapod --iterations 3 --out runs/aggregate

<out>/iter_<i>/rl/episode_NNNN/ keeps the bags of model i-1's runs (iter_1: the start model's), with their
reports in episode_NNNN.json, and iter_<i>/model.pt the model trained after them; re-running continues.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser):
    parser.add_argument('--agent', default='hexapod', help='agent name (default hexapod)')
    parser.add_argument('--rand-bags', nargs='+', required=True, help='random-action bags (D_rand)')
    parser.add_argument('--model', default='', help='model to start from (default: the shipped one)')
    parser.add_argument('--paths', nargs='+', help='path files to follow (default: config/paths/*.yaml)')
    parser.add_argument('--iterations', type=int, default=3, help='aggregation iterations (default 3)')
    parser.add_argument('--epochs', type=int, default=20, help='training epochs per iteration (default 20)')
    parser.add_argument('--rand-fraction', type=float, default=0.1, help='share of D_rand per epoch (0.1)')
    parser.add_argument('--out', default='runs/aggregate', help='output folder (default runs/aggregate)')
    parser.add_argument('--seed', type=int, default=0)


def _row(name: str, reports: dict) -> dict:
    mean = lambda key: sum(r[key] for r in reports.values()) / len(reports)  # noqa: E731
    return {'model': name, 'mean_cross_track_body_lengths': mean('mean_cross_track_body_lengths'),
            'completion': mean('completion'), 'steps': mean('steps'), 'paths': reports}


def run(args) -> int:
    from mbmf_ros.commands.mbrl import graph_rollout, run_mbrl
    from mbmf_ros.graphs import default_model_path, resolve_path
    from mbmf_ros.io.bags import BagError
    from mbmf_ros.io.checkpoint import CheckpointMismatch
    from mbmf_ros.io.paths import load_path_file
    from mbmf_ros.settings import config_dir

    if args.iterations < 1 or args.epochs < 1:
        print(f'mbmf-ros aggregate: --iterations and --epochs must be >= 1, found {args.iterations} and '
              f'{args.epochs}', file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    try:
        files = args.paths or sorted(str(p) for p in (config_dir() / 'paths').glob('*.yaml'))
        loaded = {Path(f).stem: load_path_file(f) for f in files}
        model = str(Path(resolve_path(args.model or default_model_path(args.agent))).resolve())
    except ValueError as e:
        print(f'mbmf-ros aggregate: {e}', file=sys.stderr)
        return 2
    frames = {frame for frame, _ in loaded.values()}
    if len(frames) != 1:
        print(f'mbmf-ros aggregate: the paths must share one frame_id, found {sorted(frames)}', file=sys.stderr)
        return 2
    frame = frames.pop()
    paths = {name: points for name, (_, points) in loaded.items()}
    settings = {'random_rollouts': 0, 'random_steps': 0, 'epochs': args.epochs, 'iterations': args.iterations,
                'rollouts_per_iteration': len(paths), 'rand_fraction': args.rand_fraction,
                'start_model': model, 'rand_bags': [str(Path(b).resolve()) for b in args.rand_bags],
                'paths': files, 'backend': 'follow graph over DDS'}
    rollout = graph_rollout(args.agent, frame)
    try:
        summary = run_mbrl(args.agent, 'follow', out, settings, paths=paths, seed=args.seed, rollout=rollout,
                           rand_bags=settings['rand_bags'], start_model=model,
                           log=lambda *a: print(*a, flush=True))
        models = [row['model'] for row in summary['curve']] + [summary['final_model']]
        rows = []
        for i in range(1, args.iterations + 1):
            reports = {e['path']: e for e in
                       (json.loads(p.read_text()) for p in sorted((out / f'iter_{i}' / 'rl').glob('*.json')))}
            rows.append(_row(models[i - 1], reports))
        last = out / f'iter_{args.iterations}' / 'final'
        last.mkdir(parents=True, exist_ok=True)
        reports = {}
        for k, (name, points) in enumerate(paths.items()):
            done = last / f'{name}.json'
            if not done.is_file():
                figures = rollout(str(out / summary['final_model']), last / name, args.seed + k, points)
                done.write_text(json.dumps(figures))
            reports[name] = json.loads(done.read_text())
        rows.append(_row(models[-1], reports))
    except (BagError, CheckpointMismatch, ValueError, TimeoutError, RuntimeError, FileNotFoundError) as e:
        print(f'mbmf-ros aggregate: {e}', file=sys.stderr)
        return 1
    for i, row in enumerate(rows):
        print(f"model {i} ({row['model']}): mean cross-track {row['mean_cross_track_body_lengths']:.3f} BL, "
              f"completion {row['completion']:.2f}, {row['steps']:.0f} steps per path", flush=True)
    summary['follow'] = rows
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    print(f'models and bags in {out}; figures in {out / "summary.json"}')
    return 0
