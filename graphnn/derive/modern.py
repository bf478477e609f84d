"""The Transformer-era ops in the derivations: their forward formulas and matrix-view rules.

    embedding           e = E[ids]                  ∂L/∂E_v = Σ_{p : ids_p = v} g_p   (a scatter-add)
    positional enc.     x + PE                      g passes through
    layer norm (x̂)      x̂ = (x − μ)/σ               ∂L/∂x = (1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂))
    softmax CE (labels) −log softmax(z)_y          ∂L/∂z = softmax(z) − onehot(y); with y = (0…n−1)
                                                    along a similarity matrix: softmax(z) − I
    row numbers         (0, 1, …, n − 1)

Registered in `formulas.FORMULAS` and `matrix_rules.TERM_RULES` by op class, like every op.
"""
from __future__ import annotations

from ..ops import Embedding, PositionalEncoding, RowNumbers, SparseSoftmaxCrossEntropy, Standardize
from .formulas import FORMULAS, bracket
from .matrix_rules import ODOT, TERM_RULES, Piece

SOFTMAX = r"\operatorname{softmax}"


def _embedding(node, args, f):
    return r"%s_{[%s]}" % (f.ref(node.inputs[1]), f.ref(node.inputs[0]))


def _standardize(node, args, f):
    return r"\frac{%s - \mu}{\sigma}" % bracket(args[0])


def _labels_tex(f, labels) -> str:
    return r"\mathbf{I}" if isinstance(labels.op, RowNumbers) else r"\operatorname{onehot}\left(%s\right)" % f.ref(labels)


def _sparse_ce(node, args, f):
    return r"-\log %s\left(%s\right)_{%s}" % (SOFTMAX, args[0], f.ref(node.inputs[1]))


def _row_numbers(node, args, f):
    n = node.inputs[0].shape[node.attrs["axis"]]
    return r"\left(0, 1, \dots, %s\right)" % ("n - 1" if n is None else n - 1)


FORMULAS[Embedding] = _embedding
FORMULAS[PositionalEncoding] = lambda n, a, f: a[0] + r" + \mathrm{PE}"
FORMULAS[Standardize] = _standardize
FORMULAS[SparseSoftmaxCrossEntropy] = _sparse_ce
FORMULAS[RowNumbers] = _row_numbers


# -- matrix-view rules ----------------------------------------------------------------------------

def _value(ctx, term):
    return (lambda tm: ctx.mat(ctx.values.all[term.contribution], tm)) if ctx.values is not None else None


def _embedding_rule(ctx, term, up) -> Piece:
    if term.position != 1:
        return None
    ids = ctx.ref(term.consumer.inputs[0])
    return Piece(r"\sum_{p \,:\, {%s}_{p} = v} %s_{p}" % (ids, bracket(up.tex)), _value(ctx, term),
                 note=r"A lookup table picks rows: row $v$ of the table collects the gradient of every position "
                      r"$p$ whose id is $v$ (a scatter-add, no one-hot matrix).")


def _through(ctx, term, up) -> Piece:
    """x + PE: the gradient passes through unchanged."""
    return Piece(up.tex, (lambda tm: up.numeric(ctx, tm)) if ctx.values is not None else None, product=up.product,
                 scalar=up.scalar)


def _standardize_rule(ctx, term, up) -> Piece:
    xhat, g = ctx.ref(term.consumer), bracket(up.tex)
    mean = r"\overline{%s}"
    sym = r"\frac{1}{\sigma}\left(%s - %s - %s%s%s\right)" % (
        g, mean % g, bracket(xhat), ODOT, mean % (g + ODOT + bracket(xhat)))
    return Piece(sym, _value(ctx, term),
                 note=r"Layer norm's compact gradient: with $\hat{x} = (x - \mu)/\sigma$ per row ($\mu$, "
                      r"$\sigma^2 + \varepsilon$ its mean and variance) and $\overline{\cdot}$ the row mean, "
                      r"$\partial L/\partial x = \frac{1}{\sigma}\left(g - \overline{g} - \hat{x} \odot "
                      r"\overline{g \odot \hat{x}}\right)$ — no $n \times n$ Jacobian per row.")


def _sparse_ce_rule(ctx, term, up) -> Piece:
    if term.position != 0:
        return None
    z, labels = term.consumer.inputs
    diff = r"%s\left(%s\right) - %s" % (SOFTMAX, ctx.ref(z), _labels_tex(ctx.formulas, labels))
    if up.one:
        sym = diff
    elif up.scalar:
        sym = up.tex + r" \left(" + diff + r"\right)"
    else:
        sym = bracket(up.tex) + ODOT + r"\left(" + diff + r"\right)"
    note = (r"Softmax cross-entropy against the diagonal (row $i$ belongs with column $i$): "
            r"$\partial L/\partial z = \operatorname{softmax}(z) - \mathbf{I}$, row by row."
            if isinstance(labels.op, RowNumbers) else
            r"Softmax cross-entropy on class indices $y$: $\partial L/\partial z = "
            r"\operatorname{softmax}(z) - \operatorname{onehot}(y)$, position by position.")
    return Piece(sym, _value(ctx, term), note=note)


TERM_RULES[Embedding] = _embedding_rule
TERM_RULES[PositionalEncoding] = _through
TERM_RULES[Standardize] = _standardize_rule
TERM_RULES[SparseSoftmaxCrossEntropy] = _sparse_ce_rule
