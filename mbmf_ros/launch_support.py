"""Turns a graph of mbmf_ros.graphs into a ROS 2 LaunchDescription, so `ros2 launch mbmf_ros X.launch.py` and
`mbmf-ros launch X` start the same nodes with the same parameters. The `launch` library is imported only in
`launch_description`; `node_kwargs` is plain data and testable without it."""
from __future__ import annotations

from mbmf_ros.graphs import PACKAGE, get_graph, resolve_arguments, resolve_path


def node_kwargs(graph_name: str, values: dict) -> list[dict]:
    """Keyword arguments of launch_ros.actions.Node for each node of the graph, given argument values."""
    graph = get_graph(graph_name)
    result = []
    for node in graph.nodes(resolve_arguments(graph, values)):
        result.append(dict(
            package=PACKAGE, executable=node.executable, name=node.name, namespace=node.namespace or None,
            parameters=[p if isinstance(p, dict) else resolve_path(str(p)) for p in node.parameters],
            remappings=list(node.remappings), arguments=list(node.arguments), output='screen',
            required=node.required))
    return result


def launch_description(graph_name: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    graph = get_graph(graph_name)

    def make_nodes(context):
        values = {name: LaunchConfiguration(name).perform(context) for name in graph.arguments}
        actions = []
        for kwargs in node_kwargs(graph_name, values):
            required = kwargs.pop('required')
            actions.append(Node(**kwargs, on_exit=Shutdown(reason=f'{kwargs["name"]} exited') if required else None))
        return actions

    arguments = [DeclareLaunchArgument(name, default_value=default, description=help_text)
                 for name, (default, help_text) in graph.arguments.items()]
    return LaunchDescription(arguments + [OpaqueFunction(function=make_nodes)])
