"""Bag reading: pairing by stamp, episode boundaries, bad input, cut-short bags, sqlite3 and MCAP (no DDS)."""
import shutil
import warnings

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

import mbmf_ros.io.bags as bags
from mbmf_ros.io.bags import BagError, bag_fingerprint, find_bags, load_trajectories, package_typestore

NAMES = ['x', 'y', 'yaw', 'v']


def _msgs():
    ts = package_typestore()
    T = ts.types
    def header(ns):
        return T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](sec=ns // 10**9,
                                                                               nanosec=ns % 10**9),
                                        frame_id='odom')
    def state(ns, ep, step, values, terminal=False, valid=True, agent='toy'):
        return ts.serialize_cdr(T['mbmf_ros/msg/AgentState'](
            header=header(ns), agent=agent, names=list(NAMES), values=np.asarray(values, dtype=np.float64),
            episode=ep, step=step, terminal=terminal, valid=valid, flags=[]), 'mbmf_ros/msg/AgentState')
    def action(ns, step, values):
        return ts.serialize_cdr(T['mbmf_ros/msg/ActionCommand'](
            header=header(ns), values=np.asarray(values, dtype=np.float32), step=step, source='random'),
            'mbmf_ros/msg/ActionCommand')
    return state, action


def write_bag(path, episodes, T=10, storage=StoragePlugin.MCAP, nan_at=None, skip_action=None,
              action_topic='/mbmf/action', custom=None, start_ns=10**9, agent='toy', with_actions=True):
    """A bag like the recorder's: per episode T+1 states (last terminal) and T actions, stamps 50 ms apart.

    State values encode (episode, step) so the test can check the pairing: x = 100 ep + step, v = step,
    action = step / 100 (-1 for the step of skip_action, which is left out).
    """
    state, action = _msgs()
    ts = package_typestore()
    w = Writer(path, version=9, storage_plugin=storage)
    for k, v in (custom or {}).items():
        w.set_custom_data(k, v)
    w.open()
    cs = w.add_connection('/mbmf/state', 'mbmf_ros/msg/AgentState', typestore=ts)
    ca = w.add_connection(action_topic, 'mbmf_ros/msg/ActionCommand', typestore=ts) if with_actions else None
    ns = start_ns
    for ep in episodes:
        for step in range(T + 1):
            vals = [100 * ep + step, 0.0, 0.0, float(step)]
            if nan_at == (ep, step):
                vals[3] = float('nan')
            w.write(cs, ns, state(ns, ep, step, vals, terminal=step == T, agent=agent))
            if step < T and with_actions and skip_action != (ep, step):
                w.write(ca, ns + 1000, action(ns, step, [step / 100.0]))
            ns += 50_000_000
    w.close()
    return path


def test_pairs_by_stamp_and_respects_episodes(tmp_path):
    write_bag(tmp_path / 'b', episodes=[0, 1, 2], T=10)
    trajs, rep = load_trajectories([tmp_path])
    assert rep.transitions == 30 and len(trajs) == 3 and rep.states == 33 and rep.actions == 30
    for t in trajs:
        assert t.states.shape == (11, 4) and t.actions.shape == (10, 1)
        assert t.states.dtype == np.float64 and t.actions.dtype == np.float32
        # Every action answers the state at its row: a_t = step / 100 with step = v of s_t.
        np.testing.assert_allclose(t.actions[:, 0], t.states[:-1, 3] / 100, atol=1e-7)
        # A reset never becomes a transition: x only moves by +1 within the trajectory.
        np.testing.assert_allclose(np.diff(t.states[:, 0]), 1.0)
        assert t.agent == 'toy' and t.state_names == tuple(NAMES)
    assert [t.episode for t in trajs] == [0, 1, 2]


def test_nan_state_dropped_counted_and_cut(tmp_path):
    write_bag(tmp_path / 'b', episodes=[0], T=10, nan_at=(0, 4))
    trajs, rep = load_trajectories(tmp_path / 'b')
    assert rep.dropped_nonfinite_states == 1
    # steps 0..3 (3 transitions) and 5..10 (5 transitions): none uses the NaN state.
    assert [t.num_transitions for t in trajs] == [3, 5]
    assert all(np.isfinite(t.states).all() for t in trajs)


def test_missing_action_cuts_trajectory(tmp_path):
    write_bag(tmp_path / 'b', episodes=[0], T=10, skip_action=(0, 6))
    trajs, rep = load_trajectories(tmp_path / 'b')
    assert rep.states_without_action == 1 and [t.num_transitions for t in trajs] == [6, 3]  # 0..6, then 7..10


def test_bag_without_action_topic_lists_topics(tmp_path):
    write_bag(tmp_path / 'b', episodes=[0], with_actions=False)
    with pytest.raises(BagError, match=r"no action topic /mbmf/action .*topics found: /mbmf/state "
                                       r"\[mbmf_ros/msg/AgentState\]") as e:
        load_trajectories(tmp_path / 'b')
    assert str(tmp_path / 'b') in str(e.value)


def test_renamed_topics_found_by_type(tmp_path):
    write_bag(tmp_path / 'b', episodes=[0], action_topic='/robot1/cmd')
    trajs, _ = load_trajectories(tmp_path / 'b')
    assert trajs[0].num_transitions == 10


