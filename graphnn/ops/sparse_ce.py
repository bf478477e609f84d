"""Softmax cross-entropy on class indices, fused, for any number of leading axes.

``sparse_softmax_cross_entropy(z, labels)``: z (…, C) logits, labels (…) class indices;
per position −log softmax(z)[label] = logsumexp(z) − z[label], computed stably. Its
gradient is p − onehot(label) per position (p = softmax(z)), built elementwise from the
label and the class index — no one-hot tensor, no one-hot matmul. Over a sequence (B, T, C)
it is the language model's per-token loss; over a similarity matrix (B, B) with labels
0…B−1 (`row_numbers`) it is CLIP's InfoNCE, whose gradient is softmax − I.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import FeedError, GradientError, ShapeError
from .base import Op, apply, describe, fmt_shape
from .nn import softmax
from .structure import expand


def _labels(node, labels, classes):
    idx = np.asarray(labels).astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= classes or np.any(idx != np.asarray(labels))):
        raise FeedError(f"{node.op.name} {describe(node)}: labels must be class indices 0..{classes - 1}, got "
                        f"{np.min(labels):g}..{np.max(labels):g}")
    return idx


def _check(z, labels):
    if not z or z[-1] is None:
        raise ShapeError(f"logits need a fixed class axis last, got {fmt_shape(z)}")
    if tuple(labels) != tuple(z[:-1]):
        raise ShapeError(f"labels {fmt_shape(labels)} must be the logits {fmt_shape(z)} without their class axis")


class SparseSoftmaxCrossEntropy(Op):
    """loss[…] = logsumexp(z[…, :]) − z[…, labels[…]]: inputs (z, labels)."""

    name = "sparse_softmax_cross_entropy"
    nondiff_inputs = (1,)

    def infer_shape(self, shapes, attrs):
        z, labels = shapes
        _check(z, labels)
        return tuple(labels)

    def reference(self, node, z, labels):
        idx = _labels(node, labels, z.shape[-1])
        zmax = np.max(z, axis=-1, keepdims=True)
        lse = np.log(np.sum(np.exp(z - zmax), axis=-1)) + zmax[..., 0]
        return lse - np.take_along_axis(z, idx[..., None], axis=-1)[..., 0]

    def vjp(self, node, g):
        z, labels = node.inputs
        ge = expand(g, z, (z.ndim - 1,))
        return [apply(SparseSoftmaxCEGrad.instance(), [ge, softmax(z), labels]), None]

    def element_expr(self, node, index, sym, batch):
        n = node.inputs[0].shape[-1]
        zs = [sym(0, tuple(index) + (k,)) for k in range(n)]
        label = sym(1, tuple(index))
        lse = sympy.log(sympy.Add(*[sympy.exp(v) for v in zs]))
        return lse - sympy.Add(*[sympy.Piecewise((zk, sympy.Eq(label, k)), (0, True)) for k, zk in enumerate(zs)])

    def label(self, node):
        return "softmax CE (labels)"


class SparseSoftmaxCEGrad(Op):
    """∂ of the above: inputs (g expanded to (…, C), p = softmax(z), labels);
    out[…, c] = g[…, c] · (p[…, c] − [labels[…] = c])."""

    name = "sparse_softmax_ce_grad"
    nondiff_inputs = (2,)

    def infer_shape(self, shapes, attrs):
        g, p, labels = shapes
        if tuple(g) != tuple(p):
            raise ShapeError(f"the cotangent {fmt_shape(g)} must be shaped like the probabilities {fmt_shape(p)}")
        _check(p, labels)
        return tuple(p)

    def reference(self, node, g, p, labels):
        idx = _labels(node, labels, p.shape[-1])
        onehot = (np.arange(p.shape[-1]) == idx[..., None]).astype(p.dtype)
        return g * (p - onehot)

    def vjp(self, node, g):
        raise GradientError(f"no second derivatives of the fused softmax cross-entropy ({self.name})")

    def element_expr(self, node, index, sym, batch):
        c = index[-1]
        hit = sympy.Piecewise((1, sympy.Eq(sym(2, tuple(index[:-1])), c)), (0, True))
        return sym(0, tuple(index)) * (sym(1, tuple(index)) - hit)

    def label(self, node):
        return "p − onehot"


def sparse_softmax_cross_entropy(logits, labels, name=None):
    """Per-position −log softmax(logits)[label]; labels have the logits' shape without the
    class axis (a sequence's (B, T) against (B, T, C))."""
    return apply(SparseSoftmaxCrossEntropy.instance(), [logits, labels], name=name)


class RowNumbers(Op):
    """0, 1, …, B − 1 along the batch axis of ``x`` (read for its shape): the labels of a
    batch whose i-th row belongs with the i-th column (CLIP's pairs, the diagonal)."""

    name = "row_numbers"
    nondiff_inputs = (0,)

    def infer_shape(self, shapes, attrs):
        (s,) = shapes
        if not s:
            raise ShapeError("row numbers need an operand with at least one axis")
        return (s[0],)

    def reference(self, node, x):
        return np.arange(x.shape[0], dtype=np.float64)

    def vjp(self, node, g):
        return [None]

    def element_expr(self, node, index, sym, batch):
        return sympy.Integer(index[0])

    def label(self, node):
        return "0, 1, …, B−1"


def row_numbers(x, name=None):
    """The vector (0, 1, …, B − 1) of x's first axis, known at run time."""
    return apply(RowNumbers.instance(), [x], name=name)
