"""The simulated robot over real DDS: mujoco_bridge -> state_estimator -> random_actor in lock-step.

Lock-step over DDS must reproduce the in-process simulation exactly (same seeds, same states, bit for bit),
episodes must have T+1 states and T actions with matching stamps, and bad actions must stop the robot.
"""
import sys

import numpy as np
import pytest

from mbmf_ros import topics as T

STEPS = 25


def _states_by_episode(states):
    out = {}
    for m in states:
        out.setdefault(m.episode, []).append(m)
    return out


def test_lockstep_graph_reproduces_in_process_simulation(ros, procs):
    from mbmf_ros.msg import ActionCommand, AgentState
    from mbmf_ros.sim.simulation import Simulation
    from mbmf_ros.nodes.common import HISTORY
    states = ros.collect(AgentState, T.STATE, HISTORY)   # with the estimator's history
    actions = ros.collect(ActionCommand, T.ACTION)
    procs.node('state_estimator', params={'agent': 'hexapod'})
    procs.node('random_actor', params={'agent': 'hexapod', 'seed': 5})
    # this test listens too: see the actor and estimator before the bridge starts the (fast) exchange
    ros.wait_for_publishers(T.ACTION, 1, 30)
    ros.wait_for_publishers(T.STATE, 1, 30)
    procs.node('mujoco_bridge', params={'agent': 'hexapod', 'seed': 3, 'max_episode_steps': STEPS,
                                        'max_episodes': 2, 'min_state_subscribers': 2})
    ros.spin_until(lambda: sum(m.terminal for m in states) >= 2, 60, 'two terminal states')
    ros.spin_for(0.3)   # nothing more may come: the bridge stops after max_episodes
    episodes = _states_by_episode(states)
    assert sorted(episodes) == [0, 1]
    sim = Simulation('hexapod', max_episode_steps=STEPS, seed=3)
    rng = np.random.default_rng(5)
    by_stamp = {(a.header.stamp.sec, a.header.stamp.nanosec): a for a in actions}
    assert len(actions) == 2 * STEPS
    for ep in (0, 1):
        got = episodes[ep]
        assert [m.step for m in got] == list(range(STEPS + 1))
        assert [m.terminal for m in got] == [False] * STEPS + [True]
        assert all(m.valid and not m.flags for m in got[:-1]), [m.flags for m in got if m.flags]
        result = sim.reset()
        for k, m in enumerate(got):
            np.testing.assert_array_equal(np.array(m.values), result.estimate.values,
                                          err_msg=f'episode {ep} step {k}')
            if k < STEPS:
                a = by_stamp[(m.header.stamp.sec, m.header.stamp.nanosec)]
                assert a.step == k
                expected = rng.uniform(-1, 1, 2)
                np.testing.assert_allclose(a.values, expected, rtol=1e-6)   # float32 on the wire
                result = sim.step(np.array(a.values, dtype=np.float64))
    stamps = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in states]
    assert np.all(np.diff(stamps) > 0)
    assert tuple(states[0].names) == sim.spec.state_names


def test_bad_actions_are_rejected_counted_and_stop_the_robot(ros, procs):
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.msg import ActionCommand, AgentState
    spec = get_agent('hexapod')
    from mbmf_ros.nodes.common import HISTORY
    states = ros.collect(AgentState, T.STATE, HISTORY)   # with the estimator's history
    pub = ros.node.create_publisher(ActionCommand, T.ACTION, __import__('mbmf_ros.nodes.common',
                                                                         fromlist=['CONTROL']).CONTROL)
    procs.node('mujoco_bridge', params={'agent': 'hexapod', 'seed': 0, 'lockstep_resend_s': 0.0})
    procs.node('state_estimator', params={'agent': 'hexapod'})

    def answer(values):
        n = len(states)
        last = states[-1]
        msg = ActionCommand(values=[float(v) for v in values], step=last.step, source='test')
        msg.header.stamp = last.header.stamp
        pub.publish(msg)
        ros.spin_until(lambda: len(states) > n, 20, f'the state after action {values}')

    ros.spin_until(lambda: states, 30, 'the first state')
    for _ in range(6):
        answer([1.0, 1.0])
    speed = spec.index('left_crank_speed')
    assert states[-1].values[speed] > 5.0
    answer([1.0])                       # wrong length
    answer([float('nan'), 1.0])         # NaN
    for _ in range(4):
        answer([1.0, 1.0, 1.0])
    assert abs(states[-1].values[speed]) < 1.0, 'rejected actions must stop the motors'
    assert all(np.all(np.isfinite(m.values)) for m in states)
    procs.stop('mujoco_bridge')
    log = procs.output('mujoco_bridge')
    assert 'rejected action' in log and '6 rejected actions' in log, log[-2000:]


