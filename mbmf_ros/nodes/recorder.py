"""recorder: writes topics into rosbag2 MCAP bags with rosbags, unchanged CDR bytes (docs/design.md).

Parameters
  topics               string list  topics to record (default: state, action, odom, imu, joint_states, mocap)
  output_dir           string       folder for the bags (created); default ./bags
  split_by_episode     bool         one bag per episode, <output_dir>/episode_<NNNN> (episode from AgentState)
  max_bag_size_mb      float        start a new bag (<name>_partNN) when the file passes this size; 0 = no limit
  stop_after_episodes  int          0 = never; else close the bags and exit 0 after that many terminal states
  state_topic          string       the AgentState topic whose episode/terminal fields drive splitting
  flush_period_s       float        seconds between flushes to disk: a killed recorder loses at most this much

Subscriptions use ``raw=True``: the CDR bytes go into the bag unchanged, with the message definitions embedded
(rosbags writes them from the typestore), so the bags read back without this package. The receive time on the
node's clock (sim time with use_sim_time, as ``ros2 bag record --use-sim-time``) is the bag timestamp in ns.
Topics with a known type are subscribed at once; others as soon as a publisher shows its type, with a QoS
compatible with the publishers (best effort if any publisher is; transient local only if all are).
On shutdown (SIGINT, SIGTERM, or stop_after_episodes) every bag is closed with its index and metadata.yaml.
All parts written by one recorder run share the bag custom_data key ``mbmf_ros.recording`` (a uuid) and a
``mbmf_ros.part`` counter, so the reader can join an episode split across size-limited parts.
"""
from __future__ import annotations

import collections
import importlib
import sys
import time
import uuid
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from mbmf_ros import topics as T
from mbmf_ros.io.typestore import ensure_type, package_typestore
from mbmf_ros.nodes.common import declare_settings, run_node, stamp_ns

KNOWN_TYPES = {
    T.STATE: 'mbmf_ros/msg/AgentState',
    T.ACTION: 'mbmf_ros/msg/ActionCommand',
    T.ODOM: 'nav_msgs/msg/Odometry',
    T.IMU: 'sensor_msgs/msg/Imu',
    T.JOINT_STATES: 'sensor_msgs/msg/JointState',
    T.MOCAP_POSE: 'geometry_msgs/msg/PoseStamped',
    T.CLOCK: 'rosgraph_msgs/msg/Clock',
}
# Messages waiting for the first AgentState when splitting by episode (sensors that precede it).
MAX_PENDING = 10000


def import_msg_class(msgtype: str):
    """'pkg/msg/Type' -> the generated Python class. Raises ValueError naming the type."""
    try:
        pkg, kind, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ValueError, ImportError, AttributeError) as e:
        raise ValueError(f'recorder: cannot import message type {msgtype!r}: {e}') from e


class _Bag:
    """One open rosbags Writer with its connections."""

    def __init__(self, path: Path, recording: str, part: int, episode: int | None):
        from rosbags.rosbag2 import StoragePlugin, Writer
        self.path = path
        self.episode = episode
        self.writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
        self.writer.set_custom_data('mbmf_ros.recording', recording)
        self.writer.set_custom_data('mbmf_ros.part', str(part))
        if episode is not None:
            self.writer.set_custom_data('mbmf_ros.episode', str(episode))
        self.writer.open()
        self.connections = {}
        self.count = 0

    def write(self, topic: str, msgtype: str, t_ns: int, data: bytes):
        conn = self.connections.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=package_typestore())
            self.connections[topic] = conn
        self.writer.write(conn, t_ns, data)
        self.count += 1

    def size_bytes(self) -> int:
        st = self.writer.storage
        try:
            return st.bio.tell() + st.chunk.bio.tell()
        except AttributeError:  # another rosbags storage layout: size of what reached the file
            return st.path.stat().st_size if st is not None else 0

    def flush(self):
        """Write the pending chunk to disk (rosbags keeps up to 1 MiB in memory otherwise)."""
        st = self.writer.storage
        try:
            if st is not None and st.chunk.bio.tell():
                st.close_chunk()
            st.bio.flush()
        except AttributeError:
            pass

    def close(self):
        self.writer.close()


