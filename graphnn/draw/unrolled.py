"""The 'unrolled' view: a recurrent net drawn as its T time steps, with the BPTT paths.

Forward: s_0 → s_1 → … → s_T → loss, the inputs x_t below their steps, the shared weights
reading into every step. Backward, in two styles: *implicit* edges s_t ⇢ s_{t−1}
(∂s_t/∂s_{t−1}, the way back through earlier states; red, dashed) and *explicit* edges
s_k → w (∂⁺s_k/∂w, step k's own use of the weight with s_{k−1} held constant; blue,
bold). With values, states show their numbers, implicit edges the size of the step
Jacobian and explicit edges the path term of step k (they sum to dE/dw).
"""
from __future__ import annotations

import numpy as np

from ..bptt import bptt_terms
from ..recurrent import scans_in
from ..errors import GraphnnError
from .context import DrawError
from .style import BACKWARD_EDGE, FORWARD_EDGE, NODE_STYLES, READ_EDGE, html_label, new_digraph, small

EXPLICIT_EDGE = {"color": "#1f618d", "fontcolor": "#1f618d", "style": "bold", "penwidth": "2.2"}
IMPLICIT_EDGE = {**BACKWARD_EDGE, "constraint": "false"}


def find_scan(graph):
    """The recurrence in ``graph``: an unrolled scan's record, or a loop node's."""
    found = scans_in(graph)
    if found:
        return found[0]
    raise DrawError("the unrolled view draws recurrent nets (built with graphnn.scan): "
                    "try rnn-scalar, rnn or lstm")


def state_name(cell) -> str:
    """'s' (or the carry's own name, h); several carries are one state s = (h, c)."""
    if len(cell.carry_out) == 1 and cell.carry_out[0].name:
        return cell.carry_out[0].name.split("(")[0].removesuffix("_t")
    return "s"


def _parts(cell, t):
    """'(h_1, c_1)' for a state made of several carries, else None."""
    if len(cell.carry_out) == 1:
        return None
    names = [(n.name or f"carry{k}").split("(")[0].removesuffix("_t") for k, n in enumerate(cell.carry_out)]
    return "(" + ", ".join(f"{n}_{t}" for n in names) + ")"


def draw_unrolled(ctx, wrt=None):
    """The view function (also callable directly with a DrawContext)."""
    scan = find_scan(ctx.graph)
    cell, T = scan.cell, scan.length
    trainable = [f for f in cell.free if f.kind == "parameter" and f.trainable]
    wrt = wrt or ctx.options.get("wrt") or (trainable[0] if trainable else None)
    if isinstance(wrt, str):
        wrt = next((f for f in cell.free if f.name == wrt), None) or _unknown(wrt, cell)
    s = state_name(cell)
    terms = _terms(ctx, wrt, scan)
    g = new_digraph(f"{ctx.name}_unrolled", rankdir="TB", nodesep="0.6", ranksep="0.9",
                    label=f"{ctx.name} unrolled over T = {T} steps")
    sid = [f"s{t}" for t in range(T + 1)]
    loss = ctx.loss_name
    with g.subgraph(name="inputs") as row:      # top row: the inputs x_1 … x_T
        row.attr(rank="same")
        for t in range(1, T + 1):
            label = ", ".join(f"{(x.name or 'x').split('(')[0]}_{t}" for x in cell.x_in) or f"step {t}"
            row.node(f"x{t}", label, **NODE_STYLES["input"])
    with g.subgraph(name="states") as row:      # middle row: s_0 → s_1 → … → s_T → loss
        row.attr(rank="same")
        for t in range(T + 1):
            lines = [(f"{s}_{t}", {"bold": True}), small(_parts(cell, t)) if _parts(cell, t) else None]
            if terms is not None:
                lines.append(small(ctx.arr(terms.states[t][0])))
            row.node(sid[t], html_label(*lines), **NODE_STYLES["constant" if t == 0 else "op"])
        row.node("loss", html_label((loss, {"bold": True}),
                                    small(ctx.num(terms.loss_value)) if terms is not None else None),
                 **NODE_STYLES["loss"])
    for t in range(1, T + 1):
        g.edge(sid[t - 1], sid[t], **FORWARD_EDGE)
        g.edge(f"x{t}", sid[t], **FORWARD_EDGE)
    reads = _loss_reads(terms, T)
    for t in reads:
        g.edge(sid[t], "loss", **FORWARD_EDGE)
    params = [f for f in cell.free if f.kind == "parameter"]
    with g.subgraph(name="weights") as row:     # bottom row: the weights every step shares
        row.attr(rank="same")
        shown = [wrt] if wrt is not None else []
        for p in shown:
            row.node(f"p_{p.name}", html_label((p.name, {"bold": True}), small("shared by every step")),
                     **NODE_STYLES["parameter"])
        others = [p for p in params if p not in shown]
        if others:
            names = ", ".join(p.name for p in others[:8]) + (", …" if len(others) > 8 else "")
            row.node("p_rest", html_label(names, small("also read by every step")), **NODE_STYLES["fixed"])
        if terms is not None and wrt is not None:
            row.node("total", html_label((f"d{loss}/d{_element(wrt, terms)} = Σ terms", {"bold": True}),
                                         ctx.num(terms.element(terms.total))), **NODE_STYLES["gradient"])
    if wrt is not None:
        _backward(g, ctx, terms, sid, s, wrt, loss, reads, T)
    _legend(g, s, wrt)
    return g


