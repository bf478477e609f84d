"""Basic indexing: ``x[:, 1:4]``, ``x[..., ::-1]``, ``x[0]`` — the `Index` op and its gradient.

An index is normalised once, when the node is built, to one entry per axis: ('i', k) for
an integer, ('s', start, stop, step) for a slice (the batch axis only whole). Both the
reference and the code generators index through `numpy_slice`.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import ShapeError
from .base import Op, apply, contiguous


# -- indexing --------------------------------------------------------------------------

def normalize_index(index, shape):
    """A basic NumPy index as a tuple of ('i', k) / ('s', start, stop, step) per axis."""
    index = index if isinstance(index, tuple) else (index,)
    if any(i is Ellipsis for i in index):
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (len(shape) - len(index) + 1) + index[k + 1:]
    if len(index) > len(shape):
        raise ShapeError(f"too many indices ({len(index)}) for a {len(shape)}-d operand")
    index = index + (slice(None),) * (len(shape) - len(index))
    spec = []
    for i, dim in zip(index, shape):
        if dim is None:
            if i != slice(None):
                raise ShapeError("the batch axis can only be taken whole (':')")
            spec.append(("s", None, None, None))
        elif isinstance(i, (int, np.integer)):
            if not -dim <= i < dim:
                raise ShapeError(f"index {i} is out of range for an axis of size {dim}")
            spec.append(("i", int(i) % dim))
        elif isinstance(i, slice):
            spec.append(("s",) + i.indices(dim))
        else:
            raise ShapeError(f"unsupported index {i!r}: use ints and slices")
    return tuple(spec)


def numpy_slice(k) -> slice:
    """The NumPy slice of a normalised ('s', start, stop, step) entry (what both backends index with).

    slice.indices() bounds can be -1, meaning "before the first element" (a negative step
    running through index 0, or an empty slice starting there); as a slice bound NumPy
    would read -1 as the last element.
    """
    _, start, stop, step = k
    if start is None:
        return slice(None)
    if not len(range(start, stop, step)):
        return slice(0, 0)
    return slice(start, None if stop < 0 else stop, step)


def _numpy_index(spec):
    return tuple(k[1] if k[0] == "i" else numpy_slice(k) for k in spec)


def _source_index(spec, out_index):
    """The operand element that output element ``out_index`` reads."""
    it, src = iter(out_index), []
    for k in spec:
        if k[0] == "i":
            src.append(k[1])
        else:
            o = next(it)
            src.append(o if k[1] is None else k[1] + o * k[3])
    return tuple(src)


class Index(Op):
    name = "index"

    def infer_shape(self, shapes, attrs):
        (s,), out = shapes, []
        for k, dim in zip(attrs["spec"], s):
            if k[0] == "s":
                out.append(None if dim is None else len(range(k[1], k[2], k[3])))
        return tuple(out)

    def reference(self, node, x):
        return contiguous(x[_numpy_index(node.attrs["spec"])])

    def vjp(self, node, g):
        return [apply(IndexGrad.instance(), [g, node.inputs[0]], dict(node.attrs))]

    def element_expr(self, node, index, sym, batch):
        return sym(0, _source_index(node.attrs["spec"], index))


class IndexGrad(Op):
    """Scatter a cotangent into zeros shaped like the indexed operand."""

    name = "index_grad"
    nondiff_inputs = (1,)

    def infer_shape(self, shapes, attrs):
        return shapes[1]

    def reference(self, node, g, like):
        out = np.zeros(like.shape, dtype=g.dtype)
        out[_numpy_index(node.attrs["spec"])] = g
        return out

    def vjp(self, node, g):
        return [index_spec(g, node.attrs["spec"]), None]

    def element_expr(self, node, index, sym, batch):
        spec, out = node.attrs["spec"], []
        for k, i in zip(spec, index):
            if k[0] == "i":
                if i != k[1]:
                    return sympy.Integer(0)
            elif k[1] is None:
                out.append(i)
            elif i in range(k[1], k[2], k[3]):
                out.append((i - k[1]) // k[3])
            else:
                return sympy.Integer(0)
        return sym(0, tuple(out))


def index(x, idx, name=None):
    return apply(Index.instance(), [x], {"spec": normalize_index(idx, x.shape)}, name=name)


def index_spec(x, spec, name=None):
    return apply(Index.instance(), [x], {"spec": spec}, name=name)
