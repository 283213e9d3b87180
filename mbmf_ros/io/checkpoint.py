"""Dynamics and policy checkpoints: one file with weights, normaliser, agent, layout, config, provenance and metrics.

Format: ``torch.save`` of a dict of plain types + tensors (loaded with ``weights_only=True``, so a checkpoint
cannot run code). Writing is atomic: a temp file in the same folder, fsync, then ``os.replace``: a crash never
leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from mbmf_ros.core.dynamics import DynamicsModel

FORMAT = 'mbmf_ros.dynamics/1'


class CheckpointMismatch(ValueError):
    """A checkpoint made for another agent or state/action layout than the one expected."""


def _plain(meta):
    """meta as JSON-compatible plain types (numpy scalars/arrays become numbers/lists)."""
    def default(o):
        if hasattr(o, 'tolist'):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, (set, tuple)):
            return list(o)
        raise TypeError(f'save_checkpoint: meta value {o!r} of type {type(o).__name__} is not storable')
    return json.loads(json.dumps(meta, default=default))


def save_checkpoint(path, model: DynamicsModel, meta: dict | None = None) -> Path:
    """Write model + meta (provenance, metrics, training config; plain types) to path atomically."""
    return _atomic_save(path, {
        'format': FORMAT,
        'agent': model.agent,
        'state_names': list(model.state_names),
        'action_names': list(model.action_names),
        'model_config': model.config(),
        'state_dict': {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        'meta': _plain(meta or {}),
    })


def _atomic_save(path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_checkpoint(path, expected_format: str = FORMAT) -> dict:
    """The raw checkpoint dict. Raises ValueError naming the file when it is not an mbmf_ros checkpoint of
    ``expected_format``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise ValueError(f'{path}: not a readable checkpoint ({type(e).__name__}: {e})') from e
    if not isinstance(data, dict) or data.get('format') != expected_format:
        found = data.get('format') if isinstance(data, dict) else type(data).__name__
        raise ValueError(f'{path}: format {found!r}, expected {expected_format!r}')
    return data


def load_checkpoint(path, agent: str | None = None, state_names=None, action_names=None):
    """(DynamicsModel in eval mode, meta). Checks agent and layout when given.

    Raises CheckpointMismatch naming both the checkpoint's and the expected agent/layout.
    """
    data = read_checkpoint(path)
    ck_agent, ck_s, ck_a = data['agent'], tuple(data['state_names']), tuple(data['action_names'])
    problems = []
    if agent is not None and agent != ck_agent:
        problems.append(f'agent {ck_agent!r} (expected {agent!r})')
    if state_names is not None and tuple(state_names) != ck_s:
        problems.append(f'state names {list(ck_s)} (expected {list(state_names)})')
    if action_names is not None and tuple(action_names) != ck_a:
        problems.append(f'action names {list(ck_a)} (expected {list(action_names)})')
    if problems:
        raise CheckpointMismatch(f'checkpoint {path} was made for ' + '; '.join(problems))
    model = DynamicsModel.from_config(data['model_config'])
    model.load_state_dict(data['state_dict'])
    model.eval()
    return model, data['meta']


POLICY_FORMAT = 'mbmf_ros.policy/1'


def save_policy(path, policy, meta: dict | None = None) -> Path:
    """Write a GaussianPolicy (core.policy) + meta to path atomically: its agent, state layout, observation
    (kind, element names, lookahead) and action names travel with the weights."""
    return _atomic_save(path, {
        'format': POLICY_FORMAT,
        'agent': policy.agent,
        'state_names': list(policy.observation.state_names),
        'observation_names': list(policy.observation.names),
        'action_names': list(policy.action_names),
        'policy_config': policy.config(),
        'state_dict': {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
        'meta': _plain(meta or {}),
    })


def load_policy(path, agent: str | None = None, state_names=None, action_names=None, observation_kind=None):
    """(GaussianPolicy in eval mode, meta). Checks agent, state layout, actions and observation kind when given.

    Raises CheckpointMismatch naming both the checkpoint's and the expected agent/layout, as load_checkpoint.
    """
    from mbmf_ros.core.policy import GaussianPolicy
    data = read_checkpoint(path, POLICY_FORMAT)
    cfg = data['policy_config']
    problems = []
    if agent is not None and agent != data['agent']:
        problems.append(f'agent {data["agent"]!r} (expected {agent!r})')
    if state_names is not None and tuple(state_names) != tuple(data['state_names']):
        problems.append(f'state names {list(data["state_names"])} (expected {list(state_names)})')
    if action_names is not None and tuple(action_names) != tuple(data['action_names']):
        problems.append(f'action names {list(data["action_names"])} (expected {list(action_names)})')
    if observation_kind is not None and observation_kind != cfg['observation']['kind']:
        problems.append(f'observation {cfg["observation"]["kind"]!r} (expected {observation_kind!r})')
    if problems:
        raise CheckpointMismatch(f'policy checkpoint {path} was made for ' + '; '.join(problems))
    policy = GaussianPolicy.from_config(cfg)
    policy.load_state_dict(data['state_dict'])
    policy.eval()
    return policy, data['meta']
