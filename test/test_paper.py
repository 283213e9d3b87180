"""The paper's experiments, small: `mbmf-ros mbrl` (Algorithm 1, resumable), `mbmf-ros evaluate` (MPC beside the
zero and random baselines on the same episodes), `mbmf-ros paper` tables, and the episode bags they write.
The `ci` profile of config/mbrl.yaml keeps every run to a few hundred simulated steps and a 2 x 64 model."""
import json

import numpy as np
import pytest

from mbmf_ros.cli import main
from mbmf_ros.commands.mbrl import load_settings, run_mbrl
from mbmf_ros.sim.experiments import run_episode


def test_settings_are_the_appendix_numbers_and_errors_name_the_problem():
    s = load_settings('half_cheetah', 'forward')
    assert (s['random_rollouts'], s['random_steps'], s['epochs'], s['iterations'], s['rollouts_per_iteration'],
            s['rollout_steps'], s['rand_fraction'], s['num_samples'], s['horizon']) == (
        10, 1000, 60, 7, 9, 1000, 0.1, 1000, 20)
    assert load_settings('swimmer', 'forward')['random_rollouts'] == 25
    assert load_settings('ant', 'follow')['random_rollouts'] * load_settings('ant', 'follow')['random_steps'] == 700_000
    assert load_settings('swimmer', 'forward', 'here', ['horizon=7'])['horizon'] == 7
    with pytest.raises(ValueError, match="no settings for agent 'hopper' task 'follow'"):
        load_settings('hopper', 'follow')
    with pytest.raises(ValueError, match="no profile 'fast'"):
        load_settings('swimmer', 'forward', 'fast')
    with pytest.raises(ValueError, match='epochs must be an integer'):
        load_settings('swimmer', 'forward', 'paper', ['epochs=many'])


def test_baselines_start_from_the_same_state_and_the_return_is_the_paper_reward():
    eps = {c: run_episode('swimmer', 'forward', c, model=None if c != 'mpc' else _TinyModel(), steps=15, seed=5,
                          num_samples=20, horizon=3) for c in ('zero', 'random', 'mpc')}
    starts = {c: e.states[0] for c, e in eps.items()}
    np.testing.assert_array_equal(starts['zero'], starts['random'])
    np.testing.assert_array_equal(starts['zero'], starts['mpc'])
    assert abs(starts['zero'][2]) < 0.05                     # forward data: no U(-pi, pi) heading (A.1)
    z, r = eps['zero'], eps['random']
    # The return re-computed from the recorded states with the appendix's swimmer reward, written out.
    dx = np.diff(r.states[:, 0]) / 0.15
    ctrl = 0.5 * np.sum((r.actions / 50.0) ** 2, axis=1)
    assert r.ret == pytest.approx(float(np.sum(dx - ctrl)), rel=1e-4, abs=1e-6)
    assert abs(z.ret) < 0.05 and z.steps == r.steps == 15


class _TinyModel:
    """A DynamicsModel stand-in for the planner: stands still."""
    num_members = 1

    def predict(self, states, actions):
        import torch
        s = states if states.dim() == 3 else states.unsqueeze(0)
        return s.clone() + 0 * torch.zeros(1)


