"""Train a dynamics model from rosbag2 bags and write a checkpoint.

  mbmf-ros train --agent hexapod --bags data/rand --out models/hexapod.pt [--epochs 60] [--warm-start OLD.pt]
                 [--rl-bags data/mpc --rand-fraction 0.1] [--hidden 500 500] [--ensemble 5] [--config FILE.yaml]

Bags are read with mbmf_ros.io.bags (MCAP or sqlite3, this package's recorder or `ros2 bag record`), split
by trajectory into train/validation, trained as in the paper (Adam 1e-3, batch 512, noise, 2 x 500 ReLU), and
saved atomically with the bag paths and content hashes, the read report and the metrics (1-step MSE, Eq. 3
H-step errors). The pipeline itself is mbmf_ros.pipeline, which the dynamics_trainer node calls too.
"""
from __future__ import annotations

import sys

from mbmf_ros.pipeline import load_train_config, train_from_bags  # noqa: F401 - also this module's API


def add_arguments(parser):
    parser.add_argument('--agent', required=True, help='agent name (hexapod, swimmer, half_cheetah, hopper, ant)')
    parser.add_argument('--params-file', help='ROS 2 parameter file over config/<agent>.yaml; its '
                        'dynamics_trainer section gives epochs, threads and config (a TrainConfig YAML)')
    parser.add_argument('--bags', nargs='+', required=True, help='bag folders/files, or folders of bags (D_rand)')
    parser.add_argument('--out', required=True, help='checkpoint file to write')
    parser.add_argument('--epochs', type=int, help='training epochs (default: the parameter files, else TrainConfig)')
    parser.add_argument('--warm-start', help='checkpoint to continue training from')
    parser.add_argument('--rl-bags', nargs='*', default=[], help='on-policy bags (D_rl), mixed with D_rand')
    parser.add_argument('--rand-fraction', type=float, help='share of D_rand per epoch with --rl-bags (0.1)')
    parser.add_argument('--hidden', type=int, nargs='+', help='hidden layer widths (default 500 500)')
    parser.add_argument('--ensemble', type=int, help='number of ensemble members (default 1)')
    parser.add_argument('--seed', type=int, help='random seed (default 0)')
    parser.add_argument('--threads', type=int,
                        help='torch threads (default: dynamics_trainer threads of the parameter files, 1: on a '
                             'busy 2-core machine 2 threads ran ~9x slower)')
    parser.add_argument('--bf16', action='store_true', default=None, help='bfloat16 autocast (faster on CPU)')
    parser.add_argument('--device', choices=['cpu', 'cuda', 'auto'], help='where to train (default cpu; auto: '
                        'cuda when available)')
    parser.add_argument('--config', help='YAML file of TrainConfig keys (optionally under dynamics:)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def run(args) -> int:
    from mbmf_ros.io.bags import BagError
    from mbmf_ros.io.checkpoint import CheckpointMismatch
    from mbmf_ros.settings import load_settings
    try:
        # the dynamics_trainer settings (config/defaults.yaml, config/<agent>.yaml, --params-file); flags win
        node = load_settings(args.agent, [args.params_file] if args.params_file else []).node('dynamics_trainer')
        cfg = load_train_config(args.config or node['config'] or None, epochs=args.epochs or node['epochs'] or None,
                                hidden_sizes=args.hidden, num_members=args.ensemble, seed=args.seed,
                                threads=args.threads if args.threads is not None else node['threads'],
                                rand_fraction=args.rand_fraction, bf16=args.bf16, device=args.device)
        train_from_bags(args.bags, args.out, args.agent, cfg, args.warm_start, args.rl_bags,
                        progress=not args.quiet)
    except (BagError, CheckpointMismatch, ValueError, FileNotFoundError) as e:
        print(f'mbmf-ros train: {e}', file=sys.stderr)
        return 1
    return 0
