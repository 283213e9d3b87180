"""Planning speed against this machine's matmul ceiling, measured in the same run (no ROS).

Tables (markdown):
1. random shooting per agent at the paper's (K, H): the reference rollout (``model.predict`` and
   ``task.reward`` per step, what the planners did before core.rollout), the fast float32 rollout and the
   bfloat16 one; ms per plan, the MLP's achieved GFLOP/s and its share of the float32 matmul peak, and the
   share of the agent's control period a plan takes;
2. every planner (random shooting, CEM, MPPI, iCEM) in float32 and bfloat16 at the hexapod's K=1000 H=10, and
   with an ensemble of 5;
3. the trajectory reward's cost against the path's number of waypoints;
4. on a machine with CUDA: the paper's largest settings on the GPU against their control periods.
Timings are interleaved (one repeat of every variant in turn), best of the repeats with the median beside it;
the ceiling is the best square matmul of this run (bench/common.py).

    .venv/bin/python bench/bench_planners.py --quick
    .venv/bin/python bench/bench_planners.py --threads 2 --repeats 20
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_clock_argument, header_lines, interleaved, measure_peaks, mlp_flops,  # noqa: E402
                    model_dims, set_clock, start_state, table)

from mbmf_ros.core.agents import get_agent  # noqa: E402
from mbmf_ros.core.dynamics import DynamicsModel  # noqa: E402
from mbmf_ros.core.planners import PLANNERS, make_planner  # noqa: E402
from mbmf_ros.core.rollout import (chunk_spans, default_chunk_rows, onednn_linear, pack_linear_weight,  # noqa: E402
                                   resolve_kernel, worker_pool)
from mbmf_ros.core.tasks import MovingForwardTask, TrajectoryFollowingTask  # noqa: E402
from mbmf_ros.core.waypoints import WaypointPath  # noqa: E402
from mbmf_ros.graphs import default_model_path, resolve_path  # noqa: E402
from mbmf_ros.io.checkpoint import load_checkpoint  # noqa: E402

# (agent, K, H): the paper's appendix settings for the MuJoCo agents, the hexapod at its follow defaults.
AGENT_CONFIGS = [('hexapod', 1000, 10), ('hexapod', 500, 10), ('swimmer', 5000, 5), ('half_cheetah', 1000, 10),
                 ('ant', 7000, 15)]
GPU_CONFIGS = [('ant', 7000, 15), ('ant', 15000, 5), ('half_cheetah', 15000, 5)]


class Reference:
    """Hides a DynamicsModel's layers: the planner then rolls it step by step through ``predict``."""

    def __init__(self, model):
        self.inner, self.num_members = model, model.num_members

    def predict(self, s, a):
        return self.inner.predict(s, a)


def agent_setup(agent: str, members: int = 1, device='cpu'):
    """(spec, model, task, state): the shipped model for the hexapod (trajectory following), a 2x500 MLP for the
    others (moving forward; the timing does not depend on the weights)."""
    spec = get_agent(agent)
    state = start_state(spec)
    if agent == 'hexapod' and members == 1:
        model, _ = load_checkpoint(resolve_path(default_model_path('hexapod')), agent='hexapod')
        task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1.0, 0], [1.0, 1.0]]), lookahead_m=0.5)
    else:
        torch.manual_seed(0)
        model = DynamicsModel(spec.state_names, spec.action_names, (500, 500), num_members=members, agent=agent)
        task = (TrajectoryFollowingTask(WaypointPath([[0, 0], [1.0, 0], [1.0, 1.0]]), lookahead_m=0.5)
                if agent == 'hexapod' else MovingForwardTask.for_agent(spec))
    task.update(state)
    return spec, model.eval().to(device), task, state