def test_realtime_mode_runs_without_actions_and_reset_service(ros, procs):
    from mbmf_ros.msg import AgentState
    from mbmf_ros.srv import ResetSim
    from mbmf_ros.nodes.common import HISTORY
    states = ros.collect(AgentState, T.STATE, HISTORY)   # with the estimator's history
    procs.node('mujoco_bridge', params={'agent': 'half_cheetah', 'mode': 'realtime'})
    procs.node('state_estimator', params={'agent': 'half_cheetah'})
    ros.spin_until(lambda: len(states) >= 20, 30, '20 states from the free-running bridge')
    client = ros.node.create_client(ResetSim, T.RESET)
    ros.wait_for_service(client, 20)
    reply = ros.call(client, ResetSim.Request(seed=4))
    assert reply.success and reply.episode == 1
    ros.spin_until(lambda: any(m.episode == 1 for m in states), 10, 'a state of the new episode')
    first = next(m for m in states if m.episode == 1)
    assert first.step == 0 and len(first.values) == 21


def test_unknown_agent_is_an_error_listing_the_known_ones(procs, ros_env):
    proc = procs.node('mujoco_bridge', params={'agent': 'quadcopter'})
    assert proc.wait(30) != 0
    out = procs.output('mujoco_bridge')
    assert 'quadcopter' in out and 'hexapod' in out and 'half_cheetah' in out


def _collect(out, env, seed=1):
    import subprocess
    return subprocess.run([sys.executable, '-m', 'mbmf_ros.cli', 'collect', '--agent', 'hexapod', '--rollouts',
                           '3', '--steps', '200', '--seed', str(seed), '--out', str(out)],
                          env=env, capture_output=True, text=True, timeout=240)


def test_collect_twice_gives_identical_bags_with_the_requested_steps(tmp_path, ros_env):
    from mbmf_ros.io.bags import find_bags, load_trajectories
    runs = []
    for name in ('a', 'b'):
        res = _collect(tmp_path / name, ros_env)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        bags = find_bags([tmp_path / name])
        assert [b.name for b in bags] == ['episode_0000', 'episode_0001', 'episode_0002']
        per_bag = []
        for bag in bags:
            trajs, report = load_trajectories([bag])
            assert len(trajs) == 1, report.summary()
            t = trajs[0]
            assert t.num_transitions == 200 and len(t.states) == 201, report.summary()
            assert np.all(np.isfinite(t.states)) and np.all(np.abs(t.actions) <= 1)
            per_bag.append(t)
        runs.append(per_bag)
    for ta, tb in zip(*runs):
        np.testing.assert_array_equal(ta.states, tb.states)
        np.testing.assert_array_equal(ta.actions, tb.actions)
        np.testing.assert_array_equal(ta.stamps, tb.stamps)
    assert not np.array_equal(runs[0][0].states, runs[0][1].states)   # rollouts differ from each other
    # an existing output is never overwritten
    res = _collect(tmp_path / 'a', ros_env)
    assert res.returncode == 2 and 'already holds' in res.stderr


def test_collect_rejects_an_unknown_agent(tmp_path, ros_env):
    import subprocess
    res = subprocess.run([sys.executable, '-m', 'mbmf_ros.cli', 'collect', '--agent', 'quadcopter', '--out',
                          str(tmp_path)], env=ros_env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and 'hexapod' in res.stderr and 'quadcopter' in res.stderr


def test_realtime_watchdog_stops_the_robot_when_actions_stop(ros, procs):
    """Real-time mode holds the latest action; when actions stop for action_timeout_s the cranks stop."""
    import time

    from sensor_msgs.msg import JointState

    from mbmf_ros.msg import ActionCommand
    from mbmf_ros.nodes.common import CONTROL, SENSOR
    joints = ros.collect(JointState, T.JOINT_STATES, SENSOR)
    pub = ros.node.create_publisher(ActionCommand, T.ACTION, CONTROL)
    procs.node('mujoco_bridge', params={'agent': 'hexapod', 'mode': 'realtime', 'action_timeout_s': 0.3})
    ros.wait_for_subscribers(pub, 1, 30)
    ros.spin_until(lambda: joints, 30, 'joint states from the free-running bridge')

    def crank_speed():
        return float(np.mean(np.abs(joints[-1].velocity)))

    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:   # commands at about 20 Hz, like a planner
        pub.publish(ActionCommand(values=[1.0, 1.0], source='test'))
        ros.spin_for(0.05)
    driven = crank_speed()
    assert driven > 5.0, f'cranks at {driven:.2f} rad/s under full command'
    ros.spin_until(lambda: 'watchdog: last action' in procs.output('mujoco_bridge'), 10, 'the watchdog')
    ros.spin_for(1.0)
    stopped = crank_speed()
    assert stopped < 0.1 * driven, f'cranks still at {stopped:.2f} rad/s ({driven:.2f} driven)'
    pub.publish(ActionCommand(values=[1.0, 1.0], source='test'))
    ros.spin_until(lambda: 'actions are back' in procs.output('mujoco_bridge'), 10, 'the watchdog releasing')
