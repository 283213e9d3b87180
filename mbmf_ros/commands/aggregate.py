"""Model-based RL with data aggregation (the paper's Alg. 1): follow paths with the current model while recording
them (D_rl), retrain it warm-started on random data (D_rand) mixed with every recorded run (10-90 as in the
paper), and repeat; prints each iteration's tracking figures and writes them to <out>/summary.json.

    mbmf-ros aggregate --agent hexapod --rand-bags runs/make_model/hexapod --iterations 3 --out runs/aggregate

Every follow run is the real graph over DDS in lock-step (`mbmf-ros follow --record`); <out>/iter_<i>/ keeps
its bags, reports and the model trained after it (model.pt). The same loop at the paper's appendix settings, for
moving forward too, in one process: `mbmf-ros mbrl` (config/mbrl.yaml).
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


def _short(model: str, out: Path) -> str:
    return str(Path(model).relative_to(out)) if Path(model).is_relative_to(out) else Path(model).name


def run(args) -> int:
    from mbmf_ros.commands.follow import load_path_file, run_follow
    from mbmf_ros.commands.train import load_train_config, train_from_bags
    from mbmf_ros.graphs import config_dir, default_model_path, resolve_path
    from mbmf_ros.io.bags import BagError
    from mbmf_ros.io.checkpoint import CheckpointMismatch

    if args.iterations < 1 or args.epochs < 1:
        print(f'mbmf-ros aggregate: --iterations and --epochs must be >= 1, found {args.iterations} and '
              f'{args.epochs}', file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    try:
        files = args.paths or sorted(str(p) for p in (config_dir() / 'paths').glob('*.yaml'))
        paths = {Path(f).stem: load_path_file(f) for f in files}
        model = str(Path(resolve_path(args.model or default_model_path(args.agent))).resolve())
        cfg = load_train_config(None, epochs=args.epochs, rand_fraction=args.rand_fraction, seed=args.seed)
    except ValueError as e:
        print(f'mbmf-ros aggregate: {e}', file=sys.stderr)
        return 2
    rl_bags, summary = [], []

    def evaluate(iteration: int, record: bool) -> dict:
        reports = {}
        for name, (frame, points) in paths.items():
            folder = out / f'iter_{iteration}'
            rec = str(folder / 'rl' / name) if record else ''
            result = run_follow(args.agent, points, frame, model=model, seed=args.seed + iteration, quiet=True,
                                record=rec)
            reports[name] = result.report
            if record:
                rl_bags.append(rec)
        mean = lambda key: sum(r[key] for r in reports.values()) / len(reports)  # noqa: E731
        row = {'iteration': iteration, 'model': model, 'mean_cross_track_body_lengths':
               mean('mean_cross_track_body_lengths'), 'completion': mean('completion'),
               'steps': mean('steps'), 'paths': reports}
        print(f"iteration {iteration}: mean cross-track {row['mean_cross_track_body_lengths']:.3f} BL, completion "
              f"{row['completion']:.2f}, {row['steps']:.0f} steps per path ({_short(model, out)})", flush=True)
        summary.append(row)
        return row

    try:
        for i in range(args.iterations):
            evaluate(i, record=True)
            nxt = out / f'iter_{i}' / 'model.pt'
            model, _, _ = train_from_bags(args.rand_bags, nxt, args.agent, cfg, warm_start=model, rl_bags=rl_bags,
                                          progress=False, log=lambda *a: None)
            model = str(model)
        evaluate(args.iterations, record=False)
    except (BagError, CheckpointMismatch, ValueError, TimeoutError, RuntimeError, FileNotFoundError) as e:
        print(f'mbmf-ros aggregate: {e}', file=sys.stderr)
        return 1
    finally:
        if summary:
            out.mkdir(parents=True, exist_ok=True)
            (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    print(f'models and bags in {out}; figures in {out / "summary.json"}')
    return 0
