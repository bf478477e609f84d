"""Losses from the course, composed of catalog ops (so their gradients come for free).

Each builds a per-element loss (a Map node; name its elements, e.g. E_o1, E_o2) and
reduces it: 'sum' over everything, 'mean' over everything, 'batch_mean' (sum over the
features, mean over the batch: the usual training loss) or 'none'.
"""
from __future__ import annotations

import sympy

from .ops import count, fmap, softmax_cross_entropy as _sce, sum as sum_
from .ops.elementwise import div

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


def _elementwise_loss(expr, fn, y, t, reduction, name, element_names, dexpr=None, compute=None):
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
    return _elementwise_loss(-_t * sympy.log(_y), "−t log p", p, t, reduction, name, element_names)


def binary_cross_entropy(p, t, *, reduction="mean", name="BCE", element_names=None):
    """−(t log p + (1 − t) log(1 − p)) on probabilities p."""
    return _elementwise_loss(-(_t * sympy.log(_y) + (1 - _t) * sympy.log(1 - _y)), "BCE", p, t,
                             reduction, name, element_names)


def kl_divergence(q, p, *, reduction="batch_mean", name="KL", element_names=None):
    """KL(p ‖ q) = Σ p log(p / q): targets p, model distribution q (the course's KL error)."""
    # 0 · log 0 = 0: targets with zeros (one-hot) are fine
    safe = sympy.Piecewise((0, sympy.Eq(_t, 0)), (_t * (sympy.log(_t) - sympy.log(_y)), True))
    return _elementwise_loss(_t * (sympy.log(_t) - sympy.log(_y)), "p log(p/q)", q, p, reduction,
                             name, element_names, compute=safe)


def softmax_cross_entropy(logits, t, *, reduction="batch_mean", name="CE"):
    """Cross-entropy of softmax(logits) against t, fused: stable value, gradient p − t."""
    return _reduce(_sce(logits, t), reduction, name)
