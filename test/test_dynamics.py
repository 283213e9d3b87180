"""Dynamics model, training and checkpoints on known synthetic systems (no ROS, no simulator).

The systems live here so the test does not depend on the simulator: a damped pendulum driven by a torque
(nonlinear, pose stays 0) and a unicycle whose pose moves (exercises the body-frame pose delta).
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mbmf_ros.core.dynamics import DynamicsModel
from mbmf_ros.core.state import apply_delta, delta_target, integrate_poses_
from mbmf_ros.core.training import (TrainConfig, h_step_errors, split_by_trajectory, to_transitions,
                                    train_dynamics, _epoch_indices)
from mbmf_ros.io.checkpoint import CheckpointMismatch, load_checkpoint, save_checkpoint

torch.set_num_threads(1)

PEND_NAMES = ('x', 'y', 'yaw', 'sin_theta', 'cos_theta', 'theta_dot')
UNI_NAMES = ('x', 'y', 'yaw', 'v', 'omega')


def pendulum_step(th, thd, u, dt=0.05, substeps=10):
    """theta'' = -(g/l) sin(theta) - b theta' + 4 u; semi-implicit Euler, g/l = 9.81, b = 0.5."""
    h = dt / substeps
    for _ in range(substeps):
        thd = thd + h * (-9.81 * np.sin(th) - 0.5 * thd + 4.0 * u)
        th = th + h * thd
    return th, thd


