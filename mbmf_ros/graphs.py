"""Node graphs of mbmf_ros: the one description behind both `launch/*.launch.py` (the ROS 2 launch API) and
`mbmf-ros launch GRAPH` (the package's own runner, for machines without the `launch` library).

A graph declares its arguments (name -> default, help) and a function that, given the argument values as
strings, returns the nodes to start. Parameters are dicts or YAML parameter files; `{config}` in a file path
stands for the package's config/ folder. Every node gets, in this order: config/defaults.yaml,
config/<agent>.yaml, the user's `params_file` (if given), then a dict of what the graph's arguments set (an
argument left '' sets nothing; one given wins over every file). The files are the one home of every default
(mbmf_ros/settings.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from mbmf_ros.settings import DEFAULTS_FILE, PACKAGE, config_dir, default_agent, load_settings

PARAMS_FILE_HELP = ("your ROS 2 parameter file, loaded after config/defaults.yaml and config/<agent>.yaml "
                    "(same layout: node_name: ros__parameters: ...; '' : none)")


@dataclass(frozen=True)
class NodeDesc:
    name: str                       # node name; also the prefix of its output
    executable: str                 # module mbmf_ros.nodes.<executable>, and `ros2 run mbmf_ros <executable>`
    parameters: list = field(default_factory=list)   # dicts and/or parameter-file paths
    remappings: list = field(default_factory=list)   # (from, to) pairs
    namespace: str = ''
    required: bool = True           # the graph stops when a required node exits, with its exit code
    arguments: list = field(default_factory=list)    # extra command-line arguments before --ros-args


@dataclass(frozen=True)
class GraphDesc:
    name: str
    description: str
    arguments: dict                 # name -> (default string, help)
    nodes: Callable[[dict], list]   # argument values -> [NodeDesc]


def parameter_files(agent: str, params_file: str = '') -> list:
    """The parameter files every node of an ``agent`` graph loads, in order: defaults, the agent's, the user's.
    A bad user file (not a ROS 2 parameter file, an unknown parameter, a wrong type) is a ValueError naming it."""
    user = [resolve_path(params_file)] if params_file else []
    load_settings(agent, user)          # checks the agent and the user's file before any node starts
    return [f'{{config}}/{DEFAULTS_FILE}', f'{{config}}/{agent}.yaml'] + user


def effective_parameters(graph_name: str, values: dict) -> dict:
    """{node name: {parameter: value}} as each node of the graph will have them (files, then dicts): the
    defaults of the node's own section (its executable's), then what the files give its name, then the dicts.
    What a run report records as its settings."""
    from mbmf_ros.settings import ALL_NODES, read_params_file
    graph = get_graph(graph_name)
    values = resolve_arguments(graph, values)
    agent = values.get('agent') or default_agent()
    base = load_settings(agent)
    out = {}
    for node in graph.nodes(values):
        params = base.node(node.executable)     # what the node declares, with these defaults
        layers = [read_params_file(resolve_path(str(p))) for p in node.parameters if not isinstance(p, dict)]
        for layer in layers:                    # ROS: every '/**' first, then the node's own sections
            params.update(layer.get(ALL_NODES, {}))
        for layer in layers:
            params.update(layer.get(node.name, {}))
        for p in node.parameters:               # the graph's dicts: the node's own section, last
            if isinstance(p, dict):
                params.update(p)
        out[node.name] = params
    return out


def resolve_path(value: str) -> str:
    return os.path.expanduser(value.replace('{config}', str(config_dir())))


def as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', '1', 'yes', 'on'):
        return True
    if text in ('false', '0', 'no', 'off'):
        return False
    raise ValueError(f'expected true or false, found {value!r}')


def _demo_nodes(args: dict) -> list:
    count = int(args['count'])
    files = parameter_files(args['agent'], args['params_file'])
    return [
        NodeDesc('random_actor', 'random_actor',
                 parameters=files + [{'agent': args['agent'], 'rate_hz': float(args['rate_hz']), 'seed': 1}],
                 required=False),
        NodeDesc('topic_echo', 'topic_echo',
                 parameters=files + [{'topic': '/mbmf/action', 'type': 'mbmf_ros/msg/ActionCommand', 'count': count}]
                 + ([args['echo_params']] if args['echo_params'] else [])),
    ]


GRAPHS: dict[str, GraphDesc] = {}


def register(graph: GraphDesc) -> GraphDesc:
    GRAPHS[graph.name] = graph
    return graph


register(GraphDesc(
    name='talk',
    description='Smallest real graph: random_actor publishes ActionCommand, topic_echo prints and exits.',
    arguments={'agent': ('hexapod', 'agent whose action size the actor uses'),
               'rate_hz': ('20.0', 'actions per second'),
               'count': ('10', 'messages to echo before exiting (0: until stopped)'),
               'echo_params': ('', 'optional parameter file for topic_echo'),
               'params_file': ('', PARAMS_FILE_HELP)},
    nodes=_demo_nodes,
))


def get_graph(name: str) -> GraphDesc:
    if name not in GRAPHS:
        raise KeyError(f'unknown graph {name!r}; known graphs: {", ".join(sorted(GRAPHS))}')
    return GRAPHS[name]


def resolve_arguments(graph: GraphDesc, given: dict) -> dict:
    """Defaults of the graph overridden by `given`; an unknown name is an error listing the known ones."""
    unknown = sorted(set(given) - set(graph.arguments))
    if unknown:
        raise KeyError(f'graph {graph.name!r} has no argument {", ".join(unknown)}; '
                       f'its arguments: {", ".join(sorted(graph.arguments)) or "(none)"}')
    values = {name: default for name, (default, _help) in graph.arguments.items()}
    values.update(given)
    return values


# --- the robot side on hardware: hardware_bridge (+ the emulated robot) ---------------------------------------
ROBOTS = ('sim', 'emulator', 'serial')


def emulator_link_path(out_dir: str = '') -> str:
    """Where the emulated robot's serial port appears (a symlink to its pty), unique per run."""
    import tempfile
    return os.path.join(out_dir or tempfile.gettempdir(), f'mbmf_robot_{os.getpid()}_{os.urandom(3).hex()}')


