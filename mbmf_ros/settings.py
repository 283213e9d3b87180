"""Settings of mbmf_ros: the ROS 2 parameter files in config/ read without ROS (no rclpy here).

The one home of every default is a ROS 2 parameter file (``node: ros__parameters: {...}``):

* ``config/defaults.yaml``: what does not depend on the agent, one section per node, ``/**`` for shared values;
* ``config/<agent>.yaml``: the agent's values (``/**``: the AgentSpec's dt, body length, noise, rewards, ...;
  ``mpc_planner``: K and H, ...);
* the user's files (``params_file:=FILE`` at launch, ``--params-file FILE`` on follow, collect, train).

As in ROS 2, every file's ``/**`` values apply first, then every file's section for the node (so a node's own
section beats a wildcard whatever the file order); later files win within each. Nested mappings become dotted names,
as ROS 2 does (``sim: {steering_gain: 0.6}`` is the parameter ``sim.steering_gain``). Nodes get the same files
as ``--params-file`` arguments and declare their parameters with the values below as defaults
(``mbmf_ros.nodes.common.declare_settings``), so a node run on its own behaves as one in a graph.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from mbmf_ros.io.yaml_files import read_yaml_mapping

PACKAGE = 'mbmf_ros'
DEFAULTS_FILE = 'defaults.yaml'
ALL_NODES = '/**'


CONFIG_ENV = 'MBMF_ROS_CONFIG'


def config_dir() -> Path:
    """The package's config/ folder: $MBMF_ROS_CONFIG if set (a site's own copy of config/, edited), else the
    source tree's, else share/mbmf_ros/config of an installed package."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    here = Path(__file__).resolve().parent.parent / 'config'
    if here.is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / 'config'
    except Exception:  # noqa: BLE001 - no ament index: fall back to the source layout's path in the message
        return here


def agent_file(agent: str) -> Path:
    """config/<agent>.yaml; ValueError listing the known agents when there is none."""
    path = config_dir() / f'{agent}.yaml'
    if not path.is_file():
        raise ValueError(f'unknown agent {agent!r}: no {path}; known agents are {", ".join(known_agents())}')
    return path


def known_agents() -> list:
    """Agents with a parameter file in config/: <name>.yaml whose '/**' section says ``agent: <name>`` (config/
    also holds other settings files)."""
    found = []
    for p in sorted(config_dir().glob('*.yaml')):
        try:
            if p.name != DEFAULTS_FILE and read_params_file(p).get(ALL_NODES, {}).get('agent') == p.stem:
                found.append(p.stem)
        except ValueError:
            continue     # not a ROS 2 parameter file: not an agent's
    return found


