"""ros2 launch mbmf_ros talk.launch.py — the smallest real graph (see mbmf_ros/graphs.py)."""
from mbmf_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description('talk')
