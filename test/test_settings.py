"""config/*.yaml are ROS 2 parameter files and the one home of every default: the Python side reads them, a
user's file goes on top, and a bad file is refused with its name and the parameter."""
import ast
from pathlib import Path

import pytest

from mbmf_ros.core.agents import STRUCTURE, get_agent, make_agent
from mbmf_ros.graphs import effective_parameters, get_graph
from mbmf_ros.launch_support import node_kwargs
from mbmf_ros.settings import config_dir, known_agents, load_settings, read_params_file

ROOT = Path(__file__).resolve().parent.parent


def test_every_agent_has_a_parameter_file_and_every_file_an_agent():
    assert known_agents() == sorted(STRUCTURE)
    for name in known_agents():
        layer = read_params_file(config_dir() / f'{name}.yaml')
        assert layer['/**']['agent'] == name
        assert {'num_samples', 'horizon', 'moving_forward.num_samples'} <= set(layer['mpc_planner'])


def test_the_spec_reads_the_file_and_a_user_file_goes_on_top(tmp_path):
    hexapod = read_params_file(config_dir() / 'hexapod.yaml')
    spec = get_agent('hexapod')
    assert spec.dt == hexapod['/**']['dt'] and spec.frame_skip == hexapod['/**']['frame_skip']
    assert spec.planner_defaults == {'num_samples': hexapod['mpc_planner']['num_samples'],
                                     'horizon': hexapod['mpc_planner']['horizon']}
    assert spec.sim['steering_gain'] == 0.6 and spec.sim['terrains']['carpet'] == {'friction': 1.5, 'solref': [0.03, 0.7]}
    mine = tmp_path / 'mine.yaml'
    mine.write_text('mpc_planner:\n  ros__parameters:\n    num_samples: 37\n    alpha: 2\n'
                    '/**:\n  ros__parameters:\n    velocity_filter_alpha: 0.5\n')
    spec2 = get_agent('hexapod', [mine])
    assert spec2.planner_defaults['num_samples'] == 37 and spec2.velocity_filter_alpha == 0.5
    assert get_agent('hexapod').planner_defaults['num_samples'] == 500      # the shipped spec is untouched
    planner = load_settings('hexapod', [mine]).node('mpc_planner')
    assert planner['num_samples'] == 37 and planner['alpha'] == 2 and planner['beta'] == 5.0


@pytest.mark.parametrize('text, words', [
    ('mpc_planner:\n  ros__parameters:\n    num_sample: 37\n', ['mine.yaml', 'mpc_planner', "'num_sample'"]),
    ('mpc_planner:\n  ros__parameters:\n    num_samples: many\n', ['mine.yaml', 'num_samples', 'expected int']),
    ('mpc_planner:\n  num_samples: 37\n', ['mine.yaml', 'ros__parameters']),
    ('- 1\n', ['mine.yaml', 'mapping']),
])
def test_a_bad_user_file_is_refused_with_its_name_and_the_parameter(tmp_path, text, words):
    mine = tmp_path / 'mine.yaml'
    mine.write_text(text)
    with pytest.raises(ValueError) as e:
        load_settings('hexapod', [mine])
    for word in words:
        assert word in str(e.value)
    with pytest.raises(ValueError):     # the graph refuses it before any node starts
        get_graph('follow').nodes({**{k: d for k, (d, _h) in get_graph('follow').arguments.items()},
                                   'params_file': str(mine)})


def test_unknown_agent_names_the_known_ones():
    with pytest.raises(ValueError) as e:
        make_agent('quadcopter')
    assert 'hexapod' in str(e.value) and 'swimmer' in str(e.value)


def test_every_node_gets_defaults_agent_file_then_the_users_file(tmp_path):
    mine = tmp_path / 'mine.yaml'
    mine.write_text('mpc_planner:\n  ros__parameters:\n    num_samples: 37\n')
    for kwargs in node_kwargs('follow', {'agent': 'swimmer', 'params_file': str(mine)}):
        files = [Path(p).name for p in kwargs['parameters'] if not isinstance(p, dict)]
        assert files[:3] == ['defaults.yaml', 'swimmer.yaml', 'mine.yaml'], kwargs['name']
        assert files[3:] in ([], ['realtime_qos.yaml']), files      # real time: the QoS overrides after them
    eff = effective_parameters('follow', {'agent': 'swimmer', 'params_file': str(mine)})
    assert eff['mpc_planner']['num_samples'] == 37 and eff['mpc_planner']['horizon'] == 10
    assert eff['mujoco_bridge']['dt'] == 0.15
    # a launch argument left '' sets nothing; one given wins over every file
    assert effective_parameters('follow', {'num_samples': '12'})['mpc_planner']['num_samples'] == 12


