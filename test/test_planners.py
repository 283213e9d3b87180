"""MPC planners (core.planners): random shooting as in the paper, CEM and MPPI with warm start.

The closed-loop tests steer a known analytic model (a skid-steer robot with the DynamicsModel contract:
``predict`` (E, K, S) -> (E, K, S)) along waypoint paths; the last test uses a real ``DynamicsModel``.
"""
import math

import numpy as np
import pytest
import torch

from mbmf_ros.core.planners import CEMPlanner, ICEMPlanner, MPPIPlanner, RandomShootingPlanner, make_planner
from mbmf_ros.core.state import apply_delta
from mbmf_ros.core.tasks import MovingForwardTask, Task, TrajectoryFollowingTask
from mbmf_ros.core.waypoints import WaypointPath

torch.set_num_threads(1)


class SkidSteer:
    """A differential-drive robot: state (x, y, yaw, v, w), action (left, right) in [-1, 1].
    v = vmax * (l + r) / 2 (m/s), w = wmax * (r - l) / 2 (rad/s), over dt seconds.
    ``gains`` (E,) scales v per ensemble member (E = len(gains))."""
    state_names = ('x', 'y', 'yaw', 'v', 'w')
    action_names = ('left', 'right')

    def __init__(self, dt=0.05, vmax=0.5, wmax=6.0, gains=(1.0,)):
        self.dt, self.vmax, self.wmax = dt, vmax, wmax
        self.gains = torch.tensor(gains, dtype=torch.float32)
        self.num_members = len(gains)
        self.calls = 0

    def predict(self, states, actions):
        self.calls += 1
        E = self.num_members
        if states.dim() == 2:
            states = states.unsqueeze(0).expand(E, -1, -1)
        if actions.dim() == 2:
            actions = actions.unsqueeze(0).expand(E, -1, -1)
        v = self.vmax * 0.5 * (actions[..., 0] + actions[..., 1]) * self.gains[:, None]
        w = self.wmax * 0.5 * (actions[..., 1] - actions[..., 0])
        delta = torch.stack([v * self.dt, torch.zeros_like(v), w * self.dt,
                             v - states[..., 3], w - states[..., 4]], -1)
        return apply_delta(states, delta)


def follow(planner, path_points, steps, alpha=1.0, beta=5.0, start=(0.0, 0.0, 0.0)):
    """Closed loop: the true robot is the model itself. Returns (cross-track errors, tracker state)."""
    model = SkidSteer()
    task = TrajectoryFollowingTask(WaypointPath(path_points), alpha=alpha, beta=beta, lookahead_m=1.0)
    state = torch.tensor([*start, 0.0, 0.0])
    errors = []
    for _ in range(steps):
        tr = task.update(state.numpy())
        errors.append(tr.cross_track_m)
        if tr.done:
            break
        res = planner.plan(model, task, state)
        assert np.all(np.abs(res.action) <= 1.0)
        state = model.predict(state.unsqueeze(0), torch.as_tensor(res.action).unsqueeze(0))[0, 0]
    return np.array(errors), task.tracking


PATHS = {
    'left_turn': [[0, 0], [1.0, 0], [1.0, 1.0]],
    'u_turn': [[0, 0], [1.0, 0], [1.0, 0.5], [0.0, 0.5]],
}


@pytest.mark.parametrize('name', ['random_shooting', 'cem', 'mppi', 'icem'])
@pytest.mark.parametrize('path', ['left_turn', 'u_turn'])
def test_planners_steer_a_skid_steer_robot_along_paths(name, path):
    planner = make_planner(name, action_dim=2, horizon=10, num_samples=300, seed=0)
    pts = PATHS[path]
    length = WaypointPath(pts).length
    # 0.5 m/s at most: the path needs length / 0.025 steps. Random shooting's first actions are noisy (it
    # moves at ~40 % of top speed with H=10, K=300): allow 3.2x.
    errors, tracking = follow(planner, pts, steps=int(3.2 * length / 0.025))
    assert tracking.progress >= 0.95, (name, path, tracking)
    assert errors.mean() < 0.05, (name, path, errors.mean())      # half a body length of a 10 cm robot


def test_random_shooting_is_the_paper_method():
    """K uniform sequences in [-1, 1], each summed over H steps; the first action of the best."""
    K, H = 64, 5
    model = SkidSteer()
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1, 0.3]]))
    state = torch.tensor([0.0, 0.0, 0.4, 0.0, 0.0])
    task.update(state.numpy())
    res = RandomShootingPlanner(2, H, K, seed=7).plan(model, task, state)
    gen = torch.Generator().manual_seed(7)
    cand = torch.rand(K, H, 2, generator=gen) * 2 - 1
    returns = torch.zeros(K)
    s = state.expand(K, -1).unsqueeze(0)
    for t in range(H):
        nxt = model.predict(s, cand[:, t])
        returns += task.reward(s, cand[:, t], nxt)[0]
        s = nxt
    best = int(torch.argmax(returns))
    np.testing.assert_allclose(res.actions, cand[best].numpy())
    np.testing.assert_allclose(res.action, cand[best, 0].numpy())
    assert res.best_reward == pytest.approx(float(returns[best]), rel=1e-5)
    assert res.predicted_states.shape == (H + 1, 5)
    np.testing.assert_allclose(res.predicted_states[0], state.numpy())
    np.testing.assert_allclose(res.predicted_states[-1], s[0, best].numpy(), rtol=1e-5, atol=1e-6)
    assert cand.min() >= -1 and cand.max() <= 1
    # One batched predict per horizon step, no loop over candidates.
    assert model.calls == 2 * H


