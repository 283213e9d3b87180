"""State construction from sensor values (ROS-free), the same code for the simulator and the real robot.

The sensors are those the bridges publish (DESIGN §3): a world pose of the root body (motion capture /
odometry pose), an odometry twist (the simulator has one; a real robot may not), an IMU (gyro) and joint
encoders. ``StateEstimator.update(reading)`` turns one ``SensorReading`` into the agent's state vector by
its ``AgentSpec``: yaw and sin/cos of roll and pitch from the orientation, linear velocities from the twist
or from filtered pose differences, gyro, joint angles (raw or sin/cos) and speeds.

Missing or late sensors never produce NaN: the last good value is held (zeros before the first), the
estimate is marked invalid and a flag names what was missing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .agents import AgentSpec


@dataclass
class SensorReading:
    """Sensor values at one instant. Any field may be None (sensor missing).

    stamp: s. position: (3,) m, world. orientation: (4,) quaternion (w, x, y, z), world-from-body.
    linear_velocity: (3,) m/s, body frame (the odometry twist, ROS convention: child frame).
    angular_velocity: (3,) rad/s, body frame (gyro). joints: {mujoco joint name: (angle rad, speed rad/s)}.
    ages: {sensor: age in s} of each sensor relative to ``stamp`` (0 for synchronous simulator data).
    pose_stamp: s, when the pose was measured if not at ``stamp`` (a motion-capture frame taken a little
    before the state): pose differences divide by the time between the poses themselves.
    """
    stamp: float
    position: np.ndarray | None = None
    orientation: np.ndarray | None = None
    linear_velocity: np.ndarray | None = None
    angular_velocity: np.ndarray | None = None
    joints: dict | None = None
    ages: dict = field(default_factory=dict)
    pose_stamp: float | None = None


@dataclass
class Estimate:
    """values: (state_dim,) float64, never NaN; valid: all sensors present and fresh; flags: what was not."""
    values: np.ndarray
    valid: bool
    flags: list


def quat_to_matrix(q) -> np.ndarray:
    """Rotation matrix (3, 3) world-from-body of a unit quaternion (w, x, y, z) (normalised here)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / max(np.linalg.norm(q), 1e-12)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def orientation_angles(R: np.ndarray, planar: str | None) -> tuple:
    """(roll, pitch, yaw) in rad from a rotation matrix.

    Free bodies: Z-Y-X (yaw-pitch-roll) angles. 'xz' agents rotate about y only: pitch = atan2(R02, R00)
    over the full circle (a half-cheetah may flip), roll = yaw = 0. 'xy' agents rotate about z only.
    """
    if planar == 'xz':
        return 0.0, math.atan2(R[0, 2], R[0, 0]), 0.0
    if planar == 'xy':
        return 0.0, 0.0, math.atan2(R[1, 0], R[0, 0])
    yaw = math.atan2(R[1, 0], R[0, 0])
    pitch = math.asin(max(-1.0, min(1.0, -R[2, 0])))
    roll = math.atan2(R[2, 1], R[2, 2])
    return roll, pitch, yaw


