"""random_actor: answers each AgentState with a uniform random ActionCommand in [-1, 1] (paper A.1).

Parameters: agent (action size), seed (int; the same seed and the same sequence of states give the same
actions), rate_hz (0: lock-step, one action per non-terminal AgentState with its stamp and step; > 0:
free-running at that rate for the real-time bridge, stamped now), hold_steps (each random action is kept for
this many steps; 1 = the paper's i.i.d. actions), max_actions (0 = unlimited; then the node exits 0),
amplitude (actions are uniform in [-amplitude, amplitude]; 0 gives the zero-action baseline).
"""
from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node

from mbmf_ros import topics as T
from mbmf_ros.msg import ActionCommand, AgentState
from mbmf_ros.nodes.common import CONTROL, HISTORY, agent_of, declare_settings, overridable, run_node


class RandomActor(Node):
    def __init__(self):
        super().__init__('random_actor')
        # Every parameter and its default: config/defaults.yaml (random_actor, /**).
        v = declare_settings(self, 'random_actor')
        seed, self.rate_hz, self.hold_steps = v['seed'], v['rate_hz'], v['hold_steps']
        self.max_actions, self.amplitude = v['max_actions'], v['amplitude']
        if self.hold_steps < 1 or self.rate_hz < 0 or self.max_actions < 0 or not 0 <= self.amplitude <= 1:
            raise SystemExit(f'random_actor: expected hold_steps >= 1, rate_hz >= 0, max_actions >= 0, '
                             f'0 <= amplitude <= 1; found {self.hold_steps}, {self.rate_hz}, {self.max_actions}, '
                             f'{self.amplitude}')
        self.spec = agent_of('random_actor', v)
        self.rng = np.random.default_rng(seed)
        self.sent = 0
        self.current = None
        self.last_state = None
        self.exit_code = None
        self.pub = self.create_publisher(ActionCommand, T.ACTION, HISTORY)
        self.create_subscription(AgentState, T.STATE, self.on_state, **overridable(CONTROL))
        if self.rate_hz > 0:
            self.create_timer(1.0 / self.rate_hz, self.on_timer)
        a = self.amplitude
        self.get_logger().info(f'{self.spec.name}: uniform random actions in [{-a}, {a}]^{self.spec.action_dim}, seed '
                               f'{seed}, ' + (f'{self.rate_hz} Hz' if self.rate_hz else 'one per state (lock-step)')
                               + (f', held {self.hold_steps} steps' if self.hold_steps > 1 else ''))

    def next_values(self) -> list:
        if self.current is None or self.sent % self.hold_steps == 0:
            self.current = self.amplitude * self.rng.uniform(-1.0, 1.0, self.spec.action_dim)
        return [float(v) for v in self.current]

    def send(self, stamp, step):
        msg = ActionCommand()
        msg.header.stamp = stamp
        msg.values = self.next_values()
        msg.step = step
        msg.source = 'random' if self.amplitude > 0 else 'zero'
        self.pub.publish(msg)
        self.sent += 1
        if self.max_actions and self.sent >= self.max_actions:
            self.exit_code = 0

    def on_state(self, msg: AgentState):
        self.last_state = msg
        if self.rate_hz == 0 and not msg.terminal:
            self.send(msg.header.stamp, msg.step)

    def on_timer(self):
        step = self.last_state.step if self.last_state is not None else 0
        self.send(self.get_clock().now().to_msg(), step)


def main(args=None):
    return run_node(lambda: RandomActor(), args)


if __name__ == '__main__':
    sys.exit(main())
