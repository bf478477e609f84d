"""``graphnn derive MODEL --wrt NAME``: the backprop derivation, as text, LaTeX, Markdown,
HTML, PDF or Beamer slides."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import add_model_arguments, resolve_model
from ..errors import FeedError, GraphnnError

FORMATS = ("text", "latex", "markdown", "html", "pdf", "beamer")


def register(sub):
    p = sub.add_parser("derive", help="write out backpropagation for a weight, step by step")
    add_model_arguments(p, "derive")
    p.add_argument("--wrt", action="append",
                   help="what to differentiate by: an element (w5) or a parameter (W2); "
                        "repeat or separate by commas for several (not needed for --view forward)")
    p.add_argument("--values", action="store_true",
                   help="substitute the model's worked example, else its first training example "
                        "(the derivation says which)")
    p.add_argument("--feed", action="append", metavar="NAME=VALUE,…|FILE.json",
                   help="values of your own, e.g. --feed i1=0.05,i2=0.1 (element names) or "
                        "--feed i=0.05,0.1 (a whole input), or a JSON file {name: value}; "
                        "inputs you leave out come from the worked example")
    p.add_argument("--example", type=int, default=1, metavar="K",
                   help="with --values or --feed: the row (from 1) the scalar, forward and time views show "
                        "(default 1; with --values and no worked example: training example K)")
    p.add_argument("--view", default="scalar",
                   help="scalar (per element, chain rule per path), matrix (delta rule for whole layers), "
                        "forward (the forward pass with numbers), time (BPTT), or another registered view")
    p.add_argument("--update", action="store_true",
                   help="add the gradient-descent update step and the loss after it")
    p.add_argument("--lr", type=float, help="learning rate of the update (default: the model's)")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"],
                   help="optimizer of the update (default: the model's, else sgd)")
    p.add_argument("--precision", type=int, default=6, metavar="N",
                   help="significant digits of every number (default 6; exact ones print exactly)")
    p.add_argument("--format", choices=FORMATS,
                   help="text (the default on stdout), latex (align blocks; with -o x.tex a full document), "
                        "markdown, html (one offline page), pdf (needs -o and pdflatex), "
                        "beamer (16:9 slides: LaTeX, or a PDF with -o x.pdf); with -o, the file's "
                        "ending names it (.txt .tex .md .html .pdf) and a --format that clashes is an error")
    p.add_argument("--pause", action="store_true", help="beamer: uncover a frame's steps one at a time")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE (.txt, .tex, .md, .html or .pdf) instead of stdout; missing folders are made")
    p.set_defaults(func=cmd_derive)


class DeriveError(GraphnnError):
    """A derive request that cannot be carried out (missing tool, missing -o)."""


def cmd_derive(args):
    from ..derive import derive
    from ..derive.documents import LatexError, MissingToolError, file_format, write_atomic

    # the file's format is settled before any work: never text in a .pdf, never HTML in a .tex
    fmt = file_format(args.output, args.format, option="--format ") if args.output else args.format or "text"
    if fmt == "pdf" and not args.output:
        raise DeriveError("--format pdf writes a file: give -o FILE.pdf")
    if args.pause and fmt not in ("beamer", "beamer-pdf"):
        raise DeriveError("--pause uncovers a Beamer frame's steps: it needs --format beamer")
    model = resolve_model(args)
    for flag, given in (("--lr", args.lr is not None), ("--optimizer", args.optimizer is not None)):
        # they set the update step, which only --update writes (ignored before); the perceptron
        # rule's derivation is its update, and reads --lr
        if given and not args.update and model.task != "perceptron":
            raise DeriveError(f"{flag} sets the update step, which only --update writes: add --update")
    wrt = [w.strip() for item in args.wrt or [] for w in item.split(",") if w.strip()] or None
    values = True if args.values else None
    if args.feed:
        values = feeds_from_arguments(model, args.feed)
    d = derive(model, wrt, values=values, view=args.view, update=args.update, lr=args.lr,
               optimizer=args.optimizer, precision=args.precision, example=args.example)
    if fmt in ("pdf", "beamer-pdf"):
        try:
            d.to_pdf(args.output, beamer=fmt == "beamer-pdf", pause=args.pause)
        except (MissingToolError, LatexError) as e:
            raise DeriveError(str(e)) from None
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    text = d.to_beamer(args.pause) if fmt == "beamer" else d.render(fmt)
    if args.output:
        write_atomic(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def feeds_from_arguments(model, specs) -> dict:
    """Feeds from ``--feed`` arguments: JSON files and NAME=VALUE,… lists, by input name or
    by element name (i1=0.05); what they leave out comes from the worked example."""
    from ..derive.resolve import feeds_from_assignments

    assignments: dict = {}
    for spec in specs:
        if spec.endswith(".json") and "=" not in spec:
            try:
                data = json.loads(Path(spec).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise FeedError(f"--feed {spec}: no such file") from None
            except json.JSONDecodeError as e:
                raise FeedError(f"--feed {spec} is not valid JSON: {e}") from None
            if not isinstance(data, dict):
                raise FeedError(f"--feed {spec} must hold a JSON object {{name: value}}")
            assignments.update(data)
            continue
        assignments.update(_parse_assignments(spec))
    return feeds_from_assignments(model, assignments)


def _parse_assignments(spec: str) -> dict:
    """'i1=0.05,i2=0.1' or 'i=0.05,0.1,target=0.01,0.99': numbers after a name belong to it."""
    out, name = {}, None
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if "=" in token:
            name, _, token = token.partition("=")
            name = name.strip()
            out[name] = []
        if name is None:
            raise FeedError(f"--feed {spec!r}: expected NAME=VALUE, … (e.g. i1=0.05,i2=0.1)")
        try:
            out[name].append(json.loads(token) if token.startswith("[") else float(token))
        except ValueError:
            raise FeedError(f"--feed {spec!r}: {token!r} is not a number") from None
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}
