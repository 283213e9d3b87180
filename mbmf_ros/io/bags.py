"""Reading rosbag2 bags (MCAP or sqlite3, this package's recorder or `ros2 bag record`) into trajectories of
states and actions (ROS-free). The typestore that decodes them is mbmf_ros.io.typestore.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io as _io
import sqlite3
import struct
import warnings
from pathlib import Path

import numpy as np

from mbmf_ros.io.typestore import ensure_type, interface_dirs, package_typestore  # noqa: F401 - re-exported

STATE_TYPE = 'mbmf_ros/msg/AgentState'
ACTION_TYPE = 'mbmf_ros/msg/ActionCommand'
DEFAULT_STATE_TOPIC = '/mbmf/state'
DEFAULT_ACTION_TOPIC = '/mbmf/action'


class BagError(ValueError):
    """A bag cannot be used: the message names the file and what was wrong."""


@dataclasses.dataclass
class Trajectory:
    """One uninterrupted piece of an episode: T transitions (s_t, a_t, s_{t+1}).

    states (T+1, S) float64 in SI units (first three: x, y, yaw); actions (T, A) float32 in [-1, 1];
    stamps (T+1,) float64 seconds (header.stamp of each state); steps (T+1,) int64.
    """
    states: np.ndarray
    actions: np.ndarray
    agent: str
    state_names: tuple
    action_names: tuple
    source: str
    episode: int
    stamps: np.ndarray
    steps: np.ndarray

    @property
    def num_transitions(self) -> int:
        return len(self.actions)


@dataclasses.dataclass
class ReadReport:
    """What the reader found and dropped (counts are messages unless named otherwise)."""
    bags: list = dataclasses.field(default_factory=list)
    states: int = 0
    actions: int = 0
    transitions: int = 0
    trajectories: int = 0
    dropped_nonfinite_states: int = 0
    dropped_invalid_states: int = 0     # AgentState.valid == false (held values)
    dropped_nonfinite_actions: int = 0
    clipped_actions: int = 0            # action values outside [-1, 1], clipped
    duplicate_states: int = 0
    states_without_action: int = 0      # non-terminal states whose action is missing (cuts the trajectory)
    step_gaps: int = 0                  # a state's step is not the previous + 1 (a lost message)
    orphan_actions: int = 0             # actions answering no recorded state
    incomplete_bags: list = dataclasses.field(default_factory=list)  # (path, why) read as their prefix

    def summary(self) -> str:
        s = (f'{len(self.bags)} bag(s): {self.states} states, {self.actions} actions -> {self.transitions} '
             f'transitions in {self.trajectories} trajectories')
        extra = [f'{k.replace("_", " ")} {v}' for k, v in dataclasses.asdict(self).items()
                 if k not in ('bags', 'states', 'actions', 'transitions', 'trajectories', 'incomplete_bags') and v]
        if self.incomplete_bags:
            extra.append(f'incomplete bags (prefix read) {[p for p, _ in self.incomplete_bags]}')
        return s + ('; ' + ', '.join(extra) if extra else '')


# --- locating bags -------------------------------------------------------------------------------------------
def _is_bag_dir(p: Path) -> bool:
    return (p / 'metadata.yaml').is_file() or any(p.glob('*.mcap')) or any(p.glob('*.db3'))


def find_bags(paths) -> list[Path]:
    """Bags under the given paths: a bag folder, a .mcap/.db3 file, or a folder of bag folders (recursive).

    Returns bag folders or single storage files, sorted. Raises BagError naming a path that does not exist or
    holds no bag.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise BagError(f'bag path {p} does not exist')
        if p.is_file():
            if p.suffix not in ('.mcap', '.db3'):
                raise BagError(f'{p}: not a bag (expected a .mcap or .db3 file, or a bag folder)')
            out.append(p)
        elif _is_bag_dir(p):
            out.append(p)
        else:
            found = sorted({d.parent for d in p.rglob('*') if d.suffix in ('.mcap', '.db3') or
                            d.name == 'metadata.yaml'})
            if not found:
                raise BagError(f'{p}: no bags found (no metadata.yaml, *.mcap or *.db3 below it)')
            out.extend(found)
    return sorted(dict.fromkeys(out))


