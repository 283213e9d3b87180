"""The hexapod millirobot walks: forward/backward under equal commands, turns on the spot, random commands vary."""
import numpy as np
import pytest

from mbmf_ros.core.agents import get_agent
from mbmf_ros.sim.simulation import Simulation

SPEC = get_agent('hexapod')


def run(cmd, steps=60, seed=0):
    """States (steps+1, state_dim) under a constant command from a noisy start."""
    sim = Simulation('hexapod')
    out = [sim.reset(seed=seed).estimate.values]
    for _ in range(steps):
        r = sim.step(np.asarray(cmd, dtype=float))
        assert not r.terminated, f'hexapod fell under {cmd}'
        out.append(r.estimate.values)
    return np.array(out)


def body_speed(states):
    """Mean speed (m/s) over the last two thirds, and net displacement in the start heading frame."""
    d = states[-1, :2] - states[20, :2]
    yaw0 = states[20, 2]
    fwd = np.cos(yaw0) * d[0] + np.sin(yaw0) * d[1]
    return fwd / ((len(states) - 21) * SPEC.dt)


def yaw_rate(states):
    return np.unwrap(states[20:, 2])[[0, -1]] @ np.array([-1, 1]) / ((len(states) - 21) * SPEC.dt)


def test_forward_at_least_one_body_length_per_second():
    s = run((1, 1))
    speed = body_speed(s)
    assert speed >= 1.0 * SPEC.body_length, f'forward speed {speed:.3f} m/s < 1 body length/s'
    assert abs(yaw_rate(s)) < 0.3, 'equal commands should walk straight'
    assert np.mean(s[20:, SPEC.index('vx')]) > SPEC.body_length   # the estimated body-frame velocity agrees


def test_backward_under_negative_commands():
    assert body_speed(run((-1, -1))) <= -1.0 * SPEC.body_length


@pytest.mark.parametrize('cmd,sign', [((1, -1), -1), ((-1, 1), 1)])
def test_turns_on_the_spot_at_a_moderate_rate(cmd, sign):
    s = run(cmd)
    rate = yaw_rate(s)
    assert np.sign(rate) == sign and 1.0 <= abs(rate) <= 4.0, f'yaw rate {rate:.2f} rad/s under {cmd}'
    travel = np.hypot(*(s[-1, :2] - s[0, :2]))
    assert travel < 0.5 * SPEC.body_length, f'turning on the spot travelled {travel:.3f} m'


def test_random_commands_cover_forward_motion_and_turning():
    sim = Simulation('hexapod')
    rng = np.random.default_rng(3)
    states = []
    for ep in range(4):
        sim.reset(seed=ep)
        for _ in range(100):
            states.append(sim.step(rng.uniform(-1, 1, 2)).estimate.values)
    s = np.array(states)
    vx, wz = s[:, SPEC.index('vx')], s[:, SPEC.index('wz')]
    assert np.all(np.isfinite(s))
    assert (vx > 0.05).mean() > 0.1 and (vx < -0.05).mean() > 0.1, 'random data lacks forward/backward motion'
    assert (wz > 0.5).mean() > 0.1 and (wz < -0.5).mean() > 0.1, 'random data lacks turning'
    assert s[:, SPEC.index('cos_roll')].min() > 0.5, 'random commands tipped the robot over'


def test_state_layout_and_crank_encoding():
    s = run((1, 1), steps=10)
    assert SPEC.state_names[:3] == ('x', 'y', 'yaw') and SPEC.state_dim == 20
    for side in ('left', 'right'):
        sc = s[:, [SPEC.index(f'sin_{side}_crank'), SPEC.index(f'cos_{side}_crank')]]
        np.testing.assert_allclose(np.hypot(sc[:, 0], sc[:, 1]), 1.0, atol=1e-9)
    # the crank speed is the mean over the control period, close to the commanded 20 rad/s x steering mix
    assert 15 < s[-1, SPEC.index('left_crank_speed')] < 25


def test_same_seed_same_trajectory_and_clock_is_monotonic():
    a, b = run((0.5, -0.2), steps=20, seed=7), run((0.5, -0.2), steps=20, seed=7)
    np.testing.assert_array_equal(a, b)
    sim = Simulation('hexapod', max_episode_steps=3)
    stamps = [sim.reset(seed=0).reading.stamp]
    for _ in range(2):
        r = None
        while r is None or not r.terminal:
            r = sim.step([0.0, 0.0])
            stamps.append(r.reading.stamp)
        stamps.append(sim.reset().reading.stamp)
    assert np.all(np.diff(stamps) > 0), stamps
    assert sim.episode == 2


def test_bad_action_is_rejected_counted_and_replaced_by_zero():
    sim = Simulation('hexapod')
    sim.reset(seed=0)
    for _ in range(10):
        sim.step([1.0, 1.0])
    for bad in ([1.0], [np.nan, 1.0], [1.0, 1.0, 1.0]):
        sim.step(bad)
    assert sim.rejected_actions == 3
    for _ in range(10):
        r = sim.step([np.inf, 0.0])
    assert sim.rejected_actions == 13
    assert abs(r.estimate.values[SPEC.index('left_crank_speed')]) < 1.0, 'a rejected action must stop the motors'
