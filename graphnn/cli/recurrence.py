"""``--steps T`` for ``graphnn derive`` and ``graphnn draw``: rebuild a recurrent model over T steps.

The derive and draw commands are defined elsewhere; this module (registered after them,
modules load in name order) adds the option to their parsers and wraps their handlers:
with ``--steps`` the model's builder runs with ``steps=T`` for the duration of the command.
"""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager

from .. import models


def register(sub):
    for command in ("derive", "draw"):
        parser = sub.choices.get(command)
        if parser is None or any("--steps" in a.option_strings for a in parser._actions):
            continue
        parser.add_argument("--steps", type=int, metavar="T",
                            help="recurrent models (rnn-scalar, rnn, lstm): unroll over T time steps")
        parser.set_defaults(func=_with_steps(parser.get_default("func")))


def _with_steps(handler):
    @functools.wraps(handler)
    def run(args):
        if getattr(args, "steps", None) is None:
            return handler(args)
        with builder_options(args.model, steps=args.steps):
            return handler(args)
    return run


@contextmanager
def builder_options(name, **options):
    """Make `models.get_model(name)` build with ``options`` while the block runs."""
    builders = models.available()
    if name not in builders:
        raise ValueError(f"--steps needs a built-in recurrent model, not {name!r}")
    builder = builders[name]
    accepted = inspect.signature(builder).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        recurrent = [n for n, b in builders.items() if "steps" in inspect.signature(b).parameters]
        raise ValueError(f"model {name!r} has no time steps (--steps applies to: {', '.join(recurrent)})")
    steps = options.get("steps")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    bound = functools.wraps(builder)(functools.partial(builder, **options))
    bound.model_name, bound.summary = builder.model_name, builder.summary
    models._BUILDERS[name] = bound
    try:
        yield
    finally:
        models._BUILDERS[name] = builder