def _robot_nodes(agent: str, robot: str, port: str, emulator_config: str, bridge: dict, files: list,
                 unplug_s: str = '', extra_parameters: list | None = None) -> list:
    """hardware_bridge on `port` (the parameter `files` + `bridge`), and for robot 'emulator' the emulated
    robot whose pty `port` names (a symlink it keeps current; the bridge opens it once it exists). `unplug_s`
    '': the files' value."""
    if robot not in ('emulator', 'serial'):
        raise ValueError(f'robot must be one of {", ".join(ROBOTS)}, found {robot!r}')
    if not port:
        if robot == 'serial':
            raise ValueError('a real robot needs port:=DEVICE (e.g. /dev/ttyUSB0)')
        port = emulator_link_path()
    nodes = []
    if robot == 'emulator':
        nodes.append(NodeDesc('robot_emulator', 'robot_emulator', parameters=files + [{
            'agent': agent, 'config': resolve_path(emulator_config) if emulator_config else '', 'link_path': port,
            **({'unplug_s': float(unplug_s)} if unplug_s != '' else {})}]))
        bridge = {'reset_service': '/emulator/reset', **bridge}
    nodes.append(NodeDesc('hardware_bridge', 'hardware_bridge', parameters=files + [
        {'agent': agent, 'port': port, **bridge}] + (extra_parameters or [])))
    return nodes


