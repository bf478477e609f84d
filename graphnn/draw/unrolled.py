"""The 'unrolled' view: a recurrent net drawn as its T time steps, with the BPTT paths.

Forward: s_0 → s_1 → … → s_T → loss, the inputs x_t above their steps, the shared weights
reading into every step. Backward, in two styles: *implicit* edges s_t ⇢ s_{t−1}
(∂s_t/∂s_{t−1}, the way back through earlier states; red, dashed) and *explicit* edges
s_k → w (∂⁺s_k/∂w, step k's own use of the weight with s_{k−1} held constant; blue,
bold). With values, states show their numbers, implicit edges the size of the step
Jacobian and explicit edges the path term of step k (they sum to dE/dw).

Long sequences elide their middle: option ``shown_steps=k`` (default 6 when T > 8) draws
s_1 … s_⌈k/2⌉, "⋯", and the last ⌊k/2⌋ steps; the elided steps' terms are summed on one
edge, so the total still reads as Σ of what is drawn. ``wrt`` names the weight.
"""
from __future__ import annotations

import numpy as np

from ..bptt import bptt_terms
from ..errors import GraphnnError
from ..recurrent import scans_in
from .context import DrawError
from .labels import loss_formula
from .style import (BACKWARD_EDGE, DETAIL_PT, FORWARD_EDGE, NODE_STYLES, READ_EDGE, bold, h, html_label,
                    new_digraph, nm, small, value_line)

EXPLICIT_EDGE = {"color": "#1f618d", "fontcolor": "#1f618d", "style": "bold", "penwidth": "2.2"}
IMPLICIT_EDGE = {**BACKWARD_EDGE, "constraint": "false"}
ELIDE_ABOVE = 8      # longer sequences elide their middle steps by default
DEFAULT_SHOWN = 6


def find_scan(graph):
    """The recurrence in ``graph``: an unrolled scan's record, or a loop node's."""
    found = scans_in(graph)
    if found:
        return found[0]
    raise DrawError("this view draws recurrent nets (built with graphnn.scan): try rnn-scalar, rnn or lstm")


def _base(node, fallback) -> str:
    return (node.name or fallback).split("(")[0].removesuffix("_t")


def state_name(cell) -> str:
    """'s' (or the carry's own name, h); several carries are one state s = (h, c)."""
    if len(cell.carry_out) == 1 and cell.carry_out[0].name:
        return _base(cell.carry_out[0], "s")
    return "s"


def _parts(cell, t):
    """'(h₁, c₁)' for a state made of several carries, else None."""
    if len(cell.carry_out) == 1:
        return None
    names = [_base(n, f"carry{k}") for k, n in enumerate(cell.carry_out)]
    return h("(", *[x for k, n in enumerate(names) for x in (", " if k else None, nm(f"{n}_{t}"))], ")")


def shown_steps(T: int, k: int | None) -> list:
    """Steps 1 … T to draw, with None where "⋯" stands for the elided middle."""
    if k is None:
        k = DEFAULT_SHOWN if T > ELIDE_ABOVE else T
    k = max(2, int(k))
    if T <= k:
        return list(range(1, T + 1))
    head, tail = (k + 1) // 2, k // 2
    return list(range(1, head + 1)) + [None] + list(range(T - tail + 1, T + 1))


