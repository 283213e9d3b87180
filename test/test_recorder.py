"""The recorder over DDS: 10 s at 100 Hz, stopped with SIGINT, every message in the bag (count and content)."""
import signal
import time

import numpy as np
import pytest
import torch
from rclpy.duration import Duration

from mbmf_ros.io.bags import find_bags, load_trajectories
from mbmf_ros.nodes.common import CONTROL, SENSOR, sec_to_stamp

torch.set_num_threads(1)


def _state(AgentState, k, ep, step, terminal):
    m = AgentState()
    m.header.stamp = sec_to_stamp(1000.0 + 0.01 * k)
    m.header.frame_id = 'odom'
    m.agent = 'toy'
    m.names = ['x', 'y', 'yaw', 'v']
    m.values = [0.01 * k, -0.5 * k, 0.0, float(np.sin(k))]
    m.episode, m.step, m.terminal, m.valid = ep, step, terminal, True
    return m


def _publish_at(ros, rate_hz, n, publish):
    """Call publish(k) for k in 0..n-1 on a 100 Hz schedule (deadline-driven, spinning in between)."""
    t0 = time.monotonic()
    for k in range(n):
        ros.spin_until(lambda: time.monotonic() >= t0 + k / rate_hz, 5.0, 'the next publish time')
        publish(k)
    return time.monotonic() - t0


def test_records_10s_at_100hz_and_sigint_finishes_bag(ros, procs, tmp_path):
    from mbmf_ros.msg import ActionCommand, AgentState
    from nav_msgs.msg import Odometry
    out = tmp_path / 'bags'
    procs.node('recorder', params={'output_dir': str(out), 'topics': ['/mbmf/state', '/mbmf/action', '/odom']})
    ps = ros.node.create_publisher(AgentState, '/mbmf/state', CONTROL)
    pa = ros.node.create_publisher(ActionCommand, '/mbmf/action', CONTROL)
    po = ros.node.create_publisher(Odometry, '/odom', SENSOR)
    for p in (ps, pa, po):
        ros.wait_for_subscribers(p, 1, timeout=20)
    N, T = 1000, 99  # 10 s at 100 Hz; episodes of 100 states: steps 0..99, the last terminal
    sent_actions = {}

    def publish(k):
        ep, step = divmod(k, T + 1)
        s = _state(AgentState, k, ep, step, step == T)
        ps.publish(s)
        o = Odometry()
        o.header.stamp = s.header.stamp
        o.pose.pose.position.x = float(k)
        po.publish(o)
        if step < T:
            a = ActionCommand()
            a.header.stamp = s.header.stamp
            a.values = [float(np.cos(k)) * 0.9, -0.5]
            a.step, a.source = step, 'random'
            pa.publish(a)
            sent_actions[k] = np.array(a.values, dtype=np.float32)

    elapsed = _publish_at(ros, 100.0, N, publish)
    assert elapsed < 12.0
    for p in (ps, pa, po):
        assert p.wait_for_all_acked(Duration(seconds=10))
    assert procs.stop('recorder', signal.SIGINT, timeout=20) == 0, procs.output('recorder')

    bags = find_bags([out])
    assert len(bags) == 1 and (bags[0] / 'metadata.yaml').is_file()  # closed properly: index + metadata
    from rosbags.highlevel import AnyReader
    with AnyReader(bags) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        odom_x = [reader.deserialize(raw, c.msgtype).pose.pose.position.x
                  for c, _, raw in reader.messages([c for c in reader.connections if c.topic == '/odom'])]
    assert counts == {'/mbmf/state': N, '/mbmf/action': N - N // (T + 1), '/odom': N}, counts
    assert sorted(odom_x) == [float(k) for k in range(N)]

    trajs, rep = load_trajectories(bags)
    assert rep.states == N and rep.transitions == N - N // (T + 1) and len(trajs) == N // (T + 1)
    assert not rep.incomplete_bags
    for t in trajs:
        ks = np.rint((t.stamps - 1000.0) / 0.01).astype(int)
        np.testing.assert_array_equal(t.states, [_state(AgentState, k, 0, 0, False).values for k in ks])
        np.testing.assert_array_equal(t.actions, [sent_actions[k] for k in ks[:-1]])


def test_split_by_episode_and_stop_after(ros, procs, tmp_path):
    from mbmf_ros.msg import ActionCommand, AgentState
    out = tmp_path / 'eps'
    rec = procs.node('recorder', params={'output_dir': str(out), 'split_by_episode': True,
                                         'stop_after_episodes': 3})
    ps = ros.node.create_publisher(AgentState, '/mbmf/state', CONTROL)
    pa = ros.node.create_publisher(ActionCommand, '/mbmf/action', CONTROL)
    ros.wait_for_subscribers(ps, 1, timeout=20)
    ros.wait_for_subscribers(pa, 1, timeout=20)
    T = 20

    def publish(k):
        ep, step = divmod(k, T + 1)
        s = _state(AgentState, k, ep, step, step == T)
        ps.publish(s)
        if step < T:
            a = ActionCommand()
            a.header.stamp = s.header.stamp
            a.values = [0.1]
            a.step = step
            pa.publish(a)

    _publish_at(ros, 200.0, 3 * (T + 1), publish)
    ros.spin_until(lambda: rec.poll() is not None, 20, 'the recorder to exit after 3 episodes')
    assert rec.returncode == 0, procs.output('recorder')
    assert sorted(p.name for p in out.iterdir()) == ['episode_0000', 'episode_0001', 'episode_0002']
    trajs, rep = load_trajectories(out)
    assert [t.episode for t in trajs] == [0, 1, 2] and all(t.num_transitions == T for t in trajs)
    # each bag holds exactly its own episode
    for ep in range(3):
        tr, _ = load_trajectories(out / f'episode_{ep:04d}')
        assert len(tr) == 1 and tr[0].episode == ep


def test_bad_parameter_is_a_clear_error(procs, tmp_path):
    p = procs.node('recorder', params={'output_dir': str(tmp_path), 'stop_after_episodes': -1})
    assert p.wait(30) != 0
    assert 'stop_after_episodes' in procs.output('recorder')
