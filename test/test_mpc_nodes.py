"""waypoint_manager and mpc_planner over real DDS: path checks, tracking, lock-step answers, model hot swap,
stale states, refused models, and the closed loop with the simulated hexapod."""
import math
import time

import numpy as np
import pytest

from mbmf_ros import topics as T

pytest.importorskip('rclpy')
import torch  # noqa: E402

torch.set_num_threads(1)


def _path(points, frame='odom'):
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Path
    msg = Path()
    msg.header.frame_id = frame
    for x, y in points:
        p = PoseStamped()
        p.pose.position.x, p.pose.position.y = float(x), float(y)
        msg.poses.append(p)
    return msg


def _state(spec, x=0.0, y=0.0, yaw=0.0, stamp=None, episode=0, step=0, terminal=False):
    from mbmf_ros.msg import AgentState
    m = AgentState()
    m.agent, m.names = spec.name, list(spec.state_names)
    values = np.zeros(spec.state_dim)
    values[:3] = x, y, yaw
    for name, v in (('z', 0.02), ('cos_roll', 1.0), ('cos_pitch', 1.0)):
        if name in spec.state_names:
            values[spec.state_names.index(name)] = v
    m.values = [float(v) for v in values]
    m.episode, m.step, m.terminal, m.valid = episode, step, terminal, True
    m.header.frame_id = 'odom'
    if stamp is not None:
        m.header.stamp = stamp
    return m


def test_waypoint_manager_checks_tracks_and_rejects(ros, procs):
    from nav_msgs.msg import Path

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.msg import AgentState, TrackingStatus
    from mbmf_ros.nodes.common import CONTROL, LATCHED
    spec = get_agent('hexapod')
    refs = ros.collect(Path, T.REFERENCE, LATCHED)
    status = ros.collect(TrackingStatus, T.TRACKING)
    pub_wp = ros.node.create_publisher(Path, T.WAYPOINTS, CONTROL)
    pub_state = ros.node.create_publisher(AgentState, T.STATE, CONTROL)
    procs.node('waypoint_manager', params={'goal_tolerance_m': 0.0})
    ros.wait_for_subscribers(pub_wp, 1, 30)
    ros.wait_for_subscribers(pub_state, 1, 30)

    pub_wp.publish(_path([[0, 0], [1, 0], [1, 1]], 'map'))
    ros.spin_until(lambda: refs and len(refs[-1].poses) == 3, 10, 'the accepted reference')
    assert refs[-1].header.frame_id == 'odom'
    # Each pose faces along its segment: the last two face +y.
    assert refs[-1].poses[1].pose.orientation.z == pytest.approx(math.sin(math.pi / 4))
    n = len(status)
    for i, (x, y) in enumerate([(0.5, 0.1), (1.0, 0.5), (1.05, 1.2)]):
        pub_state.publish(_state(spec, x, y, step=i))
    ros.spin_until(lambda: len([s for s in status[n:] if s.header.stamp.sec == 0]) >= 3, 10, 'three statuses')
    got = [s for s in status[n:]][-3:]
    assert [s.valid for s in got] == [True] * 3
    assert got[0].segment == 0 and got[0].progress_m == pytest.approx(0.5) \
        and got[0].cross_track_error == pytest.approx(0.1)
    assert got[1].segment == 1 and got[1].progress == pytest.approx(0.75) and not got[1].done
    assert got[2].done and got[2].progress == pytest.approx(1.0) and got[2].path_length_m == pytest.approx(2.0)

    for bad, needle in (([[0, 0]], 'at least 2 waypoints, found 1'),
                        ([[0, 0], [float('nan'), 1]], 'waypoint 1 is not finite'),
                        ([[0, 0], [1, 0]], "unknown frame_id 'base_link'")):
        n_ref, n_st = len(refs), len(status)
        pub_wp.publish(_path(bad, 'base_link' if 'frame' in needle else 'odom'))
        ros.spin_until(lambda: len(refs) > n_ref and len(status) > n_st, 10, f'the rejection of {bad}')
        assert refs[-1].poses == [] and refs[-1].header.frame_id == 'odom'     # the planner stops
        assert not status[-1].valid and needle in status[-1].message, status[-1].message
        # ... and the states that follow keep saying so.
        n_st = len(status)
        pub_state.publish(_state(spec, 0.2, 0.0))
        ros.spin_until(lambda: len(status) > n_st, 10, 'a status after a state')
        assert not status[-1].valid and needle in status[-1].message
    assert 'at least 2 waypoints' in procs.output('waypoint_manager')

    # A late subscriber still gets the (latched) reference; a new good path is accepted at any time.
    pub_wp.publish(_path([[0, 0], [2, 0]]))
    ros.spin_until(lambda: refs and len(refs[-1].poses) == 2, 10, 'the new reference')
    late = ros.wait_for_message(Path, T.REFERENCE, 10, LATCHED)
    assert [p.pose.position.x for p in late.poses] == [0.0, 2.0]


