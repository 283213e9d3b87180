"""The custom interfaces: importable beside the sources, and carried intact over DDS between processes."""
import subprocess
import sys

import pytest

PUBLISHER = r'''
import rclpy, sys
from mbmf_ros.msg import AgentState
from mbmf_ros.nodes.common import CONTROL
rclpy.init()
node = rclpy.create_node('agent_state_talker')
pub = node.create_publisher(AgentState, '/interfaces_test/state', CONTROL)
msg = AgentState()
msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 12, 345678901, 'odom'
msg.agent = 'hexapod'
msg.names = ['x', 'y', 'yaw', 'vx']
msg.values = [1.5, -2.25, 3.0, 1e-9]
msg.episode, msg.step, msg.terminal, msg.valid = 7, 199, True, False
msg.flags = ['imu stale 0.31 s']
while pub.get_subscription_count() == 0:   # wait for the test's subscriber, then send once
    rclpy.spin_once(node, timeout_sec=0.05)
pub.publish(msg)
while pub.get_subscription_count() > 0:    # stay until the receiver is gone: delivery is reliable
    rclpy.spin_once(node, timeout_sec=0.05)
node.destroy_node(); rclpy.shutdown()
'''


def test_generated_interfaces_import_beside_the_sources():
    code = ('from mbmf_ros.msg import AgentState, ActionCommand, MpcStatus, ModelInfo, TrackingStatus; '
            'from mbmf_ros.srv import TrainModel, ResetSim; import mbmf_ros, mbmf_ros.core.state; '
            'print(TrainModel.Request().get_fields_and_field_types())')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "'bags': 'sequence<string>'" in out.stdout and "'warm_start': 'string'" in out.stdout


def test_agent_state_crosses_processes_with_every_field(ros, procs):
    from mbmf_ros.msg import AgentState
    received = ros.collect(AgentState, '/interfaces_test/state')
    talker = procs.start([sys.executable, '-c', PUBLISHER], name='talker')
    ros.spin_until(lambda: received or talker.poll() is not None, 20, 'the AgentState from the talker')
    assert received, procs.output('talker')
    msg = received[0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 345678901, 'odom')
    assert msg.agent == 'hexapod'
    assert list(msg.names) == ['x', 'y', 'yaw', 'vx']
    assert list(msg.values) == pytest.approx([1.5, -2.25, 3.0, 1e-9], abs=0)
    assert (msg.episode, msg.step, msg.terminal, msg.valid) == (7, 199, True, False)
    assert list(msg.flags) == ['imu stale 0.31 s']


def test_action_command_carries_float32_values_and_answers_a_stamp():
    from mbmf_ros.msg import ActionCommand
    fields = ActionCommand.get_fields_and_field_types()
    assert fields['values'] == 'sequence<float>' and fields['header'] == 'std_msgs/Header'
