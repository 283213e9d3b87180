"""MuJoCo simulation of one agent (ROS-free): noisy resets, frame-skipped control steps, sensors, termination.

    sim = Simulation('hexapod')
    reading = sim.reset(seed=1)              # episode 0, step 0
    while True:
        step = sim.step(np.array([1.0, 1.0]))    # one control period (spec.dt s = frame_skip physics steps)
        if step.terminal: break

Time (``sim.time``, s) is monotonic across episodes: a reset continues the clock one control period after
the last state, so every state of a run has a unique stamp. The state is built from the sensor reading by
``core.estimation.StateEstimator``, the same code the ``state_estimator`` node runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from ..core.agents import AgentSpec, get_agent
from ..core.estimation import Estimate, SensorReading, StateEstimator


@dataclass
class StepResult:
    """reading: the sensors after the step; estimate: the state built from them (values (state_dim,));
    terminated: the agent left its healthy range; truncated: the step limit was reached;
    terminal = terminated or truncated."""
    reading: SensorReading
    estimate: Estimate
    terminated: bool
    truncated: bool

    @property
    def terminal(self) -> bool:
        return self.terminated or self.truncated


def check_action(action, action_dim: int) -> np.ndarray | None:
    """Validated action (action_dim,) float64 clipped to [-1, 1], or None when its length is wrong or it has
    a non-finite value (the caller then counts it and stops the robot with zeros)."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (action_dim,) or not np.all(np.isfinite(a)):
        return None
    return np.clip(a, -1.0, 1.0)


