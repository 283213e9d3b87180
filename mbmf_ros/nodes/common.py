"""Plumbing shared by every mbmf_ros node: QoS profiles, the standard main(), stamp conversions."""
from __future__ import annotations

import signal
import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

# Latched topics (model, reference): a late subscriber still gets the last message.
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
# The control loop: reliable, deep enough that a lock-step exchange never drops a message.
CONTROL = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
# The control loop's state and action publishers: CONTROL, but each keeps its last 1000 messages for late-joining
# TRANSIENT_LOCAL observers (`mbmf-ros follow`, the recorder's adaptive QoS, tests), so that a reader matched a
# moment after the first messages of an episode, or one that falls behind for a while, still gets them all.
# Volatile readers (bridge, planner, actors, waypoint manager) are compatible with it and get only new messages.
HISTORY = QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
# The flag a real-time bridge sets on every state while its watchdog holds the robot stopped (AgentState.flags).
WATCHDOG_FLAG = 'watchdog_stop'
# A real-time consumer that only wants the newest message (a robot's planner that falls behind).
LATEST = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
# Sensors at high rate.
SENSOR = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)


# The control loop's endpoints take ROS 2's standard QoS overrides (parameters
# `qos_overrides.<topic>.<publisher|subscription>.<reliability|depth|history>`): the real-time graph sets them from
# config/realtime_qos.yaml, so that the loop keeps only the newest state and action across a slow, lossy link.
OVERRIDABLE = QoSOverridingOptions.with_default_policies()


def overridable(profile: QoSProfile) -> dict:
    """Keyword arguments for create_publisher/create_subscription: a copy of `profile` (rclpy writes the
    overrides into the profile object it is given, which must not be a shared module constant) and the
    overriding options. Use as `node.create_subscription(Type, topic, callback, **overridable(CONTROL))`."""
    copy = QoSProfile(history=profile.history, depth=profile.depth, reliability=profile.reliability,
                      durability=profile.durability)
    return {'qos_profile': copy, 'qos_overriding_options': OVERRIDABLE}


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def check_state(msg, spec, now_s: float, stale_after_s: float, stop_on_invalid: bool):
    """The safety checks every controller makes before answering an AgentState: (reason for a zero action or None,
    state (S,) float64 or None). Layout and size against the agent, finite values, a state flagged invalid (a stale
    or missing sensor such as the motion-capture pose; only with stop_on_invalid, true on a robot), and its age by
    the node clock now_s (s; 0 before a simulated clock has started)."""
    import numpy as np
    names = tuple(msg.names)
    if names and names != tuple(spec.state_names):
        return f'state layout {list(names)} is not the {spec.name} layout {list(spec.state_names)}', None
    if len(msg.values) != spec.state_dim:
        return f'state has {len(msg.values)} values, expected {spec.state_dim}', None
    state = np.asarray(msg.values, dtype=np.float64)
    if not np.isfinite(state).all():
        return 'state has non-finite values', None
    if stop_on_invalid and not msg.valid:
        # a stale or missing sensor makes the state a guess: stop
        return f'invalid state: {", ".join(msg.flags) or "valid=false"}', state
    age = now_s - stamp_to_sec(msg.header.stamp)
    if now_s > 0 and age > stale_after_s:
        hint = ' (sim-time stamps on a wall clock? set use_sim_time:=true)' if age > 1e6 else ''
        return f'stale state {age:.3f} s (limit {stale_after_s:.3f} s){hint}', state
    return None, state


def stamp_ns(stamp) -> int:
    """A stamp as integer nanoseconds: exact, for pairing messages by stamp."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def sec_to_stamp(t: float, stamp=None):
    from builtin_interfaces.msg import Time
    stamp = stamp or Time()
    ns = int(round(t * 1e9))
    stamp.sec, stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    return stamp


def run_node(make_node: Callable[[], Node], args=None) -> int:
    """The standard rclpy main: init, spin, catch Ctrl-C and external shutdown, clean up.

    ``make_node`` may raise ``SystemExit`` (e.g. on a bad parameter) to exit with its code. A node may set
    ``self.exit_code`` and call ``rclpy.shutdown()``-free ``self.request_exit(code)`` to end the spin.
    Returns the process exit code.

    SIGINT and SIGTERM end the spin between two callbacks (never inside one: a recorder is never cut in the
    middle of a write), and ``close()`` runs while the context is still valid (its log lines reach /rosout)
    before the node is destroyed.
    """
    from rclpy.signals import SignalHandlerOptions
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = []
    signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    node = None
    executor = SingleThreadedExecutor()
    code = 0
    try:
        node = make_node()
        executor.add_node(node)
        while rclpy.ok() and not stop and getattr(node, 'exit_code', None) is None:
            executor.spin_once(timeout_sec=0.1)
        code = getattr(node, 'exit_code', None) or 0
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int) and e.code:
            print(e.code, file=sys.stderr)
    finally:
        executor.shutdown()
        if node is not None:
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def declare_settings(node: Node, section: str) -> dict:
    """Declare every parameter of ``section`` (a node section of config/defaults.yaml and config/<agent>.yaml,
    with the '/**' values) and return {name: value}: the defaults come from those files (mbmf_ros.settings),
    the values from the node's overrides (--params-file, launch parameters) where given.

    A value of the wrong type (an int where a float is expected is fine) or an unknown agent ends the node
    with SystemExit naming the node and the parameter.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    from mbmf_ros.settings import check_type, default_agent, load_settings
    dynamic = ParameterDescriptor(dynamic_typing=True)
    agent = node.declare_parameter('agent', default_agent(), dynamic).value
    try:
        defaults = load_settings(str(agent)).node(section)
    except ValueError as e:
        raise SystemExit(f'{node.get_name()}: parameter agent: {e}') from None
    values = {'agent': agent}
    for name, default in defaults.items():
        if name == 'agent':
            continue
        if isinstance(default, (list, tuple)) and not default:
            raise SystemExit(f'{node.get_name()}: parameter {name}: an empty list default has no type')
        value = node.declare_parameter(name, default, dynamic).value
        try:
            values[name] = check_type(f'{node.get_name()}: parameter {name}', default, value)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    return values


def agent_of(node_name: str, values: dict):
    """The AgentSpec a node runs, built from its declared values (``declare_settings``): the '/**' spec
    values and the planner's K/H as the node sees them. SystemExit naming the node for an unknown agent."""
    from mbmf_ros.core.agents import STRUCTURE, make_agent
    from mbmf_ros.settings import load_settings
    agent = values['agent']
    if agent not in STRUCTURE:
        raise SystemExit(f'{node_name}: parameter agent: unknown agent {agent!r}; known agents are '
                         f'{", ".join(sorted(STRUCTURE))}')
    settings = load_settings(agent)
    shared = {**settings.shared(), **{k: v for k, v in values.items() if k in settings.shared()}}
    planner = {**settings.node('mpc_planner'), **{k: v for k, v in values.items()
                                                   if k in settings.node('mpc_planner')}}
    try:
        return make_agent(agent, shared, planner)
    except ValueError as e:
        raise SystemExit(f'{node_name}: {e}') from None
