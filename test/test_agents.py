"""Agent specs and the paper's four MuJoCo agents: documented state sizes, stepping, resets, termination."""
import math

import numpy as np
import pytest

from mbmf_ros.core.agents import AGENTS, get_agent
from mbmf_ros.core.estimation import SensorReading, StateEstimator
from mbmf_ros.sim.simulation import Simulation

# state sizes documented in agents.py (x, y, yaw + pose-invariant elements)
STATE_DIMS = {'hexapod': 20, 'swimmer': 10, 'half_cheetah': 21, 'hopper': 15, 'ant': 30}
DEFAULTS = {  # appendix A.3: dt, (K, H) for trajectory following or (hopper) moving forward; swimmer TF: H 10, K 2000 (measured)
    'swimmer': (0.15, 2000, 10), 'half_cheetah': (0.01, 1000, 10), 'hopper': (0.02, 1000, 40),
    'ant': (0.02, 7000, 15)}


def test_unknown_agent_lists_the_known_ones():
    with pytest.raises(ValueError) as e:
        get_agent('quadcopter')
    for name in AGENTS:
        assert name in str(e.value)


@pytest.mark.parametrize('name', sorted(AGENTS))
def test_agent_steps_and_resets_with_documented_sizes(name):
    spec = get_agent(name)
    assert spec.state_names[:3] == ('x', 'y', 'yaw')
    assert spec.state_dim == STATE_DIMS[name] and len(set(spec.state_names)) == spec.state_dim
    assert spec.forward_velocity_element in spec.state_names
    assert {'num_samples', 'horizon'} <= set(spec.planner_defaults)
    if name in DEFAULTS:
        dt, k, h = DEFAULTS[name]
        assert (spec.dt, spec.planner_defaults['num_samples'], spec.planner_defaults['horizon']) == (dt, k, h)
    sim = Simulation(name)
    s0 = sim.reset(seed=1).estimate
    assert s0.values.shape == (spec.state_dim,) and s0.valid
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = sim.step(rng.uniform(-1, 1, spec.action_dim))
        assert r.estimate.values.shape == (spec.state_dim,) and np.all(np.isfinite(r.estimate.values))
        if r.terminal:
            break
    assert r.reading.stamp == pytest.approx(sim.time) and sim.time > 0
    # start noise is small (paper A.1: N(0, 0.001)); different seeds give different starts
    a, b = Simulation(name).reset(seed=1).estimate.values, Simulation(name).reset(seed=2).estimate.values
    assert not np.array_equal(a, b)
    if not spec.heading_noise:
        assert np.max(np.abs(a - b)) < 0.05
    if spec.planar == 'xz':
        assert a[1] == 0.0 and a[2] == 0.0


def test_swimmer_heading_spans_the_circle():
    yaws = [Simulation('swimmer').reset(seed=s).estimate.values[2] for s in range(40)]
    assert min(yaws) < -2.0 and max(yaws) > 2.0


@pytest.mark.parametrize('name', ['hopper', 'ant'])
def test_termination_when_the_agent_falls(name):
    spec = get_agent(name)
    healthy = Simulation(name).reset(seed=0).estimate.values
    assert not spec.terminated(healthy)
    fallen = healthy.copy()
    fallen[spec.index('z')] = 0.1
    assert spec.terminated(fallen)
    assert spec.terminated(np.full(spec.state_dim, np.nan))


def test_hopper_terminates_under_random_actions_and_step_limit_truncates():
    sim = Simulation('hopper')
    sim.reset(seed=0)
    rng = np.random.default_rng(0)
    for k in range(200):
        r = sim.step(rng.uniform(-1, 1, 3))
        if r.terminal:
            break
    assert r.terminated and k < 199
    sim = Simulation('half_cheetah', max_episode_steps=5)
    sim.reset(seed=0)
    results = [sim.step(np.zeros(6)) for _ in range(5)]
    assert [r.truncated for r in results] == [False] * 4 + [True]


def test_estimator_flags_missing_sensors_and_never_makes_nan():
    spec = get_agent('hexapod')
    est = StateEstimator(spec)
    good = Simulation('hexapod').reset(seed=0).reading
    first = est.update(good)
    assert first.valid
    missing = SensorReading(stamp=good.stamp + 0.05, position=None, orientation=good.orientation,
                            angular_velocity=np.array([np.nan, 0, 0]), joints={}, ages={})
    e = est.update(missing)
    assert not e.valid and np.all(np.isfinite(e.values))
    assert any('position' in f for f in e.flags) and any('angular_velocity' in f for f in e.flags)
    assert any('left_front_crank' in f for f in e.flags)
    np.testing.assert_array_equal(e.values[:3], first.values[:3])   # held, not zeroed
    late = SensorReading(stamp=good.stamp + 0.1, position=good.position, orientation=good.orientation,
                         angular_velocity=good.angular_velocity, joints=good.joints, ages={'position': 0.5})
    e = est.update(late)
    assert not e.valid and any('position stale' in f for f in e.flags)
    # a brand-new estimator with nothing at all still gives finite values
    e = StateEstimator(spec).update(SensorReading(stamp=0.0))
    assert not e.valid and np.all(np.isfinite(e.values))


def test_pose_difference_velocity_matches_motion():
    spec = get_agent('hexapod')
    est = StateEstimator(spec, velocity_filter_alpha=1.0)
    q = np.array([math.cos(0.25), 0, 0, math.sin(0.25)])   # yaw 0.5 rad
    joints = {'left_front_crank': (0.0, 0.0), 'right_front_crank': (0.0, 0.0)}
    est.update(SensorReading(0.0, np.zeros(3), q, None, np.zeros(3), joints))
    d = 0.01 * np.array([math.cos(0.5), math.sin(0.5), 0.0])   # 1 cm forward along the heading in 0.05 s
    e = est.update(SensorReading(0.05, d, q, None, np.zeros(3), joints))
    assert e.values[spec.index('vx')] == pytest.approx(0.2) and abs(e.values[spec.index('vy')]) < 1e-12
    assert e.values[2] == pytest.approx(0.5)


@pytest.mark.parametrize('name', ['swimmer', 'half_cheetah', 'hopper', 'ant'])
def test_twist_and_gyro_are_in_the_body_frame(name):
    """The root's twist and gyro agree with its joint velocities (free joint: world linear, body angular;
    planar: two sliders and one hinge), also where the body's inertia frame is rotated against it."""
    from mbmf_ros.core.estimation import quat_to_matrix
    sim = Simulation(name)
    sim.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        r = sim.step(rng.uniform(-1, 1, sim.spec.action_dim))
        qvel = sim.data.qvel
        R = quat_to_matrix(r.reading.orientation)
        v_world = R @ r.reading.linear_velocity
        if sim.spec.planar is None:
            np.testing.assert_allclose(v_world, qvel[0:3], atol=1e-6)
            np.testing.assert_allclose(r.reading.angular_velocity, qvel[3:6], atol=1e-6)
        elif sim.spec.planar == 'xy':
            np.testing.assert_allclose(v_world[:2], qvel[0:2], atol=1e-6)
            np.testing.assert_allclose(r.reading.angular_velocity[2], qvel[2], atol=1e-6)
        else:
            np.testing.assert_allclose(v_world[[0, 2]], qvel[0:2], atol=1e-6)
            np.testing.assert_allclose(r.reading.angular_velocity[1], qvel[2], atol=1e-6)
