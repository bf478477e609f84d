"""What every command that takes a model shares: the MODEL argument and the model's options.

A model declares the options it takes (graphnn.models.register(..., options=...)); the
commands offer them as flags. ``--steps T`` unrolls a recurrent model over T time steps
(derive, draw, show, codegen; ``train --steps`` counts updates instead), ``--truncate K``
truncates BPTT (train, codegen).
"""
from __future__ import annotations

import argparse
import math

from .. import models


def whole(least: int):
    """An argparse type: a whole number ≥ ``least`` (argparse then names the option)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value
    return parse


def positive(text):
    """An argparse type: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value

#: builder option -> (flag, argparse dest, metavar, the commands that offer it)
MODEL_OPTIONS = {
    "steps": ("--steps", "time_steps", "T", ("derive", "draw", "show", "codegen", "lecture")),
    "truncate": ("--truncate", "truncate", "K", ("train", "codegen")),
}


def add_model_arguments(parser, command: str) -> None:
    """The positional MODEL and the model options ``command`` offers."""
    parser.add_argument("model", help="a built-in model name or a Python file defining build()")
    builders = models.available()
    for option, (flag, dest, metavar, commands) in MODEL_OPTIONS.items():
        if command not in commands:
            continue
        takers = [n for n, b in builders.items() if option in b.options]
        what = next((b.options[option] for b in builders.values() if option in b.options), option)
        parser.add_argument(flag, type=int, metavar=metavar, dest=dest,
                            help=f"{what} (models that declare it: {', '.join(takers)}; model files whose "
                                 f"build() takes {option}=)")


def resolve_model(args):
    """The model ``args.model`` names, built with the model options given on the command line."""
    options = {option: getattr(args, dest, None) for option, (_, dest, _, _) in MODEL_OPTIONS.items()}
    return models.resolve(args.model, **options)
