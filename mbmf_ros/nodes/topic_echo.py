"""topic_echo: print the messages of one topic (there is no `ros2 topic echo` on pip-only machines).

Parameters: topic, type ('pkg/msg/Name'), count (exit with 0 after that many messages; 0 = never),
latched (subscribe transient-local, for /mbmf/model and /mbmf/reference).
"""
import importlib
import sys

from rclpy.node import Node

from mbmf_ros.nodes.common import CONTROL, LATCHED, declare_settings, run_node


def message_type(name: str):
    """'pkg/msg/Name' (or 'pkg/Name') -> the message class; a clear error for a malformed or unknown name."""
    parts = name.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"message type {name!r}: expected 'package/msg/Name'")
    try:
        return getattr(importlib.import_module(f'{parts[0]}.{parts[1]}'), parts[2])
    except (ImportError, AttributeError):
        raise ValueError(f'message type {name!r} is not installed') from None


class TopicEcho(Node):
    def __init__(self):
        super().__init__('topic_echo')
        # Every parameter and its default: config/defaults.yaml (topic_echo).
        v = declare_settings(self, 'topic_echo')
        topic, type_name, self.count, latched = v['topic'], v['type'], v['count'], v['latched']
        try:
            msg_type = message_type(type_name)
        except ValueError as e:
            raise SystemExit(f'topic_echo: {e}') from None
        self.received = 0
        self.exit_code = None
        self.create_subscription(msg_type, topic, self.on_message, LATCHED if latched else CONTROL)
        self.get_logger().info(f'echoing {topic} [{type_name}]')

    def on_message(self, msg):
        self.received += 1
        print(f'--- {self.received}\n{msg}', flush=True)
        if self.count and self.received >= self.count:
            self.exit_code = 0


def main(args=None):
    return run_node(TopicEcho, args)


if __name__ == '__main__':
    sys.exit(main())
