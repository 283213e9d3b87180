"""The planners' fast rollout (core.rollout) against the reference arithmetic of model.predict + task.reward, and the
trajectory reward's search window on long paths."""
import math
import os
import signal
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mbmf_ros.core.agents import get_agent
from mbmf_ros.core.dynamics import DynamicsModel
from mbmf_ros.core.planners import Planner, coloured_noise, make_planner
from mbmf_ros.core.rollout import (REFINE_MIN_REROLLS, MLPRollout, chunk_spans, onednn_available, resolve_device,
                                   resolve_kernel, resolve_precision)
from mbmf_ros.core.tasks import MovingForwardTask, TrajectoryFollowingTask
from mbmf_ros.core.training import TrainConfig, train_dynamics
from mbmf_ros.core.waypoints import WaypointPath


class Reference:
    """Hides the model's layers so that a planner takes its reference path (predict + reward per step)."""

    def __init__(self, model):
        self.inner = model
        self.num_members = model.num_members

    def predict(self, s, a):
        return self.inner.predict(s, a)


def _model(members=1, seed=0):
    spec = get_agent('hexapod')
    torch.manual_seed(seed)
    m = DynamicsModel(spec.state_names, spec.action_names, (64, 64), num_members=members)
    rng = np.random.default_rng(seed)
    S = spec.state_dim
    m.set_normaliser(rng.normal(0, 0.5, S - 3), rng.uniform(0.2, 2.0, S - 3), rng.normal(0, 0.01, S),
                     rng.uniform(0.005, 0.05, S))
    m.eval()
    return spec, m


def _state(spec):
    s = np.zeros(spec.state_dim, dtype=np.float32)
    for i, n in enumerate(spec.state_names):
        if n.startswith('cos_'):
            s[i] = 1.0
    s[:3] = (0.05, -0.02, 0.3)
    return torch.as_tensor(s)


def _reference(model, task, state, actions):
    return Planner(actions.shape[2], actions.shape[1], actions.shape[0], seed=0).rollout(
        Reference(model), task, state, actions)


@pytest.mark.parametrize('members', [1, 3])
def test_float32_rollout_matches_predict_and_reward(members):
    spec, model = _model(members)
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [0.3, 0.1], [0.5, 0.4]]), lookahead_m=0.5,
                                   heading_weight=0.2)
    state = _state(spec)
    task.update(state.numpy())
    actions = torch.rand(300, 6, spec.action_dim, generator=torch.Generator().manual_seed(1)) * 2 - 1
    r0, s0 = _reference(model, task, state, actions)
    # Chunks of 128 rows: three chunks, the last one partial.
    r1, s1 = MLPRollout(model, 'float32', chunk_rows=128).rollout(model, task, state, actions)
    assert s1.shape == s0.shape == (members, 300, 7, spec.state_dim)
    torch.testing.assert_close(s1, s0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r1, r0, rtol=1e-4, atol=1e-5)
    assert int(r1.argmax()) == int(r0.argmax())


def test_bfloat16_rollout_keeps_states_float32_and_ranks_alike():
    spec, model = _model(1)
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1.0, 0.0]]), lookahead_m=0.5)
    state = _state(spec)
    task.update(state.numpy())
    actions = torch.rand(500, 8, spec.action_dim, generator=torch.Generator().manual_seed(2)) * 2 - 1
    r0, s0 = _reference(model, task, state, actions)
    r1, s1 = MLPRollout(model, 'bfloat16').rollout(model, task, state, actions)
    assert s1.dtype == torch.float32 and r1.dtype == torch.float32
    # The candidate chosen in bfloat16 is among the best 1% in float32.
    assert int((r0 > r0[int(r1.argmax())]).sum()) <= 5
    assert float((r1 - r0).abs().max()) < 0.05 * float(r0.max() - r0.min())
    # With the best candidates re-rolled in float32, their returns and states are float32's: the same winner.
    r2, s2 = MLPRollout(model, 'bfloat16', refine_fraction=0.01).rollout(model, task, state, actions)
    best = int(r2.argmax())
    assert best == int(r0.argmax())
    torch.testing.assert_close(r2[best], r0[best], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s2[:, best], s0[:, best], rtol=1e-4, atol=1e-5)


