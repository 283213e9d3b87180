"""Waypoint paths for trajectory following (ROS-free): validation, segments, projection, progress tracking.

A path is a polyline through sparse (x, y) waypoints in metres, in the world frame. It is split into line
segments (paper, appendix C.1); a point is projected onto the closest segment, which gives

* the cross-track error: the distance (m) from the point to that segment (the paper's ``proj_perp``), and
* the progress: the arc length (m) along the whole path, from its first waypoint, of the projection (the
  paper's ``proj_par``, measured along the path rather than along one segment so that its change stays
  meaningful when the closest segment changes).

``ProgressTracker`` follows a robot along a path: it only moves forward through the segments and looks at
most ``lookahead_m`` of path ahead, so that a path that comes back near itself (a U-turn, a loop) does not
make the robot skip to its end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

DEFAULT_WORLD_FRAMES = ('odom', 'world', 'map')
# Consecutive waypoints closer than this (m) are merged into one: a (nearly) zero-length segment has no
# usable direction (its heading is noise) and its own "closest segment" ties at a corner.
MERGE_DISTANCE_M = 1e-3
MIN_SEGMENT_LENGTH_M = MERGE_DISTANCE_M
# The planner's reward sees a path through fewer waypoints, every given waypoint within this (m) of it
# (``simplify``): 1/500 of the goal tolerance, 1/10 of MERGE_DISTANCE_M, far below what a robot tracks.
SIMPLIFY_TOLERANCE_M = 1e-4
# The turning point of a reversal (a leg that goes back over the one before it) counts as reached within this
# distance: a robot cannot pass through it, and while the projection continues the way out until the point itself
# is reached, one that stops a few mm short (the half_cheetah, slowing down to turn) is paid nothing for turning
# back and never does.
TURN_REACHED_M = 0.02


class PathError(ValueError):
    """A path that cannot be followed; the message says which waypoint/field and what was wrong."""


def validate_path(points, frame_id: str | None = None, accepted_frames: Iterable[str] | None = None,
                  source: str = 'path') -> np.ndarray:
    """Check waypoints and return them as a float64 array of shape (N, 2), metres.

    points: anything array-like of shape (N, 2) (or (N, >=2): only x, y are used, e.g. from poses).
    frame_id / accepted_frames: when ``accepted_frames`` is given, ``frame_id`` must be one of them.
    source: names the input in error messages (a file name, a topic).
    Consecutive waypoints closer than MERGE_DISTANCE_M (1 mm) are merged (the first of a run is kept, but the
    path's last waypoint always stays its end).
    Raises PathError naming the waypoint and the expected/found value: fewer than 2 points (also after
    merging), non-finite values, an unknown frame.
    """
    if accepted_frames is not None:
        accepted = tuple(accepted_frames)
        if frame_id not in accepted:
            raise PathError(f'{source}: unknown frame_id {frame_id!r}; expected one of {list(accepted)}')
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise PathError(f'{source}: waypoints must be numbers of shape (N, 2): {e}') from None
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise PathError(f'{source}: waypoints must have shape (N, 2) [x, y] in metres, found shape {arr.shape}')
    arr = np.ascontiguousarray(arr[:, :2])
    if arr.shape[0] < 2:
        raise PathError(f'{source}: a path needs at least 2 waypoints, found {arr.shape[0]}')
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PathError(f'{source}: waypoint {i} is not finite: {arr[i].tolist()} '
                        f'({int(bad.sum())} non-finite waypoint(s) in all)')
    if (np.linalg.norm(np.diff(arr, axis=0), axis=1) >= MERGE_DISTANCE_M).all():
        keep = list(range(len(arr)))          # the usual case: nothing to merge, no loop over thousands of points
    else:
        keep = [0]
        for i in range(1, len(arr)):
            if np.linalg.norm(arr[i] - arr[keep[-1]]) >= MERGE_DISTANCE_M:
                keep.append(i)
            elif i == len(arr) - 1 and len(keep) > 1:
                keep[-1] = i          # the end of the path stays where it was given
    if len(keep) < 2:
        raise PathError(f'{source}: all {len(arr)} waypoints lie within {MERGE_DISTANCE_M} m of '
                        f'{arr[0].tolist()}: a path needs two points at least {MERGE_DISTANCE_M} m apart')
    return np.ascontiguousarray(arr[keep])


def simplify(points, tolerance_m: float = SIMPLIFY_TOLERANCE_M) -> np.ndarray:
    """Indices (sorted, first and last included) of the waypoints (N, 2) that a polyline through them needs to
    pass within ``tolerance_m`` (m) of every waypoint (Douglas-Peucker): the waypoints a global planner puts
    every few cm along a straight stretch reduce to its two ends, those along a curve of radius r to one every
    sqrt(8 r tolerance_m) or so (28 mm at r = 1 m, 0.1 mm). A waypoint where the path turns back (by more than
    90 degrees) is always kept: one where it reverses along its own line lies on the chord, and would be lost."""
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    n = len(pts)
    keep = np.zeros(n, dtype=bool)
    keep[[0, -1]] = True
    d = np.diff(pts, axis=0)
    keep[1:-1] |= (d[:-1] * d[1:]).sum(1) < 0
    # Every span between kept waypoints is split at once, at its waypoint farthest from its chord: the
    # recursion's result, in as many vectorised passes as the recursion is deep (5000 waypoints: a few ms).
    while True:
        kept = np.flatnonzero(keep)
        span = np.minimum(np.searchsorted(kept, np.arange(n), side='right') - 1, len(kept) - 2)
        a = pts[kept[span]]
        chord, rel = pts[kept[span + 1]] - a, pts - a
        length2 = (chord * chord).sum(1)
        t = np.clip((rel * chord).sum(1) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
        dist = np.linalg.norm(rel - t[:, None] * chord, axis=1)
        dist[keep] = -1.0
        farthest = np.maximum.reduceat(dist, kept[:-1])[span]
        split = np.flatnonzero((dist == farthest) & (dist > tolerance_m))
        if len(split) == 0:
            return kept
        keep[split[np.unique(span[split], return_index=True)[1]]] = True       # the first one of each span


def transform_points(points, pose) -> np.ndarray:
    """Points (N, 2) given in the frame of ``pose`` = (x, y, yaw) (m, m, rad), expressed in the world frame."""
    pts = np.asarray(points, dtype=np.float64)
    x, y, yaw = (float(v) for v in pose[:3])
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([x + c * pts[:, 0] - s * pts[:, 1], y + s * pts[:, 0] + c * pts[:, 1]], axis=1)


@dataclass(frozen=True)
class Projection:
    """A point projected onto a path. Distances in metres."""
    segment: int            # index of the closest segment
    t: float                # position along that segment, 0 (start) .. 1 (end), clamped
    progress_m: float       # arc length along the path of the projected point
    cross_track_m: float    # distance from the point to the segment (>= 0)
    signed_cross_track_m: float  # + when the point is left of the segment's direction
    closest: tuple          # (x, y) of the projected point


class WaypointPath:
    """A validated polyline: ``points`` (N, 2) m, ``N - 1`` segments.

    Attributes: points (N, 2), starts (M, 2), vectors (M, 2) (end - start), lengths (M,), cumulative (N,)
    (arc length of each waypoint from the first), length (m), headings (M,) (rad, direction of each segment).
    """

    def __init__(self, points, frame_id: str = 'odom', accepted_frames: Iterable[str] | None = None,
                 source: str = 'path'):
        self.points = validate_path(points, frame_id, accepted_frames, source)
        self.frame_id = frame_id
        self.starts = self.points[:-1]
        self.vectors = np.diff(self.points, axis=0)
        self.lengths = np.linalg.norm(self.vectors, axis=1)
        self.cumulative = np.concatenate([[0.0], np.cumsum(self.lengths)])
        self.length = float(self.cumulative[-1])
        self.headings = np.arctan2(self.vectors[:, 1], self.vectors[:, 0])

    @property
    def num_segments(self) -> int:
        return len(self.lengths)

    def __len__(self) -> int:
        return len(self.points)

    def reverses_at(self, segment: int) -> bool:
        """Whether ``segment`` goes back over the segment before it (antiparallel: a reversal on a line)."""
        if not 0 < segment < self.num_segments:
            return False
        a, b = self.vectors[segment - 1], self.vectors[segment]
        scale = self.lengths[segment - 1] * self.lengths[segment]
        return abs(a[0] * b[1] - a[1] * b[0]) <= 1e-6 * scale and float(a @ b) < 0

    def segment_window(self, first: int = 0, lookahead_m: float | None = None,
                       from_m: float | None = None) -> tuple[int, int]:
        """Segments [first, last) to search: from ``first``, every segment that starts at most ``lookahead_m``
        of path after the arc length ``from_m`` (default: the end of segment ``first``); always at least
        ``first`` and ``first + 1``. ``lookahead_m`` None: every segment from ``first`` on."""
        m = self.num_segments
        first = int(min(max(first, 0), m - 1))
        if lookahead_m is None or not math.isfinite(lookahead_m):
            return first, m
        base = self.cumulative[first + 1] if from_m is None else max(float(from_m), self.cumulative[first])
        limit = base + max(float(lookahead_m), 0.0)
        last = int(np.searchsorted(self.cumulative[:m], limit, side='right'))
        return first, int(min(max(last, first + 2), m))

    def project(self, xy, first: int = 0, lookahead_m: float | None = None,
                from_m: float | None = None, prefer_later: bool = False) -> Projection:
        """Project one point (x, y) onto the closest segment of the window (see ``segment_window``).
        Ties go to the segment whose projection is nearest the arc length ``from_m`` (when given: legs of a path
        that overlap), then to the earliest, or with ``prefer_later`` to the latest (at a corner: the next one)."""
        p = np.asarray(xy, dtype=np.float64)[:2]
        if p.shape != (2,) or not np.all(np.isfinite(p)):
            raise ValueError(f'WaypointPath.project: point (x, y) must be 2 finite numbers in metres, found '
                             f'{p.tolist()}')
        lo, hi = self.segment_window(first, lookahead_m, from_m)
        starts, vecs, lens = self.starts[lo:hi], self.vectors[lo:hi], self.lengths[lo:hi]
        rel = p[None, :] - starts
        t = np.clip((rel * vecs).sum(1) / lens ** 2, 0.0, 1.0)
        closest = starts + t[:, None] * vecs
        dist = np.linalg.norm(p[None, :] - closest, axis=1)
        # Ties within 1 um: a point at or past a corner is as close to both segments. A path that turns back on
        # itself (a reversal on a line) ties everywhere its legs overlap: there the segment whose projection
        # continues the progress so far wins (the return leg's end lies on the way out; jumping to it would
        # finish the path halfway along its first leg). At a corner both give the same progress.
        tied = np.flatnonzero(dist <= dist.min() + 1e-6)
        if from_m is not None and len(tied) > 1:
            gap = np.abs(self.cumulative[lo + tied] + t[tied] * lens[tied] - float(from_m))
            tied = tied[gap <= gap.min() + 1e-6]
        k = int(tied[-1]) if prefer_later else int(tied[0])
        i = lo + k
        cross = vecs[k, 0] * rel[k, 1] - vecs[k, 1] * rel[k, 0]
        sign = 1.0 if cross >= 0 else -1.0
        return Projection(segment=i, t=float(t[k]), progress_m=float(self.cumulative[i] + t[k] * lens[k]),
                          cross_track_m=float(dist[k]), signed_cross_track_m=sign * float(dist[k]),
                          closest=(float(closest[k, 0]), float(closest[k, 1])))

    def point_at(self, progress_m: float) -> np.ndarray:
        """The (x, y) point at arc length ``progress_m`` (clamped to [0, length])."""
        s = min(max(float(progress_m), 0.0), self.length)
        i = int(min(np.searchsorted(self.cumulative, s, side='right') - 1, self.num_segments - 1))
        return self.starts[i] + self.vectors[i] * ((s - self.cumulative[i]) / self.lengths[i])

    def as_tensors(self, dtype=None, device=None, vertices=None):
        """(starts (M, 2), vectors (M, 2), lengths (M,), cumulative starts (M,), headings (M,)) as torch tensors,
        for the batched reward in ``core.tasks``; with ``vertices`` (sorted waypoint indices, e.g. from
        ``simplify``) those of the polyline through only those waypoints (M = len(vertices) - 1)."""
        import torch
        dtype = dtype or torch.float32
        f = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
        if vertices is None:
            return (f(self.starts), f(self.vectors), f(self.lengths), f(self.cumulative[:-1]), f(self.headings))
        pts = self.points[np.asarray(vertices)]
        vectors = np.diff(pts, axis=0)
        lengths = np.linalg.norm(vectors, axis=1)
        return (f(pts[:-1]), f(vectors), f(lengths), f(np.concatenate([[0.0], np.cumsum(lengths)[:-1]])),
                f(np.arctan2(vectors[:, 1], vectors[:, 0])))


@dataclass(frozen=True)
class TrackingState:
    """Where a robot is along a path."""
    segment: int
    num_segments: int
    progress_m: float          # furthest arc length reached so far (m)
    progress: float            # progress_m / path length, 0..1
    path_length_m: float
    cross_track_m: float       # distance to the active segment now (m)
    done: bool


class ProgressTracker:
    """Follows a robot along a ``WaypointPath``.

    The active segment only moves forward and is searched within ``lookahead_m`` of path ahead of the progress
    so far (None: the whole rest of the path); progress is
    the furthest arc length reached so far. The path is done when that is within ``goal_tolerance_m`` of the
    path's end (with 0: once the projection reaches the end, i.e. the robot is at or past the last waypoint's
    normal line; None: goal_tolerance_m of config/defaults.yaml, as the waypoint manager and the planner use).
    """

    def __init__(self, path: WaypointPath, lookahead_m: float | None = None, goal_tolerance_m: float | None = None):
        if goal_tolerance_m is None:
            from mbmf_ros.settings import defaults
            goal_tolerance_m = defaults('waypoint_manager')['goal_tolerance_m']
        self.path = path
        self.lookahead_m = lookahead_m
        self.goal_tolerance_m = float(goal_tolerance_m)
        self.reset()

    def reset(self) -> None:
        self.segment = 0
        self.progress_m = 0.0
        self.done = False
        self.last: Projection | None = None

    def update(self, xy) -> TrackingState:
        """Advance with the robot's position (x, y) (m) and return the tracking state.
        ValueError when the position is not finite (a lost pose must stop the robot, not index nothing)."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1)
        if p.size < 2 or not np.all(np.isfinite(p[:2])):
            raise ValueError(f'ProgressTracker.update: robot position (x, y) must be 2 finite numbers in metres, '
                             f'found {p[:2].tolist()}')
        # At a corner the robot moves on to the next segment as soon as it is as close to it as to this one.
        proj = self.path.project(xy, self.segment, self.lookahead_m, self.progress_m, prefer_later=True)
        turn = proj.segment + 1             # a reversal's turning point, reached within TURN_REACHED_M
        if self.path.reverses_at(turn) and math.dist(p[:2], self.path.starts[turn]) <= TURN_REACHED_M:
            proj = self.path.project(xy, turn, self.lookahead_m, float(self.path.cumulative[turn]), prefer_later=True)
        self.last = proj
        self.segment = proj.segment
        self.progress_m = max(self.progress_m, proj.progress_m)
        if self.progress_m >= self.path.length - self.goal_tolerance_m - 1e-9:
            self.done = True
        return self.state()

    def state(self) -> TrackingState:
        length = self.path.length
        return TrackingState(segment=self.segment, num_segments=self.path.num_segments,
                             progress_m=self.progress_m, progress=min(self.progress_m / length, 1.0),
                             path_length_m=length,
                             cross_track_m=self.last.cross_track_m if self.last else float('nan'),
                             done=self.done)


