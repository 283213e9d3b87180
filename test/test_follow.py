"""The main job end to end: `mbmf-ros follow` runs the follow graph over DDS with the shipped hexapod model on a
path it was never tuned on, and measures itself against the path; baselines and bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLLOW = [sys.executable, '-m', 'mbmf_ros.cli', 'follow', '--agent', 'hexapod']


def write_path(tmp_path, text, name='path.yaml'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def follow(ros_env, tmp_path, path_file, *extra, timeout=240):
    report = tmp_path / 'report.json'
    out = subprocess.run(FOLLOW + ['--path', path_file, '--report', str(report), *extra], env=ros_env,
                         capture_output=True, text=True, timeout=timeout)
    return out, (json.loads(report.read_text()) if report.exists() else None)


def assert_bag_holds_the_run(rep, steps):
    """Every transition of a run of `steps` steps (as its observer counted them), each once and in order. At the
    end the whole graph is stopped at once: the last actions can still be in flight to a recorder that is behind
    (2 of 59 missing once on a loaded machine), and the robot, holding still on the planner's zero actions once
    the path is done, can take a step or more the observer stopped listening for (63 recorded for 62 once)."""
    assert rep.transitions >= steps - 2, rep.summary()
    assert rep.step_gaps == 0 and rep.duplicate_states == 0 and rep.orphan_actions == 0, rep.summary()


def test_shipped_model_follows_an_unseen_path_and_beats_the_zero_baseline(ros_env, tmp_path):
    path = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0], [0.4, 0.0], [0.6, 0.25]]\n')
    plot = tmp_path / 'follow.png'
    out, report = follow(ros_env, tmp_path, path, '--plot', str(plot))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert report['completion'] >= 0.9 and report['done']
    assert report['mean_cross_track_m'] < 0.5 * report['body_length_m']
    assert report['planner'] == 'random_shooting' and report['samples'] == 500 and report['horizon'] == 10
    assert report['missed_states'] == 0
    # lock-step: the planner holds the first state until the path reaches it, so no step goes unplanned
    assert set(report['zero_action_reasons']) <= {'path done'}, report['zero_action_reasons']
    assert report['steps'] > 0 and report['duration_s'] == pytest.approx(report['steps'] * 0.05)
    assert plot.stat().st_size > 10_000
    steps = report['steps']
    out, zero = follow(ros_env, tmp_path, path, '--baseline', 'zero', '--max-steps', str(steps))
    assert out.returncode == 0, out.stderr[-3000:]
    assert zero['controller'] == 'zero' and zero['steps'] == steps and zero['completion'] < 0.05
    assert zero['missed_states'] == 0


@pytest.mark.parametrize('planner', ['cem', 'mppi'])
def test_cem_and_mppi_take_a_sharp_corner(ros_env, tmp_path, planner):
    """A 127-degree corner: MPPI's weighted average of "turn left" and "turn right" used to stall there."""
    path = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0], [0.4, 0.0], [0.1, 0.25]]\n')
    out, report = follow(ros_env, tmp_path, path, '--planner', planner)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert report['planner'] == planner and report['done'] and report['completion'] >= 0.9
    assert report['mean_cross_track_m'] < 0.5 * report['body_length_m']


@pytest.mark.parametrize('text, message', [
    ('frame_id: odom\nwaypoints: [[0, 0]]\n', 'a path needs at least 2 waypoints, found 1'),
    ('frame_id: odom\nwaypoints: [[0, 0], [.nan, 1.0]]\n', 'waypoint 1 is not finite'),
    ('frame_id: base_link\nwaypoints: [[0, 0], [1, 0]]\n', "unknown frame_id 'base_link'"),
    ('waypoints: 3\n', 'waypoints must'),
    ('- [0, 0]\n', "expected a mapping with 'waypoints"),
])
def test_bad_path_files_are_refused_before_anything_starts(ros_env, tmp_path, text, message):
    out, report = follow(ros_env, tmp_path, write_path(tmp_path, text), timeout=60)
    assert out.returncode == 2 and message in out.stderr and report is None


