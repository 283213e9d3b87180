"""ros2 launch mbmf_ros follow.launch.py [agent:=hexapod] [sim:=true] [model:=FILE] [planner:=random_shooting]
                                        [part:=all|robot|offboard]

ros2 launch mbmf_ros follow.launch.py sim:=false port:=/dev/ttyUSB0    (a real robot through hardware_bridge)
ros2 launch mbmf_ros follow.launch.py sim:=false emulator:=true       (the emulated robot on a pty)

Then publish a nav_msgs/Path on /waypoints. part:=robot on the robot and part:=offboard on a workstation split
the graph across two hosts (README, "Robot and workstation"). The graph is described once, in mbmf_ros/graphs.py.
"""
from mbmf_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description('follow')
