"""The backward view: the forward graph and, on its right, the gradient graph that
``grad(loss, params)`` built — read from its `GradRecord`, not re-derived.

Gradient nodes are red dashed boxes; an edge between them carries a cotangent and is
labelled with what it is (dE/d out_o, or one term of it: "via net_o"). The gradient graph
is drawn upside down (its edges point up), so dE/dW sits level with W. Dotted grey lines
show which forward values the backward pass reads (y for σ'(x) = y(1−y), W for Wᵀ) — for
nets with more than `MAX_READS` of them only with option ``reads=True``.
With ``collapse=True`` both graphs are drawn one box per group (layer, time step, block):
the backward box of a group lists the gradients its ops' rules produced.
"""
from __future__ import annotations

from ..autodiff import grad
from ..errors import GradientError
from .context import DrawError
from .groups import find_groups
from .labels import name_html, op_label
from .modules import groups_of
from .ops_view import add_forward
from .style import (BACKWARD_EDGE, CLUSTER_STYLE, NODE_STYLES, READ_EDGE, Html, bold, fmt_shape, grad_line,
                    h, html_label, new_digraph, nm, small)


MAX_READS = 12   # more dotted "reads" lines than this bury the picture: drawn only when asked


def _wrt(ctx):
    params = ctx.graph.trainable or ctx.graph.parameters
    if not params:
        raise DrawError(f"{ctx.name} has no parameters to differentiate with respect to; "
                        "the backward view needs some")
    return params


def _grad(ctx):
    try:
        return grad(ctx.loss, _wrt(ctx), disconnected="zero")
    except GradientError as e:
        raise DrawError(f"the backward view of {ctx.name} needs gradients: {e}") from None


class _Backward:
    """The record, read once: gradient nodes, which adjoint or term each one is, values."""

    def __init__(self, ctx):
        if ctx.loss is None:
            raise DrawError(f"{ctx.name} has no scalar loss, so it has no backward graph; "
                            "draw a Model or a scalar node (or use view='ops')")
        self.ctx = ctx
        self.grads = ctx.memo("backward", lambda: _grad(ctx))
        record = self.grads.record
        self.nodes = record.gradient_nodes()
        self.values = ctx.memo("backward values", lambda: ctx.evaluate_nodes(list(self.grads.values()))) \
            if ctx.show_grads else {}
        self.total_of = {a.total: a.node for a in record.adjoints.values() if a.total is not None}
        self.term_of = {t.contribution: t for a in record.adjoints.values() for t in a.terms}
        self.results = {self.grads[w]: w for w in self.grads}

    def name_of(self, node) -> Html:
        return h("d", nm(self.ctx.loss_name), "/d", name_html(node, self.ctx))

    def carries(self, x):
        if x in self.total_of:
            return self.name_of(self.total_of[x])
        if x in self.term_of:
            t = self.term_of[x]
            return h(self.name_of(t.input), " via ", name_html(t.consumer, self.ctx))
        return None

    def label(self, n):
        compact = self.ctx.options.get("compact")    # a slide: names and numbers only
        head = [bold(op_label(n) if n.kind == "op" else name_html(n, self.ctx))]
        if n in self.total_of:
            head = [bold(self.name_of(self.total_of[n])), None if compact else small(op_label(n))]
        lines = head + [None if compact else small(fmt_shape(n.shape))]
        if n in self.values:
            lines.append(grad_line(h("= ", self.ctx.arr(self.values[n]))))
        return html_label(*lines)

    def owner(self) -> dict:
        """gradient node -> the forward node whose rule built it (its adjoint's, or its
        term's consumer; a helper node belongs to what it feeds)."""
        owner = {n: self.total_of[n] for n in self.nodes if n in self.total_of}
        for n in self.nodes:
            if n not in owner and n in self.term_of:
                owner[n] = self.term_of[n].consumer
        users = {n: [] for n in self.nodes}
        for n in self.nodes:
            for x in n.inputs:
                if x in users:
                    users[x].append(n)
        for n in reversed(self.nodes):
            if n not in owner:
                fed = [owner[u] for u in users[n] if u in owner]
                if fed:
                    owner[n] = fed[0]
        return owner


