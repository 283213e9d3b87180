"""ros2 launch mbmf_ros follow.launch.py [agent:=hexapod] [planner:=mppi] [num_samples:=1000] [params_file:=FILE]
                                        [part:=all|robot|offboard]

ros2 launch mbmf_ros follow.launch.py sim:=false port:=/dev/ttyUSB0    (a real robot through hardware_bridge)
ros2 launch mbmf_ros follow.launch.py sim:=false emulator:=true       (the emulated robot on a pty)

Then publish a nav_msgs/Path on /waypoints (an empty one stops the robot). Every node loads config/defaults.yaml,
config/<agent>.yaml, then params_file. The graph is described once, in mbmf_ros/graphs.py; `ros2 launch mbmf_ros
follow.launch.py --show-args` lists the arguments.
part:=robot on the robot and part:=offboard on a workstation split the graph across two hosts (README, "Robot
and workstation").
"""
from mbmf_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description('follow')
