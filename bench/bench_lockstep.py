"""Lock-step throughput: control steps/s of the real DDS graph (bridge -> estimator -> random actor) beside an
in-process loop on the same model (Simulation + the same estimator + the same random actions), as a ratio.

    .venv/bin/python bench/bench_lockstep.py [--agent hexapod] [--steps 2000] [--quick]
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time

import numpy as np


def in_process(agent: str, steps: int) -> float:
    from mbmf_ros.sim.simulation import Simulation
    sim = Simulation(agent, max_episode_steps=steps)
    rng = np.random.default_rng(0)
    sim.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        sim.step(rng.uniform(-1, 1, sim.spec.action_dim))
    return steps / (time.perf_counter() - t0)


def over_dds(agent: str, steps: int) -> float:
    """Steps/s between the first and the last state seen by a listener node (start-up excluded)."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.SystemRandom().randint(1, 232)),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    os.environ.update(env)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from mbmf_ros import topics as T
    from mbmf_ros.msg import AgentState
    from mbmf_ros.nodes.common import CONTROL
    rclpy.init()
    node = rclpy.create_node('bench_lockstep')
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    stamps = []
    node.create_subscription(AgentState, T.STATE, lambda m: stamps.append(time.perf_counter()), CONTROL)
    py = sys.executable
    procs = [subprocess.Popen([py, '-m', f'mbmf_ros.nodes.{n}', '--ros-args'] + sum(
        (['-p', f'{k}:={v}'] for k, v in params.items()), []), env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for n, params in (
        ('state_estimator', {'agent': agent}),
        ('random_actor', {'agent': agent, 'seed': 0}),
        ('mujoco_bridge', {'agent': agent, 'max_episode_steps': steps, 'max_episodes': 1,
                           'min_state_subscribers': 2}))]
    try:
        deadline = time.monotonic() + 60 + steps / 20
        while len(stamps) < steps + 1 and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    if len(stamps) < 2:
        raise RuntimeError('no states over DDS: is the graph running?')
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--agent', default='hexapod')
    p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--quick', action='store_true', help='400 steps')
    a = p.parse_args()
    from mbmf_ros.core.agents import get_agent
    steps = 400 if a.quick else a.steps
    local = in_process(a.agent, steps)
    dds = over_dds(a.agent, steps)
    print(f'agent {a.agent}, {steps} control steps')
    print(f'in-process loop (sim + estimator):   {local:8.0f} steps/s')
    print(f'lock-step over DDS (3 processes):    {dds:8.0f} steps/s')
    print(f'ratio DDS / in-process:              {dds / local:8.3f}')
    dt = get_agent(a.agent).dt
    print(f'real-time factor over DDS at dt {dt} s:  {dds * dt:6.1f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
