"""Plot a dynamics model's open-loop prediction against recorded truth (the paper's Fig. 5) and its H-step error.

  mbmf-ros plot-model --model models/hexapod.pt --bags data/val --out fig5.png [--steps 100]
                      [--elements x y vx ...] [--trajectory N]

Top panels: for one recorded trajectory, the true states (solid) and the model's open-loop prediction (dotted)
from the first state under the recorded actions, for the chosen state elements. Last panel: the Eq. 3 H-step
error vs H over all trajectories of the bags (log scale).
"""
from __future__ import annotations

import sys


def add_arguments(parser):
    parser.add_argument('--model', required=True, help='checkpoint file')
    parser.add_argument('--bags', nargs='+', required=True, help='bags with validation trajectories')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--steps', type=int, default=100, help='open-loop steps (default 100)')
    parser.add_argument('--elements', nargs='*', help='state elements to plot (default: x, y, yaw + up to 5 more)')
    parser.add_argument('--trajectory', type=int, help='index of the trajectory (default: the longest)')
    parser.add_argument('--horizons', type=int, nargs='*', default=[1, 2, 5, 10, 20, 30, 50],
                        help='H of the error panel')


def make_figure(model, trajs, steps, elements, horizons, index=None):
    """The figure (matplotlib) and the Eq. 3 errors {H: e}. Raises ValueError for unknown elements."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from mbmf_ros.core.training import open_loop_errors
    names = list(model.state_names)
    unknown = [e for e in elements if e not in names]
    if unknown:
        raise ValueError(f'state elements {unknown} not in the model\'s state {names}')
    t = trajs[index] if index is not None else max(trajs, key=lambda tr: len(tr.actions))
    n = min(steps, len(t.actions))
    pred = model.rollout(torch.as_tensor(t.states[0], dtype=torch.float32),
                         torch.as_tensor(t.actions[:n]))[:, :, 0].double().numpy()   # (E, n+1, S)
    errs, pos = open_loop_errors(model, trajs, horizons)
    cols = 3
    rows = (len(elements) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    axes = axes.ravel()
    steps_axis = np.arange(n + 1)
    for ax, e in zip(axes, elements):
        j = names.index(e)
        ax.plot(steps_axis, t.states[:n + 1, j], 'k-', lw=1.5, label='true')
        for m in range(pred.shape[0]):
            ax.plot(steps_axis, pred[m, :, j], ':', lw=1.5, label='predicted' if m == 0 else None)
        ax.set_title(e, fontsize=9)
        ax.set_xlabel('step')
    axes[0].legend(fontsize=8)
    ax = axes[len(elements)]
    hs = sorted(errs)
    ax.semilogy(hs, [errs[h] for h in hs], 'o-', label='Eq. 3 error')
    ax.set_xlabel('H (steps)')
    ax.set_ylabel('Eq. 3 error')
    twin = ax.twinx()
    twin.plot(hs, [pos[h] * 100 for h in hs], 's--', color='tab:red', label='x/y error after H (cm)')
    twin.set_ylabel('x/y error after H steps (cm)', color='tab:red')
    ax.set_title(f'H-step open-loop error ({len(trajs)} trajectories)', fontsize=9)
    for extra in axes[len(elements) + 1:]:
        extra.axis('off')
    fig.suptitle(f'{model.agent or "model"}: open-loop prediction over {n} steps vs truth ({t.source}, '
                 f'episode {getattr(t, "episode", "?")})', fontsize=10)
    fig.tight_layout()
    return fig, errs


def run(args) -> int:
    from mbmf_ros.io.bags import BagError, load_trajectories
    from mbmf_ros.io.checkpoint import CheckpointMismatch, load_checkpoint
    try:
        model, meta = load_checkpoint(args.model)
        trajs, report = load_trajectories(args.bags, agent=model.agent or None)
        print(report.summary())
        if not trajs:
            raise ValueError(f'no trajectories in {args.bags}')
        if tuple(trajs[0].state_names) != tuple(model.state_names):
            raise CheckpointMismatch(f'checkpoint {args.model} was made for state names {list(model.state_names)}'
                                     f', the bags hold {list(trajs[0].state_names)}')
        if args.trajectory is not None and not 0 <= args.trajectory < len(trajs):
            raise ValueError(f'--trajectory {args.trajectory}: the bags hold {len(trajs)} trajectories')
        elements = args.elements or list(model.state_names[:min(8, len(model.state_names))])
        fig, errs = make_figure(model, trajs, args.steps, elements, args.horizons, args.trajectory)
        fig.savefig(args.out, dpi=110)
        print('H-step error: ' + ', '.join(f'H={h}: {e:.4g}' for h, e in sorted(errs.items())))
        print(f'wrote {args.out}')
    except (BagError, CheckpointMismatch, ValueError, FileNotFoundError) as e:
        print(f'mbmf-ros plot-model: {e}', file=sys.stderr)
        return 1
    return 0
