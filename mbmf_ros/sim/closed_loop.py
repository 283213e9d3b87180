"""The follow loop in one process, without ROS: simulation -> planner -> simulation, for comparing planners and
settings quickly (bench/bench_follow.py). The product runs the same pieces as nodes over DDS (`mbmf-ros
follow`); this loop mirrors its defaults (path relative to the start pose, 5 cm goal tolerance, 0.5 m
lookahead, the step budget of `mbmf-ros follow`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class LoopResult:
    mean_cross_track_m: float
    max_cross_track_m: float
    completion: float
    done: bool
    steps: int
    mean_solve_time_s: float
    trajectory_xy: np.ndarray


def follow_in_process(agent: str, model, path_xy, planner: str = 'random_shooting', num_samples: int = 0,
                      horizon: int = 0, seed: int = 0, max_steps: int = 0, goal_tolerance_m: float = 0.05,
                      lookahead_m: float = 0.5, **planner_kwargs) -> LoopResult:
    """Follow ``path_xy`` (N, 2), given relative to the start pose, with ``model`` on the simulated ``agent``.

    planner: a planner name (made with num_samples, horizon, seed and planner_kwargs) or an object with
    ``plan(model, task, state)`` (e.g. a benchmark's wrapper that compares two planners step by step)."""
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.planners import make_planner
    from mbmf_ros.core.tasks import make_task
    from mbmf_ros.core.waypoints import ProgressTracker, WaypointPath, step_budget, transform_points
    from mbmf_ros.sim.simulation import Simulation

    spec = get_agent(agent)
    sim = Simulation(spec, seed=seed)
    state = np.asarray(sim.reset().estimate.values, dtype=np.float64)
    path = WaypointPath(transform_points(np.asarray(path_xy, dtype=np.float64), state[:3]))
    task = make_task('trajectory_following', spec, lookahead_m=lookahead_m)
    task.set_path(path)
    tracker = ProgressTracker(path, lookahead_m, goal_tolerance_m)
    defaults = spec.planner_defaults
    if isinstance(planner, str):
        plan = make_planner(planner, spec.action_dim, horizon or int(defaults['horizon']),
                            num_samples or int(defaults['num_samples']), seed, **planner_kwargs)
    else:
        plan = planner
    max_steps = max_steps or step_budget(path_xy, spec.follow_speed, spec.dt)
    cross, xy, solve = [], [state[:2].copy()], []
    for _ in range(max_steps):
        tracking = tracker.update(state[:2])
        cross.append(tracking.cross_track_m)
        task.update(state)
        if tracking.done:
            break
        t0 = time.perf_counter()
        action = plan.plan(model, task, state).action
        solve.append(time.perf_counter() - t0)
        state = np.asarray(sim.step(np.asarray(action, dtype=np.float64)).estimate.values, dtype=np.float64)
        xy.append(state[:2].copy())
    else:
        tracking = tracker.update(state[:2])
        cross.append(tracking.cross_track_m)
    return LoopResult(float(np.mean(cross)), float(np.max(cross)), float(tracking.progress), bool(tracking.done),
                      len(xy) - 1, float(np.mean(solve)) if solve else 0.0, np.asarray(xy))
