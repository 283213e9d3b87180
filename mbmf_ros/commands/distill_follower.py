"""Distil the hexapod's MPC path follower into a small policy by DAgger on random paths (runs for minutes).

    mbmf-ros distill-follower [--out config/models/hexapod_follow_policy.pt] [--work runs/distill_follower]

The policy (2 x 64 tanh, core/policy.py) sees the body-frame state and points of the path ahead relative to the
robot; the expert is an MPC on the shipped dynamics model (iCEM, K=100, H=10: random shooting's first actions
are uniform draws, whose mean a regression shrinks toward zero, and the policy stalled at corners) with terms
changed for it in the follow reward: a penalty on walking backwards, a larger cross-track weight, and a heading
penalty beyond 90 degrees on the bearing of the path point 20 cm ahead, which makes it turn the short way
round where the path lies behind it (without it, at a hairpin no H-step sequence gains progress, left and right
score alike, its labels flip between them and the policy learnt to stand still there; config/mbmf.yaml has
the measurements); run in process (sim/closed_loop.py). Expert rollouts on random paths (N(0, 0.005) on the
MPC's actions), then DAgger iterations: the policy drives, the MPC labels every visited state, refit on all data.
Settings: config/mbmf.yaml, section hexapod_follow. Resumable: each stage's data and policy are kept in
--work; a second run continues after the last finished stage. Seeded: the same command gives the same policy.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np


def add_arguments(parser):
    parser.add_argument('--agent', default='hexapod')
    parser.add_argument('--model', default='', help='dynamics checkpoint of the expert (default: the shipped one)')
    parser.add_argument('--out', default='', help='policy checkpoint (default: config/models/<agent>_follow_policy.pt)')
    parser.add_argument('--work', default='runs/distill_follower', help='folder for data and stage checkpoints')
    parser.add_argument('--expert-rollouts', type=int, default=0, help='0: config/mbmf.yaml')
    parser.add_argument('--iterations', type=int, default=-1, help='DAgger iterations (-1: config/mbmf.yaml)')
    parser.add_argument('--rollouts', type=int, default=0, help='policy rollouts per iteration (0: config)')
    parser.add_argument('--epochs', type=int, default=0, help='epochs per fit (0: config)')
    parser.add_argument('--threads', type=int, default=1)


def load_settings(section: str) -> dict:
    import yaml

    from mbmf_ros.graphs import config_dir
    path = config_dir() / 'mbmf.yaml'
    data = yaml.safe_load(path.read_text()) or {}
    if section not in data:
        raise ValueError(f'{path}: no section {section!r}')
    return data


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.policy import GaussianPolicy, ImitationConfig, Observation, dagger
    from mbmf_ros.core.waypoints import training_path
    from mbmf_ros.graphs import config_dir, default_model_path, resolve_path
    from mbmf_ros.io.checkpoint import load_checkpoint, load_policy, save_policy
    from mbmf_ros.sim.closed_loop import follow_in_process

    torch.set_num_threads(args.threads)
    cfg = load_settings(f'{args.agent}_follow')[f'{args.agent}_follow']
    spec = get_agent(args.agent)
    model_path = resolve_path(args.model or default_model_path(args.agent))
    model, _ = load_checkpoint(model_path, agent=spec.name, state_names=spec.state_names,
                               action_names=spec.action_names)
    out = Path(args.out or config_dir() / 'models' / f'{args.agent}_follow_policy.pt')
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n_expert = args.expert_rollouts or int(cfg['expert_rollouts'])
    iterations = args.iterations if args.iterations >= 0 else int(cfg['dagger_iterations'])
    n_roll = args.rollouts or int(cfg['dagger_rollouts'])
    epochs = args.epochs or int(cfg['epochs'])
    seed = int(cfg.get('seed', 0))
    noise = float(load_settings('mpc_noise_std')['mpc_noise_std'])
    config = ImitationConfig(hidden_sizes=tuple(int(h) for h in cfg['hidden_sizes']), std=float(cfg['std']),
                             lr=float(cfg['lr']), batch_size=int(cfg['batch_size']), epochs=epochs, seed=seed)
    expert = {'planner': cfg['expert_planner'], 'num_samples': int(cfg['expert_num_samples']),
              'horizon': int(cfg['expert_horizon']), 'reverse_weight': float(cfg['expert_reverse_weight']),
              'heading_weight': float(cfg.get('expert_heading_weight', 0.0)),
              'heading_free_rad': math.radians(float(cfg.get('expert_heading_free_deg', 0.0))),
              'heading_lookahead_m': float(cfg.get('expert_heading_lookahead_m', 0.0)),
              'alpha': float(cfg['expert_alpha']) if 'expert_alpha' in cfg else None}
    paths = dict(cfg['paths'])
    torch.manual_seed(seed)          # the initial weights
    obs_layout = Observation('path', spec.state_names, tuple(float(d) for d in cfg['lookahead_m']))
    policy = GaussianPolicy(obs_layout, spec.action_names, config.hidden_sizes, config.std, agent=spec.name)

    # Resume: the newest stage whose data and policy were both written.
    log_path = work / 'stages.jsonl'
    stages_done = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    data, first_iteration = None, 0
    if stages_done:
        last = stages_done[-1]
        arrays = np.load(work / 'data.npz')
        data = (arrays['obs'], arrays['labels'])
        policy, _ = load_policy(work / 'policy.pt', agent=spec.name, state_names=spec.state_names)
        first_iteration = int(last['iteration'])
        print(f'resuming after stage {last["name"]} ({len(data[0])} labelled states)')
    total = n_expert + n_roll * max(iterations - first_iteration, 0) if data is None \
        else n_roll * max(iterations - first_iteration, 0)
    bar = tqdm(total=total, desc='rollouts', unit='rollout')
    env_steps = sum(s['env_steps'] for s in stages_done)

    def rollout(actor, episode_seed):
        rng = np.random.default_rng(episode_seed)
        path = training_path(rng, **paths)
        result = follow_in_process(spec.name, model, path, planner=expert['planner'], seed=episode_seed,
                                   num_samples=expert['num_samples'], horizon=expert['horizon'],
                                   reverse_weight=expert['reverse_weight'], heading_weight=expert['heading_weight'],
                                   heading_free_rad=expert['heading_free_rad'],
                                   heading_lookahead_m=expert['heading_lookahead_m'], alpha=expert['alpha'],
                                   policy=actor,
                                   record=obs_layout if actor is None else True,
                                   noise_std=noise if actor is None else 0.0, give_up_m=float(cfg['give_up_m']),
                                   stall_steps=int(cfg['stall_steps']) if actor is not None else 0)
        bar.update(1)
        from mbmf_ros.core.policy import Episode
        return Episode(result.observations, result.labels, -np.full(result.steps, result.mean_cross_track_m),
                       {'completion': result.completion, 'cross_track_m': result.mean_cross_track_m})

    def on_stage(stage, arrays):
        nonlocal env_steps
        env_steps += stage.env_steps
        np.savez(work / 'data.npz.tmp.npz', obs=arrays[0], labels=arrays[1])
        Path(work / 'data.npz.tmp.npz').replace(work / 'data.npz')
        save_policy(work / 'policy.pt', policy, {'stage': stage.name})
        row = {'name': stage.name, 'iteration': 0 if stage.name == 'expert' else int(stage.name[6:]),
               'env_steps': stage.env_steps, 'total_env_steps': env_steps, 'labelled': len(arrays[0]),
               'final_loss': stage.losses[-1],
               'completion': float(np.mean([e.info['completion'] for e in stage.episodes])),
               'cross_track_m': float(np.mean([e.info['cross_track_m'] for e in stage.episodes])),
               'time': time.strftime('%Y-%m-%dT%H:%M:%S')}
        with log_path.open('a') as f:
            f.write(json.dumps(row) + '\n')
        tqdm.write(f"{row['name']}: {row['labelled']} labelled states, loss {row['final_loss']:.4f}, rollouts' "
                   f"completion {row['completion']:.2f}, mean cross-track {row['cross_track_m'] * 100:.1f} cm")

    dagger(policy, rollout, config, n_expert, iterations, n_roll, epochs, data=data,
           first_iteration=first_iteration, seed=seed, on_stage=on_stage)
    bar.close()
    save_policy(out, policy, {
        'command': f'mbmf-ros distill-follower --agent {args.agent}', 'expert_model': str(model_path),
        'expert': {**expert, 'noise_std': noise}, 'training_paths': paths,
        'imitation': {'lr': config.lr, 'batch_size': config.batch_size, 'std': config.std, 'epochs': epochs},
        'expert_rollouts': n_expert, 'dagger_iterations': iterations, 'dagger_rollouts': n_roll,
        'env_steps': env_steps, 'labelled_states': int(len(np.load(work / 'data.npz')['obs']))})
    print(f'wrote {out} ({env_steps} environment steps)')
    return 0
