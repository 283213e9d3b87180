"""The follow loop in one process, without ROS: simulation -> planner (or policy) -> simulation, for comparing
planners and settings quickly (bench/bench_follow.py) and for generating DAgger data for the distilled path
follower (core/policy.py). The product runs the same pieces as nodes over DDS (`mbmf-ros follow`); this loop
reads the same settings (config/defaults.yaml, config/<agent>.yaml: goal tolerance, lookahead, K, H, alpha,
beta, ...) and uses the path relative to the start pose and the step budget of `mbmf-ros follow`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

STALL_PROGRESS_M = 0.005     # stall_steps: less progress than this (m) over that many steps is a stall


@dataclass
class LoopResult:
    """mean/max cross-track (m), completion (0..1), done, steps, mean time per action (s; the planner's, or the
    policy's with making its observation), trajectory_xy (steps+1, 2) m. With ``record``: observations (T, dim) the policy's inputs at the
    visited states and labels (T, A) the MPC expert's action there. start_pose (3,): x, y (m), yaw (rad) of the
    start, the frame in which the path was given."""
    mean_cross_track_m: float
    max_cross_track_m: float
    completion: float
    done: bool
    steps: int
    mean_solve_time_s: float
    trajectory_xy: np.ndarray
    observations: np.ndarray | None = None
    labels: np.ndarray | None = None
    start_pose: np.ndarray | None = None


def follow_in_process(agent: str, model, path_xy, planner: str = 'random_shooting', num_samples: int | None = None,
                      horizon: int | None = None, seed: int = 0, max_steps: int = 0,
                      goal_tolerance_m: float | None = None, lookahead_m: float | None = None, policy=None,
                      record: bool = False, noise_std: float = 0.0, give_up_m: float = 0.0, stall_steps: int = 0,
                      reverse_weight: float | None = None, heading_weight: float | None = None,
                      heading_free_rad: float = 0.0, heading_lookahead_m: float = 0.0, alpha: float | None = None,
                      params_files=(), **planner_kwargs) -> LoopResult:
    """Follow ``path_xy`` (N, 2), given relative to the start pose, on the simulated ``agent``.

    model: the dynamics model of the MPC. planner: a planner name (made with num_samples, horizon, seed and
    planner_kwargs) or an object with ``plan(model, task, state)`` (e.g. a benchmark's wrapper that compares two
    planners step by step). num_samples, horizon, goal_tolerance_m (when the run is done), lookahead_m: None =
    the settings of config/defaults.yaml and config/<agent>.yaml (then ``params_files``), as the nodes have them.
    policy: a GaussianPolicy with a 'path' observation (core.policy): it
    acts instead of the MPC. record: also run the MPC at every visited state and return its actions as labels
    (DAgger) with the policy's observations (``policy`` or a fresh path observation of the agent is needed for
    the observation layout: pass ``record=Observation`` to give it). noise_std: Gaussian noise (actions units)
    added to the MPC's action before execution when the MPC acts (paper B: 0.005). give_up_m: end the run when
    the cross-track error exceeds it (> 0; DAgger: states far off any path teach little and cost expert time).
    stall_steps: end the run when the progress along the path has not grown by STALL_PROGRESS_M in that many
    steps (> 0; DAgger: a stalled policy's states all look alike, their labels are kept, the rest of the budget
    would only repeat them). reverse_weight: the task's penalty on moving backwards (None: the setting).
    heading_weight: the task's penalty per radian between the heading and the closest segment's (None: the
    setting); heading_free_rad: the error it does not charge; heading_lookahead_m: 0 = the error to the closest
    segment's direction, > 0 = to the bearing of the path point that far ahead (core.tasks.TrajectoryFollowingTask).
    alpha: the task's weight of the cross-track error (None: the setting).
    """
    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.planners import make_planner
    from mbmf_ros.core.tasks import make_task
    from mbmf_ros.core.waypoints import ProgressTracker, WaypointPath, step_budget, transform_points
    from mbmf_ros.settings import load_settings
    from mbmf_ros.sim.simulation import Simulation

    spec = get_agent(agent, params_files)
    settings = load_settings(agent, params_files)
    v = settings.node('mpc_planner')
    lookahead_m = v['lookahead_m'] if lookahead_m is None else lookahead_m
    lookahead_m = lookahead_m if lookahead_m > 0 else None
    if goal_tolerance_m is None:    # the run ends when the waypoint manager would say done
        goal_tolerance_m = settings.node('waypoint_manager')['goal_tolerance_m']
    sim = Simulation(spec, seed=seed)
    rng = np.random.default_rng(seed + 7)
    state = np.asarray(sim.reset().estimate.values, dtype=np.float64)
    start_pose = state[:3].copy()
    path = WaypointPath(transform_points(np.asarray(path_xy, dtype=np.float64), state[:3]))
    task = make_task('trajectory_following', spec, alpha=v['alpha'] if alpha is None else alpha, beta=v['beta'],
                     heading_weight=v['heading_weight'] if heading_weight is None else heading_weight,
                     heading_free_rad=heading_free_rad, heading_lookahead_m=heading_lookahead_m,
                     lookahead_m=lookahead_m,
                     reverse_weight=v['reverse_weight'] if reverse_weight is None else reverse_weight,
                     goal_tolerance_m=v['goal_tolerance_m'], clamp_progress=v['clamp_progress'])
    task.set_path(path)
    tracker = ProgressTracker(path, lookahead_m, goal_tolerance_m)
    use_mpc = policy is None or bool(record)
    if not isinstance(planner, str):
        plan = planner
    else:
        plan = make_planner(planner, spec.action_dim, v['horizon'] if horizon is None else horizon,
                            v['num_samples'] if num_samples is None else num_samples, seed,
                            **planner_kwargs) if use_mpc else None
    observe = policy.observation if policy is not None else (record if not isinstance(record, bool) else None)
    if record and observe is None:
        raise ValueError('follow_in_process: record needs the observation layout (a policy, or record=Observation)')
    max_steps = max_steps or step_budget(path_xy, spec.follow_speed, spec.dt)
    cross, xy, solve, observations, labels, progress = [], [state[:2].copy()], [], [], [], []
    for _ in range(max_steps):
        tracking = tracker.update(state[:2])
        cross.append(tracking.cross_track_m)
        progress.append(tracking.progress_m)
        task.update(state)
        if tracking.done or 0 < give_up_m < tracking.cross_track_m:
            break
        if 0 < stall_steps < len(progress) and progress[-1] - progress[-1 - stall_steps] < STALL_PROGRESS_M:
            break
        t_obs = time.perf_counter()     # a policy's time per action includes making its observation
        obs = observe(state, path, tracker.last.progress_m) if observe is not None else None
        t_obs = time.perf_counter() - t_obs
        expert = None
        if use_mpc:
            t0 = time.perf_counter()
            expert = np.asarray(plan.plan(model, task, state).action, dtype=np.float64)
            if policy is None:
                solve.append(time.perf_counter() - t0)
        if policy is not None:
            t0 = time.perf_counter()
            action = policy.act(obs)
            solve.append(time.perf_counter() - t0 + t_obs)
        else:
            action = expert + (rng.normal(0.0, noise_std, expert.shape) if noise_std > 0 else 0.0)
        if record:
            observations.append(obs)
            labels.append(expert)
        state = np.asarray(sim.step(np.clip(action, -1.0, 1.0)).estimate.values, dtype=np.float64)
        xy.append(state[:2].copy())
    else:
        tracking = tracker.update(state[:2])
        cross.append(tracking.cross_track_m)
    return LoopResult(float(np.mean(cross)), float(np.max(cross)), float(tracking.progress), bool(tracking.done),
                      len(xy) - 1, float(np.mean(solve)) if solve else 0.0, np.asarray(xy),
                      np.asarray(observations, dtype=np.float32).reshape(len(observations), observe.dim)
                      if record else None,
                      np.asarray(labels, dtype=np.float32).reshape(len(labels), spec.action_dim)
                      if record else None, start_pose)