def test_waypoint_manager_relative_to_start(ros, procs):
    from nav_msgs.msg import Path

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.msg import AgentState
    from mbmf_ros.nodes.common import CONTROL, LATCHED
    spec = get_agent('hexapod')
    refs = ros.collect(Path, T.REFERENCE, LATCHED)
    pub_wp = ros.node.create_publisher(Path, T.WAYPOINTS, CONTROL)
    pub_state = ros.node.create_publisher(AgentState, T.STATE, CONTROL)
    procs.node('waypoint_manager', params={'relative_to_start': True})
    ros.wait_for_subscribers(pub_wp, 1, 30)
    ros.wait_for_subscribers(pub_state, 1, 30)
    pub_wp.publish(_path([[0, 0], [1, 0]]))          # no pose yet: held until the first state
    ros.spin_for(0.3)
    assert not any(r.poses for r in refs)
    pub_state.publish(_state(spec, 1.0, 2.0, math.pi / 2))
    ros.spin_until(lambda: refs and refs[-1].poses, 10, 'the anchored reference')
    pts = [(p.pose.position.x, p.pose.position.y) for p in refs[-1].poses]
    np.testing.assert_allclose(pts, [(1.0, 2.0), (1.0, 3.0)], atol=1e-9)


@pytest.fixture
def checkpoints(tmp_path):
    """Random-weight hexapod checkpoints v1, v2 and a swimmer one (a model for another agent)."""
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.dynamics import DynamicsModel
    from mbmf_ros.io.checkpoint import save_checkpoint
    out = {}
    for key, agent, seed in (('v1', 'hexapod', 1), ('v2', 'hexapod', 2), ('swimmer', 'swimmer', 3)):
        torch.manual_seed(seed)
        spec = get_agent(agent)
        model = DynamicsModel(spec.state_names, spec.action_names, (64, 64), agent=agent)
        out[key] = str(save_checkpoint(tmp_path / f'{key}.pt', model, {'test': key}))
    return out


def _model_info(path, version, agent='hexapod'):
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.msg import ModelInfo
    spec = get_agent('hexapod')
    m = ModelInfo()
    m.checkpoint_path, m.version, m.agent = path, version, agent
    m.state_names, m.action_names = list(spec.state_names), list(spec.action_names)
    return m


