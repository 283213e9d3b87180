"""The package's layout rules, checked on the source: imports go one way, core is ROS-free, every third-party
import is declared (package.xml and requirements.txt), and no code points at documents outside the repository."""
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / 'mbmf_ros'

# import name -> (package.xml key, requirements.txt name); None: not installable that way, with the reason below
DECLARED = {
    'numpy': ('python3-numpy', 'numpy'), 'yaml': ('python3-yaml', 'PyYAML'),
    'matplotlib': ('python3-matplotlib', 'matplotlib'), 'tqdm': ('python3-tqdm', 'tqdm'),
    'rich': ('python3-rich', 'rich'), 'serial': ('python3-serial', 'pyserial'),
    'torch': ('pip:torch', 'torch'), 'mujoco': ('pip:mujoco', 'mujoco'), 'gymnasium': ('pip:gymnasium', 'gymnasium'),
    'rosbags': ('pip:rosbags', 'rosbags'), 'backports': ('pip:backports.zstd', 'backports.zstd'),
    'rclpy': ('rclpy', 'ros-rclpy'), 'rcl_interfaces': ('rcl_interfaces', 'ros-rcl-interfaces'),
    'std_msgs': ('std_msgs', 'ros-std-msgs'), 'builtin_interfaces': ('builtin_interfaces', 'ros-builtin-interfaces'),
    'geometry_msgs': ('geometry_msgs', 'ros-geometry-msgs'), 'nav_msgs': ('nav_msgs', 'ros-nav-msgs'),
    'sensor_msgs': ('sensor_msgs', 'ros-sensor-msgs'), 'std_srvs': ('std_srvs', 'ros-std-srvs'),
    'rosgraph_msgs': ('rosgraph_msgs', 'ros-rosgraph-msgs'),
    'diagnostic_msgs': ('diagnostic_msgs', 'ros-diagnostic-msgs'),
    'stable_baselines3': ('pip:stable-baselines3', 'stable-baselines3'), 'sb3_contrib': ('pip:sb3-contrib', 'sb3-contrib'),
    'ament_index_python': ('ament_index_python', 'ros-ament-index-python'),
    # the ROS 2 launch library is not on PyPI: declared for workspaces, absent from requirements.txt
    'launch': ('launch', None), 'launch_ros': ('launch_ros', None),
}


def _modules():
    for path in sorted(PKG.rglob('*.py')):
        yield path, ast.parse(path.read_text(), str(path))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_nothing_below_the_commands_imports_them():
    found = []
    for path, tree in _modules():
        part = path.relative_to(PKG).parts[0]
        if part in ('nodes', 'core', 'io', 'sim', 'hardware') or path.parent == PKG and path.name != 'cli.py':
            found += [f'{path.relative_to(ROOT)}:{n}: {m}' for n, m in _imports(tree)
                      if m == 'mbmf_ros.commands' or m.startswith('mbmf_ros.commands.')]
    assert not found, 'imports of mbmf_ros.commands below the command line: ' + '; '.join(found)


def test_core_is_free_of_rclpy():
    for path, tree in _modules():
        if path.relative_to(PKG).parts[0] == 'core':
            assert not [m for _n, m in _imports(tree) if m.split('.')[0] in ('rclpy', 'launch', 'launch_ros')], path


def test_every_third_party_import_is_declared():
    xml = (ROOT / 'package.xml').read_text()
    keys = set(re.findall(r'<(?:exec_|build_|test_)?depend>([^<]+)</', xml))
    pip_only = set(re.findall(r'<!-- pip:([A-Za-z0-9_.-]+?)(?:[=<> ]|-->)', xml))
    pinned = {re.split(r'[=<>!~]', line)[0].strip().lower()
              for line in (ROOT / 'requirements.txt').read_text().splitlines()
              if line.strip() and not line.startswith('#')}
    stdlib = set(sys.stdlib_module_names) | {'compression'}   # compression.zstd: the standard library from 3.14
    problems = []
    for path, tree in _modules():
        for lineno, module in _imports(tree):
            top = module.split('.')[0]
            if top in stdlib or top in ('mbmf_ros', '__future__'):
                continue
            where = f'{path.relative_to(ROOT)}:{lineno} imports {top}'
            if top not in DECLARED:
                problems.append(f'{where}: not in the table of this test (declare it and add it here)')
                continue
            key, pip_name = DECLARED[top]
            if key.startswith('pip:') and key[4:] not in pip_only:
                problems.append(f'{where}: package.xml has no <!-- pip:{key[4:]} ... --> line')
            elif not key.startswith('pip:') and key not in keys:
                problems.append(f'{where}: package.xml has no <exec_depend>{key}</exec_depend>')
            if pip_name is not None and pip_name.lower() not in pinned:
                problems.append(f'{where}: requirements.txt does not pin {pip_name}')
    assert not problems, '\n'.join(sorted(set(problems)))


# The blueprint's sections and the workplace's shared folder: users have neither, so code and README must not
# point at them (what they need is in docs/).
OUTSIDE_DOCUMENTS = re.compile(r'DESIGN[ ]§|(?:/work|\.\.)/shared')


def test_code_refers_to_documents_in_the_repository():
    for path in list(PKG.rglob('*.py')) + list((ROOT / 'bench').glob('*.py')) + [ROOT / 'README.md']:
        text = path.read_text()
        assert not OUTSIDE_DOCUMENTS.search(text), path
    assert (ROOT / 'docs' / 'design.md').is_file()
