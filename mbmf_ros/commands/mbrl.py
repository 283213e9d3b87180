"""Algorithm 1 of the paper: random data, train, then aggregate MPC rollouts and retrain, at the appendix's settings.

    mbmf-ros mbrl --agent swimmer --task forward --out runs/mbrl/swimmer_forward [--profile paper|here|ci]
                  [--set iterations=2 --set num_samples=500] [--terrain carpet] [--evaluate]

Settings per agent and task come from config/mbrl.yaml (profile `paper`: the appendix A.1-A.3 numbers; other
profiles override some of them); `--set KEY=VALUE` overrides one more. <out>/ keeps everything:
rand/episode_NNNN (D_rand bags), iter_0/model.pt (trained on D_rand), iter_<i>/rl/episode_NNNN (the MPC rollouts
of model i-1, D_rl) and iter_<i>/model.pt (warm-started from model i-1 on D_rand + all D_rl, 10-90), each
iteration's metrics in iter_<i>/metrics.json and the whole run in summary.json. Re-running the same command
continues where it stopped (finished bags and models are kept; an unfinished bag is redone).

The MPC rollouts of the loop come from a rollout backend (``run_mbrl(rollout=...)``): by default in process
(sim/experiments.py: the same simulation, estimator, planner and tasks as the nodes, episodes written as the
recorder's bags), because at the paper's sizes the lock-step round trips through four processes would multiply
the hours on a small machine; ``graph_rollout`` runs each one as the follow graph over DDS with its recorder
(`mbmf-ros aggregate` is this loop with that backend, starting from a given model and random bags).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

INT_KEYS = ('random_rollouts', 'random_steps', 'epochs', 'iterations', 'rollouts_per_iteration', 'rollout_steps',
            'num_samples', 'horizon', 'eval_steps', 'eval_seeds')
RAND_SEED = 100_000       # D_rand episode i: seed RAND_SEED + i
RL_SEED = 200_000         # iteration i, rollout j: RL_SEED + 1000 * i + j
EVAL_SEED = 1_000_000     # evaluation episode s: EVAL_SEED + s (the same for every controller)


def load_settings(agent: str, task: str, profile: str = 'paper', overrides=(), path=None) -> dict:
    """The settings of ``agent`` on ``task`` from config/mbrl.yaml: profile `paper`, then ``profile``'s keys,
    then ``overrides`` ('key=value' strings). ValueError naming the file, agent, task or key when missing."""
    import yaml

    from mbmf_ros.graphs import config_dir
    path = Path(path or config_dir() / 'mbrl.yaml')
    data = yaml.safe_load(path.read_text()) or {}
    if profile not in data:
        raise ValueError(f'{path}: no profile {profile!r}; profiles are {sorted(data)}')
    base = (data.get('paper') or {}).get(agent, {}).get(task)
    if base is None:
        known = [f'{a}/{t}' for a, tasks in (data.get('paper') or {}).items() for t in tasks]
        raise ValueError(f'{path}: no settings for agent {agent!r} task {task!r} in profile paper; known: '
                         f'{", ".join(known)}')
    out = dict(base)
    if profile != 'paper':
        out.update(((data[profile] or {}).get(agent) or {}).get(task) or {})
    for item in overrides:
        if '=' not in item:
            raise ValueError(f'--set {item!r}: expected KEY=VALUE')
        key, value = item.split('=', 1)
        out[key.strip()] = yaml.safe_load(value)
    for key in INT_KEYS:
        if key in out:
            try:
                out[key] = int(out[key])
            except (TypeError, ValueError):
                raise ValueError(f'{path} {profile}/{agent}/{task}: {key} must be an integer, found '
                                 f'{out[key]!r}') from None
    missing = [k for k in ('random_rollouts', 'random_steps', 'epochs', 'iterations', 'num_samples', 'horizon')
               if k not in out]
    if missing:
        raise ValueError(f'{path} {profile}/{agent}/{task}: missing {missing}')
    out.setdefault('rand_fraction', 0.1)
    out.setdefault('eval_seeds', 3)
    out['profile'] = profile
    return out


def git_commit() -> str:
    """The repository's HEAD commit (with -dirty when files differ), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(['git', '-C', str(root), 'rev-parse', '--short=12', 'HEAD'], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        # What `paper` itself writes (the README's headline block, results/) does not make the code dirty.
        dirty = subprocess.run(['git', '-C', str(root), 'status', '--porcelain', '--untracked-files=no', '--', '.',
                                ':!README.md', ':!results'],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + ('-dirty' if dirty else '')) if head else 'unknown'
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def _bag_done(path: Path) -> bool:
    return (path / 'metadata.yaml').is_file()


