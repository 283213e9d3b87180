"""Path files: YAML ``{frame_id: odom, waypoints: [[x, y], ...]}`` in metres (config/paths/*.yaml)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml


def load_path_file(path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """(frame_id, waypoints (N, 2) m) of a path YAML file; ValueError naming the file and what is wrong."""
    from mbmf_ros.core.waypoints import DEFAULT_WORLD_FRAMES, validate_path
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ValueError(f'path file {path}: {e.strerror}') from None
    except yaml.YAMLError as e:
        raise ValueError(f'path file {path}: not YAML: {e}') from None
    if not isinstance(data, dict) or 'waypoints' not in data:
        raise ValueError(f"path file {path}: expected a mapping with 'waypoints: [[x, y], ...]' "
                         f"(and optional frame_id), found {type(data).__name__}")
    frame = str(data.get('frame_id', 'odom'))
    return frame, validate_path(data['waypoints'], frame, DEFAULT_WORLD_FRAMES, source=f'path file {path}')
