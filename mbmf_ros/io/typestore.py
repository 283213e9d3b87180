"""A rosbags typestore that knows ROS 2 kilted's standard messages plus mbmf_ros's own (ROS-free).

The recorder uses it to embed message definitions in every bag it writes (so a bag stays readable without
this package), the bag reader uses it as the fallback for bags that carry no definitions (old sqlite3 bags).
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = 'mbmf_ros'


def interface_dirs() -> list[Path]:
    """Folders holding this package's msg/ files: the source tree, then the install prefixes' share dirs."""
    found = []
    src = Path(__file__).resolve().parents[2] / 'msg'
    candidates = [src]
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(p) / 'share' / PACKAGE / 'msg' for p in prefixes]
    for c in candidates:
        if c.is_dir() and any(c.glob('*.msg')) and c not in found:
            found.append(c)
    return found


def _share_msg_file(msgtype: str) -> Path | None:
    """The .msg file of 'pkg/msg/Type' in an ament prefix (AMENT_PREFIX_PATH or this interpreter's)."""
    pkg, kind, name = msgtype.split('/')
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    for p in prefixes:
        f = Path(p) / 'share' / pkg / kind / f'{name}.msg'
        if f.is_file():
            return f
    return None


@lru_cache(maxsize=1)
def package_typestore():
    """Typestore of ROS 2 kilted + mbmf_ros/msg/* (from the first interface dir found).

    Raises FileNotFoundError naming the searched folders when no msg/ files are found.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    dirs = interface_dirs()
    if not dirs:
        raise FileNotFoundError(f'no {PACKAGE} msg/*.msg files found (searched the source tree and the share '
                                f'dirs of AMENT_PREFIX_PATH and {sys.prefix})')
    types = {}
    for f in sorted(dirs[0].glob('*.msg')):
        types.update(get_types_from_msg(f.read_text(), f'{PACKAGE}/msg/{f.stem}'))
    store.register(types)
    return store


def ensure_type(store, msgtype: str) -> bool:
    """Register 'pkg/msg/Type' (and its unknown dependencies) from the ament share dirs if the store lacks it.

    Returns True when the store knows the type afterwards.
    """
    from rosbags.typesys import get_types_from_msg
    todo, seen = [msgtype], set()
    while todo:
        t = todo.pop()
        if t in store.fielddefs or t in seen:
            continue
        seen.add(t)
        f = _share_msg_file(t)
        if f is None:
            return False
        types = get_types_from_msg(f.read_text(), t)
        # Dependencies first: register fails on unknown nested types.
        missing = []
        for _, fields in types.values():
            for _, desc in fields:
                for name in _nested_names(desc):
                    if name not in store.fielddefs and name not in types:
                        missing.append(name)
        if missing:
            todo.append(t)
            seen.discard(t)
            todo.extend(m for m in missing if m not in seen)
            if all(m in seen for m in missing):
                return False
            continue
        store.register(types)
    return msgtype in store.fielddefs


def _nested_names(desc):
    """Message type names referenced by a rosbags field description."""
    kind, rest = desc
    if getattr(kind, 'name', '') == 'NAME':
        yield rest
    elif isinstance(rest, tuple) and rest and isinstance(rest[0], tuple):
        yield from _nested_names(rest[0])
