"""Losses from the course, composed of catalog ops (so their gradients come for free).

Each builds a per-element loss (a Map node; name its elements, e.g. E_o1, E_o2) and
reduces it: 'sum' over everything, 'mean' over everything, 'batch_mean' (sum over the
features, mean over the batch: the usual training loss) or 'none'.

Targets of one axis fewer than the output are labels, as torch and Keras take them: class
indices for the cross-entropy losses (an input ``(None,)`` against logits ``(None, C)``, or
``(None, T)`` against a sequence's ``(None, T, C)``: the fused op on indices for softmax
cross-entropy, one-hot inside the graph for the others), one value per example against a
one-unit output ``(None, 1)``.
"""
from __future__ import annotations

import numpy as np
import sympy
from sympy.codegen.cfunctions import log1p

from .errors import ShapeError
from .ops import constant, count, fmap, reshape, softmax_cross_entropy as _sce, sum as sum_
from .ops.base import describe, fmt_shape
from .ops.elementwise import div
from .ops.sparse_ce import sparse_softmax_cross_entropy as _sparse_sce

_y, _t = sympy.symbols("y t")


def _reduce(e, reduction, name):
    if reduction == "none":
        return e
    if reduction == "sum":
        return sum_(e, name=name)
    if reduction == "mean":
        return div(sum_(e), count(e, range(e.ndim)), name=name)
    if reduction == "batch_mean":
        if e.shape and e.shape[0] is None:
            return div(sum_(e), count(e, (0,)), name=name)
        return sum_(e, name=name)
    raise ValueError(f"reduction must be 'sum', 'mean', 'batch_mean' or 'none', not {reduction!r}")


def one_hot(labels, classes, name=None):
    """Class indices (…,) → one-hot rows (…, classes), in the graph (no gradient flows to labels)."""
    lab, k = sympy.symbols("l k")
    rows = reshape(labels, tuple(labels.shape) + (1,))
    return fmap(sympy.Piecewise((1, sympy.Eq(lab, k)), (0, True)),
                {lab: rows, k: constant(np.arange(classes, dtype=float), name=f"{name or 'labels'}.classes")},
                fn="one-hot", name=name, dexprs={lab: sympy.Integer(0), k: sympy.Integer(0)})


def _targets(y, t, classes_ok, what):
    """``t`` as ``y``'s shape: labels (one axis fewer) become one-hot rows (cross-entropy) or a column."""
    if t.ndim != y.ndim - 1:
        return t
    if y.shape[-1] == 1:
        return reshape(t, tuple(t.shape) + (1,))
    if not classes_ok:
        raise ShapeError(f"{what}: targets {t.name or 't'} {t.shape} have one axis fewer than the output "
                         f"{y.shape}; class-index labels suit the cross-entropy losses only")
    return one_hot(t, y.shape[-1], name=f"{t.name or 't'}.one_hot")


def _same_shape(y, t, what):
    """Output and target must match element for element: a (None, 2) output against a
    (None, 1) target broadcast into a loss over made-up pairs and trained without a word.
    A scalar target (regress everything to 0) is the one broadcast that means something."""
    if t.shape != () and tuple(t.shape) != tuple(y.shape):
        raise ShapeError(f"{what}: the output {describe(y)} has shape {fmt_shape(y.shape)} but the target "
                         f"{describe(t)} has shape {fmt_shape(t.shape)}; a loss compares them element by "
                         "element, so they must match (is the output layer's width right?)")


def _elementwise_loss(expr, fn, y, t, reduction, name, element_names, dexpr=None, compute=None,
                      classes_ok=False):
    t = _targets(y, t, classes_ok, name or fn)
    _same_shape(y, t, name or fn)
    e = fmap(expr, {_y: y, _t: t}, fn=fn, names=element_names,
             name=None if reduction == "none" else f"{name}_elements" if name else None,
             dexprs=None if dexpr is None else {_y: dexpr}, compute=compute)
    return _reduce(e, reduction, name)


def quadratic(y, t, *, reduction="sum", name="E", element_names=None):
    """½ Σ (t − y)²: the course's E_total (Mazur), with ∂E/∂y = −(t − y)."""
    return _elementwise_loss((_t - _y) ** 2 / 2, "½(t−y)²", y, t, reduction, name, element_names,
                             dexpr=-(_t - _y))


def mse(y, t, *, reduction="mean", name="MSE", element_names=None):
    """Mean squared error (1/n) Σ (y − t)²."""
    return _elementwise_loss((_y - _t) ** 2, "(y−t)²", y, t, reduction, name, element_names)


def mae(y, t, *, reduction="mean", name="MAE", element_names=None):
    """Mean absolute error (1/n) Σ |y − t| (gradient sign(y − t))."""
    return _elementwise_loss(sympy.Abs(_y - _t), "|y−t|", y, t, reduction, name, element_names,
                             dexpr=sympy.sign(_y - _t))


def cross_entropy(p, t, *, reduction="batch_mean", name="CE", element_names=None):
    """−Σ t log p on probabilities p (use softmax_cross_entropy on logits when training)."""
    return _elementwise_loss(-_t * sympy.log(_y), "−t log p", p, t, reduction, name, element_names,
                             classes_ok=True)


def binary_cross_entropy(p, t, *, reduction="mean", name="BCE", element_names=None):
    """−(t log p + (1 − t) log(1 − p)) on probabilities p."""
    return _elementwise_loss(-(_t * sympy.log(_y) + (1 - _t) * sympy.log(1 - _y)), "BCE", p, t,
                             reduction, name, element_names)


def binary_cross_entropy_with_logits(z, t, *, reduction="mean", name="BCE", element_names=None):
    """BCE of sigmoid(z) against t ∈ {0, 1}, on logits z: log(1 + eᶻ) − t z, stable, ∂/∂z = σ(z) − t."""
    stable = sympy.Max(_y, 0) - _t * _y + log1p(sympy.exp(-sympy.Abs(_y)))
    return _elementwise_loss(sympy.log(1 + sympy.exp(_y)) - _t * _y, "BCE(logits)", z, t, reduction, name,
                             element_names, dexpr=1 / (1 + sympy.exp(-_y)) - _t, compute=stable)


def kl_divergence(q, p, *, reduction="batch_mean", name="KL", element_names=None):
    """KL(p ‖ q) = Σ p log(p / q): targets p, model distribution q (the course's KL error)."""
    # 0 · log 0 = 0: targets with zeros (one-hot) are fine
    safe = sympy.Piecewise((0, sympy.Eq(_t, 0)), (_t * (sympy.log(_t) - sympy.log(_y)), True))
    return _elementwise_loss(_t * (sympy.log(_t) - sympy.log(_y)), "p log(p/q)", q, p, reduction,
                             name, element_names, compute=safe)


def softmax_cross_entropy(logits, t, *, reduction="batch_mean", name="CE"):
    """Cross-entropy of softmax(logits) against t, fused: stable value, gradient p − t.

    ``t``: one-hot (or soft) rows like the logits, or class indices with one axis fewer
    (then the fused op on indices, gradient p − onehot without a one-hot tensor)."""
    if t.ndim == logits.ndim - 1 and logits.shape[-1] != 1:
        return _reduce(_sparse_sce(logits, t), reduction, name)
    return _reduce(_sce(logits, _targets(logits, t, True, name)), reduction, name)
