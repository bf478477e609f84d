"""Colours, shapes, fonts and label text shared by every view.

One place decides how a parameter, an input, a unit or a gradient edge looks, so the
views stay consistent. Labels are Graphviz HTML-like labels: a name is written by
`graphnn.notation.html_name` (real subscripts: out<SUB>h1</SUB>), a number by
`notation.number_html` — the same notation the derivations print. Text that is already in
label form is an `Html` string; plain strings are escaped.
"""
from __future__ import annotations

import html

import graphviz
import numpy as np

from ..notation import html_name, number_html
from .render import Drawing

FONT = "Helvetica"
#: point sizes: names and op labels, details (values, shapes), edge labels, titles
NAME_PT, DETAIL_PT, EDGE_PT, TITLE_PT, CLUSTER_PT = 14, 12, 12, 18, 13
VALUE_COLOR, GRAD_COLOR, DETAIL_COLOR = "#1a5276", "#c0392b", "#555555"

FORWARD_EDGE = {"color": "#333333"}
BACKWARD_EDGE = {"color": "#c0392b", "fontcolor": "#c0392b", "style": "dashed", "penwidth": "1.3"}
READ_EDGE = {"color": "#bbbbbb", "style": "dotted", "arrowhead": "none", "constraint": "false"}
ELLIPSIS_EDGE = {"color": "#aaaaaa", "style": "dashed"}

NODE_STYLES = {
    "input": {"shape": "ellipse", "style": "filled", "fillcolor": "#d6eaf8", "color": "#2e86c1"},
    "parameter": {"shape": "box", "style": "filled,bold", "fillcolor": "#fdebd0", "color": "#d35400"},
    "fixed": {"shape": "box", "style": "filled,dashed", "fillcolor": "#eeeeee", "color": "#777777"},
    "constant": {"shape": "note", "style": "filled", "fillcolor": "#f4f6f6", "color": "#999999"},
    "op": {"shape": "box", "style": "rounded,filled", "fillcolor": "#ffffff", "color": "#333333"},
    "loss": {"shape": "box", "style": "rounded,filled,bold", "fillcolor": "#fadbd8", "color": "#922b21"},
    "gradient": {"shape": "box", "style": "rounded,filled,dashed", "fillcolor": "#fdedec",
                 "color": "#c0392b", "fontcolor": "#78281f"},
    "unit": {"shape": "circle", "style": "filled", "fillcolor": "#ffffff", "color": "#333333",
             "fixedsize": "false", "margin": "0.02"},
    "input_unit": {"shape": "circle", "style": "filled", "fillcolor": "#d6eaf8", "color": "#2e86c1",
                   "margin": "0.02"},
    "bias_unit": {"shape": "circle", "style": "filled", "fillcolor": "#fdebd0", "color": "#d35400",
                  "margin": "0.02"},
    "ellipsis": {"shape": "plaintext", "fontcolor": "#555555"},
    "caption": {"shape": "plaintext", "fontcolor": "#333333"},
}

CLUSTER_STYLE = {"style": "rounded,filled", "fillcolor": "#fbfbfb", "color": "#bbbbbb",
                 "fontname": FONT, "fontsize": str(CLUSTER_PT), "fontcolor": "#555555"}


class Html(str):
    """Text already in Graphviz HTML-label form (escaped; may hold <SUB>, <SUP>, <B>)."""


def esc(text) -> Html:
    """Text made safe inside an HTML-like label (an `Html` string passes unchanged)."""
    return text if isinstance(text, Html) else Html(html.escape(str(text), quote=False))


def h(*parts) -> Html:
    """Concatenate label parts: `Html` pieces as they are, plain text escaped."""
    return Html("".join(esc(p) for p in parts if p is not None))


def nm(name) -> Html:
    """A teaching name with real subscripts/superscripts (out_h1 → out<SUB>h1</SUB>)."""
    return Html(html_name(str(name)))


def d_of(loss_name, of, partial: bool = True) -> Html:
    """∂E<SUB>total</SUB>/∂w<SUB>5</SUB> (``partial=False``: dE/dw)."""
    d = "∂" if partial else "d"
    return h(d, nm(loss_name), "/", d, of if isinstance(of, Html) else nm(of))


def html_label(*lines) -> str:
    """An HTML-like label from lines; a line is text or (text, {'size':, 'color':, 'bold':})."""
    parts = []
    for line in lines:
        text, fmt = (line, {}) if line is None or isinstance(line, str) else line
        if text is None:   # a line with nothing to say (small(None)): left out, never "None"
            continue
        t = esc(text)
        if fmt.get("bold"):
            t = f"<B>{t}</B>"
        font = []
        if "size" in fmt:
            font.append(f'POINT-SIZE="{fmt["size"]}"')
        if "color" in fmt:
            font.append(f'COLOR="{fmt["color"]}"')
        if font:
            t = f"<FONT {' '.join(font)}>{t}</FONT>"
        parts.append(t)
    return "<" + "<BR/>".join(parts) + ">"


def bold(text):
    return (text, {"bold": True})


def small(text, color=DETAIL_COLOR):
    return (text, {"size": DETAIL_PT, "color": color})


def value_line(text):
    return (text, {"size": DETAIL_PT, "color": VALUE_COLOR})


def grad_line(text):
    return (text, {"size": DETAIL_PT, "color": GRAD_COLOR})


def new_digraph(name: str, rankdir: str = "TB", **graph_attr) -> graphviz.Digraph:
    """An empty Digraph with graphnn's defaults (fonts, spacing)."""
    attrs = {"rankdir": rankdir, "fontname": FONT, "fontsize": str(TITLE_PT), "labelloc": "t",
             "nodesep": "0.25", "ranksep": "0.45", "pad": "0.1"}
    attrs.update(graph_attr)
    return Drawing(name=name, graph_attr=attrs,
                            node_attr={"fontname": FONT, "fontsize": str(NAME_PT)},
                            edge_attr={"fontname": FONT, "fontsize": str(EDGE_PT)})


def fmt_number(x, precision: int) -> Html:
    """A number with ``precision`` significant digits, as a label shows it: 0.0822, −0.0226,
    1.01×10<SUP>−5</SUP> (`notation.number_html`, the derivations' digits)."""
    return Html(number_html(float(x), precision))


def fmt_array(value, precision: int, max_items: int = 6) -> Html:
    """Small arrays in full, large ones as a range (a label must stay one glance)."""
    arr = np.asarray(value)
    num = (lambda v: fmt_number(v, precision))
    if arr.size == 1:
        return num(arr.reshape(()))
    if arr.size <= max_items:
        rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
        body = "; ".join(", ".join(num(v) for v in row) for row in rows)
        return Html(f"[{body}]")
    return Html(f"{num(arr.min())} … {num(arr.max())} (mean {num(arr.mean())})")


def fmt_shape(shape) -> str:
    """'(B, 2)' — B is the batch axis; a 1-tuple keeps its comma: '(2,)'."""
    inner = ", ".join("B" if d is None else str(d) for d in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"


def shape_text(shape) -> str:
    """'B × 2', '16 × 1 × 3 × 3', 'scalar' — shapes as a slide writes them."""
    if not shape:
        return "scalar"
    return " × ".join("B" if d is None else str(d) for d in shape)
