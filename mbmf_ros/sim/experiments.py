"""The paper's experiments in one process (ROS-free): random data, MPC episodes with the paper's rewards, the
zero- and random-action baselines on the same start states, and their figures.

Why in process: Algorithm 1 at the paper's sizes is hundreds of thousands of simulated steps and tens of
thousands of MPC plans; over DDS in lock-step each step also costs a round trip through four processes on a
2-core machine. The pieces are the same ones the nodes run (``Simulation`` with ``StateEstimator``, the
planners, the tasks); episodes are written as the recorder's bags (``io.episode_bags``), so training reads
them like recorded data.

    res = run_episode('swimmer', 'forward', 'mpc', model=m, steps=333, seed=1)
    res.ret, res.states (T+1, S), res.actions (T, A)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Episode:
    """One episode. ret: the paper's return (forward: sum of appendix C.2 rewards of the true transitions;
    follow: sum of Alg. 2 rewards). states (T+1, S), actions (T, A), stamps (T+1,) s. metrics: task figures
    (forward: distance_x_m, terminated; follow: mean_cross_track_m, completion, done)."""
    agent: str
    task: str
    controller: str
    seed: int
    ret: float
    steps: int
    states: np.ndarray
    actions: np.ndarray
    stamps: np.ndarray
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0


def _torch_reward(task, s, a, s1) -> float:
    import torch
    r = task.reward(torch.as_tensor(s[None], dtype=torch.float32), torch.as_tensor(a[None], dtype=torch.float32),
                    torch.as_tensor(s1[None, None], dtype=torch.float32))
    return float(r.reshape(-1)[0])


def run_episode(agent: str, task: str, controller: str, model=None, steps: int = 0, seed: int = 0,
                planner: str = 'random_shooting', num_samples: int | None = None, horizon: int | None = None,
                heading_noise: bool | None = None, path_xy=None, terrain: str | None = None,
                lookahead_m: float | None = None, goal_tolerance_m: float | None = None,
                action_noise_std: float = 0.0,
                terminate: bool = True, progress=None) -> Episode:
    """One episode of ``agent`` on ``task`` ('forward' | 'follow') under ``controller`` ('mpc' | 'zero' |
    'random').

    The start state depends on ``seed`` only (the same for every controller: baselines on the same episodes).
    forward: ``steps`` control steps at most, ending early when the agent terminates (hopper, ant), return =
    sum of the appendix C.2 reward of the true transitions. follow: ``path_xy`` (N, 2) m relative to the start
    pose, ``steps`` (0: the follow step budget) at most, ending when the path is done (5 cm goal tolerance).
    mpc: ``model`` (a DynamicsModel) with the planner (default K, H: the agent's for the task; 0 or None).
    lookahead_m, goal_tolerance_m: None = config/defaults.yaml's (the waypoint manager's).
    heading_noise: None = forward: False (appendix A.1), follow: the agent's. action_noise_std: Gaussian noise
    added to the executed MPC action (0: none). terminate: False runs on after the agent falls (random data:
    the model must learn what falling looks like). progress(step, steps): called each step.
    """
    import torch

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.planners import make_planner
    from mbmf_ros.core.tasks import MovingForwardTask, TrajectoryFollowingTask, make_task
    from mbmf_ros.core.waypoints import ProgressTracker, WaypointPath, step_budget, transform_points
    from mbmf_ros.sim.simulation import Simulation

    if task not in ('forward', 'follow'):
        raise ValueError(f'run_episode: task must be forward or follow, found {task!r}')
    if controller not in ('mpc', 'zero', 'random'):
        raise ValueError(f'run_episode: controller must be mpc, zero or random, found {controller!r}')
    if controller == 'mpc' and model is None:
        raise ValueError('run_episode: the mpc controller needs a model')
    spec = get_agent(agent)
    if lookahead_m is None or goal_tolerance_m is None:
        from mbmf_ros.settings import defaults as node_defaults
        wm = node_defaults('waypoint_manager', agent)
        lookahead_m = wm['lookahead_m'] if lookahead_m is None else lookahead_m
        goal_tolerance_m = wm['goal_tolerance_m'] if goal_tolerance_m is None else goal_tolerance_m
    if heading_noise is None:
        heading_noise = False if task == 'forward' else spec.heading_noise
    sim = Simulation(spec, max_episode_steps=0, seed=seed, heading_noise=heading_noise, terrain=terrain)
    first = sim.reset(seed=seed)
    state = np.asarray(first.estimate.values, dtype=np.float64)
    states, actions, stamps = [state.copy()], [], [first.reading.stamp]
    tracker = None
    if task == 'forward':
        scorer = MovingForwardTask.for_agent(spec)                  # the paper's return
        plan_task = MovingForwardTask.for_agent(spec, planning=True)
        defaults = spec.forward_planner_defaults
        max_steps = int(steps) or spec.max_episode_steps
    else:
        if path_xy is None:
            raise ValueError('run_episode: the follow task needs path_xy')
        path = WaypointPath(transform_points(np.asarray(path_xy, dtype=np.float64), state[:3]))
        # make_task: the planner's copy carries the agent's planning height band; the scorer is Alg. 2 alone.
        plan_task = make_task('trajectory_following', spec, path, lookahead_m=lookahead_m)
        scorer = TrajectoryFollowingTask(path, lookahead_m=lookahead_m)
        tracker = ProgressTracker(path, lookahead_m, goal_tolerance_m)
        defaults = spec.planner_defaults
        max_steps = int(steps) or step_budget(path_xy, spec.follow_speed, spec.dt)
    plan = None
    if controller == 'mpc':
        plan = make_planner(planner, spec.action_dim, int(horizon or defaults['horizon']),
                            int(num_samples or defaults['num_samples']), seed)
    rng = np.random.default_rng(seed + 7_919)
    ret, cross, terminated, done = 0.0, [], False, False
    t0 = time.perf_counter()
    with torch.no_grad():
        for k in range(max_steps):
            if tracker is not None:
                tr = tracker.update(state[:2])
                cross.append(tr.cross_track_m)
                scorer.update(state)
                if tr.done:
                    done = True
                    break
            if controller == 'zero':
                a = np.zeros(spec.action_dim)
            elif controller == 'random':
                a = rng.uniform(-1.0, 1.0, spec.action_dim)
            else:
                plan_task.update(state)
                a = np.asarray(plan.plan(model, plan_task, state).action, dtype=np.float64)
                if action_noise_std > 0:
                    a = np.clip(a + rng.normal(0.0, action_noise_std, a.shape), -1.0, 1.0)
            step = sim.step(a)
            nxt = np.asarray(step.estimate.values, dtype=np.float64)
            ret += _torch_reward(scorer, state, a, nxt)
            states.append(nxt.copy())
            actions.append(np.asarray(a, dtype=np.float32))
            stamps.append(step.reading.stamp)
            state = nxt
            if progress is not None:
                progress(k + 1, max_steps)
            if task == 'forward' and step.terminated and terminate:
                terminated = True
                break
    if tracker is not None and not done:
        tr = tracker.update(state[:2])
        cross.append(tr.cross_track_m)
        done = tr.done
    states_a = np.asarray(states)
    metrics = {}
    if task == 'forward':
        metrics = {'distance_x_m': float(states_a[-1, 0] - states_a[0, 0]), 'terminated': terminated}
    else:
        metrics = {'mean_cross_track_m': float(np.mean(cross)), 'max_cross_track_m': float(np.max(cross)),
                   'mean_cross_track_body_lengths': float(np.mean(cross)) / spec.body_length,
                   'completion': float(tracker.state().progress), 'done': bool(done),
                   'path_length_m': float(tracker.path.length)}
    return Episode(agent, task, controller, int(seed), float(ret), len(actions), states_a,
                   np.asarray(actions, dtype=np.float32).reshape(-1, spec.action_dim), np.asarray(stamps),
                   metrics, time.perf_counter() - t0)


def collect_random(agent: str, rollouts: int, steps: int, seed: int, task: str = 'follow',
                   terrain: str | None = None):
    """Random-action episodes (actions ~ U[-1, 1], paper A.1), one per seed ``seed + i``; yields Episodes of
    ``steps`` control steps (on past a fall: the model must see falling). task 'follow': start headings as
    the agent's trajectory-following data (the swimmer's from U(-pi, pi)); 'forward': no heading noise."""
    from mbmf_ros.core.agents import get_agent
    heading = get_agent(agent).heading_noise if task == 'follow' else False
    for i in range(int(rollouts)):
        yield run_episode(agent, 'forward', 'random', steps=steps, seed=int(seed) + i, heading_noise=heading,
                          terrain=terrain, terminate=False)


def summarise(values) -> dict:
    """{'mean', 'std', 'n', 'values'} of a list of numbers (std: population, 0 for one value)."""
    v = [float(x) for x in values]
    return {'mean': float(np.mean(v)) if v else math.nan, 'std': float(np.std(v)) if v else math.nan,
            'n': len(v), 'values': v}