def _flatten(values: dict, prefix: str = '') -> dict:
    out = {}
    for key, value in values.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(_flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def _node_key(key: str) -> str:
    """The node a section of a parameter file applies to: '/**' for all, else the bare node name
    ('mpc_planner', '/mpc_planner' and '/**/mpc_planner' all name mpc_planner)."""
    key = str(key)
    if key in ('/**', '**'):
        return ALL_NODES
    return key.rsplit('/', 1)[-1]


def read_params_file(path: str | os.PathLike) -> dict:
    """{node name or '/**': {parameter: value}} of a ROS 2 parameter file, nested names dotted.
    ValueError naming the file and the section when it is not one."""
    path = Path(path).expanduser()
    return _read_params_file(str(path.resolve()) if path.exists() else str(path),
                             path.stat().st_mtime_ns if path.exists() else 0)


@lru_cache(maxsize=64)
def _read_params_file(path: str, _mtime: int) -> dict:
    data = read_yaml_mapping(path, 'parameter file', 'a mapping of node names to {ros__parameters: ...}')
    out = {}
    for key, section in data.items():
        if not isinstance(section, dict) or set(section) != {'ros__parameters'} \
                or not isinstance(section['ros__parameters'], (dict, type(None))):
            raise ValueError(f'parameter file {path}: section {key!r}: expected {{ros__parameters: {{name: '
                             f'value, ...}}}} (a ROS 2 parameter file), found {section!r:.120}')
        node = _node_key(key)
        out.setdefault(node, {}).update(_flatten(section['ros__parameters'] or {}))
    return out


class Settings:
    """The effective parameters of one agent's nodes: defaults.yaml, <agent>.yaml, then ``params_files``.

    ``node(name)`` -> {parameter: value} for one node ('/**' values, then its own section, file by file).
    A user file that sets a parameter no node has is an error naming the file, the node and the parameter
    (a typo would otherwise change nothing, silently); so is a value of the wrong type.
    """

    def __init__(self, agent: str, params_files=()):
        self.agent = agent
        self.files = [config_dir() / DEFAULTS_FILE, agent_file(agent)] + [Path(f) for f in params_files]
        self.layers = [(f, read_params_file(f)) for f in self.files]
        for f, layer in self.layers[2:]:
            self._check(f, layer)
        for f, layer in self.layers[1:]:
            named = layer.get(ALL_NODES, {}).get('agent')
            if named is not None and named != agent and f == self.files[1]:
                raise ValueError(f'{f}: /** agent is {named!r}, expected {agent!r} (the file name)')

    def _known(self, node: str) -> dict:
        out = {}
        for _f, layer in self.layers[:2]:
            out.update(layer.get(ALL_NODES, {}))
            out.update(layer.get(node, {}))
        return out

    def _check(self, path, layer: dict) -> None:
        for node, params in layer.items():
            if node != ALL_NODES and node not in self.nodes():
                continue   # a node of another package, or one renamed in a graph: ROS applies it by name
            for name, value in params.items():
                if node == ALL_NODES:   # shared: any node may declare it
                    owners = [self._known(n) for n in [ALL_NODES] + self.nodes() if name in self._known(n)]
                    known = owners[0] if owners else {}
                else:
                    known = self._known(node)
                if name not in known:
                    names = sorted(set().union(*(self._known(n) for n in self.nodes()))) if node == ALL_NODES \
                        else sorted(known)
                    raise ValueError(f'parameter file {path}: {node}: no parameter {name!r}; '
                                     f'known: {", ".join(names)}')
                check_type(f'parameter file {path}: {node}: {name}', known[name], value)

    def nodes(self) -> list:
        """Node names with a section in defaults.yaml or the agent's file."""
        return sorted({n for _f, layer in self.layers[:2] for n in layer if n != ALL_NODES})

    def node(self, name: str) -> dict:
        """As ROS 2 resolves them: every file's '/**' values first, then every file's section for the node
        (a node's own section beats a wildcard whatever the file order); later files win within each."""
        out = self.shared()
        for _f, layer in self.layers:
            out.update(layer.get(name, {}))
        return out

    def shared(self) -> dict:
        """The '/**' values: what every node gets (the agent spec's values among them)."""
        out = {}
        for _f, layer in self.layers:
            out.update(layer.get(ALL_NODES, {}))
        return out

    def effective(self, nodes=None) -> dict:
        """{node: {parameter: value}} for ``nodes`` (default: all): what the report of a run records."""
        return {n: self.node(n) for n in (nodes or self.nodes())}


def check_type(where: str, default, value):
    """``value`` converted to the type of ``default`` (an int is a float; a list keeps its element type);
    ValueError naming ``where``, the expected and the found type otherwise."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
    else:
        return value
    raise ValueError(f'{where}: expected {type(default).__name__} (like the default {default!r}), '
                     f'found {type(value).__name__} {value!r}')


def load_settings(agent: str, params_files=()) -> Settings:
    """Settings of ``agent`` with the user's parameter files on top (see ``Settings``)."""
    return Settings(agent, params_files)


def default_agent() -> str:
    """The agent a node runs when none is given: '/**' agent in defaults.yaml."""
    return read_params_file(config_dir() / DEFAULTS_FILE)[ALL_NODES]['agent']


def defaults(node: str, agent: str | None = None) -> dict:
    """The default parameters of ``node`` for ``agent`` (default: the default agent), no user files."""
    return Settings(agent or default_agent()).node(node)