def test_random_shooting_skips_the_float32_reroll_only_for_a_clear_winner():
    """bfloat16 with refine_margin: every rollout re-rolls its best candidates in float32 until enough of its
    errors are known; then a rollout whose caller uses only the winner (best_only) skips the re-roll when the
    winner leads the second by more than refine_margin x the 99th percentile of those errors, and not otherwise;
    a caller that ranks more than the winner (best_only False) always gets it."""
    spec, model = _model()
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1.0, 0.0]]), lookahead_m=0.5)
    state = _state(spec)
    task.update(state.numpy())
    actions = torch.rand(200, 8, spec.action_dim, generator=torch.Generator().manual_seed(4)) * 2 - 1
    roll = MLPRollout(model, 'bfloat16', refine_fraction=0.01, refine_margin=4.0)
    for _ in range(REFINE_MIN_REROLLS):
        roll.rollout(model, task, state, actions, best_only=True)
    assert (roll.refines, roll.refine_skips) == (REFINE_MIN_REROLLS, 0)
    r16 = MLPRollout(model, 'bfloat16').rollout(model, task, state, actions)[0].clone()
    r32 = MLPRollout(model, 'float32').rollout(model, task, state, actions)[0]
    first, second = torch.topk(r16, 2).values.tolist()
    bound = roll._error_bound
    errors = (r16 - r32).abs()[torch.topk(r16, 8).indices]
    assert 0 < bound <= float(errors.max())
    roll.refine_margin = 0.5 * (first - second) / bound       # a clear winner at this margin
    r, _ = roll.rollout(model, task, state, actions, best_only=True)
    assert roll.refine_skips == 1 and torch.equal(r, r16)      # nothing re-rolled
    r, _ = roll.rollout(model, task, state, actions)
    assert roll.refine_skips == 1 and not torch.equal(r, r16)
    roll.refine_margin = 2.0 * (first - second) / bound       # not clear at this one
    refines = roll.refines
    r, _ = roll.rollout(model, task, state, actions, best_only=True)
    assert (roll.refines, roll.refine_skips) == (refines + 1, 1) and int(r.argmax()) == int(r32.argmax())
    tie = torch.cat([actions, actions[int(r16.argmax())][None]])     # the winner twice: a gap of 0
    roll.rollout(model, task, state, tie, best_only=True)
    assert (roll.refines, roll.refine_skips) == (refines + 2, 1)
    with pytest.raises(ValueError, match='refine_margin'):
        MLPRollout(model, 'bfloat16', refine_margin=-1)


class ThreadRecordingTask(TrajectoryFollowingTask):
    """Records the thread of every step_rewards call (the rollout calls it once per chunk)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads = []

    def step_rewards(self, states, actions):
        self.threads.append(threading.current_thread().name)
        return super().step_rewards(states, actions)


@pytest.mark.parametrize('members, precision', [(1, 'float32'), (3, 'bfloat16')])
def test_concurrent_chunks_give_the_serial_result(members, precision):
    """Two workers rolling chunks at once (torch single-threaded in each) give exactly the returns and states of
    one thread rolling the same chunks in turn, and a planner the same plan; the caller's torch threads stay."""
    spec, model = _model(members)
    task = ThreadRecordingTask(WaypointPath([[0, 0], [0.3, 0.1], [0.5, 0.4]]), lookahead_m=0.5, heading_weight=0.2)
    state = _state(spec)
    task.update(state.numpy())
    actions = torch.rand(256, 6, spec.action_dim, generator=torch.Generator().manual_seed(5)) * 2 - 1
    assert chunk_spans(256, 64, 1) == chunk_spans(256, 64, 2) == [(0, 64), (64, 128), (128, 192), (192, 256)]
    threads = torch.get_num_threads()
    r1, s1 = (t.clone() for t in MLPRollout(model, precision, chunk_rows=64, workers=1, refine_fraction=0.01
                                            ).rollout(model, task, state, actions))
    refine = precision == 'bfloat16'                    # the best 8 candidates re-rolled in float32: one chunk
    assert task.threads == ['MainThread'] * (4 + refine)
    task.threads.clear()
    r2, s2 = MLPRollout(model, precision, chunk_rows=64, workers=2, refine_fraction=0.01).rollout(
        model, task, state, actions)
    # Every chunk on a worker; the re-roll of the best 8 on the caller's thread, single-threaded (a worker's
    # hand-over costs more than those few rows).
    assert len(task.threads) == 4 + refine and all(n.startswith('mlp-rollout') for n in task.threads[:4])
    assert task.threads[4:] == ['MainThread'] * refine, task.threads
    assert torch.get_num_threads() == threads
    torch.testing.assert_close(r2, r1, rtol=0, atol=0)
    torch.testing.assert_close(s2, s1, rtol=0, atol=0)
    # Default chunks: one of 256 rows serially, two of 128 concurrently; the same plan.
    plans = [make_planner('random_shooting', spec.action_dim, 6, 256, seed=0, precision=precision, workers=w)
             .plan(model, task, state.numpy()).actions for w in (1, 2)]
    np.testing.assert_array_equal(plans[0], plans[1])


