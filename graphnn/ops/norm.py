"""Layer normalisation: x̂ = (x − μ)/√(σ² + ε) over the last axis, then a learnable γ ⊙ x̂ + β.

`layer_norm` is two nodes: the `Standardize` op (x̂, no parameters) and one elementwise
γ ⊙ x̂ + β, so the gain's and the bias's gradients are the elementwise rule (Σ g ⊙ x̂ and
Σ g) and the standardisation's gradient is the known compact form, one op of its own:

    ∂L/∂x = (1/σ) (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)),   ĝ = ∂L/∂x̂,  σ = √(var(x) + ε)

with the means over the last axis (never an n × n Jacobian per row).
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import GradientError, ShapeError
from .base import Op, apply, fmt_shape
from .elementwise import fmap
from .leaves import parameter

EPS = 1e-5


def _standardized(x, eps):
    """(x̂, 1/σ) of x over the last axis."""
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    return (x - mu) * inv, inv


def _row(sym, pos, index, n):
    return [sym(pos, tuple(index[:-1]) + (k,)) for k in range(n)]


def _standardize_expr(row, j, eps):
    n = len(row)
    mu = sympy.Add(*row) / n
    var = sympy.Add(*[(v - mu) ** 2 for v in row]) / n
    return (row[j] - mu) / sympy.sqrt(var + sympy.Float(eps)), mu, var


class Standardize(Op):
    """x̂ = (x − μ)/√(σ² + ε), μ and σ² the mean and variance of x's last axis (attr ``eps``)."""

    name = "standardize"

    def infer_shape(self, shapes, attrs):
        (s,) = shapes
        if not s or s[-1] is None:
            raise ShapeError(f"layer norm needs a fixed last axis to normalise over, got {fmt_shape(s)}")
        return s

    def reference(self, node, x):
        return _standardized(x, node.attrs["eps"])[0]

    def vjp(self, node, g):
        return [apply(StandardizeGrad.instance(), [g, node.inputs[0]], dict(node.attrs))]

    def element_expr(self, node, index, sym, batch):
        row = _row(sym, 0, index, node.shape[-1])
        return _standardize_expr(row, index[-1], node.attrs["eps"])[0]

    def label(self, node):
        return "(x − μ)/σ"


class StandardizeGrad(Op):
    """The compact gradient of `Standardize`: inputs (ĝ, x), attr ``eps``;
    (1/σ)(ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)) over the last axis."""

    name = "standardize_grad"

    def infer_shape(self, shapes, attrs):
        g, x = shapes
        if tuple(g) != tuple(x):
            raise ShapeError(f"the cotangent {fmt_shape(g)} must be shaped like x {fmt_shape(x)}")
        return x

    def reference(self, node, g, x):
        xhat, inv = _standardized(x, node.attrs["eps"])
        mean_g = np.mean(g, axis=-1, keepdims=True)
        mean_gx = np.mean(g * xhat, axis=-1, keepdims=True)
        return inv * (g - mean_g - xhat * mean_gx)

    def vjp(self, node, g):
        raise GradientError("layer norm's gradient is not differentiated again (no second derivatives of "
                            f"{self.name})")

    def element_expr(self, node, index, sym, batch):
        n = node.shape[-1]
        gs, xs = _row(sym, 0, index, n), _row(sym, 1, index, n)
        eps = node.attrs["eps"]
        xhat = [_standardize_expr(xs, k, eps)[0] for k in range(n)]
        _, mu, var = _standardize_expr(xs, 0, eps)
        mean_g = sympy.Add(*gs) / n
        mean_gx = sympy.Add(*[a * b for a, b in zip(gs, xhat)]) / n
        j = index[-1]
        return (gs[j] - mean_g - xhat[j] * mean_gx) / sympy.sqrt(var + sympy.Float(eps))

    def label(self, node):
        return "∂ layer norm"


def standardize(x, eps=EPS, name=None):
    """x̂ = (x − μ)/√(σ² + ε) over the last axis (layer norm without its gain and bias)."""
    if not float(eps) > 0:
        raise ValueError(f"layer norm: eps must be > 0, got {eps}")
    return apply(Standardize.instance(), [x], {"eps": float(eps)}, name=name)


def layer_norm(x, gain=None, bias=None, *, eps=EPS, name="ln"):
    """Layer normalisation γ ⊙ (x − μ)/√(σ² + ε) + β over the last axis (Ba et al. 2016).

    ``gain`` γ and ``bias`` β: parameter nodes of shape (D,), or None for new ones named
    ``<name>.γ`` (ones) and ``<name>.β`` (zeros). The standardised x̂ is the node
    ``<name>.x̂``; the result is called ``name``.
    """
    d = x.shape[-1] if x.shape else None
    gain = parameter(f"{name}.γ", np.ones(d)) if gain is None else gain
    bias = parameter(f"{name}.β", np.zeros(d)) if bias is None else bias
    for what, p in (("gain", gain), ("bias", bias)):
        if tuple(p.shape) != (d,):
            raise ShapeError(f"layer norm {name!r}: the {what} must have shape ({d},), got {fmt_shape(p.shape)}")
    xhat = standardize(x, eps, name=f"{name}.x̂")
    v, g, b = sympy.symbols("x̂ γ β")
    return fmap(g * v + b, {v: xhat, g: gain, b: bias}, fn="γ⊙x̂+β", name=name)