class Recorder(Node):
    def __init__(self):
        super().__init__('recorder')
        # Every parameter and its default: config/defaults.yaml (recorder).
        v = declare_settings(self, 'recorder')
        self.topics = list(v['topics'])
        self.output_dir = Path(v['output_dir']).expanduser()
        self.split_by_episode = v['split_by_episode']
        self.max_bytes = v['max_bag_size_mb'] * 1e6
        self.stop_after = v['stop_after_episodes']
        self.state_topic = v['state_topic']
        flush_period = v['flush_period_s']
        if self.stop_after < 0 or self.max_bytes < 0:
            raise SystemExit(f'recorder: stop_after_episodes and max_bag_size_mb must be >= 0, '
                             f'found {self.stop_after} and {self.max_bytes / 1e6}')
        if not self.topics:
            raise SystemExit('recorder: parameter topics is empty: nothing to record')
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.recording = uuid.uuid4().hex
        self.part = 0
        self.bag: _Bag | None = None          # the bag new messages go to
        self.previous: _Bag | None = None     # the last episode's bag, open for late actions/sensors
        self.pending: list = []
        self.held_actions: dict = collections.OrderedDict()  # action stamp (ns) -> messages before their state
        self.state_episode: dict = collections.OrderedDict()  # state stamp (ns) -> episode, recent ones
        self.terminals = 0
        self.counts = collections.Counter()
        self.types: dict[str, str] = {}
        self.subs = {}
        self.exit_code = None
        self._closed = False
        from mbmf_ros.msg import ActionCommand, AgentState
        self._AgentState, self._ActionCommand = AgentState, ActionCommand
        for topic in self.topics:
            if topic in KNOWN_TYPES:
                self._subscribe(topic, KNOWN_TYPES[topic], self._qos_for(topic))
        self._discover()
        self.create_timer(0.5, self._discover)
        self.create_timer(flush_period, self._flush)
        self.get_logger().info(f'recording {self.topics} into {self.output_dir} '
                               f'(split_by_episode={self.split_by_episode}, '
                               f'max_bag_size_mb={self.max_bytes / 1e6:g}, stop_after_episodes={self.stop_after})')

    # --- subscriptions -------------------------------------------------------------------------------------
    def _qos_for(self, topic: str) -> QoSProfile:
        infos = self.get_publishers_info_by_topic(topic)
        best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
        latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                                      for i in infos)
        # Deep queue: a burst must never be dropped while the executor writes a chunk to disk.
        return QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def _subscribe(self, topic: str, msgtype: str, qos: QoSProfile):
        cls = import_msg_class(msgtype)
        if not ensure_type(package_typestore(), msgtype):
            self.get_logger().error(f'no message definition for {msgtype} on {topic}: not recorded')
            return
        if topic in self.subs:
            self.destroy_subscription(self.subs[topic][0])
        self.types[topic] = msgtype
        sub = self.create_subscription(cls, topic, lambda data, t=topic: self._on_message(t, data), qos,
                                       raw=True)
        self.subs[topic] = (sub, qos.reliability)

    def _discover(self):
        names = dict(self.get_topic_names_and_types())
        for topic in self.topics:
            types = names.get(topic)
            if not types:
                continue
            if topic in self.subs:
                # A best-effort publisher never reaches a reliable subscription: adapt once.
                if (self.subs[topic][1] == ReliabilityPolicy.RELIABLE
                        and self._qos_for(topic).reliability == ReliabilityPolicy.BEST_EFFORT):
                    self.get_logger().info(f'{topic}: best-effort publisher, resubscribing best effort')
                    self._subscribe(topic, self.types[topic], self._qos_for(topic))
                continue
            if len(types) > 1:
                self.get_logger().warning(f'{topic} has several types {types}: recording {types[0]}')
            try:
                self._subscribe(topic, types[0], self._qos_for(topic))
            except ValueError as e:
                self.get_logger().error(str(e))
                self.subs[topic] = (None, None)

    # --- writing -------------------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        t = self.get_clock().now().nanoseconds
        return t if t > 0 else time.time_ns()

    def _new_bag(self, episode: int | None) -> _Bag:
        base = f'episode_{episode:04d}' if episode is not None else 'bag'
        if episode is None:
            n = 0
            while (self.output_dir / f'bag_{n:04d}').exists():
                n += 1
            name = f'bag_{n:04d}'
        else:
            name, r = base, 0
            while (self.output_dir / name).exists():  # a second bridge run reuses episode numbers
                r += 1
                name = f'{base}_r{r}'
        bag = _Bag(self.output_dir / name, self.recording, self.part, episode)
        self.part += 1
        return bag

    def _size_split(self, bag: _Bag) -> _Bag:
        if self.max_bytes <= 0 or bag.size_bytes() < self.max_bytes:
            return bag
        bag.close()
        stem = bag.path.name.split('_part')[0]
        k = 1
        while (self.output_dir / f'{stem}_part{k:02d}').exists():
            k += 1
        new = _Bag(self.output_dir / f'{stem}_part{k:02d}', self.recording, self.part, bag.episode)
        self.part += 1
        self.get_logger().info(f'{bag.path} reached {self.max_bytes / 1e6:g} MB: continuing in {new.path}')
        return new

    def _on_message(self, topic: str, data: bytes):
        if self._closed:
            return
        t_ns = self._now_ns()
        msgtype = self.types[topic]
        self.counts[topic] += 1
        if topic == self.state_topic and msgtype == 'mbmf_ros/msg/AgentState':
            msg = deserialize_message(data, self._AgentState)
            self._on_state(msg, topic, msgtype, t_ns, data)
            return
        target = None
        if self.split_by_episode and msgtype == 'mbmf_ros/msg/ActionCommand':
            # An action belongs to the episode of the state it answers (same stamp). DDS does not order
            # messages across topics: it may come before its state (hold it) or after the next episode began.
            act = deserialize_message(data, self._ActionCommand)
            stamp = stamp_ns(act.header.stamp)
            ep = self.state_episode.get(stamp)
            if ep is None:
                self.held_actions.setdefault(stamp, []).append((topic, msgtype, t_ns, bytes(data)))
                while len(self.held_actions) > 1000:  # an action that answers no state: keep it anyway
                    _, items = self.held_actions.popitem(last=False)
                    for it in items:
                        self._write(*it)
                return
            if self.previous is not None and ep == self.previous.episode:
                target = self.previous
        self._write(topic, msgtype, t_ns, data, target)

    def _on_state(self, msg, topic, msgtype, t_ns, data):
        stamp = stamp_ns(msg.header.stamp)
        self.state_episode[stamp] = msg.episode
        while len(self.state_episode) > 2000:
            self.state_episode.popitem(last=False)
        if self.split_by_episode and (self.bag is None or self.bag.episode != msg.episode):
            if self.previous is not None:
                self.previous.close()
                self.get_logger().info(f'closed {self.previous.path} ({self.previous.count} messages)')
            self.previous = self.bag
            self.bag = self._new_bag(msg.episode)
            for p in self.pending:
                self.bag.write(*p)
            self.pending.clear()
        self._write(topic, msgtype, t_ns, data)
        for item in self.held_actions.pop(stamp, ()):
            self._write(*item)
        if msg.terminal:
            self.terminals += 1
            if self.stop_after and self.terminals >= self.stop_after:
                self.get_logger().info(f'{self.terminals} episodes recorded: stopping')
                self.close()
                self.exit_code = 0

    def _write(self, topic, msgtype, t_ns, data, target: _Bag | None = None):
        if target is not None:
            target.write(topic, msgtype, t_ns, data)
            return
        if self.bag is None:
            if self.split_by_episode:
                if len(self.pending) < MAX_PENDING:
                    self.pending.append((topic, msgtype, t_ns, bytes(data)))
                return
            self.bag = self._new_bag(None)
        self.bag = self._size_split(self.bag)
        self.bag.write(topic, msgtype, t_ns, data)

    def _flush(self):
        for b in (self.bag, self.previous):
            if b is not None:
                b.flush()

    def _drain(self):
        """Take what DDS already delivered but the executor has not handed out yet (a SIGINT arrives between
        spins): received messages are never lost on shutdown."""
        for topic, (sub, _) in list(self.subs.items()):
            if sub is None:
                continue
            for _ in range(100000):
                try:
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
                except Exception:  # handle already gone (context torn down): nothing more to take
                    break
                if taken is None:
                    break
                self._on_message(topic, taken[0])

    def close(self):
        """Finish every open bag (index, summary, metadata.yaml) so that it is complete and readable."""
        if self._closed:
            return
        self._drain()
        self._closed = True
        for items in self.held_actions.values():
            self.pending.extend(items) if self.bag is None else [self.bag.write(*it) for it in items]
        self.held_actions.clear()
        if self.pending and self.bag is None:
            self.bag = self._new_bag(None)  # no AgentState ever came: a plain bag
            for p in self.pending:
                self.bag.write(*p)
        for b in (self.previous, self.bag):
            if b is not None:
                b.close()
                self.get_logger().info(f'closed {b.path} ({b.count} messages)')
        self.previous = self.bag = None
        self.get_logger().info('received: ' + ', '.join(f'{t} {n}' for t, n in sorted(self.counts.items())))


def main(args=None):
    return run_node(lambda: Recorder(), args)


if __name__ == '__main__':
    sys.exit(main())