def test_a_forked_child_rolls_with_its_own_workers():
    """After a fork the parent's worker threads do not exist in the child: its rollout starts its own pool (a
    submit to the parent's would wait forever) and gives the parent's result."""
    spec, model = _model(1)
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1.0, 0.0]]))
    state = _state(spec)
    task.update(state.numpy())
    actions = torch.rand(300, 5, spec.action_dim, generator=torch.Generator().manual_seed(6)) * 2 - 1
    fast = MLPRollout(model, workers=2)
    before = fast.rollout(model, task, state, actions)[0].clone()
    pid = os.fork()
    if pid == 0:                                        # the child: exit status 0 if the same returns
        os._exit(0 if torch.equal(fast.rollout(model, task, state, actions)[0], before) else 3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail('the forked child did not finish its rollout within 60 s')


def test_chunk_spans_cover_every_candidate_once():
    for K in (1, 63, 128, 1000, 5000, 7000):
        for workers in (1, 2, 3):
            spans = chunk_spans(K, 1024, workers)
            assert spans[0][0] == 0 and spans[-1][1] == K
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            assert max(k1 - k0 for k0, k1 in spans) <= 1024
    assert len(chunk_spans(1000, 1024, 2)) == 2 and len(chunk_spans(5000, 1024, 2)) == 6
    assert len(chunk_spans(100, 1024, 2)) == 1          # under 64 rows per worker: one chunk


def test_refolds_when_the_weights_change_in_place():
    spec, model = _model(1)
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1.0, 0.0]]))
    state = _state(spec)
    task.update(state.numpy())
    actions = torch.rand(50, 4, spec.action_dim) * 2 - 1
    fast = MLPRollout(model, 'float32')
    before, _ = fast.rollout(model, task, state, actions)
    with torch.no_grad():
        model.layers[-1].bias.add_(0.5)
        model.out_std.mul_(2.0)
    after, _ = fast.rollout(model, task, state, actions)
    ref, _ = _reference(model, task, state, actions)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not onednn_available(), reason='this torch build has no oneDNN inner product')
@pytest.mark.parametrize('members', [1, 3])
@pytest.mark.parametrize('precision', ['float32', 'bfloat16'])
def test_onednn_and_blas_kernels_give_the_same_rollout(members, precision):
    """The oneDNN kernel (bias and ReLU fused) computes what addmm + relu_ do, up to float32 rounding."""
    spec, model = _model(members)
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1.0, 0], [1.0, 1.0]]), lookahead_m=0.5)
    state = _state(spec)
    task.update(state.numpy())
    actions = torch.rand(300, 6, spec.action_dim, generator=torch.Generator().manual_seed(1)) * 2 - 1
    r_blas, s_blas = (t.clone() for t in MLPRollout(model, precision, kernel='blas').rollout(model, task, state,
                                                                                             actions))
    fast = MLPRollout(model, precision, kernel='onednn')
    assert fast.kernel == 'onednn'
    r, s = fast.rollout(model, task, state, actions)
    tol = dict(rtol=1e-4, atol=1e-5) if precision == 'float32' else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(r, r_blas, **tol)
    torch.testing.assert_close(s, s_blas, **tol)


def test_kernel_setting_is_checked():
    assert resolve_kernel('blas', torch.device('cpu')) == 'blas'
    assert resolve_kernel('auto', torch.device('cpu')) == ('onednn' if onednn_available() else 'blas')
    with pytest.raises(ValueError, match='kernel must be one of'):
        resolve_kernel('mkl', torch.device('cpu'))
    with pytest.raises(ValueError, match='runs only on a CPU'):
        resolve_kernel('onednn', torch.device('cuda'))