# --- random data collection (SIM engineer) -------------------------------------------------------------------
def _collect_nodes(args: dict) -> list:
    """mujoco_bridge (lock-step) -> state_estimator -> random_actor, recorder writing one bag per rollout.
    The recorder is the node whose exit (after `rollouts` terminal states) ends the graph."""
    rollouts, steps, seed = int(args['rollouts']), int(args['steps']), int(args['seed'])
    if rollouts < 1 or steps < 1:
        raise ValueError(f'collect: rollouts and steps must be >= 1, found {rollouts} and {steps}')
    agent, robot = args['agent'], args['robot']
    files = parameter_files(agent, args['params_file'])
    if robot == 'sim':
        noise = {} if args.get('heading_noise', 'default') == 'default' \
            else {'heading_noise': as_bool(args['heading_noise'])}
        robot_nodes = [NodeDesc('mujoco_bridge', 'mujoco_bridge', parameters=files + [{
            'agent': agent, 'mode': 'lockstep', 'seed': seed, 'max_episode_steps': steps,
            'max_episodes': rollouts, 'min_state_subscribers': 2, **noise}])]
        estimator = {'agent': agent}
    else:
        # real time on the wall clock: each state from the latest mocap pose and telemetry
        robot_nodes = _robot_nodes(agent, robot, args['port'], args['emulator_config'], {
            'max_episode_steps': steps, 'max_episodes': rollouts, 'min_state_subscribers': 2}, files)
        estimator = {'agent': agent, 'sensor_sync': 'latest'}
    return robot_nodes + [
        NodeDesc('state_estimator', 'state_estimator', parameters=files + [estimator]),
        NodeDesc('random_actor', 'random_actor', parameters=files + [{
            'agent': agent, 'seed': seed + 1_000_003, 'hold_steps': int(args['hold_steps'])}]),
        NodeDesc('recorder', 'recorder', parameters=files + [{
            'output_dir': resolve_path(args['out']), 'split_by_episode': True, 'stop_after_episodes': rollouts}]),
    ]


register(GraphDesc(
    name='collect',
    description='Random data collection in lock-step over DDS: bridge, estimator, random actor, recorder '
                '(one bag per rollout; ends after the last rollout).',
    arguments={'agent': ('hexapod', 'agent name'),
               'rollouts': ('3', 'rollouts (episodes) to record'),
               'steps': ('200', 'control steps per rollout (fewer when the agent terminates)'),
               'out': ('bags/random', 'output folder: <out>/episode_NNNN per rollout'),
               'seed': ('0', 'seed of the start states and of the random actions'),
               'hold_steps': ('1', 'keep each random action this many steps (1 = i.i.d., the paper)'),
               'params_file': ('', PARAMS_FILE_HELP),
               'robot': ('sim', 'sim (MuJoCo, lock-step), emulator (the emulated robot over a serial pty, real '
                                'time) or serial (a real robot on port)'),
               'port': ('', 'serial device of the robot (robot serial), or where the emulator puts its pty'),
               'emulator_config': ('', 'a fault file: YAML of robot_emulator settings (config/defaults.yaml) on top'),
               'heading_noise': ('default', "start headings from U(-pi, pi): default (the agent's: trajectory-"
                                            "following data), true or false (moving-forward data)")},
    nodes=_collect_nodes,
))


def _planner_names() -> list:
    from mbmf_ros.core.planners import PLANNERS     # the registry: a new planner shows up here by itself
    return list(PLANNERS)


def default_model_path(agent: str) -> str:
    """The shipped checkpoint of an agent (made by `mbmf-ros make-model`), '{config}/models/<agent>.pt'."""
    return f'{{config}}/models/{agent}.pt'


def default_policy_path(agent: str) -> str:
    """The shipped distilled path follower of an agent (made by `mbmf-ros distill-follower`)."""
    return f'{{config}}/models/{agent}_follow_policy.pt'


PARTS = ('all', 'robot', 'offboard')
REALTIME_QOS = '{config}/realtime_qos.yaml'


