"""The ant in the paper's experiments: why its MPC fell (a jump ends an episode, and a model trained on random data
sees the fall only once the ant is in the air), the planning height band and fall penalty that fix it, and the
random data shared between the ant's forward and follow units. Each test failed on the code before its fix."""
import json

import numpy as np
import pytest
import torch

from mbmf_ros.core.agents import get_agent
from mbmf_ros.core.planners import make_planner
from mbmf_ros.core.rollout import score
from mbmf_ros.core.tasks import MovingForwardTask, make_task

torch.set_num_threads(1)
ANT = get_agent('ant')
Z = ANT.index('z')
STAND = 0.55                 # m, torso height of a walking ant: inside every band


def _state(z=STAND):
    s = torch.zeros(ANT.state_dim)
    s[Z] = z
    s[ANT.index('cos_roll')] = s[ANT.index('cos_pitch')] = 1.0
    return s


class Leap:
    """An ant-like model: a0 > 0 leaps (x + 0.04 m per step, torso up to 0.9 m: still inside the termination
    bounds [0.2, 1.0], as a take-off looks to a model before the ant is in the air); a0 <= 0 walks (x + 0.01 m,
    torso at 0.55 m)."""
    num_members = 1

    def predict(self, states, actions):
        if states.dim() == 2:
            states = states.unsqueeze(0)
        a = actions if actions.dim() == 3 else actions.unsqueeze(0)
        nxt = states.clone()
        leap = a[..., 0] > 0
        nxt[..., 0] = states[..., 0] + torch.where(leap, 0.04, 0.01)
        nxt[..., Z] = torch.where(leap, 0.9, STAND)
        return nxt


def test_ant_planner_does_not_choose_a_leap_the_paper_reward_prefers():
    task = MovingForwardTask.for_agent(ANT, planning=True)
    assert task.height_band is not None and task.height_band[0] == Z
    low, high = task.height_band[2:4]
    assert low <= STAND <= high < 0.9            # the band of config/ant.yaml excludes the leap's height
    planner = make_planner('random_shooting', ANT.action_dim, 5, 64, seed=0)
    result = planner.plan(Leap(), task, _state())
    assert result.action[0] <= 0, 'the planner chose the leap'
    # The same sequences scored by the fast path's rule (core.rollout.score): the walk beats the leap.
    seqs = torch.cat([-torch.ones(1, 5, ANT.action_dim), torch.ones(1, 5, ANT.action_dim)])   # walk, leap
    traj = _state().expand(1, 2, 1, -1).repeat(1, 1, 6, 1)
    for t in range(5):
        traj[0, :, t + 1] = Leap().predict(traj[0, :, t], seqs[:, t])[0]
    r = score(task, traj, seqs, torch.ones(1, 2, dtype=torch.bool))[0]
    assert r[0] > r[1], f'walk {float(r[0]):.3f} vs leap {float(r[1]):.3f}'


def test_the_band_and_the_fall_penalty_stay_out_of_the_return():
    """An episode's return is the appendix reward of the true transitions: the planning-only terms never enter
    ``reward`` (a high torso inside the termination bounds earns the full reward)."""
    task = MovingForwardTask.for_agent(ANT, planning=True)
    assert MovingForwardTask.for_agent(ANT).height_band is None          # the scorer of an episode's return
    s, nxt = _state()[None], _state(0.9)[None, None].clone()
    nxt[..., 0] = 1.0 * ANT.dt
    r = float(task.reward(s, torch.zeros(1, ANT.action_dim), nxt))
    assert r == pytest.approx(1.0 + 0.5)
    high = ANT.plan_height_max
    assert float(task.planning_penalty(nxt)) == pytest.approx(ANT.plan_height_penalty * (0.9 - high))
    nxt[..., ANT.index('vz')] = 2.0                   # taking off at 2 m/s: its apex is 0.9 + 4 / 19.62 m
    assert float(task.planning_penalty(nxt)) == pytest.approx(ANT.plan_height_penalty * (0.9 + 4 / 19.62 - high))
    follow = make_task('trajectory_following', ANT, None)
    assert follow.height_band == task.height_band                 # both tasks plan with the ant's band
    # agents without a band: the swimmer has no height, the hopper's bands are off
    assert MovingForwardTask.for_agent(get_agent('swimmer'), planning=True).height_band is None
    hopper = MovingForwardTask.for_agent(get_agent('hopper'), planning=True)
    assert hopper.planning_penalty(torch.zeros(1, get_agent('hopper').state_dim)) is None


