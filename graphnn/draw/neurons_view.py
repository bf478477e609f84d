"""The neurons view: the picture lectures draw. One circle per unit, a bias unit per layer,
an edge per weight named as the model names it (w5) — with its value, and dE/dw5 — and
in each unit its net input, output and δ = dE/dnet.

Layers wider than ``ctx.max_units`` show their first units, a "⋮ n more" group and their
last unit, so a 64-128-10 net stays one readable picture.
"""
from __future__ import annotations

from ..graph import Graph, Node
from ..ops import Count, Transpose
from ..ops.base import broadcast_index
from .layers import dense_chain
from .style import (ELLIPSIS_EDGE, FORWARD_EDGE, NODE_STYLES, NOT_COMPUTED, grad_line,
                    html_label, new_digraph, small)

FIXED_EDGE = {"color": "#777777", "style": "dashed", "fontcolor": "#555555"}
MAX_LABELLED_EDGES = 36


def shown_units(width: int, max_units: int, head: int = 4) -> list:
    """Unit indices to draw, with None where the ellipsis group goes: all units up to
    ``max_units``, else the first ``head``, "⋮", the last."""
    if width <= max_units:
        return list(range(width))
    head = max(1, min(head, max_units - 2))
    return list(range(head)) + [None, width - 1]


def element_label(node: Node, index: tuple, fallback: str) -> str:
    """An element's teaching name; a tied weight (Wᵀ) borrows its source's names."""
    fixed = tuple(i for i, d in zip(index, node.shape) if d is not None)  # drop the batch row
    if node.names is not None:
        flat, shape = node.names
        pos = 0
        for i, d in zip(fixed, shape):
            pos = pos * d + i
        return flat[pos] if shape else flat[0]
    if isinstance(node.op, Transpose) and node.inputs[0].names is not None and len(index) == 2:
        return element_label(node.inputs[0], index[::-1], fallback)
    base = node.name or fallback
    return f"{base}[{','.join(map(str, fixed))}]" if fixed else base


def _units(n):
    return f"{n} unit" + ("" if n == 1 else "s")


