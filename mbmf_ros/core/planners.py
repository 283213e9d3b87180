"""Sampling-based MPC planners (ROS-free), one interface, batched on torch tensors.

``planner.plan(model, task, state) -> PlanResult`` picks the action for one control step:

* ``RandomShootingPlanner``: the paper's method (Sec. IV-C, Eq. 4): K action sequences of horizon H drawn
  uniformly from [-1, 1], rolled through the model, scored by the summed task reward; the first action of
  the best sequence is executed and the rest thrown away (replanning every step).
* ``CEMPlanner``: cross-entropy method: Gaussian over sequences, refit to the elites for a few iterations;
  warm-started from the previous plan shifted by one step.
* ``MPPIPlanner``: model predictive path integral: Gaussian perturbations of the previous plan (shifted),
  recombined with exponential weights of their rewards.
* ``ICEMPlanner``: iCEM (Pinneri et al. 2020): CEM with temporally coloured noise, a population that shrinks
  over the iterations, and elites kept across iterations and (shifted) across plans.

``model`` follows the DynamicsModel contract (core.dynamics): ``predict(states, actions) -> next_states``,
states (E, K, S) or (K, S), actions (K, A), output (E, K, S), ``num_members`` E. With an ensemble (E > 1) a
sequence's score is the mean of its return over members. ``task.reward(states, actions, next_states)``
returns (E, K) (core.tasks). Actions are always within [-1, 1]. ``num_samples`` K is the number of
sequences evaluated per plan, whatever the planner (CEM and MPPI split it over their iterations), so
planners compare at the same cost. Each planner owns a seeded ``torch.Generator``: the same seed, model,
task and states give the same actions.

With a ``DynamicsModel`` the rollout runs through ``core.rollout.MLPRollout`` (normaliser folded into the
weights, chunked, preallocated; ``precision`` float32 or bfloat16 with float32 states and reward sums) on
``device`` (cpu | cuda | auto); any other model is called through ``predict`` step by step. The defaults of
precision, device, kernel, chunk_rows, workers, refine_fraction, refine_margin and the iCEM settings are in
config/planners.yaml.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from mbmf_ros.core.rollout import (MLPRollout, resolve_device, resolve_kernel, resolve_precision, serial_caller,
                                   supports)

@lru_cache(maxsize=1)
def planner_settings() -> dict:
    """config/planners.yaml: precision, device, kernel, chunk_rows, workers, refine_fraction and the iCEM settings
    (make_planner's defaults)."""
    import yaml

    from mbmf_ros.settings import config_dir      # the source tree's, an installed package's or $MBMF_ROS_CONFIG
    settings_file = config_dir() / 'planners.yaml'
    try:
        data = yaml.safe_load(settings_file.read_text()) or {}
    except OSError as e:
        raise ValueError(f'{settings_file}: cannot read the planner settings: {e}') from None
    if not isinstance(data, dict):
        raise ValueError(f'{settings_file}: expected a mapping, found {type(data).__name__}')
    return data


# The planner registry: name -> class, filled by @register below. The follow command's --planner choices, the
# launch help and the mpc_planner node's check all read it: a new planner is a class with @register('name').
PLANNERS: dict = {}


def register(name: str):
    """Class decorator: make a Planner subclass available under ``name`` (see PLANNERS)."""
    def add(cls):
        PLANNERS[name] = cls
        return cls
    return add


@dataclass
class PlanResult:
    """The outcome of one plan. Arrays are numpy float32.

    action (A,): the action to execute now, in [-1, 1]. actions (H, A): the chosen sequence.
    predicted_states (H+1, S): the states it is predicted to visit (step 0 = the given state), mean over
    ensemble members. best_reward: its predicted return (sum over H steps, mean over members).
    candidate_states (n, H+1, S): the predicted states of the n best-scoring candidates (for plots).
    """
    action: np.ndarray
    actions: np.ndarray
    predicted_states: np.ndarray
    best_reward: float
    solve_time_s: float
    num_samples: int
    horizon: int
    planner: str
    candidate_states: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def _num_members(model) -> int:
    return int(getattr(model, 'num_members', 1) or 1)


def _mean_states(states):
    """Mean over ensemble members of (E, ..., S) states, yaw (index 2) averaged on the circle."""
    if states.shape[0] == 1:
        return states[0]
    mean = states.mean(0)
    mean[..., 2] = torch.atan2(torch.sin(states[..., 2]).mean(0), torch.cos(states[..., 2]).mean(0))
    return mean


class Planner:
    """Base class; subclasses implement ``_optimise``. See the module docstring.

    action_dim A, horizon H (steps), num_samples K (sequences per plan), seed (None: nondeterministic),
    keep_candidates: how many of the best candidates' predicted states to return for plotting.
    precision: 'float32' | 'bfloat16' of the model's weights and activations in the rollout (states and reward
    sums stay float32); device: 'cpu' | 'cuda' | 'auto'; chunk_rows: candidates per chunk (0/None: default);
    refine_fraction: in bfloat16, the share of best candidates re-rolled in float32 (core.rollout); refine_margin:
    random shooting, CEM and iCEM skip that re-roll when the winner leads by more than this many bfloat16
    errors; workers:
    threads rolling chunks of candidates concurrently (0: one per torch thread; core.rollout); kernel: 'auto' |
    'onednn' | 'blas', the CPU matmul kernel of the rollout (core.rollout).
    """
    name = 'planner'

    def __init__(self, action_dim: int, horizon: int, num_samples: int, seed: int | None = None,
                 keep_candidates: int = 0, dtype=torch.float32, precision: str = 'float32', device: str = 'cpu',
                 chunk_rows: int | None = None, refine_fraction: float = 0.0, workers: int = 0,
                 kernel: str = 'auto', refine_margin: float = 0.0):
        if int(action_dim) < 1 or int(horizon) < 1 or int(num_samples) < 1:
            raise ValueError(f'{self.name}: action_dim, horizon and num_samples must be >= 1, found '
                             f'{action_dim}, {horizon}, {num_samples}')
        self.action_dim, self.horizon, self.num_samples = int(action_dim), int(horizon), int(num_samples)
        self.keep_candidates = int(keep_candidates)
        self.dtype = dtype
        self.precision = resolve_precision(precision)
        self.device = resolve_device(device)
        self.chunk_rows = int(chunk_rows or 0) or None
        self.refine_fraction = float(refine_fraction)
        self.refine_margin = float(refine_margin)
        self.kernel = resolve_kernel(kernel, self.device)
        self.workers = int(workers or 0)
        self._fast: MLPRollout | None = None
        self._threads: int | None = None           # the caller's torch threads while it plans (serial_caller)
        self.generator = torch.Generator(device=self.device)
        self.seed(seed)
        self.reset()

    def seed(self, seed: int | None) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def reset(self) -> None:
        """Forget the warm start (a new episode or a new reference)."""
        self._previous: torch.Tensor | None = None

    def _shifted_previous(self) -> torch.Tensor:
        """The previous plan shifted one step forward (its last action repeated): the warm start (H, A)."""
        if self._previous is None:
            return torch.zeros(self.horizon, self.action_dim, dtype=self.dtype, device=self.device)
        prev = self._previous
        return torch.cat([prev[1:], prev[-1:]], 0)

    def rollout(self, model, task, state, actions, best_only: bool = False):
        """Roll K sequences actions (K, H, A) from ``state`` (S,).

        Returns (returns (K,) mean over members, states (E, K, H+1, S)). With a DynamicsModel: the fast path
        (core.rollout, same rules; ``states`` is then a view of a buffer that the next rollout of the same K, H
        reuses). best_only: of the ranking, the planner needs the best candidate exactly, and of the rest only
        a top set larger than the few that bfloat16's float32 re-roll reorders (random shooting; CEM and iCEM,
        whose elites are a top 10%, refitted as a set); the fast path may then skip the re-roll when the winner
        is clear (core.rollout). MPPI weighs every candidate by its return: it always gets the re-roll.

        A candidate whose predicted states or rewards turn non-finite under any member scores -inf (it ranks
        last; a NaN would otherwise win an argmax). With a task that has ``healthy(next_states) -> (E, K)
        bool`` (moving forward on the hopper and ant), termination is sticky: once a candidate is predicted to
        fall, its later steps earn nothing (an episode ends when the agent falls), even if the model predicts
        it back up; the step it falls on also pays the task's ``termination_penalty``.
        """
        if supports(model):
            if self._fast is None:
                self._fast = MLPRollout(model, self.precision, self.device, self.chunk_rows, self.refine_fraction,
                                        self.workers, self.kernel, self.refine_margin)
            return self._fast.rollout(model, task, state, actions, self._threads, best_only)
        K, H, _ = actions.shape
        E = _num_members(model)
        cur = state.to(self.dtype).expand(K, -1)
        traj = [cur.unsqueeze(0).expand(E, K, -1)]
        total = torch.zeros(E, K, dtype=self.dtype)
        finite = torch.ones(E, K, dtype=torch.bool)
        healthy = getattr(task, 'healthy', None)
        alive = torch.ones(E, K, dtype=torch.bool) if healthy is not None else None
        for t in range(H):
            a = actions[:, t]
            nxt = model.predict(cur if t == 0 else traj[-1], a)
            if nxt.dim() == 2:                       # a plain (K, S) model, no ensemble dimension
                nxt = nxt.unsqueeze(0)
            r = task.reward(traj[-1], a, nxt)
            extra = task.planning_penalty(nxt) if hasattr(task, 'planning_penalty') else None
            if extra is not None:
                r = r - extra
            finite &= torch.isfinite(r) & torch.isfinite(nxt).all(-1)
            if alive is not None:
                # The step on which it falls is scored by the task (no velocity, no bonus); the ones after: 0.
                r = torch.where(alive, r, torch.zeros_like(r))
                ok = healthy(nxt)
                r = r - float(getattr(task, 'termination_penalty', 0.0)) * (alive & ~ok).to(r.dtype)
                alive = alive & ok
            total += torch.where(finite, r, torch.zeros_like(r))
            traj.append(nxt)
        returns = total.mean(0).masked_fill(~finite.all(0), -math.inf)
        return returns, torch.stack(traj, 2)

    def plan(self, model, task, state) -> PlanResult:
        """Plan from ``state`` (S,) (numpy or tensor; full state, pose first). See the module docstring."""
        t0 = time.perf_counter()
        state = torch.as_tensor(np.asarray(state, dtype=np.float32) if not torch.is_tensor(state) else state,
                                dtype=self.dtype, device=self.device)
        if state.dim() != 1:
            raise ValueError(f'{self.name}.plan: state must have shape (S,), found {tuple(state.shape)}')
        if not bool(torch.isfinite(state).all()):
            raise ValueError(f'{self.name}.plan: state has non-finite values: {state.tolist()}')
        fit_support = getattr(task, 'fit_support', None)
        if fit_support is not None:         # the task's planning support band is the model's training data
            fit_support(model)
        # The fast rollout's workers get the cores; this thread's own ops run serial meanwhile (serial_caller).
        fast = supports(model) and self.device.type == 'cpu'
        with torch.no_grad(), (serial_caller() if fast else nullcontext()) as threads:
            self._threads = threads
            try:
                seq, ret, states, cand, info = self._optimise(model, task, state)
            finally:
                self._threads = None
        if not math.isfinite(float(ret)):
            return self._no_plan(state, t0)
        seq = seq.clamp(-1.0, 1.0)
        self._previous = seq.clone()
        seq_np = seq.cpu().numpy().astype(np.float32)
        result = PlanResult(
            action=seq_np[0], actions=seq_np,
            predicted_states=_mean_states(states).cpu().numpy().astype(np.float32), best_reward=float(ret),
            solve_time_s=time.perf_counter() - t0, num_samples=self.num_samples, horizon=self.horizon,
            planner=self.name, info=info)
        if cand is not None and self.keep_candidates:
            result.candidate_states = _mean_states(cand).cpu().numpy().astype(np.float32)
        return result

    def _no_plan(self, state, t0) -> PlanResult:
        """Every candidate was predicted non-finite: a zero action, the reason in ``info['reason']`` (the
        mpc_planner node puts it into MpcStatus), and no warm start kept (it would carry the bad plan on)."""
        self.reset()
        H, A = self.horizon, self.action_dim
        nan_states = np.full((H + 1, state.shape[0]), np.nan, dtype=np.float32)
        nan_states[0] = state.cpu().numpy()
        return PlanResult(action=np.zeros(A, np.float32), actions=np.zeros((H, A), np.float32),
                          predicted_states=nan_states, best_reward=-math.inf,
                          solve_time_s=time.perf_counter() - t0, num_samples=self.num_samples, horizon=H,
                          planner=self.name, info={'reason': 'model predicts non-finite states or rewards for '
                                                             'every candidate: zero action'})

    def _candidates(self, returns, states):
        """Predicted states (E, n, H+1, S) of the n best candidates, or None."""
        if not self.keep_candidates:
            return None
        n = min(self.keep_candidates, returns.shape[0])
        idx = torch.topk(returns, n).indices
        return states[:, idx]

    def _optimise(self, model, task, state):
        """-> (sequence (H, A), its return, its states (E, H+1, S), candidate states or None, info dict)."""
        raise NotImplementedError


def _mix_uniform(actions, fraction: float, generator) -> None:
    """Replace the last ``fraction`` of the sequences (K, H, A) in place by uniform ones in [-1, 1]."""
    n = int(round(actions.shape[0] * fraction))
    if n > 0:
        actions[-n:] = torch.rand(n, *actions.shape[1:], generator=generator, dtype=actions.dtype,
                                  device=actions.device) * 2.0 - 1.0


@register('random_shooting')
class RandomShootingPlanner(Planner):
    """The paper's random shooting: K uniform sequences in [-1, 1], the best one's first action."""
    name = 'random_shooting'

    def _optimise(self, model, task, state):
        K, H, A = self.num_samples, self.horizon, self.action_dim
        actions = torch.rand(K, H, A, generator=self.generator, dtype=self.dtype, device=self.device) * 2.0 - 1.0
        returns, states = self.rollout(model, task, state, actions, best_only=True)
        best = int(torch.argmax(returns))
        return actions[best], returns[best], states[:, best], self._candidates(returns, states), {}


@register('cem')
class CEMPlanner(Planner):
    """Cross-entropy method with warm start.

    iterations: refits per plan (K / iterations samples each); elite_fraction: share of each batch kept;
    init_std: std of the first Gaussian (actions units); momentum: weight of the old mean/std in each refit;
    min_std: floor on the std. The warm start's mean is always one of the samples. uniform_fraction: share
    of each batch drawn uniformly from [-1, 1] as in random shooting, so that a manoeuvre far from the
    previous plan (turning on the spot at a corner) can still be found.
    """
    name = 'cem'

    def __init__(self, action_dim, horizon, num_samples, seed=None, iterations: int = 4,
                 elite_fraction: float = 0.1, init_std: float = 0.5, momentum: float = 0.1,
                 min_std: float = 0.05, uniform_fraction: float = 0.1, **kwargs):
        self.iterations = max(1, int(iterations))
        self.uniform_fraction = min(max(float(uniform_fraction), 0.0), 1.0)
        self.elite_fraction, self.init_std = float(elite_fraction), float(init_std)
        self.momentum, self.min_std = float(momentum), float(min_std)
        super().__init__(action_dim, horizon, num_samples, seed, **kwargs)

    def _optimise(self, model, task, state):
        H, A = self.horizon, self.action_dim
        n = max(2, self.num_samples // self.iterations)
        n_elite = max(1, int(round(n * self.elite_fraction)))
        mean = self._shifted_previous()
        std = torch.full((H, A), self.init_std, dtype=self.dtype, device=self.device)
        best = (None, -math.inf, None)
        returns = states = None
        for _ in range(self.iterations):
            noise = torch.randn(n, H, A, generator=self.generator, dtype=self.dtype, device=self.device)
            actions = (mean + std * noise).clamp(-1.0, 1.0)
            _mix_uniform(actions, self.uniform_fraction, self.generator)
            actions[0] = mean.clamp(-1.0, 1.0)
            returns, states = self.rollout(model, task, state, actions, best_only=True)
            i = int(torch.argmax(returns))
            if float(returns[i]) > best[1]:
                best = (actions[i].clone(), float(returns[i]), states[:, i].clone())
            n_ok = int(torch.isfinite(returns).sum())
            if n_ok == 0:          # nothing to refit to: keep the distribution, sample again
                continue
            elites = actions[torch.topk(returns, min(n_elite, n_ok)).indices]
            mean = self.momentum * mean + (1 - self.momentum) * elites.mean(0)
            std = (self.momentum * std + (1 - self.momentum) * elites.std(0, unbiased=False)).clamp_min(self.min_std)
        # Execute the best sequence seen (what random shooting would do), warm-start from the refitted mean.
        seq, ret, st = best
        self._mean_next = mean
        if seq is None:            # every sample non-finite: plan() sends a zero action and says why
            return torch.zeros(H, A, dtype=self.dtype, device=self.device), -math.inf, None, None, {}
        return seq, ret, st, self._candidates(returns, states), {'final_std': float(std.mean())}

    def plan(self, model, task, state) -> PlanResult:
        result = super().plan(model, task, state)
        # The next plan starts from the distribution's mean, not only the executed best sample.
        if math.isfinite(result.best_reward):
            self._previous = self._mean_next.clamp(-1.0, 1.0)
        return result


@register('mppi')
class MPPIPlanner(Planner):
    """MPPI with warm start: sequences = shifted previous plan + N(0, noise_std^2), clipped to [-1, 1];
    new plan = average weighted by ``exp((R - max R) / (temperature * (max R - min R)))`` (the temperature is
    relative to the spread of the returns, so it does not depend on the reward's scale).
    iterations: refinements per plan (K / iterations samples each). The warm start itself is a sample.
    uniform_fraction: share of the samples drawn uniformly from [-1, 1] (see CEMPlanner).
    The recombined plan is executed unless the best sample of the last batch is predicted to do better
    (info['fallback']); the next plan warm-starts from what was executed.
    """
    name = 'mppi'

    def __init__(self, action_dim, horizon, num_samples, seed=None, iterations: int = 1,
                 noise_std: float = 0.5, temperature: float = 0.1, uniform_fraction: float = 0.1, **kwargs):
        self.iterations = max(1, int(iterations))
        self.uniform_fraction = min(max(float(uniform_fraction), 0.0), 1.0)
        self.noise_std, self.temperature = float(noise_std), float(temperature)
        if self.temperature <= 0:
            raise ValueError(f'mppi: temperature must be > 0, found {temperature}')
        super().__init__(action_dim, horizon, num_samples, seed, **kwargs)

    def _optimise(self, model, task, state):
        H, A = self.horizon, self.action_dim
        n = max(2, self.num_samples // self.iterations)
        mean = self._shifted_previous()
        returns = states = None
        for _ in range(self.iterations):
            noise = torch.randn(n, H, A, generator=self.generator, dtype=self.dtype,
                                device=self.device) * self.noise_std
            actions = (mean + noise).clamp(-1.0, 1.0)
            _mix_uniform(actions, self.uniform_fraction, self.generator)
            actions[0] = mean
            returns, states = self.rollout(model, task, state, actions)
            ok = torch.isfinite(returns)
            if not bool(ok.any()):     # nothing to weigh: keep the mean (never a NaN in the warm start)
                continue
            lo, hi = returns[ok].min(), returns[ok].max()
            spread = (hi - lo).clamp_min(1e-9)
            # Non-finite samples get weight exactly 0 (exp(-inf)).
            w = torch.softmax((returns - hi) / (self.temperature * spread), 0)
            mean = (w[:, None, None] * actions).sum(0).clamp(-1.0, 1.0)
        # Predict the recombined plan once more. At a fork between two manoeuvres (turn left or right at a sharp
        # corner) the weighted average can be neither and stall the robot: then the best sample is executed.
        ret, st = self.rollout(model, task, state, mean.unsqueeze(0))
        i = int(torch.argmax(returns))
        if not (math.isfinite(float(returns[i])) or math.isfinite(float(ret[0]))):
            return mean, -math.inf, None, None, {}
        if float(returns[i]) > float(ret[0]):
            return actions[i], returns[i], states[:, i], self._candidates(returns, states), {'fallback': True}
        return mean, ret[0], st[:, 0], self._candidates(returns, states), {'fallback': False}


def coloured_noise(n: int, horizon: int, action_dim: int, exponent: float, generator, device=None,
                   dtype=torch.float32):
    """(n, horizon, action_dim) Gaussian noise whose power spectrum along the horizon is ~ 1 / f^exponent (0:
    white; 2: the iCEM paper's default, smooth sequences). Timmer & Koenig (1995) as in the ``colorednoise``
    package the iCEM authors use: scaled random Fourier coefficients, inverse real FFT, divided by the standard
    deviation of the non-constant part (the constant term comes on top: variance ~1.3 at H = 10)."""
    if horizon < 2 or exponent == 0:
        return torch.randn(n, horizon, action_dim, generator=generator, device=device, dtype=dtype)
    f = torch.fft.rfftfreq(horizon, device=device, dtype=torch.float64)
    f[0] = 1.0 / horizon                            # low-frequency cut-off: the lowest resolvable frequency
    scale = f ** (-exponent / 2.0)
    w = scale[1:].clone()
    w[-1] *= (1 + (horizon % 2)) / 2.0              # f = +-0.5 is counted once for an even horizon
    sigma = 2.0 * torch.sqrt((w * w).sum()) / horizon
    shape = (n, action_dim, len(f))
    re = torch.randn(shape, generator=generator, device=device, dtype=torch.float64) * scale
    im = torch.randn(shape, generator=generator, device=device, dtype=torch.float64) * scale
    im[..., 0] = 0.0                                # the DC and (even horizon) Nyquist terms are real
    re[..., 0] *= math.sqrt(2.0)
    if horizon % 2 == 0:
        im[..., -1] = 0.0
        re[..., -1] *= math.sqrt(2.0)
    y = torch.fft.irfft(torch.complex(re, im), n=horizon) / sigma
    return y.transpose(1, 2).to(dtype).contiguous()


@register('icem')
class ICEMPlanner(Planner):
    """iCEM: Pinneri et al. 2020, "Sample-efficient Cross-Entropy Method for Real-time Planning".

    CEM over action sequences with the paper's additions: coloured noise (``noise_exponent`` beta, 1/f^beta
    along the horizon), the population shrinking by ``population_decay`` per iteration (never below twice the
    elites), a share ``keep_elite_fraction`` of the elites carried into the next iteration and, shifted by one
    step, into the first iteration of the next plan; the distribution's mean is a sample of the last
    iteration; the best sequence seen is executed. The std restarts from ``init_std`` every plan; the mean is
    warm-started from the previous plan's, shifted. ``num_samples`` K is the total over the iterations (kept
    elites and the mean included), so it compares with the other planners at the same cost.
    """
    name = 'icem'

    def __init__(self, action_dim, horizon, num_samples, seed=None, iterations: int = 3,
                 elite_fraction: float = 0.1, population_decay: float = 1.25, noise_exponent: float = 2.0,
                 keep_elite_fraction: float = 0.3, init_std: float = 0.5, momentum: float = 0.1,
                 min_std: float = 0.05, **kwargs):
        self.iterations = max(1, int(iterations))
        self.population_decay = float(population_decay)
        if not self.population_decay >= 1.0:
            raise ValueError(f'icem: population_decay must be >= 1, found {population_decay}')
        self.noise_exponent = float(noise_exponent)
        self.elite_fraction, self.keep_elite_fraction = float(elite_fraction), float(keep_elite_fraction)
        self.init_std, self.momentum, self.min_std = float(init_std), float(momentum), float(min_std)
        super().__init__(action_dim, horizon, num_samples, seed, **kwargs)
        self.populations = self._populations()

    def _populations(self) -> list:
        """Sampled sequences per iteration, the largest first population whose iterations, kept elites and
        final mean together stay within num_samples."""
        K, it, g = self.num_samples, self.iterations, self.population_decay
        for n0 in range(K, 1, -1):
            n_elite = max(1, int(math.ceil(n0 * self.elite_fraction)))
            keep = min(n_elite, int(math.ceil(self.keep_elite_fraction * n_elite)))
            pops = [max(int(math.ceil(n0 * g ** -i)), 2 * n_elite) for i in range(it)]
            if sum(pops) + keep * (it - 1) + 1 <= K:
                break
        self.n_elite, self.n_keep = n_elite, keep
        return pops

    def reset(self) -> None:
        super().reset()
        self._elites: torch.Tensor | None = None

    def _optimise(self, model, task, state):
        H, A = self.horizon, self.action_dim
        mean = self._shifted_previous()
        std = torch.full((H, A), self.init_std, dtype=self.dtype, device=self.device)
        best = (None, -math.inf, None)
        returns = states = None
        evaluated = 0
        for i, n in enumerate(self.populations):
            noise = coloured_noise(n, H, A, self.noise_exponent, self.generator, self.device, self.dtype)
            parts = [(mean + std * noise).clamp(-1.0, 1.0)]
            if self._elites is not None and self.n_keep:
                pick = torch.randperm(len(self._elites), generator=self.generator, device=self.device)[:self.n_keep]
                kept = self._elites[pick]
                if i == 0:       # last plan's elites, shifted one step; a new last action from the distribution
                    tail = (mean[-1] + std[-1] * torch.randn(len(kept), A, generator=self.generator,
                                                             dtype=self.dtype, device=self.device))
                    kept = torch.cat([kept[:, 1:], tail.clamp(-1.0, 1.0).unsqueeze(1)], 1)
                parts.append(kept)
            if i == len(self.populations) - 1:
                parts.append(mean.clamp(-1.0, 1.0).unsqueeze(0))
            actions = torch.cat(parts, 0)
            returns, states = self.rollout(model, task, state, actions, best_only=True)
            evaluated += len(actions)
            j = int(torch.argmax(returns))
            if float(returns[j]) > best[1]:
                best = (actions[j].clone(), float(returns[j]), states[:, j].clone())
            n_ok = int(torch.isfinite(returns).sum())
            if n_ok == 0:         # nothing to refit to: keep the distribution
                continue
            self._elites = actions[torch.topk(returns, min(self.n_elite, n_ok)).indices]
            mean = self.momentum * mean + (1 - self.momentum) * self._elites.mean(0)
            std = (self.momentum * std + (1 - self.momentum) * self._elites.std(0, unbiased=False)
                   ).clamp_min(self.min_std)
        seq, ret, st = best
        self._mean_next = mean
        if seq is None:           # every sample non-finite: plan() sends a zero action and says why
            self._elites = None
            return torch.zeros(H, A, dtype=self.dtype, device=self.device), -math.inf, None, None, {}
        return seq, ret, st, self._candidates(returns, states), {'final_std': float(std.mean()),
                                                                  'evaluated': evaluated}

    def plan(self, model, task, state) -> PlanResult:
        result = super().plan(model, task, state)
        if math.isfinite(result.best_reward):
            self._previous = self._mean_next.clamp(-1.0, 1.0)
        return result


PLANNER_CLASSES = PLANNERS     # the registry under its former name


def make_planner(name: str, action_dim: int, horizon: int, num_samples: int, seed: int | None = None,
                 **kwargs) -> Planner:
    """A planner by name, one of PLANNERS ('rs' = random_shooting; kwargs go to its constructor; precision,
    device, chunk_rows, refine_fraction, refine_margin, workers, kernel and the iCEM settings default to
    config/planners.yaml)."""
    classes = dict(PLANNERS, rs=RandomShootingPlanner)
    if name not in classes:
        raise ValueError(f'unknown planner {name!r}; expected one of {list(PLANNERS)}')
    settings = planner_settings()
    defaults = {k: settings[k] for k in ('precision', 'device', 'chunk_rows', 'refine_fraction', 'refine_margin',
                                         'workers', 'kernel') if k in settings}
    if classes[name] is ICEMPlanner:
        defaults.update(settings.get('icem') or {})
    return classes[name](action_dim, horizon, num_samples, seed, **{**defaults, **kwargs})
