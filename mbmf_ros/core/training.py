"""Training the dynamics model (paper Sec. IV-A/B, appendix A.2), ROS-free.

Data: trajectories (states (T+1, S) float64, actions (T, A) float32; see ``io.bags.Trajectory`` or anything
with ``states``/``actions`` attributes). Inputs ``concat(normalise(s[3:]), a)``, targets
``normalise(delta_target(s, s'))``; MSE loss in normalised units; Adam lr 1e-3, batch 512; zero-mean Gaussian
noise on normalised inputs and targets; split into train/validation by trajectory; D_rand/D_rl mixing
(paper: 10-90); warm start; ensembles on bootstrap samples. Validation: 1-step MSE (normalised units) and the
H-step open-loop error of Eq. 3 (physical units, yaw difference wrapped) and the x/y distance after H steps (m).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
import torch

from mbmf_ros.core.dynamics import DynamicsModel
from mbmf_ros.core.rollout import resolve_device
from mbmf_ros.core.state import delta_target, wrap_angle

HORIZONS = (1, 5, 10, 20, 50)


@dataclasses.dataclass
class TrainConfig:
    hidden_sizes: tuple = (500, 500)     # paper 2 x 500; public code 1 x 500
    activation: str = 'relu'
    num_members: int = 1                 # > 1: ensemble on bootstrap samples
    epochs: int = 50
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    noise_std: float = 0.01              # Gaussian noise on normalised inputs and targets (0: none)
    validation_fraction: float = 0.1     # of the trajectories (of the transitions if only one trajectory)
    horizons: tuple = HORIZONS           # H of the H-step error, Eq. 3
    max_validation_starts: int = 2000    # start points of the H-step error (subsampled, seeded)
    rand_fraction: float = 0.1           # share of D_rand in each epoch when D_rl is given (paper 10-90)
    seed: int = 0
    threads: int = 0                     # torch intra-op threads; 0 leaves torch's setting
    bf16: bool = False                   # bfloat16 autocast for the forward pass (CPU: ~1.7x, see bench)
    device: str = 'cpu'                  # cpu | cuda | auto (cuda when available); the model returned is on cpu

    @classmethod
    def from_dict(cls, d: dict) -> 'TrainConfig':
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'TrainConfig: unknown keys {unknown}; known: {sorted(names)}')
        d = dict(d)
        for k in ('hidden_sizes', 'horizons'):
            if k in d:
                d[k] = tuple(int(x) for x in d[k])
        return cls(**d)


@dataclasses.dataclass
class Transitions:
    """Flat transitions: states (N, S) float64, actions (N, A) float32, next_states (N, S) float64."""
    states: np.ndarray
    actions: np.ndarray
    next_states: np.ndarray

    def __len__(self):
        return len(self.states)


def to_transitions(trajectories) -> Transitions:
    """Stack the (s_t, a_t, s_{t+1}) of every trajectory; never across trajectories."""
    trajectories = [t for t in trajectories if len(t.actions)]
    if not trajectories:
        raise ValueError('no transitions: every trajectory is empty')
    S = trajectories[0].states.shape[1]
    for t in trajectories:
        if t.states.shape != (len(t.actions) + 1, S):
            raise ValueError(f'trajectory {getattr(t, "source", "?")}: states {t.states.shape} do not match '
                             f'actions {t.actions.shape} (expected ({len(t.actions) + 1}, {S}))')
    return Transitions(np.concatenate([t.states[:-1] for t in trajectories]).astype(np.float64),
                       np.concatenate([t.actions for t in trajectories]).astype(np.float32),
                       np.concatenate([t.states[1:] for t in trajectories]).astype(np.float64))


def trajectory_key(t) -> str:
    """A name for a trajectory that stays the same however many others are loaded beside it: its source (bag),
    episode and first step."""
    steps = getattr(t, 'steps', None)
    first = int(steps[0]) if steps is not None and len(steps) else 0
    return f'{getattr(t, "source", "")}|{getattr(t, "episode", 0)}|{first}'


def _unit_hash(key: str, seed: int) -> float:
    import hashlib
    h = hashlib.sha256(f'{seed}|{key}'.encode()).digest()
    return int.from_bytes(h[:8], 'little') / 2.0 ** 64


def split_by_trajectory(trajectories, validation_fraction: float, seed: int = 0):
    """(train, validation) lists of trajectories; at least one trajectory in each when there are >= 2.

    Each trajectory's side follows from a hash of its ``trajectory_key`` and the seed alone (validation when
    the hash is below validation_fraction; when none is, the one with the smallest hash), so aggregation
    iterations that add trajectories never move one already trained on into validation.
    A single trajectory is cut in time instead (first part train, last part validation) so that no
    validation transition is seen in training.
    """
    trajs = list(trajectories)
    if validation_fraction <= 0:
        return trajs, []
    if len(trajs) == 1:
        t = trajs[0]
        T = len(t.actions)
        cut = max(1, int(round(T * (1 - validation_fraction))))
        if cut >= T:
            return trajs, []
        return [_slice(t, 0, cut)], [_slice(t, cut, T)]
    u = [_unit_hash(trajectory_key(t), seed) for t in trajs]
    val = {i for i, h in enumerate(u) if h < validation_fraction}
    if not val:
        val = {int(np.argmin(u))}
    if len(val) == len(trajs):        # keep at least one for training: the largest hash
        val.discard(int(np.argmax(u)))
    return [t for i, t in enumerate(trajs) if i not in val], [t for i, t in enumerate(trajs) if i in val]


def _slice(t, a: int, b: int):
    """Transitions a..b-1 of a trajectory (states a..b) as the same kind of object."""
    import copy
    out = copy.copy(t)
    out.states, out.actions = t.states[a:b + 1], t.actions[a:b]
    for name in ('stamps', 'steps'):
        if getattr(t, name, None) is not None:
            setattr(out, name, getattr(t, name)[a:b + 1])
    return out


def fit_normaliser(data: Transitions):
    """(in_mean, in_std (S-3,), out_mean, out_std (S,)) of state[3:] and delta_target, float64."""
    d = delta_target(data.states, data.next_states)
    x = data.states[:, 3:]
    return x.mean(0), x.std(0), d.mean(0), d.std(0)


def _tensors(model: DynamicsModel, data: Transitions):
    """Normalised network inputs (N, in) and targets (N, S) as float32 tensors."""
    with torch.no_grad():
        s = torch.as_tensor(data.states)
        a = torch.as_tensor(data.actions)
        x = model.normalise_inputs(s, a).float()
        d = torch.as_tensor(delta_target(data.states, data.next_states))
        y = ((d - model.out_mean.double()) / model.out_std.double()).float()
    return x.contiguous(), y.contiguous()


def one_step_mse(model: DynamicsModel, data: Transitions, chunk: int = 65536) -> float:
    """1-step MSE of the normalised delta (mean over elements, members and transitions), no noise."""
    if data is None or len(data) == 0:
        return float('nan')
    dev = model.in_mean.device
    x, y = (t.to(dev) for t in _tensors(model, data))
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            xb = x[i:i + chunk].unsqueeze(0).expand(model.num_members, -1, -1)
            total += float(((model(xb) - y[i:i + chunk]) ** 2).mean(-1).sum()) / model.num_members
    return total / len(x)


def _open_loop_errors(model: DynamicsModel, trajectories, H: int, max_starts: int, rng):
    """truth - prediction (E, N, H, S) of H-step open-loop rollouts from up to ``max_starts`` start points
    (yaw difference wrapped), or None when no trajectory has H actions."""
    trajs = [t for t in trajectories if len(t.actions)]
    starts = [(i, s) for i, t in enumerate(trajs) for s in range(len(t.actions) - H + 1)]
    if not starts:
        return None
    if len(starts) > max_starts:
        starts = [starts[j] for j in rng.choice(len(starts), max_starts, replace=False)]
    s0 = np.stack([trajs[i].states[s] for i, s in starts]).astype(np.float32)
    acts = np.stack([trajs[i].actions[s:s + H] for i, s in starts]).astype(np.float32)   # (N, H, A)
    truth = np.stack([trajs[i].states[s + 1:s + H + 1] for i, s in starts])             # (N, H, S)
    pred = model.rollout(torch.as_tensor(s0), torch.as_tensor(acts).transpose(0, 1))[:, 1:]  # (E,H,N,S)
    diff = truth[None] - pred.double().permute(0, 2, 1, 3).numpy()                       # (E, N, H, S)
    diff[..., 2] = wrap_angle(diff[..., 2])
    return diff


def open_loop_errors(model: DynamicsModel, trajectories, horizons=HORIZONS, max_starts: int = 2000,
                     seed: int = 0) -> tuple[dict, dict]:
    """({H: Eq. 3 error}, {H: x/y distance (m) after H steps}) from one open-loop rollout per H.

    Eq. 3 (paper): mean over start points t of (1/H) sum_h 1/2 ||s_{t+h} - s^_{t+h}||^2, in the physical units
    of the full state (x, y in m, yaw wrapped to [-pi, pi)). It sums every element in its own unit, so on the
    hexapod crank speeds (~20 rad/s) dominate it; the second figure, the mean distance between predicted and
    true x, y after H steps, is the one that matters for following a path. Averaged over ensemble members;
    H with no trajectory long enough is left out. Batched over all start points.
    """
    rng = np.random.default_rng(seed)
    eq3, position = {}, {}
    for H in horizons:
        diff = _open_loop_errors(model, trajectories, H, max_starts, rng)
        if diff is not None:
            eq3[H] = float((0.5 * (diff ** 2).sum(-1)).mean())
            position[H] = float(np.linalg.norm(diff[:, :, -1, :2], axis=-1).mean())
    return eq3, position


def h_step_errors(model: DynamicsModel, trajectories, horizons=HORIZONS, max_starts: int = 2000,
                  seed: int = 0) -> dict:
    """{H: paper Eq. 3 error} (see ``open_loop_errors``)."""
    return open_loop_errors(model, trajectories, horizons, max_starts, seed)[0]


def _epoch_indices(n_rand: int, n_rl: int, rand_fraction: float, rng) -> np.ndarray:
    """Indices into concat(D_rand, D_rl) for one epoch: all of D_rl plus a fresh D_rand sample so that D_rand
    is rand_fraction of the epoch (with replacement when D_rand is too small)."""
    if n_rl == 0:
        return rng.permutation(n_rand)
    if n_rand == 0 or rand_fraction <= 0:
        return n_rand + rng.permutation(n_rl)
    k = int(round(rand_fraction / (1.0 - rand_fraction) * n_rl))
    pick = rng.choice(n_rand, k, replace=k > n_rand)
    return rng.permutation(np.concatenate([pick, n_rand + np.arange(n_rl)]))


def train_dynamics(train, validation=(), config: TrainConfig | None = None, rl=(), warm_start=None,
                   agent: str = '', state_names=None, action_names=None, progress: bool = True,
                   log: Callable[[str], None] | None = None, should_stop: Callable[[], bool] | None = None):
    """Train a DynamicsModel; returns (model, metrics).

    train: D_rand trajectories used for training; validation: held-out trajectories; rl: D_rl trajectories
    (mixed with D_rand at config.rand_fraction per epoch). warm_start: a DynamicsModel whose weights and
    normaliser are kept (the normaliser is not refitted, so the weights keep their meaning).
    state_names/action_names default to the trajectories'. metrics: train_mse, validation_mse (1-step,
    normalised), h_step {H: error} (Eq. 3), transitions, epochs, seconds, transitions_per_s, history.
    should_stop(): polled each batch; True ends training early (metrics['stopped'] = True).
    """
    cfg = config or TrainConfig()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train, validation, rl = list(train), list(validation), list(rl)
    if not train and not rl:
        raise ValueError('train_dynamics: no training trajectories')
    ref = (train or rl)[0]
    state_names = tuple(state_names or getattr(ref, 'state_names'))
    action_names = tuple(action_names or getattr(ref, 'action_names'))
    for t in train + validation + rl:
        if t.states.shape[1] != len(state_names) or t.actions.shape[1] != len(action_names):
            raise ValueError(f'trajectory {getattr(t, "source", "?")}: states (.., {t.states.shape[1]}) '
                             f'actions (.., {t.actions.shape[1]}), expected {len(state_names)} state and '
                             f'{len(action_names)} action elements')
    d_rand = to_transitions(train) if train else None
    d_rl = to_transitions(rl) if rl else None
    d_val = to_transitions(validation) if validation else None
    if warm_start is not None:
        model = warm_start
        if tuple(model.state_names) != state_names or tuple(model.action_names) != action_names:
            raise ValueError(f'warm start model layout {model.state_names} / {model.action_names} differs '
                             f'from the data {state_names} / {action_names}')
    else:
        model = DynamicsModel(state_names, action_names, cfg.hidden_sizes, cfg.activation, cfg.num_members,
                              agent)
        both = Transitions(*(np.concatenate([getattr(d, f) for d in (d_rand, d_rl) if d is not None])
                             for f in ('states', 'actions', 'next_states')))
        model.set_normaliser(*fit_normaliser(both))
    if agent:
        model.agent = agent
    model.train()
    parts = [d for d in (d_rand, d_rl) if d is not None]
    tensors = [_tensors(model, d) for d in parts]
    model.to(device)
    x_all = torch.cat([t[0] for t in tensors]).to(device)
    y_all = torch.cat([t[1] for t in tensors]).to(device)
    n_rand, n_rl = (len(d_rand) if d_rand else 0), (len(d_rl) if d_rl else 0)
    E, B = model.num_members, cfg.batch_size
    # Bootstrap: member e sees the epoch's indices through its own resample (identity for one member). Each
    # part is resampled within itself, so every member keeps the epoch's D_rand/D_rl mix (paper: 10-90).
    boots = [np.arange(n_rand + n_rl)] if E == 1 else [
        np.concatenate([rng.integers(0, n_rand, n_rand), n_rand + rng.integers(0, n_rl, n_rl)]) for _ in range(E)]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, seen, stopped = [], 0, False
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.epochs, desc='train dynamics', unit='epoch', leave=False)
    for epoch in range(cfg.epochs):
        idx = _epoch_indices(n_rand, n_rl, cfg.rand_fraction, rng)
        member_idx = torch.as_tensor(np.stack([b[idx] for b in boots]) if E > 1 else idx[None],
                                     device=device)                                        # (E, N)
        total, nb = 0.0, 0
        for i in range(0, idx.shape[0], B):
            bi = member_idx[:, i:i + B]
            xb, yb = x_all[bi], y_all[bi]                                    # (E, b, in), (E, b, S)
            if cfg.noise_std > 0:
                xb = xb + cfg.noise_std * torch.randn_like(xb)
                yb = yb + cfg.noise_std * torch.randn_like(yb)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                pred = model(xb)
            loss = ((pred.float() - yb) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            nb += 1
            seen += bi.shape[1]
            if should_stop is not None and should_stop():
                stopped = True
                break
        model.eval()
        val = one_step_mse(model, d_val) if d_val is not None else float('nan')
        model.train()
        history.append({'epoch': epoch + 1, 'train_loss': total / max(nb, 1), 'validation_mse': val})
        if bar is not None:
            bar.set_postfix(train=f'{total / max(nb, 1):.4f}', val=f'{val:.4f}')
            bar.update(1)
        if log is not None:
            log(f'epoch {epoch + 1}/{cfg.epochs}: train loss {total / max(nb, 1):.5f}, validation 1-step MSE '
                f'{val:.5f}')
        if stopped:
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    model.to('cpu')          # planners, checkpoints and the open-loop validation take a cpu model
    model.eval()
    train_data = d_rand if d_rand is not None else d_rl
    h_step, h_step_position = open_loop_errors(model, validation, cfg.horizons, cfg.max_validation_starts,
                                               cfg.seed) if validation else ({}, {})
    metrics = {
        'train_mse': one_step_mse(model, train_data) if d_rl is None else one_step_mse(
            model, Transitions(*(np.concatenate([getattr(d, f) for d in (d_rand, d_rl) if d is not None])
                                 for f in ('states', 'actions', 'next_states')))),
        'validation_mse': one_step_mse(model, d_val) if d_val is not None else float('nan'),
        'h_step': h_step, 'h_step_position_m': h_step_position,
        'transitions': n_rand + n_rl,
        'validation_transitions': len(d_val) if d_val is not None else 0,
        'epochs': len(history),
        'seconds': seconds,
        'transitions_per_s': seen / seconds if seconds > 0 else float('nan'),
        'history': history,
        'stopped': stopped,
        'config': dataclasses.asdict(cfg),
    }
    return model, metrics


def format_metrics(metrics: dict) -> str:
    h = ', '.join(f'H={k}: {v:.4g}' for k, v in sorted(metrics.get('h_step', {}).items()))
    pos = ', '.join(f'H={k}: {v * 100:.2g} cm' for k, v in sorted(metrics.get('h_step_position_m', {}).items()))
    return (f'{metrics["transitions"]} transitions, {metrics["epochs"]} epochs in {metrics["seconds"]:.1f} s '
            f'({metrics["transitions_per_s"]:.0f} transitions/s); 1-step MSE train {metrics["train_mse"]:.4g}, '
            f'validation {metrics["validation_mse"]:.4g}; H-step error {h or "n/a"}; '
            f'x/y error after H steps {pos or "n/a"}')

