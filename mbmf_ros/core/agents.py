"""Agent specifications: the state and action layouts, timing and paper hyperparameters of every agent (ROS-free).

An ``AgentSpec`` is the one description of an agent shared by the simulator, the state estimator (which
builds the state from sensor values, the same way for the simulator and a real robot), the recorder, the
dynamics model and the planners. Values come from the paper's appendix (Nagabandi et al. 2017):
A.3 (dt, horizon H, number of sampled action sequences K) and C (moving-forward rewards).

State layout (``core/state.py``): ``x, y, yaw`` (world pose, m and rad), then pose-invariant elements:
``z`` (m, height of the root body), ``sin_roll, cos_roll, sin_pitch, cos_pitch``, joint angles (rad, or
``sin_<j>, cos_<j>`` for unlimited joints such as the hexapod's cranks), linear velocities ``vx, vy, vz``
(m/s, in the frame ``velocity_frame`` names), angular velocities ``wx, wy, wz`` (rad/s, body frame, the
gyro) and joint speeds ``<j>_speed`` (rad/s). Planar agents keep only the elements of their plane.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'sim', 'assets')


def _gym_asset(name: str) -> str:
    """Path of one of Gymnasium's MuJoCo model files (gymnasium/envs/mujoco/assets/<name>)."""
    import importlib.util
    spec = importlib.util.find_spec('gymnasium')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f'agent model {name}: the gymnasium package is not installed '
                                '(its MuJoCo model files are needed for the paper agents)')
    return os.path.join(list(spec.submodule_search_locations)[0], 'envs', 'mujoco', 'assets', name)


@dataclass(frozen=True)
class JointSpec:
    """One actuated or passive joint that enters the state.

    mujoco_joint: joint name in the MJCF; name: the element name used in the state; encoding: 'angle'
    (raw radians, for limited joints) or 'sincos' (unlimited joints such as cranks).
    """
    name: str
    mujoco_joint: str
    encoding: str = 'angle'


@dataclass(frozen=True)
class AgentSpec:
    """Everything the package needs to know about one agent.

    name: agent name; model_file: MJCF path; root_body: the body whose pose is the agent's pose.
    planar: None (free 3-D body), 'xz' (half_cheetah, hopper: y = 0, yaw = 0 always) or 'xy' (swimmer).
    joints: joints in the state, in order. action_names: one per actuator, each in [-1, 1].
    dt: control period (s) = frame_skip * MJCF timestep. body_length (m), max_episode_steps (control steps).
    velocity_frame: 'body' (rotated by the full body orientation) or 'heading' (rotated by yaw only).
    velocity_source: 'twist' (the bridge's odometry twist; a simulator has it) or 'pose_difference'
    (differences of successive poses, filtered: what a robot with motion capture and no velocity sensor gets).
    start_noise_std: std of the Gaussian noise on the start positions and velocities (paper A.1: N(0, 0.001)).
    termination: (element, low, high) bounds; the episode ends when an element leaves [low, high]
    (cos_pitch bounds encode |pitch| limits).
    forward_velocity_element: the state element of the paper's moving-forward reward (appendix C): a velocity,
    or 'x' for the rate of change of the world x of the pose point (the paper's agents: their centre of mass,
    as rllab's ``get_body_comvel('torso')[0]``; their body-frame vx would reward swimming in any direction).
    planning_termination: (element, low, high) bounds the planner holds a predicted state to instead of the
    ``termination`` bound of the same element (config ``planning_termination``: {element: [low, high]}): a
    model's one-step error of a degree must not turn the candidate that rides the true bound into a fall.
    heading_noise: start headings from U(-pi, pi) in trajectory-following data (moving-forward data: never).
    ctrl_cost, ctrl_scale, alive_bonus: moving-forward reward r = v + alive_bonus - ctrl_cost*|a/ctrl_scale|^2.
    termination_penalty: what a planner's objective subtracts when a candidate is predicted to terminate (never
    part of the reward; ``MovingForwardTask``). plan_height_min, plan_height_max (m), plan_height_penalty (per m):
    a planner's objective subtracts the penalty times how far each predicted step's height (its ballistic apex)
    leaves [min, max] (0: none; ``Task.planning_penalty``), for both tasks. plan_pitch_max (rad),
    plan_pitch_penalty (per rad): the same for each predicted step's |pitch| above plan_pitch_max (0: none).
    plan_support_sigma, plan_support_penalty (per standard deviation): trajectory following only, the same for
    each element of a predicted step's state (without the pose) that leaves +-sigma standard deviations of the
    model's training data around its mean (``Task.support_band``; 0: none).
    planner_defaults: {'num_samples': K, 'horizon': H} for trajectory following (the product task; for the
    hopper, which has no TF entry, its moving-forward values); forward_planner_defaults: the same for
    moving forward. sim: simulator parameters (see ``sim/simulation.py``). follow_speed_bl: the pace (body
    lengths/s) that sets the step budget of a follow run (3x the time at this pace, plus 2 s).
    """
    name: str
    model_file: str
    root_body: str
    planar: str | None
    joints: tuple
    action_names: tuple
    dt: float
    frame_skip: int
    body_length: float
    max_episode_steps: int
    velocity_frame: str
    velocity_source: str
    start_noise_std: float
    heading_noise: bool
    termination: tuple
    forward_velocity_element: str
    ctrl_cost: float
    ctrl_scale: float
    alive_bonus: float
    termination_penalty: float
    plan_height_min: float
    plan_height_max: float
    plan_height_penalty: float
    planner_defaults: dict
    forward_planner_defaults: dict
    velocity_filter_alpha: float = 1.0
    planning_termination: tuple = ()
    sim: dict = field(default_factory=dict)
    follow_speed_bl: float = 2.0     # body lengths/s a follow run is budgeted for (3x the time at this pace)
    plan_pitch_max: float = 0.0
    plan_pitch_penalty: float = 0.0
    plan_support_sigma: float = 0.0
    plan_support_penalty: float = 0.0

    @property
    def follow_speed(self) -> float:
        """m/s a follow run is budgeted for."""
        return self.follow_speed_bl * self.body_length

    @property
    def state_names(self) -> tuple:
        """Element names of the full state, (state_dim,): x, y, yaw first."""
        return state_layout(self)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def index(self, element: str) -> int:
        """Position of a state element; ValueError naming the agent and its elements if absent."""
        try:
            return self.state_names.index(element)
        except ValueError:
            raise ValueError(f'agent {self.name}: no state element {element!r}; elements are '
                             f'{", ".join(self.state_names)}') from None

    def terminated(self, states) -> np.ndarray:
        """Termination test, vectorised: states (..., state_dim) -> bool (...). Non-finite states terminate."""
        states = np.asarray(states, dtype=np.float64)
        done = ~np.all(np.isfinite(states), axis=-1)
        for element, low, high in self.termination:
            v = states[..., self.index(element)]
            done |= (v < low) | (v > high)
        return done


