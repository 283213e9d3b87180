"""The distilled hexapod path follower against the MPC it replaces and the zero/random baselines, in one run.

Paths: the example paths in config/paths/; paths drawn by hand for this benchmark and never used in training
(HAND_DRAWN: sharp corners both ways up to 175 degrees, U-turns, zig-zags, an S-curve given every centimetre,
starts behind and beside the robot, ...; all at least 0.5 m long: a run is done 5 cm before the end, which
caps a shorter path's completion below 0.9); and HELD_OUT_COUNT random paths of `core.waypoints.training_path`
drawn by one generator seeded HELD_OUT_SEED (training seeds each path with a number below 100 000).
Controllers (in process, no ROS, one torch thread): the MPC of `mbmf-ros follow` (random shooting, the agent's
K and H, the shipped dynamics model), the shipped policy (config/models/hexapod_follow_policy.pt), zero
actions and uniform random actions. Prints mean cross-track error in body lengths, completion, steps and the
time per action of each on each path, the worst policy figures against the targets (mean cross-track < 0.5
BL, completion >= 0.9) and the cost ratio (MPC time per action / policy time per action, over all paths).

    .venv/bin/python bench/bench_policy_follow.py --quick
    .venv/bin/python bench/bench_policy_follow.py [--policy FILE] [--seeds 0 1] [--out results/policy_follower]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import yaml

from mbmf_ros.core.agents import get_agent
from mbmf_ros.core.waypoints import path_length, training_path
from mbmf_ros.graphs import config_dir, default_model_path, default_policy_path, resolve_path
from mbmf_ros.io.checkpoint import load_checkpoint, load_policy
from mbmf_ros.sim.closed_loop import follow_in_process


def _arc(radius, sweep_deg, turn, spacing, start=(0.0, 0.0), heading=0.0):
    """Points of a circular arc (dense waypoints) from ``start`` along ``heading``; turn +1 left, -1 right."""
    sweep = math.radians(sweep_deg)
    centre = np.asarray(start) + radius * turn * np.array([-math.sin(heading), math.cos(heading)])
    n = int(math.ceil(radius * sweep / spacing))
    return [centre + radius * turn * np.array([math.sin(heading + turn * sweep * k / n),
                                               -math.cos(heading + turn * sweep * k / n)]) for k in range(n + 1)]


def _s_curve_dense():
    first = _arc(0.2, 120.0, 1, 0.01)
    second = _arc(0.2, 120.0, -1, 0.01, start=first[-1], heading=math.radians(120.0))
    return np.asarray(first + second[1:]).tolist()


HAND_DRAWN = {
    'zigzag': [[0.0, 0.0], [0.3, 0.15], [0.6, -0.15], [0.9, 0.15]],
    'corner_127deg': [[0.0, 0.0], [0.4, 0.0], [0.1, 0.25]],
    'step': [[0.0, 0.0], [0.4, 0.0], [0.4, -0.3], [0.8, -0.3]],
    'u_turn_right': [[0.0, 0.0], [0.5, 0.0], [0.5, -0.35], [0.0, -0.35]],
    's_curve': [[0.0, 0.0], [0.25, 0.1], [0.45, 0.3], [0.7, 0.35], [0.9, 0.2], [1.05, 0.0]],
    'hairpin_175_left': [[0.0, 0.0], [0.4, 0.0], [0.0, 0.035]],
    'hairpin_175_right': [[0.0, 0.0], [0.4, 0.0], [0.0, -0.035]],
    'corner_150_right': [[0.0, 0.0], [0.35, 0.0], [0.05, -0.17]],
    'stairs_15cm': [[0.0, 0.0], [0.15, 0.0], [0.15, 0.15], [0.3, 0.15], [0.3, 0.3], [0.45, 0.3]],
    'u_turn_tight_left': [[0.0, 0.0], [0.4, 0.0], [0.4, 0.1], [0.0, 0.1]],
    'zigzag_sharp': [[0.0, 0.0], [0.2, 0.0], [0.05, 0.1], [0.25, 0.2], [0.1, 0.3]],
    's_curve_dense': _s_curve_dense(),
    'square_loop': [[0.0, 0.0], [0.4, 0.0], [0.4, 0.4], [0.0, 0.4], [0.0, 0.05]],
    'start_behind': [[-0.2, 0.0], [0.5, 0.0]],
    'start_beside': [[0.0, 0.1], [1.0, 0.1]],
    'start_crossing': [[0.1, -0.2], [0.1, 0.4]],
    'long_straight': [[0.0, 0.0], [1.5, 0.0]],
    # added with the remade policy (recipe of config/mbmf.yaml hexapod_follow), drawn after it was trained
    'corner_150_left': [[0.0, 0.0], [0.35, 0.0], [0.05, 0.17]],
    'hairpin_180_right': [[0.0, 0.0], [0.4, 0.0], [0.4, -0.06], [0.0, -0.06]],
    'square_right': [[0.0, 0.0], [0.3, 0.0], [0.3, -0.3], [0.0, -0.3], [0.0, -0.05]],
}
HELD_OUT_SEED = 1_000_000
HELD_OUT_COUNT = 12


MIN_LENGTH_M = 0.5      # a run is done 5 cm (goal_tolerance_m) before the end: shorter paths end below 0.9


def held_out_paths(count: int = HELD_OUT_COUNT, settings: dict | None = None) -> dict:
    """``count`` random paths of the training generator, at least MIN_LENGTH_M long, drawn with one generator
    seeded HELD_OUT_SEED (training seeds its paths with seeds below 100 000: none of these was trained on)."""
    if settings is None:
        settings = yaml.safe_load((config_dir() / 'mbmf.yaml').read_text())['hexapod_follow']['paths']
    rng, paths = np.random.default_rng(HELD_OUT_SEED), {}
    while len(paths) < count:
        p = training_path(rng, **settings)
        if path_length(p) >= MIN_LENGTH_M:
            paths[f'random_{len(paths):02d}'] = p.tolist()
    return paths


class _Baseline:
    """Zero or uniform random actions, with a policy's interface (``observation``, ``act``)."""

    def __init__(self, observation, kind: str, seed: int):
        self.observation, self.kind = observation, kind
        self.rng = np.random.default_rng(seed)

    def act(self, obs):
        return np.zeros(2) if self.kind == 'zero' else self.rng.uniform(-1.0, 1.0, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='three paths, policy and baselines only (about 1 min)')
    ap.add_argument('--policy', default='', help='policy checkpoint (default: the shipped one)')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--controllers', nargs='+', default=['mpc', 'policy', 'zero', 'random'],
                    choices=['mpc', 'policy', 'zero', 'random'])
    ap.add_argument('--sets', nargs='+', default=['example', 'unseen', 'held_out'],
                    choices=['example', 'unseen', 'held_out'])
    ap.add_argument('--out', default='', help='folder for results.json and trajectories.png')
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = get_agent('hexapod')
    model, _ = load_checkpoint(resolve_path(default_model_path('hexapod')), agent='hexapod')
    policy_file = resolve_path(args.policy or default_policy_path('hexapod'))
    policy, meta = load_policy(policy_file, agent='hexapod', state_names=spec.state_names,
                               observation_kind='path')
    paths = {}
    if 'example' in args.sets:
        paths.update({p.stem: ('example', yaml.safe_load(p.read_text())['waypoints'])
                      for p in sorted(config_dir().glob('paths/*.yaml'))})
    if 'unseen' in args.sets:
        paths.update({k: ('unseen', v) for k, v in HAND_DRAWN.items()})
    if 'held_out' in args.sets:
        paths.update({k: ('held_out', v) for k, v in held_out_paths().items()})
    if args.quick:
        paths = {k: paths[k] for k in ('u_turn', 'corner_127deg', 'hairpin_175_right') if k in paths}
        args.controllers = [c for c in args.controllers if c != 'mpc']
    bl = spec.body_length
    print(f'hexapod; MPC: random_shooting K={spec.planner_defaults["num_samples"]} H={spec.planner_defaults["horizon"]}'
          f'; policy: {policy_file} ({meta.get("env_steps", "?")} env steps of DAgger, hidden '
          f'{list(policy.hidden_sizes)}); 1 thread; seeds {args.seeds}')
    print(f'{"path":18s} {"set":8s} {"controller":10s} {"mean CTE BL":>11s} {"completion":>10s} {"done":>5s} {"steps":>6s} '
          f'{"ms/action":>10s}')
    times = {c: [] for c in args.controllers}
    worst = {'cte': 0.0, 'completion': 1.0, 'cte_path': '', 'completion_path': ''}
    rows, trajectories = [], {}
    for name, (kind, points) in paths.items():
        for label in args.controllers:
            actor = {'mpc': None, 'policy': policy}.get(label)
            runs = [follow_in_process('hexapod', model, np.asarray(points, dtype=np.float64), seed=seed,
                                      policy=actor if label in ('mpc', 'policy')
                                      else _Baseline(policy.observation, label, seed)) for seed in args.seeds]
            cte, comp = float(np.mean([r.mean_cross_track_m for r in runs])), float(np.mean([r.completion for r in runs]))
            t = float(np.mean([r.mean_solve_time_s for r in runs]))
            times[label].append(t)
            if label == 'policy':
                if cte / bl > worst['cte']:
                    worst['cte'], worst['cte_path'] = cte / bl, name
                if comp < worst['completion']:
                    worst['completion'], worst['completion_path'] = comp, name
            steps = float(np.mean([r.steps for r in runs]))
            done = float(np.mean([r.done for r in runs]))
            rows.append({'path': name, 'set': kind, 'controller': label, 'mean_cross_track_bl': cte / bl,
                         'completion': comp, 'done': done, 'steps': steps, 'ms_per_action': t * 1e3,
                         'path_length_m': path_length(points)})
            trajectories[(name, label)] = _to_start_frame(runs[0].trajectory_xy, runs[0].start_pose)
            print(f'{name:18s} {kind:8s} {label:10s} {cte / bl:11.3f} {comp:10.2f} {done:5.2f} {steps:6.0f} '
                  f'{t * 1e3:10.3f}', flush=True)
    summary = {}
    if 'policy' in times:
        print(f'policy: worst mean cross-track {worst["cte"]:.3f} BL ({worst["cte_path"]}; target < 0.5), worst '
              f'completion {worst["completion"]:.2f} ({worst["completion_path"]}; target >= 0.9)')
        summary['policy_worst'] = worst
    if times.get('mpc') and times.get('policy'):
        ratio = np.mean(times['mpc']) / np.mean(times['policy'])
        print(f'time per action: MPC {np.mean(times["mpc"]) * 1e3:.2f} ms, policy {np.mean(times["policy"]) * 1e3:.3f} ms '
              f'-> {ratio:.0f}x cheaper (target >= 100x)')
        summary.update(mpc_ms=float(np.mean(times['mpc']) * 1e3), policy_ms=float(np.mean(times['policy']) * 1e3),
                       ratio=float(ratio))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'results.json').write_text(json.dumps({'policy': str(policy_file), 'seeds': args.seeds,
                                                      'rows': rows, 'summary': summary}, indent=1))
        _plot(out / 'trajectories.png', paths, trajectories, args.controllers)
        print(f'wrote {out / "results.json"}, {out / "trajectories.png"}')
    return 0


