"""The matrix view: the delta rule for whole layers, read from the record's terms.

In graphnn's row-vector convention a layer computes z = a W + b (a: B × n_in,
W: n_in × n_out), so

    δ^L = ∂E/∂a^L ⊙ f′(z^L),   δ^l = (δ^{l+1} (W^{l+1})ᵀ) ⊙ f′(z^l),
    ∂E/∂W^l = (a^{l−1})ᵀ δ^l,  ∂E/∂b^l = Σ_rows δ^l

— the column-vector texts' δ^l = (W^{l+1})ᵀ δ^{l+1} ⊙ f′ and ∂E/∂W^l = δ^l (a^{l−1})ᵀ,
transposed. Each node's adjoint is one of the record's `Adjoint`s; each term is printed
by the rule of the consumer's op class (`TERM_RULES`), and every matrix shown is a value of
the forward or the gradient graph. Adjoints used once on the way down are inlined
(∂E/∂out_o into δ); net inputs get a δ^{(l)}, parameters their gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from ..ops import (NET_OPS, Concat, Linear, Map, MatMul, OpTable, Softmax, SoftmaxCrossEntropy, Sum,
                   Transpose)
from ..ops.elementwise import ACTIVATIONS, V, Y
from .core import Form, Step, register_view
from .printing import Partial, latex, matrix, shape_latex, signed, symbol_latex
from .update import update_steps

HADAMARD = r" \odot "


@dataclass
class Adj:
    """How one node's adjoint prints: as a name (δ^{(2)}, ∂E/∂out_h) or inline."""

    tex: str            # symbolic LaTeX used where the adjoint appears
    value: object       # its array (None without values)
    one: bool = False   # ∂E/∂E_elements = 1: left out of products
    num: object = None  # inline adjoints: text_mode -> their numeric LaTeX

    def numeric(self, tm):
        return self.num(tm) if self.num is not None else matrix(self.value, tm)


def _name(node) -> str:
    return symbol_latex(node.label())


def _bracket(tex: str) -> str:
    t = tex.strip()
    if _atomic(t) or (t.startswith("-") and _atomic(t[1:])):
        return tex
    return r"\left(%s\right)" % tex


