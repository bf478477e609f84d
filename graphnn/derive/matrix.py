"""The matrix view: the delta rule for whole layers, read from the record's terms.

In graphnn's row-vector convention a layer computes z = a W + b (a: B × n_in,
W: n_in × n_out), so

    δ^L = ∂E/∂a^L ⊙ f′(z^L),   δ^l = (δ^{l+1} (W^{l+1})ᵀ) ⊙ f′(z^l),
    ∂E/∂W^l = (a^{l−1})ᵀ δ^l,  ∂E/∂b^l = Σ_rows δ^l

— the column-vector texts' δ^l = (W^{l+1})ᵀ δ^{l+1} ⊙ f′ and ∂E/∂W^l = δ^l (a^{l−1})ᵀ,
transposed. The view first states the net (each named node's formula, `formulas.py`), then
walks the record: each node's adjoint is one of the record's `Adjoint`s, each term is
printed by the rule of the consumer's op class (`matrix_rules.TERM_RULES`), and every
matrix shown is a value of the forward or the gradient graph. Every named node, net input
(δ⁽ˡ⁾), parameter and node used twice gets a step of its own; unnamed intermediates are
written inline. A recurrence is written as its cell's equations and backprop through time
(`recurrence.py`).
"""
from __future__ import annotations

import numpy as np
import sympy

from ..ops import NET_OPS, Sum, Transpose
from .core import Form, Step, register_view
from .formulas import Formulas, last_two_swapped
from .matrix_rules import TERM_RULES, Adj, generic_rule
from ..names import Names
from .printing import Partial, latex, matrix, shape_latex
from .update import loss_after_update, update_steps


#: an adjoint used by two terms is named when its inline form is longer than this (LaTeX chars)
INLINE_CHARS = 80


class MatrixContext:
    """One walk of a record: names, formulas, values and the adjoints printed so far."""

    def __init__(self, req, record=None, names=None, values="request", loss_tex=None, overrides=None):
        self.req = req
        self.record = record if record is not None else req.record
        self.values = req.values if values == "request" else values
        self.names = names if names is not None else Names(req.graph)
        self.formulas = Formulas(self.names, overrides)
        self.adj: dict = {}
        self.loss_tex = loss_tex or self.names.tex(self.record.loss)
        self.notes: set = set()
        self.loops: dict = {}          # loop node -> {free leaf: per-step tex}

    def ref(self, node) -> str:
        return self.formulas.ref(node)

    def value(self, node):
        return None if self.values is None else self.values.forward(node)

    def mat(self, value, text_mode):
        return matrix(value, text_mode)

    def partial(self, node) -> str:
        return r"\frac{\partial %s}{\partial %s}" % (self.loss_tex, self.ref(node))

    def adjoint_name(self, node) -> str:
        if node in self.names.layer:
            return self.names.delta(node)
        return self.partial(node)

    def adjoint_value(self, node):
        return None if self.values is None else self.values.adjoint(node)


# -- the walk ---------------------------------------------------------------------------------------


def pieces_of(ctx, terms) -> list:
    out = []
    for t in terms:
        rule = TERM_RULES.get(t.consumer.op, generic_rule)
        piece = rule(ctx, t, ctx.adj[t.consumer])
        out.append(piece if piece is not None else generic_rule(ctx, t, ctx.adj[t.consumer]))
    return out


