"""The ops view: every node of the graph — op boxes, inputs, parameters, constants — with
names and shapes, grouped the way the model is built (layers, time steps, attention
blocks, the loss; see `groups`), and optionally values and gradients on the nodes.

``collapse=True`` draws each group as one box (op chain, weights, output shape): what keeps
a deep or convolutional net's picture readable; with ``modules=True`` too, one box per module
(a Transformer's decoder block: see `modules`). Option ``merge_params=True`` draws a
group's many parameters (an LSTM's twelve) as one box; ``rankdir='LR'`` lays it out left
to right.
"""
from __future__ import annotations

from ..graph import Graph, Node
from ..ops import FIRST_ROW, Count, Linear, MatMul, OpTable
from .groups import find_groups
from .labels import name_html, op_label
from .modules import groups_of
from .style import (CLUSTER_STYLE, FORWARD_EDGE, NODE_STYLES, Html, bold, d_of, fmt_shape, grad_line, h,
                    html_label, new_digraph, nm, small, value_line)

#: op class -> the names its input edges are labelled with
EDGE_NAMES = OpTable("edge labels", {Linear: ("x", "W", "b"), MatMul: ("a", "b")})
MERGE_AT = 4   # merge_params: groups with this many parameters draw them as one box
#: inputs left out of the picture: only data-parallel training feeds them (a shard's first
#: row for the noise hash, 0 in every run a lecture shows)
NOT_DRAWN = frozenset([FIRST_ROW])


def node_style(ctx, node: Node) -> dict:
    if node is ctx.loss:
        return NODE_STYLES["loss"]
    if node.kind == "parameter":
        return NODE_STYLES["parameter" if node.trainable else "fixed"]
    if isinstance(node.op, Count):
        return NODE_STYLES["caption"]
    return NODE_STYLES[node.kind]


def element_names_text(node: Node, limit: int = 8):
    """'w₁, w₃; w₂, w₄' for small named parameters (the names lectures use), as HTML."""
    if node.names is None or len(node.names[0]) > limit or node.names[0] == (node.name,):
        return None
    flat, shape = node.names
    per_row = shape[-1] if shape else 1
    rows = [flat[i:i + per_row] for i in range(0, len(flat), per_row)]
    return Html("; ".join(", ".join(nm(n) for n in r) for r in rows))


def node_label(ctx, node: Node, grads: dict) -> str:
    name = ctx.node_name(node)     # the derivations' name where the user gave none (E_o, net⁽¹⁾)
    if node.kind == "op":    # a name that only repeats the op's label (a batch count's n) is said once
        head = [bold(op_label(node)), nm(name) if name and name != node.op.label(node) else None]
    else:
        kind = node.kind if node.kind != "parameter" or node.trainable else "fixed parameter"
        # compact (a slide): the colour and border already say input/parameter/fixed
        head = [bold(nm(node.name) if node.name else node.kind), None if ctx.options.get("compact") else small(kind)]
    lines = head + [small(fmt_shape(node.shape))]
    names = element_names_text(node)
    if names:
        lines.append(small(names))
    if ctx.has_values and node in ctx.values:
        lines.append(value_line(h("= ", ctx.arr(ctx.values[node]))))
    if node in grads:
        of = nm(name) if name else Html("·")     # an unnamed op: "∂E/∂·", not "∂E/∂×"
        lines.append(grad_line(h(d_of(ctx.loss_name, of), " = ", ctx.arr(grads[node]))))
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
    g = new_digraph(graph_name or ctx.name, ctx.options.get("rankdir", "TB"), newrank="true", ranksep="0.3")
    g.attr(label=html_label(h(ctx.name, ": ops view", _value_note(ctx))))
    add_forward(ctx, g, _gradients(ctx))
    return g


def _value_note(ctx) -> str:
    if not ctx.has_values:
        return ""
    step = f"; {ctx.training_note}" if ctx.training_note else ""
    return " (values of the example" + (" and gradients" if ctx.show_grads else "") + step + ")"