class PushHard(Task):
    """Rewards ever larger actions: the optimum lies outside [-1, 1]."""

    def reward(self, states, actions, next_states):
        a = actions if actions.dim() == 3 else actions.unsqueeze(0)
        return (10.0 * a.sum(-1)).expand(next_states.shape[0], -1)


class Recording(SkidSteer):
    """Records the largest |action| the planner ever asked the model to evaluate."""
    max_abs = 0.0

    def predict(self, states, actions):
        self.max_abs = max(self.max_abs, float(actions.abs().max()))
        return super().predict(states, actions)


@pytest.mark.parametrize('name', ['random_shooting', 'cem', 'mppi', 'icem'])
def test_actions_stay_within_bounds(name):
    """The candidates evaluated (not only the returned plan, which plan() clamps anyway) stay in [-1, 1]: a
    planner that scores actions the robot cannot execute picks plans it cannot follow."""
    planner = make_planner(name, 2, 6, 200, seed=1)
    model, state = Recording(), torch.zeros(5)
    for _ in range(5):
        res = planner.plan(model, PushHard(), state)
        assert res.actions.dtype == np.float32
    assert 0.99 < model.max_abs <= 1.0
    assert res.actions.mean() > 0.3      # pushed toward the bound, never past it


@pytest.mark.parametrize('name', ['random_shooting', 'cem', 'mppi', 'icem'])
def test_seeded_planners_repeat_and_differ(name):
    model, task = SkidSteer(), PushHard()
    a = make_planner(name, 2, 5, 100, seed=3).plan(model, task, torch.zeros(5)).actions
    b = make_planner(name, 2, 5, 100, seed=3).plan(model, task, torch.zeros(5)).actions
    c = make_planner(name, 2, 5, 100, seed=4).plan(model, task, torch.zeros(5)).actions
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


class Target(Task):
    """Reward -|a_t - target_t|^2 for a fixed target sequence (H, A): tests the warm start."""

    def __init__(self, target):
        self.target = target
        self.t = 0

    def reward(self, states, actions, next_states):
        a = actions if actions.dim() == 3 else actions.unsqueeze(0)
        r = -((a - self.target[self.t % len(self.target)]) ** 2).sum(-1)
        self.t += 1
        return r.expand(next_states.shape[0], -1)


@pytest.mark.parametrize('cls', [CEMPlanner, MPPIPlanner, ICEMPlanner])
def test_warm_start_shifts_and_improves_the_plan(cls):
    H = 5
    target = torch.full((H, 2), 0.6)
    planner = cls(2, H, 60, seed=0)
    model = SkidSteer()
    first = planner.plan(model, Target(target), torch.zeros(5))
    for _ in range(15):
        last = planner.plan(model, Target(target), torch.zeros(5))
    err = lambda r: float(np.abs(r.actions - 0.6).mean())  # noqa: E731
    assert err(last) < 0.5 * err(first), (err(first), err(last))
    # The warm start is the previous plan shifted by one step, its last action repeated.
    prev = planner._previous.clone()
    np.testing.assert_array_equal(planner._shifted_previous()[:-1].numpy(), prev[1:].numpy())
    np.testing.assert_array_equal(planner._shifted_previous()[-1].numpy(), prev[-1].numpy())
    planner.reset()
    assert planner._shifted_previous().abs().sum() == 0


def test_ensemble_scores_by_mean_over_members():
    # Member 0: forward is good; member 1: forward is 3x as bad. The mean says: go backward.
    state = torch.zeros(5)
    task = MovingForwardTask(velocity_index=3)
    single = RandomShootingPlanner(2, 3, 200, seed=0).plan(SkidSteer(gains=(1.0,)), task, state)
    ens = RandomShootingPlanner(2, 3, 200, seed=0).plan(SkidSteer(gains=(1.0, -3.0)), task, state)
    assert single.action.sum() > 1.0 and ens.action.sum() < -1.0
    assert ens.predicted_states.shape == (4, 5)


def test_candidates_and_result_fields():
    planner = RandomShootingPlanner(2, 4, 50, seed=0, keep_candidates=5)
    res = planner.plan(SkidSteer(), PushHard(), np.zeros(5))
    assert res.candidate_states.shape == (5, 5, 5)
    assert res.planner == 'random_shooting' and res.num_samples == 50 and res.horizon == 4
    assert res.solve_time_s > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown planner 'ilqr'"):
        make_planner('ilqr', 2, 5, 10)
    with pytest.raises(ValueError, match='horizon and num_samples must be >= 1'):
        make_planner('cem', 2, 0, 10)
    p = make_planner('mppi', 2, 3, 10)
    with pytest.raises(ValueError, match='non-finite'):
        p.plan(SkidSteer(), PushHard(), np.array([0, 0, math.nan, 0, 0]))
    with pytest.raises(ValueError, match=r'shape \(S,\)'):
        p.plan(SkidSteer(), PushHard(), np.zeros((2, 5)))


def test_with_a_real_dynamics_model():
    dyn = pytest.importorskip('mbmf_ros.core.dynamics')
    names = ('x', 'y', 'yaw', 'v', 'w')
    model = dyn.DynamicsModel(names, ('left', 'right'))
    model.eval()
    task = TrajectoryFollowingTask(WaypointPath([[0, 0], [1, 0]]))
    state = np.zeros(5, dtype=np.float32)
    task.update(state)
    for name in ('random_shooting', 'cem', 'mppi'):
        res = make_planner(name, 2, 4, 64, seed=0).plan(model, task, state)
        assert res.actions.shape == (4, 2) and np.isfinite(res.predicted_states).all()
        assert np.abs(res.actions).max() <= 1.0
