"""Following quality against compute: which planner reaches the demo's tracking with the least work (no ROS).

The simulated hexapod follows the example paths of config/paths/ (and a 127-degree corner) with the shipped
model, in one process (`mbmf-ros follow` runs the same pieces as nodes; this loop only leaves out DDS). Tables:
1. per planner (random shooting, CEM, MPPI, iCEM) and K (default 50, 100, 200, 500; H = 10): mean and worst
   cross-track error in body lengths, worst completion, steps to the end of the U-turn, ms per plan, and
   whether it matches the demo's tracking (random shooting at K = 500, the demo's setting) on every path:
   mean cross-track no worse than the demo's + 0.01 BL and completion no lower than the demo's - 0.01;
2. the cheapest planner that matches it (fewest model rows per plan, then least time);
3. bfloat16 against float32 over the same follow runs: at every step a bfloat16 twin of the float32 planner
   (same random numbers, same warm start) plans from the same state; the share of steps whose first action
   agrees (identical, and within 0.05 of the [-1, 1] range), and the twin's own follow runs.

    .venv/bin/python bench/bench_follow.py --quick
    .venv/bin/python bench/bench_follow.py --num-samples 50 100 200 500 --seeds 0 1
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header_lines, table  # noqa: E402

from mbmf_ros.core.agents import get_agent  # noqa: E402
from mbmf_ros.core.planners import PLANNERS, make_planner  # noqa: E402
from mbmf_ros.graphs import config_dir, default_model_path, resolve_path  # noqa: E402
from mbmf_ros.io.checkpoint import load_checkpoint  # noqa: E402
from mbmf_ros.sim.closed_loop import follow_in_process  # noqa: E402

EXTRA_PATHS = {'corner_127deg': [[0.0, 0.0], [0.4, 0.0], [0.1, 0.25]]}
DEMO = ('random_shooting', 500)
CTE_SLACK_BL, COMPLETION_SLACK = 0.01, 0.01


class Twin:
    """Plans with ``main``; before each plan copies main's random state and warm start into ``twin`` (another
    precision) and records whether the twin's first action agrees."""

    def __init__(self, main, twin):
        self.main, self.twin = main, twin
        self.identical = self.close = self.steps = 0
        self.max_diff = 0.0

    def plan(self, model, task, state):
        self.twin.generator.set_state(self.main.generator.get_state())
        for attr in ('_previous', '_elites'):
            if hasattr(self.main, attr):
                setattr(self.twin, attr, copy.deepcopy(getattr(self.main, attr)))
        ours = self.twin.plan(model, task, state).action
        result = self.main.plan(model, task, state)
        diff = float(np.abs(ours - result.action).max())
        self.steps += 1
        self.identical += diff < 1e-6
        self.close += diff <= 0.05
        self.max_diff = max(self.max_diff, diff)
        return result


def run(model, paths, planner, K, H, seeds, **kw):
    """{path: [LoopResult per seed]}"""
    return {name: [follow_in_process('hexapod', model, np.asarray(pts, dtype=np.float64), planner, K, H, seed, **kw)
                   for seed in seeds] for name, pts in paths.items()}


def summary(runs, bl):
    per_path = {n: (np.mean([r.mean_cross_track_m for r in rs]) / bl, min(r.completion for r in rs))
                for n, rs in runs.items()}
    allr = [r for rs in runs.values() for r in rs]
    return {'per_path': per_path,
            'mean_cte': np.mean([v[0] for v in per_path.values()]),
            'worst_cte': max(v[0] for v in per_path.values()),
            'worst_completion': min(v[1] for v in per_path.values()),
            'u_turn_steps': np.mean([r.steps for r in runs['u_turn']]) if 'u_turn' in runs else float('nan'),
            'ms': np.mean([r.mean_solve_time_s for r in allr]) * 1e3}


def matches(s, demo):
    return all(s['per_path'][n][0] <= demo['per_path'][n][0] + CTE_SLACK_BL
               and s['per_path'][n][1] >= demo['per_path'][n][1] - COMPLETION_SLACK for n in demo['per_path'])