def _atomic(tex: str) -> bool:
    """A single name or a bracketed group: no sum, sign or product at the top level."""
    t = tex.strip()
    for o, c in ((r"\left(", r"\right)"), (r"\left[", r"\right]"), (r"\begin{bmatrix}", r"\end{bmatrix}")):
        if t.startswith(o) and t.endswith(c) and t.count(o) == 1:
            return True
    depth = 0
    for ch in t:
        depth += {"{": 1, "}": -1, "(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and ch in "+- ":
            return False
    return True


class MatrixContext:
    def __init__(self, req):
        self.req, self.record, self.values = req, req.record, req.values
        nets = [n for n in req.graph.nodes if isinstance(n.op, NET_OPS)]
        self.layer = {n: k for k, n in enumerate(nets, 1)}
        self.adj: dict = {}
        self.loss_tex = latex(sympy.Symbol(req.loss.label()))

    def value(self, node):
        return None if self.values is None else self.values.forward(node)

    def mat(self, value, text_mode):
        return matrix(value, text_mode)

    def adjoint_name(self, node) -> str:
        if node in self.layer:
            return r"\delta^{(%d)}" % self.layer[node]
        return latex(Partial(sympy.Symbol(self.req.loss.label()), sympy.Symbol(node.label())))


# -- per-op term rules: (ctx, term, upstream Adj) -> (symbolic tex, numeric tex fn) -------------


def _map_rule(ctx, term, up):
    c, pos = term.consumer, term.position
    names = {V[i]: sympy.Symbol(x.label()) for i, x in enumerate(c.inputs)}
    names[Y] = sympy.Symbol(c.label())
    deriv = c.op.derivative(c, pos).subs(names, simultaneous=True)
    forward = c.attrs["expr"].subs(names, simultaneous=True)
    shown = _factored(deriv, forward)
    act = ACTIVATIONS.get(c.attrs.get("fn", ""))
    local_value = None
    if ctx.values is not None:
        fn = sympy.lambdify(list(V[:len(c.inputs)]) + [Y], c.op.derivative(c, pos), "numpy")
        args = [ctx.values.forward(x) for x in c.inputs] + [ctx.values.forward(c)]
        local_value = np.broadcast_to(np.asarray(fn(*args), dtype=float),
                                      np.shape(ctx.values.forward(c)))
    up_sym = [] if up.one else [_bracket(up.tex)]
    local = _hadamard(shown)
    first = None
    if act is not None and len(c.inputs) == 1:
        f = act.latex or (r"\tanh" if act.name == "tanh" else r"\operatorname{%s}" % act.name)
        first = HADAMARD.join(up_sym + [r"%s'\left(%s\right)" % (f, _name(c.inputs[0]))])
    sym = HADAMARD.join(up_sym + [_bracket(local) if up_sym else local])

    def num(tm):
        parts = ([] if up.one else [_bracket(up.numeric(tm))]) + [ctx.mat(local_value, tm)]
        return HADAMARD.join(parts)
    return first, sym, num


def _hadamard(expr) -> str:
    """An elementwise product of arrays, written with ⊙ (numbers keep their ·)."""
    if isinstance(expr, sympy.Mul):
        coeff, factors = expr.as_coeff_mul()
        texs = [_bracket(latex(f)) for f in factors]
        lead = "" if coeff == 1 else ("-" if coeff == -1 else latex(coeff) + r" \cdot ")
        return lead + HADAMARD.join(texs)
    return latex(expr)


def _factored(deriv, forward):
    if not isinstance(deriv, sympy.Add):
        return deriv
    for group in sorted(forward.atoms(sympy.Add), key=sympy.count_ops):
        ratio = sympy.simplify(deriv / group)
        if ratio.is_Number and ratio not in (0, 1):
            return signed(ratio, group)
    return deriv


def _linear_rule(ctx, term, up):
    c, pos = term.consumer, term.position
    x, w = c.inputs[0], c.inputs[1]
    g = _bracket(up.tex)
    gv = (lambda tm: _bracket(up.numeric(tm)))
    if pos == 0:
        return None, rf"{g} \, {_name(w)}^{{\top}}", \
            (lambda tm: gv(tm) + r" \, " + ctx.mat(np.swapaxes(ctx.value(w), -1, -2), tm))
    if pos == 1:
        return None, rf"{_name(x)}^{{\top}} \, {g}", \
            (lambda tm: ctx.mat(np.swapaxes(ctx.value(x), -1, -2), tm) + r" \, " + gv(tm))
    return None, rf"\sum_{{\mathrm{{rows}}}} {g}", (lambda tm: r"\sum_{\mathrm{rows}} " + gv(tm))


def _softmax_ce_rule(ctx, term, up):
    if term.position != 0:
        return None, None, None
    z, t = term.consumer.inputs
    p_tex = r"\operatorname{softmax}\left(%s\right)" % _name(z)
    sym = rf"p - {_name(t)}" if up.one else rf"{_bracket(up.tex)} \odot \left(p - {_name(t)}\right)"
    p_value = None
    if ctx.values is not None:
        p_node = next(n for n in term.contribution.inputs if isinstance(n.op, Softmax))
        p_value = ctx.values.all[p_node]
    num = (lambda tm: ctx.mat(p_value, tm) + " - " + ctx.mat(ctx.value(t), tm)) if up.one else \
        (lambda tm: _bracket(up.numeric(tm)) + HADAMARD + r"\left(" + ctx.mat(p_value, tm) + " - "
         + ctx.mat(ctx.value(t), tm) + r"\right)")
    return rf"p = {p_tex}", sym, num


def _transpose_rule(ctx, term, up):
    return None, _bracket(up.tex) + r"^{\top}", (lambda tm: _bracket(up.numeric(tm)) + r"^{\top}")


def _concat_rule(ctx, term, up):
    """Joining [1, y] (Boley's bias row): y's share is its block of columns."""
    c, pos = term.consumer, term.position
    axis = c.attrs["axis"]
    if axis != len(c.shape) - 1:
        return None, None, None
    start = sum(x.shape[axis] for x in c.inputs[:pos])
    stop = start + c.inputs[pos].shape[axis]
    cols = r"_{[:,\,%d:%d]}" % (start, stop)
    return None, _bracket(up.tex) + cols, (lambda tm: _bracket(up.numeric(tm)) + cols)


def _sum_rule(ctx, term, up):
    """A full sum hands its adjoint to every element (broadcast)."""
    c = term.consumer
    if c.shape != ():
        return None, None, None
    return None, up.tex, (lambda tm: up.numeric(tm))


def _softmax_rule(ctx, term, up):
    """∂E/∂s = a ⊙ (g − Σ_k g_k a_k) per row, for a = softmax(s) and upstream g: the gradient
    of attention's softmax(QKᵀ/√d_k)V through its softmax."""
    a = _name(term.consumer)
    g = _bracket(up.tex)
    sym = rf"{a}{HADAMARD}\left({g} - \sum_{{\mathrm{{cols}}}} {g}{HADAMARD}{a}\right)"

    def num(tm):
        return ctx.mat(ctx.values.all[term.contribution], tm)
    return None, sym, num


#: op class -> rule(ctx, term, upstream Adj) -> (first form or None, symbolic tex, numeric tex fn)
TERM_RULES = OpTable("a matrix-view term rule", {
    Concat: _concat_rule, Map: _map_rule, Linear: _linear_rule, MatMul: _linear_rule,
    SoftmaxCrossEntropy: _softmax_ce_rule, Transpose: _transpose_rule, Sum: _sum_rule,
    Softmax: _softmax_rule,
})


def _generic_rule(ctx, term, up):
    c = term.consumer
    return None, r"\operatorname{vjp}_{\mathrm{%s}}\left(%s\right)" % (c.op.name.replace("_", r"\_"), up.tex), \
        (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm))


