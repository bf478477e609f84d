"""``graphnn draw MODEL [--view ops|neurons|backward] [--values] [--grads] [-o FILE]``."""
from __future__ import annotations

from .common import add_model_arguments, resolve_model

import sys


def register(sub):
    p = sub.add_parser("draw", help="draw a model's graph with Graphviz (ops, neurons, backward views)",
                       description="Draw a model. Without -o, print its DOT text. SVG/PNG/PDF need "
                                   "Graphviz's `dot` program; .dot output does not.")
    add_model_arguments(p, "draw")
    p.add_argument("--view", default="ops",
                   help="ops (default), neurons, backward, or a view another module registered")
    p.add_argument("--values", action="store_true", help="show values for the model's worked example")
    p.add_argument("--grads", action="store_true",
                   help="show gradients dE/d· (and δ in units) for the worked example; implies --values")
    p.add_argument("-o", "--output", metavar="FILE", help="FILE.svg, .png, .pdf or .dot (default: DOT on stdout)")
    p.add_argument("--example", type=int, default=0, metavar="K",
                   help="which row of the example's batch the units show (default 0)")
    p.add_argument("--precision", type=int, default=3, help="significant digits of numbers (default 3)")
    p.add_argument("--max-units", type=int, default=10,
                   help="neurons view: wider layers show their first units, ⋮ and the last (default 10)")
    p.add_argument("--collapse", action="store_true", help="ops view: one box per layer (deep nets, CNNs)")
    p.set_defaults(func=cmd_draw)


def cmd_draw(args):
    from ..draw import draw, save
    from ..draw.render import output_format, require_dot

    if args.output:   # fail before any work: unknown suffix, or no `dot` for an image
        if output_format(args.output) not in ("dot", "gv"):
            require_dot()
    model = resolve_model(args)
    digraph = draw(model, view=args.view, values="example" if args.values or args.grads else None,
                   grads=args.grads, example_index=args.example, precision=args.precision,
                   max_units=args.max_units, collapse=args.collapse)
    if not args.output:
        sys.stdout.write(digraph.source)
        return 0
    path = save(digraph, args.output)
    print(f"wrote {path} ({args.view} view of {model.name})")
    return 0
