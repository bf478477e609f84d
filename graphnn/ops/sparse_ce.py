"""Softmax cross-entropy on class indices, fused, for any number of leading axes.

``sparse_softmax_cross_entropy(z, labels)``: z (…, C) logits, labels (…) class indices;
per position −log softmax(z)[label] = logsumexp(z) − z[label], computed stably. Its
gradient is g·(p − onehot(label)) per position (p = softmax(z)), one op that compares the
label with the class index in one pass over each row of z — no one-hot tensor, no one-hot
matmul, no separate softmax. Over a sequence (B, T, C) it is the language model's per-token
loss; over a similarity matrix (…, n, n) with labels 0…n−1 (`row_numbers`) it is CLIP's
InfoNCE, whose gradient is softmax − I.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import GradientError, ShapeError
from .base import Op, apply, fmt_shape
from .embedding import index_array


def _labels(node, labels, classes):
    return index_array(node, labels, classes, "labels must be class indices")


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
        return [apply(SparseSoftmaxCEGrad.instance(), [g, z, labels]), None]

    def element_expr(self, node, index, sym, batch):
        n = node.inputs[0].shape[-1]
        zs = [sym(0, tuple(index) + (k,)) for k in range(n)]
        label = sym(1, tuple(index))
        lse = sympy.log(sympy.Add(*[sympy.exp(v) for v in zs]))
        return lse - sympy.Add(*[sympy.Piecewise((zk, sympy.Eq(label, k)), (0, True)) for k, zk in enumerate(zs)])

    def label(self, node):
        return "softmax CE (labels)"


class SparseSoftmaxCEGrad(Op):
    """∂ of the above: inputs (g (…), z (…, C), labels (…));
    out[…, c] = g[…] · (softmax(z[…])_c − [labels[…] = c]), one pass over each row of z."""

    name = "sparse_softmax_ce_grad"
    nondiff_inputs = (2,)

    def infer_shape(self, shapes, attrs):
        g, z, labels = shapes
        _check(z, labels)
        if tuple(g) != tuple(labels):
            raise ShapeError(f"the cotangent {fmt_shape(g)} must be shaped like the labels {fmt_shape(labels)}")
        return tuple(z)

    def reference(self, node, g, z, labels):
        idx = _labels(node, labels, z.shape[-1])
        e = np.exp(z - np.max(z, axis=-1, keepdims=True))
        onehot = (np.arange(z.shape[-1]) == idx[..., None]).astype(z.dtype)
        return g[..., None] * (e / np.sum(e, axis=-1, keepdims=True) - onehot)

    def vjp(self, node, g):
        raise GradientError(f"no second derivatives of the fused softmax cross-entropy ({self.name})")

    def element_expr(self, node, index, sym, batch):
        n, c, row = node.shape[-1], index[-1], tuple(index[:-1])
        zs = [sym(1, row + (k,)) for k in range(n)]
        hit = sympy.Piecewise((1, sympy.Eq(sym(2, row), c)), (0, True))
        return sym(0, row) * (sympy.exp(zs[c]) / sympy.Add(*[sympy.exp(v) for v in zs]) - hit)

    def label(self, node):
        return "g·(softmax − onehot)"


def sparse_softmax_cross_entropy(logits, labels, name=None):
    """Per-position −log softmax(logits)[label]; labels have the logits' shape without the
    class axis (a sequence's (B, T) against (B, T, C))."""
    return apply(SparseSoftmaxCrossEntropy.instance(), [logits, labels], name=name)


class RowNumbers(Op):
    """0, 1, …, n − 1 along axis ``axis`` of ``x`` (read for its shape), shaped like x's axes up
    to ``axis``: the labels of rows that belong with the column of their own number (CLIP's
    pairs, the diagonal of a similarity matrix)."""

    name = "row_numbers"
    nondiff_inputs = (0,)

    def infer_shape(self, shapes, attrs):
        (s,) = shapes
        axis = attrs["axis"]
        if not 0 <= axis < len(s):
            raise ShapeError(f"row numbers along axis {axis} of a {len(s)}-d operand")
        return tuple(s[:axis + 1])

    def reference(self, node, x):
        axis = node.attrs["axis"]
        shape = x.shape[:axis + 1]
        return np.broadcast_to(np.arange(shape[-1], dtype=np.float64), shape).copy()

    def vjp(self, node, g):
        return [None]

    def element_expr(self, node, index, sym, batch):
        return sympy.Integer(index[-1])

    def label(self, node):
        return "0, 1, …, n−1"


def row_numbers(x, axis=0, name=None):
    """(0, 1, …, n − 1) along ``axis`` of x (n known at run time for the batch axis), shaped
    x.shape[:axis + 1]: ``row_numbers(z, axis=1)`` of a (B, n, n) similarity matrix is its
    diagonal's labels."""
    return apply(RowNumbers.instance(), [x], {"axis": int(axis) % max(x.ndim, 1)}, name=name)