@pytest.mark.parametrize('kernel', ['onednn', 'blas'])
def test_non_finite_predictions_rank_last_and_termination_is_sticky(kernel):
    if kernel == 'onednn' and not onednn_available():
        pytest.skip('this torch build has no oneDNN inner product')
    spec, model = _model(1)
    names = list(spec.state_names)
    z = names.index('z')
    # Healthy while z in [0, 1e9): the model's z drifts by out_mean each step; make it fall at once below 0.
    task = MovingForwardTask(names.index('vx'), termination=[(z, -1e9, 1e9)])
    state = _state(spec)
    actions = torch.rand(64, 5, spec.action_dim, generator=torch.Generator().manual_seed(3)) * 2 - 1
    r0, _ = _reference(model, task, state, actions)
    r1, _ = MLPRollout(model, 'float32', kernel=kernel).rollout(model, task, state, actions)
    torch.testing.assert_close(r1, r0, rtol=1e-4, atol=1e-5)
    # Sticky: bounds that every predicted state violates after the first step -> only step 1's reward counts
    # (the step on which it falls earns no velocity), so every return is 0 - 0.
    task_fall = MovingForwardTask(names.index('vx'), alive_bonus=1.0, termination=[(z, 1e8, 1e9)])
    r_fall, _ = MLPRollout(model, 'float32', kernel=kernel).rollout(model, task_fall, state, actions)
    ref_fall, _ = _reference(model, task_fall, state, actions)
    torch.testing.assert_close(r_fall, ref_fall)
    assert torch.all(r_fall == 0)
    # A NaN weight makes every prediction non-finite: every return is -inf, never NaN.
    with torch.no_grad():
        model.layers[0].weight[0, 0, 0] = float('nan')
    r_nan, _ = MLPRollout(model, 'float32', kernel=kernel).rollout(model, task, state, actions)
    assert torch.all(r_nan == -math.inf)


def test_long_path_costs_a_window_not_the_whole_path():
    """A 1000-waypoint path (the 4-waypoint one resampled every ~2 mm) gives the same rewards, and the reward
    looks at the segments of its search window on the path through its corners only (waypoints.simplify)."""
    corners = np.array([[0.0, 0.0], [0.8, 0.0], [0.8, 0.8], [1.6, 0.8]])
    dense = np.concatenate([np.linspace(corners[i], corners[i + 1], 334, endpoint=False) for i in range(3)]
                           + [corners[-1:]])
    assert len(dense) == 1003
    spec, model = _model(1)
    state = _state(spec)
    state[:3] = torch.tensor([0.0, 0.0, 0.0])
    actions = torch.rand(200, 6, spec.action_dim, generator=torch.Generator().manual_seed(4)) * 2 - 1
    out = []
    for pts in (corners, dense):
        task = TrajectoryFollowingTask(WaypointPath(pts), lookahead_m=0.5)
        task.update(state.numpy())
        assert len(task._window[0]) == 2            # the first leg and the next, not the 200 segments in 0.5 m
        out.append(MLPRollout(model, 'float32').rollout(model, task, state, actions)[0])
    torch.testing.assert_close(out[0], out[1], rtol=1e-4, atol=1e-4)


def test_settings_are_checked():
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device('auto').type in ('cpu', 'cuda')
    with pytest.raises(ValueError, match='device must be one of'):
        resolve_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA device'):
            resolve_device('cuda')
    assert resolve_precision('bfloat16') == torch.bfloat16
    with pytest.raises(ValueError, match='precision must be one of'):
        resolve_precision('float16')


def test_planners_take_a_device_setting():
    """device cpu | auto | cuda: 'auto' on a machine without CUDA plans on the CPU, with the same actions as
    'cpu'; 'cuda' without a CUDA device is refused with the reason."""
    spec, model = _model(1)
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1.0, 0.0]]))
    state = _state(spec).numpy()
    task.update(state)
    plans = [make_planner(name, spec.action_dim, 5, 64, seed=0, device=dev).plan(model, task, state).actions
             for name in ('random_shooting', 'icem') for dev in ('cpu', 'auto')]
    if not torch.cuda.is_available():
        np.testing.assert_array_equal(plans[0], plans[1])
        np.testing.assert_array_equal(plans[2], plans[3])
        with pytest.raises(ValueError, match='no CUDA device'):
            make_planner('cem', spec.action_dim, 5, 64, device='cuda')


