"""A lecture's worth of backpropagation for Mazur's 2-2-2 net, in one HTML page and one
LaTeX file: the chain rule for w5 (one path) and w1 (two paths), the delta rule in
matrix form, and the gradient-descent updates — all with the worked example's numbers.

    python examples/mazur_lecture.py [OUT.html [OUT.tex]]     (default: ./out/)
"""
from __future__ import annotations

import sys
from pathlib import Path

from graphnn.derive import Derivation, derive
from graphnn.models import get_model


def lecture() -> Derivation:
    model = get_model("mazur")
    parts = [
        derive(model, "w5", values=True, update=True),
        derive(model, "w1", values=True, update=True),
        derive(model, ["W2", "W1"], values=True, view="matrix", update=True),
    ]
    parts[0].title = r"The output layer: $\partial E_{\mathrm{total}}/\partial w_{5}$, and its update"
    parts[1].title = r"The hidden layer: $\partial E_{\mathrm{total}}/\partial w_{1}$ along two paths, and its update"
    parts[2].title = "All weights at once: the delta rule in matrix form, one step of gradient descent"
    return Derivation.combine("Backpropagation, step by step (Mazur's example)", parts)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    html = Path(argv[0]) if argv else Path("out") / "mazur_lecture.html"
    tex = Path(argv[1]) if len(argv) > 1 else html.with_suffix(".tex")
    d = lecture()
    for path in (html, tex):
        d.save(path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
