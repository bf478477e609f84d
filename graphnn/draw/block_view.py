"""The 'block' view: scaled dot-product attention as the course draws it, with shapes —

    Q = x W_Q,  K = x W_K,  V = x W_V   (split into h heads)
    S = Q Kᵀ / √d_k,   A = softmax(S),   out = A V   (heads concatenated, projected by W_O)

Read from the graph by op class (`groups.find_attention`), so any softmax(QKᵀ/√d_k)V a
model builds is found; each box names its node and its shape with the axes spelled out
(B × h=2 × T=8 × d_k=8); with values, the numbers of the example (the range and mean).
"""
from __future__ import annotations

from ..ops import MatMul, Softmax
from .context import DrawError
from .groups import find_attention, projection_of
from .style import (FORWARD_EDGE, NODE_STYLES, Html, bold, h, html_label, new_digraph, nm, small, value_line)

MATH_STYLE = {"shape": "box", "style": "rounded,filled", "fillcolor": "#eaf2f8", "color": "#1f618d"}
SOFTMAX_STYLE = {"shape": "box", "style": "rounded,filled,bold", "fillcolor": "#fef9e7", "color": "#b7950b"}


def _axes(shape, names) -> str:
    """'B × h=2 × T=8 × d_k=8': the shape with its axes named (names align from the end)."""
    names = [None] * (len(shape) - len(names)) + list(names)
    parts = []
    for d, n in zip(shape, names):
        parts.append("B" if d is None else (f"{n}={d}" if n else str(d)))
    return " × ".join(parts)


class _Block:
    def __init__(self, ctx):
        self.ctx = ctx
        found = find_attention(ctx.graph)
        if not found:
            raise DrawError(f"the block view draws scaled dot-product attention, softmax(QKᵀ/√d_k)V, and "
                            f"{ctx.name} has none: try the attention model, or --view ops")
        self.att = found[int(ctx.options.get("block", 0)) % len(found)]
        self.count = len(found)
        self.g = new_digraph(f"{ctx.name}_block", "BT", nodesep="0.4", ranksep="0.45")

    def box(self, nid, title, node, axes, style=MATH_STYLE, note=None):
        ctx = self.ctx
        lines = [bold(title), small(h(nm(node.name) + Html(": ") if node.name else None, _axes(node.shape, axes)))]
        if note:
            lines.append(small(note))
        if ctx.has_values and node in ctx.values:
            lines.append(value_line(h("= ", ctx.arr(ctx.values[node]))))
        self.g.node(nid, html_label(*lines), **style)

    def build(self):
        ctx, att = self.ctx, self.att
        q, k, v = att.q, att.k, att.v
        heads = q.ndim == 4
        d_k = q.shape[-1]
        head_axes = ("h", "T", "d_k") if heads else ("T", "d_k")
        self.g.attr(label=html_label(
            h(ctx.name, ": scaled dot-product attention  softmax(Q K", Html("<SUP>T</SUP>"), " / √d",
              Html("<SUB>k</SUB>"), ") V"),
            small(f"d_k = {d_k}" + (f", {q.shape[1]} heads in parallel" if heads else "")
                  + (f" (block 1 of {self.count})" if self.count > 1 else ""))))
        sources = self._projections(head_axes)
        rest = att.nodes[2:]
        a = next(n for n in rest if isinstance(n.op, Softmax))
        scaled = a.inputs[0]
        out = next(n for n in rest if isinstance(n.op, MatMul))
        score_axes = ("h", "T", "T") if heads else ("T", "T")
        self.box("S", h("S = Q K", Html("<SUP>T</SUP>"), " / √", str(d_k)), scaled, score_axes)
        self.g.edge(sources["Q"], "S", **FORWARD_EDGE)
        self.g.edge(sources["K"], "S", label=html_label(small("Kᵀ")), **FORWARD_EDGE)
        self.box("A", "A = softmax(S)", a, score_axes, SOFTMAX_STYLE, note="each row sums to 1")
        self.g.edge("S", "A", **FORWARD_EDGE)
        self.box("out", "A V", out, ("h", "T", "d_v") if heads else ("T", "d_v"))
        self.g.edge("A", "out", **FORWARD_EDGE)
        self.g.edge(sources["V"], "out", **FORWARD_EDGE)
        last, nid = out, "out"
        tail = att.nodes[att.nodes.index(out) + 1:]
        if tail:
            self.box("concat", "concatenate the heads", tail[-1], ("T", "h·d_v"))
            self.g.edge(nid, "concat", **FORWARD_EDGE)
            last, nid = tail[-1], "concat"
        self._output_projection(last, nid)
        return self.g

    def _projections(self, head_axes) -> dict:
        """Boxes Q = x W_Q, K = …, V = … from the input; returns role → box id."""
        att, ids, inputs = self.att, {}, {}
        for role, node in (("Q", att.q), ("K", att.k), ("V", att.v)):
            anchor, _ = projection_of(node)
            if anchor is None:
                self.box(role, role, node, head_axes)
                ids[role] = role
                continue
            x = anchor.inputs[0]
            W = next(p for p in anchor.inputs if p.kind == "parameter")
            if x not in inputs:
                inputs[x] = f"in{len(inputs)}"
                self.box(inputs[x], h(nm(x.name) if x.name else "input"), x, ("T", "d_model"),
                         NODE_STYLES["input"])
            self.box(role, h(role, " = ", nm(x.name or "x"), " ", nm(W.name)), node, head_axes,
                     note=h("weights ", nm(W.name), ": ", _axes(W.shape, ("d_model", "h·d_k"))))
            self.g.edge(inputs[x], role, **FORWARD_EDGE)
            ids[role] = role
        with self.g.subgraph() as row:
            row.attr(rank="same")
            for role in ("Q", "K", "V"):
                row.node(role)
        return ids

    def _output_projection(self, last, nid):
        users = self.ctx.graph.consumers()
        nxt = [c for c, _ in users.get(last, []) if isinstance(c.op, MatMul)]
        if len(nxt) == 1 and any(x.kind == "parameter" for x in nxt[0].inputs):
            W = next(x for x in nxt[0].inputs if x.kind == "parameter")
            self.box("proj", h("output = concat · ", nm(W.name)), nxt[0], ("T", "d_out"), NODE_STYLES["op"])
            self.g.edge(nid, "proj", **FORWARD_EDGE)


def draw_block(ctx):
    """The attention block view as a graphviz Digraph."""
    return _Block(ctx).build()


def _register():
    from . import register_view
    register_view("block", draw_block, "an attention block softmax(QKᵀ/√d_k)V with shapes (and values)",
                  grads=False)


_register()
