"""The learned dynamics model of Nagabandi et al. 2017, Sec. IV-A (ROS-free).

An MLP f maps ``concat(normalise(s[3:]), a)`` to the normalised state change ``normalise(delta_target(s, s'))``
(see ``core.state``: body-frame pose change + change of the other elements). The normaliser (dataset mean and
std) lives in the module as buffers, so ``predict`` takes and returns physical units. Optionally an ensemble of
N members, all evaluated in one batched matmul per layer (weights (E, in, out), ``torch.baddbmm``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mbmf_ros.core.state import POSE_DIM, POSE_NAMES, apply_delta

ACTIVATIONS = {'relu': nn.ReLU, 'tanh': nn.Tanh, 'silu': nn.SiLU, 'elu': nn.ELU}
# Elements whose std is ~0 in the data (e.g. a pose that never moves) would divide by zero. The floor is relative
# to the element's scale, sqrt(mean^2 + std^2): an absolute 1e-6 turns a nearly-constant input such as cos_roll
# of a robot that never tilts (1 +- 1e-7) into inputs of 1e3 for a tilt of 1e-3 rad that planning then visits.
STD_FLOOR = 1e-6
STD_FLOOR_RELATIVE = 1e-3


class EnsembleLinear(nn.Module):
    """E independent linear layers applied to (E, N, in) -> (E, N, out) in one batched matmul."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim))
        # PyTorch's nn.Linear default initialisation, member by member.
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


def renormalise_views_(sn, cs, block, norm) -> None:
    """The arithmetic of ``DynamicsModel.renormalise_pairs_`` on views made beforehand (``pair_views``): block
    (..., pairs, 2) divided in place by the pairs' norms, kept >= 1e-6; norm: a buffer (..., pairs, 1)."""
    torch.hypot(sn, cs, out=norm[..., 0])
    block.div_(norm.clamp_min_(1e-6))