# -- the view --------------------------------------------------------------------------------------


def _preamble(ctx, req) -> list:
    """The convention the view writes in, and the deltas it names."""
    items = ["Row-vector convention (as computed: $z = a W + b$, $a$ is batch × inputs, "
             "$W$ is inputs × outputs): "
             r"$\delta^{L} = \partial E/\partial a^{L} \odot f'(z^{L})$, "
             r"$\delta^{l} = (\delta^{l+1} (W^{l+1})^{\top}) \odot f'(z^{l})$, "
             r"$\partial E/\partial W^{l} = (a^{l-1})^{\top} \delta^{l}$, "
             r"$\partial E/\partial b^{l} = \sum_{\mathrm{rows}} \delta^{l}$. "
             r"Column-vector texts write $\delta^{l} = (W^{l+1})^{\top} \delta^{l+1} \odot f'(z^{l})$ "
             r"and $\partial E/\partial W^{l} = \delta^{l} (a^{l-1})^{\top}$: the same, transposed. "
             r"Products written $\odot$ are elementwise."]
    nets = [n for n in ctx.layer if n in req.record.adjoints]
    if nets:
        items.append("Deltas: " + ", ".join(
            rf"${ctx.adjoint_name(n)} = \partial {ctx.loss_tex}/\partial {_name(n)}$ "
            rf"(${shape_latex(_rows(n, req))}$)" for n in nets) + ".")
    return items


def _pieces(ctx, terms):
    """(first form, symbolic tex, numeric tex fn) of each term, by its consumer's rule."""
    pieces = []
    for t in terms:
        rule = TERM_RULES.get(t.consumer.op, _generic_rule)
        first, sym, num = rule(ctx, t, ctx.adj[t.consumer])
        if sym is None:
            first, sym, num = _generic_rule(ctx, t, ctx.adj[t.consumer])
        pieces.append((first, sym, num))
    return pieces


