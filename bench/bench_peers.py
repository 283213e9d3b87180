"""mbmf_ros's planners beside the libraries a user would otherwise pick, on the same torch MLP, (K, H), reward and
thread count, in one process, with this machine's matmul ceiling measured in the same run.

Peers: pytorch-mppi 0.9.1 (``MPPI``) and mbrl-lib 0.2.0 (``CEMOptimizer``, ``MPPIOptimizer``, ``ICEMOptimizer``).
They run in the bench-only venv of ``make bench-peers`` (never the product's: mbrl pins gymnasium 0.26 and
hydra 1.0); mbmf_ros is imported from this source tree. Each peer gets the model and reward the way its API
takes them: pytorch-mppi a ``dynamics(state, action)`` and ``running_cost(state, action)`` (minimised: minus
our reward; the previous state is remembered by the dynamics wrapper, as the progress term needs it), mbrl an
``obj_fun(action_sequences (K, H, A)) -> (K,)`` that rolls ``DynamicsModel.predict`` and sums the reward. The
work per plan is the same K x H rows of the MLP for every pair compared (CEM and iCEM: the same total over
their iterations). Times are interleaved, best of the repeats (median beside it).

    make bench-peers && PYTHONPATH=. .venv-peers/bin/python bench/bench_peers.py --quick
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (add_clock_argument, header_lines, interleaved, measure_peaks, mlp_flops,  # noqa: E402
                    model_dims, set_clock, start_state, table)

from mbmf_ros.core.agents import get_agent  # noqa: E402
from mbmf_ros.core.planners import make_planner  # noqa: E402
from mbmf_ros.core.tasks import TrajectoryFollowingTask  # noqa: E402
from mbmf_ros.core.waypoints import WaypointPath  # noqa: E402
from mbmf_ros.graphs import default_model_path, resolve_path  # noqa: E402
from mbmf_ros.io.checkpoint import load_checkpoint  # noqa: E402


def sum_rewards(model, task, state, actions):
    """The rollout a user writes around ``predict``: (K, H, A) -> summed reward (K,)."""
    K, H, _ = actions.shape
    s = state.expand(K, -1)
    total = torch.zeros(K)
    for t in range(H):
        nxt = model.predict(s, actions[:, t])[0]
        total += task.reward(s.unsqueeze(0), actions[:, t], nxt.unsqueeze(0))[0]
        s = nxt
    return total


def peers(model, task, state, K, H, A, iterations_cem=4):
    """{name: (plan callable, rows of the MLP per plan)} of the peers that import; {name: reason} of the rest."""
    out, missing = {}, {}
    try:
        from pytorch_mppi import MPPI

        prev = {}

        def dynamics(s, u):
            prev['s'] = s
            return model.predict(s, u)[0]

        def running_cost(s_next, u):
            return -task.reward(prev['s'].unsqueeze(0), u, s_next.unsqueeze(0))[0]

        mppi = MPPI(dynamics, running_cost, state.shape[0], noise_sigma=0.25 * torch.eye(A), num_samples=K,
                    horizon=H, lambda_=0.1, u_min=-torch.ones(A), u_max=torch.ones(A))
        out['pytorch-mppi MPPI'] = (lambda: mppi.command(state), K * H)
    except Exception as e:  # noqa: BLE001 - report why a peer could not run
        missing['pytorch-mppi'] = f'{type(e).__name__}: {e}'
    try:
        import mbrl.planning as mp
        lb, ub = [[-1.0] * A] * H, [[1.0] * A] * H
        obj = lambda acts: sum_rewards(model, task, state, acts)  # noqa: E731
        x0 = torch.zeros(H, A)
        n = K // iterations_cem
        cem = mp.CEMOptimizer(iterations_cem, 0.1, n, lb, ub, 0.1, torch.device('cpu'))
        out['mbrl CEMOptimizer'] = (lambda: cem.optimize(obj, x0), iterations_cem * n * H)
        mppi_m = mp.MPPIOptimizer(1, K, 10.0, 0.5, 0.6, lb, ub, torch.device('cpu'))
        out['mbrl MPPIOptimizer'] = (lambda: mppi_m.optimize(obj, x0), K * H)
        g, it = 1.25, 3
        n0 = int(round(K / sum(g ** -i for i in range(it))))
        icem = mp.ICEMOptimizer(it, 0.1, n0, g, 2.0, lb, ub, 0.3, 0.1, torch.device('cpu'))
        rows = sum(max(math.ceil(n0 * g ** -i), 2 * math.ceil(n0 * 0.1)) for i in range(it))
        out['mbrl ICEMOptimizer'] = (lambda: icem.optimize(obj, x0), rows * H)
    except Exception as e:  # noqa: BLE001
        missing['mbrl'] = f'{type(e).__name__}: {e}'
    return out, missing


# Which of ours each peer is compared with.
PAIRS = {'pytorch-mppi MPPI': 'mppi', 'mbrl MPPIOptimizer': 'mppi', 'mbrl CEMOptimizer': 'cem',
         'mbrl ICEMOptimizer': 'icem'}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='fewer repeats')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--configs', nargs='+', default=['1000x10', '5000x5'], help='K x H pairs')
    ap.add_argument('--repeats', type=int, default=10)
    add_clock_argument(ap)
    args = ap.parse_args()
    if args.quick:
        args.repeats = 3
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    spec = get_agent('hexapod')
    model, _ = load_checkpoint(resolve_path(default_model_path('hexapod')), agent='hexapod')
    model.eval()
    peaks = measure_peaks()
    print('## Peers: same model, (K, H), reward and threads\n')
    print(header_lines(peaks))
    print(f'- model: the shipped hexapod model, MLP {model_dims(model)}; trajectory-following reward '
          f'(0.5 m lookahead); {args.threads} thread(s); best of {args.repeats} interleaved repeats\n')
    state_np = start_state(spec)
    state = torch.as_tensor(state_np)
    path = WaypointPath([[0, 0], [1.0, 0], [1.0, 1.0]])
    A = spec.action_dim
    rows_all, ratios = [], []
    for cfg in args.configs:
        K, H = (int(v) for v in cfg.split('x'))
        task = TrajectoryFollowingTask(path, lookahead_m=0.5)
        task.update(state_np)
        ours = {}
        for name in ('random_shooting', 'mppi', 'cem', 'icem'):
            for prec in ('float32', 'bfloat16'):
                p = make_planner(name, A, H, K, seed=0, precision=prec, device='cpu')
                ours[f'mbmf_ros {name} {prec}'] = (lambda p=p: p.plan(model, task, state_np), K * H)
            # The same planner on torch.addmm (the BLAS the peers' torch MLP runs on): what the rest of our
            # rollout is worth without oneDNN's faster kernel.
            p = make_planner(name, A, H, K, seed=0, device='cpu', kernel='blas')
            ours[f'mbmf_ros {name} float32, kernel blas'] = (lambda p=p: p.plan(model, task, state_np), K * H)
        theirs, missing = peers(model, task, state, K, H, A)
        variants = {**ours, **theirs}
        res = interleaved({k: v[0] for k, v in variants.items()}, args.repeats)
        flops = {k: mlp_flops(model_dims(model), v[1]) for k, v in variants.items()}
        rows = []
        for k, r in res.items():
            gf = flops[k] / r['best'] / 1e9
            ratio = ''
            if k in theirs:
                mine = res[f'mbmf_ros {PAIRS[k]} float32']['best']
                mine16 = res[f'mbmf_ros {PAIRS[k]} bfloat16']['best']
                blas = res[f'mbmf_ros {PAIRS[k]} float32, kernel blas']['best']
                ratio = f'{mine / r["best"]:.2f} (bf16 {mine16 / r["best"]:.2f}; kernel blas {blas / r["best"]:.2f})'
                ratios.append({'peer': k, 'K': K, 'H': H, 'float32': mine / r['best'], 'bfloat16': mine16 / r['best'],
                               'float32_blas': blas / r['best']})
            rows.append([f'{K}x{H}', k, f'{r["best"] * 1e3:.1f}', f'{r["median"] * 1e3:.1f}', f'{gf:.0f}',
                         f'{100 * gf / peaks["f32"]:.0f}%', ratio])
        rows_all += rows
        for k, why in missing.items():
            rows_all.append([f'{K}x{H}', k, 'could not run', why, '', '', ''])
    print(table(['K x H', 'planner', 'ms/plan (best)', 'median', 'GFLOP/s (MLP)', 'of f32 peak',
                 'ours / theirs (time)'], rows_all))
    print('\nours / theirs < 1: mbmf_ros is faster (0.25 = four times faster). mbmf_ros mppi and cem are compared '
          'with the peer of the same method at the same MLP work per plan. "kernel blas": our planner on '
          'torch.addmm, the kernel the peers\' torch MLP runs on, instead of oneDNN\'s inner products (core.rollout).')
    # The figures README.md quotes, for bench/run_all.py (an HTML comment: invisible in results.md).
    print(f'\n<!-- headline {json.dumps({"threads": args.threads, "clock": args.clock, "ratios": ratios})} -->')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
