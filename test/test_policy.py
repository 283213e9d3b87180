"""The Mb-Mf policy (core/policy.py): behaviour cloning, DAgger, observations, checkpoints, the SB3 weight copy."""
import math

import numpy as np
import pytest
import torch

from mbmf_ros.core.agents import get_agent
from mbmf_ros.core.policy import (Episode, GaussianPolicy, ImitationConfig, Observation, dagger, fit_policy)
from mbmf_ros.core.waypoints import WaypointPath, training_path
from mbmf_ros.io.checkpoint import CheckpointMismatch, load_checkpoint, load_policy, save_policy

torch.set_num_threads(1)


def _forward_policy(agent='half_cheetah', std=1.0):
    spec = get_agent(agent)
    return GaussianPolicy(Observation('state', spec.state_names), spec.action_names, std=std, agent=agent)


def test_behaviour_cloning_fits_the_expert_mean():
    torch.manual_seed(0)    # the initial weights: the result must not depend on which tests ran before
    policy = _forward_policy('swimmer')
    rng = np.random.default_rng(0)
    obs = rng.normal(3.0, 2.0, (2000, policy.observation.dim)).astype(np.float32)
    target = np.tanh(obs[:, :2] * 0.5 - 1.5)          # a smooth expert, offset inputs (the normaliser matters)
    losses = fit_policy(policy, obs, target, ImitationConfig(lr=1e-3, batch_size=500, epochs=60))
    assert losses[-1] < 0.1 * losses[0]
    pred = np.stack([policy.act(o) for o in obs[:50]])
    assert np.abs(pred - target[:50]).mean() < 0.05
    # the normaliser is the data's
    assert torch.allclose(policy.obs_mean, torch.as_tensor(obs.mean(0)), atol=1e-4)


def test_path_observation_gives_path_points_in_the_robot_frame():
    spec = get_agent('hexapod')
    ob = Observation('path', spec.state_names, (0.0, 0.1))
    path = WaypointPath([[0.0, 0.0], [1.0, 0.0]])
    state = np.zeros(spec.state_dim)
    state[0], state[1], state[2] = 0.2, 0.05, math.pi / 2        # 5 cm left of the path, facing +y
    v = ob(state, path, progress_m=0.2)
    assert v.shape == (ob.dim,) and ob.names[-4:] == ('ref0_x', 'ref0_y', 'ref1_x', 'ref1_y')
    # closest point (0.2, 0): 5 cm behind the robot; 0.1 m further along +x = to its right
    np.testing.assert_allclose(v[-4:], [-0.05, 0.0, -0.05, -0.1], atol=1e-6)
    with pytest.raises(ValueError, match='needs the reference path'):
        ob(state)


def test_dagger_aggregates_policy_visited_states_labelled_by_the_expert():
    policy = _forward_policy('swimmer')
    calls = []

    def expert(obs):
        return np.tanh(obs[:, :2])

    def rollout(actor, seed):
        calls.append(actor is None)
        rng = np.random.default_rng(seed)
        obs = rng.normal(0, 1, (40, policy.observation.dim)).astype(np.float32)
        if actor is not None:
            obs[:, 0] += 3.0                                  # the policy visits other states than the expert
        return Episode(obs, expert(obs).astype(np.float32), np.ones(40))

    seen = []
    stages = dagger(policy, rollout, ImitationConfig(lr=1e-3, epochs=5), expert_rollouts=3, iterations=2,
                    rollouts_per_iteration=2, on_stage=lambda st, data: seen.append(len(data[0])))
    assert calls == [True] * 3 + [False] * 4
    assert [s.name for s in stages] == ['expert', 'dagger1', 'dagger2']
    assert [s.env_steps for s in stages] == [120, 80, 80] and seen == [120, 200, 280]
    # resuming after iteration 1 runs only iteration 2 on the data given
    calls.clear()
    obs = np.zeros((10, policy.observation.dim), np.float32)
    more = dagger(policy, rollout, ImitationConfig(epochs=1), 3, 2, 2, data=(obs, np.zeros((10, 2), np.float32)),
                  first_iteration=1)
    assert calls == [False, False] and [s.name for s in more] == ['dagger2']