def walk(ctx, wrt, *, collect=(), hooks=None, shapes=True) -> list:
    """Steps for every adjoint the record computes, loss side first.

    ``wrt``: nodes whose adjoint is the answer (always a step); ``collect``: leaves whose
    adjoint is worked out but not shown (a cell's per-step share); ``hooks``: op class →
    fn(ctx, node) -> items, called instead of a step for such a node (a recurrence).
    """
    record, hooks = ctx.record, hooks or {}
    uses = {}
    for n in record.order:
        for t in record.terms_into(n):
            uses[t.consumer] = uses.get(t.consumer, 0) + 1
    consumers = set(uses)
    items = []
    ctx.adj[record.loss] = Adj("1", None if ctx.values is None else np.ones(()), one=True)
    for node in record.order[1:]:
        if node not in consumers and node not in wrt and node not in collect:
            continue  # nothing flows on from here (a mean's element count)
        hook = next((fn for cls, fn in hooks.items() if isinstance(node.op, cls)), None)
        if hook is not None:
            items += hook(ctx, node)
            ctx.adj.setdefault(node, Adj(ctx.adjoint_name(node), ctx.adjoint_value(node)))
            continue
        terms = record.terms_into(node)
        value = ctx.adjoint_value(node)
        if all(_is_ones_sum(ctx, t) for t in terms):
            ctx.adj[node] = Adj("1", value, one=True)
            continue
        pieces = pieces_of(ctx, terms)
        sym = " + ".join(p.sym for p in pieces)
        if len(pieces) == 1 and sym == "1":
            ctx.adj[node] = Adj("1", value, one=True)
            continue
        nums = [p.num for p in pieces]
        num = (lambda tm, nums=nums: " + ".join(n(tm) for n in nums)) if all(nums) else None
        known = {a.tex for a in ctx.adj.values() if not a.one}
        renamed = len(pieces) == 1 and sym in known       # ∂E/∂Q handed on rearranged: no new name
        named = (node in ctx.names.layer or node in wrt or len(terms) > 1
                 or (uses.get(node, 0) > 1 and len(sym) > INLINE_CHARS and not renamed)
                 or (ctx.names.label(node) is not None and node not in collect and node.kind == "op"
                     and not is_weight_view(node) and not renamed))
        name = ctx.adjoint_name(node)
        if not named or node in collect or sym == name:
            ctx.adj[node] = Adj(sym if sym != name else name, value, num=num, scalar=all(p.scalar for p in pieces),
                                product=pieces[0].product if len(pieces) == 1 else None)
            continue
        items += _named_step(ctx, node, terms, pieces, value, wrt, num, shapes)
        ctx.adj[node] = Adj(name, value)
    return items


def is_weight_view(node) -> bool:
    """Wᵀ of a tied weight, Kᵀ of attention: its adjoint is written transposed where it is used
    (so ∂E/∂W = δ⁽²⁾ᵀ h + xᵀ δ⁽¹⁾, never a name with ᵀᵀ)."""
    return isinstance(node.op, Transpose) and last_two_swapped(node)


def _named_step(ctx, node, terms, pieces, value, wrt, num, shapes) -> list:
    """The step that names a node's adjoint: its forms, shapes and numbers (and notes first)."""
    items = []
    for p in pieces:
        if p.note and p.note not in ctx.notes:
            ctx.notes.add(p.note)
            items.append(p.note)
    forms = []
    if node in ctx.names.layer:
        forms.append(Form(tex=ctx.partial(node)))
    if len(pieces) == 1 and pieces[0].first:
        forms.append(Form(tex=pieces[0].first))
    sym = " + ".join(p.sym for p in pieces)
    forms.append(Form(tex=sym + (_operand_shapes(terms, ctx.req) if shapes else "")))
    checks = []
    if value is not None:
        if num is not None:
            forms.append(Form(tex=lambda tm, num=num, value=value: _unless_same(num(tm), matrix(value, tm))))
        forms.append(Form(array=value))
        claim = ("gradient", node, None) if node in wrt and node.kind == "parameter" else ("adjoint", node, None)
        checks = [(claim, value)]
    shape = node.shape if node.kind == "parameter" else _rows(node, ctx.req)
    items.append(Step(ctx.adjoint_name(node), forms, kind="gradient" if node.kind == "parameter" else "delta",
                      value=value, shape=shape_latex(shape) if shapes else None, checks=checks))
    return items


def _unless_same(num_tex, value_tex):
    """A numeric form identical to the value it equals is not printed twice."""
    return None if num_tex.strip() == value_tex.strip() else num_tex


def _is_ones_sum(ctx, term):
    """A full sum whose own adjoint is 1 hands 1 to every element: nothing to show."""
    c = term.consumer
    return isinstance(c.op, Sum) and ctx.adj.get(c) is not None and ctx.adj[c].one and \
        len(c.attrs["axes"]) == len(term.input.shape)


