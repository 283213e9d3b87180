"""Tasks for the MPC planners (ROS-free): per-step rewards on batches of predicted states.

Every task has ``reward(states, actions, next_states) -> (E, K)`` (float32 torch tensors):
states (E, K, S) or (K, S), actions (K, A) or (E, K, A) in [-1, 1], next_states (E, K, S); the reward of one
step of each of K candidates under each of E ensemble members. A planner sums it over the horizon
(paper Eq. 4). ``update(state)`` is called with the robot's true state (S,) once before each plan.

* ``TrajectoryFollowingTask``: the paper's Alg. 2 (appendix C.1). Per step
  ``r = -alpha * perp(s') + beta * (proj(s') - proj(s))``, with ``perp`` the distance (m) of (x, y) to the
  closest segment and ``proj`` the arc length (m) along the path of the projection onto it. Summed over the
  horizon the progress terms telescope to ``beta * (proj(s_H) - proj(s_0))``, ``s_0`` the true current state:
  exactly Alg. 2's sum of ``proj_t - proj_{t-1}``. An optional heading term (``heading_weight``, per rad)
  penalises facing away from the closest segment's direction (used on the real millirobot); an optional
  reverse term (``reverse_weight``, per m) penalises moving backwards (against the body's heading): without
  it the MPC often takes a sharp corner by turning a little and reversing down the next leg.
* ``MovingForwardTask``: appendix C.2, ``r = s'[forward velocity] + alive_bonus - ctrl_cost * ||a / scale||^2``,
  the forward velocity being the world-frame x velocity of the centre of mass, ``(s'[x] - s[x]) / dt``, as in
  the paper's rllab agents (``get_body_comvel('torso')[0]``); the pose point of the paper's agents is their
  centre of mass (``sim.pose_point``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mbmf_ros.core.state import POSE_DIM, wrap_angle
from mbmf_ros.core.waypoints import ProgressTracker, TrackingState, WaypointPath, simplify


TASKS = ('trajectory_following', 'moving_forward')
GRAVITY = 9.81          # m/s^2, MuJoCo's default gravity (the agents' model files keep it)


def _planner_defaults(**given):
    """The given values, None replaced by the mpc_planner default of config/defaults.yaml."""
    from mbmf_ros.settings import defaults
    d = defaults('mpc_planner')
    return tuple(d[k] if v is None else v for k, v in given.items())


class Task:
    """Base: see the module docstring for the contract.

    height_band: None, or (z index, vz index or None, low m, high m, penalty per m) set from the agent
    (``height_band_for``): a planner subtracts ``penalty`` times how far each predicted step's height leaves
    [low, high] (``planning_penalty``). pitch_band: None, or (sin_pitch index, cos_pitch index, max rad, penalty
    per rad) (``pitch_band_for``): the same for each predicted step's |pitch| above max. support_band: None, or
    (sigma, penalty per standard deviation) (``support_band_for``): the same for every element of a predicted
    step's state without its pose beyond +-sigma standard deviations of the planning model's training data
    (its input normaliser, taken by ``fit_support``, which a planner calls with its model before each plan).
    """
    name = 'task'
    height_band = None
    pitch_band = None
    support_band = None
    _support = None             # (mean, std, key) of the model's state inputs, from fit_support

    def fit_support(self, model) -> None:
        """Take the mean and std of the state inputs (the state without its pose) from ``model``'s input
        normaliser, for ``support_band``; nothing without a band or for a model without a normaliser. Kept until
        the model or its normaliser changes."""
        mean, std = getattr(model, 'in_mean', None), getattr(model, 'in_std', None)
        if self.support_band is None or mean is None or std is None:
            self._support = None
            return
        key = (id(model), mean._version, std._version)
        if self._support is None or self._support[2] != key:
            rest = model.state_dim - POSE_DIM
            self._support = (mean[:rest].detach().clone(), std[:rest].detach().clone(), key)

    def planning_penalty(self, next_states):
        """Planning-only cost (...) of predicted states (..., S), or None without any band.

        Why: the ant's episode ends when its torso leaves [0.2, 1.0] m; a gait that jumps gains x velocity, and a
        model trained on random data underestimates take-offs, so the fall only shows in the predictions once
        the ant is already in the air. The paper's authors keep the ant's torso in [0.3, 0.67] m the same way
        ("penalizing for jumping too high or for falling down", appendix C.1). The height is the ballistic apex
        ``z + max(vz, 0)^2 / (2 g)`` where the state has a vertical velocity: a take-off is seen a step or two
        before the torso rises, and the penalty grows with the excess (an indicator cannot rank candidates
        that all start above the band, as the ant does when it is dropped at its start).
        The support band (``support_band``): where a model was trained on random actions alone, the best of K
        candidates is the one whose predicted gain the model overestimates most, and it lies where the data
        did not go (the half_cheetah following its line paths: nose-down, joints faster than the data ever
        moved them, and stalled there); charging each predicted step for leaving the data keeps the plans where
        the model is right.
        Never part of ``reward``: an episode's return stays the paper's.
        """
        out = None
        if self.height_band is not None:
            iz, ivz, low, high, penalty = self.height_band
            z = next_states[..., iz]
            if ivz is not None:
                z = z + next_states[..., ivz].clamp_min(0.0) ** 2 / (2.0 * GRAVITY)
            out = penalty * ((low - z).clamp_min(0.0) + (z - high).clamp_min(0.0))
        if self.pitch_band is not None:
            # The half_cheetah: Alg. 2 pays progress and nothing for staying upright, and a 0.1 s horizon does
            # not see that a forward somersault (which moves the centre of mass forward) ends on its back.
            i_sin, i_cos, high, penalty = self.pitch_band
            pitch = torch.atan2(next_states[..., i_sin], next_states[..., i_cos]).abs()
            extra = penalty * (pitch - high).clamp_min(0.0)
            out = extra if out is None else out + extra
        if self.support_band is not None and self._support is not None:
            sigma, penalty = self.support_band
            mean, std, _ = self._support
            extra = ((next_states[..., POSE_DIM:] - mean) / std).abs_().sub_(sigma).clamp_min_(0.0).sum(-1)
            extra = extra.mul_(penalty)
            out = extra if out is None else out + extra
        return out

    def update(self, state) -> None:  # noqa: B027 - optional hook
        """Called once per control step with the true state (S,) before planning."""

    def reset(self) -> None:  # noqa: B027 - optional hook
        """A new episode starts."""

    def reward(self, states, actions, next_states):
        raise NotImplementedError

    def step_rewards(self, states, actions):
        """Rewards (E, K, H) of whole predicted sequences: states (E, K, H+1, S) (step 0 = the start), actions
        (K, H, A); step t is ``reward(states[:, :, t], actions[:, t], states[:, :, t+1])``. A task may override it
        with one batched evaluation of all H steps (core.rollout calls it once per chunk of candidates, from
        several threads at once when it rolls chunks concurrently: it must not change the task)."""
        return torch.stack([self.reward(states[:, :, t], actions[:, t], states[:, :, t + 1])
                            for t in range(actions.shape[1])], -1)


def _segments(starts, vectors, lengths, cum_starts) -> tuple:
    """What ``_project`` needs of W segments, computed once per search window: (sx, sy, vx, vy, ux, uy, lengths,
    cum_starts), each (W,), u = v / |v|^2."""
    vx, vy = vectors[:, 0].contiguous(), vectors[:, 1].contiguous()
    len2 = lengths * lengths
    return (starts[:, 0].contiguous(), starts[:, 1].contiguous(), vx, vy, vx / len2, vy / len2, lengths,
            cum_starts)


def _project(xy, sx, sy, vx, vy, ux, uy, lengths, cum_starts):
    """Batched projection of points onto segments.

    xy (..., 2); segments: ``_segments`` of the W segments of the search window (slice them first: the
    temporaries are (..., W)). Returns (perp (...,) m, progress (...,) m, segment (...,) long index into the W
    given segments). x and y are handled as separate (..., W) tensors (reductions over a last dimension of 2
    cost more than the arithmetic itself), in as few ops as the arithmetic allows: the planners' rollout calls
    it from two workers at once, and each op's Python call is what the other worker may wait on.
    """
    rx = xy[..., 0:1] - sx                                               # (..., W)
    ry = xy[..., 1:2] - sy
    t = (rx * ux).addcmul_(ry, uy).clamp_(0.0, 1.0)
    dx, dy = rx.addcmul_(t, vx, value=-1.0), ry.addcmul_(t, vy, value=-1.0)
    d2, seg = dx.mul_(dx).addcmul_(dy, dy).min(-1)
    prog = torch.gather(torch.addcmul(cum_starts, t, lengths), -1, seg.unsqueeze(-1)).squeeze(-1)
    return d2.clamp_min_(0.0).sqrt_(), prog, seg


class TrajectoryFollowingTask(Task):
    """Follow a ``WaypointPath`` (paper Alg. 2).

    alpha: weight of the perpendicular distance, per metre per step. beta: weight of progress along the path,
    per metre. heading_weight: per radian per step (0 = the paper's reward). heading_free_rad: the heading
    error (rad) that costs nothing; only the excess is charged (0 = all of it). With pi/2, a tie-breaker for
    turns longer than the horizon: when the path lies behind the robot (a hairpin, a corner sharper than 90
    degrees) no sequence of H steps gains progress, and without it turning left and turning right score alike,
    so the MPC picks either (a DAgger expert's labels then average to standing still); the excess shrinks
    only by turning the short way round, and errors below 90 degrees (tracking, cutting a corner, an offset
    start) are not charged. heading_lookahead_m: 0 = the heading error is measured against the closest
    segment's direction; > 0 = against the bearing from the robot to the path point that far (m of arc length)
    beyond its closest point. With a free zone, the closest segment is the wrong reference at a sharp corner:
    a robot standing just before it is still closest to the leg it came along, so turning toward the next leg
    is charged there and turning either way scored alike again; the bearing to a point 10 cm on points down the
    next leg. With a free zone, the way round is decided at the robot's true state (``update``): when its error
    there exceeds the free zone, predicted errors are unwrapped from it, so turning the long way is charged
    past 180 degrees instead of wrapping to the other side (near a reversal, a 175-degree hairpin, the two ways
    differ by a few degrees and the MPC took either, from one seed to the next). reverse_weight: per metre moved
    backwards along the body's heading (yaw of the step's start) per step (0 = the paper's reward).
    lookahead_m: segments considered
    for "closest" are those from the robot's active segment to ``lookahead_m`` of path ahead (None = all
    segments from the active one on), measured from the progress so far; the active segment and progress come
    from a ``ProgressTracker`` fed by ``update``. clamp_progress: limit each step's progress change to the
    distance moved in that step (a deviation from Alg. 2 that only matters when the closest segment jumps
    to a later part of the path passing nearby; False = Alg. 2 exactly).
    With ``path=None`` the task has no reference; ``reward`` then raises.
    """
    name = 'trajectory_following'

    def __init__(self, path: WaypointPath | None = None, alpha: float | None = None, beta: float | None = None,
                 heading_weight: float | None = None, lookahead_m: float | None = None,
                 goal_tolerance_m: float | None = None, clamp_progress: bool | None = None,
                 reverse_weight: float | None = None, heading_free_rad: float = 0.0,
                 heading_lookahead_m: float = 0.0):
        # None: the mpc_planner default of config/defaults.yaml (the one home of these values)
        alpha, beta, heading_weight, goal_tolerance_m, clamp_progress, reverse_weight = _planner_defaults(
            alpha=alpha, beta=beta, heading_weight=heading_weight, goal_tolerance_m=goal_tolerance_m,
            clamp_progress=clamp_progress, reverse_weight=reverse_weight)
        for label, v in (('alpha', alpha), ('beta', beta), ('heading_weight', heading_weight),
                         ('reverse_weight', reverse_weight)):
            if not math.isfinite(float(v)) or float(v) < 0:
                raise ValueError(f'TrajectoryFollowingTask: {label} must be finite and >= 0, found {v!r}')
        self.alpha, self.beta, self.heading_weight = float(alpha), float(beta), float(heading_weight)
        self.reverse_weight = float(reverse_weight)
        if not 0.0 <= float(heading_free_rad) <= math.pi:
            raise ValueError(f'TrajectoryFollowingTask: heading_free_rad must be in [0, pi], found '
                             f'{heading_free_rad!r}')
        self.heading_free_rad = float(heading_free_rad)
        if not (math.isfinite(float(heading_lookahead_m)) and float(heading_lookahead_m) >= 0):
            raise ValueError(f'TrajectoryFollowingTask: heading_lookahead_m must be finite and >= 0, found '
                             f'{heading_lookahead_m!r}')
        self.heading_lookahead_m = float(heading_lookahead_m)
        self.lookahead_m = lookahead_m
        self.clamp_progress = bool(clamp_progress)
        self.goal_tolerance_m = goal_tolerance_m
        self.path: WaypointPath | None = None
        self.tracker: ProgressTracker | None = None
        self.tracking: TrackingState | None = None
        self._turn_from = None
        if path is not None:
            self.set_path(path)

    def set_path(self, path: WaypointPath | None) -> None:
        """A new reference (or None: no reference). Resets the progress tracking."""
        self.path = path
        self.tracking = None
        if path is None:
            self.tracker = None
            return
        self.tracker = ProgressTracker(path, self.lookahead_m, self.goal_tolerance_m)
        self._turn_from = None
        # The reward measures against the path through fewer waypoints (every given one within 0.1 mm of it,
        # waypoints.simplify): a global planner's pose every few cm along a straight stretch costs what one
        # segment does. The tracker keeps the path as given: its segment, progress and done are unchanged.
        self._vertices = simplify(path.points)
        self._starts, self._vectors, self._lengths, self._cum, self._headings = path.as_tensors(
            vertices=self._vertices)
        self._update_mask()

    def _update_mask(self) -> None:
        lo, hi = self.path.segment_window(self.tracker.segment, self.lookahead_m, self.tracker.progress_m)
        # The simplified segments that cover the given path's segments lo .. hi-1, and always the one after the
        # first (as segment_window does: at a corner the next segment must be in view).
        v = self._vertices
        lo = int(np.searchsorted(v, lo, side='right')) - 1
        hi = min(max(int(np.searchsorted(v, hi, side='left')), lo + 2), len(v) - 1)
        # Only the window's segments enter the batched projection: its temporaries are E x K x (hi - lo), so a
        # path with thousands of waypoints costs what a short one does.
        self._lo = lo
        self._window = tuple(t[lo:hi] for t in (self._starts, self._vectors, self._lengths, self._cum,
                                                 self._headings))
        self._segments = _segments(*self._window[:4])
        self._cache = None      # (next_states tensor, its progress): the next step's ``states``

    def reset(self) -> None:
        if self.tracker is not None:
            self.tracker.reset()
            self.tracking = None
            self._turn_from = None
            self._update_mask()

    def update(self, state) -> TrackingState | None:
        """Advance the progress tracker with the true state (S,) (x, y first). Returns the tracking state."""
        if self.tracker is None:
            return None
        self.tracking = self.tracker.update((float(state[0]), float(state[1])))
        self._update_mask()
        self._turn_from = None
        if self.heading_weight and self.heading_free_rad:
            # the signed heading error at the true state: beyond the free zone, the way round to take
            pose = torch.as_tensor(np.asarray(state[:3], dtype=np.float64), dtype=self._window[0].dtype)
            _, prog, seg = self._measure(pose[None, :2])
            err = float(self._signed_heading_error(pose[None], prog, seg)[0])
            self._turn_from = err if abs(err) > self.heading_free_rad else None
        return self.tracking

    def measure(self, xy):
        """(perp (...,) m, progress (...,) m along the reward's path, segment (...,) index of the reward's
        (simplified) path) of points xy (..., 2) under the current search window."""
        perp, prog, seg = self._measure(xy)
        return perp, prog, seg + self._lo

    def _measure(self, xy):
        """As ``measure``, the segment index relative to the window's first segment."""
        if self.path is None:
            raise RuntimeError('TrajectoryFollowingTask: no path set (set_path first)')
        return _project(xy, *self._segments)

    def reward(self, states, actions, next_states):
        perp1, prog1, seg1 = self._measure(next_states[..., :2])
        if self._cache is not None and self._cache[0] is states:
            prog0 = self._cache[1]          # a planner passes step t's next_states as step t+1's states
        else:
            _, prog0, _ = self._measure(states[..., :2])
        self._cache = (next_states, prog1)
        gain = prog1 - prog0
        if self.clamp_progress:
            # Progress along the path cannot exceed the distance travelled: a candidate that moves a little
            # toward a later part of a path passing close by (a U-turn's return leg) gains no shortcut.
            step = (next_states[..., :2] - states[..., :2]).norm(dim=-1)
            gain = torch.minimum(torch.maximum(gain, -step), step)
        r = self.beta * gain - self.alpha * perp1
        if self.heading_weight:
            err = self._heading_error(next_states, prog1, seg1)
            r = r - self.heading_weight * torch.relu(err - self.heading_free_rad)
        if self.reverse_weight:
            r = r - self.reverse_weight * _backwards(states, next_states)
        return r


    def step_rewards(self, states, actions):
        """All H steps at once (see ``Task.step_rewards``); the same terms as ``reward``."""
        xy = states[..., :2]                                        # (E, K, H+1, 2)
        perp, prog, seg = self._measure(xy)
        gain = prog[..., 1:] - prog[..., :-1]
        if self.clamp_progress:
            d = xy[..., 1:, :] - xy[..., :-1, :]
            step = torch.hypot(d[..., 0], d[..., 1])
            gain = torch.clamp(gain, -step, step)
        r = torch.add(gain.mul_(self.beta), perp[..., 1:], alpha=-self.alpha)
        if self.heading_weight:
            err = self._heading_error(states[..., 1:, :], prog[..., 1:], seg[..., 1:])
            r = r - self.heading_weight * torch.relu(err - self.heading_free_rad)
        if self.reverse_weight:
            r = r - self.reverse_weight * _backwards(states[..., :-1, :], states[..., 1:, :])
        return r


    def _heading_error(self, states, prog, seg):
        """|heading error| (...,) rad of states (..., S) whose progress (...,) and window segment (...,) are
        given (``_signed_heading_error``), unwrapped from the true state's when that exceeds the free zone."""
        err = self._signed_heading_error(states, prog, seg)
        if self._turn_from is not None:
            err = self._turn_from + wrap_angle(err - self._turn_from)
        return err.abs()

    def _signed_heading_error(self, states, prog, seg):
        """Heading error (...,) rad in [-pi, pi): against the closest segment's direction, or the bearing to the
        path point heading_lookahead_m further on (clamped to the window's last segment; no error within 1 cm of
        that point: at the path's end it has no direction)."""
        if not self.heading_lookahead_m:
            return wrap_angle(states[..., 2] - self._window[4][seg])
        starts, vectors, lengths, cum = self._window[:4]
        s = prog + self.heading_lookahead_m
        i = (torch.searchsorted(cum.contiguous(), s.contiguous(), right=True) - 1).clamp(0, len(cum) - 1)
        t = ((s - cum[i]) / lengths[i]).clamp(0.0, 1.0)
        dx = starts[i, 0] + t * vectors[i, 0] - states[..., 0]
        dy = starts[i, 1] + t * vectors[i, 1] - states[..., 1]
        err = wrap_angle(states[..., 2] - torch.atan2(dy, dx))
        return torch.where(dx * dx + dy * dy > 1e-4, err, torch.zeros_like(err))


def _backwards(states, next_states):
    """Distance (m) moved backwards, against the heading (yaw) of ``states``, to ``next_states`` (0 when moving
    forwards or sideways): states and next_states (..., S) with x, y, yaw first."""
    yaw = states[..., 2]
    forward = (next_states[..., 0] - states[..., 0]) * torch.cos(yaw) \
        + (next_states[..., 1] - states[..., 1]) * torch.sin(yaw)
    return torch.relu(-forward)


class MovingForwardTask(Task):
    """Moving forward (appendix C.2): ``r = v + alive_bonus - ctrl_cost * |a / ctrl_scale|^2``.

    velocity_index: index in the full state of the forward velocity (m/s), or, with ``dt`` > 0, of a position
    whose rate of change is the velocity: ``v = (s'[i] - s[i]) / dt`` (index 0 = x: the world-frame x velocity
    of the pose point, the paper's reward). ctrl_cost, ctrl_scale: the paper's action penalty (actions
    normalised to [-1, 1]); alive_bonus: per step. termination: (index, low, high) bounds; a predicted state
    outside them earns no velocity reward and no alive bonus (the public code's "done" test for the hopper and
    ant); ``healthy`` lets a planner make that sticky along its horizon. termination_penalty: reward units a
    planner subtracts on the step a candidate is predicted to terminate (0: the paper's objective). Why: with the
    ant's short horizon (H = 5, 0.1 s) a fall costs a candidate at most a few steps of alive bonus, less than
    the velocity a reckless gait gains meanwhile, while the episode loses the bonus of every remaining step.
    ``reward`` never includes it: an episode's return stays the appendix's.
    """
    name = 'moving_forward'

    def __init__(self, velocity_index: int, ctrl_cost: float = 0.0, alive_bonus: float = 0.0,
                 ctrl_scale: float = 1.0, termination=(), dt: float = 0.0, termination_penalty: float = 0.0):
        self.velocity_index = int(velocity_index)
        self.dt = float(dt)
        if self.dt < 0 or not math.isfinite(self.dt):
            raise ValueError(f'MovingForwardTask: dt must be >= 0 s (0: velocity_index is a velocity), found {dt!r}')
        self.ctrl_cost = float(ctrl_cost)
        self.ctrl_scale = float(ctrl_scale)
        if not self.ctrl_scale > 0:
            raise ValueError(f'MovingForwardTask: ctrl_scale must be > 0, found {ctrl_scale!r}')
        self.alive_bonus = float(alive_bonus)
        self.termination = tuple((int(i), float(lo), float(hi)) for i, lo, hi in termination)
        self.termination_penalty = float(termination_penalty)
        if not (math.isfinite(self.termination_penalty) and self.termination_penalty >= 0):
            raise ValueError(f'MovingForwardTask: termination_penalty must be finite and >= 0, found '
                             f'{termination_penalty!r}')

    @classmethod
    def for_agent(cls, spec, planning: bool = False) -> 'MovingForwardTask':
        """From an ``AgentSpec`` (core.agents): its forward_velocity_element, ctrl_cost, ctrl_scale,
        alive_bonus, termination bounds, termination_penalty and planning height band. A pose element ('x') as
        forward_velocity_element means its rate of change over one control period spec.dt: the world-frame
        velocity of the pose point. planning: the task an MPC plans with, its termination bounds replaced by the
        spec's tighter ``planning_termination`` ones (the hopper's |pitch| < 0.15 rad, not 0.2: a candidate riding
        the true bound falls on the model's first error); False: the paper's reward itself, to score what
        happened (no termination_penalty, no height band: those act only in a planner's scoring anyway)."""
        names = list(spec.state_names)
        if spec.forward_velocity_element not in names:
            raise ValueError(f'agent {spec.name}: forward_velocity_element {spec.forward_velocity_element!r} '
                             f'is not a state element; expected one of {names}')
        bounds = []
        tighter = {element: (low, high) for element, low, high in
                   (getattr(spec, 'planning_termination', ()) if planning else ())}
        for element, low, high in getattr(spec, 'termination', ()):
            low, high = tighter.get(element, (low, high))
            if element not in names:
                raise ValueError(f'agent {spec.name}: termination element {element!r} is not a state element')
            bounds.append((names.index(element), low, high))
        element = spec.forward_velocity_element
        dt = float(spec.dt) if element in ('x', 'y') else 0.0
        task = cls(names.index(element), spec.ctrl_cost, spec.alive_bonus, getattr(spec, 'ctrl_scale', 1.0),
                   bounds, dt, getattr(spec, 'termination_penalty', 0.0) if planning else 0.0)
        task.height_band = height_band_for(spec) if planning else None
        task.pitch_band = pitch_band_for(spec) if planning else None
        return task

    def velocity(self, states, next_states):
        """The forward velocity (m/s) of each transition, (E, K) / (...)."""
        if self.dt > 0:
            return (next_states[..., self.velocity_index] - states[..., self.velocity_index]) / self.dt
        return next_states[..., self.velocity_index]

    def healthy(self, next_states):
        """(E, K) / (...) bool: inside the termination bounds and finite; all True without bounds (and finite).
        Finite as whether the state's sum is (one reduction instead of four ops; a sum beyond 3e38 of finite
        elements counts as not finite, far outside any agent's states)."""
        ok = torch.isfinite(next_states.sum(-1))
        for i, lo, hi in self.termination:
            v = next_states[..., i]
            ok &= (v >= lo) & (v <= hi)
        return ok

    def reward(self, states, actions, next_states):
        scaled = actions / self.ctrl_scale
        ctrl = self.ctrl_cost * (scaled * scaled).sum(-1)      # (K,) or (E, K)
        gain = self.velocity(states, next_states) + self.alive_bonus
        if self.termination:
            gain = torch.where(self.healthy(next_states), gain, torch.zeros_like(gain))
        return gain - ctrl

    def step_rewards(self, states, actions):
        """``reward`` of all H steps at once (see Task.step_rewards): states (E, K, H+1, S), actions (K, H, A)
        -> (E, K, H)."""
        return self.reward(states[:, :, :-1], actions, states[:, :, 1:])


def height_band_for(spec):
    """The planning height band of an agent (``Task.height_band``): (index of 'z', index of 'vz' or None,
    plan_height_min, plan_height_max, plan_height_penalty per m), or None when its penalty is 0 or it has no
    height."""
    penalty = float(getattr(spec, 'plan_height_penalty', 0.0) or 0.0)
    if penalty <= 0 or 'z' not in spec.state_names:
        return None
    low, high = float(spec.plan_height_min), float(spec.plan_height_max)
    if not low < high or not math.isfinite(penalty):
        raise ValueError(f'agent {spec.name}: expected plan_height_min < plan_height_max and a finite '
                         f'plan_height_penalty, found {low}, {high}, {penalty}')
    vz = spec.state_names.index('vz') if 'vz' in spec.state_names else None
    return (spec.state_names.index('z'), vz, low, high, penalty)


def pitch_band_for(spec):
    """The planning pitch band of an agent (``Task.pitch_band``): (index of 'sin_pitch', index of 'cos_pitch',
    plan_pitch_max rad, plan_pitch_penalty per rad), or None when its penalty is 0 or it has no pitch."""
    penalty = float(getattr(spec, 'plan_pitch_penalty', 0.0) or 0.0)
    if penalty <= 0 or 'sin_pitch' not in spec.state_names:
        return None
    high = float(spec.plan_pitch_max)
    if not (0.0 < high < math.pi and math.isfinite(penalty)):
        raise ValueError(f'agent {spec.name}: expected 0 < plan_pitch_max < pi and a finite plan_pitch_penalty, '
                         f'found {high}, {penalty}')
    return (spec.state_names.index('sin_pitch'), spec.state_names.index('cos_pitch'), high, penalty)


def support_band_for(spec):
    """The planning support band of an agent (``Task.support_band``): (plan_support_sigma, plan_support_penalty
    per standard deviation), or None when either is 0."""
    sigma = float(getattr(spec, 'plan_support_sigma', 0.0) or 0.0)
    penalty = float(getattr(spec, 'plan_support_penalty', 0.0) or 0.0)
    if sigma <= 0 or penalty <= 0:
        return None
    if not (math.isfinite(sigma) and math.isfinite(penalty)):
        raise ValueError(f'agent {spec.name}: expected a finite plan_support_sigma and plan_support_penalty, '
                         f'found {sigma}, {penalty}')
    return (sigma, penalty)


def make_task(name: str, spec=None, path: WaypointPath | None = None, **kwargs) -> Task:
    """A task for a planner by name (TASKS): 'trajectory_following' (kwargs: alpha, beta, heading_weight,
    lookahead_m, ...) or 'moving_forward' (from the agent spec ``spec``, with its planning termination bounds).
    With ``spec``, the task plans with the agent's height and pitch bands (and trajectory following with its
    support band)."""
    if name in ('trajectory_following', 'follow', 'tf'):
        task = TrajectoryFollowingTask(path, **kwargs)
        if spec is not None:
            task.height_band = height_band_for(spec)
            task.pitch_band = pitch_band_for(spec)
            task.support_band = support_band_for(spec)
    elif name in ('moving_forward', 'forward', 'f'):
        if spec is None:
            raise ValueError('make_task: moving_forward needs the agent spec')
        task = MovingForwardTask.for_agent(spec, planning=True)      # with the bands (planning=True)
    else:
        raise ValueError(f'unknown task {name!r}; expected one of trajectory_following, moving_forward')
    return task
