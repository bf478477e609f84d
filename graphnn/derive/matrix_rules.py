"""Each op's backward rule in the matrix view: the term it adds to an operand's adjoint,
written the way the course writes it for whole tensors.

    Map (activation)   g ⊙ f′(net): σ′ = out(1 − out), tanh′ = 1 − h², ReLU′ = 𝟙[net > 0]
    Linear, MatMul     ∂E/∂x = g Wᵀ,  ∂E/∂W = xᵀ g,  ∂E/∂b = Σ_rows g
    Conv2D             ∂E/∂K = x ⋆ g (cross-correlation),  ∂E/∂x = g ∗_full K (flipped kernel)
    MaxPool2D          𝟙[a = max of its window] ⊙ up_{2×2}(g): routing to the winner
    AvgPool2D          ¼ up_{2×2}(g): spreading over the window
    Softmax            A ⊙ (g − Σ_cols g ⊙ A)  (the Jacobian f_k(δ_kj − f_j), applied)
    SoftmaxCE          p − t (a batch mean: (1/n)(p − t))
    Transpose          (g)ᵀ, products flipped: (Qᵀ g)ᵀ = gᵀ Q
    Sum, Reshape, …    g spread back (𝟙_n g), rearranged, or a block of columns

A rule is ``rule(ctx, term, up) -> Piece`` with ``up`` the consumer's adjoint (`Adj`);
`TERM_RULES` is keyed by op class, so a user's op adds its rule there; an op without one
is written as the row vector times the Jacobian, g ∂y/∂x.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import sympy

from ..ops import (AvgPool2D, Concat, Conv2D, Count, Dropout, GaussianNoise, Index, Linear, LogSoftmax, Map,
                   MatMul, Max, MaxPool2D, OpTable, Reshape, Softmax, SoftmaxCrossEntropy, StopGradient, Sum,
                   Transpose)
from ..ops.elementwise import V, Y
from .formulas import activation_tex, axes_tex, bracket, last_two_swapped, scale_tex, sup_base
from ..names import activation_of
from .printing import TeachingPrinter, factored, integral_floats, latex, operand_names

ODOT = r" \odot "


@dataclass
class Adj:
    """How a node's adjoint prints where it is used: a name (δ⁽²⁾, ∂E/∂out_h) or inline.

    ``one``: the adjoint is 1 (left out of products); ``scalar``: a number-like factor
    (1/n) that multiplies rather than ⊙; ``product``: ((left, left_transposed), (right,
    right_transposed)) when the adjoint is a product of two names, so a transpose can flip it.
    """

    tex: str
    value: object = None
    one: bool = False
    num: object = None
    scalar: bool = False
    product: tuple | None = None

    def numeric(self, ctx, tm):
        if self.num is not None:
            return self.num(tm)
        return ctx.mat(self.value, tm)


@dataclass
class Piece:
    """One term of an adjoint: its symbolic LaTeX, its numbers (fn of text_mode), an optional
    first form (g ⊙ σ′(net)) and note."""

    sym: str
    num: object = None
    first: str | None = None
    product: tuple | None = None
    scalar: bool = False
    note: str | None = None


def _g(up) -> str:
    return bracket(up.tex) if not up.one else ""


def _gnum(ctx, up):
    return lambda tm: bracket(up.numeric(ctx, tm))


def _times(factor_tex: str, up, scalar=False) -> str:
    """factor ⊙ g (or c g for a scalar factor c); 1 ⊙ g is g."""
    if up.one:
        return factor_tex
    if factor_tex == "1":
        return up.tex
    if scalar or up.scalar:
        return _scaled(factor_tex, up.tex) if not up.scalar else f"{up.tex} \\, {bracket(factor_tex)}"
    return bracket(up.tex) + ODOT + bracket(factor_tex)


def _scaled(factor: str, tex: str) -> str:
    """c g for a scalar factor c; -1 g is -g (was "-1 \\, 0.5", read as -10.5)."""
    if factor.strip() == "-1":
        return "-" + bracket(tex)
    return f"{factor} \\, {bracket(tex)}"


def _hadamard(expr, printer) -> str:
    """An elementwise product of arrays, written with ⊙ (numbers keep their ·)."""
    if isinstance(expr, sympy.Mul):
        coeff, factors = expr.as_coeff_mul()
        texs = [bracket(printer.doprint(f)) for f in factors]
        lead = "" if coeff == 1 else ("-" if coeff == -1 else printer.doprint(coeff) + r" \, ")
        return lead + ODOT.join(texs)
    return printer.doprint(expr)


def _unbroadcast(ctx, term, tex, num):
    """A broadcast operand (a bias row, a scalar) collects its share: Σ over the broadcast axes."""
    c, x = term.consumer, term.input
    lead = len(c.shape) - len(x.shape)
    axes = list(range(lead)) + [lead + a for a, d in enumerate(x.shape) if d == 1 and c.shape[lead + a] != 1]
    if not axes:
        return tex, num
    if len(axes) == len(c.shape):
        return r"\sum " + bracket(tex), (lambda tm: r"\sum " + bracket(num(tm))) if num else None
    over = axes_tex(c, axes)
    return r"\sum_{%s} %s" % (over, bracket(tex)), \
        ((lambda tm: r"\sum_{%s} %s" % (over, bracket(num(tm)))) if num else None)


def _map_rule(ctx, term, up) -> Piece:
    c, pos = term.consumer, term.position
    deriv = integral_floats(c.op.derivative(c, pos))
    names = {V[i]: ctx.ref(x) for i, x in enumerate(c.inputs)}
    names[Y] = ctx.ref(c)
    printer = TeachingPrinter(operand_names(names, deriv))
    local_value = None
    if ctx.values is not None:
        fn = sympy.lambdify(list(V[:len(c.inputs)]) + [Y], deriv, "numpy")
        args = [ctx.values.forward(x) for x in c.inputs] + [ctx.values.forward(c)]
        local_value = np.broadcast_to(np.asarray(fn(*args), dtype=float), np.shape(ctx.values.forward(c)))
    scalar = not (deriv.free_symbols - {V[i] for i, x in enumerate(c.inputs) if x.shape == ()})
    act = activation_of(c)
    first = None
    if scalar:                       # c·g: a scaling (1/√d_k), a mean's 1/n, a sum's 1
        coeff = scale_tex(deriv) if not deriv.free_symbols else None
        local = coeff or printer.doprint(deriv)
    else:
        local = _hadamard(factored(deriv, c.attrs["expr"]), printer)
        if act is not None:
            first = _times(activation_tex(act) + r"'\left(%s\right)" % ctx.ref(c.inputs[0]), up)
    sym = _times(local, up, scalar)

    def num(tm):
        if scalar and local_value is not None and np.all(local_value == local_value.flat[0]):
            factor = latex(float(local_value.flat[0]))
            if factor == "1" and not up.one:
                return up.numeric(ctx, tm)
            return factor if up.one else _scaled(factor, up.numeric(ctx, tm))
        parts = ([] if up.one else [bracket(up.numeric(ctx, tm))]) + [ctx.mat(local_value, tm)]
        return (r" \, " if up.scalar else ODOT).join(parts)
    sym, num = _unbroadcast(ctx, term, sym, num if ctx.values is not None else None)
    return Piece(sym, num, first, scalar=scalar and up.one)


def _transposed_ref(ctx, node) -> str:
    """Xᵀ; and for a node that is itself Yᵀ, just Y (never ᵀᵀ)."""
    if isinstance(node.op, Transpose) and last_two_swapped(node) and not ctx.names.label(node):
        return ctx.ref(node.inputs[0])
    if isinstance(node.op, Transpose) and last_two_swapped(node):
        return ctx.ref(node.inputs[0])
    return sup_base(ctx.ref(node)) + r"^{\top}"


def _product_rule(ctx, term, up) -> Piece:
    c, pos = term.consumer, term.position
    x, w = c.inputs[0], c.inputs[1]
    g = bracket(up.tex)
    gv = _gnum(ctx, up)
    if pos == 0:
        sym = rf"{g} \, {_transposed_ref(ctx, w)}"
        num = lambda tm: gv(tm) + r" \, " + ctx.mat(np.swapaxes(ctx.value(w), -1, -2), tm)  # noqa: E731
        product = ((up.tex, False), (ctx.ref(w), True))
    elif pos == 1:
        sym = rf"{_transposed_ref(ctx, x)} \, {g}"
        num = lambda tm: ctx.mat(np.swapaxes(ctx.value(x), -1, -2), tm) + r" \, " + gv(tm)  # noqa: E731
        product = ((ctx.ref(x), True), (up.tex, False))
    else:
        sym, num, product = rf"\sum_{{\mathrm{{rows}}}} {g}", (lambda tm: r"\sum_{\mathrm{rows}} " + gv(tm)), None
        return Piece(sym, num if ctx.values is not None else None)
    if up.one or len(term.input.shape) < len(c.shape) or ctx.values is None:
        num = num if ctx.values is not None else None
    return Piece(sym, num if ctx.values is not None else None, product=product)


def _transpose_rule(ctx, term, up) -> Piece:
    c = term.consumer
    if not last_two_swapped(c):     # heads split or merged: the same numbers, rearranged back
        return Piece(up.tex, (lambda tm: up.numeric(ctx, tm)) if ctx.values is not None else None, product=up.product)
    if up.product:
        (a, at), (b, bt) = up.product
        flip = ((b, not bt), (a, not at))
        sym = " \\, ".join((sup_base(t) + r"^{\top}") if tr else bracket(t) for t, tr in flip)
        return Piece(sym, None, product=flip)     # (Qᵀ g)ᵀ = gᵀ Q: its value says it; no nested product
    return Piece(sup_base(up.tex) + r"^{\top}",
                 (lambda tm: sup_base(up.numeric(ctx, tm)) + r"^{\top}") if ctx.values is not None else None)



def _passthrough(ctx, term, up) -> Piece:
    return Piece(up.tex, (lambda tm: up.numeric(ctx, tm)) if ctx.values is not None else None, product=up.product,
                 scalar=up.scalar)


def _reshape_rule(ctx, term, up) -> Piece:
    x, c = term.input, term.consumer
    if len(c.shape) == 2 and len(x.shape) > 2:     # back through a flatten
        shape = r" \times ".join(str(d) for d in x.shape[1:])
        return Piece(r"\operatorname{unflatten}_{%s}\left(%s\right)" % (shape, up.tex),
                     (lambda tm: r"\operatorname{unflatten}_{%s}\left(%s\right)" % (shape, up.numeric(ctx, tm)))
                     if ctx.values is not None else None)
    return _passthrough(ctx, term, up)


def _concat_rule(ctx, term, up) -> Piece:
    """Joining [1, y] (Boley's bias row): y's share is its block of columns (1-based)."""
    c, pos = term.consumer, term.position
    axis = c.attrs["axis"]
    start = sum(x.shape[axis] for x in c.inputs[:pos])
    stop = start + c.inputs[pos].shape[axis]
    lead = r":,\," * (len(c.shape) - 1 if axis == len(c.shape) - 1 else axis)
    cols = r"_{[%s%d:%d]}" % (lead, start + 1, stop)
    return Piece(bracket(up.tex) + cols, (lambda tm: bracket(up.numeric(ctx, tm)) + cols)
                 if ctx.values is not None else None)


def _sum_rule(ctx, term, up) -> Piece:
    """A sum hands its adjoint to every element it summed: 𝟙_n g along a summed axis."""
    c, x = term.consumer, term.input
    axes = [a for a in c.attrs["axes"] if x.shape[a] is not None]
    if not axes or up.one or len(c.attrs["axes"]) == len(x.shape):
        return _passthrough(ctx, term, up)       # a scalar's adjoint reaches every element
    n = int(np.prod([x.shape[a] for a in axes]))
    return Piece(_ones_times(n, bracket(up.tex)),
                 (lambda tm: _ones_times(n, bracket(up.numeric(ctx, tm))))
                 if ctx.values is not None else None)


#: a factor that starts with a number: 0.125, −1, 1/8 (a mean's scale)
_LEADING_NUMBER = re.compile(r"\s*(?:-\s*)?(?:\d|\\frac\{\d)")


def _ones_times(n: int, factor: str) -> str:
    """𝟙_n times ``factor``; when the factor starts with a number (a mean's 1/n, its 0.125),
    with an explicit ·: "𝟙_8 0.125 [⋯]" and "𝟙_8 1/8" read as one number (8 0.125, 8⅛)."""
    joiner = r" \cdot " if _LEADING_NUMBER.match(factor) else r" \, "
    return r"\mathbf{1}_{%d}%s%s" % (n, joiner, factor)


def _softmax_rule(ctx, term, up) -> Piece:
    """∂E/∂s = a ⊙ (g − Σ_k g_k a_k) per row, for a = softmax(s) and upstream g: the softmax
    Jacobian f_k(δ_kj − f_j) applied to g."""
    a = ctx.ref(term.consumer)
    g = bracket(up.tex)
    sym = rf"{a}{ODOT}\left({g} - \sum_{{\mathrm{{cols}}}} {g}{ODOT}{a}\right)"
    return Piece(sym, (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None,
                 note=r"The softmax Jacobian is $\partial a_k/\partial s_j = a_k(\delta_{kj} - a_j)$; applied to a "
                      r"row $g$ it gives $a \odot (g - \sum_k g_k a_k)$.")


def _log_softmax_rule(ctx, term, up) -> Piece:
    g = bracket(up.tex)
    p = r"\operatorname{softmax}\left(%s\right)" % ctx.ref(term.input)
    return Piece(rf"{g} - {p}{ODOT}\sum_{{\mathrm{{cols}}}} {g}",
                 (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None)


def _softmax_ce_rule(ctx, term, up) -> Piece:
    if term.position != 0:
        return None
    z, t = term.consumer.inputs
    diff = rf"p - {ctx.ref(t)}"
    p_value = None
    if ctx.values is not None:
        p_node = next(n for n in term.contribution.inputs if isinstance(n.op, Softmax))
        p_value = ctx.values.all[p_node]

    def num(tm):
        inner = ctx.mat(p_value, tm) + " - " + ctx.mat(ctx.value(t), tm)
        if up.one:
            return inner
        return bracket(up.numeric(ctx, tm)) + (r" \, " if up.scalar else ODOT) + r"\left(" + inner + r"\right)"
    sym = diff if up.one else (up.tex + r" \left(" + diff + r"\right)" if up.scalar
                               else bracket(up.tex) + ODOT + r"\left(" + diff + r"\right)")
    return Piece(sym, num if ctx.values is not None else None,
                 first=None, note=r"With $p = \operatorname{softmax}(%s)$, the fused softmax cross-entropy "
                                  r"$-\sum_k t_k \log p_k$ gives $p - t$:" % ctx.ref(z))


def _conv_rule(ctx, term, up) -> Piece:
    c, pos = term.consumer, term.position
    x, K = c.inputs[0], c.inputs[1]
    g = bracket(up.tex)
    value = (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None
    if pos == 0:
        return Piece(rf"{g} \ast_{{\mathrm{{full}}}} {ctx.ref(K)}", value,
                     note=r"Through a convolution: $\ast_{\mathrm{full}}$ is the full convolution, i.e. the "
                          r"cross-correlation of the zero-padded $\delta$ with the kernel rotated by 180°.")
    if pos == 1:
        return Piece(rf"{bracket(ctx.ref(x))} \star {g}", value,
                     note=r"$\star$ is cross-correlation: each kernel weight meets every input position it "
                          r"touched, summed over the batch.")
    return Piece(r"\sum_{\mathrm{rows},\,i,\,j} %s" % g, value)


def _pool_size(c):
    kh, kw = c.attrs["size"]
    return kh, kw


def _maxpool_rule(ctx, term, up) -> Piece:
    c = term.consumer
    kh, kw = _pool_size(c)
    a = ctx.ref(c.inputs[0])
    return Piece(r"\mathbf{1}\left[%s = \max_{\mathrm{window}}\right] \odot \operatorname{up}_{%d \times %d}\left(%s\right)"
                 % (a, kh, kw, up.tex),
                 (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None,
                 note=r"Max-pooling routes each $\delta$ back to the position that won its window "
                      r"($\operatorname{up}$ repeats it over the window, $\mathbf{1}[\cdot]$ keeps the winner).")


def _avgpool_rule(ctx, term, up) -> Piece:
    kh, kw = _pool_size(term.consumer)
    return Piece(r"\frac{1}{%d} \operatorname{up}_{%d \times %d}\left(%s\right)" % (kh * kw, kh, kw, up.tex),
                 (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None,
                 note="Average pooling spreads each gradient evenly over its window.")


def _dropout_rule(ctx, term, up) -> Piece:
    if term.position != 0:
        return None
    c = term.consumer
    from ..notation import number_latex
    m = r"\frac{m}{1 - %s}" % number_latex(c.attrs["rate"]) if c.attrs.get("scale", True) else "m"
    return Piece(bracket(up.tex) + ODOT + m,
                 (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None)


def _max_rule(ctx, term, up) -> Piece:
    x = ctx.ref(term.input)
    return Piece(r"\mathbf{1}\left[%s = \max %s\right] \odot %s" % (x, x, bracket(up.tex)),
                 (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None)


def generic_rule(ctx, term, up) -> Piece:
    """An op without a rule: the row vector g times the Jacobian ∂y/∂x."""
    c = term.consumer
    jac = r"\frac{\partial %s}{\partial %s}" % (ctx.ref(c), ctx.ref(term.input))
    return Piece(rf"{bracket(up.tex)} \, {jac}",
                 (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None)


#: op class -> rule(ctx, term, upstream Adj) -> Piece (None: use `generic_rule`)
TERM_RULES = OpTable("a matrix-view term rule", {
    Map: _map_rule, Linear: _product_rule, MatMul: _product_rule, Transpose: _transpose_rule,
    Reshape: _reshape_rule, Concat: _concat_rule, Sum: _sum_rule, Softmax: _softmax_rule,
    LogSoftmax: _log_softmax_rule, SoftmaxCrossEntropy: _softmax_ce_rule, Conv2D: _conv_rule,
    MaxPool2D: _maxpool_rule, AvgPool2D: _avgpool_rule, Dropout: _dropout_rule, GaussianNoise: _passthrough,
    Index: _passthrough, StopGradient: _passthrough, Max: _max_rule, Count: _passthrough,
})
