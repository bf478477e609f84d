"""The ``graphnn`` command. Each module in this package adds subcommands via ``register``."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from ..errors import GraphnnError


class Parser(argparse.ArgumentParser):
    """argparse, but an unknown option or choice also lists what the command accepts."""

    def error(self, message):
        options = sorted(o for a in self._actions for o in a.option_strings if o.startswith("--"))
        hint = f"\n{self.prog} accepts: {', '.join(options)}" if options else ""
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def build_parser() -> Parser:
    parser = Parser(prog="graphnn", description="Declare a network once: derive it, draw it, train it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for name, p in sub.choices.items():
        p.set_defaults(_parser=p)
    return parser


def main(argv=None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # report against the subcommand, so the hint lists *its* options
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args) or 0
    except (GraphnnError, FileNotFoundError, ValueError) as e:
        if os.environ.get("GRAPHNN_DEBUG"):
            raise
        print(f"graphnn {args.command}: error: {e}", file=sys.stderr)
        return 1