def pendulum_trajs(n, T, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        th, thd = rng.uniform(-np.pi, np.pi), rng.uniform(-2, 2)
        acts = rng.uniform(-1, 1, (T, 1)).astype(np.float32)
        states = np.zeros((T + 1, 6))
        for t in range(T + 1):
            states[t, 3:] = np.sin(th), np.cos(th), thd
            if t < T:
                th, thd = pendulum_step(th, thd, float(acts[t, 0]))
        out.append(SimpleNamespace(states=states, actions=acts, state_names=PEND_NAMES,
                                   action_names=('torque',), source=f'pendulum{i}'))
    return out


def unicycle_trajs(n, T, seed, dt=0.1):
    """v' = v + dt (2 a0 - v), omega' = omega + dt (2 a1 - omega); pose integrated with the new velocities."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = np.array([rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-np.pi, np.pi), 0.0, 0.0])
        acts = rng.uniform(-1, 1, (T, 2)).astype(np.float32)
        states = [s.copy()]
        for t in range(T):
            v = s[3] + dt * (2 * acts[t, 0] - s[3])
            w = s[4] + dt * (2 * acts[t, 1] - s[4])
            yaw = s[2] + w * dt
            s = np.array([s[0] + v * np.cos(yaw) * dt, s[1] + v * np.sin(yaw) * dt,
                          (yaw + np.pi) % (2 * np.pi) - np.pi, v, w])
            states.append(s)
        out.append(SimpleNamespace(states=np.array(states), actions=acts, state_names=UNI_NAMES,
                                   action_names=('forward', 'turn'), source=f'unicycle{i}'))
    return out


def zero_change_error(trajs, H):
    """Eq. 3 error of the trivial predictor s^_{t+h} = s_t: the bar a learned model must clear."""
    errs = []
    for t in trajs:
        for s in range(len(t.actions) - H + 1):
            d = t.states[s + 1:s + H + 1] - t.states[s]
            errs.append(0.5 * (d ** 2).sum(-1).mean())
    return float(np.mean(errs))


@pytest.fixture(scope='module')
def pendulum_model():
    train = pendulum_trajs(40, 100, seed=1)
    val = pendulum_trajs(8, 100, seed=2)
    cfg = TrainConfig(hidden_sizes=(128, 128), epochs=40, seed=0, noise_std=0.001)
    model, metrics = train_dynamics(train, val, cfg, agent='pendulum', progress=False)
    return model, metrics, val


def test_pendulum_learned_to_a_20_step_bound(pendulum_model):
    model, metrics, val = pendulum_model
    h = metrics['h_step']
    # Normalised 1-step error small: ~1e-3 on this system (trivial predictor: 1.0 by construction).
    assert metrics['validation_mse'] < 0.01, metrics
    # 20 steps = 1 s open loop: stated bound 0.02 (squared units; the zero-change predictor is ~0.5).
    assert h[20] < 0.02, h
    assert h[20] < 0.05 * zero_change_error(val, 20)
    # Open-loop error grows with the horizon.
    assert h[1] < h[5] < h[10] < h[20] < h[50], h
    assert metrics['train_mse'] < 0.01 and metrics['transitions'] == 4000


def test_predict_shapes_and_batching(pendulum_model):
    model, _, val = pendulum_model
    K = 7
    s = torch.as_tensor(val[0].states[:K], dtype=torch.float32)
    a = torch.as_tensor(val[0].actions[:K])
    out = model.predict(s, a)
    assert out.shape == (1, K, 6) and out.dtype == torch.float32
    # Row by row gives the same answer: one batched pass, rows independent.
    rows = torch.cat([model.predict(s[i:i + 1], a[i:i + 1]) for i in range(K)], 1)
    torch.testing.assert_close(out, rows, rtol=1e-5, atol=1e-5)
    # (E, K, S) states are accepted; wrong sizes are a clear error.
    assert model.predict(s[None], a).shape == (1, K, 6)
    with pytest.raises(ValueError, match='actions'):
        model.predict(s, torch.zeros(K, 3))


def test_unicycle_body_frame_pose_and_ensemble():
    train = unicycle_trajs(30, 60, seed=3)
    val = unicycle_trajs(6, 60, seed=4)
    cfg = TrainConfig(hidden_sizes=(64, 64), epochs=30, num_members=3, seed=1, noise_std=0.001)
    model, metrics = train_dynamics(train, val, cfg, progress=False)
    assert model.num_members == 3
    assert metrics['h_step'][10] < 0.05 * zero_change_error(val, 10), metrics['h_step']
    # x/y error after H steps, in metres: grows with H and stays far below how far the robot moved.
    pos = metrics['h_step_position_m']
    assert pos[1] < pos[5] < pos[10] < pos[20], pos
    moved = np.mean([np.linalg.norm(t.states[10:, :2] - t.states[:-10, :2], axis=1).mean() for t in val])
    assert pos[10] < 0.1 * moved, (pos, moved)
    # Pose invariance: the same motion from a pose rotated/translated elsewhere moves the same in the body frame.
    s = torch.tensor([[0.0, 0.0, 0.0, 0.8, 0.3], [3.0, -2.0, 2.0, 0.8, 0.3]], dtype=torch.float32)
    a = torch.tensor([[0.5, 0.2], [0.5, 0.2]])
    nxt = model.predict(s, a)                                           # (3, 2, 5)
    d = delta_target(s.expand(3, -1, -1), nxt)
    torch.testing.assert_close(d[:, 0], d[:, 1], rtol=1e-4, atol=1e-5)
    # Members differ (bootstrap + own init) but agree roughly.
    assert not torch.allclose(nxt[0], nxt[1])
    # Ensemble of members given per-member states (E, K, S) and actions (E, K, A).
    assert model.predict(s.expand(3, -1, -1), a.expand(3, -1, -1)).shape == (3, 2, 5)


def test_seeded_training_is_reproducible():
    trajs = pendulum_trajs(6, 30, seed=5)
    cfg = TrainConfig(hidden_sizes=(16,), epochs=3, seed=7, batch_size=64, horizons=(1, 5))
    m1, r1 = train_dynamics(trajs[:5], trajs[5:], cfg, progress=False)
    m2, r2 = train_dynamics(trajs[:5], trajs[5:], cfg, progress=False)
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(v1, v2, msg=k)
    assert r1['validation_mse'] == r2['validation_mse']


def test_mixing_and_splits():
    rng = np.random.default_rng(0)
    idx = _epoch_indices(1000, 900, 0.1, rng)
    # all of D_rl once, D_rand 10 % of the epoch
    assert np.sum(idx >= 1000) == 900 and np.sum(idx < 1000) == 100
    assert len(_epoch_indices(10, 900, 0.1, rng)) == 1000  # small D_rand drawn with replacement
    trajs = pendulum_trajs(10, 5, seed=0)
    tr, va = split_by_trajectory(trajs, 0.2, seed=0)
    # Each trajectory's side is a hash of its name (stable as data is added), so the count is about 20 %.
    assert len(tr) + len(va) == 10 and 1 <= len(va) <= 4 and not {id(t) for t in tr} & {id(t) for t in va}
    big = pendulum_trajs(200, 2, seed=1)
    assert 25 <= len(split_by_trajectory(big, 0.2, seed=0)[1]) <= 55
    tr, va = split_by_trajectory(trajs[:1], 0.2)  # one trajectory: cut in time, no overlap of transitions
    assert len(tr[0].actions) + len(va[0].actions) == 5
    np.testing.assert_array_equal(tr[0].states[-1], va[0].states[0])
    d = to_transitions(trajs)
    assert len(d) == 50 and d.states.shape == (50, 6)


def test_warm_start_and_rl_mix(pendulum_model, tmp_path):
    model, _, val = pendulum_model
    path = save_checkpoint(tmp_path / 'm.pt', model, {'bags': []})
    warm, _ = load_checkpoint(path, agent='pendulum')
    before = h_step_errors(warm, val, (20,))[20]
    rl = pendulum_trajs(5, 100, seed=9)
    cfg = TrainConfig(hidden_sizes=(128, 128), epochs=2, seed=0, noise_std=0.001, rand_fraction=0.1)
    m2, met = train_dynamics(pendulum_trajs(5, 100, seed=8), val, cfg, rl=rl, warm_start=warm,
                             progress=False)
    assert m2 is warm and met['transitions'] == 1000
    # A warm-started model starts from what it knew: after two epochs it is far better than a fresh model
    # trained the same way (measured: warm ~0.05, fresh ~3.6 at H=20; the warm model before: ~0.001).
    fresh, fmet = train_dynamics(pendulum_trajs(5, 100, seed=8), val, cfg, rl=rl, progress=False)
    assert met['h_step'][20] < 0.2 * fmet['h_step'][20], (before, met['h_step'], fmet['h_step'])


def test_checkpoint_roundtrip_and_mismatch(pendulum_model, tmp_path):
    model, metrics, val = pendulum_model
    path = tmp_path / 'sub' / 'pend.pt'
    save_checkpoint(path, model, {'bags': [{'path': '/x', 'sha256': 'abc'}], 'metrics': metrics,
                                  'arr': np.arange(3)})
    assert [p.name for p in path.parent.iterdir()] == ['pend.pt']  # no temp file left behind
    loaded, meta = load_checkpoint(path, agent='pendulum', state_names=PEND_NAMES, action_names=('torque',))
    assert meta['arr'] == [0, 1, 2] and meta['metrics']['h_step']['20'] == pytest.approx(metrics['h_step'][20])
    s = torch.as_tensor(val[0].states[:5], dtype=torch.float32)
    a = torch.as_tensor(val[0].actions[:5])
    torch.testing.assert_close(loaded.predict(s, a), model.predict(s, a))
    with pytest.raises(CheckpointMismatch, match=r"agent 'pendulum' \(expected 'hexapod'\)"):
        load_checkpoint(path, agent='hexapod')
    with pytest.raises(CheckpointMismatch, match='state names'):
        load_checkpoint(path, state_names=UNI_NAMES)
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='junk.pt'):
        load_checkpoint(tmp_path / 'junk.pt')


def test_bad_model_config():
    with pytest.raises(ValueError, match="start with"):
        DynamicsModel(('a', 'b', 'c', 'd'), ('u',))
    with pytest.raises(ValueError, match='activation'):
        DynamicsModel(PEND_NAMES, ('u',), activation='sigmoidx')


def test_integrate_poses_equals_apply_delta_step_by_step():
    """The rollout's pose pass over all H steps at once (cumulative sums) against H calls of apply_delta, across
    the yaw's wrap at +-pi, for a batch (E, K)."""
    g = torch.Generator().manual_seed(3)
    H, E, K = 12, 2, 50
    deltas = torch.randn(H, E, K, 3, generator=g) * torch.tensor([0.05, 0.02, 0.6])
    poses = torch.empty(H + 1, E, K, 3)
    poses[0] = torch.tensor([0.3, -1.2, 3.0])                      # yaw near pi: the sums wrap
    integrate_poses_(poses, deltas)
    state = poses[0].clone()
    for t in range(H):
        state = apply_delta(state, deltas[t])
        assert torch.allclose(poses[t + 1, ..., :2], state[..., :2], atol=1e-5)
        dyaw = torch.remainder(poses[t + 1, ..., 2] - state[..., 2] + math.pi, 2 * math.pi) - math.pi
        assert dyaw.abs().max() < 1e-5
    assert (poses[1:, ..., 2] >= -math.pi).all() and (poses[1:, ..., 2] < math.pi).all()
    assert (deltas[..., 2].sum(0).abs() > math.pi).any()          # some candidates did cross the wrap


@pytest.mark.parametrize('names', [('x', 'y', 'yaw', 'sin_a', 'cos_a', 'sin_b', 'cos_b', 'v'),
                                   ('x', 'y', 'yaw', 'sin_a', 'v', 'cos_a')])
def test_pairs_renormalised_in_place_in_a_block_or_apart(names):
    """(sin, cos) pairs back on the unit circle, in a view of a larger buffer, whether the pairs form one
    block (strided views) or lie apart (gathered); the other elements untouched."""
    model = DynamicsModel(list(names), ['u'], (8,))
    buf = torch.randn(4, 6, len(names)) * 3
    before = buf.clone()
    model.renormalise_pairs_(buf[1:3, :, 3:])
    for n in names:
        if n.startswith('sin_'):
            i, j = names.index(n), names.index('cos_' + n[4:])
            assert torch.allclose(buf[1:3, :, i] ** 2 + buf[1:3, :, j] ** 2, torch.ones(2, 6), atol=1e-6)
            assert torch.allclose(torch.atan2(buf[1:3, :, i], buf[1:3, :, j]),
                                  torch.atan2(before[1:3, :, i], before[1:3, :, j]), atol=1e-5)
    others = [k for k, n in enumerate(names) if not n.startswith(('sin_', 'cos_'))]
    assert torch.equal(buf[..., others], before[..., others])
    assert torch.equal(buf[0], before[0]) and torch.equal(buf[3], before[3])
