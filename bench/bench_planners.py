"""Planning speed of the MPC planners with a real DynamicsModel (no ROS).

Prints milliseconds per plan (median of repeated plans) for random shooting, CEM and MPPI, the share spent
in the model vs. the task reward, and the MLP throughput in GFLOP/s, for the hexapod's state/action layout
with the paper's 2x500 MLP. The control period at 20 Hz is 50 ms: the ratio column says how much of it a
plan uses.

    .venv/bin/python bench/bench_planners.py --quick
    .venv/bin/python bench/bench_planners.py --threads 2 --samples 1000 --horizon 10 4 --repeats 30
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mbmf_ros.core.agents import get_agent
from mbmf_ros.core.dynamics import DynamicsModel
from mbmf_ros.core.planners import PLANNERS, make_planner
from mbmf_ros.core.tasks import TrajectoryFollowingTask
from mbmf_ros.core.waypoints import WaypointPath


class Timed:
    """Wraps a model or task and accumulates the time spent in it."""

    def __init__(self, inner, method):
        self.inner, self.method, self.seconds = inner, method, 0.0
        self.num_members = getattr(inner, 'num_members', 1)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def call(self, *args):
        t0 = time.perf_counter()
        out = getattr(self.inner, self.method)(*args)
        self.seconds += time.perf_counter() - t0
        return out


class TimedModel(Timed):
    def predict(self, s, a):
        return self.call(s, a)


class TimedTask(Timed):
    def reward(self, s, a, n):
        return self.call(s, a, n)


def mlp_flops(model: DynamicsModel, rows: int) -> float:
    dims = (model.in_dim,) + model.hidden_sizes + (model.out_dim,)
    return 2.0 * rows * model.num_members * sum(i * o for i, o in zip(dims[:-1], dims[1:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='few repeats, one horizon (about 20 s)')
    ap.add_argument('--agent', default='hexapod')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--samples', type=int, default=1000)
    ap.add_argument('--horizon', type=int, nargs='+', default=[10, 4])
    ap.add_argument('--members', type=int, nargs='+', default=[1, 5])
    ap.add_argument('--hidden', type=int, nargs='+', default=[500, 500])
    ap.add_argument('--repeats', type=int, default=20)
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.horizon, args.members = 5, [10], [1]
    torch.set_num_threads(args.threads)
    spec = get_agent(args.agent)
    period_ms = spec.dt * 1000.0
    path = WaypointPath([[0, 0], [1.0, 0], [1.0, 1.0]])
    state = np.zeros(spec.state_dim, dtype=np.float32)
    state[spec.state_names.index('z')] = 0.02 if 'z' in spec.state_names else 0.0
    print(f'agent {spec.name}: S={spec.state_dim} A={spec.action_dim}, MLP {args.hidden}, '
          f'{args.threads} thread(s), K={args.samples}, control period {period_ms:.0f} ms')
    print(f'{"planner":16s} {"E":>2s} {"H":>3s} {"ms/plan":>8s} {"model ms":>8s} {"task ms":>8s} '
          f'{"GFLOP/s":>8s} {"of period":>9s}')
    for members in args.members:
        model = DynamicsModel(spec.state_names, spec.action_names, tuple(args.hidden), num_members=members)
        model.eval()
        for H in args.horizon:
            for name in PLANNERS:
                task = TrajectoryFollowingTask(path, lookahead_m=1.0)
                task.update(state)
                planner = make_planner(name, spec.action_dim, H, args.samples, seed=0)
                tm, tt = TimedModel(model, 'predict'), TimedTask(task, 'reward')
                planner.plan(tm, tt, state)          # warm-up (allocations, thread pool)
                tm.seconds = tt.seconds = 0.0
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    planner.plan(tm, tt, state)
                    times.append(time.perf_counter() - t0)
                med = statistics.median(times) * 1e3
                extra = 1 if name == 'mppi' else 0            # MPPI re-predicts its recombined plan
                flops = mlp_flops(model, args.samples * H + extra * H)
                model_ms = tm.seconds / args.repeats * 1e3
                print(f'{name:16s} {members:2d} {H:3d} {med:8.2f} {model_ms:8.2f} '
                      f'{tt.seconds / args.repeats * 1e3:8.2f} {flops / (model_ms * 1e-3) / 1e9:8.1f} '
                      f'{med / period_ms:9.2f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