def matmuls_only(model, K: int, H: int, precision: str):
    """The floor of a rollout: the MLP's three layers (bias and ReLU fused or in place) over K x H rows, in the
    chunks, on the worker threads and with the kernel the rollout uses (core.rollout: oneDNN where torch has it,
    else addmm), nothing else. What a plan takes beyond it is sampling, the state update, the reward and
    bookkeeping."""
    dt = torch.float32 if precision == 'float32' else torch.bfloat16
    onednn = resolve_kernel('auto', torch.device('cpu')) == 'onednn'
    ws = [layer.weight.detach()[0].to(dt) for layer in model.layers]          # (in, out)
    bs = [layer.bias.detach()[0, 0].to(dt) for layer in model.layers]
    rows = default_chunk_rows('onednn' if onednn else 'blas', dt)
    wts = [pack_linear_weight(w.t().contiguous(), rows) for w in ws]       # (out, in), packed as the rollout's
    spans = chunk_spans(K, rows, torch.get_num_threads())
    c = max(k1 - k0 for k0, k1 in spans)
    workers = min(torch.get_num_threads(), len(spans))
    scratch = [(torch.randn(c, ws[0].shape[0]).to(dt), [torch.empty(c, w.shape[1], dtype=dt) for w in ws])
               for _ in range(workers)]
    last = len(ws) - 1

    def chunks(mine, x, hs):
        with torch.inference_mode():
            for k0, k1 in mine:
                for _ in range(H):
                    h = x[:k1 - k0]
                    for i, (w, wt, b) in enumerate(zip(ws, wts, bs)):
                        if onednn:
                            h = onednn_linear(h, wt, b, 'none' if i == last else 'relu')
                            continue
                        torch.addmm(b, h, w, out=hs[i][:k1 - k0])
                        h = hs[i][:k1 - k0]
                        if i < last:
                            h.relu_()

    def run():
        if workers == 1:
            return chunks(spans, *scratch[0])
        futures = [worker_pool(workers).submit(chunks, spans[i::workers], *scratch[i]) for i in range(workers)]
        for f in futures:
            f.result()
    return run


def speed_table(configs, repeats, peaks, headline):
    rows = []
    for agent, K, H in configs:
        spec, model, task, state = agent_setup(agent)
        v = {}
        ref = Reference(model)
        p_ref = make_planner('random_shooting', spec.action_dim, H, K, seed=0)
        v['reference (predict per step)'] = lambda p=p_ref: p.plan(ref, task, state)
        for prec in ('float32', 'bfloat16'):
            p = make_planner('random_shooting', spec.action_dim, H, K, seed=0, precision=prec)
            v[prec] = lambda p=p: p.plan(model, task, state)
        p = make_planner('random_shooting', spec.action_dim, H, K, seed=0, kernel='blas')
        v['float32, BLAS addmm (kernel: blas)'] = lambda p=p: p.plan(model, task, state)
        for prec in ('float32', 'bfloat16'):
            v[f'{prec}: its matmuls alone'] = matmuls_only(model, K, H, prec)
        res = interleaved(v, repeats)
        flops = mlp_flops(model_dims(model), K * H)
        period_ms = spec.dt * 1e3
        for k, r in res.items():
            gf = flops / r['best'] / 1e9
            if k in ('float32', 'bfloat16'):
                headline['random_shooting'].append({'agent': agent, 'K': K, 'H': H, 'precision': k,
                                                    'ms': r['best'] * 1e3, 'of_peak': gf / peaks['f32']})
            rows.append([agent, f'{K}x{H}', k, f'{r["best"] * 1e3:.1f}', f'{r["median"] * 1e3:.1f}', f'{gf:.0f}',
                         f'{100 * gf / peaks["f32"]:.0f}%',
                         f'{res["reference (predict per step)"]["best"] / r["best"]:.2f}',
                         f'{r["best"] * 1e3 / period_ms:.2f} of {period_ms:.0f} ms'])
    return table(['agent', 'K x H', 'rollout', 'ms/plan (best)', 'median', 'GFLOP/s (MLP)', 'of f32 peak',
                  'speed-up vs reference', 'of control period'], rows)


def planners_table(K, H, members_list, repeats, peaks, headline):
    rows = []
    for members in members_list:
        spec, model, task, state = agent_setup('hexapod', members)
        v = {}
        for name in PLANNERS:
            for prec in ('float32', 'bfloat16'):
                p = make_planner(name, spec.action_dim, H, K, seed=0, precision=prec)
                v[(name, prec)] = lambda p=p: p.plan(model, task, state)
        res = interleaved(v, repeats)
        for (name, prec), r in res.items():
            # MPPI predicts its recombined plan once more (1 row per step), iCEM evaluates ~K in all.
            flops = mlp_flops(model_dims(model), K * H, members)
            gf = flops / r['best'] / 1e9
            f32 = res[(name, 'float32')]['best']
            if members == 1:
                headline['planners'].append({'planner': name, 'precision': prec, 'ms': r['best'] * 1e3,
                                             'speedup': f32 / r['best']})
            rows.append([members, name, prec, f'{r["best"] * 1e3:.1f}', f'{r["median"] * 1e3:.1f}', f'{gf:.0f}',
                         f'{100 * gf / peaks["f32"]:.0f}%', f'{f32 / r["best"]:.2f}'])
    return table(['E', 'planner', 'precision', 'ms/plan (best)', 'median', 'GFLOP/s (MLP)', 'of f32 peak',
                  'speed-up vs float32'], rows)


