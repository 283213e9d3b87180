"""Start a node graph as separate processes: mbmf-ros launch GRAPH [name:=value ...]

The same graphs as launch/*.launch.py (one description, mbmf_ros/graphs.py). Ctrl-C stops every node; the graph
also stops when a required node exits, with that node's exit code.
"""
from mbmf_ros.graphs import GRAPHS


def add_arguments(parser):
    parser.add_argument('graph', help='graph name: ' + ', '.join(sorted(GRAPHS)))
    parser.add_argument('assignments', nargs='*', metavar='name:=value', help='graph arguments')
    parser.add_argument('--list-args', action='store_true', help="print the graph's arguments and exit")


def run(args) -> int:
    from mbmf_ros.launcher import launch_main
    if args.list_args:
        from mbmf_ros.graphs import get_graph
        try:
            graph = get_graph(args.graph)
        except KeyError as e:
            print(f'mbmf-ros launch: {e.args[0]}')
            return 2
        for name, (default, help_text) in graph.arguments.items():
            print(f'{name}:={default}    {help_text}')
        return 0
    return launch_main(args.graph, args.assignments)