def test_wrong_agent_and_bad_paths(tmp_path):
    write_bag(tmp_path / 'b', episodes=[0])
    with pytest.raises(BagError, match="agent 'toy', expected agent 'hexapod'"):
        load_trajectories(tmp_path / 'b', agent='hexapod')
    with pytest.raises(BagError, match='does not exist'):
        find_bags([tmp_path / 'nope'])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match='no bags found'):
        find_bags([tmp_path / 'empty'])


def test_sqlite3_bag_with_and_without_metadata(tmp_path):
    write_bag(tmp_path / 'sq', episodes=[0, 1], storage=StoragePlugin.SQLITE3)
    trajs, rep = load_trajectories(tmp_path / 'sq')
    assert rep.transitions == 20 and not rep.incomplete_bags
    (tmp_path / 'sq' / 'metadata.yaml').unlink()  # as after a crash of `ros2 bag record`
    with pytest.warns(UserWarning, match='incomplete'):
        trajs2, rep2 = load_trajectories(tmp_path / 'sq')
    assert rep2.transitions == 20 and rep2.incomplete_bags


@pytest.mark.parametrize('keep_metadata', [True, False])
def test_cut_short_mcap_gives_complete_prefix(tmp_path, keep_metadata):
    write_bag(tmp_path / 'full', episodes=list(range(6)), T=40)
    shutil.copytree(tmp_path / 'full', tmp_path / 'cut')
    f = tmp_path / 'cut' / 'full.mcap'
    if not f.exists():
        f = next((tmp_path / 'cut').glob('*.mcap'))
    data = f.read_bytes()
    f.write_bytes(data[:len(data) * 6 // 10])  # cut inside the data section, footer and index gone
    if not keep_metadata:
        (tmp_path / 'cut' / 'metadata.yaml').unlink()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        trajs, rep = load_trajectories(tmp_path / 'cut')
    assert any('incomplete' in str(x.message) and 'cut' in str(x.message) for x in w)
    full, _ = load_trajectories(tmp_path / 'full')
    assert 0 < rep.transitions < 240
    # The prefix is exact: each trajectory read equals the start of the same episode in the full bag.
    by_ep = {t.episode: t for t in full}
    for t in trajs:
        ref = by_ep[t.episode]
        np.testing.assert_array_equal(t.states, ref.states[:len(t.states)])
        np.testing.assert_array_equal(t.actions, ref.actions[:len(t.actions)])


def test_truncated_to_nothing_names_the_file(tmp_path):
    write_bag(tmp_path / 'b', episodes=[0])
    f = next((tmp_path / 'b').glob('*.mcap'))
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(BagError, match=str(tmp_path / 'b')):
        load_trajectories(tmp_path / 'b')
    f.write_bytes(b'garbage that is no mcap at all')
    with pytest.raises(BagError, match='unreadable bag'):
        load_trajectories(tmp_path / 'b')


def test_parts_of_one_recording_are_joined(tmp_path):
    """An episode split across size-limited parts (same mbmf_ros.recording) stays one trajectory."""
    state, action = _msgs()
    ts = package_typestore()
    ns = 10**9
    for part, steps in enumerate([range(0, 6), range(6, 11)]):
        w = Writer(tmp_path / f'episode_0000_part{part:02d}', version=9, storage_plugin=StoragePlugin.MCAP)
        w.set_custom_data('mbmf_ros.recording', 'abc')
        w.open()
        cs = w.add_connection('/mbmf/state', 'mbmf_ros/msg/AgentState', typestore=ts)
        ca = w.add_connection('/mbmf/action', 'mbmf_ros/msg/ActionCommand', typestore=ts)
        for step in steps:
            t = ns + step * 50_000_000
            w.write(cs, t, state(t, 0, step, [step, 0, 0, step], terminal=step == 10))
            if step < 10:
                w.write(ca, t, action(t, step, [0.1]))
        w.close()
    trajs, rep = load_trajectories(tmp_path)
    assert len(trajs) == 1 and trajs[0].num_transitions == 10 and len(rep.bags) == 2


def test_reads_embedded_definitions_without_package_msgs(tmp_path, monkeypatch):
    """A bag carries its message definitions: readable where this package's msg files are unknown."""
    write_bag(tmp_path / 'b', episodes=[0, 1])
    bare = get_typestore(Stores.ROS2_KILTED)
    assert 'mbmf_ros/msg/AgentState' not in bare.fielddefs
    monkeypatch.setattr(bags, 'package_typestore', lambda: bare)
    trajs, rep = load_trajectories(tmp_path / 'b')
    assert rep.transitions == 20


def test_fingerprint_is_content_hash(tmp_path):
    write_bag(tmp_path / 'a', episodes=[0])
    shutil.copytree(tmp_path / 'a', tmp_path / 'b')
    assert bag_fingerprint(tmp_path / 'a') == bag_fingerprint(tmp_path / 'b')
    write_bag(tmp_path / 'c', episodes=[1])
    assert bag_fingerprint(tmp_path / 'a') != bag_fingerprint(tmp_path / 'c')