class _Unrolled:
    def __init__(self, ctx, wrt=None):
        self.ctx = ctx
        scan = find_scan(ctx.graph)
        self.cell, self.T = scan.cell, scan.length
        trainable = [f for f in self.cell.free if f.kind == "parameter" and f.trainable]
        for choice in (ctx.options.get("wrt"), trainable[0] if trainable else None):
            wrt = choice if wrt is None else wrt
        if isinstance(wrt, str):
            found = [f for f in self.cell.free if f.name == wrt]
            wrt = found[0] if found else _unknown(wrt, self.cell)
        self.wrt = wrt
        self.s = state_name(self.cell)
        self.terms = _terms(ctx, wrt, scan)
        self.steps = shown_steps(self.T, ctx.options.get("shown_steps"))
        self.g = new_digraph(f"{ctx.name}_unrolled", rankdir="TB", nodesep="0.5", ranksep="0.9")

    def sid(self, t):
        return "gap" if t is None else f"s{t}"

    def build(self):
        ctx, T = self.ctx, self.T
        elided = [t for t in range(1, T + 1) if t not in self.steps]
        note = f"; steps {elided[0]} … {elided[-1]} elided (⋯)" if elided else ""
        batch = np.shape(self.terms.states[0])[0] if self.terms is not None and np.ndim(self.terms.states[0]) > 1 else 1
        if batch > 1:   # the states drawn are one row of the batch: say which
            note += f"; states of example 1 of {batch}, the loss over all {batch}"
        self.g.attr(label=html_label(f"{ctx.name} unrolled over T = {T} steps{note}"))
        self._inputs()
        self._states()
        self._weights()
        if self.wrt is not None:
            self._backward()
        self._legend()
        return self.g

    def _inputs(self):
        with self.g.subgraph(name="inputs") as row:      # top row: the inputs x_t
            row.attr(rank="same")
            for t in self.steps:
                if t is None:
                    row.node("xgap", "⋯", **NODE_STYLES["ellipsis"], fontsize="22")
                    continue
                names = [_base(x, "x") for x in self.cell.x_in]
                label = h(*[p for k, n in enumerate(names) for p in (", " if k else None, nm(f"{n}_{t}"))]) \
                    if names else f"step {t}"
                row.node(f"x{t}", html_label(label), **NODE_STYLES["input"])
        for t in self.steps:
            self.g.edge("xgap" if t is None else f"x{t}", self.sid(t),
                        **(FORWARD_EDGE if t is not None else {"style": "invis"}))

    def _states(self):
        ctx, s, terms = self.ctx, self.s, self.terms
        with self.g.subgraph(name="states") as row:      # middle row: s_0 → s_1 → … → s_T → loss
            row.attr(rank="same")
            for t in [0] + self.steps:
                if t is None:
                    row.node("gap", html_label(("⋯", {"size": 22})), **NODE_STYLES["ellipsis"])
                    continue
                lines = [bold(nm(f"{s}_{t}")), small(_parts(self.cell, t))]
                if terms is not None:
                    lines += [value_line(v) for v in _vector(ctx, terms.states[t][0])]
                row.node(self.sid(t), html_label(*lines), **NODE_STYLES["constant" if t == 0 else "op"])
            formula = loss_formula(ctx.loss, ctx.output, ctx)
            lines = [bold(nm(ctx.loss_name)), small(h("= ", formula)) if formula is not None else None]
            if terms is not None:
                lines.append(value_line(h("= ", ctx.num(terms.loss_value))))
            # beside s_T when it reads s_T alone; a loss over several steps goes a row below:
            # labelled edges within one rank to several states crash dot ("routesplines")
            (row if self.reads() == [self.T] else self.g).node("loss", html_label(*lines), **NODE_STYLES["loss"])
        chain = [0] + self.steps
        for a, b in zip(chain, chain[1:]):
            self.g.edge(self.sid(a), self.sid(b), **FORWARD_EDGE)
        for t in self.reads():
            self.g.edge(self.sid(t), "loss", **FORWARD_EDGE)

    def reads(self):
        """Shown steps whose state the loss reads (the gap if an elided one is read)."""
        if self.terms is None:
            return [self.T]
        read = [k for k in range(1, self.T + 1) if np.any(self.terms.direct[k - 1])] or [self.T]
        return list(dict.fromkeys(k if k in self.steps else None for k in read))

    def _weights(self):
        ctx, wrt, terms = self.ctx, self.wrt, self.terms
        params = [f for f in self.cell.free if f.kind == "parameter"]
        with self.g.subgraph(name="weights") as row:     # bottom row: the weights every step shares
            row.attr(rank="same")
            if wrt is not None:
                row.node("w", html_label(bold(nm(wrt.name)), small("shared by every step")),
                         **NODE_STYLES["parameter"])
            others = [p for p in params if p is not wrt]
            if others:
                names = h(*[x for k, p in enumerate(others[:8]) for x in (", " if k else None, nm(p.name))],
                          ", …" if len(others) > 8 else None)
                row.node("p_rest", html_label(names, small("also read by every step")), **NODE_STYLES["fixed"])
            if terms is not None and wrt is not None:
                label = html_label(bold(h("d", nm(ctx.loss_name), "/d", nm(self.element()), " = Σ terms")),
                                   ctx.num(terms.element(terms.total)))
                row.node("total", label, **NODE_STYLES["gradient"])

    def element(self) -> str:
        """'w', or the element the numbers are for: 'W[0,0]'."""
        from ..graph import element_name

        terms, wrt = self.terms, self.wrt
        return element_name(wrt, terms.index) if terms is not None and wrt.shape else wrt.name

    def _backward(self):
        ctx, terms, s, loss = self.ctx, self.terms, self.s, self.ctx.loss_name
        for t in self.reads():
            label = [h("∂", nm(loss), "/∂", nm(f"{s}_{t}") if t is not None else "s")]
            if terms is not None and t is not None:
                label.append(ctx.arr(terms.direct[t - 1][0]))
            self.g.edge("loss", self.sid(t), label=html_label(*label), **{**BACKWARD_EDGE, "constraint": "false"})
        chain = [0] + self.steps
        for prev, t in reversed(list(zip(chain[1:-1], chain[2:]))):
            if t is None or prev is None:
                self.g.edge(self.sid(t), self.sid(prev), **IMPLICIT_EDGE)
                continue
            label = [h("∂", nm(f"{s}_{t}"), "/∂", nm(f"{s}_{prev}"))]
            if terms is not None:
                J = terms.terms[t - 1].step_jacobian[0]
                label.append(ctx.num(J.reshape(())) if J.size == 1 else h("‖J‖ = ", ctx.num(np.linalg.norm(J))))
            self.g.edge(self.sid(t), self.sid(prev), label=html_label(*label), **IMPLICIT_EDGE)
        w = nm(self.element())
        for k in self.steps:
            if k is None:
                gap = [t for t in range(1, self.T + 1) if t not in self.steps]
                label = [h("terms ", str(gap[0]), " … ", str(gap[-1]))]
                if terms is not None:
                    label.append(h("Σ = ", ctx.num(sum(terms.element(terms.terms[t - 1].value) for t in gap))))
                self.g.edge("gap", "w", label=html_label(*label), **{**EXPLICIT_EDGE, "style": "dashed"})
                continue
            label = [h("∂⁺", nm(f"{s}_{k}"), "/∂", w)]
            if terms is not None:
                label.append(h(f"term {k} = ", ctx.num(terms.element(terms.terms[k - 1].value))))
            self.g.edge(self.sid(k), "w", label=html_label(*label), **EXPLICIT_EDGE)
        if terms is not None:
            self.g.edge("w", "total", **{**READ_EDGE, "style": "dashed"})

    def _legend(self):
        s, w = self.s, nm(self.wrt.name) if self.wrt is not None else "w"
        self.g.node("legend", html_label(
            bold("gradient paths"),
            (h("━━ explicit ∂⁺", nm(f"{s}_k"), "/∂", w, ": step k's own use of ", w, ", ", nm(f"{s}_k−1"),
               " held constant"), {"color": EXPLICIT_EDGE["color"], "size": DETAIL_PT}),
            (h("╍╍ implicit ∂", nm(f"{s}_t"), "/∂", nm(f"{s}_t−1"), ": back through the earlier states"),
             {"color": IMPLICIT_EDGE["color"], "size": DETAIL_PT})),
            **{**NODE_STYLES["caption"], "shape": "box", "style": "rounded", "color": "#bbbbbb"})