def test_training_takes_a_device_setting():
    """TrainConfig.device: 'auto' trains where it can and returns a cpu model; the same seed gives the same
    weights as 'cpu' on a machine without CUDA."""
    spec = get_agent('hexapod')
    rng = np.random.default_rng(0)
    trajs = []
    for _ in range(3):
        T = 40
        states = np.zeros((T + 1, spec.state_dim))
        states[:, 3:] = rng.normal(0, 0.1, (T + 1, spec.state_dim - 3))
        states[:, :2] = np.cumsum(rng.normal(0, 0.01, (T + 1, 2)), 0)
        trajs.append(SimpleNamespace(states=states, actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32),
                                     state_names=spec.state_names, action_names=spec.action_names))
    out = []
    for dev in ('cpu', 'auto'):
        cfg = TrainConfig(hidden_sizes=(32,), epochs=2, batch_size=32, device=dev, threads=1)
        model, metrics = train_dynamics(trajs[:2], trajs[2:], cfg, progress=False)
        assert model.in_mean.device.type == 'cpu' and metrics['epochs'] == 2
        out.append(model.layers[0].weight.detach().clone())
    if not torch.cuda.is_available():
        torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)
        with pytest.raises(ValueError, match='no CUDA device'):
            train_dynamics(trajs[:2], trajs[2:], TrainConfig(hidden_sizes=(32,), epochs=1, device='cuda'),
                           progress=False)


def test_coloured_noise_and_icem_budget():
    """iCEM's noise is correlated along the horizon for exponent 2 and white for 0; its populations shrink by
    the decay and, with the kept elites and the mean, stay within num_samples."""
    g = torch.Generator().manual_seed(0)
    x = coloured_noise(4000, 10, 2, 2.0, g)
    w = coloured_noise(4000, 10, 2, 0.0, g)
    corr = lambda n: float(np.corrcoef(n[:, :-1, 0].flatten(), n[:, 1:, 0].flatten())[0, 1])  # noqa: E731
    assert corr(x) > 0.5 and abs(corr(w)) < 0.05
    assert x.shape == (4000, 10, 2)
    for K in (50, 200, 1000):
        p = make_planner('icem', 2, 10, K, seed=0)
        pops = p.populations
        assert all(a >= b for a, b in zip(pops, pops[1:])) and pops[0] > pops[-1]
        assert sum(pops) + p.n_keep * (p.iterations - 1) + 1 <= K


def test_a_plan_keeps_the_callers_threads_for_its_workers_and_runs_its_own_ops_serial():
    """Planner.plan: the planner's own ops run with one torch thread (serial_caller: libgomp's threads would
    spin on the rollout workers' cores), the rollout gets one worker per thread the caller had, and the
    caller's thread count is back afterwards, also when the task raises."""
    spec, model = _model(1)
    state = _state(spec)
    seen = []

    class Probe(TrajectoryFollowingTask):
        fail = False

        def step_rewards(self, states, actions):
            seen.append(threading.current_thread().name)
            if self.fail:
                raise RuntimeError('task failed')
            return super().step_rewards(states, actions)

    task = Probe(WaypointPath([[0, 0], [1.0, 0.0]]))
    task.update(state.numpy())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        planner = make_planner('random_shooting', spec.action_dim, 4, 400, seed=0, precision='float32', workers=0)
        sampled = []
        optimise = planner._optimise

        def spy(*args):
            sampled.append(torch.get_num_threads())
            return optimise(*args)

        planner._optimise = spy
        planner.plan(model, task, state)
        assert sampled == [1]                              # the planner's own ops: one thread
        assert torch.get_num_threads() == 2
        assert len(planner._fast.scratch) == 2             # two workers: the caller's two threads
        assert seen and all(name.startswith('mlp-rollout') for name in seen)
        task.fail = True
        with pytest.raises(RuntimeError, match='task failed'):
            planner.plan(model, task, state)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