def _follow_nodes(args: dict) -> list:
    """Bridge -> state_estimator -> mpc_planner (or a baseline actor) -> bridge, with the waypoint_manager
    turning /waypoints into the reference. Simulated time in simulation.

    part:=robot is what runs on (or next to) the robot: the bridge and the state estimator, and with
    controller:=policy the policy_controller (a 2x64 MLP: small enough for the robot's computer, and it keeps
    following when the link is down); part:=offboard is the rest, on a workstation: waypoint manager, planner
    (or baseline), recorder (record:=DIR) and trainer (trainer:=true). part:=all is both on one host."""
    agent, sim, controller, part = args['agent'], as_bool(args['sim']), args['controller'], args['part']
    if part not in PARTS:
        raise ValueError(f"follow: part must be one of {', '.join(PARTS)}, found {part!r}")
    if controller not in ('mpc', 'policy', 'zero', 'random'):
        raise ValueError(f"follow: controller must be mpc, policy, zero or random, found {controller!r}")
    if args['mode'] not in ('realtime', 'lockstep'):
        raise ValueError(f"follow: mode must be realtime or lockstep, found {args['mode']!r}")
    robot = 'sim' if sim else ('emulator' if as_bool(args['emulator']) else 'serial')
    from mbmf_ros.core.planners import PLANNERS
    if args['planner'] and args['planner'] not in PLANNERS:
        raise ValueError(f"follow: planner must be one of {', '.join(PLANNERS)}, found {args['planner']!r}")
    seed, sim_time = int(args['seed']), {'use_sim_time': True} if sim else {}
    # Across a link, a robot stopped by its watchdog lost its workstation: the path in hand is an old plan.
    split = part != 'all'
    # Real time (a real robot always is): the control loop keeps only the newest state and action
    # (config/realtime_qos.yaml).
    qos = [REALTIME_QOS] if args['mode'] == 'realtime' or not sim else []
    model = args['model'] or default_model_path(agent)
    files = parameter_files(agent, args['params_file'])
    if controller == 'mpc':
        # K and H only when given: otherwise the parameter files decide (config/<agent>.yaml, params_file)
        given = {name: int(args[name]) for name in ('num_samples', 'horizon') if args[name] != ''}
        if args['planner']:
            given['planner'] = args['planner']
        actor = NodeDesc('mpc_planner', 'mpc_planner', parameters=files + [{
            **sim_time, 'agent': agent, **given,
            'seed': seed, 'model_path': resolve_path(model), 'num_threads': int(args['num_threads']),
            'wait_for_reference': sim and args['mode'] == 'lockstep', 'latest_state_only': not sim,
            'stop_on_invalid': not sim, 'drop_path_on_robot_stop': split,
            'delay_compensation': not sim and as_bool(args['delay_compensation'])}] + qos)
    elif controller == 'policy':
        # the distilled follower: same topics and safety as mpc_planner, a 2x64 MLP instead of K x H predictions
        actor = NodeDesc('policy_controller', 'policy_controller', parameters=files + [{
            **sim_time, 'agent': agent, 'policy_path': resolve_path(args['policy'] or default_policy_path(agent)),
            'num_threads': int(args['num_threads']), 'wait_for_reference': sim and args['mode'] == 'lockstep',
            'stop_on_invalid': not sim}] + qos)
    else:
        actor = NodeDesc('baseline_actor', 'random_actor', parameters=files + [{
            'agent': agent, 'seed': seed, 'amplitude': 1.0 if controller == 'random' else 0.0}] + qos)
    # Recording the robot while it follows gives on-policy data (the paper's D_rl) for the next model.
    recorder = [NodeDesc('recorder', 'recorder', required=False, parameters=files + [{
        'output_dir': resolve_path(args['record']), 'split_by_episode': True}])] if args['record'] else []
    trainer = [NodeDesc('dynamics_trainer', 'dynamics_trainer', required=False, parameters=[{
        'agent': agent}])] if as_bool(args['trainer']) else []
    timeout = float(args['action_timeout_s'])      # 0: the bridge's own default
    if sim:
        robot_nodes = [NodeDesc('mujoco_bridge', 'mujoco_bridge', parameters=files + [{
            'agent': agent, 'mode': args['mode'], 'seed': seed, 'max_episode_steps': int(args['max_steps']),
            'max_episodes': 1, 'min_state_subscribers': int(args['min_state_subscribers']),
            'wait_for_reset': as_bool(args['wait_for_reset']),
            **({'action_timeout_s': timeout} if timeout > 0 else {})}] + qos)]
        estimator = {'agent': agent}
    else:
        # the robot runs in real time whatever `mode` says; an episode starts at once or on /mbmf/reset
        max_steps = int(args['max_steps'])
        robot_nodes = _robot_nodes(agent, robot, args['port'], args['emulator_config'], {
            'max_episode_steps': max(max_steps, 0), 'max_episodes': 1 if max_steps > 0 else 0,
            'min_state_subscribers': int(args['min_state_subscribers']),
            'wait_for_reset': as_bool(args['wait_for_reset']),
            **({'command_timeout_s': timeout} if timeout > 0 else {})}, files, unplug_s=args['unplug_s'],
            extra_parameters=qos)
        estimator = {'agent': agent, 'sensor_sync': 'latest'}
    onboard = robot_nodes + [NodeDesc('state_estimator', 'state_estimator', parameters=files + [estimator] + qos)]
    planning = [NodeDesc('waypoint_manager', 'waypoint_manager', parameters=files + [
        {**sim_time, 'agent': agent, 'relative_to_start': True, 'drop_path_on_robot_stop': split}] + qos)]
    # The policy is the robot's own controller; the planner and the baselines run where the planning runs.
    (onboard if controller == 'policy' else planning).append(actor)
    # The recorder starts first, so that it is listening before the first messages.
    return {'robot': onboard, 'offboard': recorder + trainer + planning,
            'all': recorder + trainer + onboard + planning}[part]


