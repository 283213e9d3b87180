"""`mbmf-ros`: the command line of mbmf_ros. Each subcommand lives in mbmf_ros/commands/<name>.py (imported only
when used, so `mbmf-ros --help` stays fast)."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    'launch': 'mbmf_ros.commands.launch',
    'demo': 'mbmf_ros.commands.demo',
    'collect': 'mbmf_ros.commands.collect',
    'train': 'mbmf_ros.commands.train',
    'follow': 'mbmf_ros.commands.follow',
    'emulate-robot': 'mbmf_ros.commands.emulate_robot',
    'send-path': 'mbmf_ros.commands.send_path',
    'aggregate': 'mbmf_ros.commands.aggregate',
    'mbrl': 'mbmf_ros.commands.mbrl',
    'evaluate': 'mbmf_ros.commands.evaluate',
    'paper': 'mbmf_ros.commands.paper',
    'make-model': 'mbmf_ros.commands.make_model',
    'plot-model': 'mbmf_ros.commands.plot_model',
    'distill-follower': 'mbmf_ros.commands.distill_follower',
    'mbmf': 'mbmf_ros.commands.mbmf',
}


def _summary(module_name: str) -> str:
    module = importlib.util.find_spec(module_name)
    if module is None or module.origin is None:
        return ''
    import ast
    doc = ast.get_docstring(ast.parse(open(module.origin).read())) or ''
    return doc.strip().splitlines()[0] if doc.strip() else ''


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help') or argv[0] not in COMMANDS:
        lines = [f'  {name:<12} {_summary(module)}' for name, module in COMMANDS.items()]
        text = 'usage: mbmf-ros COMMAND [options]\n\ncommands:\n' + '\n'.join(lines)
        if argv and argv[0] not in ('-h', '--help'):
            print(f'mbmf-ros: unknown command {argv[0]!r}\n{text}', file=sys.stderr)
            return 2
        print(text)
        return 0 if argv else 2
    module = importlib.import_module(COMMANDS[argv[0]])
    parser = argparse.ArgumentParser(prog=f'mbmf-ros {argv[0]}', description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
