"""Path files: YAML ``{frame_id: odom, waypoints: [[x, y], ...]}`` in metres (config/paths/*.yaml)."""
from __future__ import annotations

import os

import numpy as np

from mbmf_ros.io.yaml_files import read_yaml_mapping


def load_path_file(path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """(frame_id, waypoints (N, 2) m) of a path YAML file; ValueError naming the file and what is wrong."""
    from mbmf_ros.core.waypoints import DEFAULT_WORLD_FRAMES, validate_path
    expected = "a mapping with 'waypoints: [[x, y], ...]' (and optional frame_id)"
    data = read_yaml_mapping(path, 'path file', expected)
    if 'waypoints' not in data:
        raise ValueError(f'path file {path}: expected {expected}, found no waypoints')
    frame = str(data.get('frame_id', 'odom'))
    return frame, validate_path(data['waypoints'], frame, DEFAULT_WORLD_FRAMES, source=f'path file {path}')
