"""Waypoint paths: validation, projection, progress tracking (core.waypoints, ROS-free)."""
import math

import numpy as np
import pytest

from mbmf_ros.core.waypoints import (TURN_REACHED_M, PathError, ProgressTracker, WaypointPath, path_length, simplify,
                                     transform_points, validate_path)

L_PATH = [[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]


def test_validate_accepts_and_returns_n_by_2():
    arr = validate_path([[0, 0, 5], [1, 1, 5]])
    assert arr.shape == (2, 2) and arr.dtype == np.float64


@pytest.mark.parametrize('points, needle', [
    ([[0.0, 0.0]], 'at least 2 waypoints, found 1'),
    ([], 'shape'),
    ([[0.0, 0.0], [float('nan'), 1.0]], 'waypoint 1 is not finite'),
    ([[0.0, 0.0], [1.0, float('inf')], [2.0, 0.0]], 'waypoint 1 is not finite'),
    ([[1.0, 1.0], [1.0, 1.0], [1.0005, 1.0]], 'all 3 waypoints lie within 0.001 m'),
    ([1.0, 2.0, 3.0], 'shape'),
    ([['a', 'b'], ['c', 'd']], 'numbers'),
])
def test_validate_rejects_bad_paths_naming_the_problem(points, needle):
    with pytest.raises(PathError, match=needle):
        validate_path(points, source='test path')


def test_validate_checks_frame():
    validate_path(L_PATH, 'map', ('odom', 'world', 'map'))
    with pytest.raises(PathError, match=r"unknown frame_id 'base_link'.*odom"):
        validate_path(L_PATH, 'base_link', ('odom', 'world', 'map'))
    with pytest.raises(PathError, match="unknown frame_id ''"):
        validate_path(L_PATH, '', ('odom',))


def test_segments_lengths_headings():
    p = WaypointPath(L_PATH)
    assert p.num_segments == 2 and len(p) == 3
    assert p.length == pytest.approx(3.0) == path_length(L_PATH)
    np.testing.assert_allclose(p.cumulative, [0.0, 1.0, 3.0])
    np.testing.assert_allclose(p.headings, [0.0, math.pi / 2])
    np.testing.assert_allclose(p.point_at(2.0), [1.0, 1.0])
    np.testing.assert_allclose(p.point_at(99.0), [1.0, 2.0])


def test_projection_closest_segment_progress_cross_track():
    p = WaypointPath(L_PATH)
    pr = p.project((0.5, 0.2))
    assert pr.segment == 0 and pr.progress_m == pytest.approx(0.5) and pr.cross_track_m == pytest.approx(0.2)
    assert pr.signed_cross_track_m == pytest.approx(0.2)          # left of the +x direction
    pr = p.project((1.3, 1.5))
    assert pr.segment == 1 and pr.progress_m == pytest.approx(2.5) and pr.cross_track_m == pytest.approx(0.3)
    assert pr.signed_cross_track_m == pytest.approx(-0.3)         # right of the +y direction
    # Before the start and past the end: clamped to the end points, distance to them.
    pr = p.project((-1.0, 0.0))
    assert pr.progress_m == 0.0 and pr.cross_track_m == pytest.approx(1.0)
    pr = p.project((1.0, 3.0))
    assert pr.progress_m == pytest.approx(3.0) and pr.cross_track_m == pytest.approx(1.0)


def test_lookahead_window_limits_the_search():
    # A U-turn: out along y=0, back along y=0.2. At (1.5, 0.15) the return leg is closer, but with a short
    # lookahead from segment 0 it is out of reach.
    p = WaypointPath([[0, 0], [2, 0], [2, 0.2], [0, 0.2]])
    assert p.project((0.5, 0.15)).segment == 2
    assert p.project((0.5, 0.15), first=0, lookahead_m=0.5, from_m=0.5).segment == 0
    assert p.project((0.5, 0.15), first=0, lookahead_m=0.5).segment == 2    # 0.5 m past segment 0's end
    assert p.segment_window(0, 0.0) == (0, 2)
    assert p.segment_window(0, 0.5, from_m=1.0) == (0, 2)
    assert p.segment_window(0, 0.5, from_m=1.8) == (0, 3)
    assert p.segment_window(1, None) == (1, 3)


def test_tracker_moves_forward_and_finishes():
    p = WaypointPath([[0, 0], [2, 0], [2, 0.2], [0, 0.2]])
    tr = ProgressTracker(p, lookahead_m=0.5)
    xs = np.linspace(0, 2, 21)
    for x in xs:
        st = tr.update((x, 0.01))
        assert st.segment <= 1 and not st.done   # never jumps onto the nearby return leg
    assert st.progress_m == pytest.approx(2.01)    # on the short middle segment, 1 cm up
    st = tr.update((2.0, 0.2))
    assert st.segment in (1, 2)
    for x in np.linspace(2, -0.05, 30):
        st = tr.update((x, 0.21))
    assert st.segment == 2 and st.done and st.progress == pytest.approx(1.0)
    assert st.cross_track_m == pytest.approx(np.hypot(0.05, 0.01))
    # Progress is the furthest point reached: walking back does not undo it.
    before = st.progress_m
    assert tr.update((1.0, 0.2)).progress_m == before
    tr.reset()
    assert tr.state().progress_m == 0.0 and not tr.state().done


def test_tracker_goal_tolerance():
    p = WaypointPath([[0, 0], [1, 0]])
    tr = ProgressTracker(p, goal_tolerance_m=0.1)
    assert not tr.update((0.85, 0)).done
    assert tr.update((0.91, 0)).done


def test_transform_points_relative_to_pose():
    world = transform_points([[1.0, 0.0], [0.0, 1.0]], (2.0, 3.0, math.pi / 2))
    np.testing.assert_allclose(world, [[2.0, 4.0], [1.0, 3.0]], atol=1e-12)


def test_tensors_match_numpy():
    torch = pytest.importorskip('torch')
    p = WaypointPath(L_PATH)
    starts, vecs, lens, cum, heads = p.as_tensors()
    assert starts.shape == (2, 2) and lens.dtype == torch.float32
    np.testing.assert_allclose(cum.numpy(), [0.0, 1.0])


def test_tracker_moves_on_at_a_corner():
    # Right turn at (0.6, 0): a robot that reached the corner belongs to the next segment, so the planner's
    # window and heading refer to where it must go next, not to the finished segment.
    p = WaypointPath([[0, 0], [0.6, 0], [0.6, -0.5]])
    assert p.project((0.6, 0.0)).segment == 0                       # plain projection: earliest on a tie
    tr = ProgressTracker(p, lookahead_m=0.5)
    assert tr.update((0.3, 0.0)).segment == 0
    assert tr.update((0.61, 0.005)).segment == 1                    # past the corner: as close to both
    assert tr.update((0.3, 0.0)).segment == 1                       # and it never goes back


def _distance_to_polyline(points, line):
    """Distance (m) of each point (N, 2) to the polyline through ``line`` (M, 2)."""
    a, b = line[:-1], line[1:]
    v = b - a
    rel = points[:, None, :] - a[None]
    t = np.clip((rel * v).sum(-1) / (v * v).sum(-1), 0, 1)
    return np.linalg.norm(rel - t[..., None] * v, axis=-1).min(1)


def test_simplify_keeps_corners_and_every_waypoint_within_the_tolerance():
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
    dense = np.concatenate([np.linspace(corners[i], corners[i + 1], 1666, endpoint=False) for i in range(3)]
                           + [corners[-1:]])
    keep = simplify(dense)
    np.testing.assert_array_equal(dense[keep], corners)          # straight stretches: only their ends
    theta = np.linspace(0, np.pi, 1000)                           # a half circle of 1 m radius, a point per 3 mm
    arc = np.stack([np.sin(theta), 1 - np.cos(theta)], 1)
    for tol in (1e-4, 1e-2):
        keep = simplify(arc, tol)
        assert keep[0] == 0 and keep[-1] == len(arc) - 1 and np.all(np.diff(keep) > 0)
        assert _distance_to_polyline(arc, arc[keep]).max() <= tol + 1e-12
        assert len(keep) < len(arc) / 5                           # a chord every ~28 mm (0.1 mm), ~280 mm (1 cm)


def test_simplify_keeps_a_reversal_on_a_line():
    """Forward, back, forward again along one line: every waypoint lies on the chord of the whole path, but the
    reversals must stay (the reward would otherwise say 'drive straight on' where the path turns back)."""
    path = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    np.testing.assert_array_equal(simplify(path), [0, 1, 2, 3])
    dense = np.concatenate([np.linspace([0.0, 0.0], [2.0, 0.0], 200, endpoint=False),
                            np.linspace([2.0, 0.0], [1.0, 0.0], 100, endpoint=False),
                            np.linspace([1.0, 0.0], [3.0, 0.0], 200)])
    np.testing.assert_array_equal(dense[simplify(dense)], path)
    # A point off the line by more than the tolerance stays; a U-turn keeps its two legs apart.
    assert list(simplify([[0, 0], [0.5, 2e-4], [1, 0]])) == [0, 1, 2]
    assert list(simplify([[0, 0], [0.5, 5e-5], [1, 0]])) == [0, 2]
    assert list(simplify([[0, 0], [1, 0], [1, 0.2], [0, 0.2]])) == [0, 1, 2, 3]


@pytest.mark.parametrize('lookahead', [0.5, None])
def test_a_reversal_on_a_line_is_done_only_back_at_its_end(lookahead):
    """half_cheetah's reversal: 2 m forward, then 1 m back on the same line. Its last waypoint (1, 0) lies on the
    way out, where both legs are equally close: the tracker must keep the leg that continues its progress (it
    finished the path at x = 1.0 on the way out, completion 0.99 after a third of it), until the robot is within
    TURN_REACHED_M of the turning point: then it is on the way back (the half_cheetah, slowing down to turn,
    stopped 3 mm short of (2, 0) and was paid nothing for turning back)."""
    tracker = ProgressTracker(WaypointPath([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]]), lookahead_m=lookahead,
                              goal_tolerance_m=0.05)
    for x in np.arange(0.0, 2.0 - TURN_REACHED_M - 0.005, 0.01):
        state = tracker.update((x, 0.0))
        assert not state.done and state.progress_m <= x + 1e-9 and state.segment == 0, x
    x = 2.0 - 0.8 * TURN_REACHED_M                                   # short of the turning point, within reach
    state = tracker.update((x, 0.0))
    assert state.segment == 1 and state.progress_m == pytest.approx(2.0 + 0.8 * TURN_REACHED_M)
    for x in np.arange(2.05, 1.1, -0.01):
        state = tracker.update((x, 0.0))
        assert not state.done and state.segment == 1, x
        assert state.progress_m == pytest.approx(2.0 + max(0.8 * TURN_REACHED_M, 2.0 - x), abs=1e-9), x
    assert tracker.update((1.0, 0.0)).done
    # A corner is not a reversal: its next leg starts only at the corner's normal line, as before.
    corner = ProgressTracker(WaypointPath([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0]]), goal_tolerance_m=0.05)
    assert corner.update((2.0 - 0.5 * TURN_REACHED_M, 0.0)).segment == 0
