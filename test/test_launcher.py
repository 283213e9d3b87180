"""`mbmf-ros launch`: the graph runner starts real node processes, forwards signals, and ends with the graph."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mbmf_ros.graphs import GRAPHS

RUNNER = [sys.executable, '-m', 'mbmf_ros.cli', 'launch']


def children(pid: int) -> dict[int, str]:
    """pid -> command line of the live processes whose parent is `pid`."""
    found = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            if int(stat.rsplit(')', 1)[1].split()[1]) == pid and stat.rsplit(')', 1)[1].split()[0] != 'Z':
                found[int(entry.name)] = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.05)


def start_talk_graph(ros, procs, *assignments):
    runner = procs.start(RUNNER + ['talk', *assignments], name='runner')
    wait_until(lambda: len(children(runner.pid)) == 2 or runner.poll() is not None, 20, 'two node processes')
    assert runner.poll() is None, procs.output('runner')
    # Both nodes are up when the actor publishes and the echo node subscribes to it.
    ros.wait_for_publishers('/mbmf/action', 1, timeout=30)
    ros.spin_until(lambda: ros.node.count_subscribers('/mbmf/action') >= 1, 30, 'topic_echo subscribed')
    # Each node logs once it is configured; the runner prefixes that output with the node's name.
    wait_until(lambda: all(f'[{n}] ' in procs.output('runner') for n in ('random_actor', 'topic_echo')), 20,
               'both nodes to log')
    return runner, children(runner.pid)


def test_sigint_stops_every_node_within_5_s_with_code_0(ros, procs):
    runner, nodes = start_talk_graph(ros, procs, 'count:=0')
    t0 = time.monotonic()
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=5) == 0, procs.output('runner')
    wait_until(lambda: not any(Path(f'/proc/{pid}').exists() and 'Z' not in _state(pid) for pid in nodes),
               max(0.1, 5 - (time.monotonic() - t0)), 'all node processes gone')


def _state(pid: int) -> str:
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return 'Z'


def test_killed_required_node_stops_the_graph_with_its_code(ros, procs):
    runner, nodes = start_talk_graph(ros, procs, 'count:=0')
    echo_pid = next(pid for pid, cmd in nodes.items() if 'mbmf_ros.nodes.topic_echo' in cmd)
    os.kill(echo_pid, signal.SIGKILL)
    assert runner.wait(timeout=10) == 128 + signal.SIGKILL, procs.output('runner')
    actor_pid = next(pid for pid, cmd in nodes.items() if 'mbmf_ros.nodes.random_actor' in cmd)
    wait_until(lambda: _state(actor_pid) == 'Z' or not Path(f'/proc/{actor_pid}').exists(), 5, 'actor gone')


def test_graph_ends_by_itself_when_the_required_node_is_done(ros_env, tmp_path):
    out = subprocess.run(RUNNER + ['talk', 'count:=5', 'rate_hz:=50'], env=ros_env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '[topic_echo] --- 5' in out.stdout


@pytest.mark.parametrize('argv, message', [
    (['no_such_graph'], 'known graphs: ' + ', '.join(sorted(GRAPHS))),
    (['talk', 'count=3'], "malformed argument 'count=3': expected name:=value"),
    (['talk', 'nope:=1'], "graph 'talk' has no argument nope"),
    (['talk', 'echo_params:=/nonexistent/params.yaml'], 'parameter file /nonexistent/params.yaml does not exist'),
])
def test_bad_input_is_a_clear_error_and_starts_nothing(ros_env, argv, message):
    out = subprocess.run(RUNNER + argv, env=ros_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr


def test_parameter_files_and_remappings_reach_the_node(ros, procs, tmp_path):
    params = tmp_path / 'echo.yaml'
    # the node's full name, as the graph's own values (launch_ros writes a named node's dict so): a later file wins
    params.write_text('/topic_echo:\n  ros__parameters:\n    count: 2\n')
    runner = procs.start(RUNNER + ['talk', 'count:=0', f'echo_params:={params}', 'rate_hz:=50'], name='runner')
    assert runner.wait(timeout=60) == 0, procs.output('runner')   # the file's count:=2 overrode count:=0
    assert '[topic_echo] --- 2' in procs.output('runner')


def test_launch_files_use_the_same_graph_description():
    # The repo's own launch/ folder is importable as a namespace package: check for the real library.
    try:
        import launch
        from launch import LaunchDescription  # noqa: F401
    except ImportError:
        pytest.skip('the ROS 2 launch library is not installable on this machine')
    import importlib.util
    for graph in GRAPHS:
        path = Path(__file__).resolve().parent.parent / 'launch' / f'{graph}.launch.py'
        spec = importlib.util.spec_from_file_location(graph, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert isinstance(module.generate_launch_description(), launch.LaunchDescription)


def test_launch_arguments_and_nodes_come_from_the_graph_description():
    from mbmf_ros.launch_support import node_kwargs
    for graph_name, graph in GRAPHS.items():
        text = (Path(__file__).resolve().parent.parent / 'launch' / f'{graph_name}.launch.py').read_text()
        assert f"launch_description('{graph_name}')" in text
        defaults = {name: default for name, (default, _h) in graph.arguments.items()}
        kwargs = node_kwargs(graph_name, {})
        assert [k['name'] for k in kwargs] == [n.name for n in graph.nodes(defaults)]
        assert all(k['package'] == 'mbmf_ros' for k in kwargs)


def test_every_installed_node_executable_has_its_module():
    """setup.py's console scripts and CMake's `ros2 run` launchers name the same nodes, each with a main()."""
    import importlib
    import re
    repo = Path(__file__).resolve().parent.parent
    nodes = re.findall(r"'(\w+)'", re.search(r'NODES = \[(.*?)\]', (repo / 'setup.py').read_text(), re.S).group(1))
    cmake = re.search(r'set\(MBMF_NODES ([^)]*)\)', (repo / 'CMakeLists.txt').read_text()).group(1).split()
    assert sorted(nodes) == sorted(cmake)
    for name in nodes:
        assert callable(importlib.import_module(f'mbmf_ros.nodes.{name}').main), name
    used = {n.executable for g in GRAPHS.values() for n in g.nodes({k: v[0] for k, v in g.arguments.items()})}
    assert used <= set(nodes), used - set(nodes)


def test_a_node_that_ignores_sigint_is_escalated_and_named():
    """stop(): a node still running grace_s after SIGINT gets SIGTERM, and the log says which node and why (a
    real process that ignores SIGINT, in a graph object holding only it)."""
    import io
    import tempfile
    import threading

    from mbmf_ros.graphs import NodeDesc
    from mbmf_ros.launcher import RunningGraph
    code = ('import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print("ready", flush=True); '
            'time.sleep(60)')
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'ready'     # its handler is set
        graph = RunningGraph.__new__(RunningGraph)
        graph._output, graph._lock, graph._pumps = io.StringIO(), threading.Lock(), []
        graph._param_dir = tempfile.TemporaryDirectory()
        graph.nodes = {'stubborn': NodeDesc(name='stubborn', executable='none')}
        graph.processes, graph.exit_node = {'stubborn': proc}, None
        t0 = time.monotonic()
        assert graph.stop(grace_s=0.5) == -signal.SIGTERM
        assert time.monotonic() - t0 < 5
        assert '[launch] stubborn still running 0.5 s after SIGINT: sending SIGTERM' in graph._output.getvalue()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