def test_a_model_for_another_agent_is_refused_with_both_names(ros_env, tmp_path):
    import torch

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.dynamics import DynamicsModel
    from mbmf_ros.io.checkpoint import save_checkpoint
    spec = get_agent('swimmer')
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / 'swimmer.pt', DynamicsModel(spec.state_names, spec.action_names, (16,),
                                                                   agent='swimmer'), {})
    path = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0], [1, 0]]\n')
    out, report = follow(ros_env, tmp_path, path, '--model', str(model), timeout=120)
    assert out.returncode == 2 and report is None
    assert 'mpc_planner exited' in out.stderr
    assert "agent 'swimmer'" in out.stderr and "expected 'hexapod'" in out.stderr


def test_launched_follow_graph_takes_paths_from_send_path(ros_env, tmp_path, procs):
    """The user's way: `mbmf-ros launch follow` (real time, no step limit) and paths sent with send-path, one
    after the other, each followed from where the robot stands; send-path exits 0 when the robot is at the end."""
    cli = [sys.executable, '-m', 'mbmf_ros.cli']
    graph = procs.start(cli + ['launch', 'follow'], name='follow_graph')
    for name, text in (('ahead', '[[0, 0], [0.4, 0]]'), ('left', '[[0, 0], [0.2, 0], [0.3, 0.15]]')):
        path = write_path(tmp_path, f'frame_id: odom\nwaypoints: {text}\n', f'{name}.yaml')
        out = subprocess.run(cli + ['send-path', path, '--wait', '--timeout', '60'], env=ros_env,
                             capture_output=True, text=True, timeout=150)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:] + procs.output('follow_graph')[-3000:]
        assert 'accepted' in out.stdout and 'done:' in out.stdout
    assert graph.poll() is None, 'the graph waits for the next path'
    log = procs.output('follow_graph')
    assert 'realtime mode' in log and log.count('accepted a path') == 2
    assert procs.stop('follow_graph', timeout=20) == 0


def test_send_path_without_a_graph_or_with_a_bad_file(ros_env, tmp_path):
    cli = [sys.executable, '-m', 'mbmf_ros.cli', 'send-path']
    good = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0], [1, 0]]\n')
    out = subprocess.run(cli + [good, '--connect-timeout', '2'], env=ros_env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and 'is the follow graph running' in out.stderr
    bad = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0]]\n', 'bad.yaml')
    out = subprocess.run(cli + [bad], env=ros_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and 'at least 2 waypoints' in out.stderr


def test_the_shipped_swimmer_model_follows_a_turn(ros_env, tmp_path):
    """The paper's swimmer, its centre of mass on the path, with the model make-model ships for it."""
    path = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0], [0.3, 0.0], [0.45, 0.25]]\n')
    out, report = follow(ros_env, tmp_path, path, '--agent', 'swimmer')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert report['agent'] == 'swimmer' and report['done'] and report['completion'] >= 0.9
    assert report['mean_cross_track_m'] < 0.5 * report['body_length_m'] and report['missed_states'] == 0