class _Neurons:
    def __init__(self, ctx):
        self.ctx = ctx
        self.source, self.layers = dense_chain(ctx.graph, ctx.output, ctx.name)
        self.g = new_digraph(ctx.name, "LR", nodesep="0.3", ranksep="1.6", splines="true", newrank="true")
        self.grads = self._gradients()
        self.columns = [self.source] + [layer.out for layer in self.layers]
        self.shown = [shown_units(c.shape[-1], ctx.max_units) for c in self.columns]

    # -- numbers ------------------------------------------------------------------
    def _gradients(self):
        if not self.ctx.show_grads:
            return {}
        wrt = []
        for layer in self.layers:
            wrt += [layer.weights, layer.bias, layer.linear]
        return self.ctx.gradients(wrt)

    def value_at(self, node, j):
        v = self.ctx.value(node)
        return None if v is None else self.ctx.row(v)[j]

    def grad_text(self, node, index, name):
        """'∂E/∂w5 = 0.0822', or 'not computed yet' — never a made-up 0."""
        d = f"∂{self.ctx.loss_name}/∂{name}"
        if node in self.grads:
            g = self.grads[node]
            g = self.ctx.row(g) if node.shape and node.shape[0] is None else g
            return grad_line(f"{d} = {self.ctx.num(g[index])}")
        if self.ctx.has_values and self.ctx.nondiff_reason is None:
            return grad_line(f"{d}: {NOT_COMPUTED}")
        return None

    # -- drawing ------------------------------------------------------------------
    def build(self):
        self.g.attr(label=self._title())
        for k, column in enumerate(self.columns):
            self._column(k, column)
        for k, layer in enumerate(self.layers, 1):
            self._weights(k, layer)
        self._loss()
        return self.g

    def _title(self):
        ctx, title = self.ctx, f"{self.ctx.name}: neurons view"
        if not ctx.has_values:
            return title
        notes = []
        batch = ctx.row_count(self.source)
        if batch > 1:
            notes.append(f"units show example {ctx.example_index + 1} of {batch}"
                         + (f"; weight gradients are of {ctx.loss_name} over all {batch}"
                            if ctx.show_grads else ""))
        if ctx.show_grads:
            notes.append(f"δ = ∂{ctx.loss_name}/∂net in each unit")
        elif ctx.nondiff_reason is not None:
            notes.append("no gradients: " + ctx.nondiff_reason.split(";")[0])
        else:
            notes.append(f"δ ? = gradient {NOT_COMPUTED} (draw with grads=True / --grads)")
        return title + "\n" + "; ".join(notes)

    def unit_id(self, k, j):
        return f"L{k}u{j}" if j is not None else f"L{k}more"

    def _column(self, k, column):
        width = column.shape[-1]
        if k == 0:
            caption = [("input layer", {"bold": True}), small(f"{column.label()}: {_units(width)}")]
        else:
            layer = self.layers[k - 1]
            role = "output layer" if k == len(self.layers) else f"hidden layer {k}"
            w, b = layer.weights, layer.bias
            caption = [(role, {"bold": True}), small(f"{layer.act_name}, {_units(width)}"),
                       small(f"weights {w.label()} {w.shape[0]}×{w.shape[1]}, bias {b.label()}")]
        # No cluster box: Graphviz does not keep a cluster's rank in order (units came out
        # rotated), while a plain rank=same chain of invisible edges does. The caption is
        # the chain's first node, so it sits on top of its column.
        with self.g.subgraph() as c:
            c.attr(rank="same")
            ids = [f"L{k}caption"]
            c.node(ids[0], html_label(*caption), **NODE_STYLES["caption"])
            for j in self.shown[k]:
                ids.append(self.unit_id(k, j))
                if j is None:
                    hidden = width - len(self.shown[k]) + 1
                    c.node(ids[-1], html_label(("⋮", {"size": 18}), small(f"{hidden} more")),
                           **NODE_STYLES["ellipsis"])
                else:
                    c.node(ids[-1], self._unit_label(k, j), **NODE_STYLES["input_unit" if k == 0 else "unit"])
            if k < len(self.layers):
                ids.append(f"L{k}bias")
                c.node(ids[-1], html_label(("+1", {"bold": True}), small("bias")), **NODE_STYLES["bias_unit"])
            for a, b in zip(ids, ids[1:]):   # in LR, a flat edge a→b puts a above b
                c.edge(a, b, style="invis")

    def _unit_label(self, k, j):
        ctx = self.ctx
        if k == 0:
            name = element_label(self.source, (0, j), self.source.label() or "x")
            lines = [(name, {"bold": True})]
            v = self.value_at(self.source, j)
            if v is not None:
                lines.append(small(ctx.num(v), "#1a5276"))
            return html_label(*lines)
        layer = self.layers[k - 1]
        lin, out = layer.linear, layer.out
        name = element_label(out, (0, j), out.label() or f"h{k}")
        lines = [(name, {"bold": True})]
        if ctx.has_values:
            net = self.value_at(lin, j)
            if layer.activation is not None:
                lines.append(small(f"net {ctx.num(net)}", "#1a5276"))
                lines.append(small(f"out {ctx.num(self.value_at(out, j))}", "#1a5276"))
            else:
                lines.append(small(f"= {ctx.num(net)}", "#1a5276"))
        if lin in self.grads:
            lines.append(grad_line(f"δ {ctx.num(ctx.row(self.grads[lin])[j])}"))
        elif ctx.has_values and ctx.nondiff_reason is None:
            lines.append(grad_line("δ ?"))   # the title explains: not computed yet (a circle
            # sized for the full phrase would dwarf the picture)
        return html_label(*lines)

    def _weights(self, k, layer):
        src, dst = self.shown[k - 1], self.shown[k]
        full = None not in src and None not in dst
        label_edges = self.ctx.options.get("edge_labels", "auto")
        labelled = label_edges is True or (label_edges == "auto" and full
                                           and len(src) * len(dst) <= MAX_LABELLED_EDGES)
        W, b = layer.weights, layer.bias
        for i in src:
            for j in dst:
                tail, head = self.unit_id(k - 1, i), self.unit_id(k, j)
                if i is None or j is None:
                    # one dashed edge stands for the hidden units' fan; fans from every shown
                    # unit would bury the picture in grey
                    if (i is None) == (None in src) and (j is None) == (None in dst):
                        self.g.edge(tail, head, **ELLIPSIS_EDGE)
                    continue
                label = self._edge_label(W, (i, j), "w") if labelled else None
                self.g.edge(tail, head, label=label, **self._edge_style(W))
        for j in dst:
            if j is None:
                continue
            index = broadcast_index((0, j), b.shape, 2)
            label = self._edge_label(b, index, "b") if labelled else None
            self.g.edge(f"L{k - 1}bias", self.unit_id(k, j), label=label, **self._edge_style(b))

    def _edge_style(self, node):
        return FIXED_EDGE if node.kind == "parameter" and not node.trainable else FORWARD_EDGE

    def _edge_label(self, node, index, fallback):
        ctx = self.ctx
        name = element_label(node, index, node.label() or fallback)
        fixed = node.kind == "parameter" and not node.trainable
        head = name
        if ctx.has_values:
            v = ctx.value(node)
            head = f"{name} = {ctx.num(v[index])}" if v is not None else name
        lines = [(head + (" (fixed)" if fixed else ""), {"bold": True})]
        lines.append(self.grad_text(node, index, name))
        return html_label(*lines)

    def _loss(self):
        ctx, end = self.ctx, self.layers[-1].out
        if ctx.loss is None or end not in Graph([ctx.loss]):
            return
        after = [n for n in Graph([ctx.loss]).nodes if n.kind == "op" and n is not end
                 and not isinstance(n.op, Count) and end in Graph([n])]
        lines = [(ctx.loss_name, {"bold": True}), small(" → ".join(n.op.label(n) for n in after))]
        for t in Graph([ctx.loss]).inputs:
            if t is not self.source and ctx.value(t) is not None:
                row = ctx.row(ctx.value(t))
                if t.names is not None and len(t.names[0]) <= 4:
                    lines.append(small(", ".join(f"{n} = {ctx.num(v)}" for n, v in zip(t.names[0], row))))
                else:
                    lines.append(small(f"{t.label()} = {ctx.arr(row)}"))
        if ctx.value(ctx.loss) is not None:
            lines.append(small(f"{ctx.loss_name} = {ctx.num(ctx.value(ctx.loss))}", "#1a5276"))
        self.g.node("loss", html_label(*lines), **NODE_STYLES["loss"])
        k = len(self.layers)
        for j in self.shown[k]:
            self.g.edge(self.unit_id(k, j), "loss", **(ELLIPSIS_EDGE if j is None else FORWARD_EDGE))


def draw_neurons(ctx):
    """The neurons view as a graphviz Digraph (raises DrawError for non-MLP graphs)."""
    return _Neurons(ctx).build()


def _register():
    from . import register_view
    register_view("neurons", draw_neurons,
                  "one circle per unit, bias units, named weights (values, dE/dw, δ) — MLPs")


_register()
