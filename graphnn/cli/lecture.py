"""``graphnn lecture MODEL -o page.html``: the interactive lecture page, one offline file."""
from __future__ import annotations

from pathlib import Path

from .common import add_model_arguments, positive, resolve_model, whole


def register(sub):
    p = sub.add_parser("lecture", help="one offline HTML page to present backprop from, step by step",
                       description="Write the lecture page of a small net: the forward pass unit by unit, "
                                   "the backward pass δ by δ, any weight's derivation on a click, the update "
                                   "and a precomputed training run. One file, no network needed.")
    add_model_arguments(p, "lecture")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="the page to write (FILE.html or .htm); missing folders are made")
    p.add_argument("--train", type=whole(1), metavar="N", dest="train_steps",
                   help="precomputed training updates for the play button (default: the model's; "
                        "epochs for a perceptron)")
    p.add_argument("--lr", type=positive, help="learning rate of the update and the training (default: the model's)")
    p.add_argument("--precision", type=whole(1), default=6, metavar="N",
                   help="significant digits of the derivations (default 6)")
    p.add_argument("--quiz", action="store_true", help="open with the numbers hidden (Q toggles)")
    p.set_defaults(func=cmd_lecture)


def cmd_lecture(args):
    from ..draw.render import require_dot
    from ..lecture import lecture

    if Path(args.output).suffix.lower() not in (".html", ".htm"):   # never a page in x.pdf
        raise ValueError(f"graphnn lecture writes one HTML page: give -o FILE.html, not {args.output!r}")
    require_dot()     # the pictures are Graphviz drawings: fail before any work
    model = resolve_model(args)
    page = lecture(model, args.output, train_steps=args.train_steps, lr=args.lr, precision=args.precision,
                   quiz=args.quiz)
    print(f"wrote {args.output} ({len(page.lesson.steps)} steps, {len(page.html) // 1024} KiB): "
          "open it in a browser; → ← space step, click a weight, Q quiz, P play")
    return 0
