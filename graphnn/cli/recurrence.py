"""``--steps T`` (derive, draw) and ``--truncate K`` (train): rebuild a recurrent model with them.

The derive, draw and train commands are defined elsewhere; this module (registered after
them, modules load in name order) adds the options to their parsers and wraps their
handlers: the model's builder runs with ``steps=T`` / ``truncate=K`` for the duration of
the command.
"""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager

from .. import models

OPTIONS = {"time_steps": "steps", "truncate": "truncate"}   # argparse dest -> builder argument


def register(sub):
    for command in ("derive", "draw", "train"):
        parser = sub.choices.get(command)
        if parser is None:
            continue
        taken = {o for a in parser._actions for o in a.option_strings}
        if "--steps" not in taken:  # `train --steps` already counts updates
            parser.add_argument("--steps", type=int, metavar="T", dest="time_steps",
                                help="recurrent models (rnn-scalar, rnn, lstm): unroll over T time steps")
        if command == "train":
            parser.add_argument("--truncate", type=int, metavar="K",
                                help="recurrent models (rnn, lstm): truncated BPTT, K steps back")
        parser.set_defaults(func=_with_options(parser.get_default("func")))


def _with_options(handler):
    @functools.wraps(handler)
    def run(args):
        options = {arg: getattr(args, dest) for dest, arg in OPTIONS.items()
                   if getattr(args, dest, None) is not None}
        if not options:
            return handler(args)
        with builder_options(args.model, **options):
            return handler(args)
    return run


@contextmanager
def builder_options(name, **options):
    """Make `models.get_model(name)` build with ``options`` while the block runs."""
    builders = models.available()
    flags = " ".join(f"--{k}" for k in options)
    if name not in builders:
        raise ValueError(f"{flags} needs a built-in recurrent model, not {name!r}")
    builder = builders[name]
    for key, value in options.items():
        if key not in inspect.signature(builder).parameters:
            takers = [n for n, b in builders.items() if key in inspect.signature(b).parameters]
            raise ValueError(f"model {name!r} has no option --{key} (it applies to: {', '.join(takers)})")
        if value < 1:
            raise ValueError(f"--{key} must be at least 1, got {value}")
    bound = functools.wraps(builder)(functools.partial(builder, **options))
    bound.model_name, bound.summary = builder.model_name, builder.summary
    models._BUILDERS[name] = bound
    try:
        yield
    finally:
        models._BUILDERS[name] = builder