def path_length(points: Sequence) -> float:
    """Length (m) of the polyline through ``points`` (N, 2)."""
    arr = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(np.diff(arr[:, :2], axis=0), axis=1).sum()) if len(arr) > 1 else 0.0


def step_budget(points: Sequence, speed_m_s: float, dt: float) -> int:
    """Control steps allowed to follow a path: 3x the time at ``speed_m_s``, plus 2 s to get going."""
    return int(math.ceil((3.0 * path_length(points) / speed_m_s + 2.0) / dt))


def tracking_report(path_xy, trajectory_xy, lookahead_m: float | None = None) -> dict:
    """Cross-track error of every executed state to the active path segment, and how much of the path was
    covered (furthest progress along it, 0..1), measured as the waypoint manager tracks it.
    path_xy (N, 2), trajectory_xy (T, 2), metres; lookahead_m: None = the lookahead_m of config/defaults.yaml.
    Returns mean_cross_track_m, max_cross_track_m, completion, path_length_m."""
    if lookahead_m is None:
        from mbmf_ros.settings import defaults
        lookahead_m = defaults('waypoint_manager')['lookahead_m']
    path = WaypointPath(path_xy)
    tracker = ProgressTracker(path, lookahead_m=lookahead_m if lookahead_m > 0 else None)
    states = [tracker.update(xy) for xy in trajectory_xy]
    cross = np.asarray([state.cross_track_m for state in states])
    state = states[-1]
    return {'mean_cross_track_m': float(cross.mean()), 'max_cross_track_m': float(cross.max()),
            'completion': float(min(1.0, state.progress)), 'path_length_m': float(path.length)}