def add_forward(ctx, g, grads: dict, prefix: str = ""):
    """Add the forward graph's nodes (clustered by group) and edges to ``g``; returns node→id."""
    graph = ctx.graph
    groups = groups_of(ctx, find_groups(graph, ctx.output, ctx.loss))
    boxed = _boxed(ctx, groups)
    ids = {}
    for group in groups:
        if group.key in boxed:
            gid = f"{prefix}{group.key}"
            ids.update((m, gid) for m in group.members if m not in NOT_DRAWN)
            g.node(gid, _collapsed_label(ctx, group), **NODE_STYLES["loss" if group.kind == "loss" else "op"])
    merged = _merge_params(groups, boxed, ids, prefix) if ctx.options.get("merge_params") else {}
    for n in graph.nodes:
        if n not in NOT_DRAWN:   # no id: no node, no edge and no backward "reads" line to it
            ids.setdefault(n, prefix + ctx.node_id(n))
    placed = set(merged)
    for group in groups:
        if group.key in boxed:
            placed.update(group.members)
            continue
        with g.subgraph(name=f"cluster_{prefix}{group.key}") as c:
            c.attr(label=html_label(group.title), **CLUSTER_STYLE)
            for m in group.members:
                if m in NOT_DRAWN:
                    continue
                if m in merged:
                    c.node(ids[m], merged[m], **NODE_STYLES["parameter"])
                else:
                    c.node(ids[m], node_label(ctx, m, grads), **node_style(ctx, m))
                placed.add(m)
    for n in graph.nodes:
        if n not in placed and n not in NOT_DRAWN:
            g.node(ids[n], node_label(ctx, n, grads), **node_style(ctx, n))
    _edges(ctx, g, ids, named=not boxed and not merged)
    return ids


def _boxed(ctx, groups) -> set:
    """Keys of the groups drawn as one box: all but the loss with ``collapse``; with option
    ``expand_steps=k``, every time step but the first ⌈k/2⌉ and the last ⌊k/2⌋."""
    if ctx.collapse:
        return {grp.key for grp in groups}
    k = ctx.options.get("expand_steps")
    steps = [grp.key for grp in groups if grp.kind == "step"]
    if k is None or len(steps) <= k:
        return set()
    return set(steps[(k + 1) // 2:len(steps) - k // 2])


def _edges(ctx, g, ids, named: bool):
    """One edge per pair of boxes; a Linear's inputs labelled x, W, b (``named``)."""
    seen = set()
    for n in ctx.graph.nodes:
        for pos, x in enumerate(n.inputs):
            if x in NOT_DRAWN:
                continue
            edge = (ids[x], ids[n])
            if ids[x] == ids[n] or edge in seen:
                continue
            seen.add(edge)
            names = EDGE_NAMES.get(n.op) if named else None
            g.edge(*edge, label=names[pos] if names else None, **FORWARD_EDGE)


def _merge_params(groups, boxed, ids, prefix) -> dict:
    """One box for a group's many parameters (an LSTM's twelve); returns param → its label."""
    merged = {}
    for group in groups:
        params = [m for m in group.members if m.kind == "parameter"]
        if len(params) < MERGE_AT or group.key in boxed:
            continue
        pid = f"{prefix}{group.key}_params"
        names = h(*[x for k, p in enumerate(params) for x in (", " if k else None, nm(p.name))])
        label = html_label(bold(f"{len(params)} parameters"), small(names))
        for p in params:
            ids[p] = pid
            merged[p] = label
    return merged


def _collapsed_label(ctx, group) -> str:
    # its parameters, and weights it borrows (a tied decoder's Wᵀ: an op on parameters alone)
    params = [m for m in group.members if m.kind == "parameter" or
              (m.kind == "op" and m.inputs and all(x.kind == "parameter" and x not in group.members
                                                   for x in m.inputs))]
    shown = params[:6]
    weights = h(*[x for k, p in enumerate(shown) for x in (
        ", " if k else None, name_html(p), " ", fmt_shape(p.shape),
        " tied" if p.kind == "op" else "" if p.trainable else " fixed")])
    if len(params) > len(shown):
        weights = h(weights, f", … ({len(params)} in all)")
    last = group.last
    if group.kind == "loss":
        last = ctx.loss if ctx.loss in group.members else last
        params = []
    name = ctx.node_name(last)
    out = h("→ ", nm(name) if name else None, " ", fmt_shape(last.shape))
    if ctx.has_values and last in ctx.values:
        out = h(out, " = ", ctx.arr(ctx.values[last]))
    return html_label(bold(group.title), small(weights) if params else None, value_line(out))


def _register():
    from . import register_view
    register_view("ops", draw_ops, "op and variable nodes with names and shapes, grouped by layer, "
                  "time step or attention block",
                  fits=[[{}, {"rankdir": "LR"}],
                        [{"compact": True, **o} for o in ({}, {"rankdir": "LR"})],
                        [{"compact": True, "merge_params": True, **o} for o in ({}, {"rankdir": "LR"})],
                        *[[{"compact": True, "merge_params": True, "expand_steps": k, **o}
                           for o in ({}, {"rankdir": "LR"})] for k in (2, 1)],
                        [{"collapse": True}, {"collapse": True, "rankdir": "LR"}],
                        [{"collapse": True, "modules": True}, {"collapse": True, "modules": True, "rankdir": "LR"}]])


_register()
