"""Training throughput of the dynamics model (no ROS): transitions/s through train_dynamics.

Synthetic transitions in the hexapod's layout (20-D state, 2-D action); the full training loop of
mbmf_ros.core.training (noise, Adam, batch 512, per-epoch validation) for: the paper's 2 x 500 in float32,
2 x 500 with bfloat16 autocast, the public code's 1 x 500, and an ensemble of 5 x (2 x 500); each at 1 and
2 threads. Also the bag reading rate (transitions/s from an MCAP bag) and the Eq. 3 validation time.
Ratios are against 2 x 500 float32 at the same thread count.

    .venv/bin/python bench/bench_training.py --quick
    .venv/bin/python bench/bench_training.py --transitions 100000 --epochs 3
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from mbmf_ros.core.agents import get_agent
from mbmf_ros.core.training import TrainConfig, h_step_errors, train_dynamics


def synthetic(n_traj: int, T: int, S: int, A: int, seed: int = 0):
    names = get_agent('hexapod').state_names
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(S - 3, A))
    out = []
    for _ in range(n_traj):
        s = np.zeros((T + 1, S))
        a = rng.uniform(-1, 1, (T, A)).astype(np.float32)
        for t in range(T):
            s[t + 1, :3] = s[t, :3] + 0.01 * rng.normal(size=3)
            s[t + 1, 3:] = 0.9 * s[t, 3:] + 0.1 * np.tanh(W @ a[t])
        out.append(SimpleNamespace(states=s, actions=a, state_names=names[:S], action_names=('left', 'right')[:A]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='small run (~30 s)')
    ap.add_argument('--transitions', type=int, default=50000)
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    args = ap.parse_args()
    if args.quick:
        args.transitions, args.epochs = 10240, 1
    spec = get_agent('hexapod')
    S, A = spec.state_dim, spec.action_dim
    T = 200
    trajs = synthetic(max(2, args.transitions // T), T, S, A)
    val = synthetic(5, T, S, A, seed=1)
    n = sum(len(t.actions) for t in trajs)
    variants = [('2x500 f32', dict(hidden_sizes=(500, 500))),
                ('2x500 bf16', dict(hidden_sizes=(500, 500), bf16=True)),
                ('1x500 f32', dict(hidden_sizes=(500,))),
                ('5 x 2x500 ensemble f32', dict(hidden_sizes=(500, 500), num_members=5))]
    print(f'training throughput, {n} transitions x {args.epochs} epoch(s), batch 512, hexapod layout '
          f'({S}-D state, {A}-D action)')
    print(f'{"threads":>7}  {"model":<24} {"transitions/s":>14} {"ratio":>7}')
    for th in args.threads:
        base = None
        for name, kw in variants:
            cfg = TrainConfig(epochs=args.epochs, threads=th, horizons=(1,), max_validation_starts=100, **kw)
            # warm-up run (allocator, oneDNN kernels), then the measured one
            train_dynamics(trajs[:2], val[:1], dataclass_replace(cfg, epochs=1), progress=False)
            _, m = train_dynamics(trajs, val[:1], cfg, progress=False)
            rate = m['transitions_per_s'] * (cfg.num_members if cfg.num_members > 1 else 1)
            base = base or rate
            unit = ' (member-transitions/s)' if cfg.num_members > 1 else ''
            print(f'{th:>7}  {name:<24} {rate:>14,.0f} {rate / base:>6.2f}x{unit}')
    torch.set_num_threads(max(args.threads))
    model, _ = train_dynamics(trajs[:5], val, TrainConfig(epochs=1, horizons=(1,)), progress=False)
    t0 = time.perf_counter()
    h_step_errors(model, val, (1, 5, 10, 20, 50), max_starts=2000)
    print(f'Eq. 3 validation, H in (1,5,10,20,50), up to 2000 starts each: {time.perf_counter() - t0:.2f} s')
    bag_rate()


def dataclass_replace(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


def bag_rate():
    """Write an MCAP bag of 5000 transitions like the recorder's and time load_trajectories on it."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from mbmf_ros.io.bags import load_trajectories, package_typestore
    spec = get_agent('hexapod')
    ts = package_typestore()
    Ty = ts.types
    with tempfile.TemporaryDirectory() as d:
        w = Writer(Path(d) / 'b', version=9, storage_plugin=StoragePlugin.MCAP)
        w.open()
        cs = w.add_connection('/mbmf/state', 'mbmf_ros/msg/AgentState', typestore=ts)
        ca = w.add_connection('/mbmf/action', 'mbmf_ros/msg/ActionCommand', typestore=ts)
        ns, T = 10**9, 500
        for ep in range(10):
            for step in range(T + 1):
                hdr = Ty['std_msgs/msg/Header'](stamp=Ty['builtin_interfaces/msg/Time'](sec=ns // 10**9,
                                                                                       nanosec=ns % 10**9),
                                                frame_id='odom')
                w.write(cs, ns, ts.serialize_cdr(Ty['mbmf_ros/msg/AgentState'](
                    header=hdr, agent='hexapod', names=list(spec.state_names), values=np.zeros(spec.state_dim),
                    episode=ep, step=step, terminal=step == T, valid=True, flags=[]), 'mbmf_ros/msg/AgentState'))
                if step < T:
                    w.write(ca, ns, ts.serialize_cdr(Ty['mbmf_ros/msg/ActionCommand'](
                        header=hdr, values=np.zeros(2, np.float32), step=step, source='random'),
                        'mbmf_ros/msg/ActionCommand'))
                ns += 50_000_000
        w.close()
        t0 = time.perf_counter()
        _, rep = load_trajectories(Path(d) / 'b')
        dt = time.perf_counter() - t0
    print(f'bag reading: {rep.transitions} transitions in {dt:.2f} s = {rep.transitions / dt:,.0f} transitions/s')


if __name__ == '__main__':
    main()