def test_policy_checkpoint_round_trip_and_refusals(tmp_path):
    policy = _forward_policy('half_cheetah', std=0.5)
    policy.set_normaliser(torch.arange(policy.observation.dim, dtype=torch.float32), torch.full(
        (policy.observation.dim,), 2.0))
    path = save_policy(tmp_path / 'p.pt', policy, {'why': 'test'})
    back, meta = load_policy(path, agent='half_cheetah', state_names=get_agent('half_cheetah').state_names)
    obs = np.random.default_rng(1).normal(size=policy.observation.dim).astype(np.float32)
    np.testing.assert_allclose(back.act(obs), policy.act(obs))
    assert meta == {'why': 'test'} and back.std == 0.5
    with pytest.raises(CheckpointMismatch, match=r"made for agent 'half_cheetah' \(expected 'hopper'\)"):
        load_policy(path, agent='hopper')
    hexapod = get_agent('hexapod')
    with pytest.raises(CheckpointMismatch, match=r'state names .*bthigh.* \(expected .*left_crank'):
        load_policy(path, state_names=hexapod.state_names)
    with pytest.raises(CheckpointMismatch, match=r"observation 'state' \(expected 'path'\)"):
        load_policy(path, observation_kind='path')
    with pytest.raises(ValueError, match='format .*policy.* expected .*dynamics'):
        load_checkpoint(path)