def state_layout(spec: AgentSpec) -> tuple:
    names = ['x', 'y', 'yaw', 'z']
    if spec.planar is None:
        names += ['sin_roll', 'cos_roll', 'sin_pitch', 'cos_pitch']
    elif spec.planar == 'xz':
        names += ['sin_pitch', 'cos_pitch']
    elif spec.planar == 'xy':
        names = ['x', 'y', 'yaw']         # the swimmer lies on the floor: no height, no tilt
    for j in spec.joints:
        names += [f'sin_{j.name}', f'cos_{j.name}'] if j.encoding == 'sincos' else [j.name]
    names += {None: ['vx', 'vy', 'vz', 'wx', 'wy', 'wz'], 'xz': ['vx', 'vz', 'wy'],
              'xy': ['vx', 'vy', 'wz']}[spec.planar]
    names += [f'{j.name}_speed' for j in spec.joints]
    return tuple(names)


def _hinges(*names) -> tuple:
    return tuple(JointSpec(n, n) for n in names)


# The structure of each agent: its model, joints, actions and termination bounds. Every value one might tune
# (dt, body length, noise, rewards, K and H, simulator options) lives in config/<agent>.yaml, the ROS 2
# parameter file its nodes load; ``make_agent`` joins the two.
STRUCTURE = {
    'hexapod': dict(
        model_file=os.path.join(ASSETS, 'hexapod.xml'), root_body='base_link', planar=None,
        joints=(JointSpec('left_crank', 'left_front_crank', 'sincos'),
                JointSpec('right_crank', 'right_front_crank', 'sincos')),
        action_names=('left_motor', 'right_motor'),
        termination=(('cos_roll', 0.0, 1.0), ('cos_pitch', 0.0, 1.0))),   # on its side or back
    'swimmer': dict(
        model_file=lambda: _gym_asset('swimmer.xml'), root_body='torso', planar='xy',
        joints=_hinges('motor1_rot', 'motor2_rot'), action_names=('motor1_rot', 'motor2_rot'), termination=()),
    'half_cheetah': dict(
        model_file=lambda: _gym_asset('half_cheetah.xml'), root_body='torso', planar='xz',
        joints=_hinges('bthigh', 'bshin', 'bfoot', 'fthigh', 'fshin', 'ffoot'),
        action_names=('bthigh', 'bshin', 'bfoot', 'fthigh', 'fshin', 'ffoot'), termination=()),
    'hopper': dict(
        model_file=lambda: _gym_asset('hopper.xml'), root_body='torso', planar='xz',
        joints=_hinges('thigh_joint', 'leg_joint', 'foot_joint'),
        action_names=('thigh_joint', 'leg_joint', 'foot_joint'),
        # rllab/Gym hopper: alive while z > 0.7 and |pitch| < 0.2
        termination=(('z', 0.7, math.inf), ('cos_pitch', math.cos(0.2), 1.0))),
    'ant': dict(
        model_file=lambda: _gym_asset('ant.xml'), root_body='torso', planar=None,
        joints=_hinges('hip_1', 'ankle_1', 'hip_2', 'ankle_2', 'hip_3', 'ankle_3', 'hip_4', 'ankle_4'),
        action_names=('hip_4', 'ankle_4', 'hip_1', 'ankle_1', 'hip_2', 'ankle_2', 'hip_3', 'ankle_3'),
        termination=(('z', 0.2, 1.0),)),   # rllab ant: alive while 0.2 <= z <= 1.0
}