def test_node_defaults_are_not_literals_in_code():
    """Nodes declare their parameters from the files (declare_settings), never with a literal default; no
    module holds a K/H/alpha/beta/lookahead/goal-tolerance literal that the files define."""
    sections = set(load_settings('hexapod').nodes())
    for path in (ROOT / 'mbmf_ros' / 'nodes').glob('*.py'):
        if path.stem in ('common', '__init__'):
            continue
        assert path.stem in sections, f'{path}: no section in config/defaults.yaml'
        assert 'declare_parameter(' not in path.read_text(), path
    names = {'num_samples', 'horizon', 'alpha', 'beta', 'lookahead_m', 'goal_tolerance_m', 'heading_weight',
             'clamp_progress'}
    found = []
    for path in (ROOT / 'mbmf_ros').rglob('*.py'):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            pairs = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults \
                    + node.args.kw_defaults
                pairs = [(a.arg, d) for a, d in zip(args, defaults)]
            elif isinstance(node, ast.Call) and not (isinstance(node.func, ast.Attribute)
                                                     and isinstance(node.func.value, ast.Name)
                                                     and node.func.value.id in ('ax', 'plt')):   # matplotlib alpha
                pairs = [(k.arg, k.value) for k in node.keywords]
            for name, value in pairs:
                if name in names and isinstance(value, ast.Constant) and value.value is not None \
                        and not isinstance(value.value, str):
                    found.append(f'{path.relative_to(ROOT)}:{value.lineno}: {name}={value.value!r}')
    assert not found, 'defaults outside config/: ' + '; '.join(found)


def test_robot_nodes_take_their_settings_from_the_files_and_a_fault_file_goes_on_top(tmp_path):
    """hardware_bridge and robot_emulator: sections of config/defaults.yaml like every node; the emulator's fault
    file (--emulator-config) holds plain keys of its section, applied on top; a bad key names the file."""
    from mbmf_ros.hardware.emulator import KEYS, load_emulator_config
    emulator = load_settings('hexapod').node('robot_emulator')
    assert set(KEYS) <= set(emulator)
    config = load_emulator_config()
    assert config == {k: emulator[k] for k in KEYS} and config['agent'] == 'hexapod'
    faults = tmp_path / 'faults.yaml'
    faults.write_text('byte_drop_rate: 0.01\nlatency_ms: 20\n')
    config = load_emulator_config(faults, base={**emulator, 'seed': 7})
    assert config['byte_drop_rate'] == 0.01 and config['latency_ms'] == 20.0 and config['seed'] == 7
    faults.write_text('byte_drop: 0.01\n')
    with pytest.raises(ValueError, match=r'faults\.yaml.*byte_drop'):
        load_emulator_config(faults)
    mine = tmp_path / 'mine.yaml'
    mine.write_text('robot_emulator:\n  ros__parameters:\n    byte_drop_rate: 0.02\n'
                    'hardware_bridge:\n  ros__parameters:\n    command_timeout_s: 0.5\n')
    eff = effective_parameters('follow', {'sim': 'false', 'emulator': 'true', 'params_file': str(mine)})
    assert eff['robot_emulator']['byte_drop_rate'] == 0.02 and eff['robot_emulator']['unplug_s'] == 2.0
    assert eff['hardware_bridge']['command_timeout_s'] == 0.5
    assert eff['hardware_bridge']['device_command_timeout_ms'] == load_settings('hexapod').node(
        'hardware_bridge')['device_command_timeout_ms']
    eff = effective_parameters('follow', {'sim': 'false', 'emulator': 'true', 'unplug_s': '1.5'})
    assert eff['robot_emulator']['unplug_s'] == 1.5
