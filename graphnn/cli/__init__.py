"""The ``graphnn`` command. Each module in this package adds subcommands via ``register``.

Every error ends in one message on stderr (``graphnn COMMAND: error: …``) and exit code 2,
never a traceback; ``--debug`` (or ``GRAPHNN_DEBUG=1``) prints the traceback as well and
turns on the reference evaluator's own shape checks.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

from ..errors import GraphnnError

#: the exit code of every error (argparse's usage errors use it too)
ERROR_EXIT = 2


class Parser(argparse.ArgumentParser):
    """argparse, but an unknown option or choice also lists what the command accepts."""

    def error(self, message):
        options = sorted(o for a in self._actions for o in a.option_strings if o.startswith("--"))
        # the list of options only where it helps: an option not known (not a bad value)
        hint = f"\n{self.prog} accepts: {', '.join(options)}" if options and "unrecognized" in message else ""
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def build_parser() -> Parser:
    parser = Parser(prog="graphnn", description="Declare a network once: derive it, draw it, train it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for name, p in sub.choices.items():
        p.set_defaults(_parser=p)
        # SUPPRESS: given after the command it sets debug; absent, it leaves graphnn --debug alone
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error (and check every op's output shape)")
    return parser


def main(argv=None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # report against the subcommand, so the hint lists *its* options
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _refuse_empty(args)
    debug = args.debug or os.environ.get("GRAPHNN_DEBUG", "") not in ("", "0")
    saved = {k: os.environ.get(k) for k in ("GRAPHNN_DEBUG", "GRAPHNN_CHECK_SHAPES")}
    if debug:
        os.environ["GRAPHNN_DEBUG"] = "1"             # MPI ranks print their tracebacks too
        os.environ.setdefault("GRAPHNN_CHECK_SHAPES", "1")
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print(f"graphnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (every error path: one message, exit code 2)
        if debug:
            traceback.print_exc()
        print(f"graphnn {args.command}: error: {error_text(e, debug)}", file=sys.stderr)
        return ERROR_EXIT
    finally:   # called in-process (tests, notebooks): leave the environment as it was
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: options whose empty text means something (an empty prompt: a new line)
EMPTY_OK = {"prompt"}


def _refuse_empty(args) -> None:
    """An empty value ('' from an unset shell variable: --resume "$CKPT") is an error naming the
    option: it was taken as not given, so training started over from scratch without a word."""
    for key, value in vars(args).items():
        if key in EMPTY_OK or not (value == "" or (isinstance(value, list) and "" in value)):
            continue
        action = next((a for a in args._parser._actions if a.dest == key), None)
        flag = max(action.option_strings, key=len) if action is not None and action.option_strings else key
        args._parser.error(f"{flag}: an empty value (a path, a name or an expression was expected)")


def error_text(error, debug=False) -> str:
    """What the user reads: graphnn's own errors as they are, anything else named as unexpected."""
    if isinstance(error, (GraphnnError, ValueError, OSError)):
        return str(error)
    hint = "" if debug else "; run with --debug for the traceback"
    return f"unexpected {type(error).__name__}: {error}{hint}"
