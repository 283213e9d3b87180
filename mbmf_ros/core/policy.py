"""The Mb-Mf policy: a Gaussian MLP policy imitating the MPC expert, and DAgger (paper Sec. V, appendix B.1), ROS-free.

``GaussianPolicy``: mean = MLP(normalise(obs)) (two tanh hidden layers of 64, linear output), std fixed (not
learnt: the paper picked 1.0 by hand because a wide initial policy helps TRPO explore). It is trained by
behaviour cloning on the expert's actions: MSE on the mean (``fit_policy``), Adam (paper: lr 1e-4, batch 500;
the authors' released code: lr 1e-3, batch 512, std 0.5 for the cheetah; both are ``ImitationConfig`` values).

Observations (``Observation``): a policy does not see the world pose (x, y, yaw), like the dynamics model.
``kind='state'`` (moving forward): ``state[3:]``. ``kind='path'`` (the distilled path follower): ``state[3:]``
then points of the reference path relative to the robot, in its heading frame (m): the path point at arc
length ``projection + d`` for every ``d`` in ``lookahead_m`` (clamped to the path's end); ``d = 0`` is the
closest point (the cross-track vector).

DAgger (``dagger``): expert rollouts (the MPC acting, N(0, noise_std) added to each action before execution);
fit; then iterations of rollouts with the policy acting while the expert labels every visited state;
aggregate; refit. Environment steps of every rollout are counted.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from mbmf_ros.core.state import POSE_DIM

STD_FLOOR = 1e-6


@dataclass
class ImitationConfig:
    """Behaviour cloning settings. Paper appendix B.1: lr 1e-4, batch 500, std 1.0; the authors' released code:
    lr 1e-3, batch 512, std 0.5 (``released()``)."""
    hidden_sizes: tuple = (64, 64)
    std: float = 1.0
    lr: float = 1e-4
    batch_size: int = 500
    epochs: int = 70
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> 'ImitationConfig':
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'ImitationConfig: unknown keys {unknown}; known: {sorted(names)}')
        d = dict(d)
        if 'hidden_sizes' in d:
            d['hidden_sizes'] = tuple(int(x) for x in d['hidden_sizes'])
        return cls(**d)

    def released(self) -> 'ImitationConfig':
        """The same with the authors' released-code values (lr 1e-3, batch 512, std 0.5)."""
        return dataclasses.replace(self, lr=1e-3, batch_size=512, std=0.5)


