"""Follow a waypoint path with the simulated robot and write a report (and a plot).

    mbmf-ros follow --agent hexapod --path config/paths/left_turn.yaml --report left.json --plot left.png
    mbmf-ros follow --agent hexapod --path PATH.yaml --report zero.json --baseline zero
    mbmf-ros follow --robot emulator [--emulator-config FILE] --path PATH.yaml --report r.json  # emulated robot
    mbmf-ros follow --robot serial --port /dev/ttyUSB0 --path PATH.yaml --report r.json          # a real robot
    mbmf-ros follow --agent hexapod --path PATH.yaml --report pol.json --controller policy [--policy FILE]

Starts the `follow` graph (mujoco_bridge in lock-step, state_estimator, waypoint_manager, mpc_planner), publishes
the path on /waypoints (relative to the robot's start pose), waits until the waypoint manager says done (or the
step budget / timeout runs out), stops every node and writes the report JSON: mean/max cross-track error,
completion (fraction of the path length covered), simulated duration, steps, and the run's settings.
Path file: YAML {frame_id: odom, waypoints: [[x, y], ...]} in metres.
On a robot (--robot emulator|serial) the graph runs in real time through hardware_bridge: the emulated robot is
put back first (/emulator/reset), the run starts with /mbmf/reset, and the report gains `link` (the bridge's
counters from /diagnostics: frames ok/corrupt/missing, commands rejected, watchdog stops, reconnects, round-trip
latency) and, for the emulator, `emulator` (what it injected). `--unplug-at-step N` pulls the emulated robot's
serial link for `--unplug-s` seconds at step N (a safety drill: the robot stops, the bridge reconnects).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mbmf_ros.core.waypoints import tracking_report
from mbmf_ros.io.paths import load_path_file  # noqa: F401 - the path files of the commands built on follow


@dataclass
class FollowRun:
    """What one follow run produced: the report and the traces for a plot."""
    report: dict
    path_xy: np.ndarray                       # (N, 2) waypoints in the world frame, metres
    trajectory_xy: np.ndarray                 # (T+1, 2) executed x, y
    predictions: list = field(default_factory=list)   # [(H+1, 2)] some predicted x/y paths of the planner


def run_follow(agent: str, path_xy: np.ndarray, frame_id: str = 'odom', model: str = '',
               planner: str | None = None, controller: str = 'mpc', num_samples: int | None = None,
               horizon: int | None = None, seed: int = 0, max_steps: int = 0, timeout_s: float = 300.0,
               log=sys.stderr, quiet: bool = False, record: str = '', params_file: str = '', policy: str = '',
               robot: str = 'sim', port: str = '', emulator_config: str = '', unplug_at_step: int = 0,
               unplug_s: float | None = None, delay_compensation: bool = False) -> FollowRun:
    """Run the follow graph once over DDS and measure the executed trajectory against the path.
    planner, num_samples, horizon, unplug_s: None = the parameter files' (config/, then ``params_file``).
    robot: sim (lock-step MuJoCo), emulator or serial (real time through hardware_bridge on port)."""
    from nav_msgs.msg import Path as PathMsg

    from mbmf_ros import topics as T
    from mbmf_ros.client import RUNNING, SUCCEEDED, FollowClient
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.waypoints import step_budget
    from mbmf_ros.graphs import effective_parameters
    from mbmf_ros.launcher import start_graph
    from mbmf_ros.msg import AgentState, MpcStatus
    from mbmf_ros.nodes.common import CONTROL, HISTORY, LATCHED, stamp_to_sec
    from mbmf_ros.nodes.waypoint_manager import msg_to_points
    from mbmf_ros.srv import ResetSim

    params_file = os.path.abspath(params_file) if params_file else ''
    spec = get_agent(agent, [params_file] if params_file else ())
    max_steps = max_steps or step_budget(path_xy, spec.follow_speed, spec.dt)
    arguments = {'agent': agent, 'model': model, 'planner': planner or '', 'controller': controller,
                 'num_samples': '' if num_samples is None else str(num_samples),
                 'horizon': '' if horizon is None else str(horizon), 'seed': str(seed), 'params_file': params_file,
                 'max_steps': str(max_steps), 'mode': 'lockstep', 'wait_for_reset': 'true', 'record': record,
                 'policy': policy}
    on_robot = robot != 'sim'
    if on_robot:
        from mbmf_ros.graphs import emulator_link_path
        if robot == 'serial' and not port:
            raise ValueError('--robot serial needs --port DEVICE')
        arguments.update(sim='false', emulator=str(robot == 'emulator').lower(),
                         port=port or emulator_link_path(), emulator_config=emulator_config,
                         unplug_s='' if unplug_s is None else str(unplug_s), delay_compensation=str(delay_compensation).lower())
    settings = effective_parameters('follow', arguments)     # what the nodes run with: the report records it
    client = FollowClient(f'follow_{os.getpid()}')
    node = client.node
    states, status, reference = [], [], []
    node.create_subscription(AgentState, T.STATE, states.append, HISTORY)   # with the publisher's history
    node.create_subscription(MpcStatus, T.MPC_STATUS, status.append, CONTROL)   # every one, for the report
    node.create_subscription(PathMsg, T.REFERENCE, reference.append, LATCHED)
    reset = node.create_client(ResetSim, T.RESET)
    diagnostics = {}
    if on_robot:
        from diagnostic_msgs.msg import DiagnosticArray
        from std_srvs.srv import Trigger

        def on_diagnostics(msg):
            for st in msg.status:
                diagnostics[st.name] = {kv.key: kv.value for kv in st.values}
        node.create_subscription(DiagnosticArray, T.DIAGNOSTICS, on_diagnostics, 10)
        emulator_reset = node.create_client(ResetSim, T.EMULATOR_RESET)
        unplug = node.create_client(Trigger, T.EMULATOR_UNPLUG)
    sink = open(os.devnull, 'w') if quiet else None
    graph = start_graph('follow', arguments, output=sink or log)
    wall0 = time.monotonic()

    def spin_until(predicate, what, within: float | None = None) -> bool:
        """Spin until predicate(); False after ``within`` seconds (if given); errors on the run's timeout."""
        t0 = time.monotonic()
        while not predicate():
            if time.monotonic() - wall0 > timeout_s:
                raise TimeoutError(f'no {what} after {timeout_s:.0f} s')
            if graph.poll() is not None:
                raise RuntimeError(f'the graph ended ({graph.exit_node} exited with '
                                   f'{graph.poll()}) before {what}')
            if within is not None and time.monotonic() - t0 > within:
                return False
            client.spin(0.05)
        return True

    def connected():
        # estimator publishing states to the waypoint manager, the controller and us; the controller acting
        # (the planner subscribes only once its model is loaded); the waypoint manager taking paths.
        listeners = 4 if record else 3     # the recorder too
        return (node.count_publishers(T.STATE) >= 1 and node.count_subscribers(T.STATE) >= listeners
                and node.count_publishers(T.ACTION) >= 1 and node.count_subscribers(T.ACTION) >= listeners - 2
                and node.count_subscribers(T.WAYPOINTS) >= 1 and reset.service_is_ready()
                and (not on_robot or robot == 'serial' or emulator_reset.service_is_ready())
                and (not on_robot or 'hardware_bridge: serial link' in diagnostics))

    try:
        spin_until(connected, 'connected graph')
        # The path goes out before the reset that makes the first state, so the waypoint manager anchors it at
        # the start pose of the episode. Matched endpoints can still include those of a graph that just ended
        # in the same domain (until their lease runs out): the client sends the path again until the waypoint
        # manager answers this very path (TrackingStatus.path_stamp), and the reset is called again until
        # answered.
        remaining = max(1.0, timeout_s - (time.monotonic() - wall0))
        if not client.follow_path(path_xy, frame_id, timeout=remaining):
            raise ValueError(f'the waypoint_manager {client.status().tracking.message}')
        if robot == 'emulator':     # the operator puts the robot back at the start
            spin_until(emulator_reset.call_async(ResetSim.Request(seed=seed)).done, 'reply from /emulator/reset')
        calls = []
        while True:
            calls.append(reset.call_async(ResetSim.Request(seed=seed)))
            if spin_until(calls[-1].done, 'reply from /mbmf/reset', within=5.0):
                break
        # the bridge answers in order: when the last call is answered, any earlier one that reached it was too
        episode = max(c.result().episode for c in calls if c.done())   # the bridge steps only after this reset
        if unplug_at_step > 0 and robot == 'emulator':
            spin_until(lambda: any(m.episode == episode and m.step >= unplug_at_step for m in states)
                       or client.result() != RUNNING, f'step {unplug_at_step}')
            unplug.call_async(Trigger.Request())
        spin_until(lambda: any(m.terminal and m.episode == episode for m in states)
                   or client.result() != RUNNING, 'end of the run')
        if on_robot:                 # the bridge's counters at the end of the run
            diagnostics.clear()
            spin_until(lambda: 'hardware_bridge: serial link' in diagnostics
                       and (robot == 'serial' or 'robot_emulator' in diagnostics), 'link diagnostics', within=5.0)
        client.spin(0.1)
        done = client.result() == SUCCEEDED
    finally:
        graph.stop()
        client.close()
        if sink is not None:
            sink.close()
    states = sorted({m.step: m for m in states if m.episode == episode}.values(), key=lambda m: m.step)
    anchored = [m for m in reference if m.poses]
    world_path = np.asarray(msg_to_points(anchored[-1]), dtype=np.float64) if anchored else path_xy
    ix, iy = spec.state_names.index('x'), spec.state_names.index('y')
    trajectory = np.array([[m.values[ix], m.values[iy]] for m in states])
    report = tracking_report(world_path, trajectory)
    solve = [s.solve_time_s for s in status if s.active]
    report.update({
        'agent': agent, 'controller': controller,
        'planner': (status[-1].planner if status else settings['mpc_planner']['planner']) if controller == 'mpc'
        else controller,
        'policy': policy if controller == 'policy' else '',
        'samples': int(status[-1].samples) if status else 0, 'horizon': int(status[-1].horizon) if status else 0,
        # steps count from the reset (step 0); a state this observer missed does not shorten the run
        'steps': int(states[-1].step), 'missed_states': int(states[-1].step + 1 - len(states)),
        'duration_s': stamp_to_sec(states[-1].header.stamp) - stamp_to_sec(states[0].header.stamp)
        + states[0].step * spec.dt, 'body_length_m': spec.body_length,
        'mean_cross_track_body_lengths': report['mean_cross_track_m'] / spec.body_length,
        'done': done, 'mean_solve_time_s': float(np.mean(solve)) if solve else 0.0,
        'wall_time_s': time.monotonic() - wall0, 'model': model, 'seed': seed,
        'zero_action_reasons': sorted({s.reason for s in status if not s.active}),
        'params_file': params_file, 'settings': settings,
    })
    if on_robot:
        report['robot'] = robot
        report['link'] = _numbers(diagnostics.get('hardware_bridge: serial link', {}))
        if robot == 'emulator':
            report['emulator'] = _numbers(diagnostics.get('robot_emulator', {}))
        report['invalid_states'] = sum(1 for m in states if not m.valid)
    predictions = [np.stack([s.predicted_x, s.predicted_y], 1) for s in status[::10] if s.active and s.predicted_x]
    return FollowRun(report, world_path, trajectory, predictions)


