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
    heading_noise: start headings from U(-pi, pi) in trajectory-following data (moving-forward data: never).
    ctrl_cost, ctrl_scale, alive_bonus: moving-forward reward r = v + alive_bonus - ctrl_cost*|a/ctrl_scale|^2.
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
    planner_defaults: dict
    forward_planner_defaults: dict
    velocity_filter_alpha: float = 1.0
    sim: dict = field(default_factory=dict)
    follow_speed_bl: float = 2.0     # body lengths/s a follow run is budgeted for (3x the time at this pace)

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


HEXAPOD = AgentSpec(
    name='hexapod', model_file=os.path.join(ASSETS, 'hexapod.xml'), root_body='base_link', planar=None,
    joints=(JointSpec('left_crank', 'left_front_crank', 'sincos'),
            JointSpec('right_crank', 'right_front_crank', 'sincos')),
    action_names=('left_motor', 'right_motor'),
    dt=0.05, frame_skip=50, body_length=0.10, max_episode_steps=400,
    velocity_frame='body', velocity_source='pose_difference', velocity_filter_alpha=0.7,
    start_noise_std=0.001, heading_noise=True,
    termination=(('cos_roll', 0.0, 1.0), ('cos_pitch', 0.0, 1.0)),   # on its side or back
    forward_velocity_element='vx', ctrl_cost=0.0, ctrl_scale=1.0, alive_bonus=0.0,
    # The original millirobot MPC used N=1000, H=4 at 20 Hz. In simulation H=4 (0.2 s, ~3 cm of travel) turns
    # too late: on the U-turn path the mean cross-track error was 7.7 cm with H=4 against 0.6 cm with H=10
    # (K=1000 or 500 alike), so the default looks 0.5 s ahead with half the samples (~45 ms a plan, 2 cores).
    planner_defaults={'num_samples': 500, 'horizon': 10},
    forward_planner_defaults={'num_samples': 1000, 'horizon': 4},
    # steering_gain: the motor board's mixing, target = mean + gain * half-difference of the two commands,
    # so that (1, -1) turns at ~3 rad/s instead of ~5 (DESIGN: turning on the spot is otherwise too fast).
    sim={'steering_gain': 0.6, 'average_rates': True,
         # The millirobot blog's Table 1 surfaces (Simulation(terrain=...), bridge parameter terrain): carpet grips
         # and gives under the legs; styrofoam is smoother and firmer. The model file's own floor: friction 0.9,
         # solref 0.004 s.
         'terrains': {'carpet': {'friction': 1.5, 'solref': (0.03, 0.7)},
                      'styrofoam': {'friction': 0.25, 'solref': (0.004, 1.0)}}},
)

SWIMMER = AgentSpec(
    name='swimmer', model_file=_gym_asset('swimmer.xml'), root_body='torso', planar='xy',
    joints=_hinges('motor1_rot', 'motor2_rot'), action_names=('motor1_rot', 'motor2_rot'),
    dt=0.15, frame_skip=15, body_length=0.3, max_episode_steps=500,   # timestep 0.01
    # The pose point is the centre of mass, as the paper's trajectory following (Fig. 3): the torso is the tip
    # of the chain and swings up to 0.2 m per step while the body as a whole creeps. Velocities come from its
    # differences (the torso's twist would not match it).
    velocity_frame='heading', velocity_source='pose_difference', start_noise_std=0.001, heading_noise=True,
    termination=(), forward_velocity_element='x', ctrl_cost=0.5, ctrl_scale=50.0, alive_bonus=0.0,
    # TF: the paper's K=5000, H=5 stalled at corners (completion 0.60-0.76 on the example turns); H=10 with
    # K=2000 finishes them at 0.02-0.08 BL mean cross-track in ~110 ms per plan (under the 150 ms period).
    planner_defaults={'num_samples': 2000, 'horizon': 10},
    forward_planner_defaults={'num_samples': 5000, 'horizon': 20},
    sim={'pose_point': 'com'},
    follow_speed_bl=0.5,   # its centre of mass swims ~0.2 m/s under MPC
)

HALF_CHEETAH = AgentSpec(
    name='half_cheetah', model_file=_gym_asset('half_cheetah.xml'), root_body='torso', planar='xz',
    joints=_hinges('bthigh', 'bshin', 'bfoot', 'fthigh', 'fshin', 'ffoot'),
    action_names=('bthigh', 'bshin', 'bfoot', 'fthigh', 'fshin', 'ffoot'),
    dt=0.01, frame_skip=1, body_length=1.0, max_episode_steps=1000,   # timestep 0.01
    velocity_frame='heading', velocity_source='twist', start_noise_std=0.001, heading_noise=False,
    termination=(), forward_velocity_element='x', ctrl_cost=0.05, ctrl_scale=1.0, alive_bonus=0.0,
    planner_defaults={'num_samples': 1000, 'horizon': 10},
    forward_planner_defaults={'num_samples': 1000, 'horizon': 20},
    sim={'pose_point': 'com_xy'},
)

HOPPER = AgentSpec(
    name='hopper', model_file=_gym_asset('hopper.xml'), root_body='torso', planar='xz',
    joints=_hinges('thigh_joint', 'leg_joint', 'foot_joint'),
    action_names=('thigh_joint', 'leg_joint', 'foot_joint'),
    dt=0.02, frame_skip=10, body_length=0.4, max_episode_steps=200,   # timestep 0.002
    velocity_frame='heading', velocity_source='twist', start_noise_std=0.001, heading_noise=False,
    # rllab/Gym hopper: alive while z > 0.7 and |pitch| < 0.2
    termination=(('z', 0.7, math.inf), ('cos_pitch', math.cos(0.2), 1.0)),
    forward_velocity_element='x', ctrl_cost=0.005, ctrl_scale=200.0, alive_bonus=1.0,
    planner_defaults={'num_samples': 1000, 'horizon': 40},
    forward_planner_defaults={'num_samples': 1000, 'horizon': 40},
    sim={'pose_point': 'com_xy'},
)

ANT = AgentSpec(
    name='ant', model_file=_gym_asset('ant.xml'), root_body='torso', planar=None,
    joints=_hinges('hip_1', 'ankle_1', 'hip_2', 'ankle_2', 'hip_3', 'ankle_3', 'hip_4', 'ankle_4'),
    action_names=('hip_4', 'ankle_4', 'hip_1', 'ankle_1', 'hip_2', 'ankle_2', 'hip_3', 'ankle_3'),
    dt=0.02, frame_skip=2, body_length=0.5, max_episode_steps=1000,   # timestep 0.01
    velocity_frame='heading', velocity_source='twist', start_noise_std=0.001, heading_noise=False,
    termination=(('z', 0.2, 1.0),),   # rllab ant: alive while 0.2 <= z <= 1.0
    forward_velocity_element='x', ctrl_cost=0.005, ctrl_scale=150.0, alive_bonus=0.5,
    planner_defaults={'num_samples': 7000, 'horizon': 15},
    forward_planner_defaults={'num_samples': 15000, 'horizon': 5},
    sim={'pose_point': 'com_xy'},
)

AGENTS = {a.name: a for a in (HEXAPOD, SWIMMER, HALF_CHEETAH, HOPPER, ANT)}


def get_agent(name: str) -> AgentSpec:
    """The spec of a named agent; ValueError listing the known agents for an unknown name."""
    try:
        return AGENTS[name]
    except KeyError:
        raise ValueError(f'unknown agent {name!r}: known agents are {", ".join(sorted(AGENTS))}') from None
