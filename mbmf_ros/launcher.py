"""The package's own graph runner: starts the nodes of a graph (mbmf_ros.graphs) as separate processes.

Each node runs as `python -m mbmf_ros.nodes.<executable> --ros-args ...` with its name, namespace, parameter
files and remappings; its output is prefixed with `[name]`. SIGINT/SIGTERM are forwarded; when a required node
exits, the others are stopped and the graph's exit code is that node's code.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import yaml

from mbmf_ros.graphs import NodeDesc, get_graph, resolve_arguments, resolve_path

_PR_SET_PDEATHSIG = 1


class GraphError(Exception):
    """A graph cannot be started as asked (unknown graph or argument, missing parameter file)."""


def parse_assignments(items: list[str]) -> dict:
    """`name:=value` strings -> dict; anything else is a GraphError naming the item."""
    values = {}
    for item in items:
        name, sep, value = item.partition(':=')
        if not sep or not name or not name.replace('_', '').isalnum():
            raise GraphError(f'malformed argument {item!r}: expected name:=value')
        values[name] = value
    return values


def _die_with_parent():
    # A child must not outlive the runner, even if the runner is killed with SIGKILL.
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def node_command(node: NodeDesc, param_dir: Path, python: str = sys.executable) -> list[str]:
    """The command line that starts one node, with its --ros-args."""
    cmd = [python, '-m', f'mbmf_ros.nodes.{node.executable}', *node.arguments, '--ros-args',
           '-r', f'__node:={node.name}']
    if node.namespace:
        cmd += ['-r', f'__ns:={node.namespace}']
    for i, params in enumerate(node.parameters):
        if isinstance(params, dict):
            path = param_dir / f'{node.name}_{i}.yaml'
            # Under the node's full name, as launch_ros does for a named node: ROS applies a node's own
            # section after every '/**' one, so a wildcard here would lose to the files' node sections.
            fqn = '/'.join(['', *filter(None, node.namespace.strip('/').split('/')), node.name])
            path.write_text(yaml.safe_dump({fqn: {'ros__parameters': params}}))
        else:
            path = Path(resolve_path(str(params)))
            if not path.is_file():
                raise GraphError(f'node {node.name}: parameter file {path} does not exist')
        cmd += ['--params-file', str(path)]
    for source, target in node.remappings:
        cmd += ['-r', f'{source}:={target}']
    return cmd


class RunningGraph:
    """Processes of one started graph. Use `wait()` for the end, `stop()` to end it."""

    def __init__(self, name: str, arguments: dict | None = None, env: dict | None = None,
                 output: IO[str] | None = None):
        try:
            self.graph = get_graph(name)
            self.arguments = resolve_arguments(self.graph, arguments or {})
            nodes = self.graph.nodes(self.arguments)
        except (KeyError, ValueError) as e:
            raise GraphError(str(e.args[0]) if e.args else str(e)) from None
        self._param_dir = tempfile.TemporaryDirectory(prefix=f'mbmf_{name}_')
        commands = [(node, node_command(node, Path(self._param_dir.name))) for node in nodes]
        self._output = output or sys.stdout
        self._lock = threading.Lock()
        self.nodes: dict[str, NodeDesc] = {}
        self.processes: dict[str, subprocess.Popen] = {}
        self._pumps = []
        for node, cmd in commands:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                    start_new_session=True, preexec_fn=_die_with_parent)
            self.nodes[node.name] = node
            self.processes[node.name] = proc
            pump = threading.Thread(target=self._pump, args=(node.name, proc), daemon=True)
            pump.start()
            self._pumps.append(pump)
        self.exit_node: str | None = None

    def _pump(self, name: str, proc: subprocess.Popen):
        for line in proc.stdout:
            with self._lock:
                self._output.write(f'[{name}] {line}' if line.endswith('\n') else f'[{name}] {line}\n')
                self._output.flush()

    def poll(self) -> int | None:
        """None while the graph runs; else its exit code (a required node's code, or 0 once all ended)."""
        for name, proc in self.processes.items():
            code = proc.poll()
            if code is not None and self.nodes[name].required:
                self.exit_node = self.exit_node or name
                return self.processes[self.exit_node].returncode
        if all(proc.poll() is not None for proc in self.processes.values()):
            return 0
        return None

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until a required node exits (then stop the rest) or `timeout` s pass (returns None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        self.stop()
        return code

    def stop(self, sig: int = signal.SIGINT, grace_s: float = 5.0) -> int:
        """SIGINT every running node, escalate to SIGTERM then SIGKILL after `grace_s`; returns the first
        non-zero exit code (or 0)."""
        previous = None
        for escalation in (sig, signal.SIGTERM, signal.SIGKILL):
            alive = {n: p for n, p in self.processes.items() if p.poll() is None}
            if alive and previous is not None:      # a node that ignores the stop is worth a line in the log
                with self._lock:
                    self._output.write(f'[launch] {", ".join(alive)} still running {grace_s:g} s after '
                                       f'{signal.Signals(previous).name}: sending {signal.Signals(escalation).name}\n')
                    self._output.flush()
            previous = escalation
            for proc in alive.values():
                try:
                    proc.send_signal(escalation)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace_s
            for proc in alive.values():
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if all(p.poll() is not None for p in self.processes.values()):
                break
        for pump in self._pumps:
            pump.join(timeout=1.0)
        self._param_dir.cleanup()
        if self.exit_node is not None:
            return self.processes[self.exit_node].returncode
        return next((p.returncode for p in self.processes.values() if p.returncode not in (0, -sig)), 0)


def start_graph(name: str, arguments: dict | None = None, env: dict | None = None,
                output: IO[str] | None = None) -> RunningGraph:
    return RunningGraph(name, arguments, env=env, output=output)


def exit_status(code: int) -> int:
    """A process exit status for a node's return code (killed by signal N -> 128 + N, as shells do)."""
    return 128 - code if code < 0 else code


def launch_main(graph: str, assignments: list[str]) -> int:
    """`mbmf-ros launch GRAPH name:=value ...`: run the graph in the foreground until it ends or a signal."""
    try:
        running = start_graph(graph, parse_assignments(assignments))
    except GraphError as e:
        print(f'mbmf-ros launch: {e}', file=sys.stderr)
        return 2
    stop_requested = threading.Event()

    def on_signal(signum, _frame):
        stop_requested.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (code := running.poll()) is None and not stop_requested.is_set():
            time.sleep(0.05)
        final = running.stop()
        return exit_status(code if code is not None else final)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
