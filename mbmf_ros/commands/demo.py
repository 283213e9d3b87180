"""Run the demo: the smallest real graph over DDS (random_actor -> topic_echo), then exit."""
import os


def add_arguments(parser):
    parser.add_argument('--count', type=int, default=10, help='messages to pass before exiting')


def run(args) -> int:
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from mbmf_ros.launcher import exit_status, start_graph
    graph = start_graph('talk', {'count': str(args.count)})
    try:
        code = graph.wait()
    except KeyboardInterrupt:
        code = graph.stop()
    return exit_status(code)
