"""Softmax, log-softmax and the fused softmax cross-entropy (over the last axis).

The fused op is what training uses: its value is computed through log-softmax (stable)
and its gradient is the simple p − t, never an exploded softmax Jacobian.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import ShapeError
from .base import Op, apply
from .elementwise import activation_of, fmap
from .structure import expand, sum as sum_


def _log_softmax(x):
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _nonempty_rows(shape, what):
    """The last axis that softmax normalises over must hold at least one element."""
    if not shape or shape[-1] == 0:
        raise ShapeError(f"{what} normalises over the last axis, which is "
                         f"{'missing (a 0-d operand)' if not shape else 'of size 0'}")
    return shape


def _row(index, sym, node, batch):
    n = node.inputs[0].shape[-1]
    return [sym(0, index[:-1] + (k,)) for k in range(n)]


class Softmax(Op):
    name = "softmax"

    def infer_shape(self, shapes, attrs):
        return _nonempty_rows(shapes[0], "softmax")

    def reference(self, node, x):
        return np.exp(_log_softmax(x))

    def vjp(self, node, g):
        y, gs, ss, ys = node, *sympy.symbols("g s y")
        s = sum_(fmap(gs * ys, {gs: g, ys: y}, fn="g·y"), -1, keepdims=True)
        return [fmap(ys * (gs - ss), {ys: y, gs: g, ss: s}, fn="∂softmax")]

    def element_expr(self, node, index, sym, batch):
        row = _row(index, sym, node, batch)
        return sympy.exp(row[index[-1]]) / sympy.Add(*[sympy.exp(v) for v in row])

    def element_partial(self, node, index, pos, in_index, sym, out, batch):
        # ∂y_j/∂x_k = y_j (δ_jk − y_k), in the output's own names
        same = in_index[-1] == index[-1]
        return out(index) * ((1 if same else 0) - out(index[:-1] + (in_index[-1],)))


class LogSoftmax(Op):
    name = "log_softmax"

    def infer_shape(self, shapes, attrs):
        return _nonempty_rows(shapes[0], "log-softmax")

    def reference(self, node, x):
        return _log_softmax(x)

    def vjp(self, node, g):
        gs, ss, ys = sympy.symbols("g s y")
        s = sum_(g, -1, keepdims=True)
        return [fmap(gs - sympy.exp(ys) * ss, {gs: g, ys: node, ss: s}, fn="∂log_softmax")]

    def element_expr(self, node, index, sym, batch):
        row = _row(index, sym, node, batch)
        return row[index[-1]] - sympy.log(sympy.Add(*[sympy.exp(v) for v in row]))


class SoftmaxCrossEntropy(Op):
    """−Σ_k t_k log softmax(z)_k per example: logits z and targets t, last axis reduced."""

    name = "softmax_cross_entropy"

    def infer_shape(self, shapes, attrs):
        from .base import broadcast_shapes

        full = _nonempty_rows(broadcast_shapes(*shapes), "softmax cross-entropy")
        return full[:-1]

    def reference(self, node, z, t):
        return -np.sum(t * _log_softmax(z), axis=-1)

    def vjp(self, node, g):
        z, t = node.inputs
        gs, ps, ts, ls = sympy.symbols("g p t l")
        ge = expand(g, z, (z.ndim - 1,))
        # ∂/∂z of −Σ t log softmax(z) is p·Σt − t: the familiar p − t when targets sum to 1
        # (one-hot, label smoothing), and still right when they do not.
        ss = sympy.Symbol("s")
        total = sum_(t, -1, keepdims=True)
        dz = fmap(gs * (ps * ss - ts), {gs: ge, ps: softmax(z), ss: total, ts: t}, fn="p·Σt − t")
        dt = fmap(-gs * ls, {gs: ge, ls: log_softmax(z)}, fn="−log p")
        return [dz, dt]

    def element_expr(self, node, index, sym, batch):
        z, t = node.inputs
        n = z.shape[-1]
        zs = [sym(0, index + (k,)) for k in range(n)]
        ts = [sym(1, index + (k,)) for k in range(n)]
        lse = sympy.log(sympy.Add(*[sympy.exp(v) for v in zs]))
        return -sympy.Add(*[tk * (zk - lse) for tk, zk in zip(ts, zs)])


def softmax(x, name=None, names=None):
    return apply(Softmax.instance(), [x], name=name, names=names)


def log_softmax(x, name=None, names=None):
    return apply(LogSoftmax.instance(), [x], name=name, names=names)


def softmax_cross_entropy(logits, targets, name=None):
    return apply(SoftmaxCrossEntropy.instance(), [logits, targets], name=name)


def output_bounds(node):
    """(low, high) of the values ``node`` can take when its op bounds them — a registered
    activation with ``bounds`` (sigmoid (0, 1), tanh and sign (−1, 1)) or softmax (0, 1) —
    else None (a linear output: logits, regression values)."""
    if isinstance(node.op, Softmax):
        return (0, 1)
    act = activation_of(node)
    return None if act is None else act.bounds
