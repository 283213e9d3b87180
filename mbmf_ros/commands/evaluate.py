"""Evaluate a dynamics model with MPC beside the zero-action and random-action baselines on the same episodes.

    mbmf-ros evaluate --agent swimmer --model runs/mbrl/swimmer_forward/iter_2/model.pt --task forward --seeds 3
    mbmf-ros evaluate --agent hexapod --model config/models/hexapod.pt --task follow --paths config/paths/*.yaml

forward: the paper's return (sum of the appendix C.2 rewards of the true transitions over eval_steps, or until
the agent terminates) per start state (seed), mean and std over seeds. follow: per path and seed, mean
cross-track error (m and body lengths), completion (fraction of the path length covered) and the Alg. 2 return.
Every controller starts from the same states (seed s -> start state s). K, H and the episode length come from
config/mbrl.yaml (--profile, --set KEY=VALUE). Writes <out>.json and <out>.md; runs in process (see `mbmf-ros
mbrl`).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

CONTROLLERS = ('mpc', 'zero', 'random')


def evaluate(agent: str, model_path: str, task: str, settings: dict, seeds: int | None = None,
             terrain: str | None = None, paths=None, controllers=CONTROLLERS, log=print) -> dict:
    """Run every controller on the same ``seeds`` episodes (default settings['eval_seeds']). Returns a dict:
    {'agent', 'task', 'model', 'settings', 'terrain', 'seeds', 'results': {controller: {...}}} where forward
    results hold 'return' (summary) and 'episodes'; follow results hold per path 'mean_cross_track_body_lengths',
    'completion', 'return' summaries and the all-path means."""
    import torch

    from mbmf_ros.commands.mbrl import EVAL_SEED, _paths_for, git_commit
    from mbmf_ros.io.checkpoint import load_checkpoint
    from mbmf_ros.sim.experiments import run_episode, summarise
    torch.set_num_threads(1)
    n = int(seeds or settings.get('eval_seeds', 3))
    if n < 1:
        raise ValueError(f'evaluate: --seeds must be >= 1, found {n}')
    model, _ = load_checkpoint(model_path, agent=agent)
    model.eval()
    path_list = _paths_for(task, paths)
    results = {}
    for c in controllers:
        t0 = time.monotonic()
        episodes = []
        for s in range(n):
            for name, pts in (path_list or {None: None}).items():
                ep = run_episode(agent, task, c, model=model if c == 'mpc' else None,
                                 steps=int(settings.get('eval_steps') or 0), seed=EVAL_SEED + s,
                                 num_samples=settings['num_samples'], horizon=settings['horizon'], terrain=terrain,
                                 path_xy=pts, planner=settings.get('planner', 'random_shooting'))
                episodes.append({'seed': EVAL_SEED + s, 'path': name, 'return': ep.ret, 'steps': ep.steps,
                                 **ep.metrics})
        res = {'episodes': episodes, 'return': summarise([e['return'] for e in episodes]),
               'seconds': time.monotonic() - t0}
        if task == 'follow':
            res['paths'] = {}
            for name in path_list:
                eps = [e for e in episodes if e['path'] == name]
                res['paths'][name] = {k: summarise([e[k] for e in eps]) for k in
                                      ('mean_cross_track_body_lengths', 'mean_cross_track_m', 'completion',
                                       'return', 'steps')}
            for k in ('mean_cross_track_body_lengths', 'completion'):
                res[k] = summarise([e[k] for e in episodes])
        results[c] = res
        log(f'{agent} {task} {c}: return {res["return"]["mean"]:.2f} +- {res["return"]["std"]:.2f} over '
            f'{len(episodes)} episodes ({res["seconds"]:.0f} s)'
            + (f', cross-track {res["mean_cross_track_body_lengths"]["mean"]:.3f} BL, completion '
               f'{res["completion"]["mean"]:.2f}' if task == 'follow' else ''))
    return {'agent': agent, 'task': task, 'model': str(model_path), 'settings': settings, 'terrain': terrain,
            'seeds': n, 'results': results, 'commit': git_commit(),
            'command': 'mbmf-ros ' + ' '.join(sys.argv[1:]) if sys.argv and 'mbmf' in sys.argv[0] else ''}


def markdown(result: dict) -> str:
    """A markdown table of one evaluation (MPC, zero, random), with the settings it used."""
    r, s = result['results'], result['settings']
    lines = [f"### {result['agent']} — {result['task']}" + (f" on {result['terrain']}" if result['terrain'] else ''),
             '', f"model `{result['model']}`; K={s['num_samples']}, H={s['horizon']}; {result['seeds']} seed(s); "
             f"commit {result['commit']}", '']
    if result['task'] == 'forward':
        lines += ['| controller | return (mean ± std) | per seed |', '|---|---|---|']
        for c, v in r.items():
            lines.append(f"| {c} | {v['return']['mean']:.2f} ± {v['return']['std']:.2f} | "
                         f"{', '.join(f'{x:.1f}' for x in v['return']['values'])} |")
    else:
        lines += ['| path | controller | mean cross-track (BL) | completion | return |', '|---|---|---|---|---|']
        names = list(next(iter(r.values()))['paths'])
        for name in names:
            for c, v in r.items():
                p = v['paths'][name]
                lines.append(f"| {name} | {c} | {p['mean_cross_track_body_lengths']['mean']:.3f} ± "
                             f"{p['mean_cross_track_body_lengths']['std']:.3f} | {p['completion']['mean']:.2f} | "
                             f"{p['return']['mean']:.2f} |")
    return '\n'.join(lines) + '\n'


def write_report(result: dict, prefix) -> tuple[Path, Path]:
    """<prefix>.json and <prefix>.md."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    j, m = prefix.with_suffix('.json'), prefix.with_suffix('.md')
    j.write_text(json.dumps(result, indent=2))
    m.write_text(markdown(result))
    return j, m


def add_arguments(parser):
    parser.add_argument('--agent', required=True)
    parser.add_argument('--model', required=True, help='checkpoint to evaluate')
    parser.add_argument('--task', required=True, choices=('forward', 'follow'))
    parser.add_argument('--paths', nargs='+', help='follow: path files (default config/paths/*.yaml)')
    parser.add_argument('--seeds', type=int, help='episodes (start states) per controller (default eval_seeds)')
    parser.add_argument('--profile', default='paper', help='settings profile in config/mbrl.yaml (default paper)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='override one setting')
    parser.add_argument('--terrain', help='hexapod surface: carpet or styrofoam')
    parser.add_argument('--out', default='', help='report prefix (default: next to the model, evaluation_<task>)')


def run(args) -> int:
    from mbmf_ros.commands.mbrl import load_settings
    from mbmf_ros.io.checkpoint import CheckpointMismatch
    try:
        settings = load_settings(args.agent, args.task, args.profile, args.set)
        result = evaluate(args.agent, args.model, args.task, settings, args.seeds, args.terrain, args.paths)
    except (CheckpointMismatch, ValueError, FileNotFoundError) as e:
        print(f'mbmf-ros evaluate: {e}', file=sys.stderr)
        return 1
    prefix = args.out or str(Path(args.model).with_name(f'evaluation_{args.task}'))
    j, m = write_report(result, prefix)
    print(markdown(result))
    print(f'wrote {j} and {m}')
    return 0