def test_a_recorded_follow_run_trains_the_next_model(ros_env, tmp_path):
    """The paper's Alg. 1 data aggregation with real files: follow while recording (D_rl), then retrain the
    shipped model warm-started on random data (D_rand) mixed with the recorded run."""
    from mbmf_ros.io.bags import load_trajectories
    from mbmf_ros.io.checkpoint import load_checkpoint
    from mbmf_ros.graphs import default_model_path, resolve_path
    cli = [sys.executable, '-m', 'mbmf_ros.cli']
    path = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0], [0.4, 0]]\n')
    out, report = follow(ros_env, tmp_path, path, '--record', str(tmp_path / 'rl'))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trajs, rep = load_trajectories([str(tmp_path / 'rl')], agent='hexapod')
    assert len(trajs) == 1
    assert_bag_holds_the_run(rep, report['steps'])
    res = subprocess.run(cli + ['collect', '--rollouts', '2', '--steps', '40', '--seed', '3', '--out',
                                str(tmp_path / 'rand')], env=ros_env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    shipped = resolve_path(default_model_path('hexapod'))
    res = subprocess.run(cli + ['train', '--agent', 'hexapod', '--bags', str(tmp_path / 'rand'), '--rl-bags',
                                str(tmp_path / 'rl'), '--warm-start', shipped, '--epochs', '2', '--out',
                                str(tmp_path / 'next.pt'), '--quiet'], env=ros_env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    _, meta = load_checkpoint(tmp_path / 'next.pt', agent='hexapod')
    assert len(meta['rl_bags']) == 1 and len(meta['bags']) == 2 and meta['warm_start'] == shipped


def test_aggregate_runs_the_papers_algorithm_1(ros_env, tmp_path):
    """One aggregation iteration of `mbmf-ros mbrl`'s loop over the follow graph: follow with the shipped model
    while recording, retrain warm-started on D_rand + D_rl, follow again with the new model; figures and
    provenance land in the output folder, in mbrl's layout."""
    from mbmf_ros.io.bags import load_trajectories
    from mbmf_ros.io.checkpoint import load_checkpoint
    from mbmf_ros.graphs import default_model_path, resolve_path
    cli = [sys.executable, '-m', 'mbmf_ros.cli']
    res = subprocess.run(cli + ['collect', '--rollouts', '2', '--steps', '40', '--seed', '3', '--out',
                                str(tmp_path / 'rand')], env=ros_env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    path = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0], [0.4, 0]]\n', 'ahead.yaml')
    out = tmp_path / 'agg'
    res = subprocess.run(cli + ['aggregate', '--rand-bags', str(tmp_path / 'rand'), '--paths', path,
                                '--iterations', '1', '--epochs', '2', '--out', str(out)],
                         env=ros_env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'model 0 (' in res.stdout and 'model 1 (iter_1/model.pt)' in res.stdout
    summary = json.loads((out / 'summary.json').read_text())
    shipped = resolve_path(default_model_path('hexapod'))
    assert [row['model'] for row in summary['follow']] == [shipped, 'iter_1/model.pt']
    assert all(row['paths']['ahead']['done'] for row in summary['follow'])
    _, rep = load_trajectories([str(out / 'iter_1' / 'rl')], agent='hexapod')
    steps = summary['follow'][0]['paths']['ahead']['steps']
    assert steps == summary['total_steps'] - summary['random_steps']
    assert_bag_holds_the_run(rep, steps)
    _, meta = load_checkpoint(out / 'iter_1' / 'model.pt', agent='hexapod')
    assert meta['warm_start'] == shipped and len(meta['rl_bags']) == 1 and len(meta['bags']) == 2


def test_settings_come_from_the_agent_file_and_the_users_file(ros_env, tmp_path):
    """Editing config/hexapod.yaml (here a copy, named by MBMF_ROS_CONFIG) changes what the nodes run, and a
    --params-file goes on top: the planner's MpcStatus (the report's samples and horizon) shows both, and the
    report records the effective settings."""
    import shutil
    config = tmp_path / 'config'
    shutil.copytree(ROOT / 'config', config)
    agent_file = config / 'hexapod.yaml'
    agent_file.write_text(agent_file.read_text().replace('    horizon: 10 ', '    horizon: 7 '))
    mine = write_path(tmp_path, 'mpc_planner:\n  ros__parameters:\n    num_samples: 37\n', 'mine.yaml')
    path = write_path(tmp_path, 'frame_id: odom\nwaypoints: [[0, 0], [0.15, 0.0]]\n')
    out, report = follow({**ros_env, 'MBMF_ROS_CONFIG': str(config)}, tmp_path, path, '--params-file', mine,
                         '--max-steps', '40')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert report['samples'] == 37 and report['horizon'] == 7
    assert report['settings']['mpc_planner']['num_samples'] == 37
    assert report['settings']['mpc_planner']['horizon'] == 7 and report['settings']['mpc_planner']['beta'] == 5.0
    assert report['params_file'] == mine
    (tmp_path / 'report.json').unlink()
    bad = write_path(tmp_path, 'mpc_planner:\n  ros__parameters:\n    num_sample: 37\n', 'bad.yaml')
    out, report = follow(ros_env, tmp_path, path, '--params-file', bad)
    assert out.returncode == 2 and 'bad.yaml' in out.stderr and "'num_sample'" in out.stderr and report is None


def test_follow_client_drives_the_launched_graph(ros_env, tmp_path, procs):
    """mbmf_ros.client.FollowClient against `mbmf-ros launch follow`: two paths in a row, then a cancel mid-path:
    the robot's speed drops below a fifth of its walking speed within 3 control periods and stays there; status readable throughout; set_model
    swaps the planner's model. Lock-step (times are simulated time), so a busy machine cannot starve the planner."""
    import numpy as np

    from mbmf_ros import topics as T
    from mbmf_ros.client import CANCELED, SUCCEEDED, FollowClient
    from mbmf_ros.msg import AgentState
    from mbmf_ros.nodes.common import CONTROL, stamp_to_sec
    dt = 0.05
    graph = procs.start([sys.executable, '-m', 'mbmf_ros.cli', 'launch', 'follow', 'mode:=lockstep'],
                        name='follow_graph')
    with FollowClient() as robot:
        states = []
        robot.node.create_subscription(AgentState, T.STATE, states.append, CONTROL)
        assert robot.wait_until_ready(60), procs.output('follow_graph')[-3000:]
        seen = []
        for points in ([(0, 0), (0.15, 0)], [(0, 0), (0.1, 0), (0.15, 0.08)]):
            assert robot.follow_path(points)
            assert robot.wait(60, progress=seen.append), procs.output('follow_graph')[-3000:]
            status = robot.status()
            assert status.result == SUCCEEDED and status.tracking.done and status.mpc.active is not None
        assert len(seen) > 10 and all(s.tracking.path_stamp is not None for s in seen)
        assert max(s.mpc.samples for s in seen if s.mpc) == 500
        assert robot.follow_path([(0, 0), (1.0, 0)])
        assert robot.spin_until(lambda: robot.status().tracking.progress > 0.15, 60)
        moving = robot.status()
        assert moving.mpc.active and moving.result == 'running'
        robot.cancel()
        stopped_at = stamp_to_sec(robot.status().tracking.header.stamp)   # sim time of the waypoint_manager
        assert robot.spin_until(lambda: len([m for m in states if stamp_to_sec(m.header.stamp) > stopped_at])
                                >= 30, 60)                             # 30 control periods
        assert robot.spin_until(lambda: not robot.status().mpc.active, 10)
        status = robot.status()
        assert status.result == CANCELED and 'no reference' in status.mpc.reason, status.mpc.reason
        xy = {stamp_to_sec(m.header.stamp): (m.values[0], m.values[1]) for m in states}
        stamps = sorted(xy)
        speed = {t1: np.hypot(*np.subtract(xy[t1], xy[t0])) / (t1 - t0) for t0, t1 in zip(stamps, stamps[1:])}
        # stopped_at is the stamp of the newest status read after the cancel: on a loaded machine the graph
        # (lock-step) may already have stepped on, so the window before it ends with the robot slowing down.
        before = [v for t, v in speed.items() if stopped_at - 1.0 < t <= stopped_at]
        after = [v for t, v in speed.items() if t > stopped_at + 3 * dt + 1e-6]
        walking = max(before)
        assert walking > 0.05, before                              # it was walking (m/s; the gait's peak)
        # From 3 periods on (2 to stop, 1 for the status read's lag under load: 54 mm/s at 2 periods once) it
        # stays below a fifth of its walking speed; with zero commands the body still sags
        # on its velocity-servoed cranks (2-33 mm/s seen, depending on the pose and gait phase it stopped in),
        # so over the next 1.5 s it covers less than a tenth of what walking on would.
        creep = sum(v * dt for v in after[:30])
        assert len(after) >= 20 and max(after) < 0.2 * walking and creep < 0.1 * walking * 30 * dt, \
            (walking, creep, after)
        version = robot.set_model(str(ROOT / 'config' / 'models' / 'hexapod.pt'))
        assert robot.spin_until(lambda: robot.status().mpc.model_version == version, 30)
    assert graph.poll() is None
    assert procs.stop('follow_graph', timeout=20) == 0
