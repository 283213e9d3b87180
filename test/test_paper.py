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
