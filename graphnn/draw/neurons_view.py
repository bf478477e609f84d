"""The neurons view: the picture lectures draw. One circle per unit, a bias unit per layer,
an edge per weight named as the model names it (w₅) — with its value, and ∂E/∂w₅ — and
in each unit its output, net input and δ = ∂E/∂net.

An edge's gradient is that edge's own share: a weight used twice (a tied autoencoder's W
and Wᵀ) shows each use's term from the autodiff record, and a bias shared by a layer's
units shows δ_j on the edge into unit j (the shares sum to the bias's gradient, which the
layer caption gives). Layers wider than ``ctx.max_units`` show their first units, a
"⋮ n more" group and their last unit, so a 64-128-10 net stays one readable picture.
"""
from __future__ import annotations

import numpy as np

from ..graph import Graph, Node
from ..ops import Count, Transpose
from ..ops.base import broadcast_index
from .labels import loss_formula, name_html
from .layers import dense_chain
from .style import (ELLIPSIS_EDGE, FORWARD_EDGE, NODE_STYLES, Html, bold, d_of, grad_line, h, html_label,
                    new_digraph, nm, small, value_line)

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
    # counted from 1, as the derivations and the course write w_ij (never Python's 0)
    return f"{base}[{','.join(str(i + 1) for i in fixed)}]" if fixed else base


#: DOT ids of the picture's parts (stable: the lecture page addresses them in the SVG)
LOSS_ID = "loss"


def unit_id(k: int, j) -> str:
    """Unit j of column k (0: the inputs); j None: the column's "⋮ n more" group."""
    return f"L{k}u{j}" if j is not None else f"L{k}more"