def _storage_files(bag: Path) -> list[Path]:
    if bag.is_file():
        return [bag]
    return sorted(list(bag.glob('*.mcap')) + list(bag.glob('*.db3')))


def bag_fingerprint(bag: Path) -> str:
    """sha256 of a bag's storage files (content, not names): provenance for checkpoints."""
    h = hashlib.sha256()
    for f in _storage_files(Path(bag)):
        with open(f, 'rb') as fh:
            for block in iter(lambda: fh.read(1 << 20), b''):
                h.update(block)
    return 'sha256:' + h.hexdigest()


def _custom_data(bag: Path) -> dict:
    meta = bag / 'metadata.yaml' if bag.is_dir() else None
    if meta is None or not meta.is_file():
        return {}
    try:
        import yaml
        info = (yaml.safe_load(meta.read_text()) or {}).get('rosbag2_bagfile_information', {})
        return info.get('custom_data') or {}
    except Exception:  # a damaged metadata.yaml only loses the grouping hint
        return {}


# --- raw message access: the rosbags reader, then tolerant fallbacks for bags cut short ------------------------
def _read_any(bag: Path, want_types: set[str]):
    """(topics {name: type}, messages [(topic, type, log_ns, msg)]) of the wanted types, via rosbags."""
    from rosbags.highlevel import AnyReader
    paths = [bag] if bag.is_dir() else [bag]
    with AnyReader(paths, default_typestore=package_typestore()) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        conns = [c for c in reader.connections if c.msgtype in want_types]
        msgs = [(c.topic, c.msgtype, t, reader.deserialize(raw, c.msgtype))
                for c, t, raw in reader.messages(connections=conns)]
    return topics, msgs


def _mcap_records(buf, end):
    """Yield (opcode, content memoryview, complete) of MCAP records; the last may be truncated (complete
    False: content is what the file holds of it), nothing after it is read."""
    pos = 0
    while pos + 9 <= end:
        op = buf[pos]
        (n,) = struct.unpack_from('<Q', buf, pos + 1)
        if pos + 9 + n > end:
            yield op, buf[pos + 9:end], False
            return
        yield op, buf[pos + 9:pos + 9 + n], True
        pos += 9 + n


def _mstr(b, o):
    (n,) = struct.unpack_from('<I', b, o)
    return bytes(b[o + 4:o + 4 + n]).decode(), o + 4 + n


def _scan_mcap_prefix(path: Path):
    """Complete records of an MCAP file without footer/index (recorder killed): topics and raw messages."""
    data = memoryview(path.read_bytes())
    if bytes(data[:8]) != b'\x89MCAP0\r\n':
        raise BagError(f'{path}: not an MCAP file (bad magic)')
    channels, schemas, msgs = {}, {}, []

    def walk(buf, end):
        for op, c, complete in _mcap_records(buf, end):
            if not complete and op != 0x06:
                return
            if op == 0x03:
                (sid,) = struct.unpack_from('<H', c, 0)
                name, _ = _mstr(c, 2)
                schemas[sid] = name
            elif op == 0x04:
                cid, sid = struct.unpack_from('<HH', c, 0)
                topic, _ = _mstr(c, 4)
                channels[cid] = (topic, schemas.get(sid, ''))
            elif op == 0x05:
                (cid,) = struct.unpack_from('<H', c, 0)
                (log_t,) = struct.unpack_from('<Q', c, 6)
                msgs.append((cid, log_t, bytes(c[22:])))
            elif op == 0x06:
                if len(c) < 40:
                    return
                comp, o = _mstr(c, 28)
                (n,) = struct.unpack_from('<Q', c, o)
                raw = bytes(c[o + 8:o + 8 + n])
                if not complete and comp:
                    return  # a compressed chunk cut short cannot be decoded
                if comp == 'zstd':
                    import sys as _sys
                    if _sys.version_info >= (3, 14):
                        from compression import zstd
                    else:
                        from backports import zstd
                    raw = zstd.decompress(raw)
                elif comp:
                    continue  # lz4 etc.: unreadable without the codec; the rest of the file still counts
                walk(memoryview(raw), len(raw))
    walk(data[8:], len(data) - 8)
    topics = {t: ty for t, ty in channels.values()}
    return topics, [(channels[c][0], channels[c][1], t, raw) for c, t, raw in msgs if c in channels]


