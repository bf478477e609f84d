"""The backward view: the forward graph and, beside it, the gradient graph that
``grad(loss, params)`` built — read from its `GradRecord`, not re-derived.

Gradient nodes are red dashed boxes; an edge between them carries a cotangent and is
labelled with what it is (dE/d out_o, or one term of it: "via net_o"). The gradient graph
is drawn upside down (its edges point up), so dE/dW sits level with W. Dotted grey lines
show which forward values the backward pass reads (y for σ'(x) = y(1−y), W for Wᵀ).
"""
from __future__ import annotations

from ..autodiff import grad
from ..errors import GradientError
from .context import DrawError
from .ops_view import add_forward
from .style import (BACKWARD_EDGE, CLUSTER_STYLE, NODE_STYLES, NOT_COMPUTED, READ_EDGE, fmt_shape,
                    grad_line, html_label, new_digraph, small)


def _wrt(ctx):
    params = ctx.graph.trainable or ctx.graph.parameters
    if not params:
        raise DrawError(f"{ctx.name} has no parameters to differentiate with respect to; "
                        "the backward view needs some")
    return params


def draw_backward(ctx):
    """The forward graph (black) and its gradient graph (red, dashed) side by side."""
    if ctx.loss is None:
        raise DrawError(f"{ctx.name} has no scalar loss, so it has no backward graph; "
                        "draw a Model or a scalar node (or use view='ops')")
    try:
        grads = grad(ctx.loss, _wrt(ctx), disconnected="zero")
    except GradientError as e:
        raise DrawError(f"the backward view of {ctx.name} needs gradients: {e}") from None
    record = grads.record
    nodes = record.gradient_nodes()
    values = ctx.evaluate_nodes(list(grads.values())) if ctx.show_grads else {}
    total_of = {a.total: a.node for a in record.adjoints.values() if a.total is not None}
    term_of = {t.contribution: t for a in record.adjoints.values() for t in a.terms}
    results = {grads[w]: w for w in grads}

    g = new_digraph(ctx.name, "TB", ranksep="0.4")
    g.attr(label=f"{ctx.name}: backward view — forward graph (black) and the gradient graph "
                 f"autodiff built (red, dashed); red edges carry d{ctx.loss_name}/d·")
    with g.subgraph(name="cluster_forward") as f:
        f.attr(label="forward", **CLUSTER_STYLE)
        fwd_ids = add_forward(ctx, f, {})
    ids = {n: f"g{i}" for i, n in enumerate(nodes)}
    with g.subgraph(name="cluster_backward") as b:
        b.attr(label="backward (gradient graph)", **CLUSTER_STYLE)
        for n in nodes:
            b.node(ids[n], _label(ctx, n, total_of, results, values), **_style(n, results))
    for n in nodes:
        for x in n.inputs:
            if x in ids:   # a cotangent flowing down the gradient graph; drawn pointing up
                g.edge(ids[n], ids[x], dir="back", label=_carries(ctx, x, total_of, term_of),
                       **BACKWARD_EDGE)
            elif x in fwd_ids:
                g.edge(fwd_ids[x], ids[n], **READ_EDGE)
    for gnode, w in results.items():
        if gnode in ids and w in fwd_ids:
            g.edge(ids[gnode], fwd_ids[w], style="bold,dotted", color="#c0392b", constraint="false",
                   arrowhead="none")
    return g


def _name_of(ctx, node):
    return f"d{ctx.loss_name}/d{node.label()}"


def _carries(ctx, x, total_of, term_of):
    if x in total_of:
        return _name_of(ctx, total_of[x])
    if x in term_of:
        t = term_of[x]
        return f"{_name_of(ctx, t.input)} via {t.consumer.label()}"
    return None


def _label(ctx, n, total_of, results, values):
    head = [(n.op.label(n) if n.kind == "op" else n.label(), {"bold": n not in total_of})]
    if n in total_of:
        head = [(_name_of(ctx, total_of[n]), {"bold": True}), small(n.op.label(n))]
    lines = head + [small(fmt_shape(n.shape))]
    if n in values:
        lines.append(grad_line("= " + ctx.arr(values[n])))
    elif ctx.has_values:
        lines.append(grad_line(NOT_COMPUTED))
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
                  "forward graph and the gradient graph beside it, edges carrying dE/d·")


_register()
