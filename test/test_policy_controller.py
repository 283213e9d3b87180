"""policy_controller over real DDS: the drop-in for mpc_planner answers every state, acts only with a policy, a
reference and a fresh state of the agent's layout, publishes its time per action, and refuses another agent's
policy with both names."""
import time

import numpy as np
import pytest

from mbmf_ros import topics as T

pytest.importorskip('rclpy')
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def policies(tmp_path):
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.policy import GaussianPolicy, Observation
    from mbmf_ros.io.checkpoint import save_policy
    out = {}
    for agent, kind in (('hexapod', 'path'), ('swimmer', 'state')):
        spec = get_agent(agent)
        ob = Observation(kind, spec.state_names, (0.0, 0.1) if kind == 'path' else ())
        torch.manual_seed(0)
        out[agent] = str(save_policy(tmp_path / f'{agent}.pt', GaussianPolicy(ob, spec.action_names, agent=agent)))
    return out


def _state(spec, stamp, step, names=None):
    from mbmf_ros.msg import AgentState
    m = AgentState()
    m.agent, m.names = spec.name, list(names or spec.state_names)
    values = np.zeros(len(m.names))
    values[spec.state_names.index('cos_roll')] = values[spec.state_names.index('cos_pitch')] = 1.0
    m.values = [float(v) for v in values]
    m.episode, m.step, m.valid = 0, step, True
    m.header.frame_id, m.header.stamp = 'odom', stamp
    return m


def test_policy_controller_answers_every_state_and_says_why(ros, procs, policies):
    from nav_msgs.msg import Path

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.msg import ActionCommand, AgentState, MpcStatus
    from mbmf_ros.nodes.common import CONTROL, LATCHED
    from mbmf_ros.nodes.waypoint_manager import path_to_msg
    spec = get_agent('hexapod')
    actions = ros.collect(ActionCommand, T.ACTION)
    status = ros.collect(MpcStatus, T.MPC_STATUS)
    pub_state = ros.node.create_publisher(AgentState, T.STATE, CONTROL)
    pub_ref = ros.node.create_publisher(Path, T.REFERENCE, LATCHED)
    procs.node('policy_controller', params={'agent': 'hexapod', 'policy_path': policies['hexapod'],
                                            'stop_on_invalid': True,       # as on a robot (sim:=false)
                                            # 1 s: a fresh state delivered late on a busy machine is not stale
                                            'stale_after_periods': 20.0})
    ros.wait_for_subscribers(pub_state, 1, 30)
    ros.wait_for_publishers(T.MPC_STATUS, 1, 30)
    now = lambda: ros.node.get_clock().now().to_msg()  # noqa: E731

    def send(msg, n):
        pub_state.publish(msg)
        ros.spin_until(lambda: len(status) >= n, 30, f'status {n}')

    send(_state(spec, now(), 0), 1)                                   # before any reference
    ros.wait_for_subscribers(pub_ref, 1, 10)
    pub_ref.publish(path_to_msg(np.array([[0.0, 0.0], [1.0, 0.0]]), 'odom', now()))
    ros.spin_until(lambda: 'new reference' in procs.output('policy_controller'), 30, 'the reference')
    send(_state(spec, now(), 1), 2)                                   # acts
    old = now()
    old.sec -= 10
    send(_state(spec, old, 2), 3)                                     # stale
    send(_state(spec, now(), 3, names=list(spec.state_names[:-1]) + ['oops']), 4)   # another layout
    invalid = _state(spec, now(), 4)
    invalid.valid, invalid.flags = False, ['pose stale 0.30 s']                      # the mocap pose is late
    send(invalid, 5)
    ros.spin_until(lambda: len(actions) >= 5, 30, 'five actions')
    reasons = [s.reason for s in status]
    assert reasons[0] == 'no reference' and reasons[1] == 'ok'
    assert reasons[2].startswith('stale state') and 'is not the hexapod layout' in reasons[3]
    assert reasons[4] == 'invalid state: pose stale 0.30 s'
    assert [a.step for a in actions] == [0, 1, 2, 3, 4]
    assert [a.source for a in actions] == ['zero', 'policy', 'zero', 'zero', 'zero']
    assert all(v == 0.0 for a in actions if a.source == 'zero' for v in a.values)
    assert status[1].planner == 'policy' and 0 < status[1].solve_time_s < 0.5
    assert any(v != 0.0 for v in actions[1].values)


def test_policy_controller_without_a_policy_sends_zeros(ros, procs):
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.msg import AgentState, MpcStatus
    from mbmf_ros.nodes.common import CONTROL
    spec = get_agent('hexapod')
    status = ros.collect(MpcStatus, T.MPC_STATUS)
    pub_state = ros.node.create_publisher(AgentState, T.STATE, CONTROL)
    procs.node('policy_controller', params={'agent': 'hexapod'})
    ros.wait_for_subscribers(pub_state, 1, 30)
    ros.wait_for_publishers(T.MPC_STATUS, 1, 30)
    deadline = time.monotonic() + 30
    while not status and time.monotonic() < deadline:
        pub_state.publish(_state(spec, ros.node.get_clock().now().to_msg(), 0))
        ros.spin_for(0.2)
    assert status and status[0].reason == 'no policy' and not status[0].active


def test_policy_for_another_agent_is_refused_with_both_names(procs, policies):
    p = procs.node('policy_controller', name='wrong_agent', params={'agent': 'hexapod',
                                                                     'policy_path': policies['swimmer']})
    assert p.wait(90) != 0
    out = procs.output('wrong_agent')
    assert "made for agent 'swimmer' (expected 'hexapod')" in out
    p = procs.node('policy_controller', name='missing', params={'policy_path': '/nonexistent/p.pt'})
    assert p.wait(90) != 0
    assert 'does not exist' in procs.output('missing') and 'distill-follower' in procs.output('missing')


def test_follow_graph_runs_the_policy_controller_with_controller_policy():
    from mbmf_ros.graphs import config_dir, get_graph, resolve_arguments
    graph = get_graph('follow')
    nodes = graph.nodes(resolve_arguments(graph, {'controller': 'policy', 'mode': 'lockstep'}))
    (actor,) = [n for n in nodes if n.executable == 'policy_controller']
    params = [p for p in actor.parameters if isinstance(p, dict)][0]   # after the parameter files: the graph's
    assert params['policy_path'] == str(config_dir() / 'models' / 'hexapod_follow_policy.pt')
    assert params['wait_for_reference'] is True and params['use_sim_time'] is True
    assert not any(n.executable == 'mpc_planner' for n in nodes)
    nodes = graph.nodes(resolve_arguments(graph, {'controller': 'policy', 'policy': '/x/p.pt'}))
    (actor,) = [n for n in nodes if n.executable == 'policy_controller']
    assert [p for p in actor.parameters if isinstance(p, dict)][0]['policy_path'] == '/x/p.pt'
    with pytest.raises(ValueError, match='controller must be mpc, policy, zero or random'):
        graph.nodes(resolve_arguments(graph, {'controller': 'ppo'}))