class StateEstimator:
    """Builds AgentState values from sensor readings for one agent.

    spec: the agent. velocity_source / velocity_filter_alpha: default from the spec; 'pose_difference'
    estimates the linear velocity as v = alpha * (p_t - p_{t-1}) / (t - t_prev) + (1 - alpha) * v_prev
    (world frame, then rotated into ``spec.velocity_frame``). max_age: s, a sensor older than this is late.
    """

    def __init__(self, spec: AgentSpec, velocity_source: str | None = None,
                 velocity_filter_alpha: float | None = None, max_age: float | None = None):
        self.spec = spec
        self.velocity_source = velocity_source or spec.velocity_source
        if self.velocity_source not in ('twist', 'pose_difference'):
            raise ValueError(f'velocity_source: expected twist or pose_difference, found {self.velocity_source!r}')
        self.alpha = spec.velocity_filter_alpha if velocity_filter_alpha is None else float(velocity_filter_alpha)
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f'velocity_filter_alpha: expected in (0, 1], found {self.alpha}')
        self.max_age = 2.5 * spec.dt if max_age is None else float(max_age)
        self.names = spec.state_names
        self._last = {}
        self.reset()

    def reset(self):
        """Forget the pose history (a new episode: no velocity from a pose difference across episodes)."""
        self._prev_pose = None          # (stamp, position (3,))
        self._v_world = np.zeros(3)

    def update(self, r: SensorReading) -> Estimate:
        flags = []
        spec = self.spec

        def get(key, value, size):
            age = r.ages.get(key, 0.0)
            ok = value is not None and np.all(np.isfinite(value))
            if ok and age <= self.max_age:
                self._last[key] = np.asarray(value, dtype=np.float64).reshape(size)
            elif not ok:
                flags.append(f'{key} missing' if value is None else f'{key} not finite')
            else:
                flags.append(f'{key} stale {age:.2f} s')
                self._last[key] = np.asarray(value, dtype=np.float64).reshape(size)
            return self._last.get(key, np.zeros(size) if key != 'orientation' else np.array([1.0, 0, 0, 0]))

        pos = get('position', r.position, 3)
        quat = get('orientation', r.orientation, 4)
        R = quat_to_matrix(quat)
        roll, pitch, yaw = orientation_angles(R, spec.planar)
        gyro = get('angular_velocity', r.angular_velocity, 3)

        if self.velocity_source == 'twist':
            v_world = R @ get('linear_velocity', r.linear_velocity, 3)
        else:
            if 'position' in self._last and r.position is not None and np.all(np.isfinite(r.position)):
                t_pose = r.stamp if r.pose_stamp is None else r.pose_stamp
                if self._prev_pose is None or t_pose > self._prev_pose[0]:   # the same pose again: keep v
                    if self._prev_pose is not None:
                        raw = (pos - self._prev_pose[1]) / (t_pose - self._prev_pose[0])
                        self._v_world = self.alpha * raw + (1.0 - self.alpha) * self._v_world
                    self._prev_pose = (t_pose, pos.copy())
            v_world = self._v_world
        if spec.velocity_frame == 'body':
            v = R.T @ v_world
        else:   # heading frame: rotate by -yaw only
            c, s = math.cos(yaw), math.sin(yaw)
            v = np.array([c * v_world[0] + s * v_world[1], -s * v_world[0] + c * v_world[1], v_world[2]])

        joint_angle, joint_speed = [], []
        joints = r.joints or {}
        for j in spec.joints:
            key = f'joint {j.mujoco_joint}'
            got = joints.get(j.mujoco_joint)
            val = get(key, None if got is None else np.asarray(got, dtype=np.float64), 2)
            joint_angle.append(val[0])
            joint_speed.append(val[1])

        out = [pos[0], pos[1] if spec.planar != 'xz' else 0.0, yaw if spec.planar != 'xz' else 0.0]
        if spec.planar is None:
            out += [pos[2], math.sin(roll), math.cos(roll), math.sin(pitch), math.cos(pitch)]
        elif spec.planar == 'xz':
            out += [pos[2], math.sin(pitch), math.cos(pitch)]
        for j, a in zip(spec.joints, joint_angle):
            out += [math.sin(a), math.cos(a)] if j.encoding == 'sincos' else [a]
        if spec.planar is None:
            out += list(v) + list(gyro)
        elif spec.planar == 'xz':
            out += [v[0], v[2], gyro[1]]
        else:
            out += [v[0], v[1], gyro[2]]
        out += joint_speed
        values = np.asarray(out, dtype=np.float64)
        if len(values) != len(self.names):   # a layout bug, never bad input
            raise AssertionError(f'estimator built {len(values)} values for {len(self.names)} names')
        return Estimate(values=values, valid=not flags, flags=flags)
