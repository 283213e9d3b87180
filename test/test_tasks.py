"""Task rewards (core.tasks): the paper's Alg. 2 trajectory following and the moving-forward rewards."""
import math

import numpy as np
import pytest
import torch

from mbmf_ros.core.tasks import MovingForwardTask, TrajectoryFollowingTask, _project, _segments, make_task
from mbmf_ros.core.waypoints import ProgressTracker, WaypointPath

torch.set_num_threads(1)
L_PATH = [[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]


def _alg2_reference(points, s0_xy, traj_xy, alpha, beta):
    """Alg. 2 written out as in the paper, one point at a time: closest segment of the whole path, projection;
    R -= alpha * perp; R += beta * (proj_t - proj_{t-1}), proj measured as arc length along the path."""
    pts = np.asarray(points, float)

    def project(p):
        best = None
        cum = 0.0
        for a, b in zip(pts[:-1], pts[1:]):
            v = b - a
            t = min(max(np.dot(p - a, v) / np.dot(v, v), 0.0), 1.0)
            d = np.linalg.norm(p - (a + t * v))
            if best is None or d < best[0]:
                best = (d, cum + t * np.linalg.norm(v))
            cum += np.linalg.norm(v)
        return best

    R = 0.0
    prev = project(np.asarray(s0_xy))[1]
    for p in traj_xy:
        perp, par = project(np.asarray(p))
        R += -alpha * perp + beta * (par - prev)
        prev = par
    return R


def _states(xy, yaw=0.0):
    xy = torch.as_tensor(xy, dtype=torch.float32)
    yaw_t = torch.full(xy.shape[:-1] + (1,), float(yaw))
    return torch.cat([xy, yaw_t, torch.zeros(xy.shape[:-1] + (2,))], -1)


def test_trajectory_reward_matches_alg2_written_out():
    rng = np.random.default_rng(0)
    task = TrajectoryFollowingTask(WaypointPath(L_PATH), alpha=2.0, beta=3.0, clamp_progress=False)
    s0 = np.array([0.1, 0.05])
    task.update(np.array([*s0, 0.0, 0.0, 0.0]))
    K, H = 16, 6
    traj = s0 + np.cumsum(rng.normal(0.1, 0.08, size=(K, H, 2)), axis=1)
    total = torch.zeros(1, K)
    prev = _states(np.broadcast_to(s0, (K, 2)).copy())
    for t in range(H):
        nxt = _states(traj[:, t]).unsqueeze(0)
        r = task.reward(prev, torch.zeros(K, 2), nxt)
        assert r.shape == (1, K)
        total += r
        prev = nxt
    expected = [_alg2_reference(L_PATH, s0, traj[k], 2.0, 3.0) for k in range(K)]
    np.testing.assert_allclose(total[0].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_progress_term_telescopes_to_path_progress():
    task = TrajectoryFollowingTask(WaypointPath(L_PATH), alpha=0.0, beta=1.0, clamp_progress=False)
    task.update(np.zeros(5))
    xs = [(0.0, 0.0), (0.4, 0.0), (0.9, 0.0), (1.0, 0.3), (1.0, 0.8)]
    total = 0.0
    for a, b in zip(xs[:-1], xs[1:]):
        total += float(task.reward(_states([a]), torch.zeros(1, 2), _states([[b]]))[0, 0])
    assert total == pytest.approx(1.8, abs=1e-5)
    # Clamped, the corner cut (0.9, 0) -> (1, 0.3) gains only the 0.316 m travelled, not 0.4 m of path.
    task.clamp_progress = True
    total = sum(float(task.reward(_states([a]), torch.zeros(1, 2), _states([[b]]))[0, 0])
                for a, b in zip(xs[:-1], xs[1:]))
    assert total == pytest.approx(1.8 - 0.4 + math.hypot(0.1, 0.3), abs=1e-5)


def test_on_path_forward_beats_off_path_and_backward():
    task = TrajectoryFollowingTask(WaypointPath(L_PATH), alpha=1.0, beta=5.0)
    task.update(np.array([0.5, 0.0, 0.0, 0.0, 0.0]))
    s = _states([[0.5, 0.0]] * 3)
    nxt = _states([[[0.55, 0.0], [0.55, 0.05], [0.45, 0.0]]])
    r = task.reward(s, torch.zeros(3, 2), nxt)[0]
    assert r[0] > r[1] and r[0] > r[2]
    assert float(r[0]) == pytest.approx(5 * 0.05, abs=1e-6)
    assert float(r[1]) == pytest.approx(5 * 0.05 - 0.05, abs=1e-6)
    assert float(r[2]) == pytest.approx(-5 * 0.05, abs=1e-6)


def test_ensemble_shapes_broadcast():
    task = TrajectoryFollowingTask(WaypointPath(L_PATH))
    task.update(np.zeros(5))
    s = _states(torch.rand(7, 2))                 # (K, S): the true state broadcast to all members
    nxt = _states(torch.rand(3, 7, 2))            # (E, K, S)
    assert task.reward(s, torch.zeros(7, 2), nxt).shape == (3, 7)


def test_clamp_progress_blocks_shortcut_to_a_nearby_later_leg():
    path = WaypointPath([[0, 0], [2, 0], [2, 0.2], [0, 0.2]])   # a U-turn, return leg 0.2 m away
    s = _states([[0.5, 0.09]])
    nxt = _states([[[0.5, 0.11]]])                               # 2 cm sideways, now closer to the return leg
    free = TrajectoryFollowingTask(path, alpha=0.0, beta=1.0, clamp_progress=False)
    free.update(np.array([0.5, 0.09, 0, 0, 0]))
    clamped = TrajectoryFollowingTask(path, alpha=0.0, beta=1.0, clamp_progress=True)
    clamped.update(np.array([0.5, 0.09, 0, 0, 0]))
    assert float(free.reward(s, torch.zeros(1, 2), nxt)) > 2.0   # Alg. 2: jumps 3 m along the path
    assert float(clamped.reward(s, torch.zeros(1, 2), nxt)) == pytest.approx(0.02, abs=1e-5)
    # A short lookahead keeps the return leg out of the closest-segment search altogether.
    windowed = TrajectoryFollowingTask(path, alpha=0.0, beta=1.0, clamp_progress=False, lookahead_m=0.5)
    windowed.update(np.array([0.5, 0.09, 0, 0, 0]))
    assert float(windowed.reward(s, torch.zeros(1, 2), nxt)) == pytest.approx(0.0, abs=1e-6)


def test_tracker_advances_with_update_and_resets():
    task = TrajectoryFollowingTask(WaypointPath(L_PATH), lookahead_m=0.5)
    assert task.update(np.array([0.2, 0.0, 0, 0, 0])).segment == 0
    st = task.update(np.array([1.0, 0.5, 0, 0, 0]))
    assert st.segment == 1 and st.progress_m == pytest.approx(1.5)
    task.reset()
    assert task.tracker.segment == 0


def test_heading_term_penalises_facing_away():
    task = TrajectoryFollowingTask(WaypointPath(L_PATH), alpha=0.0, beta=0.0, heading_weight=2.0)
    task.update(np.zeros(5))
    s = _states([[0.2, 0.0]] * 2)
    nxt = torch.stack([_states([0.2, 0.0], 0.0), _states([0.2, 0.0], math.pi / 2)]).unsqueeze(0)
    r = task.reward(s, torch.zeros(2, 2), nxt)[0]
    assert float(r[0]) == pytest.approx(0.0, abs=1e-6) and float(r[1]) == pytest.approx(-math.pi, abs=1e-5)


def test_heading_free_zone_charges_only_the_excess_and_breaks_the_tie_toward_the_short_turn():
    # A path straight ahead along +x; the robot faces 60 degrees off it (free), 150 degrees to its left, or 150
    # to its right. Beyond the free 90 degrees only the excess is charged, so from 150 degrees turning back the
    # short way (toward 120) gains and turning the long way (toward 180) loses, on either side.
    task = TrajectoryFollowingTask(WaypointPath([[0.0, 0.0], [1.0, 0.0]]), alpha=0.0, beta=0.0, heading_weight=1.0,
                                   heading_free_rad=math.pi / 2)
    task.update(np.zeros(5))
    deg = math.radians
    s = torch.stack([_states([0.2, 0.0])] * 7)
    yaws = [deg(60), deg(150), deg(120), deg(180), deg(-150), deg(-120), deg(-179)]
    nxt = torch.stack([_states([0.2, 0.0], y) for y in yaws]).unsqueeze(0)
    r = task.reward(s, torch.zeros(7, 2), nxt)[0].numpy()
    np.testing.assert_allclose(r[:2], [0.0, -deg(60)], atol=1e-5)
    assert r[2] > r[1] > r[3] and r[5] > r[4] > r[6]
    seq = torch.stack([s, nxt[0]], 1).unsqueeze(0)          # the planners' batched path agrees
    np.testing.assert_allclose(task.step_rewards(seq, torch.zeros(7, 1, 2))[0, :, 0].numpy(), r, atol=1e-5)
    with pytest.raises(ValueError, match='heading_free_rad'):
        TrajectoryFollowingTask(heading_free_rad=4.0)


def test_heading_to_a_point_ahead_points_down_the_next_leg_at_a_sharp_corner():
    # 2.5 cm before a 150-degree left corner, facing along the first leg: against the closest segment (the first
    # leg) turning left toward the next leg is charged as much as turning right; against the bearing of the point
    # 10 cm on (7.5 cm down the next leg, ~137 degrees to the left) only turning left pays.
    c = math.cos(math.radians(150.0)), math.sin(math.radians(150.0))
    path = WaypointPath([[0.0, 0.0], [0.35, 0.0], [0.35 + 0.3 * c[0], 0.3 * c[1]]])
    deg = math.radians
    s = torch.stack([_states([0.325, 0.0])] * 3)
    yaws = (0.0, deg(100), deg(-100))                  # straight on, turned 100 degrees left, 100 right
    nxt = torch.stack([_states([0.325, 0.0], y) for y in yaws]).unsqueeze(0)
    rewards = {}
    for ahead in (0.0, 0.1):
        task = TrajectoryFollowingTask(path, alpha=0.0, beta=0.0, heading_weight=1.0, heading_free_rad=math.pi / 2,
                                       heading_lookahead_m=ahead)
        task.update(np.array([0.325, 0.0, 0.0, 0.0, 0.0]))
        rewards[ahead] = task.reward(s, torch.zeros(3, 2), nxt)[0].numpy()
        seq = torch.stack([s, nxt[0]], 1).unsqueeze(0)
        np.testing.assert_allclose(task.step_rewards(seq, torch.zeros(3, 1, 2))[0, :, 0].numpy(), rewards[ahead],
                                   atol=1e-5)
    np.testing.assert_allclose(rewards[0.0], [0.0, -deg(10), -deg(10)], atol=1e-5)   # left and right alike
    bearing = math.atan2(0.075 * c[1], 0.025 + 0.075 * c[0])                          # ~137 degrees left
    # the true state's error (137 degrees) exceeds the free zone: errors are unwrapped from it, so turning right
    # by 100 degrees is 237 degrees off, not 123
    excess = [abs(y - bearing) - math.pi / 2 for y in yaws]
    np.testing.assert_allclose(rewards[0.1], [-max(e, 0.0) for e in excess], atol=1e-4)
    assert rewards[0.1][1] == 0.0 and rewards[0.1][2] < rewards[0.1][0] < -0.5      # only the left turn pays
    with pytest.raises(ValueError, match='heading_lookahead_m'):
        TrajectoryFollowingTask(heading_lookahead_m=-0.1)


def test_near_a_reversal_the_way_round_is_the_one_the_true_state_points_to():
    # The path leaves 175 degrees to the left (a hairpin): the short way is left by 5 degrees. Wrapped, a turn of
    # 20 degrees to the right would look 165 degrees off, better than standing (175): the MPC took either way.
    # Unwrapped from the true state's error, it is 195 degrees off; 20 degrees left is 155.
    a = math.radians(175.0)
    for side in (1.0, -1.0):
        path = WaypointPath([[0.0, 0.0], [0.4 * math.cos(a), side * 0.4 * math.sin(a)]])
        task = TrajectoryFollowingTask(path, alpha=0.0, beta=0.0, heading_weight=1.0, heading_free_rad=math.pi / 2,
                                       heading_lookahead_m=0.2)
        task.update(np.zeros(5))
        yaws = [side * math.radians(d) for d in (20.0, 0.0, -20.0)]            # toward the path's side, still, away
        s = torch.stack([_states([0.0, 0.0])] * 3)
        nxt = torch.stack([_states([0.0, 0.0], y) for y in yaws]).unsqueeze(0)
        r = task.reward(s, torch.zeros(3, 2), nxt)[0].numpy()
        np.testing.assert_allclose(r, [-math.radians(d - 90.0) for d in (155.0, 175.0, 195.0)], atol=1e-4)
        seq = torch.stack([s, nxt[0]], 1).unsqueeze(0)
        np.testing.assert_allclose(task.step_rewards(seq, torch.zeros(3, 1, 2))[0, :, 0].numpy(), r, atol=1e-5)
    # within the free zone at the true state nothing is unwrapped (an ordinary wrapped error)
    task = TrajectoryFollowingTask(WaypointPath([[0.0, 0.0], [1.0, 0.0]]), alpha=0.0, beta=0.0, heading_weight=1.0,
                                   heading_free_rad=math.pi / 2, heading_lookahead_m=0.2)
    task.update(np.zeros(5))
    assert task._turn_from is None


def test_reverse_term_penalises_moving_backwards_only_and_the_batched_sum_agrees():
    task = TrajectoryFollowingTask(WaypointPath(L_PATH), alpha=0.0, beta=0.0, reverse_weight=10.0)
    task.update(np.zeros(5))
    # facing +x at (0.2, 0): 2 cm forward, 2 cm backward, 2 cm sideways; facing -x: 2 cm toward -x is forward
    s = torch.stack([_states([0.2, 0.0]), _states([0.2, 0.0]), _states([0.2, 0.0]), _states([0.2, 0.0], math.pi)])
    nxt = torch.stack([_states([0.22, 0.0]), _states([0.18, 0.0]), _states([0.2, 0.02]),
                       _states([0.18, 0.0], math.pi)]).unsqueeze(0)
    r = task.reward(s, torch.zeros(4, 2), nxt)[0]
    np.testing.assert_allclose(r.numpy(), [0.0, -0.2, 0.0, 0.0], atol=1e-5)
    # step_rewards (the planners' batched path) has the same term: (E=1, K=4, H+1=2, S)
    seq = torch.stack([s, nxt[0]], 1).unsqueeze(0)
    np.testing.assert_allclose(task.step_rewards(seq, torch.zeros(4, 1, 2))[0, :, 0].numpy(), r.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match='reverse_weight'):
        TrajectoryFollowingTask(reverse_weight=-1.0)


def test_bad_weights_and_no_path():
    with pytest.raises(ValueError, match='alpha'):
        TrajectoryFollowingTask(alpha=float('nan'))
    with pytest.raises(RuntimeError, match='no path'):
        TrajectoryFollowingTask().reward(_states([[0, 0]]), torch.zeros(1, 2), _states([[[0, 0]]]))


def test_moving_forward_reward_formula():
    task = MovingForwardTask(velocity_index=3, ctrl_cost=0.1, alive_bonus=1.0)
    s = torch.zeros(2, 5)
    nxt = torch.zeros(1, 2, 5)
    nxt[0, :, 3] = torch.tensor([2.0, -1.0])
    a = torch.tensor([[1.0, 1.0], [0.5, 0.0]])
    r = task.reward(s, a, nxt)
    assert r.shape == (1, 2)
    np.testing.assert_allclose(r[0].numpy(), [2.0 + 1.0 - 0.2, -1.0 + 1.0 - 0.025], rtol=1e-6)


def test_moving_forward_termination_drops_velocity_and_bonus():
    task = MovingForwardTask(velocity_index=3, alive_bonus=1.0, ctrl_cost=0.5, ctrl_scale=2.0,
                             termination=[(4, 0.3, 1.0)])
    nxt = torch.zeros(1, 2, 5)
    nxt[0, :, 3] = 2.0
    nxt[0, :, 4] = torch.tensor([0.5, 0.1])       # healthy height, fallen
    r = task.reward(torch.zeros(2, 5), torch.ones(2, 2), nxt)
    np.testing.assert_allclose(r[0].numpy(), [3.0 - 0.25, -0.25], rtol=1e-6)


def test_moving_forward_from_agent_spec():
    class Spec:
        name, state_names = 'toy', ('x', 'y', 'yaw', 'vx', 'vy')
        forward_velocity_element, ctrl_cost, alive_bonus, ctrl_scale = 'vx', 0.5, 0.0, 50.0
    task = make_task('moving_forward', Spec())
    assert task.velocity_index == 3 and task.ctrl_cost == 0.5 and task.ctrl_scale == 50.0
    Spec.forward_velocity_element = 'speed'
    with pytest.raises(ValueError, match="'speed' is not a state element"):
        MovingForwardTask.for_agent(Spec())
    with pytest.raises(ValueError, match='unknown task'):
        make_task('dance')


def test_moving_forward_for_every_real_agent():
    """Standing still with every action at 1: the appendix C.2 numbers written out (swimmer -0.5*2/50^2,
    cheetah -0.05*6, hopper and ant fallen at all-zero states: no bonus, -0.005*3/200^2 and -0.005*8/150^2;
    the hexapod has no action cost)."""
    agents = pytest.importorskip('mbmf_ros.core.agents')
    table = {'hexapod': 0.0, 'swimmer': -0.5 * 2 / 2500, 'half_cheetah': -0.05 * 6,
             'hopper': -0.005 * 3 / 40000, 'ant': -0.005 * 8 / 22500}
    assert set(table) == set(agents.AGENTS)
    for name in agents.AGENTS:
        spec = agents.get_agent(name)
        task = MovingForwardTask.for_agent(spec)
        S, A = spec.state_dim, spec.action_dim
        r = task.reward(torch.zeros(4, S), torch.ones(4, A), torch.zeros(2, 4, S))
        assert r.shape == (2, 4)
        assert torch.allclose(r, torch.full((2, 4), table[name]), atol=1e-9), name


def test_dense_path_rewards_a_simplified_window_and_tracks_the_given_path():
    """A global planner's path, a pose every 3 mm along straight legs and a half circle: the reward measures
    against the path through fewer waypoints (within 0.1 mm of all), so its window holds a few segments instead
    of 160, the cross-track error is the full projection's to 0.1 mm and the progress per step to 2 mm (for
    candidates up to 15 cm off the 1 m curve), while the tracking (segment, progress, done) is that of the path
    as given."""
    theta = np.linspace(0, np.pi, 1000)
    arc = np.stack([np.sin(theta), 1 - np.cos(theta)], 1)
    dense = np.concatenate([np.linspace([-1.0, 0.0], [0.0, 0.0], 333, endpoint=False), arc,
                            np.linspace([0.0, 2.0], [-1.0, 2.0], 334)[1:]])
    path = WaypointPath(dense)
    task = TrajectoryFollowingTask(path, lookahead_m=0.5, heading_weight=0.0, clamp_progress=False)
    tracker = ProgressTracker(path, lookahead_m=0.5, goal_tolerance_m=task.goal_tolerance_m)
    rng = np.random.default_rng(0)
    for x0 in (-0.2, 0.3):                                          # on the first leg, then on the curve
        s0 = np.array([x0, 0.02 if x0 < 0 else 1 - math.sqrt(1 - x0 * x0), 0.0])
        got, want = task.update(s0), tracker.update(s0[:2])
        assert got == want and got.segment > 0
        assert len(task._window[0]) < 30                            # of the 1665 segments, 160 in 0.5 m
        xy = s0[:2] + np.cumsum(rng.normal(0.01, 0.01, (64, 6, 2)), 1)
        states = _states(np.concatenate([np.broadcast_to(s0[:2], (64, 1, 2)), xy], 1)).unsqueeze(0)
        r = task.step_rewards(states, None)
        perp_s, prog_s, _ = task.measure(states[..., :2])
        # The full projection onto the given path's segments of the same window.
        lo, hi = path.segment_window(got.segment, 0.5, got.progress_m)
        perp, prog, _ = _project(states[..., :2], *_segments(*[t[lo:hi] for t in path.as_tensors()[:4]]))
        torch.testing.assert_close(perp_s, perp, rtol=0, atol=1.1e-4)
        gain_s, gain = prog_s.diff(dim=-1), prog.diff(dim=-1)
        torch.testing.assert_close(gain_s, gain, rtol=0, atol=2e-3)      # ~ offset / radius x chord / 2
        torch.testing.assert_close(r, task.beta * gain_s - task.alpha * perp_s[..., 1:])


def test_the_hopper_plans_inside_tighter_bounds_than_its_reward_scores():
    """A predicted state at |pitch| 0.18 rad is alive for the paper's return (bound 0.2) but a fall for the
    planner (config/hopper.yaml planning_termination: 0.15): a random shooter otherwise picks the candidate riding
    the true bound, and the model's first small error ends the episode."""
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.tasks import make_task
    spec = get_agent('hopper')
    names = spec.state_names
    s = torch.zeros(1, len(names))
    s[0, names.index('z')] = 1.25
    s[0, names.index('cos_pitch')] = 1.0
    tilted = s.clone()
    tilted[0, names.index('sin_pitch')], tilted[0, names.index('cos_pitch')] = math.sin(0.18), math.cos(0.18)
    low = s.clone()
    low[0, names.index('z')] = 0.75
    for state, planned in ((s, True), (tilted, False), (low, False)):
        assert bool(MovingForwardTask.for_agent(spec).healthy(state.unsqueeze(0))[0, 0])
        assert bool(make_task('moving_forward', spec).healthy(state.unsqueeze(0))[0, 0]) is planned
        assert bool(MovingForwardTask.for_agent(spec, planning=True).healthy(state.unsqueeze(0))[0, 0]) is planned


def test_a_planning_bound_on_an_element_without_termination_is_refused():
    from mbmf_ros.core.agents import make_agent
    from mbmf_ros.settings import load_settings
    settings = load_settings('hopper')
    shared = {**settings.shared(), 'planning_termination.vx': [0.0, 1.0]}
    with pytest.raises(ValueError, match=r'config/hopper.yaml.*planning_termination.vx'):
        make_agent('hopper', shared=shared, planner=settings.node('mpc_planner'))


def test_the_half_cheetahs_pitch_band_costs_a_somersault_in_planning_only():
    """Predicted states pitched past plan_pitch_max cost plan_pitch_penalty per rad in the planner's objective
    (both tasks), nose-down or nose-up alike; the paper's reward and return never include it."""
    from mbmf_ros.core.agents import get_agent
    spec = get_agent('half_cheetah')
    assert spec.plan_pitch_max > 0 and spec.plan_pitch_penalty > 0
    i_sin, i_cos = spec.index('sin_pitch'), spec.index('cos_pitch')
    nxt = torch.zeros(3, spec.state_dim)
    for k, pitch in enumerate((0.3, spec.plan_pitch_max + 0.4, -math.pi + 0.1)):
        nxt[k, i_sin], nxt[k, i_cos] = math.sin(pitch), math.cos(pitch)
    want = [0.0, 0.4 * spec.plan_pitch_penalty, (math.pi - 0.1 - spec.plan_pitch_max) * spec.plan_pitch_penalty]
    follow = make_task('trajectory_following', spec, WaypointPath([[0.0, 0.0], [3.0, 0.0]]))
    forward = MovingForwardTask.for_agent(spec, planning=True)
    for task in (follow, forward):
        assert task.planning_penalty(nxt).tolist() == pytest.approx(want, abs=1e-5)
    assert MovingForwardTask.for_agent(spec).pitch_band is None            # the scorer of an episode's return
    assert TrajectoryFollowingTask(WaypointPath([[0.0, 0.0], [3.0, 0.0]])).planning_penalty(nxt) is None


def test_the_half_cheetahs_support_band_charges_plans_that_leave_the_training_data():
    """Trajectory following plans with the agent's support band: every element of a predicted state (without its
    pose) beyond plan_support_sigma standard deviations of the model's training data (its input normaliser, taken
    by fit_support, which a planner calls with its model) costs plan_support_penalty per deviation; never in
    the reward, not for moving forward, nothing before a model is fitted."""
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.dynamics import DynamicsModel
    from mbmf_ros.core.planners import make_planner
    spec = get_agent('half_cheetah')
    sigma, penalty = spec.plan_support_sigma, spec.plan_support_penalty
    assert sigma > 0 and penalty > 0
    model = DynamicsModel(spec.state_names, spec.action_names, (16, 16), agent='half_cheetah')
    R = spec.state_dim - 3
    i_sin, i_cos = spec.index('sin_pitch') - 3, spec.index('cos_pitch') - 3
    with torch.no_grad():
        model.in_mean[:R] = torch.linspace(-1.0, 1.0, R)
        model.in_std[:R] = torch.linspace(0.5, 2.0, R)
        model.in_mean[i_sin], model.in_mean[i_cos] = 0.0, 1.0               # level: no pitch-band cost
    task = make_task('trajectory_following', spec, WaypointPath([[0.0, 0.0], [3.0, 0.0]]))
    assert task.support_band == (sigma, penalty)
    nxt = torch.zeros(3, spec.state_dim)
    nxt[:, 3:] = model.in_mean[:R]
    nxt[1, 3 + 4] += (sigma + 1.0) * model.in_std[4]                        # 1 deviation out
    nxt[2, 3 + 3] -= (sigma + 0.5) * model.in_std[3]                        # 0.5 and 2 deviations out
    nxt[2, 3 + 7] += (sigma + 2.0) * model.in_std[7]
    nxt[:, :3] = torch.tensor([5.0, -3.0, 2.0])                             # the pose is never charged
    base = task.planning_penalty(nxt)                                       # the pitch band: level, 0
    assert base is None or float(base.abs().max()) == 0.0
    task.fit_support(model)
    assert task.planning_penalty(nxt).tolist() == pytest.approx([0.0, penalty, 2.5 * penalty], abs=1e-5)
    with torch.no_grad():
        model.in_std[:R] *= 2.0                                             # a retrained normaliser
    task.fit_support(model)
    assert task.planning_penalty(nxt).tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-5)
    forward = MovingForwardTask.for_agent(spec, planning=True)
    forward.fit_support(model)
    assert forward.support_band is None and forward.planning_penalty(nxt).abs().max() == 0
    fresh = make_task('trajectory_following', spec, WaypointPath([[0.0, 0.0], [3.0, 0.0]]))
    fresh.update(np.zeros(spec.state_dim))
    make_planner('random_shooting', spec.action_dim, 3, 16, seed=0).plan(model, fresh, np.zeros(spec.state_dim,
                                                                                                np.float32))
    assert fresh._support is not None and torch.equal(fresh._support[1], model.in_std[:R])
