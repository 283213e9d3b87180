"""The distilled hexapod path follower against the MPC it imitates, in one run (no ROS).

For the example paths in config/paths/ and paths never used in training or tuning (drawn here by hand; the
policy trained on random paths only), runs the simulated hexapod with the MPC (random shooting, the agent's K
and H, the shipped dynamics model) and with the shipped policy (config/models/hexapod_follow_policy.pt), and
prints mean cross-track error in body lengths, completion and the time per action of each, then the cost ratio
(MPC time per action / policy time per action) over all paths. One torch thread for both.

    .venv/bin/python bench/bench_policy_follow.py --quick
    .venv/bin/python bench/bench_policy_follow.py [--policy FILE] [--seeds 0 1]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import yaml

from mbmf_ros.core.agents import get_agent
from mbmf_ros.graphs import config_dir, default_model_path, default_policy_path, resolve_path
from mbmf_ros.io.checkpoint import load_checkpoint, load_policy
from mbmf_ros.sim.closed_loop import follow_in_process

UNSEEN_PATHS = {
    'zigzag': [[0.0, 0.0], [0.3, 0.15], [0.6, -0.15], [0.9, 0.15]],
    'corner_127deg': [[0.0, 0.0], [0.4, 0.0], [0.1, 0.25]],
    'step': [[0.0, 0.0], [0.4, 0.0], [0.4, -0.3], [0.8, -0.3]],
    'u_turn_right': [[0.0, 0.0], [0.5, 0.0], [0.5, -0.35], [0.0, -0.35]],
    's_curve': [[0.0, 0.0], [0.25, 0.1], [0.45, 0.3], [0.7, 0.35], [0.9, 0.2], [1.05, 0.0]],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='two paths, one seed (about 1 min)')
    ap.add_argument('--policy', default='', help='policy checkpoint (default: the shipped one)')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--controllers', nargs='+', default=['mpc', 'policy'], choices=['mpc', 'policy'])
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = get_agent('hexapod')
    model, _ = load_checkpoint(resolve_path(default_model_path('hexapod')), agent='hexapod')
    policy_file = resolve_path(args.policy or default_policy_path('hexapod'))
    policy, meta = load_policy(policy_file, agent='hexapod', state_names=spec.state_names,
                               observation_kind='path')
    paths = {p.stem: ('example', yaml.safe_load(p.read_text())['waypoints'])
             for p in sorted(config_dir().glob('paths/*.yaml'))}
    paths.update({k: ('unseen', v) for k, v in UNSEEN_PATHS.items()})
    if args.quick:
        paths = {k: paths[k] for k in ('u_turn', 'zigzag')}
    bl = spec.body_length
    print(f'hexapod; MPC: random_shooting K={spec.planner_defaults["num_samples"]} H={spec.planner_defaults["horizon"]}'
          f'; policy: {policy_file} ({meta.get("env_steps", "?")} env steps of DAgger); 1 thread; seeds {args.seeds}')
    print(f'{"path":14s} {"set":8s} {"controller":10s} {"mean CTE BL":>11s} {"completion":>10s} {"steps":>6s} '
          f'{"ms/action":>10s}')
    times = {'mpc': [], 'policy': []}
    worst = {'cte': 0.0, 'completion': 1.0}
    for name, (kind, points) in paths.items():
        for label in args.controllers:
            runs = [follow_in_process('hexapod', model, np.asarray(points, dtype=np.float64), seed=seed,
                                      policy=policy if label == 'policy' else None) for seed in args.seeds]
            cte, comp = np.mean([r.mean_cross_track_m for r in runs]), np.mean([r.completion for r in runs])
            t = np.mean([r.mean_solve_time_s for r in runs])
            times[label].append(t)
            if label == 'policy':
                worst['cte'], worst['completion'] = max(worst['cte'], cte / bl), min(worst['completion'], comp)
            print(f'{name:14s} {kind:8s} {label:10s} {cte / bl:11.3f} {comp:10.2f} '
                  f'{np.mean([r.steps for r in runs]):6.0f} {t * 1e3:10.3f}', flush=True)
    print(f'policy: worst mean cross-track {worst["cte"]:.3f} BL (target < 0.5), worst completion '
          f'{worst["completion"]:.2f} (target >= 0.9)')
    if not (times['mpc'] and times['policy']):
        return 0
    ratio = np.mean(times['mpc']) / np.mean(times['policy'])
    print(f'time per action: MPC {np.mean(times["mpc"]) * 1e3:.2f} ms, policy {np.mean(times["policy"]) * 1e3:.3f} ms '
          f'-> {ratio:.0f}x cheaper (target >= 100x)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
