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


def integrate_poses_(poses, deltas):
    """``apply_delta``'s pose part over H steps at once, torch only: poses (H+1, ..., 3) with poses[0] given,
    deltas (H, ..., 3) body-frame (dx, dy, dyaw) of each step; fills poses[1:] in place and returns ``poses``.

    yaw_t = wrap(yaw_0 + dyaw_0 + ... + dyaw_{t-1}) (wrapping each step or the sum gives the same angle), and the
    position adds each step's delta rotated by the yaw before that step. Cumulative sums over t instead of H
    dependent steps: the planners' rollout (core.rollout) calls it once per chunk of candidates."""
    import torch
    yaw = poses[..., 2]
    after = yaw[1:]
    torch.cumsum(deltas[..., 2], 0, out=after)
    after.add_(yaw[:1])
    # wrap_angle as yaw - 2 pi floor((yaw + pi) / 2 pi): floor is vectorised where float remainder is not (a
    # quarter of this function's time with remainder_)
    after.sub_(torch.add(after, math.pi).mul_(0.5 / math.pi).floor_(), alpha=2.0 * math.pi)
    c, s = torch.cos(yaw[:-1]), torch.sin(yaw[:-1])
    dx, dy = deltas[..., 0], deltas[..., 1]
    for i, step in ((0, torch.addcmul(c * dx, s, dy, value=-1.0)), (1, torch.addcmul(s * dx, c, dy))):
        torch.cumsum(step, 0, out=poses[1:, ..., i])
        poses[1:, ..., i].add_(poses[:1, ..., i])
    return poses