def _short(model, out: Path) -> str:
    """A model's path relative to the run folder when inside it, else as given."""
    model = Path(model)
    return str(model.relative_to(out)) if model.is_relative_to(out) else str(model)


def _figures(f: dict) -> str:
    if 'completion' in f:
        return f"completion {f['completion']:.2f}, cross-track {f['mean_cross_track_body_lengths']:.3f} BL in " \
               f"{f['steps']} steps"
    return f"return {f['return']:.1f} in {f['steps']} steps"


def _write_episode(folder: Path, index: int, ep, source: str, figures: bool = True) -> None:
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.io.episode_bags import write_episode_bag
    path = folder / f'episode_{index:04d}'
    if path.exists():          # an unfinished bag from an interrupted run
        shutil.rmtree(path)
    write_episode_bag(path, ep.agent, get_agent(ep.agent).state_names, ep.states, ep.actions, ep.stamps,
                      episode=index, source=source)
    if not figures:          # the caller writes them
        return
    (folder / f'episode_{index:04d}.json').write_text(json.dumps(
        {'seed': ep.seed, 'return': ep.ret, 'steps': ep.steps, 'controller': ep.controller, **ep.metrics}))


def _paths_for(task: str, paths=None):
    if task != 'follow':
        return None
    from mbmf_ros.commands.follow import load_path_file
    from mbmf_ros.graphs import config_dir
    files = paths or sorted(str(p) for p in (config_dir() / 'paths').glob('*.yaml'))
    return {Path(f).stem: load_path_file(f)[1] for f in files}


EVAL_KEYS = ('eval_seeds', 'eval_steps', 'profile')     # how the run is evaluated or named, not what it holds
PLAN_KEYS = ('num_samples', 'horizon', 'planner')       # used by the aggregation rollouts only


def _run_keys(settings: dict) -> dict:
    """The settings that decide a run's bags and models: a run folder is continued (or refused) on these, so
    evaluating it over more seeds, or a run without aggregation under another K, H, reuses its data."""
    drop = EVAL_KEYS + (PLAN_KEYS if not settings.get('iterations') else ())
    return {k: v for k, v in settings.items() if k not in drop}


def in_process_rollout(agent: str, task: str, settings: dict, terrain: str | None = None):
    """The default rollout backend: ``rollout(model_path, bag, seed, path_xy) -> dict`` runs one MPC episode
    in process (``run_episode`` with the settings' K, H, planner, rollout_steps), writes it as a bag at ``bag``
    and returns its figures (return, steps, controller and the task's metrics)."""
    from mbmf_ros.io.checkpoint import load_checkpoint
    from mbmf_ros.sim.experiments import run_episode
    loaded = {}

    def rollout(model_path: str, bag: Path, seed: int, path_xy=None) -> dict:
        if model_path not in loaded:
            loaded.clear()
            loaded[model_path] = load_checkpoint(model_path, agent=agent)[0].eval()
        ep = run_episode(agent, task, 'mpc', model=loaded[model_path], steps=settings.get('rollout_steps') or 0,
                         seed=seed, num_samples=settings['num_samples'], horizon=settings['horizon'],
                         terrain=terrain, planner=settings.get('planner', 'random_shooting'), path_xy=path_xy)
        _write_episode(bag.parent, int(bag.name.split('_')[-1]), ep, 'mpc', figures=False)
        return {'return': ep.ret, 'steps': ep.steps, 'controller': ep.controller, **ep.metrics}
    return rollout


def graph_rollout(agent: str, frame_id: str = 'odom', log=None):
    """The rollout backend over DDS: each rollout is `mbmf-ros follow` (the follow graph in lock-step, its
    recorder writing the bag into ``bag``/), K and H from the parameter files; returns the run's report."""
    from mbmf_ros.commands.follow import run_follow

    def rollout(model_path: str, bag: Path, seed: int, path_xy=None) -> dict:
        if path_xy is None:
            raise ValueError('graph_rollout: the follow graph needs a path (task follow)')
        if bag.exists():          # an unfinished recording of an interrupted run
            shutil.rmtree(bag)
        report = run_follow(agent, path_xy, frame_id, model=str(model_path), seed=seed, quiet=True,
                            record=str(bag)).report
        return {'steps': report['steps'], 'controller': 'mpc', **{k: report[k] for k in (
            'mean_cross_track_m', 'mean_cross_track_body_lengths', 'completion', 'done') if k in report}}
    return rollout