def path_table(K, H, counts, repeats, headline):
    """The same 3-segment geometry resampled to n waypoints, and n waypoints along a curve: the planner's cost
    against n (the reward measures against the path through fewer waypoints, core.waypoints.simplify)."""
    spec, model, _, state = agent_setup('hexapod')
    # 2 m legs: 5000 waypoints are then 1.2 mm apart (closer ones would be merged, waypoints.validate_path).
    corners = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [4.0, 2.0]])
    paths = {}
    for n in counts:
        if n == len(corners):
            paths[(n, 'polyline')] = corners
        else:
            per = max(1, (n - 1) // 3)
            paths[(n, 'polyline')] = np.concatenate(
                [np.linspace(corners[i], corners[i + 1], per, endpoint=False) for i in range(3)] + [corners[-1:]])
    # A half circle of 2 m radius from the start, a left turn: no waypoint lies on a straight stretch.
    theta = np.linspace(0.0, np.pi, max(counts))
    paths[(max(counts), 'half circle, r = 2 m')] = 2.0 * np.stack([np.sin(theta), 1.0 - np.cos(theta)], 1)
    v, windows, given = {}, {}, {}
    for key, pts in paths.items():
        path = WaypointPath(pts)
        given[key] = len(path)              # after merging waypoints closer than 1 mm (waypoints.validate_path)
        task = TrajectoryFollowingTask(path, lookahead_m=0.5)
        task.update(state)
        windows[key] = len(task._window[0])
        p = make_planner('random_shooting', spec.action_dim, H, K, seed=0)
        v[key] = lambda p=p, task=task: p.plan(model, task, state)
    res = interleaved(v, repeats)
    base = res[(len(corners), 'polyline')]['best']
    headline['paths'] = [{'waypoints': given[key], 'path': key[1], 'cost': r['best'] / base} for key, r in res.items()]
    rows = [[given[(n, shape)], shape, windows[(n, shape)], f'{r["best"] * 1e3:.1f}', f'{r["median"] * 1e3:.1f}',
             f'{r["best"] / base:.2f}'] for (n, shape), r in res.items()]
    return table(['waypoints', 'path', 'segments in the reward\'s window', 'ms/plan (best)', 'median',
                  'cost vs 4 waypoints'], rows)


def gpu_table(repeats):
    if not torch.cuda.is_available():
        return 'No CUDA device in this run: the GPU rows are measured only on a machine with one (device: cuda).'
    rows = []
    for agent, K, H in GPU_CONFIGS:
        spec, model, task, state = agent_setup(agent, device='cuda')
        v = {}
        for prec in ('float32', 'bfloat16'):
            p = make_planner('random_shooting', spec.action_dim, H, K, seed=0, precision=prec, device='cuda')
            v[prec] = lambda p=p: (p.plan(model, task, state), torch.cuda.synchronize())
        res = interleaved(v, repeats)
        for prec, r in res.items():
            rows.append([agent, f'{K}x{H}', prec, f'{r["best"] * 1e3:.1f}', f'{r["median"] * 1e3:.1f}',
                         f'{r["best"] / spec.dt:.2f} of {spec.dt * 1e3:.0f} ms'])
    return (f'GPU: {torch.cuda.get_device_name(0)}\n\n'
            + table(['agent', 'K x H', 'precision', 'ms/plan (best)', 'median', 'of control period'], rows))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='hexapod only, few repeats')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=10)
    add_clock_argument(ap)
    args = ap.parse_args()
    configs = AGENT_CONFIGS
    if args.quick:
        args.repeats, configs = 3, AGENT_CONFIGS[:2]
    torch.set_num_threads(args.threads)
    set_clock(args.clock)
    peaks = measure_peaks()
    print('## Planning speed against the machine\'s ceiling\n')
    print(header_lines(peaks))
    print(f'- best of {args.repeats} interleaved repeats; GFLOP/s count the MLP\'s multiply-adds over the whole '
          f'plan time (sampling, reward and bookkeeping included)\n')
    headline = {'threads': args.threads, 'clock': args.clock, 'peak_f32': peaks['f32'], 'peak_bf16': peaks['bf16'],
                'random_shooting': [], 'planners': []}
    print('### Random shooting per agent: reference rollout, float32, bfloat16\n')
    print(speed_table(configs, args.repeats, peaks, headline))
    print('\n### Every planner, hexapod K=1000 H=10 (E: ensemble members)\n')
    print(planners_table(1000, 10, [1] if args.quick else [1, 5], args.repeats, peaks, headline))
    print('\n### Path length: random shooting K=1000 H=10, the same 3-segment path with more waypoints, and a '
          'curve\n')
    print(path_table(1000, 10, [4, 1000] if args.quick else [4, 1000, 5000], args.repeats, headline))
    print('\n### GPU\n')
    print(gpu_table(args.repeats))
    # The figures README.md quotes, for bench/run_all.py (an HTML comment: invisible in results.md).
    print(f'\n<!-- headline {json.dumps(headline)} -->')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