@dataclass(frozen=True)
class Observation:
    """What a policy sees, built from the full state (S,) (pose first) and, for kind 'path', a path tracker.

    kind: 'state' or 'path'; state_names: the agent's state layout; lookahead_m: arc lengths (m) ahead of the
    closest point of the path whose points (x, y in the robot's heading frame) follow the state elements.
    """
    kind: str
    state_names: tuple
    lookahead_m: tuple = ()

    def __post_init__(self):
        if self.kind not in ('state', 'path'):
            raise ValueError(f"Observation: kind must be 'state' or 'path', found {self.kind!r}")
        if tuple(self.state_names[:POSE_DIM]) != ('x', 'y', 'yaw'):
            raise ValueError(f'Observation: state_names must start with x, y, yaw, found {self.state_names[:3]}')
        if self.kind == 'path' and not self.lookahead_m:
            raise ValueError('Observation: kind path needs at least one lookahead distance')

    @property
    def names(self) -> tuple:
        names = tuple(self.state_names[POSE_DIM:])
        if self.kind == 'path':
            names += tuple(f'ref{i}_{c}' for i in range(len(self.lookahead_m)) for c in ('x', 'y'))
        return names

    @property
    def dim(self) -> int:
        return len(self.names)

    def config(self) -> dict:
        return {'kind': self.kind, 'state_names': list(self.state_names), 'lookahead_m': list(self.lookahead_m)}

    @classmethod
    def from_config(cls, d: dict) -> 'Observation':
        return cls(d['kind'], tuple(d['state_names']), tuple(float(x) for x in d.get('lookahead_m', ())))

    def __call__(self, state, path=None, progress_m: float = 0.0) -> np.ndarray:
        """Observation (dim,) float32 of state (S,); kind 'path' needs ``path`` (a WaypointPath) and the arc
        length (m) of the robot's closest point on it."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (len(self.state_names),):
            raise ValueError(f'Observation: state of shape ({len(self.state_names)},) expected '
                             f'({", ".join(self.state_names)}), found {state.shape}')
        if self.kind == 'state':
            return state[POSE_DIM:].astype(np.float32)
        if path is None:
            raise ValueError('Observation: kind path needs the reference path')
        x, y, yaw = state[:POSE_DIM]
        c, s = math.cos(yaw), math.sin(yaw)
        refs = []
        for d in self.lookahead_m:
            px, py = path.point_at(progress_m + d)
            dx, dy = px - x, py - y
            refs += [c * dx + s * dy, -s * dx + c * dy]      # world -> heading frame
        return np.concatenate([state[POSE_DIM:], refs]).astype(np.float32)


class GaussianPolicy(nn.Module):
    """a ~ N(mean(obs), std^2), mean = MLP(normalise(obs)); actions in [-1, 1] (``act`` clips the mean).

    observation: an ``Observation``; action_names: A names; hidden_sizes: tanh layers (paper (64, 64));
    std: the fixed standard deviation (actions units); agent: the agent name the policy is for.
    ``net`` is an nn.Sequential (Linear, Tanh, Linear, Tanh, Linear): indices 0, 2, 4 map onto SB3's
    ``mlp_extractor.policy_net.0``, ``.2`` and ``action_net`` (``sb3_state_dict``).
    """

    def __init__(self, observation: Observation, action_names, hidden_sizes=(64, 64), std: float = 1.0,
                 agent: str = ''):
        super().__init__()
        if not std > 0:
            raise ValueError(f'GaussianPolicy: std must be > 0, found {std!r}')
        self.observation, self.action_names = observation, tuple(action_names)
        self.hidden_sizes, self.std, self.agent = tuple(int(h) for h in hidden_sizes), float(std), agent
        dims = (observation.dim,) + self.hidden_sizes + (len(self.action_names),)
        layers = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        self.register_buffer('obs_mean', torch.zeros(observation.dim))
        self.register_buffer('obs_std', torch.ones(observation.dim))

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def config(self) -> dict:
        return {'observation': self.observation.config(), 'action_names': list(self.action_names),
                'hidden_sizes': list(self.hidden_sizes), 'std': self.std, 'agent': self.agent}

    @classmethod
    def from_config(cls, cfg: dict) -> 'GaussianPolicy':
        return cls(Observation.from_config(cfg['observation']), cfg['action_names'], cfg['hidden_sizes'],
                   cfg['std'], cfg.get('agent', ''))

    def set_normaliser(self, mean, std) -> None:
        """Observation statistics (dim,); std floored."""
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != self.obs_mean.shape or std.shape != self.obs_std.shape:
            raise ValueError(f'GaussianPolicy.set_normaliser: shapes {tuple(mean.shape)}, {tuple(std.shape)}; '
                             f'expected ({self.observation.dim},)')
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(STD_FLOOR))

    def forward(self, obs):
        """Mean action (..., A) of physical observations (..., dim) (unclipped)."""
        return self.net((obs - self.obs_mean) / self.obs_std)

    @torch.no_grad()
    def act(self, obs, generator: torch.Generator | None = None) -> np.ndarray:
        """Action (A,) float32 in [-1, 1] for one observation (dim,): the mean, or a sample with ``generator``."""
        mean = self(torch.as_tensor(np.asarray(obs, dtype=np.float32)))
        if generator is not None:
            mean = mean + self.std * torch.randn(mean.shape, generator=generator)
        return mean.clamp(-1.0, 1.0).numpy()

    def sb3_state_dict(self) -> dict:
        """The weights as a stable-baselines3 ActorCriticPolicy (net_arch pi=[64, 64], tanh) names them, with the
        normaliser folded into the first layer (SB3 has none inside the policy): W' = W / std (per input),
        b' = b - W' @ mean, so that W' obs + b' = W (obs - mean) / std + b. ``log_std`` = log(std)."""
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        if len(linears) != 3:
            raise ValueError(f'sb3_state_dict: expected two hidden layers, found {self.hidden_sizes}')
        w0 = linears[0].weight.detach() / self.obs_std
        b0 = linears[0].bias.detach() - w0 @ self.obs_mean
        return {'mlp_extractor.policy_net.0.weight': w0.clone(), 'mlp_extractor.policy_net.0.bias': b0.clone(),
                'mlp_extractor.policy_net.2.weight': linears[1].weight.detach().clone(),
                'mlp_extractor.policy_net.2.bias': linears[1].bias.detach().clone(),
                'action_net.weight': linears[2].weight.detach().clone(),
                'action_net.bias': linears[2].bias.detach().clone(),
                'log_std': torch.full((self.action_dim,), math.log(self.std))}


def fit_policy(policy: GaussianPolicy, obs, actions, config: ImitationConfig, epochs: int | None = None,
               fit_normaliser: bool = True, progress: Callable[[int, float], None] | None = None) -> list:
    """Behaviour cloning: MSE between the policy mean and the expert's actions. obs (N, dim), actions (N, A) in
    [-1, 1]. Adam with config.lr, minibatches of config.batch_size, ``epochs`` (default config.epochs) passes.
    Continues from the current weights (DAgger refits on the aggregated data). Returns the loss per epoch."""
    obs = torch.as_tensor(np.asarray(obs, dtype=np.float32))
    actions = torch.as_tensor(np.asarray(actions, dtype=np.float32))
    if obs.ndim != 2 or obs.shape[1] != policy.observation.dim or actions.shape != (len(obs), policy.action_dim):
        raise ValueError(f'fit_policy: obs (N, {policy.observation.dim}) and actions (N, {policy.action_dim}) '
                         f'expected, found {tuple(obs.shape)} and {tuple(actions.shape)}')
    if len(obs) == 0:
        raise ValueError('fit_policy: no data')
    if fit_normaliser:
        policy.set_normaliser(obs.mean(0), obs.std(0) if len(obs) > 1 else torch.ones(obs.shape[1]))
    gen = torch.Generator().manual_seed(int(config.seed))
    opt = torch.optim.Adam(policy.net.parameters(), lr=config.lr)
    losses = []
    policy.train()
    for epoch in range(config.epochs if epochs is None else int(epochs)):
        order = torch.randperm(len(obs), generator=gen)
        total = 0.0
        for i in range(0, len(obs), config.batch_size):
            idx = order[i:i + config.batch_size]
            loss = ((policy(obs[idx]) - actions[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(obs))
        if progress is not None:
            progress(epoch, losses[-1])
    policy.eval()
    return losses


@dataclass
class Episode:
    """One rollout: obs (T, dim) the observations visited, labels (T, A) the expert's (noise-free) action at
    each, rewards (T,), and whatever the caller reports in info (completion, cross-track, ...)."""
    obs: np.ndarray
    labels: np.ndarray
    rewards: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.obs)


@dataclass
class DaggerStage:
    """The outcome of one stage: 'expert' (MPC rollouts) or DAgger iteration i (policy rollouts)."""
    name: str
    episodes: list
    env_steps: int               # of this stage's rollouts
    losses: list

    @property
    def mean_return(self) -> float:
        return float(np.mean([e.rewards.sum() for e in self.episodes])) if self.episodes else float('nan')


def dagger(policy: GaussianPolicy, rollout: Callable, config: ImitationConfig, expert_rollouts: int,
           iterations: int, rollouts_per_iteration: int, epochs_per_iteration: int | None = None,
           data: tuple | None = None, first_iteration: int = 0, seed: int = 0,
           on_stage: Callable[[DaggerStage, tuple], None] | None = None) -> list:
    """DAgger from an expert (Ross et al. 2011; paper Sec. V).

    rollout(policy_or_None, seed) -> Episode: None = the expert acts (with its exploration noise), else the
    policy acts; either way ``labels`` are the expert's actions at the visited states.
    expert_rollouts: expert episodes first (paper: "saved MPC rollouts"); then ``iterations`` rounds of
    ``rollouts_per_iteration`` policy episodes, each followed by a refit on everything aggregated
    (``epochs_per_iteration``, default config.epochs). data: (obs, labels) aggregated so far and
    first_iteration: resume after a stopped run (skips the expert stage when data is given).
    on_stage(stage, (obs, labels)) is called after each stage's fit (save, report). Returns the stages.
    """
    stages = []
    if data is None:
        eps = [rollout(None, seed + i) for i in range(expert_rollouts)]
        obs = np.concatenate([e.obs for e in eps])
        labels = np.concatenate([e.labels for e in eps])
        losses = fit_policy(policy, obs, labels, config, epochs_per_iteration)
        stages.append(DaggerStage('expert', eps, sum(e.steps for e in eps), losses))
        if on_stage:
            on_stage(stages[-1], (obs, labels))
    else:
        obs, labels = data
    for it in range(first_iteration, iterations):
        eps = [rollout(policy, seed + 10_000 * (it + 1) + j) for j in range(rollouts_per_iteration)]
        obs = np.concatenate([obs] + [e.obs for e in eps])
        labels = np.concatenate([labels] + [e.labels for e in eps])
        # The normaliser stays that of the expert data: refitting it would shift the function being refined.
        losses = fit_policy(policy, obs, labels, config, epochs_per_iteration, fit_normaliser=False)
        stages.append(DaggerStage(f'dagger{it + 1}', eps, sum(e.steps for e in eps), losses))
        if on_stage:
            on_stage(stages[-1], (obs, labels))
    return stages
