"""The 'cell' view: an LSTM cell as Goodfellow et al.'s block diagram (Deep Learning, fig. 10.16).

Read from the recurrence's cell graph, matched by structure: the state's update
c_t = f ⊙ c_{t−1} + i ⊙ g (the linear self-loop weighted by the forget gate f, the input
unit g let in by the input gate i) and the output h_t = o ⊙ tanh(c_t) (shut off by the
output gate o). The gates are the sigmoid units; the input unit has any squashing
nonlinearity. Drawn bottom-up like the book: inputs x_t and h_{t−1} at the bottom, the four
units, the state with its self-loop (the black square: a delay of one step), the output.

With values, each box shows its vector at time step ``step`` (default the last, T) for
the example row: the mean and the range over the units.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cell import broadcast_carry
from ..evaluate import evaluate
from ..graph import Graph, Node
from ..ops import Linear, Map, MatMul
from ..ops.elementwise import V, sigmoid
from .context import DrawError
from .style import (FORWARD_EDGE, NODE_STYLES, Html, bold, h, html_label, new_digraph, nm, small, value_line)
from .unrolled import find_scan

GATE_STYLE = {"shape": "box", "style": "rounded,filled", "fillcolor": "#fef9e7", "color": "#b7950b"}
UNIT_STYLE = {"shape": "box", "style": "rounded,filled", "fillcolor": "#eaf2f8", "color": "#1f618d"}
STATE_STYLE = {"shape": "circle", "style": "filled,bold", "fillcolor": "#fdebd0", "color": "#d35400"}
PRODUCT_STYLE = {"shape": "circle", "style": "filled", "fillcolor": "#ffffff", "color": "#333333",
                 "width": "0.45", "fixedsize": "true", "fontsize": "20"}


@dataclass
class LSTMParts:
    """The roles of an LSTM cell's nodes (all in the cell graph)."""

    state: int            # which carry is the cell state c
    g: Node               # input unit
    i: Node               # input gate
    f: Node               # forget gate
    o: Node               # output gate
    c: Node               # new state
    h: Node               # new output


def _is_sigmoid(node) -> bool:
    expr = sigmoid.expr.subs(sigmoid.expr.free_symbols.pop(), V[0])
    return isinstance(node.op, Map) and len(node.inputs) == 1 and node.attrs["expr"] == expr


def lstm_parts(cell) -> LSTMParts:
    """Find c_t = f·c_{t−1} + i·g and h_t = o·tanh(c_t) in ``cell``; DrawError if it is no LSTM."""
    for k, (c_prev, c) in enumerate(zip(cell.carry_in, cell.carry_out)):
        if not isinstance(c.op, Map) or len(c.inputs) != 2:
            continue
        keep = [m for m in c.inputs if isinstance(m.op, Map) and c_prev in m.inputs and len(m.inputs) == 2]
        if len(keep) != 1:
            continue
        f = next(x for x in keep[0].inputs if x is not c_prev)
        new = next(m for m in c.inputs if m is not keep[0])
        if not (isinstance(new.op, Map) and len(new.inputs) == 2):
            continue
        i, g = sorted(new.inputs, key=lambda x: not _is_sigmoid(x))
        for j, out in enumerate(cell.carry_out):
            if j != k and isinstance(out.op, Map) and len(out.inputs) == 2:
                o = [x for x in out.inputs if c not in Graph([x])]
                if len(o) == 1:
                    return LSTMParts(k, g, i, f, o[0], c, out)
    raise DrawError("the cell view draws LSTM cells (c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t)); "
                    "this recurrence's cell has no such state: draw it with --view unrolled or ops")