class Simulation:
    """One agent in MuJoCo. agent: name or AgentSpec; max_episode_steps: None = the spec's, 0 = no limit.
    heading_noise: start headings from U(-pi, pi); None = the spec's (``spec.heading_noise`` describes the
    trajectory-following data: the paper's A.1 draws the swimmer's heading for that task only).
    terrain: a name from ``spec.sim['terrains']`` (the hexapod: carpet, styrofoam): its sliding friction and
    contact softness (MuJoCo solref: time constant s, damping ratio) replace the model file's on every
    geom (MuJoCo takes the larger friction of a contact pair, so floor and legs change together); None: the
    model file's own surface."""

    def __init__(self, agent: str | AgentSpec, max_episode_steps: int | None = None, seed: int | None = None,
                 heading_noise: bool | None = None, terrain: str | None = None):
        self.spec = get_agent(agent) if isinstance(agent, str) else agent
        spec = self.spec
        self.model = mujoco.MjModel.from_xml_path(spec.model_file)
        self.data = mujoco.MjData(self.model)
        if self.model.nu != spec.action_dim:
            raise ValueError(f'{spec.model_file}: expected {spec.action_dim} actuators {spec.action_names}, '
                             f'found {self.model.nu}')
        for i, name in enumerate(spec.action_names):
            found = (mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, i),
                     mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_JOINT, self.model.actuator_trnid[i, 0]))
            if name not in found:   # the actuator's own name or the joint it drives must be the action name
                raise ValueError(f'{spec.model_file}: actuator {i}: expected {name}, found {found}')
        self.terrain = terrain or None
        if self.terrain is not None:
            terrains = spec.sim.get('terrains', {})
            if self.terrain not in terrains:
                raise ValueError(f'agent {spec.name}: unknown terrain {self.terrain!r}; expected one of '
                                 f'{sorted(terrains)}')
            surface = terrains[self.terrain]
            self.model.geom_friction[:, 0] = float(surface['friction'])
            self.model.geom_solref[:] = np.asarray(surface['solref'], dtype=np.float64)
        period = self.model.opt.timestep * spec.frame_skip
        if abs(period - spec.dt) > 1e-9:
            raise ValueError(f'agent {spec.name}: dt {spec.dt} s != timestep {self.model.opt.timestep} s x '
                             f'frame_skip {spec.frame_skip}')
        self.root = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, spec.root_body)
        if self.root < 0:
            raise ValueError(f'{spec.model_file}: no body {spec.root_body!r} (the agent spec root_body)')
        self.joint_adr = {}
        for j in spec.joints:
            jid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, j.mujoco_joint)
            if jid < 0:
                raise ValueError(f'{spec.model_file}: no joint {j.mujoco_joint!r} (agent spec joints)')
            self.joint_adr[j.mujoco_joint] = (self.model.jnt_qposadr[jid], self.model.jnt_dofadr[jid])
        self.max_episode_steps = spec.max_episode_steps if max_episode_steps is None else int(max_episode_steps)
        self.steering_gain = float(spec.sim.get('steering_gain', 1.0))
        self.average_rates = bool(spec.sim.get('average_rates', False))
        self.heading_noise = bool(spec.heading_noise if heading_noise is None else heading_noise)
        # 'com': the pose is at the centre of mass; 'com_xy': x, y of the centre of mass, z of the root body (the
        # height that the hopper's and ant's termination bounds are written for).
        self.pose_point = spec.sim.get('pose_point', 'root')
        if self.pose_point not in ('root', 'com', 'com_xy'):
            raise ValueError(f"agent {spec.name}: sim pose_point must be root, com or com_xy, found "
                             f"{self.pose_point!r}")
        self.estimator = StateEstimator(spec)
        self.rng = np.random.default_rng(seed)
        self.episode = -1
        self.step_count = 0
        self.time_offset = 0.0
        self.last_time = -spec.dt
        self.rejected_actions = 0
        self._avg_gyro = None

    @property
    def time(self) -> float:
        """Sim time, s, monotonic across episodes."""
        return self.time_offset + self.data.time

    def reset(self, seed: int | None = None) -> StepResult:
        """Start a new episode from the model's initial state plus noise (paper A.1): N(0, start_noise_std)
        on every position and velocity, and a heading from U(-pi, pi) when ``heading_noise``.
        seed: None continues this simulation's random stream. Returns step 0."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        m, d, spec = self.model, self.data, self.spec
        mujoco.mj_resetData(m, d)
        d.qpos[:] += self.rng.normal(0.0, spec.start_noise_std, m.nq)
        d.qvel[:] += self.rng.normal(0.0, spec.start_noise_std, m.nv)
        if self.heading_noise:
            heading = self.rng.uniform(-math.pi, math.pi)
            if m.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
                q = d.qpos[3:7].copy()
                rot = np.array([math.cos(heading / 2), 0.0, 0.0, math.sin(heading / 2)])
                mujoco.mju_mulQuat(d.qpos[3:7], rot, q)
            else:   # the swimmer: x, y slides then the rotation hinge
                d.qpos[2] = heading
        if m.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
            d.qpos[3:7] /= np.linalg.norm(d.qpos[3:7])
        mujoco.mj_forward(m, d)
        # The clock continues one control period after the last state of the previous episode.
        self.time_offset = self.last_time + spec.dt
        self.episode += 1
        self.step_count = 0
        self.estimator.reset()
        self._avg_gyro = None
        return self._result()

    def step(self, action) -> StepResult:
        """Advance one control period under action (action_dim,) in [-1, 1] (clipped). An action of the
        wrong length or with NaN/inf is rejected: counted in ``rejected_actions`` and replaced by zeros."""
        if self.episode < 0:
            raise RuntimeError('Simulation.step before reset()')
        a = check_action(action, self.spec.action_dim)
        if a is None:
            self.rejected_actions += 1
            a = np.zeros(self.spec.action_dim)
        m, d = self.model, self.data
        d.ctrl[:] = self.motor_targets(a)
        gyro_sum = np.zeros(3)
        for _ in range(self.spec.frame_skip):
            mujoco.mj_step(m, d)
            if self.average_rates:
                gyro_sum += self._body_velocity()[:3]
        # mj_step leaves poses and body velocities computed before its last integration: bring them up to the
        # new qpos/qvel, or the sensors lag one physics step (a whole control step for half_cheetah).
        mujoco.mj_forward(m, d)
        self._avg_gyro = gyro_sum / self.spec.frame_skip if self.average_rates else None
        self.step_count += 1
        return self._result()

    def motor_targets(self, a: np.ndarray) -> np.ndarray:
        """The actuator controls for a checked action (action_dim,): two-motor agents mix the commands as their
        motor board does (``steering_gain``); the device emulator drives the same physics through this."""
        if self.steering_gain != 1.0 and self.spec.action_dim == 2:
            mean, half = 0.5 * (a[0] + a[1]), 0.5 * (a[0] - a[1])
            return np.array([mean + self.steering_gain * half, mean - self.steering_gain * half])
        return np.asarray(a, dtype=np.float64)

    def _body_velocity(self) -> np.ndarray:
        """(6,) angular (rad/s) then linear (m/s) velocity of the root body, body frame.

        mjOBJ_XBODY: the body's own frame (xpos, xmat). mjOBJ_BODY would give it in the body's principal
        inertia frame, which for the swimmer and half_cheetah torsos is rotated against the body frame."""
        v = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_XBODY, self.root, v, 1)
        return v

    def sensors(self) -> SensorReading:
        """The sensor values now: pose, body-frame twist, gyro (averaged over the last control period when
        ``average_rates``: an IMU's low-pass filter) and joint angle/speed (speed averaged likewise)."""
        d = self.data
        vel = self._body_velocity()
        gyro = self._avg_gyro if self._avg_gyro is not None else vel[:3]
        joints = {}
        for name, (qa, da) in self.joint_adr.items():
            speed = d.qvel[da]
            if self.average_rates and self._prev_angles is not None:
                speed = (d.qpos[qa] - self._prev_angles[name]) / self.spec.dt
            joints[name] = (float(d.qpos[qa]), float(speed))
        # Stamps are whole nanoseconds, converted as a ROS stamp is (sec + nanosec * 1e-9): the estimator then
        # computes bit-identical velocities in process and behind DDS.
        ns = int(round(self.time * 1e9))
        stamp = ns // 1_000_000_000 + (ns % 1_000_000_000) * 1e-9
        position = d.xpos[self.root].copy()
        if self.pose_point != 'root':
            position[:2 if self.pose_point == 'com_xy' else 3] = d.subtree_com[self.root][:2 if self.pose_point
                                                                                            == 'com_xy' else 3]
        return SensorReading(stamp=stamp, position=position.copy(),
                             orientation=d.xquat[self.root].copy(), linear_velocity=vel[3:].copy(),
                             angular_velocity=np.array(gyro), joints=joints)

    _prev_angles = None

    def _result(self) -> StepResult:
        reading = self.sensors()
        self._prev_angles = {name: float(self.data.qpos[qa]) for name, (qa, _) in self.joint_adr.items()}
        estimate = self.estimator.update(reading)
        self.last_time = reading.stamp
        self._last_values = estimate.values
        terminated = bool(self.spec.terminated(estimate.values))
        truncated = 0 < self.max_episode_steps <= self.step_count
        return StepResult(reading, estimate, terminated, truncated)

    def state(self) -> np.ndarray:
        """The current state (state_dim,) as last estimated."""
        return self._last_values

    def accelerometer(self) -> np.ndarray:
        """(3,) m/s^2 specific force at the root body, body frame (for the Imu message)."""
        acc = np.zeros(6)
        mujoco.mj_rnePostConstraint(self.model, self.data)   # cacc is only computed when a sensor needs it
        mujoco.mj_objectAcceleration(self.model, self.data, mujoco.mjtObj.mjOBJ_BODY, self.root, acc, 1)
        R = self.data.xmat[self.root].reshape(3, 3)
        return acc[3:] - R.T @ self.model.opt.gravity