TRAINING_PATH_KINDS = ('polyline', 'corner', 'u_turn', 'zigzag', 'curve')


def _polyline(start, heading: float, turns_deg, lengths) -> list:
    """Points of a polyline from ``start`` along ``heading`` (rad): segment i has length lengths[i] and turns by
    turns_deg[i - 1] (degrees, + = left) from segment i - 1."""
    points, p = [np.asarray(start, dtype=np.float64)], np.asarray(start, dtype=np.float64)
    for i, step in enumerate(lengths):
        if i:
            heading += math.radians(turns_deg[i - 1])
        p = p + step * np.array([math.cos(heading), math.sin(heading)])
        points.append(p)
    return points


def training_path(rng: np.random.Generator, *, segment_m: Sequence, max_turn_deg: float, offset_m: Sequence,
                  offset_heading_deg: float, offset_probability: float,
                  kinds: Sequence = TRAINING_PATH_KINDS) -> np.ndarray:
    """A random path (N, 2), m, relative to the start pose, for training the distilled path follower: the kinds
    of path users draw, turns in both directions (settings: config/mbmf.yaml, hexapod_follow.paths).

    kinds (one drawn uniformly): 'polyline' (1-4 segments, turns U(-max_turn_deg, max_turn_deg)); 'corner'
    (one sharp turn of 90 degrees to max_turn_deg - 5); 'u_turn' (two turns of 70-110 degrees the same way
    around a short segment); 'zigzag' (3-6 short segments, alternating turns of 30-120 degrees); 'curve'
    (one or two circular arcs, radius 0.1-0.5 m, 45-180 degrees each, the same or opposite ways (an S),
    sampled every 1-10 cm: dense waypoints). Segments are U(segment_m) long (zig-zags: 0.1-0.3 m).
    With ``offset_probability`` the path does not start at the robot: its start is moved by
    U(-offset_m[0], offset_m[0] / 2) along and U(-offset_m[1], offset_m[1]) across the robot's heading
    (behind or beside it) and its first direction turned by U(-offset_heading_deg, offset_heading_deg)."""
    kind = str(kinds[int(rng.integers(len(kinds)))])
    side = 1.0 if rng.random() < 0.5 else -1.0
    seg = lambda n: rng.uniform(segment_m[0], segment_m[1], n)  # noqa: E731
    if kind == 'polyline':
        n = int(rng.integers(1, 5))
        points = _polyline((0.0, 0.0), 0.0, rng.uniform(-max_turn_deg, max_turn_deg, n), seg(n))
    elif kind == 'corner':
        points = _polyline((0.0, 0.0), 0.0, [side * rng.uniform(90.0, max_turn_deg - 5.0)],
                           [rng.uniform(0.15, segment_m[1]), rng.uniform(0.15, segment_m[1])])
    elif kind == 'u_turn':
        turns = side * rng.uniform(70.0, 110.0, 2)
        points = _polyline((0.0, 0.0), 0.0, turns, [rng.uniform(0.15, segment_m[1]), rng.uniform(0.08, 0.4),
                                                    rng.uniform(0.15, segment_m[1])])
    elif kind == 'zigzag':
        n = int(rng.integers(3, 7))
        turns = [side * (-1) ** i * rng.uniform(30.0, 120.0) for i in range(n)]
        points = _polyline((0.0, 0.0), 0.0, turns, rng.uniform(0.1, 0.3, n))
    elif kind == 'curve':
        points, heading = [np.zeros(2)], 0.0
        if rng.random() < 0.5:                      # a straight lead-in
            points = _polyline((0.0, 0.0), 0.0, [], [rng.uniform(0.05, 0.3)])
        spacing = rng.uniform(0.01, 0.1)
        for arc in range(int(rng.integers(1, 3))):
            radius, sweep = rng.uniform(0.1, 0.5), math.radians(rng.uniform(45.0, 180.0))
            turn = side * (-1.0 if arc and rng.random() < 0.7 else 1.0)
            n = max(2, int(math.ceil(radius * sweep / spacing)))
            centre = points[-1] + radius * turn * np.array([-math.sin(heading), math.cos(heading)])
            for k in range(1, n + 1):
                h = heading + turn * sweep * k / n
                points.append(centre + radius * turn * np.array([math.sin(h), -math.cos(h)]))
            heading += turn * sweep
    else:
        raise ValueError(f'training_path: unknown kind {kind!r}; expected one of {list(TRAINING_PATH_KINDS)}')
    points = np.asarray(points)
    if rng.random() < offset_probability:
        yaw = math.radians(rng.uniform(-offset_heading_deg, offset_heading_deg))
        shift = np.array([rng.uniform(-offset_m[0], offset_m[0] / 2), rng.uniform(-offset_m[1], offset_m[1])])
        c, s = math.cos(yaw), math.sin(yaw)
        points = points @ np.array([[c, s], [-s, c]]) + shift
    return points