def _scan_sqlite(path: Path):
    """Messages of a rosbag2 .db3 read with sqlite3 directly (a bag without metadata.yaml)."""
    con = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
    try:
        rows = con.execute('SELECT id, name, type FROM topics').fetchall()
        topics = {r[0]: (r[1], r[2]) for r in rows}
        msgs = [(topics[tid][0], topics[tid][1], t, bytes(d)) for tid, t, d in
                con.execute('SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp')
                if tid in topics]
    finally:
        con.close()
    return {n: ty for n, ty in topics.values()}, msgs


def _read_bag(bag: Path, want_types: set[str], report: ReadReport):
    """Topics and deserialised messages of one bag; a bag cut short yields its complete prefix, with a warning.

    Raises BagError naming the file when nothing of it can be read.
    """
    try:
        return _read_any(bag, want_types)
    except Exception as first:  # rosbags raises several kinds for damaged files; try the tolerant readers
        files = _storage_files(bag)
        if not files:
            raise BagError(f'{bag}: no .mcap or .db3 file in the bag folder ({first})') from first
        store = package_typestore()
        topics, msgs = {}, []
        try:
            for f in files:
                t, m = _scan_mcap_prefix(f) if f.suffix == '.mcap' else _scan_sqlite(f)
                topics.update(t)
                for topic, ty, ts, raw in m:
                    if ty in want_types:
                        try:
                            msgs.append((topic, ty, ts, store.deserialize_cdr(raw, ty)))
                        except Exception:  # a message cut by the truncation: the prefix ends here
                            break
        except Exception as second:
            raise BagError(f'{bag}: unreadable bag ({type(first).__name__}: {first}); the tolerant reader '
                           f'also failed: {type(second).__name__}: {second}') from second
        if not topics:
            raise BagError(f'{bag}: unreadable bag, not even a prefix: {type(first).__name__}: {first}')
        why = f'{type(first).__name__}: {first}'
        report.incomplete_bags.append((str(bag), why))
        warnings.warn(f'{bag} is incomplete ({why}); using its complete prefix of {len(msgs)} messages',
                      stacklevel=3)
        return topics, msgs


def _pick_topic(topics: dict, wanted: str, msgtype: str, bag: Path, what: str) -> str:
    if topics.get(wanted) == msgtype:
        return wanted
    of_type = [t for t, ty in topics.items() if ty == msgtype]
    if len(of_type) == 1:
        return of_type[0]  # e.g. a namespaced robot: /robot1/mbmf/state
    found = ', '.join(f'{t} [{ty}]' for t, ty in sorted(topics.items())) or 'none'
    if of_type:
        raise BagError(f'{bag}: several {what} topics of type {msgtype}: {of_type}; name one (expected {wanted})')
    raise BagError(f'{bag}: no {what} topic {wanted} of type {msgtype}; topics found: {found}')


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _action_names(agent: str, dim: int) -> tuple:
    """ActionCommand carries no names: take them from the agent spec when it is known, else a0, a1, ..."""
    try:
        from mbmf_ros.core.agents import AGENTS
        spec = AGENTS.get(agent)
        if spec is not None and len(spec.action_names) == dim:
            return tuple(spec.action_names)
    except ImportError:
        pass
    return tuple(f'a{i}' for i in range(dim))