def _rollouts_done(folder: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted(folder.glob('episode_*.json'))]


def run_mbrl(agent: str, task: str, out, settings: dict, terrain: str | None = None, paths=None,
             seed: int = 0, log=print, rollout=None, rand_bags=None, start_model: str | None = None) -> dict:
    """Algorithm 1 into ``out`` (see the module docstring); resumable. Returns the summary dict.

    rollout: the backend of the MPC rollouts (default ``in_process_rollout``; ``graph_rollout``: over DDS).
    rand_bags: existing D_rand bags (then none are collected); start_model: the model of iteration 0 (then
    none is trained on D_rand alone). paths: path files, or {name: (N, 2) points}, followed in turn by the
    aggregation rollouts (task follow)."""
    import numpy as np
    import torch

    from mbmf_ros.commands.train import load_train_config, train_from_bags
    from mbmf_ros.sim.experiments import collect_random
    torch.set_num_threads(1)
    rollout = rollout or in_process_rollout(agent, task, settings, terrain)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / 'settings.json'
    if settings_file.is_file():
        old = json.loads(settings_file.read_text())
        if _run_keys(old.get('settings') or {}) != _run_keys(settings) or old.get('terrain') != terrain:
            raise ValueError(f'{out} holds a run with other settings ({settings_file}: {old.get("settings")}, '
                             f'terrain {old.get("terrain")}); choose a new --out or delete it')
    else:
        settings_file.write_text(json.dumps({'agent': agent, 'task': task, 'terrain': terrain, 'settings': settings,
                                             'commit': git_commit(), 'started': time.strftime('%Y-%m-%dT%H:%M:%S')},
                                            indent=2))
    t_start = time.monotonic()
    # --- D_rand -----------------------------------------------------------------------------------------------
    rand = out / 'rand'
    if not rand_bags:
        rand.mkdir(exist_ok=True)
    n, steps = settings['random_rollouts'], settings['random_steps']
    todo = [] if rand_bags else [i for i in range(n) if not _bag_done(rand / f'episode_{i:04d}')]
    if todo:
        log(f'{agent} {task}: collecting {len(todo)} of {n} random rollouts x {steps} steps into {rand}')
        t0 = time.monotonic()
        for k, i in enumerate(todo):
            ep = next(collect_random(agent, 1, steps, seed + RAND_SEED + i, task=task, terrain=terrain))
            _write_episode(rand, i, ep, 'random')
            if (k + 1) % max(1, len(todo) // 10) == 0 or k + 1 == len(todo):
                log(f'  random rollouts {k + 1}/{len(todo)} ({time.monotonic() - t0:.0f} s)')
    cfg_keys = {'epochs': settings['epochs'], 'rand_fraction': settings['rand_fraction'], 'seed': seed,
                'threads': 1}
    if 'hidden_sizes' in settings:
        cfg_keys['hidden_sizes'] = settings['hidden_sizes']
    cfg = load_train_config(None, **cfg_keys)
    quiet = lambda *a: None  # noqa: E731

    def train(i: int, warm: str | None, rl_bags: list) -> str:
        model = out / f'iter_{i}' / 'model.pt'
        metrics_file = out / f'iter_{i}' / 'metrics.json'
        if model.is_file() and metrics_file.is_file():
            return str(model)
        t0 = time.monotonic()
        log(f'iteration {i}: training {settings["epochs"]} epochs on D_rand'
            + (f' + {len(rl_bags)} D_rl bags' if rl_bags else ''))
        _, metrics, report = train_from_bags(list(rand_bags or [str(rand)]), model, agent, cfg, warm_start=warm,
                                             rl_bags=rl_bags, progress=False, log=quiet)
        m = {k: v for k, v in metrics.items() if k != 'history'}
        m['train_seconds'] = time.monotonic() - t0
        prev = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        metrics_file.write_text(json.dumps({**prev, 'training': m}, indent=2, default=str))
        log(f'iteration {i}: model {model} ({m["train_seconds"]:.0f} s, validation 1-step MSE '
            f'{m["validation_mse"]:.4g})')
        return str(model)

    model_path = str(start_model) if start_model else train(0, None, [])
    path_list = paths if isinstance(paths, dict) else _paths_for(task, paths)
    rl_bags: list = []
    models = [model_path]
    for i in range(1, settings['iterations'] + 1):
        folder = out / f'iter_{i}' / 'rl'
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(settings['rollouts_per_iteration']):
            bag = folder / f'episode_{j:04d}'
            if (folder / f'episode_{j:04d}.json').is_file() and bag.is_dir() and any(bag.rglob('metadata.yaml')):
                continue        # done: its figures and its finished bag (the graph's recorder nests it)
            t0 = time.monotonic()
            name, pts = list(path_list.items())[j % len(path_list)] if path_list else (None, None)
            figures = rollout(model_path, bag, seed + RL_SEED + 1000 * i + j, pts)
            (folder / f'episode_{j:04d}.json').write_text(json.dumps(
                {'seed': seed + RL_SEED + 1000 * i + j, 'path': name, **figures}))
            log(f'iteration {i}: MPC rollout {j + 1}/{settings["rollouts_per_iteration"]} of model {i - 1}'
                + (f' on {name}' if name else '') + ': ' + _figures(figures) + f' ({time.monotonic() - t0:.0f} s)')
        rl_bags = [str(out / f'iter_{k}' / 'rl') for k in range(1, i + 1)]
        model_path = train(i, model_path, rl_bags)
        models.append(model_path)
    # --- summary: return of the MPC rollouts collected with each model vs the data it was trained on -------------
    rows = []
    if rand_bags:
        from mbmf_ros.io.bags import load_trajectories
        rand_steps = load_trajectories(list(rand_bags), agent=agent)[1].transitions
    else:
        rand_steps = sum(json.loads(p.read_text())['steps'] for p in sorted(rand.glob('episode_*.json')))
    data = rand_steps
    for i in range(1, settings['iterations'] + 1):
        eps = _rollouts_done(out / f'iter_{i}' / 'rl')
        row = {'iteration': i, 'model': _short(models[i - 1], out), 'data_steps': data,
               'mean_return': float(np.mean([e['return'] for e in eps])) if eps and 'return' in eps[0] else None,
               'std_return': float(np.std([e['return'] for e in eps])) if eps and 'return' in eps[0] else None,
               'rollouts': len(eps)}
        for key in ('completion', 'mean_cross_track_body_lengths'):
            if eps and key in eps[0]:
                row[key] = float(np.mean([e[key] for e in eps]))
        rows.append(row)
        data += sum(e['steps'] for e in eps)
    summary = {'agent': agent, 'task': task, 'terrain': terrain, 'settings': settings, 'random_steps': rand_steps,
               'total_steps': data, 'final_model': _short(model_path, out), 'curve': rows,
               'commit': git_commit(), 'seconds_this_run': time.monotonic() - t_start}
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    log(f'{agent} {task}: final model {model_path} after {data} steps of data')
    return summary


def add_arguments(parser):
    parser.add_argument('--agent', required=True, help='swimmer, half_cheetah, hopper, ant or hexapod')
    parser.add_argument('--task', required=True, choices=('forward', 'follow'))
    parser.add_argument('--out', required=True, help='run folder (re-running continues it)')
    parser.add_argument('--profile', default='paper', help='settings profile in config/mbrl.yaml (default paper)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='override one setting')
    parser.add_argument('--terrain', help='hexapod surface: carpet or styrofoam (default: the model file\'s)')
    parser.add_argument('--paths', nargs='+', help='follow: path files for aggregation rollouts')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--evaluate', action='store_true',
                        help='then evaluate the final model beside the zero and random baselines (eval_seeds)')


def run(args) -> int:
    from mbmf_ros.io.bags import BagError
    from mbmf_ros.io.checkpoint import CheckpointMismatch
    try:
        settings = load_settings(args.agent, args.task, args.profile, args.set)
        summary = run_mbrl(args.agent, args.task, args.out, settings, args.terrain, args.paths, args.seed)
        if args.evaluate:
            from mbmf_ros.commands.evaluate import evaluate, write_report
            result = evaluate(args.agent, str(Path(args.out) / summary['final_model']), args.task, settings,
                              terrain=args.terrain, paths=args.paths)
            write_report(result, Path(args.out) / 'evaluation')
    except (BagError, CheckpointMismatch, ValueError, FileNotFoundError) as e:
        print(f'mbmf-ros mbrl: {e}', file=sys.stderr)
        return 1
    return 0
