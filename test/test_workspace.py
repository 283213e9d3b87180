"""README's "In a ROS 2 workspace" steps, followed literally in a temporary colcon workspace: colcon (from
colcon-common-extensions) builds the package against the ROS 2 wheels of the venv, installs every node and the
CLI under install/lib/mbmf_ros, and the installed CLI and nodes run from there with their config."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_steps() -> list:
    """The bash lines of README's pip-wheel workspace block (between the 'workspace-steps' markers)."""
    text = (ROOT / 'README.md').read_text()
    block = re.search(r'<!-- workspace-steps -->\s*```bash\n(.*?)```', text, re.S)
    assert block, 'README.md lost its <!-- workspace-steps --> block'
    return [line.split('  #')[0].strip() for line in block.group(1).splitlines() if line.strip()
            and not line.lstrip().startswith('#')]


@pytest.mark.skipif(shutil.which('colcon', path=str(Path(sys.executable).parent)) is None,
                    reason='colcon (colcon-common-extensions) is not installed in this venv')
def test_readme_workspace_steps_build_and_install_every_node_and_the_cli(tmp_path, ros_env):
    ws = tmp_path / 'ros2_ws'
    (ws / 'src').mkdir(parents=True)
    # `git clone <this repo>`: the files git tracks (and new ones it does not ignore), without .venv or build/
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (ws / 'src' / 'mbmf_ros' / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, ws / 'src' / 'mbmf_ros' / name)
    steps = readme_steps()
    # done above, or not here: the clone, the fresh venv (this test reuses the worktree's venv and its wheels),
    # and starting the graph, which runs until Ctrl-C
    skipped = [s for s in steps if 'git clone' in s or s.startswith(('python3 -m venv', 'pip install'))
               or 'launch follow' in s and '--list-args' not in s]
    script = [f'source {Path(sys.executable).parent / "activate"}', f'cd {ws}']
    script += [s for s in steps if s not in skipped]
    assert any(s.startswith('colcon build') for s in script), steps
    script += ['install/lib/mbmf_ros/mbmf-ros launch follow --list-args',
               'python3 -c "import mbmf_ros.settings as s; print(s.__file__, s.config_dir())"']
    env = {k: v for k, v in ros_env.items() if k not in ('AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH', 'PYTHONPATH')}
    env['MAKEFLAGS'] = f'-j{os.cpu_count() or 2}'
    out = subprocess.run(['bash', '-eo', 'pipefail', '-c', '\n'.join(script)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, '\n'.join(script) + '\n' + out.stdout[-4000:] + out.stderr[-4000:]
    lib = ws / 'install' / 'lib' / 'mbmf_ros'
    nodes = re.findall(r"'(\w+)'", re.search(r'NODES = \[(.*?)\]', (ROOT / 'setup.py').read_text(), re.S).group(1))
    assert sorted(p.name for p in lib.iterdir()) == sorted(nodes + ['mbmf-ros'])
    assert all(os.access(p, os.X_OK) for p in lib.iterdir())
    assert 'num_samples' in out.stdout and 'params_file' in out.stdout          # the installed CLI ran
    settings_file, config = out.stdout.strip().splitlines()[-1].split()
    assert settings_file.startswith(str(ws / 'install'))                         # the workspace's package
    assert Path(config) == ws / 'install' / 'share' / 'mbmf_ros' / 'config'
    assert (Path(config) / 'hexapod.yaml').is_file() and (Path(config) / 'defaults.yaml').is_file()
