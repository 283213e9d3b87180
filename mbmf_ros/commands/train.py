"""Train a dynamics model from rosbag2 bags and write a checkpoint.

  mbmf-ros train --agent hexapod --bags data/rand --out models/hexapod.pt [--epochs 60] [--warm-start OLD.pt]
                 [--rl-bags data/mpc --rand-fraction 0.1] [--hidden 500 500] [--ensemble 5] [--config FILE.yaml]

Bags are read with mbmf_ros.io.bags (MCAP or sqlite3, this package's recorder or `ros2 bag record`), split
by trajectory into train/validation, trained as in the paper (Adam 1e-3, batch 512, noise, 2 x 500 ReLU), and
saved atomically with the bag paths and content hashes, the read report and the metrics (1-step MSE, Eq. 3
H-step errors). The same function serves the dynamics_trainer node.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path


def load_train_config(path: str | None, **overrides):
    """TrainConfig from a YAML file (keys of TrainConfig, optionally under a `dynamics:` section) + overrides."""
    from mbmf_ros.core.training import TrainConfig
    data = {}
    if path:
        import yaml
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f'training config {p} does not exist')
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f'{p}: expected a mapping of TrainConfig keys, found {type(data).__name__}')
        data = data.get('dynamics', data)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(data)


def train_from_bags(bags, out, agent: str, config=None, warm_start: str | None = None, rl_bags=(),
                    progress: bool = True, log=print, should_stop=None):
    """bags -> checkpoint at out. Returns (checkpoint path, metrics, read report).

    Raises ValueError (unknown agent, bag problems, layout mismatch, warm start for another agent).
    """
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.training import TrainConfig, format_metrics, split_by_trajectory, train_dynamics
    from mbmf_ros.io.bags import bag_fingerprint, find_bags, load_trajectories
    from mbmf_ros.io.checkpoint import load_checkpoint, save_checkpoint
    cfg = config or TrainConfig()
    spec = get_agent(agent)
    trajs, report = load_trajectories(bags, agent=agent)
    log(report.summary())
    rl_trajs, rl_report = ([], None)
    if rl_bags:
        rl_trajs, rl_report = load_trajectories(rl_bags, agent=agent)
        log('D_rl: ' + rl_report.summary())
    if not trajs and not rl_trajs:
        raise ValueError(f'no transitions in {list(map(str, bags))}: {report.summary()}')
    names = (trajs or rl_trajs)[0].state_names
    if tuple(names) != tuple(spec.state_names):
        raise ValueError(f'bags {list(map(str, bags))} hold states {list(names)}, but agent {agent} has '
                         f'{list(spec.state_names)}')
    for t in trajs + rl_trajs:
        t.action_names = tuple(spec.action_names)
        if t.actions.shape[1] != spec.action_dim:
            raise ValueError(f'{t.source}: actions have {t.actions.shape[1]} values, agent {agent} has '
                             f'{spec.action_dim} ({list(spec.action_names)})')
    # Validation comes from D_rand and D_rl alike, split by trajectory.
    train, val = split_by_trajectory(trajs, cfg.validation_fraction, cfg.seed) if trajs else ([], [])
    rl_train, rl_val = split_by_trajectory(rl_trajs, cfg.validation_fraction, cfg.seed) if rl_trajs else ([], [])
    warm = None
    if warm_start:
        warm, _ = load_checkpoint(warm_start, agent=agent, state_names=spec.state_names,
                                  action_names=spec.action_names)
        log(f'warm start from {warm_start}')
    model, metrics = train_dynamics(train, val + rl_val, cfg, rl=rl_train, warm_start=warm, agent=agent,
                                    state_names=spec.state_names, action_names=spec.action_names,
                                    progress=progress, log=None if progress else log, should_stop=should_stop)
    log(format_metrics(metrics))
    meta = {
        'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'agent': agent, 'dt': spec.dt,
        'bags': [{'path': str(Path(b).resolve()), 'hash': bag_fingerprint(b)} for b in find_bags(bags)],
        'rl_bags': [{'path': str(Path(b).resolve()), 'hash': bag_fingerprint(b)} for b in find_bags(rl_bags)]
        if rl_bags else [],
        'read_report': dataclasses.asdict(report),
        'rl_read_report': dataclasses.asdict(rl_report) if rl_report else None,
        'warm_start': str(Path(warm_start).resolve()) if warm_start else '',
        'train_config': dataclasses.asdict(cfg),
        'validation_trajectories': len(val) + len(rl_val),
        'metrics': {k: v for k, v in metrics.items() if k != 'config'},
    }
    path = save_checkpoint(out, model, meta)
    log(f'wrote {path}')
    return path, metrics, report


def add_arguments(parser):
    parser.add_argument('--agent', required=True, help='agent name (hexapod, swimmer, half_cheetah, hopper, ant)')
    parser.add_argument('--bags', nargs='+', required=True, help='bag folders/files, or folders of bags (D_rand)')
    parser.add_argument('--out', required=True, help='checkpoint file to write')
    parser.add_argument('--epochs', type=int, help='training epochs (default from config, 50)')
    parser.add_argument('--warm-start', help='checkpoint to continue training from')
    parser.add_argument('--rl-bags', nargs='*', default=[], help='on-policy bags (D_rl), mixed with D_rand')
    parser.add_argument('--rand-fraction', type=float, help='share of D_rand per epoch with --rl-bags (0.1)')
    parser.add_argument('--hidden', type=int, nargs='+', help='hidden layer widths (default 500 500)')
    parser.add_argument('--ensemble', type=int, help='number of ensemble members (default 1)')
    parser.add_argument('--seed', type=int, help='random seed (default 0)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (default 1: on a busy 2-core machine 2 threads ran ~9x slower)')
    parser.add_argument('--bf16', action='store_true', default=None, help='bfloat16 autocast (faster on CPU)')
    parser.add_argument('--device', choices=['cpu', 'cuda', 'auto'], help='where to train (default cpu; auto: '
                        'cuda when available)')
    parser.add_argument('--config', help='YAML file of TrainConfig keys (optionally under dynamics:)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def run(args) -> int:
    from mbmf_ros.io.bags import BagError
    from mbmf_ros.io.checkpoint import CheckpointMismatch
    try:
        cfg = load_train_config(args.config, epochs=args.epochs, hidden_sizes=args.hidden,
                                num_members=args.ensemble, seed=args.seed, threads=args.threads,
                                rand_fraction=args.rand_fraction, bf16=args.bf16, device=args.device)
        train_from_bags(args.bags, args.out, args.agent, cfg, args.warm_start, args.rl_bags,
                        progress=not args.quiet)
    except (BagError, CheckpointMismatch, ValueError, FileNotFoundError) as e:
        print(f'mbmf-ros train: {e}', file=sys.stderr)
        return 1
    return 0