def _named_step(ctx, req, node, terms, pieces, value, wrt) -> Step:
    """The step that names a node's adjoint: its forms, shapes and numbers."""
    sym = " + ".join(p[1] for p in pieces)
    forms = []
    if node in ctx.layer:
        forms.append(Form(tex=latex(Partial(sympy.Symbol(req.loss.label()), sympy.Symbol(node.label())))))
    firsts = [p[0] for p in pieces if p[0]]
    if firsts and len(pieces) == 1 and not firsts[0].startswith("p ="):
        forms.append(Form(tex=firsts[0]))
    forms.append(Form(tex=sym + _operand_shapes(terms, req)))
    checks = []
    if ctx.values is not None:
        nums = [p[2] for p in pieces]
        forms.append(Form(tex=(lambda tm, nums=nums: " + ".join(n(tm) for n in nums))))
        forms.append(Form(array=value))
        claim = ("gradient", node, None) if node in wrt else ("adjoint", node, None)
        checks = [(claim, value)]
    note = None
    if any(p[0] and p[0].startswith("p =") for p in pieces):
        note = "With $p = \\operatorname{softmax}(z)$ the fused softmax cross-entropy gives $p - t$:"
    return Step(ctx.adjoint_name(node), forms, kind="gradient" if node in wrt else "delta", value=value,
                shape=shape_latex(node.shape if node.kind == "parameter" else _rows(node, req)),
                checks=checks, note=note)


@register_view("matrix")
def matrix_view(req) -> list:
    ctx = MatrixContext(req)
    record, values = req.record, req.values
    wrt = {t.node for t in req.targets}
    items = _preamble(ctx, req)
    uses = {}
    for n in record.order:
        for t in record.terms_into(n):
            uses[t.consumer] = uses.get(t.consumer, 0) + 1
    updates = []
    ctx.adj[req.loss] = Adj("1", None if values is None else np.ones(()), one=True)
    consumers = {t.consumer for n in record.order for t in record.terms_into(n)}
    for node in record.order[1:]:
        if node not in consumers and node not in wrt:
            continue  # nothing flows on from here (a mean's element count)
        terms = record.terms_into(node)
        value = None if values is None else values.adjoint(node)
        if all(_is_ones_sum(ctx, t) for t in terms):
            ctx.adj[node] = Adj("1", value, one=True)
            continue
        pieces = _pieces(ctx, terms)
        named = node in ctx.layer or node in wrt or len(terms) > 1 or uses.get(node, 0) != 1
        if not named:
            nums = [p[2] for p in pieces]
            ctx.adj[node] = Adj(" + ".join(p[1] for p in pieces), value,
                                num=(lambda tm, nums=nums: " + ".join(n(tm) for n in nums)))
            continue
        items.append(_named_step(ctx, req, node, terms, pieces, value, wrt))
        ctx.adj[node] = Adj(ctx.adjoint_name(node), value)
        if node in wrt and req.update:
            updates += update_steps(req, node, None, sympy.Symbol(node.label()),
                                    Partial(sympy.Symbol(req.loss.label()), sympy.Symbol(node.label())),
                                    header=not updates)
    return items + updates


def _operand_shapes(terms, req) -> str:
    """(2 × 1)(1 × 2) after xᵀ δ: the shapes a matrix product multiplies."""
    if len(terms) != 1 or not isinstance(terms[0].consumer.op, NET_OPS) or terms[0].position > 1:
        return ""
    t = terms[0]
    x, w = t.consumer.inputs[:2]
    g = _rows(t.consumer, req)
    if len(g) != 2:
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


def _is_ones_sum(ctx, term):
    """A full sum whose own adjoint is 1 hands 1 to every element: nothing to show."""
    c = term.consumer
    return isinstance(c.op, Sum) and ctx.adj.get(c) is not None and ctx.adj[c].one