# AgentSpec fields read from the '/**' section of config/<agent>.yaml (same names).
SPEC_PARAMETERS = ('dt', 'frame_skip', 'body_length', 'max_episode_steps', 'velocity_frame', 'velocity_source',
                   'velocity_filter_alpha', 'start_noise_std', 'heading_noise', 'forward_velocity_element',
                   'ctrl_cost', 'ctrl_scale', 'alive_bonus', 'termination_penalty', 'plan_height_min', 'plan_height_max',
                   'plan_height_penalty', 'follow_speed_bl', 'plan_pitch_max', 'plan_pitch_penalty',
                   'plan_support_sigma', 'plan_support_penalty')


def make_agent(name: str, shared: dict | None = None, planner: dict | None = None,
               params_files=()) -> AgentSpec:
    """The AgentSpec of ``name``: its STRUCTURE here, its values from parameters.

    shared: the '/**' parameters (SPEC_PARAMETERS and sim.*), planner: the mpc_planner parameters (num_samples,
    horizon, moving_forward.num_samples, moving_forward.horizon); each defaults to config/<agent>.yaml with
    ``params_files`` on top (mbmf_ros.settings). A node passes its own declared values, so its spec is what its
    parameters say. ValueError for an unknown agent or a missing value (naming the file and the parameter).
    """
    from mbmf_ros.settings import load_settings
    if name not in STRUCTURE:
        raise ValueError(f'unknown agent {name!r}: known agents are {", ".join(sorted(STRUCTURE))}')
    if shared is None or planner is None:
        settings = load_settings(name, params_files)
        shared = settings.shared() if shared is None else shared
        planner = settings.node('mpc_planner') if planner is None else planner
    missing = [k for k in SPEC_PARAMETERS if k not in shared] + \
        [k for k in ('num_samples', 'horizon', 'moving_forward.num_samples', 'moving_forward.horizon')
         if k not in planner]
    if missing:
        raise ValueError(f'agent {name}: config/{name}.yaml lacks {", ".join(missing)} '
                         "('/**' and mpc_planner sections)")
    structure = dict(STRUCTURE[name])
    if callable(structure['model_file']):
        structure['model_file'] = structure['model_file']()
    values = {k: shared[k] for k in SPEC_PARAMETERS}
    return AgentSpec(
        name=name, **structure, **values,
        planning_termination=_planning_bounds(name, structure['termination'], shared),
        planner_defaults={'num_samples': int(planner['num_samples']), 'horizon': int(planner['horizon'])},
        forward_planner_defaults={'num_samples': int(planner['moving_forward.num_samples']),
                                  'horizon': int(planner['moving_forward.horizon'])},
        sim=_nest({k[len('sim.'):]: v for k, v in shared.items() if k.startswith('sim.')}))


def _planning_bounds(name: str, termination, shared: dict) -> tuple:
    """(element, low, high) of the '/**' planning_termination.<element>: [low, high] parameters; ValueError naming
    config/<name>.yaml and the parameter for an element without a termination bound or a bad pair."""
    bounded = [element for element, _lo, _hi in termination]
    out = []
    for key, value in shared.items():
        if not key.startswith('planning_termination.'):
            continue
        element = key[len('planning_termination.'):]
        ok = isinstance(value, (list, tuple)) and len(value) == 2
        if not ok or element not in bounded or not float(value[0]) < float(value[1]):
            raise ValueError(f'agent {name}: config/{name}.yaml /** {key} must be [low, high] (low < high) for one '
                             f'of the termination elements {bounded}; found {value!r}')
        out.append((element, float(value[0]), float(value[1])))
    return tuple(out)


def _nest(flat: dict) -> dict:
    """Dotted names back into nested mappings ({'terrains.carpet.friction': 1.5} -> {'terrains': {...}})."""
    out: dict = {}
    for name, value in flat.items():
        *parents, last = name.split('.')
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


class _Agents(dict):
    """name -> AgentSpec from config/<agent>.yaml, built when first asked for."""

    def __init__(self):
        super().__init__((name, None) for name in STRUCTURE)

    def __getitem__(self, name):
        spec = super().__getitem__(name)
        if spec is None:
            spec = make_agent(name)
            super().__setitem__(name, spec)
        return spec

    def values(self):
        return [self[n] for n in self]

    def items(self):
        return [(n, self[n]) for n in self]

    def get(self, name, default=None):
        return self[name] if name in self else default


AGENTS = _Agents()


def get_agent(name: str, params_files=()) -> AgentSpec:
    """The spec of a named agent (config/<agent>.yaml, then ``params_files``); ValueError listing the known
    agents for an unknown name."""
    if name not in STRUCTURE:
        raise ValueError(f'unknown agent {name!r}: known agents are {", ".join(sorted(STRUCTURE))}')
    return make_agent(name, params_files=params_files) if params_files else AGENTS[name]
