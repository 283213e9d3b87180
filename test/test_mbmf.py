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
    assert '| swimmer | trpo | 0 | 64 | 192 |' in text and 'Threshold:' in text and 'last 5 batches' in text
    assert (tmp_path / 'results' / 'mbmf_swimmer_trpo_seed0.png').stat().st_size > 1000


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
