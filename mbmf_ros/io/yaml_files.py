"""Reading the package's YAML files (parameter files, path files, fault files) with errors that name the file."""
from __future__ import annotations

import os
from pathlib import Path

import yaml


def read_yaml_mapping(path: str | os.PathLike, what: str, expected: str) -> dict:
    """The top-level mapping of a YAML file ({} for an empty file). ValueError '<what> <path>: ...' when the file
    cannot be read, is not YAML, or is not a mapping (``expected`` says what it should be)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ValueError(f'{what} {path}: {e.strerror}') from None
    except yaml.YAMLError as e:
        raise ValueError(f'{what} {path}: not YAML: {e}') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f'{what} {path}: expected {expected}, found {type(data).__name__}')
    return data