class _Cell:
    def __init__(self, ctx):
        self.ctx = ctx
        self.scan = find_scan(ctx.graph)
        self.cell = self.scan.cell
        self.parts = lstm_parts(self.cell)
        step = ctx.options.get("step")     # None: the last step; 0 is out of range, not "unset"
        self.step = int(self.scan.length if step is None else step)
        if not 1 <= self.step <= self.scan.length:
            raise DrawError(f"step {self.step} is out of range: the sequence has steps 1 … {self.scan.length}")
        self.values = ctx.memo(("cell", self.step), self._step_values) if ctx.has_values else {}

    # -- names ------------------------------------------------------------------------
    def base(self, node) -> str:
        return (node.name or "").split("(")[0].removesuffix("_t") or node.op.label(node)

    def name(self, node, lag: int = 0) -> Html:
        """x_t, h_{t−1}, i_t, … (``lag``: the previous step)."""
        cell = self.cell
        if node in cell.carry_in:
            return nm(f"{self.base(cell.carry_out[cell.carry_in.index(node)])}_t−1")
        suffix = "t−1" if lag else "t"
        return nm(f"{self.base(node)}_{suffix}")

    def preactivation(self, unit) -> Html:
        """x_t U_i + h_{t−1} W_i + b_i, read off the unit's linear and matmul nodes."""
        parts = []
        for n in Graph([unit]).nodes:
            if isinstance(n.op, Linear):
                x, W, b = n.inputs
                parts += [h(self.name(x), nm(W.name)), nm(b.name)]
            elif isinstance(n.op, MatMul):
                a, W = n.inputs
                parts.append(h(self.name(a), nm(W.name)))
        return h(*[x for k, p in enumerate(parts) for x in (" + " if k else None, p)])

    # -- values -----------------------------------------------------------------------
    def _step_values(self) -> dict:
        """Every cell node's value at ``self.step`` for the drawn examples (the cell iterated)."""
        ctx, scan, cell = self.ctx, self.scan, self.cell
        values = ctx.values
        xs = [values[x] for x in scan.xs]
        free = [values[f] if f in values else np.asarray(f.value) for f in cell.free]
        B = xs[0].shape[0] if xs else 1
        carries = [broadcast_carry(values[v], s, B) for v, s in zip(scan.inits, cell.carry_shapes)]
        dtype = np.result_type(*carries, *xs)
        for t in range(self.step - 1):
            carries, _ = cell.step(carries, [x[:, t] for x in xs], free, dtype)
        feeds = dict(zip(cell.carry_in, carries))
        feeds.update(zip(cell.x_in, [x[:, self.step - 1] for x in xs]))
        params = {}
        for f, v in zip(cell.free, free):
            (params if f.kind == "parameter" else feeds)[f] = v
        _, vals = evaluate(list(cell.carry_out), feeds, params, return_values=True)
        return vals

    def stats(self, node) -> Html | None:
        if node not in self.values:
            return None
        v = self.ctx.row(self.values[node]).ravel()
        if v.size == 1:
            return h("= ", self.ctx.num(v[0]))
        return h("mean ", self.ctx.num(v.mean()), "  (", self.ctx.num(v.min()), " … ", self.ctx.num(v.max()), ")")

    # -- the picture --------------------------------------------------------------------
    def box(self, g, nid, title, formula, node, style):
        lines = [bold(title), small(formula)]
        stat = self.stats(node)
        if stat is not None:
            lines.append(value_line(stat))
        g.node(nid, html_label(*lines), **style)

    def build(self):
        ctx, p, cell = self.ctx, self.parts, self.cell
        g = new_digraph(f"{ctx.name}_cell", "BT", nodesep="0.35", ranksep="0.5", newrank="true")
        hidden = p.c.shape[-1] if p.c.shape else 1
        note = f"; values at step t = {self.step} of {self.scan.length}" if self.values else ""
        g.attr(label=html_label(h(ctx.name, f": LSTM cell ({hidden} units; ⊙ elementwise){note}"),
                                small("after Goodfellow, Bengio & Courville, Deep Learning, fig. 10.16")))
        c_prev = cell.carry_in[p.state]
        h_prev = next(x for k, x in enumerate(cell.carry_in) if k != p.state)
        with g.subgraph() as row:
            row.attr(rank="same")
            for x in cell.x_in:
                row.node("x", html_label(bold(self.name(x)), small("input")), **NODE_STYLES["input"])
            row.node("hprev", html_label(bold(self.name(h_prev)), small("previous output")), **NODE_STYLES["input"])
        units = [("g", p.g, "input unit", UNIT_STYLE), ("i", p.i, "input gate", GATE_STYLE),
                 ("f", p.f, "forget gate", GATE_STYLE), ("o", p.o, "output gate", GATE_STYLE)]
        with g.subgraph() as row:
            row.attr(rank="same")
            for nid, node, role, style in units:
                act = "σ" if _is_sigmoid(node) else node.op.label(node)
                self.box(row, nid, h(role, " ", self.name(node)), h(act, "(", self.preactivation(node), ")"),
                         node, style)
            for (a, *_), (b, *_) in zip(units, units[1:]):   # left to right as in the book
                row.edge(a, b, style="invis")
        for nid, *_ in units:
            g.edge("x", nid, **FORWARD_EDGE)
            g.edge("hprev", nid, **FORWARD_EDGE)
        g.node("gin", "×", **PRODUCT_STYLE)
        g.node("fkeep", "×", **PRODUCT_STYLE)
        with g.subgraph() as row:    # the delay square on the state's right, on its self-loop
            row.attr(rank="same")
            self.box(row, "state", h("state ", self.name(p.c)),
                     h(self.name(p.f), " ⊙ ", self.name(c_prev), " + ", self.name(p.i), " ⊙ ", self.name(p.g)),
                     p.c, {**STATE_STYLE, "shape": "box", "style": "rounded,filled,bold"})
            row.node("delay", "", shape="square", style="filled", fillcolor="black", width="0.18",
                     fixedsize="true")
        g.node("squash", html_label("tanh"), **UNIT_STYLE)
        g.node("gout", "×", **PRODUCT_STYLE)
        self.box(g, "out", h("output ", self.name(p.h)), h(self.name(p.o), " ⊙ tanh(", self.name(p.c), ")"), p.h,
                 NODE_STYLES["op"])
        g.edge("g", "gin", **FORWARD_EDGE)
        g.edge("i", "gin", **FORWARD_EDGE, style="dashed")
        g.edge("gin", "state", label=html_label(small(h(self.name(p.i), " ⊙ ", self.name(p.g)))), **FORWARD_EDGE)
        # the self-loop: c_t → (delay) → × f → back into the state
        g.edge("state", "delay", **FORWARD_EDGE)
        g.edge("delay", "fkeep", label=html_label(small(self.name(c_prev))), **FORWARD_EDGE, constraint="false")
        g.edge("f", "fkeep", **FORWARD_EDGE, style="dashed")
        g.edge("fkeep", "state", label=html_label(small(h("self-loop ", self.name(p.f), " ⊙ ", self.name(c_prev)))),
               **FORWARD_EDGE)
        g.edge("state", "squash", **FORWARD_EDGE)
        g.edge("squash", "gout", **FORWARD_EDGE)
        g.edge("o", "gout", **FORWARD_EDGE, style="dashed")
        g.edge("gout", "out", **FORWARD_EDGE)
        g.node("legend", html_label(small("dashed: a gate's output multiplies (⊙) the signal"),
                                    small("■ delay of one time step")),
               **{**NODE_STYLES["caption"], "shape": "box", "style": "rounded", "color": "#bbbbbb"})
        return g


def draw_cell(ctx):
    """The LSTM cell view as a graphviz Digraph."""
    return _Cell(ctx).build()


def _register():
    from . import register_view
    register_view("cell", draw_cell, "an LSTM cell as Goodfellow's block diagram: input unit, input/forget/"
                  "output gates, the state's self-loop (values at one time step)", grads=False)


_register()
