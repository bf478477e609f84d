"""Derivations as the page's panel shows them: one HTML fragment per step, tagged.

Every fragment is a `graphnn.derive` derivation rendered by its own HTML writer (MathML,
`documents.html_blocks`); a step keeps its `Step.kind` (``data-kind``) so the page can
style a path term, a δ or an update, and numbers with a decimal point get ``class="num"``
so quiz mode can hide them. Nothing here computes a number.
"""
from __future__ import annotations

import html
import re

from ..derive.documents import Document, MathBlock, Prose, html_blocks
from ..derive.printing import printing
from ..notation import html_name

_MN = re.compile(r"<mn>([^<]*)</mn>")


def _quiz_marks(text: str) -> str:
    """The step's result (its last row's numbers) gets ``class="num"``: what quiz mode hides,
    while the numbers it is computed from stay to compute it with."""
    head, sep, last = text.rpartition("<mtr>")
    return head + sep + _MN.sub(r'<mn class="num">\1</mn>', last) if sep else text


def item_html(derivation, item) -> str:
    """One item of a derivation (prose or a `Step`, with its note) as HTML."""
    with printing(derivation.precision, derivation.display):
        if isinstance(item, str):
            return "".join(html_blocks(Document("", [Prose(item)])))
        blocks = ([Prose(item.note)] if item.note else []) + [MathBlock(item.rows())]
        text = "".join(html_blocks(Document("", blocks)))
        return _quiz_marks(text) if item.value is not None and len(item.forms) > 1 else text


def step_html(derivation, item, **data) -> str:
    """A step (or prose) wrapped for the panel: ``<div class="dstep" data-kind=… data-…>``."""
    kind = getattr(item, "kind", "prose")
    attrs = "".join(f' data-{k}="{html.escape(str(v))}"' for k, v in data.items() if v is not None)
    return f'<div class="dstep" data-kind="{kind}"{attrs}>{item_html(derivation, item)}</div>'


def derivation_html(derivation, tags=None) -> str:
    """The whole derivation, step by step; ``tags(item) -> dict`` adds data attributes."""
    parts = [step_html(derivation, item, **(tags(item) if tags else {})) for item in derivation.items]
    return '<div class="graphnn-doc">' + "".join(parts) + "</div>"


def panel(title: str, body: str, results=()) -> str:
    """A panel: its title (HTML: names through `label_html`), the step's results as large plain
    lines ("out_o1 = 0.751365", each ``data-name``d for the tests and the quiz) and the body."""
    lines = "".join(result_line(*r) for r in results)
    return (f'<h2 class="ptitle">{title}</h2>'
            + (f'<div class="results">{lines}</div>' if lines else "")
            + f'<div class="graphnn-doc">{body}</div>')


def esc(text: str) -> str:
    """Plain text made safe in the page's HTML."""
    return html.escape(text)


#: an index in prose: s_T, x_t, s_{t-1}, ε_θ, d_model (after a letter or digit)
_PROSE_INDEX = re.compile(r"(?<=[^\W_])_(?:\{([^{}]*)\}|([^\W_]+))")


def prose_html(text: str) -> str:
    """A model's plain-text prose (its description: "loss ½(t − s_T)²") for the page: safe
    HTML, its indices written as subscripts (s<sub>T</sub>), as the notation is elsewhere."""
    def index(m: re.Match) -> str:
        return "<sub>%s</sub>" % (m.group(1) if m.group(1) is not None else m.group(2)).replace("-", "−")
    return _PROSE_INDEX.sub(index, esc(text))


def label_html(name: str) -> str:
    """A result's name with real subscripts: out_o1, ∂E_total/∂w5, w5⁺ (the value after a step)."""
    if name.endswith("⁺"):
        return label_html(name[:-1]) + "<sup>+</sup>"
    if name.startswith("∂") and "/∂" in name:
        num, den = name[1:].split("/∂", 1)
        return f"∂{html_name(num)}/∂{html_name(den)}"
    if name.startswith("δ_") and "<" not in html_name(name[2:]):
        return f"δ<sub>{html_name(name[2:])}</sub>"      # δ_y_hat: δ with index ŷ
    return html_name(name)


def result_line(name: str, value: str) -> str:
    """``name = value`` in large type (``data-name``: the name, ⁺ written as +)."""
    key = name.replace("⁺", "+")
    return (f'<div class="result" data-name="{html.escape(key)}">'
            f'<span class="rname">{label_html(name)}</span> = <span class="num">{html.escape(value)}</span></div>')