def _numbers(values: dict) -> dict:
    """DiagnosticStatus key/value strings back to numbers where they are numbers."""
    out = {}
    for key, text in values.items():
        try:
            out[key] = int(text)
        except ValueError:
            try:
                out[key] = float(text)
            except ValueError:
                out[key] = {'True': True, 'False': False, '': None}.get(text, text)
    return out


def plot_runs(path_xy: np.ndarray, runs: dict, out: str, title: str = '') -> None:
    """The path, the executed trajectory of each run ({label: FollowRun}) and some predicted plans."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(path_xy[:, 0], path_xy[:, 1], 'k--o', lw=1.5, ms=5, label='waypoints')
    colours = {'mpc': 'tab:blue', 'policy': 'tab:green', 'zero': 'tab:gray', 'random': 'tab:red'}
    for label, run in runs.items():
        r = run.report
        ax.plot(run.trajectory_xy[:, 0], run.trajectory_xy[:, 1], color=colours.get(label, None), lw=2,
                label=f"{label}: mean CTE {r['mean_cross_track_m'] * 100:.1f} cm, completion {r['completion']:.2f}")
        for i, pred in enumerate(run.predictions):
            ax.plot(pred[:, 0], pred[:, 1], color='tab:orange', lw=1, alpha=0.7,
                    label='predicted plans' if i == 0 else None)
    ax.set_aspect('equal', adjustable='datalim')
    ax.set_xlabel('x (m)')
    ax.set_ylabel('y (m)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def add_arguments(parser):
    parser.add_argument('--agent', default='hexapod', help='agent name (default hexapod)')
    parser.add_argument('--model', default='', help='dynamics checkpoint (default: the shipped one)')
    parser.add_argument('--path', required=True, help='path YAML {frame_id, waypoints: [[x, y], ...]}')
    parser.add_argument('--report', required=True, help='report JSON to write')
    parser.add_argument('--plot', help='PNG of path, trajectory and predicted plans')
    from mbmf_ros.core.planners import PLANNERS
    parser.add_argument('--planner', choices=list(PLANNERS),
                        help='MPC planner (default: mpc_planner planner of the parameter files: random_shooting, '
                             "the paper's)")
    parser.add_argument('--num-samples', type=int, help='K sampled action sequences (default: mpc_planner '
                        'num_samples of config/<agent>.yaml, or of --params-file)')
    parser.add_argument('--horizon', type=int, help='H planning steps (default: from the parameter files)')
    parser.add_argument('--params-file', default='', help='your ROS 2 parameter file, loaded by every node after '
                        'config/defaults.yaml and config/<agent>.yaml (node_name: ros__parameters: ...)')
    parser.add_argument('--baseline', choices=['zero', 'random'], help='run a baseline actor instead of MPC')
    parser.add_argument('--controller', choices=['mpc', 'policy'], default='mpc',
                        help='mpc (the planner) or policy (the distilled follower, policy_controller)')
    parser.add_argument('--policy', default='', help='policy checkpoint for --controller policy '
                        '(default: the shipped config/models/<agent>_follow_policy.pt)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--max-steps', type=int, default=0, help='step budget (0: from the path length)')
    parser.add_argument('--timeout', type=float, default=300.0, help='wall-clock limit in seconds')
    parser.add_argument('--record', default='', help='record the run into rosbag2 bags in this folder (D_rl)')
    parser.add_argument('--robot', default='sim', choices=['sim', 'emulator', 'serial'],
                        help='sim (MuJoCo, lock-step; default), emulator (the emulated robot over a serial pty, in '
                             'real time) or serial (a real robot on --port)')
    parser.add_argument('--port', default='', help='serial device of a real robot (--robot serial)')
    parser.add_argument('--emulator-config', default='', help='a fault file: YAML of robot_emulator settings '
                        '(config/defaults.yaml: byte_drop_rate, latency_ms, ...) applied on top')
    parser.add_argument('--unplug-at-step', type=int, default=0,
                        help='emulator: pull the serial link at this step (a safety drill; 0: never)')
    parser.add_argument('--unplug-s', type=float, default=None,
                        help='how long the link stays unplugged (default: robot_emulator unplug_s, config/)')
    parser.add_argument('--delay-compensation', action='store_true',
                        help='robot: plan from the state rolled forward by its age plus a plan\'s time under the '
                             'last action (for a planner slower than the control period)')


def run(args) -> int:
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    try:
        frame, points = load_path_file(args.path)
        result = run_follow(args.agent, points, frame, model=args.model, planner=args.planner,
                            controller=args.baseline or args.controller, num_samples=args.num_samples,
                            horizon=args.horizon, policy=args.policy,
                            seed=args.seed, max_steps=args.max_steps, timeout_s=args.timeout,
                            record=os.path.abspath(args.record) if args.record else '', robot=args.robot,
                            port=args.port, unplug_at_step=args.unplug_at_step, unplug_s=args.unplug_s,
                            delay_compensation=args.delay_compensation,
                            emulator_config=os.path.abspath(args.emulator_config) if args.emulator_config else '',
                            params_file=args.params_file)
    except (ValueError, TimeoutError, RuntimeError) as e:
        print(f'mbmf-ros follow: {e}', file=sys.stderr)
        return 2
    result.report['path_file'] = str(args.path)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(result.report, indent=2))
    if args.plot:
        plot_runs(result.path_xy, {args.baseline or args.controller: result}, args.plot, title=Path(args.path).stem)
    print(json.dumps(result.report, indent=2))
    return 0
