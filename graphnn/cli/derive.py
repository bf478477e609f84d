"""``graphnn derive MODEL --wrt NAME``: the backprop derivation, as text, LaTeX, Markdown,
HTML or PDF."""
from __future__ import annotations

from .common import add_model_arguments, resolve_model

import sys

from ..errors import GraphnnError

FORMATS = ("text", "latex", "markdown", "html", "pdf")


def register(sub):
    p = sub.add_parser("derive", help="write out backpropagation for a weight, step by step")
    add_model_arguments(p, "derive")
    p.add_argument("--wrt", required=True, action="append",
                   help="what to differentiate by: an element (w5) or a parameter (W2); "
                        "repeat or separate by commas for several")
    p.add_argument("--values", action="store_true",
                   help="substitute the model's worked example (its 'example' feeds)")
    p.add_argument("--view", default="scalar",
                   help="scalar (per element, chain rule per path), matrix (delta rule), "
                        "or another registered view")
    p.add_argument("--update", action="store_true", help="add the gradient-descent update step")
    p.add_argument("--lr", type=float, help="learning rate of the update (default: the model's)")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"],
                   help="optimizer of the update (default: the model's, else sgd)")
    p.add_argument("--format", default="text", choices=FORMATS,
                   help="text (default), latex (align blocks; with -o x.tex a full document), "
                        "markdown, html (one offline page), pdf (needs -o and pdflatex)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_derive)


class DeriveError(GraphnnError):
    """A derive request that cannot be carried out (missing tool, missing -o)."""


def cmd_derive(args):
    from ..derive import derive
    from ..derive.documents import LatexError, MissingToolError

    model = resolve_model(args)
    wrt = [w.strip() for item in args.wrt for w in item.split(",") if w.strip()]
    d = derive(model, wrt, values=True if args.values else None, view=args.view,
               update=args.update, lr=args.lr, optimizer=args.optimizer)
    if args.format == "pdf":
        if not args.output:
            raise DeriveError("--format pdf writes a file: give -o FILE.pdf")
        try:
            d.to_pdf(args.output)
        except (MissingToolError, LatexError) as e:
            raise DeriveError(str(e)) from None
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    fmt = args.format
    if fmt == "latex" and args.output and args.output.endswith(".tex"):
        fmt = "latex-document"  # a .tex file compiles on its own
    text = d.render(fmt)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
