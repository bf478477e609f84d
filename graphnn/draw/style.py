"""Colours, shapes and text formatting shared by every view.

One place decides how a parameter, an input, a unit or a gradient edge looks, so the
views stay consistent (and a new view, e.g. the recurrence helper's 'unrolled', can
reuse the same look by calling these helpers).
"""
from __future__ import annotations

import html

import graphviz
import numpy as np

FONT = "Helvetica"
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
                 "fontname": FONT, "fontsize": "11", "fontcolor": "#555555"}

NOT_COMPUTED = "not computed yet"


def new_digraph(name: str, rankdir: str = "TB", **graph_attr) -> graphviz.Digraph:
    """An empty Digraph with graphnn's defaults (fonts, spacing)."""
    attrs = {"rankdir": rankdir, "fontname": FONT, "fontsize": "12", "labelloc": "t",
             "nodesep": "0.25", "ranksep": "0.45"}
    attrs.update(graph_attr)
    return graphviz.Digraph(name=name, graph_attr=attrs,
                            node_attr={"fontname": FONT, "fontsize": "11"},
                            edge_attr={"fontname": FONT, "fontsize": "10"})


def esc(text) -> str:
    """Text made safe inside an HTML-like graphviz label."""
    return html.escape(str(text), quote=False)


def html_label(*lines) -> str:
    """An HTML-like label from lines; a line is text or (text, {'size':, 'color':, 'bold':})."""
    parts = []
    for line in lines:
        if line is None:
            continue
        text, fmt = (line, {}) if isinstance(line, str) else line
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


def small(text, color="#555555"):
    return (text, {"size": 9, "color": color})


def grad_line(text):
    return (text, {"size": 9, "color": "#c0392b"})


def fmt_number(x, precision: int) -> str:
    """A number with ``precision`` significant digits ('0.0822', '-0.0226', '1e-05')."""
    x = float(x)
    if x == 0:
        return "0"
    return f"{x:.{precision}g}"


def fmt_array(value, precision: int, max_items: int = 6) -> str:
    """Small arrays in full, large ones as a range (a label must stay one glance)."""
    arr = np.asarray(value)
    if arr.size == 1:
        return fmt_number(arr.reshape(()), precision)
    if arr.size <= max_items:
        rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
        body = "; ".join(", ".join(fmt_number(v, precision) for v in row) for row in rows)
        return f"[{body}]"
    return (f"{fmt_number(arr.min(), precision)} … {fmt_number(arr.max(), precision)}"
            f" (mean {fmt_number(arr.mean(), precision)})")


def fmt_shape(shape) -> str:
    """'(B, 2)' — B is the batch axis; a 1-tuple keeps its comma: '(2,)'."""
    inner = ", ".join("B" if d is None else str(d) for d in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"