def test_mpc_planner_answers_every_state_and_says_why(ros, procs, checkpoints):
    from nav_msgs.msg import Path

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.msg import ActionCommand, AgentState, ModelInfo, MpcStatus
    from mbmf_ros.nodes.common import CONTROL, LATCHED
    spec = get_agent('hexapod')
    actions = ros.collect(ActionCommand, T.ACTION)
    status = ros.collect(MpcStatus, T.MPC_STATUS)
    predicted = ros.collect(Path, T.PREDICTED_PATH)
    pub_state = ros.node.create_publisher(AgentState, T.STATE, CONTROL)
    pub_ref = ros.node.create_publisher(Path, T.REFERENCE, LATCHED)
    pub_model = ros.node.create_publisher(ModelInfo, T.MODEL, LATCHED)
    procs.node('mpc_planner', params={'agent': 'hexapod', 'planner': 'mppi', 'num_samples': 200,
                                      'horizon': 4, 'seed': 1, 'num_threads': 1,
                                      # 0.5 s: a loaded test machine can delay a message by 0.1 s
                                      'stale_after_periods': 10.0})
    ros.wait_for_subscribers(pub_state, 1, 30)
    ros.wait_for_publishers(T.MPC_STATUS, 1, 30)
    step = [0]

    def exchange(n=1, age=0.0, **kw):
        """Publish n fresh states; wait for n actions and n statuses; return the new statuses."""
        a0, s0 = len(actions), len(status)
        for _ in range(n):
            now = ros.node.get_clock().now().nanoseconds * 1e-9 - age
            from mbmf_ros.nodes.common import sec_to_stamp
            pub_state.publish(_state(spec, stamp=sec_to_stamp(now), step=step[0], **kw))
            step[0] += 1
        ros.spin_until(lambda: len(actions) >= a0 + n and len(status) >= s0 + n, 20, f'{n} answers')
        return status[s0:]

    got = exchange()
    assert not got[0].active and got[0].reason == 'no model'
    assert actions[-1].values.tolist() == [0.0, 0.0] and actions[-1].source == 'zero'

    pub_model.publish(_model_info(checkpoints['v1'], 1))
    deadline = time.monotonic() + 20
    while exchange()[-1].model_version != 1:
        assert time.monotonic() < deadline, 'model v1 never swapped in'
    assert status[-1].reason == 'no reference'

    pub_ref.publish(_path([[0, 0], [1, 0]]))
    deadline = time.monotonic() + 20
    while not exchange()[-1].active:
        assert time.monotonic() < deadline, f'planner never became active: {status[-1].reason}'
    got = exchange(5)
    assert all(s.active and s.reason == 'ok' for s in got)
    assert got[-1].planner == 'mppi' and got[-1].samples == 200 and got[-1].horizon == 4
    assert len(got[-1].predicted_x) == 5 and got[-1].solve_time_s > 0
    assert actions[-1].source == 'mpc' and all(abs(v) <= 1 for v in actions[-1].values)
    ros.spin_until(lambda: predicted and len(predicted[-1].poses) == 5, 10, 'a predicted path')
    assert predicted[-1].header.frame_id == 'odom'

    # Stale: ten control periods (0.5 s) is the limit here.
    got = exchange(age=3.0)
    assert not got[-1].active and got[-1].reason.startswith('stale state 3.'), got[-1].reason
    assert '(limit 0.500 s)' in got[-1].reason
    assert actions[-1].values.tolist() == [0.0, 0.0]

    # A model for another agent is refused (by its ModelInfo, or by the checkpoint itself); v1 is kept.
    # /mbmf/model is latched with depth 1: a second message sent at once may replace the first, so one by one.
    pub_model.publish(_model_info(checkpoints['v2'], 7, agent='ant'))
    ros.spin_until(lambda: procs.output('mpc_planner').count('refused model') >= 1, 20, 'the first refusal')
    pub_model.publish(_model_info(checkpoints['swimmer'], 8))
    ros.spin_until(lambda: procs.output('mpc_planner').count('refused model') >= 2, 20, 'two refusals')
    log = procs.output('mpc_planner')
    assert "agent 'ant'" in log and 'swimmer' in log and 'keeping model v1' in log
    assert all(s.model_version == 1 and s.active for s in exchange(3))

    # Hot swap under a stream of states: every state answered exactly once, stamps copied, no gap.
    pub_model.publish(_model_info(checkpoints['v2'], 2))
    a0, s_first = len(actions), step[0]
    deadline = time.monotonic() + 20
    while status[-1].model_version != 2:
        exchange()
        assert time.monotonic() < deadline, 'model v2 never swapped in'
    got = exchange(3)
    assert all(s.active and s.model_version == 2 for s in got)
    answered = actions[a0:]
    assert [a.step for a in answered] == list(range(s_first, step[0]))
    assert all(a.source == 'mpc' for a in answered)

    # Terminal states get no action; an empty reference stops the robot.
    n = len(actions)
    pub_state.publish(_state(spec, step=999, terminal=True))
    ros.spin_for(0.5)
    assert len(actions) == n
    pub_ref.publish(_path([]))
    deadline = time.monotonic() + 10
    while exchange()[-1].active:
        assert time.monotonic() < deadline
    assert status[-1].reason.startswith('no reference') and actions[-1].values.tolist() == [0.0, 0.0]


