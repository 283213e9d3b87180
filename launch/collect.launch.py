"""ros2 launch mbmf_ros collect.launch.py — random data collection in lock-step (see mbmf_ros/graphs.py)."""
from mbmf_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description('collect')
