"""pip install of the Python half of mbmf_ros (the interfaces are built by CMake, see Makefile)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'mbmf_ros'
NODES = [
    'mujoco_bridge', 'state_estimator', 'random_actor', 'recorder',
    'dynamics_trainer', 'mpc_planner', 'policy_controller', 'waypoint_manager', 'topic_echo',
    'hardware_bridge', 'robot_emulator',
]

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*']),
    package_data={PACKAGE: ['sim/assets/*.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
        ('share/' + PACKAGE + '/config/paths', glob('config/paths/*.yaml')),
        ('share/' + PACKAGE + '/config/models', glob('config/models/*.pt')),
    ],
    zip_safe=False,
    maintainer='mbmf_ros developers',
    description='Learned dynamics + MPC waypoint following for legged robots on ROS 2',
    license='Apache-2.0',
    python_requires='>=3.10',
    entry_points={
        'console_scripts': ['mbmf-ros = mbmf_ros.cli:main']
        + [f'{node} = {PACKAGE}.nodes.{node}:main' for node in NODES],
    },
)