def _operand_shapes(terms, req) -> str:
    """(2 × 1)(1 × 2) after xᵀ δ: the shapes a matrix product multiplies."""
    if len(terms) != 1 or not isinstance(terms[0].consumer.op, NET_OPS) or terms[0].position > 1:
        return ""
    t = terms[0]
    x, w = t.consumer.inputs[:2]
    g = _rows(t.consumer, req)
    if len(g) != 2 or len(x.shape) != 2 or len(w.shape) != 2:
        return ""
    if t.position == 0:
        pair = (g, tuple(reversed(w.shape)))
    else:
        pair = (tuple(reversed(_rows(x, req))), g)
    return r" \quad " + "".join(r"(%s)" % shape_latex(s) for s in pair)


def _rows(node, req):
    """The node's shape with the batch axis as the rows shown (B when symbolic)."""
    batch = req.batch if req.feeds is not None else None
    return tuple(batch if d is None else d for d in node.shape)


# -- the view --------------------------------------------------------------------------------------


CONVENTION = ("Row-vector convention (as computed: $z = a W + b$, $a$ is batch × inputs, $W$ is inputs × "
              r"outputs): $\delta^{L} = \partial E/\partial a^{L} \odot f'(z^{L})$, "
              r"$\delta^{l} = (\delta^{l+1} (W^{l+1})^{\top}) \odot f'(z^{l})$, "
              r"$\partial E/\partial W^{l} = (a^{l-1})^{\top} \delta^{l}$, "
              r"$\partial E/\partial b^{l} = \sum_{\mathrm{rows}} \delta^{l}$. "
              r"Column-vector texts write $\delta^{l} = (W^{l+1})^{\top} \delta^{l+1} \odot f'(z^{l})$ "
              r"and $\partial E/\partial W^{l} = \delta^{l} (a^{l-1})^{\top}$: the same, transposed. "
              r"Products written $\odot$ are elementwise; $n$ is the number of examples in the batch.")


def net_equations(ctx, nodes, kind="forward") -> list:
    """'The net, as computed:' and one step per named node: name = formula (a recurrence:
    its cell's equations, `recurrence.forward_items`)."""
    from ..looped import Loop
    from .recurrence import forward_items

    items, run, loops = [], [], 0
    for n in nodes:
        if isinstance(n.op, Loop):
            items += [Step(lhs, [Form(tex=rhs)], kind=kind) for lhs, rhs, _ in ctx.formulas.equations(run)]
            items += forward_items(ctx, n)
            run, loops = [], loops + 1
        else:
            run.append(n)
    rest = [Step(lhs, [Form(tex=rhs)], kind=kind) for lhs, rhs, _ in ctx.formulas.equations(run)]
    items += (["After the last step:"] if loops and rest else []) + rest
    return ["The net, as computed:"] + items if items else []


def _preamble(ctx, req) -> list:
    items = [CONVENTION] + net_equations(ctx, req.graph.nodes)
    nets = [n for n in ctx.names.layer if n in req.record.adjoints]
    if nets:
        items.append("Deltas: " + ", ".join(
            rf"${ctx.names.delta(n)} = \partial {ctx.loss_tex}/\partial {ctx.ref(n)}$ "
            rf"(${shape_latex(_rows(n, req))}$)" for n in nets) + ".")
    return items


@register_view("matrix")
def matrix_view(req) -> list:
    from .recurrence import loop_hooks

    ctx = MatrixContext(req)
    for n in req.graph.nodes:       # a node used twice gets a name before the net is stated
        if n.kind == "op" and ctx.names.uses[n] > 1 and not ctx.names.label(n):
            ctx.names.fallback(n)
    wrt = {t.node for t in req.targets}
    items = _preamble(ctx, req) + ["Backward, from the loss down:"] + walk(ctx, wrt, hooks=loop_hooks())
    updates = []
    if req.update:
        for t in req.targets:
            node = t.node
            updates += update_steps(req, node, None, sympy.Symbol(node.label()),
                                    Partial(sympy.Symbol(req.loss.label()), sympy.Symbol(node.label())),
                                    header=not updates)
        if req.values is not None:
            updates += loss_after_update(req)
    return items + updates


__all__ = ["matrix_view", "walk", "MatrixContext", "net_equations", "latex"]