def test_mpc_planner_bad_parameters_exit_with_a_reason(procs, checkpoints):
    from mbmf_ros.core.planners import PLANNERS
    p = procs.node('mpc_planner', name='bad_planner', params={'planner': 'ilqr'})
    assert p.wait(30) != 0
    assert "parameter planner: expected one of " + str(list(PLANNERS)) + ", found 'ilqr'" \
        in procs.output('bad_planner')
    p = procs.node('mpc_planner', name='bad_model', params={'model_path': checkpoints['swimmer']})
    assert p.wait(30) != 0
    assert 'was made for agent' in procs.output('bad_model')


def test_closed_loop_with_the_simulated_hexapod(ros, procs, checkpoints):
    """mujoco_bridge + state_estimator + waypoint_manager + mpc_planner in lock-step, on sim time:
    T+1 states, T actions each answering its state's stamp, all planned."""
    from mbmf_ros.msg import ActionCommand, AgentState, MpcStatus, TrackingStatus
    steps = 15
    from mbmf_ros.nodes.common import HISTORY
    states = ros.collect(AgentState, T.STATE, HISTORY)   # with the estimator's history
    actions = ros.collect(ActionCommand, T.ACTION)
    status = ros.collect(MpcStatus, T.MPC_STATUS)
    tracking = ros.collect(TrackingStatus, T.TRACKING)
    from nav_msgs.msg import Path

    from mbmf_ros.nodes.common import CONTROL
    pub_wp = ros.node.create_publisher(Path, T.WAYPOINTS, CONTROL)
    procs.node('waypoint_manager', params={'relative_to_start': True})
    procs.node('mpc_planner', params={'agent': 'hexapod', 'model_path': checkpoints['v1'], 'num_samples': 200,
                                      'horizon': 4, 'num_threads': 1, 'use_sim_time': True,
                                      'wait_for_reference': True})
    procs.node('state_estimator', params={'agent': 'hexapod'})
    ros.wait_for_subscribers(pub_wp, 1, 30)
    pub_wp.publish(_path([[0, 0], [1, 0]]))
    ros.wait_for_publishers(T.ACTION, 1, 30)
    ros.wait_for_publishers(T.STATE, 1, 30)
    ros.wait_for_publishers(T.TRACKING, 1, 30)
    procs.node('mujoco_bridge', params={'agent': 'hexapod', 'seed': 3, 'max_episode_steps': steps,
                                        'max_episodes': 1, 'min_state_subscribers': 3})
    ros.spin_until(lambda: any(m.terminal for m in states), 60, 'the terminal state')
    ros.spin_for(0.3)
    assert len(states) == steps + 1 and len(actions) == steps
    stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in states[:-1]]
    assert [(a.header.stamp.sec, a.header.stamp.nanosec) for a in actions] == stamps
    # The first state comes before the reference is anchored to the robot's pose: with wait_for_reference (as
    # the follow graph sets in lock-step) the planner holds it until the reference arrives, so every step is planned.
    planned = [s for s in status if s.active]
    assert len(planned) == steps and all(s.reason == 'ok' for s in status), [s.reason for s in status]
    assert tracking and tracking[-1].valid and tracking[-1].path_length_m == pytest.approx(1.0)
