"""Reproduce the paper's tables (and the millirobot blog's Tables 1 and 2) into results/: `make paper`.

    mbmf-ros paper [--profile here] [--work runs/paper] [--results results] [--only forward_swimmer ...]
                   [--tables-only]

Each experiment is one unit, run in order (most of the table first) and kept in <work>/<unit>/; a unit whose
outputs exist is skipped, so re-running continues where it stopped (kill it any time). Units:
forward_<agent> (Algorithm 1 with the moving-forward reward, then MPC beside zero and random actions over
eval_seeds start states), follow_<agent> (trajectory following from random data: swimmer and hexapod use the
shipped models made with the paper's data; half_cheetah, on its line paths, adds the aggregation iterations of
its profile), terrain_<surface> and
terrain_both (the hexapod trained on carpet, styrofoam or both, each evaluated on each); forward_<agent> and
follow_<agent> share their random data where it is the same collection (``share_random_data``), minutes_<m> (the
hexapod trained on m minutes of random data on carpet). Then results/ gets README.md (the tables), results.json
and the plots, each table stating the commit and command. The settings come from config/mbrl.yaml (profile
`here` by default: what fits one session on a small machine; `paper`: the appendix's numbers, many hours).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

FORWARD = ('swimmer', 'half_cheetah', 'hopper', 'ant')
PAPER_SAVED_ROLLOUT = {'swimmer': 30, 'half_cheetah': 600, 'hopper': 100, 'ant': 110}   # appendix B table
TERRAINS = ('carpet', 'styrofoam')
MINUTES = (2, 5, 10, 17)
HEXAPOD_STEPS_PER_MINUTE = 1200          # 20 Hz
DEFAULT_UNITS = (['forward_swimmer', 'forward_half_cheetah', 'forward_hopper', 'terrain_carpet',
                  'terrain_styrofoam', 'terrain_both', 'follow_hexapod', 'follow_swimmer', 'follow_half_cheetah']
                 + [f'minutes_{m}' for m in MINUTES] + ['forward_ant', 'follow_ant'])


def _log(*a):
    print(time.strftime('%H:%M:%S'), *a, flush=True)


def _line_paths():
    from mbmf_ros.graphs import config_dir
    return [str(p) for p in sorted((config_dir() / 'paths' / 'line').glob('*.yaml'))]


def _hexapod_settings(profile: str, overrides=()):
    from mbmf_ros.commands.mbrl import load_settings
    return load_settings('hexapod', 'follow', profile, overrides)


def run_unit(unit: str, work: Path, profile: str) -> None:
    """Run one unit into work/unit (skipped when its evaluation exists)."""
    from mbmf_ros.commands.evaluate import evaluate, write_report
    from mbmf_ros.commands.mbrl import load_settings, run_mbrl
    from mbmf_ros.graphs import config_dir
    out = work / unit
    kind, _, name = unit.partition('_')
    if kind == 'forward':
        if (out / 'evaluation.json').is_file():
            return
        settings = load_settings(name, 'forward', profile)
        share_random_data(work / f'follow_{name}', out, name, settings, log=_log)
        summary = run_mbrl(name, 'forward', out, settings, log=_log)
        result = evaluate(name, str(out / summary['final_model']), 'forward', settings, log=_log)
        write_report(result, out / 'evaluation')
    elif kind == 'follow':
        if (out / 'evaluation.json').is_file():
            return
        settings = load_settings(name, 'follow', profile)
        paths = _line_paths() if name == 'half_cheetah' else None
        shipped = config_dir() / 'models' / f'{name}.pt'
        if name in ('swimmer', 'hexapod') and shipped.is_file():
            model = str(shipped)        # made by `mbmf-ros make-model` with the paper's random data
        else:
            share_random_data(work / f'forward_{name}', out, name, settings, log=_log)
            summary = run_mbrl(name, 'follow', out, settings, paths=paths, log=_log)
            model = str(out / summary['final_model'])
        result = evaluate(name, model, 'follow', settings, paths=paths, log=_log)
        write_report(result, out / 'evaluation')
    elif kind == 'terrain':
        if all((out / f'evaluation_on_{t}.json').is_file() for t in TERRAINS):
            return
        settings = _hexapod_settings(profile, ['random_rollouts=60'])     # 10 minutes of random data
        if name in TERRAINS:
            summary = run_mbrl('hexapod', 'follow', out, settings, terrain=name, log=_log)
            model = out / summary['final_model']
        else:
            model = out / 'model.pt'
            if not model.is_file():
                from mbmf_ros.commands.train import load_train_config, train_from_bags
                for t in TERRAINS:        # their random data (resumable; their evaluations may be restored)
                    run_mbrl('hexapod', 'follow', work / f'terrain_{t}', settings, terrain=t, log=_log)
                cfg = load_train_config(None, epochs=settings['epochs'], seed=0, threads=1)
                _log('terrain_both: training on the carpet and styrofoam random data')
                out.mkdir(parents=True, exist_ok=True)
                train_from_bags([str(work / f'terrain_{t}' / 'rand') for t in TERRAINS], model, 'hexapod', cfg,
                                progress=False, log=lambda *a: None)
        for t in TERRAINS:
            if not (out / f'evaluation_on_{t}.json').is_file():
                result = evaluate('hexapod', str(model), 'follow', settings, terrain=t, log=_log)
                write_report(result, out / f'evaluation_on_{t}')
    elif kind == 'minutes':
        if (out / 'evaluation.json').is_file():
            return
        rollouts = int(name) * HEXAPOD_STEPS_PER_MINUTE // 200
        same = work / 'terrain_carpet' / 'evaluation_on_carpet.json'
        if rollouts == 60 and same.is_file():     # 10 minutes on carpet: the same data, model and evaluation
            out.mkdir(parents=True, exist_ok=True)
            (out / 'evaluation.json').write_text(same.read_text())
            return
        settings = _hexapod_settings(profile, [f'random_rollouts={rollouts}'])
        summary = run_mbrl('hexapod', 'follow', out, settings, terrain='carpet', log=_log)
        result = evaluate('hexapod', str(out / summary['final_model']), 'follow', settings, terrain='carpet',
                          log=_log)
        write_report(result, out / 'evaluation')
    else:
        raise ValueError(f'unknown unit {unit!r}; units are {", ".join(DEFAULT_UNITS)}')


def share_random_data(other: Path, out: Path, agent: str, settings: dict, log=print) -> int:
    """Hard-link the finished D_rand bags of unit folder ``other`` into ``out``/rand where they are the same
    collection: ``mbmf-ros mbrl`` collects episode i of either task from seed RAND_SEED + i, with heading noise
    only in an agent's follow data (the swimmer's), so for an agent without it the two tasks' random data with
    the same rollout length are identical (the ant's 700 x 1000 steps: half its cost); so is the model trained
    on them alone (iter_0) when the training settings are the same: it is linked too. Returns the number of
    bags linked (0 when the collections differ or ``other`` has none)."""
    import os
    import shutil

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.commands.mbrl import _bag_done
    theirs = _load(other / 'settings.json')
    if (theirs is None or get_agent(agent).heading_noise or theirs.get('agent') != agent
            or theirs.get('terrain') is not None
            or theirs['settings'].get('random_steps') != settings['random_steps']):
        return 0
    (out / 'rand').mkdir(parents=True, exist_ok=True)
    linked = 0
    for i in range(settings['random_rollouts']):
        name = f'episode_{i:04d}'
        src, dst = other / 'rand' / name, out / 'rand' / name
        if not _bag_done(src) or _bag_done(dst) or not (other / 'rand' / f'{name}.json').is_file():
            continue
        if dst.exists():            # an unfinished bag of an interrupted run
            shutil.rmtree(dst)
        shutil.copytree(src, dst, copy_function=os.link)
        (out / 'rand' / f'{name}.json').unlink(missing_ok=True)
        os.link(other / 'rand' / f'{name}.json', out / 'rand' / f'{name}.json')
        linked += 1
    if linked:
        log(f'{out.name}: {linked} random rollouts linked from {other / "rand"} (the same collection)')
    # The model trained on that data alone (iter_0) is the same too when the training settings are.
    same = ('random_rollouts', 'epochs', 'rand_fraction', 'hidden_sizes')
    src, dst = other / 'iter_0', out / 'iter_0'
    if (all(theirs['settings'].get(k) == settings.get(k) for k in same) and (src / 'model.pt').is_file()
            and (src / 'metrics.json').is_file() and not (dst / 'model.pt').exists()):
        dst.mkdir(parents=True, exist_ok=True)
        for name in ('model.pt', 'metrics.json'):
            (dst / name).unlink(missing_ok=True)
            os.link(src / name, dst / name)
        log(f'{out.name}: model {src / "model.pt"} linked (the same data and training settings)')
    return linked


def restore_units(work: Path, previous: Path, profile: str, skip=()) -> list:
    """Put back into ``work`` the outputs of the finished units that ``previous`` (an earlier results.json of
    the same profile) holds and ``work`` lacks, so the tables can be remade without re-running them: each unit's
    evaluation.json (and the summary.json, re-evaluations evaluation_<name>.json and terrain evaluations) as they
    were written, their commit stamps included, each marked with ``restored_from``. Nothing is restored into a
    unit named in ``skip`` (the units about to be run), nor anything the work folder already has for a unit, nor
    from a results.json of another profile. Returns the units restored."""
    old = _load(previous)
    if old is None or old.get('profile') != profile:
        return []
    mark = {'restored_from': f"{previous} (tables written at commit {old.get('commit', '?')})"}
    files = {}                                    # unit -> {file name: dict}
    for agent, v in (old.get('forward') or {}).items():
        files[f'forward_{agent}'] = {'evaluation.json': v['evaluation'], 'summary.json': v['summary'],
                                     **{f'evaluation_{n}.json': e for n, e in (v.get('reevaluations') or {}).items()}}
    for agent, ev in (old.get('follow') or {}).items():
        files[f'follow_{agent}'] = {'evaluation.json': ev}       # with its data_steps (its summary is not kept)
    for t, evs in (old.get('terrain') or {}).items():
        files[f'terrain_{t}'] = {f'evaluation_on_{on}.json': ev for on, ev in evs.items()}
    for m, ev in (old.get('minutes') or {}).items():
        files[f'minutes_{m}'] = {'evaluation.json': ev}
    done = []
    for unit, contents in files.items():
        out = work / unit
        if unit in skip or any((out / name).exists() for name in contents):
            continue
        out.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            (out / name).write_text(json.dumps({**data, **mark}, indent=2, default=str))
        done.append(unit)
    return done


# --- tables -------------------------------------------------------------------------------------------------------
def _load(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def _ms(s, digits=2):
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def write_results(work: Path, results: Path, profile: str, command: str) -> Path:
    """results/README.md, results.json and plots from the units' outputs (missing units are listed as such)."""
    from mbmf_ros.commands.mbrl import git_commit
    results.mkdir(parents=True, exist_ok=True)
    commit = git_commit()
    stamp = f'tables written at commit `{commit}` by `{command}`, profile `{profile}`'
    commits = sorted({json.loads(p.read_text()).get('commit', '?') for p in work.glob('*/evaluation*.json')})
    if commits:
        stamp += f"; the runs were made at commit(s) {', '.join(f'`{c}`' for c in commits)}"
    restored = sorted({p.parent.name for p in work.glob('*/evaluation*.json') if 'restored_from' in _load(p)})
    if restored:
        stamp += (f"; restored from the previous results.json (their run folders are gone, not re-run): "
                  f"{', '.join(restored)}")
    md = ['# Results: the paper\'s experiments in this package', '',
          'Generated by `mbmf-ros paper` (never edited by hand). Gymnasium\'s MuJoCo agents are not rllab\'s '
          '(other model files, masses and contact settings), so the paper\'s figures are a reference, not a '
          'target that the same numbers must reach. Machine: 2 shared CPU cores, no GPU.', '']
    everything = {'commit': commit, 'command': command, 'profile': profile}

    # moving forward
    md += ['## Moving forward (paper Sec. VI-C, appendix C.2 rewards)', '', stamp, '',
           '| agent | data used (steps) | MPC return | zero-action | random-action | paper (saved MPC rollouts) | '
           'settings (K, H, epochs, aggregation iterations x rollouts) |',
           '|---|---|---|---|---|---|---|']
    fwd = {}
    for agent in FORWARD:
        ev, sm = _load(work / f'forward_{agent}' / 'evaluation.json'), _load(work / f'forward_{agent}' / 'summary.json')
        if ev is None or sm is None:
            md.append(f'| {agent} | not run this session | | | | {PAPER_SAVED_ROLLOUT[agent]} | |')
            continue
        r, s = ev['results'], ev['settings']
        fwd[agent] = {'evaluation': ev, 'summary': sm}
        md.append(f"| {agent} | {sm['total_steps']} | {_ms(r['mpc']['return'])} | {_ms(r['zero']['return'])} | "
                  f"{_ms(r['random']['return'])} | {PAPER_SAVED_ROLLOUT[agent]} | K={s['num_samples']}, "
                  f"H={s['horizon']}, {s['epochs']} epochs, {s['iterations']} x {s.get('rollouts_per_iteration', 0)}"
                  f" rollouts; {ev['seeds']} seeds x {s.get('eval_steps')} steps; run at `{sm['commit']}` |")
        # Re-evaluations of the same final model with other planner settings (`mbmf-ros evaluate --set ...
        # --out <unit>/evaluation_<name>`), e.g. the paper's horizon where the profile cut it.
        for extra in sorted((work / f'forward_{agent}').glob('evaluation_*.json')):
            ev2 = _load(extra)
            fwd[agent].setdefault('reevaluations', {})[extra.stem[len('evaluation_'):]] = ev2
            r2, s2 = ev2['results'], ev2['settings']
            md.append(f"| {agent} (same model, {extra.stem[len('evaluation_'):]}) | {sm['total_steps']} | "
                      f"{_ms(r2['mpc']['return'])} | {_ms(r2['zero']['return'])} | {_ms(r2['random']['return'])} | "
                      f"{PAPER_SAVED_ROLLOUT[agent]} | K={s2['num_samples']}, H={s2['horizon']}; {ev2['seeds']} seeds x "
                      f"{s2.get('eval_steps')} steps; run at `{ev2['commit']}` |")
    md += ['', 'Return: sum over the episode of the appendix C.2 reward of the true transitions (world-frame x '
           'velocity of the centre of mass + alive bonus - action cost; an episode ends when the hopper or ant '
           'falls), mean ± std over start states; all controllers start from the same states.', '']
    everything['forward'] = fwd

    # reward vs data
    curves = {a: v['summary']['curve'] for a, v in fwd.items() if v['summary']['curve']}
    if curves:
        md += ['## Reward vs. data (paper Fig. 6/7 style)', '', stamp, '',
               'Mean return of the MPC rollouts each model collected, against the steps of data it was trained on '
               '(iteration 1 = the model trained on random data only).', '',
               '| agent | ' + ' | '.join(f'iteration {i + 1}' for i in range(max(len(c) for c in curves.values())))
               + ' |', '|---|' + '---|' * max(len(c) for c in curves.values())]
        for a, c in curves.items():
            md.append(f'| {a} | ' + ' | '.join(f"{row['mean_return']:.1f} ({row['data_steps']} steps)" for row in c)
                      + ' |')
        md += ['', '![reward vs data](reward_vs_data.png)', '']
        _plot_curves(curves, results / 'reward_vs_data.png')

    # trajectory following
    md += ['## Trajectory following (paper Fig. 3)', '', stamp, '',
           '| agent | path | data (steps); seeds | MPC cross-track (BL) | MPC completion | zero completion | '
           'random completion (cross-track BL) |', '|---|---|---|---|---|---|---|']
    fol = {}
    for agent in ('swimmer', 'half_cheetah', 'hexapod', 'ant'):
        ev = _load(work / f'follow_{agent}' / 'evaluation.json')
        if ev is None:
            md.append(f'| {agent} | not run this session (unit follow_{agent}) | | | | | |')
            continue
        sm = _load(work / f'follow_{agent}' / 'summary.json')     # steps collected (training + validation)
        data = sm['total_steps'] if sm else ev.get('data_steps') or _data_steps(ev['model'], ev['settings'])
        fol[agent] = {**ev, 'data_steps': data}
        r = ev['results']
        for name in r['mpc']['paths']:
            m, z, x = r['mpc']['paths'][name], r['zero']['paths'][name], r['random']['paths'][name]
            md.append(f"| {agent} | {name} | {data}; {ev['seeds']} | {_ms(m['mean_cross_track_body_lengths'], 3)} | "
                      f"{_ms(m['completion'])} | {z['completion']['mean']:.2f} | "
                      f"{x['completion']['mean']:.2f} ({x['mean_cross_track_body_lengths']['mean']:.3f}) |")
    md += ['', 'MPC figures: mean ± std over the seeds (start states), each path followed once per seed. '
           'BL = body length (hexapod 0.1 m, swimmer 0.3 m, half_cheetah 1 m, ant 0.5 m); completion = '
           'fraction of the path length covered within the step budget (3x the time at the agent\'s pace + 2 s). '
           'half_cheetah moves in the x-z plane: its paths lie on its line (forward, backward, forward then back), '
           'so its cross-track error is only how far it overshoots a path\'s end.',
           '']
    agg = [f"{a} ({ev['settings']['iterations']} iterations x {ev['settings'].get('rollouts_per_iteration', 0)} "
           f"MPC rollouts)" for a, ev in fol.items() if ev['settings'].get('iterations')]
    if agg:
        md += ['Data: random data alone (the appendix) except for ' + ', '.join(agg) + ', whose data adds '
               "Algorithm 1's aggregation rollouts on its paths (config/mbrl.yaml says why).", '']
    everything['follow'] = fol

    # millirobot Table 1
    md += ['## The millirobot\'s Table 1 in simulation: terrain', '', stamp, '',
           'The hexapod on two surfaces (`Simulation(terrain=...)`, bridge parameter `terrain`): carpet '
           '(friction 1.5, soft contact) and styrofoam (friction 0.25, firm). Models trained on 10 minutes of '
           'random data on each, and on both (20 minutes), each evaluated on each; tracking cost = mean '
           'cross-track error over the four example paths (BL), completion beside it.', '',
           '| trained on | on carpet: cross-track (BL) / completion | on styrofoam: cross-track (BL) / completion |',
           '|---|---|---|']
    terr = {}
    for t in (*TERRAINS, 'both'):
        cells = []
        for on in TERRAINS:
            ev = _load(work / f'terrain_{t}' / f'evaluation_on_{on}.json')
            if ev is None:
                cells.append('not run')
                continue
            terr.setdefault(t, {})[on] = ev
            m = ev['results']['mpc']
            cells.append(f"{m['mean_cross_track_body_lengths']['mean']:.3f} / {m['completion']['mean']:.2f}")
        md.append(f'| {t} | ' + ' | '.join(cells) + ' |')
    if all(t in terr and len(terr[t]) == 2 for t in (*TERRAINS, 'both')):
        worse = [on for on in TERRAINS if terr['both'][on]['results']['mpc']['mean_cross_track_body_lengths']['mean']
                 > terr[on][on]['results']['mpc']['mean_cross_track_body_lengths']['mean']]
        md += ['', f"The blog found the mixed model worse than either specialist. Here the mixed model tracks worse "
               f"than the specialist on: {', '.join(worse) if worse else 'neither surface'}."]
    md.append('')
    everything['terrain'] = terr

    # millirobot Table 2
    md += ['## The millirobot\'s Table 2 in simulation: minutes of random data', '', stamp, '',
           '| random data | steps | mean cross-track (BL), four paths on carpet | completion |', '|---|---|---|---|']
    mins = {}
    for m in MINUTES:
        ev = _load(work / f'minutes_{m}' / 'evaluation.json')
        if ev is None:
            md.append(f'| {m} min | {m * HEXAPOD_STEPS_PER_MINUTE} | not run this session | |')
            continue
        mins[m] = ev
        r = ev['results']['mpc']
        md.append(f"| {m} min | {m * HEXAPOD_STEPS_PER_MINUTE} | {_ms(r['mean_cross_track_body_lengths'], 3)} | "
                  f"{_ms(r['completion'])} |")
    md.append('')
    everything['minutes'] = mins
    everything['headline'] = headline(fwd, fol, stamp)
    (results / 'README.md').write_text('\n'.join(md) + '\n')
    (results / 'results.json').write_text(json.dumps(everything, indent=2, default=str))
    return results / 'README.md'


README_BEGIN = '<!-- paper-results:begin (written by mbmf-ros paper; do not edit) -->'
README_END = '<!-- paper-results:end -->'


def headline(fwd: dict, fol: dict, stamp: str) -> str:
    """The short table for the project README: per agent and task, MPC vs zero vs random."""
    rows = ['| agent | task | data (steps) | MPC | zero-action | random-action |', '|---|---|---|---|---|---|']
    for agent, v in fwd.items():
        r = v['evaluation']['results']
        rows.append(f"| {agent} | forward (return) | {v['summary']['total_steps']} | {_ms(r['mpc']['return'], 1)} | "
                    f"{_ms(r['zero']['return'], 1)} | {_ms(r['random']['return'], 1)} |")
    for agent, ev in fol.items():
        r = ev['results']
        cell = lambda c: (f"{r[c]['mean_cross_track_body_lengths']['mean']:.3f} BL, "  # noqa: E731
                          f"{r[c]['completion']['mean']:.2f} done")
        rows.append(f"| {agent} | follow (cross-track, completion; {len(r['mpc']['paths'])} paths) | "
                    f"{ev.get('data_steps') or _data_steps(ev['model'], ev['settings'])} | {cell('mpc')} | "
                    f"{cell('zero')} | {cell('random')} |")
    return '\n'.join(rows) + f'\n\n{stamp}; full tables: [results/README.md](results/README.md).\n'


def update_readme(readme: Path, text: str) -> bool:
    """Replace the block between README_BEGIN and README_END in ``readme``; False when the markers are absent."""
    if not readme.is_file():
        return False
    s = readme.read_text()
    if README_BEGIN not in s or README_END not in s:
        return False
    a, b = s.index(README_BEGIN) + len(README_BEGIN), s.index(README_END)
    readme.write_text(s[:a] + '\n' + text + s[b:])
    return True


def _data_steps(model_path: str, settings: dict) -> str:
    try:
        from mbmf_ros.io.checkpoint import read_checkpoint
        meta = read_checkpoint(model_path).get('meta', {})
        return str(meta.get('metrics', {}).get('transitions', '?'))
    except Exception:  # noqa: BLE001 - a figure for a table; the model itself was already loaded to evaluate
        return f"{settings['random_rollouts']} x {settings['random_steps']}"


def _plot_curves(curves: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    for ax, (agent, rows) in zip(axes[0], curves.items()):
        ax.errorbar([r['data_steps'] for r in rows], [r['mean_return'] for r in rows],
                    yerr=[r['std_return'] for r in rows], marker='o', capsize=3)
        ax.set_title(agent)
        ax.set_xlabel('steps of data (D_rand + D_rl)')
        ax.set_ylabel('MPC rollout return')
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser):
    parser.add_argument('--profile', default='here', help='settings profile in config/mbrl.yaml (default here)')
    parser.add_argument('--work', default='runs/paper', help='run folders (kept; re-running continues)')
    parser.add_argument('--results', default='results', help='where the tables and plots go (default results)')
    parser.add_argument('--only', nargs='+', help=f'units to run (default all: {" ".join(DEFAULT_UNITS)})')
    parser.add_argument('--tables-only', action='store_true', help='only (re)write results/ from what exists')
    parser.add_argument('--readme', default='', help='also rewrite the headline block of this README.md')
    parser.add_argument('--no-restore', action='store_true',
                        help='do not restore the finished units of <results>/results.json (same profile) that '
                             '<work> lacks; they are then run (or listed as not run)')


def run(args) -> int:
    from mbmf_ros.io.bags import BagError
    from mbmf_ros.io.checkpoint import CheckpointMismatch
    work, results = Path(args.work), Path(args.results)
    command = f'mbmf-ros paper --profile {args.profile}' + (f' --work {args.work}' if args.work != 'runs/paper' else '')
    if args.only:
        command += ' --only ' + ' '.join(args.only)
    units = args.only or list(DEFAULT_UNITS)
    if not args.no_restore:
        restored = restore_units(work, results / 'results.json', args.profile,
                                 skip=() if args.tables_only else units if args.only else ())
        if restored:
            _log(f'restored from {results / "results.json"} (not re-run): {", ".join(restored)}')
    if not args.tables_only:
        for unit in units:
            _log(f'== {unit}')
            try:
                run_unit(unit, work, args.profile)
            except (BagError, CheckpointMismatch, ValueError, FileNotFoundError) as e:
                print(f'mbmf-ros paper: {unit}: {e}', file=sys.stderr)
                return 1
            write_results(work, results, args.profile, command)
    path = write_results(work, results, args.profile, command)
    _log(f'wrote {path}')
    if args.readme:
        everything = json.loads((results / 'results.json').read_text())
        if update_readme(Path(args.readme), everything['headline']):
            _log(f'updated the headline table in {args.readme}')
    return 0