def rows_per_plan(name, K, H):
    """MLP rows a plan evaluates: K x H for all (MPPI: + H for its recombined plan)."""
    return K * H + (H if name == 'mppi' else 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='two paths, K 100 and 500, one seed')
    ap.add_argument('--planners', nargs='+', default=list(PLANNERS), choices=list(PLANNERS))
    ap.add_argument('--num-samples', type=int, nargs='+', default=[50, 100, 200, 500])
    ap.add_argument('--horizon', type=int, default=10)
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--agreement-samples', type=int, default=500, help='K of the bfloat16 comparison')
    ap.add_argument('--parts', nargs='+', default=['sweep', 'agreement'], choices=['sweep', 'agreement'])
    ap.add_argument('--agreement-planners', nargs='+', default=list(PLANNERS), choices=list(PLANNERS))
    ap.add_argument('--refine-fraction', type=float, help='of the bfloat16 twin (default: config/planners.yaml)')
    ap.add_argument('--refine-margin', type=float, help='of the bfloat16 twin (default: config/planners.yaml)')
    ap.add_argument('--paths', nargs='+', help='only these paths (names in config/paths/ or corner_127deg)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_agent('hexapod')
    bl = spec.body_length
    model, _ = load_checkpoint(resolve_path(default_model_path('hexapod')), agent='hexapod')
    paths = {p.stem: yaml.safe_load(p.read_text())['waypoints'] for p in sorted(config_dir().glob('paths/*.yaml'))}
    paths.update(EXTRA_PATHS)
    if args.quick:
        paths = {k: paths[k] for k in ('u_turn', 'corner_127deg')}
        args.num_samples = [100, 500]
    if args.paths:
        unknown = sorted(set(args.paths) - set(paths))
        if unknown:
            raise SystemExit(f'bench_follow: unknown paths {unknown}; expected some of {sorted(paths)}')
        paths = {k: paths[k] for k in args.paths}
    H = args.horizon
    print('## Tracking against compute (hexapod, shipped model, simulated)\n')
    print(header_lines())
    print(f'- paths: {", ".join(paths)}; H={H}; seeds {args.seeds}; {args.threads} thread(s); float32\n')
    t0 = time.time()
    results = {}
    if 'sweep' in args.parts:
        sweep(args, model, paths, results, bl, t0)
    if 'agreement' in args.parts:
        agreement(args, model, paths, results, spec, bl, t0)
    return 0


def sweep(args, model, paths, results, bl, t0):
    H = args.horizon
    demo = summary(run(model, paths, DEMO[0], DEMO[1], H, args.seeds), bl)
    results[DEMO] = demo
    for name in args.planners:
        for K in args.num_samples:
            if (name, K) not in results:
                results[(name, K)] = summary(run(model, paths, name, K, H, args.seeds), bl)
            print(f'  ... {name} K={K} done ({time.time() - t0:.0f} s)', file=sys.stderr, flush=True)
    rows = []
    for (name, K), s in sorted(results.items(), key=lambda kv: (list(PLANNERS).index(kv[0][0]), kv[0][1])):
        rows.append([name, K, f'{s["mean_cte"]:.3f}', f'{s["worst_cte"]:.3f}', f'{s["worst_completion"]:.2f}',
                     f'{s["u_turn_steps"]:.0f}', f'{s["ms"]:.1f}', 'yes' if matches(s, demo) else 'no'])
    print('### Every planner and K\n')
    print(f'demo = {DEMO[0]} K={DEMO[1]}; "matches" = on every path mean cross-track <= the demo\'s + '
          f'{CTE_SLACK_BL} BL and completion >= the demo\'s - {COMPLETION_SLACK}\n')
    print(table(['planner', 'K', 'mean CTE (BL), mean over paths', 'worst path mean CTE (BL)',
                 'worst completion', 'U-turn steps', 'ms/plan', 'matches the demo'], rows))
    ok = [(rows_per_plan(n, K, H), s['ms'], n, K) for (n, K), s in results.items() if matches(s, demo)]
    print('\n### The cheapest planner that matches the demo\'s tracking\n')
    if ok:
        work, ms, n, K = min(ok)
        s = results[(n, K)]
        print(f'**{n} at K={K}** (H={H}): {work} model rows per plan against the demo\'s '
              f'{rows_per_plan(*DEMO, H)} ({rows_per_plan(*DEMO, H) / work:.1f}x less work), {ms:.1f} ms per plan '
              f'against {demo["ms"]:.1f}; mean cross-track {s["mean_cte"]:.3f} BL (demo {demo["mean_cte"]:.3f}), '
              f'worst completion {s["worst_completion"]:.2f} (demo {demo["worst_completion"]:.2f}), U-turn in '
              f'{s["u_turn_steps"]:.0f} steps (demo {demo["u_turn_steps"]:.0f}).')
        fastest = min(ok, key=lambda t: t[1])
        if fastest[2:] != (n, K):
            print(f'\nLeast time among those that match: {fastest[2]} at K={fastest[3]}, {fastest[1]:.1f} ms/plan.')
    else:
        print('none of the planners and K tried matches the demo (besides the demo itself)')


def agreement(args, model, paths, results, spec, bl, t0):
    H = args.horizon
    print('\n### bfloat16 against float32 over real follow runs\n')
    K = args.agreement_samples
    refine = {k: v for k, v in (('refine_fraction', args.refine_fraction), ('refine_margin', args.refine_margin))
              if v is not None}
    rows = []
    for name in args.agreement_planners:
        for seed in args.seeds:
            twins = []
            for pname, pts in paths.items():
                main_p = make_planner(name, spec.action_dim, H, K, seed, precision='float32')
                twin_p = make_planner(name, spec.action_dim, H, K, seed, precision='bfloat16', **refine)
                tw = Twin(main_p, twin_p)
                follow_in_process('hexapod', model, np.asarray(pts, dtype=np.float64), tw, K, H, seed)
                twins.append(tw)
            steps = sum(t.steps for t in twins)
            own = summary(run(model, paths, name, K, H, [seed], precision='bfloat16'), bl)
            f32 = results.get((name, K)) or summary(run(model, paths, name, K, H, [seed]), bl)
            rows.append([name, K, seed, steps, f'{100 * sum(t.identical for t in twins) / steps:.1f}%',
                         f'{100 * sum(t.close for t in twins) / steps:.1f}%',
                         f'{max(t.max_diff for t in twins):.3f}',
                         f'{own["mean_cte"]:.3f} / {f32["mean_cte"]:.3f}',
                         f'{own["worst_completion"]:.2f} / {f32["worst_completion"]:.2f}',
                         f'{own["ms"]:.1f} / {f32["ms"]:.1f}'])
            print(f'  ... agreement {name} seed {seed} done ({time.time() - t0:.0f} s)', file=sys.stderr, flush=True)
    print(f'K={K}, H={H}; at every step of the float32 run a bfloat16 twin plans from the same state with the same '
          f'random numbers and warm start{"; twin settings " + str(refine) if refine else ""}.\n')
    print(table(['planner', 'K', 'seed', 'steps compared', 'first action identical', 'within 0.05',
                 'largest difference', 'bf16 / f32 mean CTE (BL)', 'bf16 / f32 worst completion',
                 'bf16 / f32 ms/plan'], rows))


if __name__ == '__main__':
    raise SystemExit(main())
