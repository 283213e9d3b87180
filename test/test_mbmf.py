"""mbmf-ros mbmf, a tiny version of the whole chain: random data, dynamics, MPC rollouts, DAgger, TRPO from the
DAgger policy and from scratch; steps counted, resumable, report written."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('sb3_contrib')

TINY = ['--agent', 'swimmer', '--random-rollouts', '2', '--random-steps', '50', '--episode-steps', '20', '--mpc-rollouts', '1',
        '--dagger-iterations', '1', '--dagger-rollouts', '1', '--num-samples', '20', '--horizon', '3', '--batch', '64',
        '--aggregation-iterations', '0', '--steps', '128']


def _mbmf(*args):
    return subprocess.run([sys.executable, '-m', 'mbmf_ros.cli', 'mbmf', *args], capture_output=True, text=True,
                          timeout=300, env={'OMP_NUM_THREADS': '1', **__import__('os').environ})


def test_tiny_chain_counts_every_step_resumes_and_reports(tmp_path):
    out = tmp_path / 'run'
    p = _mbmf(*TINY, '--out', str(out))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    counts = json.loads((out / 'env_steps.json').read_text())
    # 2 random rollouts of 50 steps, 1 MPC and 1 DAgger episode of 20, 3 + 3 evaluation episodes (mean, sampled)
    assert counts['random'] == 100 and counts['mpc'] == 20 and counts['dagger'] == 20
    assert counts['policy_evaluation'] == 120 and counts['finetune'] == 128
    assert 'aggregation' not in counts and not (out / 'aggregation').exists()
    offset = 100 + 20 + 20 + 120
    mbmf = list(csv.DictReader((out / 'curve_mbmf.csv').open()))
    scratch = list(csv.DictReader((out / 'curve_scratch.csv').open()))
    assert [int(r['env_steps']) for r in mbmf] == [offset + 64, offset + 128]
    assert [int(r['env_steps']) for r in scratch] == [64, 128]
    assert all(np.isfinite(float(r['mean_return'])) for r in mbmf + scratch)
    # a second run changes nothing; more steps extend the fine-tuning only
    before = (out / 'dagger' / 'stages.jsonl').read_text()
    p = _mbmf(*TINY[:-1], '192', '--out', str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / 'dagger' / 'stages.jsonl').read_text() == before
    assert len(list(csv.DictReader((out / 'curve_mbmf.csv').open()))) == 3
    # other settings in the same folder are refused
    p = _mbmf(*[a if a != '3' else '4' for a in TINY], '--out', str(out))
    assert p.returncode == 2 and 'other settings' in p.stderr
    p = _mbmf('--report', str(tmp_path / 'results' / 'mbmf.md'), '--runs', str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    text = (tmp_path / 'results' / 'mbmf.md').read_text()
    assert '| swimmer | trpo | 0 | 64 | 192 |' in text and '**Thresholds.**' in text and 'last 5 batches' in text
    assert '| swimmer | trpo | mpc |' in text and '| swimmer | trpo | best |' in text
    assert (tmp_path / 'results' / 'mbmf_swimmer_trpo.png').stat().st_size > 1000


def test_ratio_of_steps_to_a_threshold_and_its_bounds():
    from mbmf_ros.commands.mbmf import ratio
    scratch = np.array([[1000, 0.0], [2000, 3.0], [3000, 9.0], [4000, 12.0], [5000, 11.0]])
    mbmf = np.array([[1500, 10.0], [2500, 11.0], [3500, 12.0]])
    # smoothed over 3 batches: scratch 0, 1.5, 4, 8, 10.67; Mb-Mf 10, 10.5, 11
    assert ratio(scratch, mbmf, 10.0)[:3] == (5000.0, 1500.0, '3.33x')
    a, b, text, value = ratio(scratch, mbmf, 10.8)          # the learner alone never gets there: a lower bound
    assert a is None and b == 3500.0 and text.startswith('> 1.43x') and value is None
    a, b, text, value = ratio(mbmf, scratch, 10.8)          # Mb-Mf never gets there: an upper bound
    assert text.startswith('< ') and value is None
    assert ratio(scratch, mbmf, 50.0)[2] == 'n/a (neither reached it)'


def test_forward_env_reward_is_the_task_reward_and_counts_steps():
    import torch

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.tasks import MovingForwardTask
    from mbmf_ros.sim.gym_env import ForwardEnv
    env = ForwardEnv('half_cheetah', max_episode_steps=5, seed=0)
    obs, _ = env.reset(seed=1)
    spec = get_agent('half_cheetah')
    assert obs.shape == (spec.state_dim - 3,) and obs.dtype == np.float32
    state = env._state.copy()
    a = np.full(spec.action_dim, 0.5)
    obs, r, term, trunc, _ = env.step(a)
    task = MovingForwardTask.for_agent(spec)
    expect = task.reward(torch.as_tensor(state, dtype=torch.float32)[None], torch.as_tensor(a, dtype=torch.float32)[None],
                         torch.as_tensor(env._state, dtype=torch.float32)[None, None])
    assert r == pytest.approx(float(expect.reshape(-1)[0]), rel=1e-5)
    for _ in range(4):
        *_, term, trunc, _ = env.step(a)
    assert trunc and not term and env.env_steps == 5


def test_aggregation_retrains_the_model_on_its_mpc_rollouts_before_the_expert(tmp_path):
    out = tmp_path / 'agg'
    args = [a if a != '0' else '2' for a in TINY[:-1]] + ['64', '--aggregation-rollouts', '1', '--out', str(out)]
    p = _mbmf(*args)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    counts = json.loads((out / 'env_steps.json').read_text())
    # two aggregation iterations of one 20-step MPC rollout each, counted among Mb-Mf's steps before fine-tuning
    assert counts['aggregation'] == 40
    rows = [json.loads(x) for x in (out / 'aggregation' / 'stages.jsonl').read_text().splitlines()]
    assert [r['iteration'] for r in rows] == [1, 2] and all(r['env_steps'] == 20 for r in rows)
    # Algorithm 1: each round's MPC runs on the model the round before it made
    assert [r['model'] for r in rows] == ['dynamics.pt', 'model_1.pt']
    saved = np.load(out / 'aggregation' / 'rollouts_1.npz')
    assert saved['states_0'].shape == (21, 10) and saved['actions_0'].shape == (20, 2)   # swimmer: S = 10, A = 2
    assert (out / 'aggregation' / 'model_1.pt').stat().st_size > 0 and (out / 'random.npz').exists()
    mbmf = list(csv.DictReader((out / 'curve_mbmf.csv').open()))
    assert int(mbmf[0]['env_steps']) == 100 + 40 + 20 + 20 + 120 + 64


def test_forward_episode_returns_the_executed_trajectory_for_the_model():
    """The aggregated data is what happened: states[t + 1] follows states[t] under actions[t] (the noisy,
    clipped action executed, not the expert's label), and the policy's observation is states[t][3:]."""
    from mbmf_ros.commands.mbmf import _forward_episode
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.dynamics import DynamicsModel
    from mbmf_ros.core.planners import make_planner
    from mbmf_ros.core.tasks import MovingForwardTask
    spec = get_agent('half_cheetah')
    model = DynamicsModel(spec.state_names, spec.action_names, hidden_sizes=(16, 16))
    ep = _forward_episode(spec, model, make_planner('random_shooting', spec.action_dim, 2, 8, 0),
                          MovingForwardTask.for_agent(spec), None, 0.5, 3, 12)
    states, actions = ep.info['states'], ep.info['actions']
    assert states.shape == (13, spec.state_dim) and actions.shape == (12, spec.action_dim)
    np.testing.assert_allclose(ep.obs, states[:-1, 3:].astype(np.float32))
    assert np.all(np.abs(actions) <= 1.0)
    assert 0.05 < np.abs(actions - ep.labels).mean() < 0.6     # the executed action carries N(0, 0.5) noise
    assert np.all(np.diff(states[:, 0]) != 0)                   # the simulation moved between rows


def test_trpo_starts_from_the_dagger_policy_mean_and_std():
    """The learner the chain builds (sb3-contrib TRPO) acts with our policy's mean and fixed std once copied."""
    import torch

    from mbmf_ros.commands.mbmf import _learner
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.policy import GaussianPolicy, ImitationConfig, Observation, fit_policy
    from mbmf_ros.sim.gym_env import ForwardEnv
    spec = get_agent('swimmer')
    policy = GaussianPolicy(Observation('state', spec.state_names), spec.action_names, std=0.5, agent='swimmer')
    rng = np.random.default_rng(4)
    obs = rng.normal(2.0, 3.0, (400, policy.observation.dim)).astype(np.float32)
    fit_policy(policy, obs, np.tanh(obs[:, :2]), ImitationConfig(lr=1e-3, epochs=3))
    settings = {'learner': 'trpo', 'imitation': {'std': 0.5}, 'batch': 64, 'discount': 0.995, 'step_size': 0.05}
    trpo = _learner(settings, ForwardEnv('swimmer', 20, seed=0), seed=0)
    missing, unexpected = trpo.policy.load_state_dict(policy.sb3_state_dict(), strict=False)
    assert not unexpected and missing and all('value' in k for k in missing)
    with torch.no_grad():
        dist = trpo.policy.get_distribution(torch.as_tensor(obs[:50]))
        np.testing.assert_allclose(dist.distribution.mean.numpy(), policy(torch.as_tensor(obs[:50])).numpy(),
                                   atol=1e-5)
        np.testing.assert_allclose(dist.distribution.stddev.numpy(), 0.5, atol=1e-6)
        deterministic, _ = trpo.predict(obs[:50], deterministic=True)
    np.testing.assert_allclose(deterministic, np.stack([policy.act(o) for o in obs[:50]]), atol=1e-5)
