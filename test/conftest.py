"""Fixtures for mbmf_ros tests.

ROS isolation: each test that uses `ros_env`, `ros` or `procs` gets its own ROS_DOMAIN_ID and
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, so no traffic leaves this machine and concurrent runs do not meet.
Waiting is always on an event with a deadline (`spin_until`), never a bare sleep. Every process a test starts
is killed at teardown, by its pid.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _free_domain_id() -> int:
    # Fast DDS accepts 0..232; spread runs by pid and randomness so parallel pytest runs do not share one.
    return random.SystemRandom().randint(1, 232)


@pytest.fixture
def ros_env(monkeypatch, tmp_path):
    """Environment for ROS processes of this test (also applied to os.environ for in-process rclpy)."""
    domain = str(_free_domain_id())
    monkeypatch.setenv('ROS_DOMAIN_ID', domain)
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    monkeypatch.setenv('ROS_LOCALHOST_ONLY', '0')
    monkeypatch.setenv('ROS_LOG_DIR', str(tmp_path / 'ros_log'))
    monkeypatch.setenv('PYTHONUNBUFFERED', '1')
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    return dict(os.environ)


class RosHelper:
    """An in-process rclpy node with deadline-bounded waits."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f'test_{os.getpid()}_{random.randint(0, 1 << 30)}', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout: float, what: str = 'condition') -> None:
        """Spin until predicate() is true; fail the test with `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f'timed out after {timeout:.1f} s waiting for {what}')
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        """Keep processing callbacks for a while (e.g. to see that nothing more arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def collect(self, msg_type, topic: str, qos=None) -> list:
        from mbmf_ros.nodes.common import CONTROL
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos or CONTROL)
        return received

    def wait_for_message(self, msg_type, topic: str, timeout: float = 10.0, qos=None):
        received = self.collect(msg_type, topic, qos)
        self.spin_until(lambda: received, timeout, f'a message on {topic}')
        return received[0]

    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 10.0) -> None:
        self.spin_until(lambda: publisher.get_subscription_count() >= count, timeout,
                        f'{count} subscriber(s) of {publisher.topic_name}')

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 10.0) -> None:
        self.spin_until(lambda: self.node.count_publishers(topic) >= count, timeout,
                        f'{count} publisher(s) of {topic}')

    def wait_for_service(self, client, timeout: float = 10.0) -> None:
        self.spin_until(lambda: client.service_is_ready(), timeout, f'service {client.srv_name}')

    def call(self, client, request, timeout: float = 30.0):
        future = client.call_async(request)
        self.spin_until(future.done, timeout, f'a reply from {client.srv_name}')
        return future.result()

    def close(self) -> None:
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def ros(ros_env):
    helper = RosHelper()
    yield helper
    helper.close()


class Processes:
    """Processes started by one test; each one's output goes to a log file under tmp_path."""

    def __init__(self, env: dict, log_dir: Path):
        self.env, self.log_dir = env, log_dir
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, argv: list[str], name: str | None = None, env: dict | None = None, **kwargs):
        name = name or Path(argv[0]).name
        log = open(self.log_dir / f'{name}.log', 'w')
        proc = subprocess.Popen(argv, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=kwargs.pop('cwd', REPO), **kwargs)
        self.started[name] = proc
        return proc

    def node(self, executable: str, name: str | None = None, params: dict | None = None,
             ros_args: list[str] | None = None, **kwargs):
        """Start `python -m mbmf_ros.nodes.<executable>` with -p name:=value parameters."""
        argv = [sys.executable, '-m', f'mbmf_ros.nodes.{executable}', '--ros-args']
        for key, value in (params or {}).items():
            argv += ['-p', f'{key}:={_param_text(value)}']
        argv += ros_args or []
        return self.start(argv, name=name or executable, **kwargs)

    def output(self, name: str) -> str:
        return (self.log_dir / f'{name}.log').read_text(errors='replace')

    def stop(self, name: str, sig=signal.SIGINT, timeout: float = 10.0) -> int:
        proc = self.started[name]
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout)

    def kill_all(self) -> None:
        for proc in self.started.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 5
        for proc in self.started.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _param_text(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_param_text(v) if not isinstance(v, str) else repr(v) for v in value) + ']'
    return str(value)


@pytest.fixture
def procs(ros_env, tmp_path):
    log_dir = tmp_path / 'proc_logs'
    log_dir.mkdir()
    processes = Processes(ros_env, log_dir)
    yield processes
    processes.kill_all()
