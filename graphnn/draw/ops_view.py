"""The ops view: every node of the graph — op boxes, inputs, parameters, constants — with
names and shapes, layers as clusters, and optionally values and gradients on the nodes.

``collapse=True`` draws each layer as one box (op chain, weights, output shape): what keeps
a deep or convolutional net's picture readable.
"""
from __future__ import annotations

from ..graph import Graph, Node
from ..ops import Count, Linear, MatMul, OpTable
from .layers import find_layers
from .style import (CLUSTER_STYLE, FORWARD_EDGE, NODE_STYLES, NOT_COMPUTED, fmt_shape, grad_line,
                    html_label, new_digraph, small)

#: op class -> the names its input edges are labelled with
EDGE_NAMES = OpTable("edge labels", {Linear: ("x", "W", "b"), MatMul: ("a", "b")})


def node_style(ctx, node: Node) -> dict:
    if node is ctx.loss:
        return NODE_STYLES["loss"]
    if node.kind == "parameter":
        return NODE_STYLES["parameter" if node.trainable else "fixed"]
    return NODE_STYLES[node.kind]


def element_names_text(node: Node, limit: int = 8):
    """'w1, w3; w2, w4' for small named parameters (the names lectures use)."""
    if node.names is None or len(node.names[0]) > limit or node.names[0] == (node.name,):
        return None
    flat, shape = node.names
    per_row = shape[-1] if shape else 1
    rows = [flat[i:i + per_row] for i in range(0, len(flat), per_row)]
    return "; ".join(", ".join(r) for r in rows)


def node_label(ctx, node: Node, grads: dict) -> str:
    shape = fmt_shape(node.shape)
    if node.kind == "op":
        head = [(node.op.label(node), {"bold": True})]
        if node.name:
            head.append(node.name)
    else:
        kind = node.kind if node.kind != "parameter" or node.trainable else "fixed parameter"
        head = [(node.name or node.kind, {"bold": True}), small(kind)]
    lines = head + [small(shape)]
    names = element_names_text(node)
    if names:
        lines.append(small(names))
    if ctx.has_values and node in ctx.values:
        lines.append(small("= " + ctx.arr(ctx.values[node]), "#1a5276"))
    if node in grads:
        lines.append(grad_line(f"∂{ctx.loss_name}/∂{node.label()} = {ctx.arr(grads[node])}"))
    elif ctx.has_values and not ctx.show_grads and node.trainable and ctx.nondiff_reason is None:
        lines.append(grad_line(f"∂{ctx.loss_name}/∂{node.label()}: {NOT_COMPUTED}"))
    return html_label(*lines)


def _gradients(ctx) -> dict:
    if not ctx.show_grads:
        return {}
    # parameters and ops; not inputs (targets) nor run-time counts, whose "gradients" only confuse
    wrt = [n for n in Graph([ctx.loss]).nodes
           if n.kind == "parameter" or (n.kind == "op" and not isinstance(n.op, Count))]
    return ctx.gradients(wrt)


def draw_ops(ctx, graph_name: str | None = None):
    """The ops view as a graphviz Digraph."""
    g = new_digraph(graph_name or ctx.name, ctx.options.get("rankdir", "TB"))
    g.attr(label=f"{ctx.name}: ops view" + _value_note(ctx))
    add_forward(ctx, g, _gradients(ctx))
    return g


def _value_note(ctx) -> str:
    if not ctx.has_values:
        return ""
    return " (values of the example" + (" and gradients)" if ctx.show_grads else ")")


def add_forward(ctx, g, grads: dict, prefix: str = ""):
    """Add the forward graph's nodes (clustered by layer) and edges to ``g``; returns node→id."""
    graph = ctx.graph
    layers = find_layers(graph, end=ctx.output)
    in_layer = {m: layer for layer in layers for m in layer.members}
    loss_part = _loss_part(ctx, in_layer)
    ids = {}
    if ctx.collapse:
        for layer in layers:
            lid = f"{prefix}layer{layer.number}"
            for m in layer.members:
                ids[m] = lid
            g.node(lid, _collapsed_label(ctx, layer), **NODE_STYLES["op"])
    for n in graph.nodes:
        ids.setdefault(n, prefix + ctx.node_id(n))
    placed = set()
    for layer in ([] if ctx.collapse else layers):
        with g.subgraph(name=f"cluster_{prefix}layer{layer.number}") as c:
            c.attr(label=layer.title(), **CLUSTER_STYLE)
            for m in layer.members:
                c.node(ids[m], node_label(ctx, m, grads), **node_style(ctx, m))
                placed.add(m)
    if loss_part:
        with g.subgraph(name=f"cluster_{prefix}loss") as c:
            c.attr(label="loss", **CLUSTER_STYLE)
            for m in loss_part:
                c.node(ids[m], node_label(ctx, m, grads), **node_style(ctx, m))
                placed.add(m)
    for n in graph.nodes:
        if n not in placed and not (ctx.collapse and n in in_layer):
            g.node(ids[n], node_label(ctx, n, grads), **node_style(ctx, n))
    seen = set()
    for n in graph.nodes:
        for pos, x in enumerate(n.inputs):
            edge = (ids[x], ids[n])
            if ids[x] == ids[n] or (ctx.collapse and edge in seen):
                continue
            seen.add(edge)
            names = EDGE_NAMES.get(n.op)
            label = names[pos] if names and not ctx.collapse else None
            g.edge(*edge, label=label, **FORWARD_EDGE)
    return ids


def _loss_part(ctx, in_layer) -> list:
    """Nodes after the network's output up to the loss, with the targets they read."""
    if ctx.loss is None or ctx.output is None or ctx.loss not in ctx.graph:
        return []
    net = set(Graph([ctx.output]).nodes)
    return [n for n in Graph([ctx.loss]).nodes if n not in net and n not in in_layer]


def _collapsed_label(ctx, layer) -> str:
    params = [m for m in layer.members if m.kind == "parameter"]
    weights = ", ".join(f"{p.name} {fmt_shape(p.shape)}" + ("" if p.trainable else " fixed") for p in params)
    lines = [(layer.title(), {"bold": True}), small(weights), small("→ " + fmt_shape(layer.last.shape))]
    if ctx.has_values and layer.last in ctx.values:
        lines.append(small("= " + ctx.arr(ctx.values[layer.last]), "#1a5276"))
    return html_label(*lines)


def _register():
    from . import register_view
    register_view("ops", draw_ops, "op and variable nodes with names and shapes, layers as clusters")


_register()