class DynamicsModel(nn.Module):
    """s_{t+1} = apply_delta(s_t, f(s_t[3:], a_t)).

    state_names: S names, the first three 'x', 'y', 'yaw'. action_names: A names (actions in [-1, 1]).
    hidden_sizes: widths of the hidden layers (paper: (500, 500); the authors' public code: (500,)).
    num_members: 1, or E for an ensemble (each member trained on its own bootstrap sample).
    """

    def __init__(self, state_names, action_names, hidden_sizes=(500, 500), activation: str = 'relu',
                 num_members: int = 1, agent: str = ''):
        super().__init__()
        state_names, action_names = tuple(state_names), tuple(action_names)
        if tuple(state_names[:POSE_DIM]) != POSE_NAMES:
            raise ValueError(f'DynamicsModel: state_names must start with {POSE_NAMES}, found {state_names[:3]}')
        if activation not in ACTIVATIONS:
            raise ValueError(f'DynamicsModel: activation {activation!r} unknown, expected one of '
                             f'{sorted(ACTIVATIONS)}')
        if num_members < 1 or not action_names or len(state_names) <= POSE_DIM:
            raise ValueError(f'DynamicsModel: need num_members >= 1 (found {num_members}), at least one action '
                             f'(found {len(action_names)}) and state elements beyond the pose '
                             f'(found {len(state_names)} names)')
        self.agent = agent
        self.state_names, self.action_names = state_names, action_names
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.activation = activation
        self.num_members = int(num_members)
        S, A = len(state_names), len(action_names)
        self.in_dim, self.out_dim = S - POSE_DIM + A, S
        dims = (self.in_dim,) + self.hidden_sizes + (self.out_dim,)
        self.layers = nn.ModuleList(EnsembleLinear(self.num_members, i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.act = ACTIVATIONS[activation]()
        self.register_buffer('in_mean', torch.zeros(S - POSE_DIM))
        self.register_buffer('in_std', torch.ones(S - POSE_DIM))
        self.register_buffer('out_mean', torch.zeros(S))
        self.register_buffer('out_std', torch.ones(S))
        # (sin, cos) element pairs: renormalised to the unit circle after every predicted step, so that an
        # open-loop rollout cannot drift to |(sin, cos)| != 1 (a state no data ever showed the network).
        pairs = [(state_names.index(n), state_names.index('cos_' + n[4:])) for n in state_names
                 if n.startswith('sin_') and 'cos_' + n[4:] in state_names]
        self._sin_idx = [p[0] for p in pairs]
        self._cos_idx = [p[1] for p in pairs]
        # (first, end) when the pairs are sin, cos, sin, cos, ... in one block (the hexapod's layout)
        first = self._sin_idx[0] if pairs else 0
        self._pairs_block = (first, first + 2 * len(pairs)) if pairs and all(
            (si, ci) == (first + 2 * k, first + 2 * k + 1) for k, (si, ci) in enumerate(pairs)) else None

    # --- configuration -------------------------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def config(self) -> dict:
        """Everything needed to rebuild the module before loading its state_dict (plain types)."""
        return {'state_names': list(self.state_names), 'action_names': list(self.action_names),
                'hidden_sizes': list(self.hidden_sizes), 'activation': self.activation,
                'num_members': self.num_members, 'agent': self.agent}

    @classmethod
    def from_config(cls, cfg: dict) -> 'DynamicsModel':
        return cls(cfg['state_names'], cfg['action_names'], cfg['hidden_sizes'], cfg['activation'],
                   cfg['num_members'], cfg.get('agent', ''))

    def set_normaliser(self, in_mean, in_std, out_mean, out_std) -> None:
        """Dataset statistics: inputs (S-3,) of state[3:], outputs (S,) of delta_target; std floored."""
        for name, v in (('in_mean', in_mean), ('in_std', in_std), ('out_mean', out_mean), ('out_std', out_std)):
            buf = getattr(self, name)
            v = torch.as_tensor(v, dtype=buf.dtype)
            if v.shape != buf.shape:
                raise ValueError(f'DynamicsModel.set_normaliser: {name} has shape {tuple(v.shape)}, expected '
                                 f'{tuple(buf.shape)}')
            if not torch.all(torch.isfinite(v)):
                raise ValueError(f'DynamicsModel.set_normaliser: {name} is not finite: {v}')
            if name.endswith('std'):
                mean = torch.as_tensor(in_mean if name == 'in_std' else out_mean, dtype=buf.dtype)
                scale = torch.sqrt(mean * mean + v * v)
                v = torch.maximum(v, (STD_FLOOR_RELATIVE * scale).clamp_min(STD_FLOOR))
            buf.copy_(v)

    # --- evaluation ----------------------------------------------------------------------------------------
    def forward(self, x):
        """Normalised inputs (E, N, in_dim) -> normalised deltas (E, N, S)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x

    def normalise_inputs(self, states, actions):
        """states (..., S), actions (..., A) -> network inputs (..., S-3+A) float32."""
        s = (states[..., POSE_DIM:].to(self.in_mean.dtype) - self.in_mean) / self.in_std
        return torch.cat([s, actions.to(s.dtype)], -1)

    def predict_delta(self, states, actions):
        """Physical-unit deltas (E, K, S) for states (E, K, S)/(K, S) and actions (E, K, A)/(K, A)."""
        states, actions = self._broadcast(states, actions)
        y = self(self.normalise_inputs(states, actions))
        return y * self.out_std + self.out_mean

    @torch.no_grad()
    def predict(self, states, actions):
        """Next states (E, K, S) in physical units; the pose is rolled forward with core.state.apply_delta and
        every (sin_<a>, cos_<a>) pair is put back on the unit circle.

        states: (E, K, S) or (K, S) (broadcast to all E members), float32 (float64 is accepted and kept);
        actions: (K, A) or (E, K, A), in [-1, 1]. One batched pass, no loop over rows.
        """
        states, actions = self._broadcast(states, actions)
        delta = self.predict_delta(states, actions)
        return self.finish_prediction(states, delta.to(states.dtype))

    def finish_prediction(self, states, delta):
        """Next states (E, K, S) from states (E, K, S) and physical-unit deltas (E, K, S): every step of
        ``predict`` after the network (core.state.apply_delta, then the (sin, cos) pairs back on the unit
        circle). The planners' fast rollout (core.rollout) does the same over all H steps of a chunk at once."""
        nxt = apply_delta(states, delta)
        self.renormalise_pairs_(nxt[..., POSE_DIM:])
        return nxt

    def renormalise_pairs_(self, rest):
        """Put every (sin_<a>, cos_<a>) pair of ``rest`` (..., S - 3), the state without its pose, back on the
        unit circle, in place (a view of a larger buffer is fine). Returns ``rest``."""
        if not self._sin_idx:
            return rest
        views = self.pair_views(rest)
        if views is not None:                   # sin, cos, sin, cos, ... in one block: strided views, no gather
            renormalise_views_(*views, torch.empty(views[2].shape[:-1] + (1,), dtype=rest.dtype,
                                                   device=rest.device))
        else:
            si, ci = [i - POSE_DIM for i in self._sin_idx], [i - POSE_DIM for i in self._cos_idx]
            sn, cs = rest[..., si], rest[..., ci]
            norm = torch.hypot(sn, cs).clamp_min_(1e-6)
            rest[..., si] = sn / norm
            rest[..., ci] = cs / norm
        return rest

    def pair_views(self, rest):
        """(sin, cos, block) views of ``rest`` (..., S - 3) when the (sin, cos) pairs are interleaved in one
        block (the hexapod's layout): block (..., pairs, 2), sin and cos (..., pairs) of it; else None."""
        if self._pairs_block is None:
            return None
        a, b = (i - POSE_DIM for i in self._pairs_block)
        block = rest[..., a:b].unflatten(-1, ((b - a) // 2, 2))
        return block[..., 0], block[..., 1], block

    def _broadcast(self, states, actions):
        states = torch.as_tensor(states)
        actions = torch.as_tensor(actions)
        if not states.is_floating_point():
            states = states.float()
        E, S, A = self.num_members, self.state_dim, self.action_dim
        if states.shape[-1] != S or actions.shape[-1] != A:
            raise ValueError(f'DynamicsModel.predict: states (..., {S}) and actions (..., {A}) expected, found '
                             f'{tuple(states.shape)} and {tuple(actions.shape)} (state names {self.state_names})')
        if states.dim() == 2:
            states = states.unsqueeze(0).expand(E, -1, -1)
        if actions.dim() == 2:
            actions = actions.unsqueeze(0).expand(E, -1, -1)
        if states.dim() != 3 or actions.dim() != 3 or states.shape[0] != E or actions.shape[0] != E \
                or states.shape[1] != actions.shape[1]:
            raise ValueError(f'DynamicsModel.predict: states (E={E}, K, {S}) or (K, {S}) and actions (K, {A}) or '
                             f'(E, K, {A}) with equal K expected, found {tuple(states.shape)} and '
                             f'{tuple(actions.shape)}')
        return states, actions

    @torch.no_grad()
    def rollout(self, state, actions):
        """Open-loop prediction: state (S,) or (K, S), actions (H, A) or (H, K, A) -> (E, H+1, K, S) states."""
        state = torch.as_tensor(state)
        actions = torch.as_tensor(actions)
        if state.dim() == 1:
            state = state.unsqueeze(0)
        if actions.dim() == 2:
            actions = actions.unsqueeze(1).expand(-1, state.shape[0], -1)
        s = state.unsqueeze(0).expand(self.num_members, -1, -1)
        out = [s]
        for h in range(actions.shape[0]):
            s = self.predict(s, actions[h])
            out.append(s)
        return torch.stack(out, 1)
