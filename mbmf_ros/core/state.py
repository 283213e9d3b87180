"""The state convention shared by data, dynamics, planners and tasks (ROS-free).

Every agent's full state vector starts with its planar world pose ``(x, y, yaw)`` (metres, radians),
followed by pose-invariant elements (heights, sin/cos of roll and pitch, body-frame velocities, joint
angles as sin/cos, ...). The dynamics model never sees ``x, y, yaw`` (the dynamics do not depend on where
the robot stands or faces); it predicts the pose change in the body frame of the current pose, and
``apply_delta`` rolls the world pose forward so a task can score it.

All functions take numpy arrays or torch tensors of shape (..., state_dim) and return the same kind.
"""
from __future__ import annotations

import math

POSE_DIM = 3
POSE_NAMES = ('x', 'y', 'yaw')


def _lib(a):
    if type(a).__module__.startswith('torch'):
        import torch
        return torch
    import numpy
    return numpy


def wrap_angle(a):
    """Angle(s) wrapped to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def model_input(states):
    """The pose-invariant part of the state that the dynamics model sees: (..., state_dim - 3)."""
    return states[..., POSE_DIM:]


def delta_target(states, next_states):
    """Training target of the dynamics model: body-frame pose change + change of the other elements.

    states, next_states: (..., state_dim). Returns (..., state_dim):
    [dx_body, dy_body, dyaw (wrapped), next[3:] - state[3:]].
    """
    lib = _lib(states)
    dx = next_states[..., 0] - states[..., 0]
    dy = next_states[..., 1] - states[..., 1]
    c, s = lib.cos(states[..., 2]), lib.sin(states[..., 2])
    head = lib.stack([c * dx + s * dy, -s * dx + c * dy,
                      wrap_angle(next_states[..., 2] - states[..., 2])], -1)
    return lib.concatenate([head, next_states[..., POSE_DIM:] - states[..., POSE_DIM:]], -1)


def apply_delta(states, deltas):
    """Inverse of ``delta_target``: next states from states and predicted deltas, (..., state_dim)."""
    lib = _lib(states)
    c, s = lib.cos(states[..., 2]), lib.sin(states[..., 2])
    x = states[..., 0] + c * deltas[..., 0] - s * deltas[..., 1]
    y = states[..., 1] + s * deltas[..., 0] + c * deltas[..., 1]
    yaw = wrap_angle(states[..., 2] + deltas[..., 2])
    head = lib.stack([x, y, yaw], -1)
    rest = states[..., POSE_DIM:] + deltas[..., POSE_DIM:]
    return lib.concatenate([head, rest], -1)
