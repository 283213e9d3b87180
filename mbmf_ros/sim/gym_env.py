"""A Gymnasium environment of one agent's moving-forward task, for model-free fine-tuning (Mb-Mf, paper Sec. V).

Observation: ``state[3:]`` (the same pose-free state the dynamics model and the DAgger policy see, float32);
action: Box [-1, 1]^A; reward: the agent's moving-forward reward (``MovingForwardTask.for_agent``, appendix C)
computed on the true states; terminated: the agent left its healthy range (``AgentSpec.terminated``);
truncated: ``max_episode_steps`` reached. Episodes start facing +x (no heading noise: appendix A.1 gives
the swimmer's random heading to trajectory following only). ``env_steps`` counts every step taken, across resets, so that the
Mb-Mf comparison counts environment steps honestly.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from mbmf_ros.core.agents import get_agent
from mbmf_ros.core.tasks import MovingForwardTask
from mbmf_ros.sim.simulation import Simulation


def step_reward(task, state, action, next_state) -> float:
    """The task's reward of one true transition: state (S,), action (A,), next_state (S,)."""
    s = torch.as_tensor(np.asarray(state, dtype=np.float32))[None]
    a = torch.as_tensor(np.asarray(action, dtype=np.float32))[None]
    s2 = torch.as_tensor(np.asarray(next_state, dtype=np.float32))[None, None]
    return float(task.reward(s, a, s2).reshape(-1)[0])


class ForwardEnv(gym.Env):
    """agent: name; max_episode_steps: episode length (0: the agent's); seed: start-state noise stream."""
    metadata = {'render_modes': []}

    def __init__(self, agent: str, max_episode_steps: int = 0, seed: int | None = None):
        self.spec_ = get_agent(agent)
        # moving forward starts facing +x: the U(-pi, pi) heading of the swimmer is for trajectory following
        self.sim = Simulation(self.spec_, max_episode_steps=max_episode_steps or None, seed=seed, heading_noise=False)
        self.task = MovingForwardTask.for_agent(self.spec_)
        dim = self.spec_.state_dim - 3
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.spec_.action_dim,), np.float32)
        self.env_steps = 0
        self._state = None

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self._state = np.asarray(self.sim.reset(seed=seed).estimate.values, dtype=np.float64)
        return self._state[3:].astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        result = self.sim.step(action)
        nxt = np.asarray(result.estimate.values, dtype=np.float64)
        reward = step_reward(self.task, self._state, action, nxt)
        self._state = nxt
        self.env_steps += 1
        return nxt[3:].astype(np.float32), reward, bool(result.terminated), bool(result.truncated), {}