def test_a_predicted_fall_costs_the_fall_penalty_once():
    """Sticky termination alone lets a fall at step t lose only the steps after it (H = 5: a few tenths of
    reward); the penalty makes it cost what the episode loses."""
    task = MovingForwardTask(0, alive_bonus=1.0, termination=[(1, 0.5, 10.0)], dt=0.1, termination_penalty=50.0)
    states = torch.tensor([[[0.0, 1.0], [0.1, 1.0], [0.2, 0.1], [0.3, 1.0]],      # falls on step 2, back up
                           [[0.0, 1.0], [0.1, 1.0], [0.2, 1.0], [0.3, 1.0]]])[None]
    r = score(task, states, torch.zeros(2, 3, 1), torch.ones(1, 2, dtype=torch.bool))[0]
    np.testing.assert_allclose(r.numpy(), [2.0 - 50.0, 6.0], atol=1e-5)
    assert ANT.termination_penalty > 0


def test_forward_and_follow_units_share_the_ants_random_data(tmp_path):
    from mbmf_ros.commands.mbrl import RAND_SEED, _write_episode
    from mbmf_ros.commands.paper import DEFAULT_UNITS, share_random_data
    from mbmf_ros.io.bags import load_trajectories
    from mbmf_ros.sim.experiments import collect_random
    assert 'follow_ant' in DEFAULT_UNITS
    fwd, fol = tmp_path / 'forward_ant', tmp_path / 'follow_ant'
    (fwd / 'rand').mkdir(parents=True)
    settings = {'random_rollouts': 2, 'random_steps': 6}
    (fwd / 'settings.json').write_text(json.dumps({'agent': 'ant', 'task': 'forward', 'terrain': None,
                                                   'settings': settings}))
    for i in range(2):
        _write_episode(fwd / 'rand', i, next(collect_random('ant', 1, 6, RAND_SEED + i, task='forward')), 'random')
    assert share_random_data(fwd, fol, 'ant', {'random_rollouts': 3, 'random_steps': 6}) == 2
    linked, _ = load_trajectories([fol / 'rand' / 'episode_0001'], agent='ant')
    # what mbrl would have collected for the follow task itself
    own = next(collect_random('ant', 1, 6, RAND_SEED + 1, task='follow'))
    np.testing.assert_array_equal(linked[0].states, own.states)
    assert share_random_data(fwd, fol, 'ant', {'random_rollouts': 3, 'random_steps': 6}) == 0   # already there
    assert not (fol / 'iter_0').exists()                      # other training settings (3 rollouts): no model
    (fwd / 'iter_0').mkdir()
    (fwd / 'iter_0' / 'model.pt').write_bytes(b'model')
    (fwd / 'iter_0' / 'metrics.json').write_text('{}')
    share_random_data(fwd, tmp_path / 'same', 'ant', settings)
    assert (tmp_path / 'same' / 'iter_0' / 'model.pt').read_bytes() == b'model'
    assert share_random_data(fwd, tmp_path / 'x', 'ant', {'random_rollouts': 2, 'random_steps': 7}) == 0
    (fwd / 'settings.json').write_text(json.dumps({'agent': 'swimmer', 'terrain': None, 'settings': settings}))
    assert share_random_data(fwd, tmp_path / 'y', 'swimmer', settings) == 0    # heading noise: not the same
