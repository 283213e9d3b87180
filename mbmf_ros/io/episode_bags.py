"""Write one simulated episode as a rosbag2 (MCAP) bag, the same messages the recorder writes from DDS.

The in-process experiments (``sim/experiments.py``) run the simulation, the estimator and the planner in one
process; their episodes are stored like recorded ones: /mbmf/state (mbmf_ros/AgentState) and /mbmf/action
(mbmf_ros/ActionCommand) with equal header stamps for a state and the action that answers it, so that
``io.bags.load_trajectories`` and ``mbmf-ros train`` read them like any other bag.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mbmf_ros.io.bags import ACTION_TYPE, DEFAULT_STATE_TOPIC, STATE_TYPE, package_typestore

ACTION_TOPIC = '/mbmf/action'
_STORE = None


def _store():
    global _STORE
    if _STORE is None:
        _STORE = package_typestore()
    return _STORE


def write_episode_bag(path, agent: str, state_names, states, actions, stamps, episode: int = 0,
                      source: str = 'mpc', frame_id: str = 'odom') -> Path:
    """Write states (T+1, S), actions (T, A) in [-1, 1] and stamps (T+1,) s into a new bag folder ``path``.

    The last state is marked terminal. Raises FileExistsError when ``path`` exists (recorded data is never
    overwritten) and ValueError when the shapes disagree.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    states, actions, stamps = np.asarray(states, np.float64), np.asarray(actions, np.float32), np.asarray(stamps)
    T = len(actions)
    if states.shape != (T + 1, len(state_names)) or stamps.shape != (T + 1,):
        raise ValueError(f'write_episode_bag {path}: states {states.shape}, actions {actions.shape} and stamps '
                         f'{stamps.shape} do not fit (expected ({T + 1}, {len(state_names)}), ({T}, A), ({T + 1},))')
    path = Path(path)
    if path.exists():
        raise FileExistsError(f'write_episode_bag: {path} exists; recorded data is never overwritten')
    path.parent.mkdir(parents=True, exist_ok=True)
    store = _store()
    St, Ac = store.types[STATE_TYPE], store.types[ACTION_TYPE]
    Header, Time = store.types['std_msgs/msg/Header'], store.types['builtin_interfaces/msg/Time']
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.set_custom_data('mbmf_ros.episode', str(episode))
    writer.open()
    try:
        cs = writer.add_connection(DEFAULT_STATE_TOPIC, STATE_TYPE, typestore=store)
        ca = writer.add_connection(ACTION_TOPIC, ACTION_TYPE, typestore=store)
        names = [str(n) for n in state_names]
        for t in range(T + 1):
            ns = int(round(float(stamps[t]) * 1e9))
            header = Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame_id)
            msg = St(header=header, agent=agent, names=names, values=states[t].astype(np.float64),
                     episode=int(episode), step=t, terminal=t == T, valid=True, flags=[])
            writer.write(cs, ns, store.serialize_cdr(msg, STATE_TYPE))
            if t < T:
                act = Ac(header=header, values=actions[t].astype(np.float32), step=t, source=source)
                writer.write(ca, ns + 1, store.serialize_cdr(act, ACTION_TYPE))
    finally:
        writer.close()
    return path