def bias_id(k: int) -> str:
    """The +1 bias unit of column k (it feeds column k + 1)."""
    return f"L{k}bias"


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

    def delta(self, layer, j):
        """δ_j = ∂E/∂net_j of the example row the units show."""
        return self.ctx.row(self.grads[layer.linear])[j]

    # -- drawing ------------------------------------------------------------------
    def build(self):
        self.g.attr(label=html_label(*self._title()))
        for k, column in enumerate(self.columns):
            self._column(k, column)
        for k, layer in enumerate(self.layers, 1):
            self._weights(k, layer)
        self._loss()
        return self.g

    def _title(self):
        ctx = self.ctx
        title = [h(ctx.name, ": neurons view")]
        if not ctx.has_values:
            return title
        batch = ctx.row_count(self.source)
        notes = []
        if batch > 1:
            notes.append(f"units show example {ctx.example_index + 1} of {batch}"
                         # δ too: the unit's row of ∂L/∂net for the batch's L, not the example's own L
                         + (f"; weight gradients and δ are of {ctx.loss_name} over all {batch}"
                            if ctx.show_grads else ""))
        if ctx.training_note:
            notes.append(ctx.training_note)
        if ctx.show_grads:
            notes.append(h("δ = ", d_of(ctx.loss_name, "net"), " in each unit"))
        elif ctx.nondiff_reason is not None:
            notes.append("no gradients: " + ctx.nondiff_reason.split(";")[0])
        return title + [small(h(*[x for k, n in enumerate(notes) for x in ("; " if k else None, n)]))] \
            if notes else title

    def unit_id(self, k, j):
        return unit_id(k, j)

    def _caption(self, k, column):
        width = column.shape[-1]
        if k == 0:
            return [bold("input layer"), small(h(name_html(column, self.ctx), f": {_units(width)}"))]
        layer = self.layers[k - 1]
        role = "output layer" if k == len(self.layers) else f"hidden layer {k}"
        w, b = layer.weights, layer.bias
        lines = [bold(role), small(f"{layer.act_name}, {_units(width)}"),
                 small(h("weights ", name_html(w), f" {w.shape[0]}×{w.shape[1]}, bias ", name_html(b)))]
        if self.grads and _shared(b, width):
            lines.append(small(h(d_of(self.ctx.loss_name, b.label()), " = ",
                                 self.ctx.arr(self.grads[b]), " (sum of its edges)"), "#c0392b"))
        return lines

    def _column(self, k, column):
        width = column.shape[-1]
        # No cluster box: Graphviz does not keep a cluster's rank in order (units came out
        # rotated), while a plain rank=same chain of invisible edges does. The caption is
        # the chain's first node, so it sits on top of its column.
        with self.g.subgraph() as c:
            c.attr(rank="same")
            ids = [f"L{k}caption"]
            c.node(ids[0], html_label(*self._caption(k, column)), **NODE_STYLES["caption"])
            for j in self.shown[k]:
                ids.append(self.unit_id(k, j))
                if j is None:
                    hidden = width - len(self.shown[k]) + 1
                    c.node(ids[-1], html_label(("⋮", {"size": 22}), small(f"{hidden} more")),
                           **NODE_STYLES["ellipsis"])
                else:
                    style = dict(NODE_STYLES["input_unit" if k == 0 else "unit"])
                    if self.ctx.has_values:   # "out_h1 = 0.593" in a circle would dwarf the picture
                        style["shape"] = "ellipse"
                    c.node(ids[-1], self._unit_label(k, j), **style)
            if k < len(self.layers):
                ids.append(bias_id(k))
                c.node(ids[-1], html_label(bold("+1"), small("bias")), **NODE_STYLES["bias_unit"])
            for a, b in zip(ids, ids[1:]):   # in LR, a flat edge a→b puts a above b
                c.edge(a, b, style="invis")

    def _unit_label(self, k, j):
        """The unit's name and output (out_h1 = 0.593), its net input and δ below."""
        ctx = self.ctx
        if k == 0:
            name = element_label(self.source, (0, j), self.source.label() or "x")
            v = self.value_at(self.source, j)
            return html_label(bold(h(nm(name), " = ", ctx.num(v)) if v is not None else nm(name)))
        layer = self.layers[k - 1]
        lin, out = layer.linear, layer.out
        name = element_label(out, (0, j), ctx.node_name(out) or f"h{k}")   # derive's out⁽ᵏ⁾, never "sigmoid"
        if not ctx.has_values:
            return html_label(bold(nm(name)))
        lines = [bold(h(nm(name), " = ", ctx.num(self.value_at(out, j))))]
        if layer.activation is not None:
            net = element_label(lin, (0, j), "net") if lin.names is not None else "net"
            lines.append(value_line(h(nm(net), " = ", ctx.num(self.value_at(lin, j)))))
        if lin in self.grads:
            lines.append(grad_line(h("δ = ", ctx.num(self.delta(layer, j)))))
        return html_label(*lines)

    def _weights(self, k, layer):
        src, dst = self.shown[k - 1], self.shown[k]
        full = None not in src and None not in dst
        label_edges = self.ctx.options.get("edge_labels", "auto")
        labelled = label_edges is True or (label_edges == "auto" and full
                                           and len(src) * len(dst) <= MAX_LABELLED_EDGES)
        W, b = layer.weights, layer.bias
        fan_in = len(src) + 1
        arrows = {} if fan_in <= 4 else {"arrowsize": "0.6"}
        for i in src:
            for j in dst:
                tail, head = self.unit_id(k - 1, i), self.unit_id(k, j)
                if i is None or j is None:
                    # one dashed edge stands for the hidden units' fan; fans from every shown
                    # unit would bury the picture in grey
                    if (i is None) == (None in src) and (j is None) == (None in dst):
                        self.g.edge(tail, head, **ELLIPSIS_EDGE, **arrows)
                    continue
                label = self._weight_label(layer, (i, j)) if labelled else None
                self.g.edge(tail, head, label=label, **self._edge_style(W), **arrows)
        for j in dst:
            if j is None:
                continue
            label = self._bias_label(layer, j) if labelled else None
            self.g.edge(bias_id(k - 1), self.unit_id(k, j), label=label, **self._edge_style(b), **arrows)

    def _edge_style(self, node):
        return FIXED_EDGE if node.kind == "parameter" and not node.trainable else FORWARD_EDGE

    def _head(self, node, index, fallback):
        """'w₅ = 0.4' (and '(fixed)' for a parameter training leaves alone)."""
        name = element_label(node, index, node.label() or fallback)
        v = self.ctx.value(node) if self.ctx.has_values else None
        head = h(nm(name), " = ", self.ctx.num(v[index])) if v is not None else nm(name)
        fixed = node.kind == "parameter" and not node.trainable
        return name, bold(h(head, " (fixed)" if fixed else None))

    def _weight_label(self, layer, index):
        W = layer.weights
        name, head = self._head(W, index, "w")
        if W not in self.grads:
            return html_label(head)
        share = self.ctx.contributions(W).get((layer.linear, 1), self.grads[W])
        return html_label(head, grad_line(h(d_of(self.ctx.loss_name, name), " = ", self.ctx.num(share[index]))))

    def _bias_label(self, layer, j):
        b = layer.bias
        index = broadcast_index((0, j), b.shape, 2)
        name, head = self._head(b, index, "b")
        if b not in self.grads:
            return html_label(head)
        if not _shared(b, layer.width):
            return html_label(head, grad_line(h(d_of(self.ctx.loss_name, name), " = ",
                                                self.ctx.num(self.grads[b][index]))))
        # a shared bias: this edge's share is Σ over the batch of δ_j (∂net_j/∂b = 1)
        share = float(self.grads[layer.linear][..., j].sum())
        net = element_label(layer.linear, (0, j), "net") if layer.linear.names is not None else None
        via = h(" via ", nm(net)) if net else None
        return html_label(head, grad_line(h(d_of(self.ctx.loss_name, name), via, " = ", self.ctx.num(share))))

    def _loss(self):
        ctx, end = self.ctx, self.layers[-1].out
        if ctx.loss is None or end not in Graph([ctx.loss]):
            return
        formula = loss_formula(ctx.loss, ctx.output, ctx)
        if formula is None:
            after = [n for n in Graph([ctx.loss]).nodes if n.kind == "op" and n is not end
                     and not isinstance(n.op, Count) and end in Graph([n])]
            formula = Html(" → ".join(n.op.label(n) for n in after))
        lines = [bold(h(nm(ctx.loss_name), " = ", formula))]
        for t in Graph([ctx.loss]).inputs:
            if t is not self.source and ctx.value(t) is not None:
                row = ctx.row(ctx.value(t))
                if t.names is not None and len(t.names[0]) <= 4:
                    lines.append(small(h(*[x for k, (n, v) in enumerate(zip(t.names[0], row))
                                           for x in (", " if k else None, nm(n), " = ", ctx.num(v))])))
                elif row.ndim == 1 and row.size > 1 and set(np.unique(row)) <= {0.0, 1.0} and row.sum() == 1:
                    # one-hot needs several classes: a single output's target 1.0 is just t = 1
                    lines.append(small(h(name_html(t, ctx), f" = one-hot, class {int(np.argmax(row))}")))
                else:
                    lines.append(small(h(name_html(t, ctx), " = ", ctx.arr(row))))
        if ctx.value(ctx.loss) is not None:
            batch = ctx.row_count(self.source)
            if batch > 1:   # the example the units show, and the batch the gradients are of
                lines.append(value_line(h(nm(ctx.loss_name), " = ", ctx.num(ctx.example_value(ctx.loss)),
                                          f" (example {ctx.example_index + 1}; ", ctx.num(ctx.value(ctx.loss)),
                                          f" over all {batch})")))
            else:
                lines.append(value_line(h(nm(ctx.loss_name), " = ", ctx.num(ctx.value(ctx.loss)))))
        self.g.node(LOSS_ID, html_label(*lines), **NODE_STYLES["loss"])
        k = len(self.layers)
        for j in self.shown[k]:
            self.g.edge(self.unit_id(k, j), LOSS_ID, **(ELLIPSIS_EDGE if j is None else FORWARD_EDGE))


def _shared(bias, width) -> bool:
    """A bias whose one element feeds several units (Mazur's b₁ for both hidden units)."""
    return width > 1 and all(d == 1 for d in bias.shape)


def draw_neurons(ctx):
    """The neurons view as a graphviz Digraph (raises DrawError for non-MLP graphs)."""
    return _Neurons(ctx).build()


def _register():
    from . import register_view
    register_view("neurons", draw_neurons,
                  "one circle per unit, bias units, named weights (values, dE/dw, δ) — MLPs",
                  fits=[[{}], [{"max_units": 7}], [{"max_units": 5}], [{"max_units": 5, "edge_labels": False}]],
                  example=True)


_register()