def load_trajectories(paths, state_topic: str = DEFAULT_STATE_TOPIC, action_topic: str = DEFAULT_ACTION_TOPIC,
                      agent: str | None = None, drop_invalid: bool = True, min_transitions: int = 1):
    """Read bags into trajectories of (s_t, a_t, s_{t+1}); returns (list[Trajectory], ReadReport).

    paths: bag folders, .mcap/.db3 files, or folders of bags (see find_bags). States pair with the action whose
    header.stamp equals theirs. A trajectory is cut (never bridged) at an episode change, a terminal state,
    a step gap, a missing action, a non-finite state or action (dropped and counted), an invalid state
    (valid=false, when drop_invalid). Bags written by one recorder run (custom_data mbmf_ros.recording) are
    read as one stream, so an episode split over size-limited parts stays whole.
    Raises BagError: missing state/action topic (names the topics found), agent mismatch (agent given),
    state layout differing between bags.
    """
    report = ReadReport()
    bags = find_bags(paths)
    groups: dict = {}
    for bag in bags:
        key = _custom_data(bag).get('mbmf_ros.recording') or str(bag)
        groups.setdefault(key, []).append(bag)
    trajs: list[Trajectory] = []
    layout = None  # (agent, state_names, action_dim, first bag)
    for key, members in groups.items():
        states, actions = {}, {}
        for bag in members:
            report.bags.append(str(bag))
            topics, msgs = _read_bag(bag, {STATE_TYPE, ACTION_TYPE}, report)
            st = _pick_topic(topics, state_topic, STATE_TYPE, bag, 'state')
            at = _pick_topic(topics, action_topic, ACTION_TYPE, bag, 'action')
            for topic, _, _, m in msgs:
                if topic == st:
                    report.states += 1
                    s = _stamp_ns(m.header)
                    if s in states:
                        report.duplicate_states += 1
                        continue
                    states[s] = (m, bag)
                elif topic == at:
                    report.actions += 1
                    actions[_stamp_ns(m.header)] = m
        used_actions = set()
        cur: list = []

        def flush():
            if len(cur) - 1 >= min_transitions:
                trajs.append(_make_traj(cur, actions, layout))
                used_actions.update(c[0] for c in cur[:-1])
            cur.clear()

        for stamp in sorted(states):
            m, bag = states[stamp]
            values = np.asarray(m.values, dtype=np.float64)
            names = tuple(m.names)
            if agent is not None and m.agent != agent:
                raise BagError(f'{bag}: state of agent {m.agent!r}, expected agent {agent!r}')
            if len(values) != len(names) or tuple(names[:3]) != ('x', 'y', 'yaw'):
                raise BagError(f'{bag}: state at step {m.step} has {len(values)} values for names {names} '
                               f"(expected equal lengths and names starting with 'x', 'y', 'yaw')")
            if layout is None:
                layout = (m.agent, names, None, bag)
            elif (m.agent, names) != layout[:2]:
                raise BagError(f'{bag}: state layout {m.agent} {names} differs from {layout[0]} {layout[1]} '
                               f'in {layout[3]}: train one agent/layout at a time')
            if not np.all(np.isfinite(values)):
                report.dropped_nonfinite_states += 1
                flush()
                continue
            if drop_invalid and not m.valid:
                report.dropped_invalid_states += 1
                flush()
                continue
            if cur:
                pstamp, pm = cur[-1][0], cur[-1][1]
                act = actions.get(pstamp)
                ok = m.episode == pm.episode and not pm.terminal
                if ok and m.step != pm.step + 1:
                    report.step_gaps += 1
                    ok = False
                if ok and act is None:
                    report.states_without_action += 1
                    ok = False
                if ok:
                    a = np.asarray(act.values, dtype=np.float64)
                    if not np.all(np.isfinite(a)):
                        report.dropped_nonfinite_actions += 1
                        ok = False
                    elif layout[2] is not None and len(a) != layout[2]:
                        raise BagError(f'{bag}: action at step {pm.step} has {len(a)} values, expected '
                                       f'{layout[2]} as in {layout[3]}')
                    else:
                        layout = layout[:2] + (len(a),) + layout[3:]
                if not ok:
                    flush()
            cur.append((stamp, m, values, str(bag)))
        flush()
        report.orphan_actions += len(set(actions) - set(states))
    for t in trajs:
        report.clipped_actions += int(np.sum(np.abs(t.actions) > 1.0))
        np.clip(t.actions, -1.0, 1.0, out=t.actions)
    report.trajectories = len(trajs)
    report.transitions = sum(t.num_transitions for t in trajs)
    return trajs, report


def _make_traj(cur, actions, layout) -> Trajectory:
    stamps = [c[0] for c in cur]
    acts = np.array([actions[s].values for s in stamps[:-1]], dtype=np.float32)
    first = cur[0][1]
    return Trajectory(states=np.stack([c[2] for c in cur]), actions=acts.reshape(len(cur) - 1, -1),
                      agent=first.agent, state_names=tuple(first.names),
                      action_names=_action_names(first.agent, acts.shape[1] if acts.ndim == 2 else 0),
                      source=cur[0][3], episode=int(first.episode),
                      stamps=np.array(stamps, dtype=np.float64) * 1e-9,
                      steps=np.array([c[1].step for c in cur], dtype=np.int64))