def test_mbrl_runs_algorithm_1_resumes_and_evaluates(tmp_path, capsys):
    out = tmp_path / 'swimmer_forward'
    assert main(['mbrl', '--agent', 'swimmer', '--task', 'forward', '--out', str(out), '--profile', 'ci',
                 '--evaluate']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert sorted(p.name for p in (out / 'rand').glob('episode_????')) == ['episode_0000', 'episode_0001']
    assert (out / 'iter_0' / 'model.pt').is_file() and (out / 'iter_1' / 'model.pt').is_file()
    assert (out / 'iter_1' / 'rl' / 'episode_0000' / 'metadata.yaml').is_file()
    assert summary['final_model'] == 'iter_1/model.pt' and summary['random_steps'] == 80
    assert summary['total_steps'] == 80 + 20 and summary['curve'][0]['data_steps'] == 80
    ckpt = json.loads(json.dumps(summary))
    assert ckpt['settings']['iterations'] == 1
    ev = json.loads((out / 'evaluation.json').read_text())
    assert set(ev['results']) == {'mpc', 'zero', 'random'} and ev['results']['mpc']['return']['n'] == 2
    assert '| zero |' in (out / 'evaluation.md').read_text()
    # Re-running continues: nothing is collected or trained again.
    mtime = (out / 'iter_1' / 'model.pt').stat().st_mtime_ns
    capsys.readouterr()
    settings = load_settings('swimmer', 'forward', 'ci')
    run_mbrl('swimmer', 'forward', out, settings)
    log = capsys.readouterr().out
    assert 'collecting' not in log and 'training' not in log and 'MPC rollout' not in log
    assert (out / 'iter_1' / 'model.pt').stat().st_mtime_ns == mtime
    # Other settings in the same folder are refused, naming the folder.
    with pytest.raises(ValueError, match='other settings'):
        run_mbrl('swimmer', 'forward', out, {**settings, 'epochs': 3})
    with pytest.raises(ValueError, match='other settings'):     # K plans the aggregation rollouts
        run_mbrl('swimmer', 'forward', out, {**settings, 'num_samples': 7})
    # How the run is evaluated is not what it holds: more evaluation seeds continue the same run.
    run_mbrl('swimmer', 'forward', out, {**settings, 'eval_seeds': 5, 'eval_steps': 9, 'profile': 'here'})
    assert 'training' not in capsys.readouterr().out
    # An interrupted bag (no metadata.yaml yet) is redone.
    import shutil
    shutil.rmtree(out / 'iter_1' / 'rl' / 'episode_0000')
    (out / 'iter_1' / 'rl' / 'episode_0000').mkdir()
    (out / 'iter_1' / 'model.pt').unlink()
    run_mbrl('swimmer', 'forward', out, settings)
    assert (out / 'iter_1' / 'rl' / 'episode_0000' / 'metadata.yaml').is_file()
    # The tables name the commit and the command.
    work = tmp_path
    (work / 'forward_swimmer').symlink_to(out)
    assert main(['paper', '--work', str(work), '--results', str(tmp_path / 'results'), '--tables-only']) == 0
    text = (tmp_path / 'results' / 'README.md').read_text()
    assert 'commit `' in text and 'by `mbmf-ros paper' in text and '| swimmer | 100 |' in text
    assert 'the runs were made at commit(s)' in text
    assert '| hopper | not run this session' in text
    assert (tmp_path / 'results' / 'reward_vs_data.png').is_file()


def test_episode_bags_read_back_as_trajectories(tmp_path):
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.io.bags import load_trajectories
    from mbmf_ros.io.episode_bags import write_episode_bag
    ep = run_episode('hopper', 'forward', 'random', steps=12, seed=3, terminate=False)
    write_episode_bag(tmp_path / 'ep', 'hopper', get_agent('hopper').state_names, ep.states, ep.actions,
                      ep.stamps, episode=4)
    trajs, report = load_trajectories([tmp_path / 'ep'], agent='hopper')
    assert len(trajs) == 1 and report.transitions == 12
    np.testing.assert_array_equal(trajs[0].states, ep.states)
    np.testing.assert_array_equal(trajs[0].actions, ep.actions)
    with pytest.raises(FileExistsError, match='never overwritten'):
        write_episode_bag(tmp_path / 'ep', 'hopper', get_agent('hopper').state_names, ep.states, ep.actions,
                          ep.stamps)


def test_hexapod_terrains_change_the_dynamics():
    """The same turn-on-the-spot command turns the robot by a different angle on carpet and on styrofoam (the
    surfaces differ in friction and compliance); an unknown surface is named with the known ones."""
    from mbmf_ros.sim.simulation import Simulation
    turned = {}
    for t in ('carpet', 'styrofoam'):
        sim = Simulation('hexapod', terrain=t)
        s0 = sim.reset(seed=0).estimate.values[2]
        for _ in range(30):
            r = sim.step(np.array([1.0, -1.0]))
        turned[t] = abs(r.estimate.values[2] - s0)
    assert abs(turned['styrofoam'] - turned['carpet']) > 0.15 * max(turned.values()), turned
    with pytest.raises(ValueError, match="unknown terrain 'ice'.*carpet"):
        Simulation('hexapod', terrain='ice')


def _fake_evaluation(task, commit, value, paths=('straight',)):
    """An evaluation.json as `mbmf-ros evaluate` writes it (the fields the tables read), with made-up figures."""
    from mbmf_ros.sim.experiments import summarise
    results = {}
    for k, c in enumerate(('mpc', 'zero', 'random')):
        v = value - 2 * k
        r = {'return': summarise([v, v + 1, v + 2])}
        if task == 'follow':
            fig = {'mean_cross_track_body_lengths': summarise([0.01 * (k + 1)] * 3),
                   'completion': summarise([0.9 / (k + 1)] * 3)}
            r.update(fig, paths={p: fig for p in paths})
        results[c] = r
    return {'agent': 'x', 'task': task, 'model': 'runs/gone/model.pt', 'terrain': None, 'seeds': 3,
            'settings': {'num_samples': 500, 'horizon': 10, 'epochs': 30, 'iterations': 2,
                         'rollouts_per_iteration': 2, 'eval_steps': 333, 'random_rollouts': 2, 'random_steps': 9},
            'results': results, 'commit': commit}


def test_tables_are_remade_from_the_previous_results_json_without_the_run_folders(tmp_path):
    """A lost work folder: `paper --tables-only` restores the finished units' outputs from results/results.json
    (same profile), re-evaluations included, so the tables come back the same, each row keeping the commit it
    was run at; units about to be run, and another profile's results, are not restored."""
    from mbmf_ros.commands.paper import restore_units
    old, results = tmp_path / 'old', tmp_path / 'results'
    files = {'forward_swimmer/evaluation.json': _fake_evaluation('forward', 'c0ffee000001', 2.4),
             'forward_swimmer/summary.json': {'total_steps': 9657, 'commit': 'c0ffee000001',
                                              'curve': [{'data_steps': 8325, 'mean_return': 10.2, 'std_return': 1.0}]},
             'forward_swimmer/evaluation_h20.json': _fake_evaluation('forward', 'c0ffee000002', 14.1),
             'follow_hexapod/evaluation.json': _fake_evaluation('follow', 'c0ffee000003', 1.0),
             'follow_hexapod/summary.json': {'total_steps': 10800},
             'terrain_carpet/evaluation_on_carpet.json': _fake_evaluation('follow', 'c0ffee000004', 1.0),
             'terrain_carpet/evaluation_on_styrofoam.json': _fake_evaluation('follow', 'c0ffee000004', 1.0),
             'minutes_2/evaluation.json': _fake_evaluation('follow', 'c0ffee000005', 1.0)}
    for name, data in files.items():
        (old / name).parent.mkdir(parents=True, exist_ok=True)
        (old / name).write_text(json.dumps(data))
    args = ['paper', '--tables-only', '--results', str(results)]
    assert main(args + ['--work', str(old)]) == 0
    before = (results / 'README.md').read_text()
    assert set(json.loads((results / 'results.json').read_text())['forward']['swimmer']['reevaluations']) == {'h20'}

    def rows(text):
        return [line for line in text.splitlines() if line.startswith('| ') and 'agent |' not in line]
    new = tmp_path / 'new'             # the run folder is gone
    assert main(args + ['--work', str(new)]) == 0
    after = (results / 'README.md').read_text()
    assert rows(after) == rows(before)
    assert '| swimmer (same model, h20) | 9657 | 15.10 ± 0.82 |' in after and 'run at `c0ffee000002`' in after
    assert '| hexapod | straight | 10800; 3 |' in after and '| 2 min | 2400 | 0.010 ± 0.000 |' in after
    assert 'restored from the previous results.json' in after and 'forward_swimmer' in after
    ev = json.loads((new / 'forward_swimmer' / 'evaluation_h20.json').read_text())
    assert ev['commit'] == 'c0ffee000002' and 'restored_from' in ev
    # A unit about to be run is not restored; another profile's results are not either; nothing is overwritten.
    other = tmp_path / 'other'
    assert 'forward_swimmer' not in restore_units(other, results / 'results.json', 'here', skip=['forward_swimmer'])
    assert not (other / 'forward_swimmer').exists() and (other / 'follow_hexapod' / 'evaluation.json').is_file()
    assert restore_units(tmp_path / 'paper', results / 'results.json', 'paper') == []
    assert restore_units(new, results / 'results.json', 'here') == []