register(GraphDesc(
    name='follow',
    description='Waypoint following: publish a nav_msgs/Path on /waypoints (relative to the start pose) and '
                'the robot follows it with MPC over the learned dynamics model.',
    arguments={'agent': ('hexapod', 'agent name'),
               'sim': ('true', 'true: the MuJoCo bridge, on simulated time; false: hardware_bridge on port, '
                               'real time'),
               'port': ('', 'sim:=false: the robot\'s serial device (e.g. /dev/ttyUSB0)'),
               'emulator': ('false', 'sim:=false: start the emulated robot too (its pty becomes the port)'),
               'emulator_config': ('', 'a fault file: YAML of robot_emulator settings (config/defaults.yaml) on top'),
               'unplug_s': ('', "emulator: seconds the serial link stays away on /emulator/unplug ('' : "
                                'robot_emulator unplug_s of the parameter files)'),
               'delay_compensation': ('false', 'sim:=false: plan from the state rolled forward by its age plus a '
                                               "plan's time under the last action (the model predicts it)"),
               'mode': ('realtime', 'realtime: the simulated robot runs at wall-clock pace and waits for paths; '
                                    'lockstep: one step per action (deterministic, for evaluation)'),
               'model': ('', "dynamics checkpoint ('' : the shipped config/models/<agent>.pt)"),
               'planner': ('', 'the MPC planner: ' + ', '.join(_planner_names())
                           + " ('' : mpc_planner planner of the parameter files, random_shooting: the paper's)"),
               'controller': ('mpc', 'mpc; policy (the distilled follower, policy_controller); or a baseline: '
                                     'zero or random actions'),
               'policy': ('', "policy checkpoint for controller:=policy ('' : the shipped "
                              "config/models/<agent>_follow_policy.pt)"),
               'num_samples': ('', "K sampled action sequences ('' : mpc_planner num_samples of the parameter "
                                   'files, config/<agent>.yaml then params_file)'),
               'horizon': ('', "H planning horizon in steps ('' : from the parameter files, as num_samples)"),
               'params_file': ('', PARAMS_FILE_HELP + '; e.g. mpc_planner: ros__parameters: {alpha: 2.0}'),
               'seed': ('0', 'seed of the start state and of the planner'),
               'max_steps': ('-1', 'control steps before the episode ends (<= 0: no limit)'),
               'num_threads': ('1', 'torch threads of the planner'),
               'record': ('', "folder for rosbag2 bags of state, action and sensors ('': no recording); "
                              'train the next model on them with mbmf-ros train --rl-bags'),
               'min_state_subscribers': ('2', 'listeners of /mbmf/state the bridge waits for before it steps'),
               'wait_for_reset': ('false', 'true: the first episode starts only when /mbmf/reset is called'),
               'part': ('all', 'all: the whole graph on this host; robot: bridge, state estimator (and the policy '
                               'with controller:=policy), on the robot; offboard: waypoint manager, planner, '
                               'recorder, trainer, on a workstation'),
               'trainer': ('false', 'true: add the dynamics_trainer (/mbmf/train; announces new models to the '
                                    'planner)'),
               'action_timeout_s': ('0', "the bridge's watchdog period in s (real time): no action for this long "
                                         "and the robot stops (0: the bridge's default, 0.5 s simulated, "
                                         'hardware_bridge command_timeout_s of the parameter files on hardware)')},
    nodes=_follow_nodes,
))