def draw_backward(ctx):
    """The forward graph (black, left) and its gradient graph (red, dashed, right)."""
    b = _Backward(ctx)
    g = new_digraph(ctx.name, "TB", ranksep="0.4", newrank="true")
    g.attr(label=html_label(h(ctx.name, ": backward view"),
                            small(h("forward graph (black) and the gradient graph autodiff built (red, dashed); "
                                    "red edges carry d", nm(ctx.loss_name), "/d·",
                                    f"; {ctx.training_note}" if ctx.training_note else None))))
    with g.subgraph(name="cluster_forward") as f:
        f.attr(label="forward", **CLUSTER_STYLE)
        f.node("fwd_anchor", "", style="invis", width="0", height="0", fixedsize="true")
        fwd_ids = add_forward(ctx, f, {})
    if ctx.collapse:
        _collapsed_backward(ctx, g, b, fwd_ids)
    else:
        _full_backward(ctx, g, b, fwd_ids)
    # the gradient graph always on the right: a flat (same-rank) edge puts its tail left
    with g.subgraph() as row:
        row.attr(rank="same")
        row.edge("fwd_anchor", "bwd_anchor", style="invis")
    return g


def _full_backward(ctx, g, b, fwd_ids):
    ids = {n: f"g{i}" for i, n in enumerate(b.nodes)}
    reads = [(x, n) for n in b.nodes for x in n.inputs if x not in ids and x in fwd_ids]
    show_reads = ctx.options.get("reads", len(reads) <= MAX_READS)
    with g.subgraph(name="cluster_backward") as c:
        c.attr(label="backward (gradient graph)", **CLUSTER_STYLE)
        c.node("bwd_anchor", "", style="invis", width="0", height="0", fixedsize="true")
        for n in b.nodes:
            c.node(ids[n], b.label(n), **_style(n, b.results))
    for n in b.nodes:
        for x in n.inputs:
            if x in ids:   # a cotangent flowing down the gradient graph; drawn pointing up
                label = b.carries(x)
                g.edge(ids[n], ids[x], dir="back", label=html_label(label) if label else None,
                       **BACKWARD_EDGE)
            elif x in fwd_ids and show_reads:
                g.edge(fwd_ids[x], ids[n], **READ_EDGE)


def _collapsed_backward(ctx, g, b, fwd_ids):
    """One red box per forward group: the gradients its rules built, results with values."""
    group_of = {m: grp for grp in groups_of(ctx, find_groups(ctx.graph, ctx.output, ctx.loss)) for m in grp.members}
    owner = b.owner()
    boxes: dict = {}
    for n in b.nodes:
        fwd = owner.get(n)
        key = group_of[fwd].key if fwd in group_of else (fwd_ids.get(fwd, "other") if fwd is not None else "other")
        boxes.setdefault(key, []).append(n)
    box_of = {n: f"b_{key}" for key, members in boxes.items() for n in members}
    with g.subgraph(name="cluster_backward") as c:
        c.attr(label="backward (one box per group)", **CLUSTER_STYLE)
        c.node("bwd_anchor", "", style="invis", width="0", height="0", fixedsize="true")
        for key, members in boxes.items():
            c.node(f"b_{key}", _box_label(ctx, b, key, members, group_of), **_style(None, {}))
    seen = set()
    for n in b.nodes:
        for x in n.inputs:
            if x in box_of and box_of[x] != box_of[n] and (box_of[n], box_of[x]) not in seen:
                seen.add((box_of[n], box_of[x]))
                g.edge(box_of[n], box_of[x], dir="back", **BACKWARD_EDGE)


def _box_label(ctx, b, key, members, group_of):
    titles = {grp.key: grp.title for grp in group_of.values()}
    lines = [bold(h("backward of ", titles.get(key, "the rest")))]
    carried = [b.total_of[n] for n in members if n in b.total_of and n not in b.results
               and ctx.node_name(b.total_of[n])]
    if carried:
        shown = carried[:3]
        lines.append(small(h(*[x for k, f in enumerate(shown) for x in (", " if k else None, b.name_of(f))],
                             ", …" if len(carried) > 3 else None)))
    for n in members:
        if n in b.results:
            value = h(" = ", ctx.arr(b.values[n])) if n in b.values else None
            lines.append(grad_line(h(b.name_of(b.results[n]), value)))
    return html_label(*lines)


def _style(n, results):
    style = dict(NODE_STYLES["gradient"])
    if n in results:
        style["style"] = "rounded,filled,bold"
        style["penwidth"] = "2"
    return style


def _register():
    from . import register_view
    register_view("backward", draw_backward,
                  "forward graph and the gradient graph on its right, edges carrying dE/d·",
                  fits=[[{}], [{"compact": True}], [{"compact": True, "reads": False}],
                        [{"compact": True, "reads": False, "merge_params": True}], [{"collapse": True}],
                        [{"collapse": True, "modules": True}]])


_register()