def _plot(file, paths, trajectories, controllers) -> None:
    """One panel per path: the path (relative to the start pose, the robot starts at (0, 0) facing +x) and the
    trajectories of the MPC and the policy in the start pose's frame."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(paths)
    cols = 6
    rows = int(math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows))
    colours = {'mpc': 'tab:blue', 'policy': 'tab:red'}
    for ax, name in zip(np.ravel(axes), names):
        pts = np.asarray(paths[name][1])
        ax.plot(pts[:, 0], pts[:, 1], 'k-', lw=3, alpha=0.3, label='path')
        for label in controllers:
            if label not in colours:
                continue
            ax.plot(*trajectories[(name, label)].T, '-', color=colours[label], lw=1, label=label)
        ax.set_title(f'{name} ({paths[name][0]})', fontsize=8)
        ax.set_aspect('equal')
        ax.tick_params(labelsize=6)
    for ax in np.ravel(axes)[len(names):]:
        ax.axis('off')
    np.ravel(axes)[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(file, dpi=80)
    plt.close(fig)


def _to_start_frame(xy, start_pose):
    """World points (T, 2) in the frame of start_pose (x, y, yaw), the frame the path was given in."""
    c, s = math.cos(start_pose[2]), math.sin(start_pose[2])
    d = np.asarray(xy) - start_pose[:2]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


if __name__ == '__main__':
    raise SystemExit(main())
