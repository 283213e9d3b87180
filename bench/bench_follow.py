"""Following quality of the planners with the shipped hexapod model, in one process (no ROS).

For each example path in config/paths/ (and a 127-degree corner), runs the simulated hexapod with random
shooting, CEM and MPPI at the agent's default K and H and prints mean/max cross-track error in body lengths,
completion, steps to the end (fewer: faster walking) and ms per plan. The same pieces run as nodes in
`mbmf-ros follow`; this loop only leaves out DDS, so planners and settings compare in seconds.

    .venv/bin/python bench/bench_follow.py --quick
    .venv/bin/python bench/bench_follow.py --planners cem mppi --num-samples 1000 --seeds 0 1 2
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import yaml

from mbmf_ros.core.agents import get_agent
from mbmf_ros.core.planners import PLANNERS
from mbmf_ros.graphs import default_model_path, resolve_path
from mbmf_ros.settings import config_dir
from mbmf_ros.io.checkpoint import load_checkpoint
from mbmf_ros.sim.closed_loop import follow_in_process

EXTRA_PATHS = {'corner_127deg': [[0.0, 0.0], [0.4, 0.0], [0.1, 0.25]]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='two paths, one seed (about 1 min)')
    ap.add_argument('--planners', nargs='+', default=list(PLANNERS), choices=list(PLANNERS))
    ap.add_argument('--num-samples', type=int, help='K (default: config/hexapod.yaml)')
    ap.add_argument('--horizon', type=int, help='H (default: config/hexapod.yaml)')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_agent('hexapod')
    model, _ = load_checkpoint(resolve_path(default_model_path('hexapod')), agent='hexapod')
    paths = {p.stem: yaml.safe_load(p.read_text())['waypoints'] for p in sorted(config_dir().glob('paths/*.yaml'))}
    paths.update(EXTRA_PATHS)
    if args.quick:
        paths = {k: paths[k] for k in ('u_turn', 'corner_127deg')}
    k = spec.planner_defaults['num_samples'] if args.num_samples is None else args.num_samples
    h = spec.planner_defaults['horizon'] if args.horizon is None else args.horizon
    print(f'hexapod, shipped model, K={k} H={h}, {args.threads} thread(s), seeds {args.seeds}')
    print(f'{"planner":16s} {"path":14s} {"mean CTE BL":>11s} {"max CTE BL":>10s} {"completion":>10s} '
          f'{"steps":>6s} {"ms/plan":>8s}')
    for planner in args.planners:
        for name, points in paths.items():
            runs = [follow_in_process('hexapod', model, np.asarray(points, dtype=np.float64), planner,
                                      k, h, seed) for seed in args.seeds]
            bl = spec.body_length
            print(f'{planner:16s} {name:14s} {np.mean([r.mean_cross_track_m for r in runs]) / bl:11.3f} '
                  f'{max(r.max_cross_track_m for r in runs) / bl:10.3f} '
                  f'{np.mean([r.completion for r in runs]):10.2f} {np.mean([r.steps for r in runs]):6.0f} '
                  f'{np.mean([r.mean_solve_time_s for r in runs]) * 1e3:8.1f}', flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
