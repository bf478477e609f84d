"""``graphnn draw MODEL [--view VIEW] [--values] [--grads] [--slide] [-o FILE]``."""
from __future__ import annotations

import sys

from .common import add_model_arguments, resolve_model


def register(sub):
    p = sub.add_parser("draw", help="draw a model's graph (ops, neurons, backward, unrolled, cell, block, maps)",
                       description="Draw a model. Without -o, print its DOT text. SVG/PNG/PDF need "
                                   "Graphviz's `dot` program; .dot output does not.")
    add_model_arguments(p, "draw")
    p.add_argument("--view", default="ops",
                   help="ops (default), neurons, backward, unrolled (recurrent nets), cell (LSTM), "
                        "block (attention), maps (CNN feature maps), or a view another module registered")
    p.add_argument("--values", action="store_true", help="show values for the model's worked example")
    p.add_argument("--grads", action="store_true",
                   help="show gradients dE/d· (and δ in units) for the worked example; implies --values "
                        "(ops, neurons, backward, unrolled; the cell, block and maps views refuse it)")
    p.add_argument("-o", "--output", metavar="FILE", help="FILE.svg, .png, .pdf or .dot (default: DOT on stdout); missing folders are made")
    p.add_argument("--slide", action="store_true",
                   help="fit a 16:9 slide (1920×1080 px) at a readable font: wide layers collapse, "
                        "middle time steps are elided")
    p.add_argument("--size", metavar="WxH", help="like --slide, for another box in pixels, e.g. 1280x720")
    p.add_argument("--wrt", metavar="NAME", help="unrolled view: the weight whose BPTT paths are drawn")
    p.add_argument("--show-steps", type=int, metavar="K",
                   help="unrolled view: draw K of the T steps (the first and last ones), ⋯ for the rest")
    p.add_argument("--step", type=int, metavar="T", help="cell view: the time step whose values are shown (1 … T; default T)")
    p.add_argument("--example", type=int, default=1, metavar="K",
                   help="neurons and maps views: which example of the values' batch they show, counted "
                        "from 1 as the labels count it (1 … the batch's rows; default 1)")
    p.add_argument("--precision", type=int, default=3, help="significant digits of numbers (default 3, at least 1)")
    p.add_argument("--max-units", type=int, default=10,
                   help="neurons view: wider layers show their first units, ⋮ and the last (default 10, at least 3)")
    p.add_argument("--collapse", action="store_true", help="ops/backward view: one box per group")
    p.set_defaults(func=cmd_draw)


def _size(args):
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().replace("×", "x").split("x"))
        except ValueError:
            raise ValueError(f"--size takes WIDTHxHEIGHT in pixels, e.g. 1920x1080, not {args.size!r}") from None
        return (w, h)
    return "slide" if args.slide else None


def cmd_draw(args):
    from ..draw import draw, save
    from ..draw.render import output_format, require_dot

    if args.output:   # fail before any work: unknown suffix, or no `dot` for an image
        if output_format(args.output) not in ("dot", "gv") and args.view != "maps":
            require_dot()
    model = resolve_model(args)
    options = {k: v for k, v in (("wrt", args.wrt), ("shown_steps", args.show_steps), ("step", args.step))
               if v is not None}
    drawing = draw(model, view=args.view, values="example" if args.values or args.grads else None,
                   grads=args.grads, example=args.example, precision=args.precision,
                   max_units=args.max_units, collapse=args.collapse, size=_size(args), **options)
    if not args.output:
        if not hasattr(drawing, "source"):
            raise ValueError(f"the {args.view} view is a picture, not a graph: write it with -o FILE.png "
                             "(or .svg, .pdf)")
        sys.stdout.write(drawing.source)
        return 0
    path = save(drawing, args.output)
    print(f"wrote {path} ({args.view} view of {model.name})")
    return 0
