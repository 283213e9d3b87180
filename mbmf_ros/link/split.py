"""The follow graph split across two hosts: the robot part in the robot namespace, the offboard part in the
workstation namespace, each a real `mbmf-ros launch follow part:=...` process tree, talking DDS over the link.

Used by the split-graph test and by bench/bench_split_link.py. Processes are started and stopped by pid (the
launcher's whole process group for a kill), their output goes to log files; `close()` stops what is left and
removes the namespaces. No rclpy in this process: observers run as commands inside the namespaces.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from mbmf_ros.link.netns import LinkedHosts
from mbmf_ros.link.relay import LinkSettings

CLI = [sys.executable, '-m', 'mbmf_ros.cli']
# "[WARN] [1764040000.123456789] [mujoco_bridge]: watchdog: ..." (rcutils' default console format)
LOG_TIME = re.compile(r'\[(\w+)\] \[(\d+\.\d+)\] \[([\w.]+)\]: (.*)')


def descendants(pid: int) -> list[int]:
    """Pids of the live processes under `pid` (children first found, then theirs), from /proc."""
    parents = {}
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


class SplitFollow:
    """Two hosts, one follow graph. `graph_args` go to both parts (agent, planner, num_samples, ...)."""

    def __init__(self, log_dir: str | os.PathLike, graph_args: dict | None = None,
                 link: LinkSettings | None = None, env: dict | None = None, domain_id: int | None = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.graph_args = dict(graph_args or {})
        self.hosts = LinkedHosts.create(settings=link, log_dir=self.log_dir)
        domain = domain_id if domain_id is not None else random.SystemRandom().randint(1, 232)
        base = dict(env if env is not None else os.environ)
        base.setdefault('PYTHONUNBUFFERED', '1')
        self.env = LinkedHosts.ros_env(base, domain)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        self._starts: dict[str, int] = {}

    # --- processes ----------------------------------------------------------------------------------------
    def start(self, name: str, host: str, argv: list[str]) -> subprocess.Popen:
        """Start argv inside a host's namespace, in its own process group, output to <log_dir>/<name>.log."""
        self._starts[name] = self._starts.get(name, 0) + 1
        log_path = self.log_dir / f'{name}.log'
        log = open(log_path, 'a')
        log.write(f'=== start {self._starts[name]} at {time.time():.6f}\n')
        log.flush()
        env = dict(self.env, ROS_LOG_DIR=str(self.log_dir / 'ros_log'))
        proc = subprocess.Popen(self.hosts.exec_argv(host, argv), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs[name], self._logs[name] = proc, log_path
        return proc

    def start_part(self, part: str, **extra) -> subprocess.Popen:
        """`mbmf-ros launch follow part:=robot|offboard` on the robot / the workstation."""
        host = 'robot' if part == 'robot' else 'workstation'
        args = {**self.graph_args, **extra, 'part': part}
        return self.start(part, host, CLI + ['launch', 'follow'] + [f'{k}:={v}' for k, v in args.items()])

    def send_path(self, path_file: str, report: str | os.PathLike, timeout_s: float = 60.0,
                  connect_timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        """`mbmf-ros send-path FILE --wait --report REPORT` on the workstation, to the end of the path."""
        argv = CLI + ['send-path', str(path_file), '--wait', '--timeout', str(timeout_s), '--connect-timeout',
                      str(connect_timeout_s), '--report', str(report)]
        env = dict(self.env, ROS_LOG_DIR=str(self.log_dir / 'ros_log'), COLUMNS='100')
        return subprocess.run(self.hosts.exec_argv('workstation', argv), env=env, capture_output=True, text=True,
                              timeout=timeout_s + connect_timeout_s + 30)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> float:
        """Send sig to `name` and every process under it (the launcher and each node it started, all by pid):
        with SIGKILL the part is gone at once, as if its computer died. Returns the wall time (time.time())
        at which the signal was sent."""
        proc = self.procs[name]
        pids = descendants(proc.pid) + [proc.pid]
        t = time.time()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        proc.wait(30)
        return t

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(10)

    def output(self, name: str) -> str:
        return self._logs[name].read_text(errors='replace') if name in self._logs else ''

    def log_events(self, name: str, pattern: str) -> list[tuple[float, str]]:
        """(wall time, message) of the log lines of `name` whose message contains `pattern`."""
        events = []
        for line in self.output(name).splitlines():
            m = LOG_TIME.search(line)
            if m and pattern in m.group(4):
                events.append((float(m.group(2)), m.group(4)))
        return events

    def wait_for_log(self, name: str, pattern: str, timeout: float, after: float = 0.0) -> float:
        """Wall time of the first log line of `name` containing `pattern` (logged after `after`); TimeoutError
        naming what was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [t for t, _ in self.log_events(name, pattern) if t >= after]
            if hits:
                return hits[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f'no {pattern!r} in the log of {name} after {timeout:.0f} s')
            if name in self.procs and self.procs[name].poll() is not None:
                raise RuntimeError(f'{name} exited with {self.procs[name].returncode} before {pattern!r}:\n'
                                   + self.output(name)[-3000:])
            time.sleep(0.05)

    def relay_event(self, pattern: str, timeout: float) -> float:
        """Wall time at which the relay applied settings containing `pattern` (e.g. 'cut=True')."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.hosts.relay_log.read_text().splitlines():
                m = re.match(r'relay settings at (\d+\.\d+): (.*)', line)
                if m and pattern in m.group(2):
                    return float(m.group(1))
            if time.monotonic() > deadline:
                raise TimeoutError(f'the relay did not apply {pattern!r} in {timeout:.0f} s')
            time.sleep(0.01)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.hosts.destroy()