def test_sb3_copy_reproduces_the_policy_mean_with_the_normaliser_folded_in():
    gym = pytest.importorskip('gymnasium')
    pytest.importorskip('stable_baselines3')
    from stable_baselines3 import PPO

    policy = _forward_policy('swimmer', std=0.5)
    rng = np.random.default_rng(2)
    obs = rng.normal(5.0, 3.0, (500, policy.observation.dim)).astype(np.float32)
    fit_policy(policy, obs, np.tanh(obs[:, :2] - 5.0), ImitationConfig(lr=1e-3, epochs=3))

    class Box(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (policy.observation.dim,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    sb3 = PPO('MlpPolicy', Box(), n_steps=64, batch_size=64, device='cpu',
              policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))
    missing, unexpected = sb3.policy.load_state_dict(policy.sb3_state_dict(), strict=False)
    assert not unexpected and all(k.startswith(('value_net', 'mlp_extractor.value_net')) for k in missing)
    with torch.no_grad():
        dist = sb3.policy.get_distribution(torch.as_tensor(obs[:20]))
        np.testing.assert_allclose(dist.distribution.mean.numpy(), policy(torch.as_tensor(obs[:20])).numpy(),
                                   atol=1e-5)
        np.testing.assert_allclose(dist.distribution.stddev.numpy(), 0.5, atol=1e-6)


def test_training_paths_cover_sharp_turns_both_ways_dense_curves_and_offset_starts():
    import yaml

    from mbmf_ros.graphs import config_dir
    settings = yaml.safe_load((config_dir() / 'mbmf.yaml').read_text())['hexapod_follow']['paths']
    rng = np.random.default_rng(3)
    turns, offsets, spacings = [], 0, []
    for _ in range(300):
        p = training_path(rng, **settings)
        path = WaypointPath(p)                     # valid: finite, >= 2 points, no zero-length segment
        turns += list(np.degrees(np.angle(np.exp(1j * np.diff(path.headings)))))
        offsets += bool(np.linalg.norm(p[0]) > 1e-9)
        spacings.append(path.lengths.min())
    turns = np.asarray(turns)
    assert (turns > 150).sum() >= 10 and (turns < -150).sum() >= 10       # hairpins both ways
    assert abs((turns > 30).sum() - (turns < -30).sum()) < 0.2 * (np.abs(turns) > 30).sum()   # no side favoured
    assert 0.2 < offsets / 300 < 0.4                 # ~offset_probability start behind/beside/askew
    assert min(spacings) < 0.02                      # densely given curves
    with pytest.raises(ValueError, match='unknown kind'):
        training_path(rng, **settings, kinds=('spiral',))


def test_closed_loop_records_expert_labels_where_the_policy_drives():
    from mbmf_ros.graphs import config_dir
    from mbmf_ros.sim.closed_loop import follow_in_process
    spec = get_agent('hexapod')
    model, _ = load_checkpoint(config_dir() / 'models' / 'hexapod.pt', agent='hexapod')
    ob = Observation('path', spec.state_names, (0.0, 0.1))
    path = np.array([[0.0, 0.0], [0.5, 0.0]])
    expert = follow_in_process('hexapod', model, path, num_samples=50, horizon=3, max_steps=8, record=ob,
                               noise_std=0.005)
    assert expert.observations.shape == (8, ob.dim) and expert.labels.shape == (8, 2)
    assert np.abs(expert.labels).max() <= 1.0 and expert.mean_solve_time_s > 0
    torch.manual_seed(0)
    policy = GaussianPolicy(ob, spec.action_names, agent='hexapod')
    driven = follow_in_process('hexapod', model, path, num_samples=50, horizon=3, max_steps=8, policy=policy,
                               record=True)
    assert driven.labels.shape == (8, 2)
    # the policy drove: its actions, not the labels, moved the robot (the runs differ)
    assert not np.allclose(driven.trajectory_xy, expert.trajectory_xy)
    np.testing.assert_allclose(driven.observations[0], expert.observations[0], atol=1e-6)   # same start


def test_closed_loop_ends_a_stalled_run():
    from mbmf_ros.sim.closed_loop import STALL_PROGRESS_M, follow_in_process
    spec = get_agent('hexapod')
    ob = Observation('path', spec.state_names, (0.0, 0.1))

    class Still:                                   # a policy that stands still
        observation = ob

        def act(self, obs):
            return np.zeros(2)
    path = np.array([[0.0, 0.0], [0.5, 0.0]])
    stalled = follow_in_process('hexapod', None, path, policy=Still(), stall_steps=5)
    assert stalled.steps == 5 and stalled.completion < STALL_PROGRESS_M / 0.5 + 0.01
    assert follow_in_process('hexapod', None, path, policy=Still(), max_steps=12).steps == 12
    # the start pose is the frame the path was given in
    assert stalled.start_pose.shape == (3,) and np.allclose(stalled.trajectory_xy[0], stalled.start_pose[:2])


def test_the_distillation_expert_turns_the_short_way_when_the_path_lies_behind():
    # Why the expert has a heading term to a point ahead beyond 90 degrees (config/mbmf.yaml hexapod_follow): a
    # turn of 150 degrees takes longer than its horizon, so without it turning left and right scored alike and
    # its labels, given while the policy stood still, went either way (the policy learnt to stand still at
    # hairpins and corners). Cases: the path 150 degrees off behind the robot; 2.5 cm before a 150-degree corner.
    import yaml

    from mbmf_ros.graphs import config_dir
    from mbmf_ros.sim.closed_loop import follow_in_process
    cfg = yaml.safe_load((config_dir() / 'mbmf.yaml').read_text())['hexapod_follow']
    spec = get_agent('hexapod')
    model, _ = load_checkpoint(config_dir() / 'models' / 'hexapod.pt', agent='hexapod')
    ob = Observation('path', spec.state_names, (0.0, 0.1))

    class Still:
        observation = ob

        def act(self, obs):
            return np.zeros(2)
    c, s = math.cos(math.radians(150.0)), math.sin(math.radians(150.0))
    for side in (1.0, -1.0):
        for path in ([[0.0, 0.0], [0.3 * c, side * 0.3 * s]],
                     [[-0.325, 0.0], [0.025, 0.0], [0.025 + 0.3 * c, side * 0.3 * s]]):
            r = follow_in_process('hexapod', model, np.array(path), planner=cfg['expert_planner'],
                                  num_samples=cfg['expert_num_samples'], horizon=cfg['expert_horizon'],
                                  reverse_weight=cfg['expert_reverse_weight'],
                                  heading_weight=cfg['expert_heading_weight'],
                                  heading_free_rad=math.radians(cfg['expert_heading_free_deg']),
                                  heading_lookahead_m=cfg['expert_heading_lookahead_m'],
                                  alpha=cfg['expert_alpha'], seed=1,
                                  policy=Still(), record=True, max_steps=10)
            turn = side * (r.labels[:, 1] - r.labels[:, 0])      # right motor faster than left: a left turn
            assert (turn > 0.3).mean() >= 0.8, (path, r.labels)