def _vector(ctx, v) -> list:
    """A state's numbers on narrow lines: in full when short, else its range and its mean."""
    v = np.asarray(v).ravel()
    if v.size <= 3:
        return [ctx.arr(v)]
    return [h(ctx.num(v.min()), " … ", ctx.num(v.max())), h("mean ", ctx.num(v.mean()))]


def _terms(ctx, wrt, scan):
    """The BPTT terms (computed once per context: a slide fit draws several layouts)."""
    if not ctx.has_values or ctx.loss is None or wrt is None:
        return None

    def compute():
        try:
            terms = bptt_terms(ctx.loss, wrt, ctx.feeds, ctx.params, scan=scan)
        except GraphnnError as e:
            raise DrawError(f"cannot show the BPTT terms: {e}") from None
        terms.loss_value = float(ctx.values[ctx.loss]) if ctx.loss in ctx.values else float("nan")
        return terms

    return ctx.memo(("bptt", wrt), compute)


def draw_unrolled(ctx, wrt=None):
    """The view function (also callable directly with a DrawContext)."""
    return _Unrolled(ctx, wrt).build()


def _unknown(name, cell):
    raise DrawError(f"the cell uses no parameter {name!r}; it uses "
                    + ", ".join(f.name for f in cell.free if f.name))


def _register():
    from . import register_view
    register_view("unrolled", draw_unrolled,
                  "recurrent nets over T steps; explicit (∂⁺) and implicit BPTT paths styled apart",
                  fits=[[{}], [{"shown_steps": 4}], [{"shown_steps": 2}]])


_register()