def _terms(ctx, wrt, scan):
    if not ctx.has_values or ctx.loss is None or wrt is None:
        return None
    try:
        terms = bptt_terms(ctx.loss, wrt, ctx.feeds, ctx.params, scan=scan)
    except GraphnnError as e:
        raise DrawError(f"cannot show the BPTT terms: {e}") from None
    terms.loss_value = float(ctx.values[ctx.loss]) if ctx.loss in ctx.values else float("nan")
    return terms


def _loss_reads(terms, T):
    if terms is None:
        return [T]
    return [k for k in range(1, T + 1) if np.any(terms.direct[k - 1])] or [T]


def _backward(g, ctx, terms, sid, s, wrt, loss, reads, T):
    w = _element(wrt, terms)
    for t in reads:
        label = f"∂{loss}/∂{s}_{t}"
        if terms is not None:
            label += f"\n{ctx.arr(terms.direct[t - 1][0])}"
        g.edge("loss", sid[t], label=label, **{**BACKWARD_EDGE, "constraint": "false"})
    for t in range(T, 1, -1):
        label = f"∂{s}_{t}/∂{s}_{t - 1}"
        if terms is not None:
            J = terms.terms[t - 1].step_jacobian[0]
            label += f"\n{ctx.num(J.reshape(())) if J.size == 1 else '‖J‖ = ' + ctx.num(np.linalg.norm(J))}"
        g.edge(sid[t], sid[t - 1], label=label, **IMPLICIT_EDGE)
    target = f"p_{wrt.name}"
    for k in range(1, T + 1):
        label = f"∂⁺{s}_{k}/∂{w}"
        if terms is not None:
            label += f"\nterm {k} = {ctx.num(terms.element(terms.terms[k - 1].value))}"
        g.edge(sid[k], target, label=label, **EXPLICIT_EDGE)
    if terms is not None:
        g.edge(target, "total", **{**READ_EDGE, "style": "dashed"})


def _legend(g, s, wrt):
    w = wrt.name if wrt is not None else "w"
    g.node("legend", html_label(("gradient paths", {"bold": True}),
                                (f"━━ explicit ∂⁺{s}_k/∂{w}: step k's own use of {w}, {s}_(k−1) held constant",
                                 {"color": EXPLICIT_EDGE["color"]}),
                                (f"╍╍ implicit ∂{s}_t/∂{s}_(t−1): back through the earlier states",
                                 {"color": IMPLICIT_EDGE["color"]})),
           **{**NODE_STYLES["caption"], "shape": "box", "style": "rounded", "color": "#bbbbbb"})


def _element(wrt, terms):
    """'w', or the element the numbers are for: 'W[0,0]'."""
    from ..graph import element_name

    return element_name(wrt, terms.index) if terms is not None and wrt.shape else wrt.name


def _unknown(name, cell):
    raise DrawError(f"the cell uses no parameter {name!r}; it uses "
                    + ", ".join(f.name for f in cell.free if f.name))


def _register():
    from . import register_view
    register_view("unrolled", draw_unrolled,
                  "recurrent nets over T steps; explicit (∂⁺) and implicit BPTT paths styled apart")


_register()
