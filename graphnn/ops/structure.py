"""Structural ops: matmul, transpose, reshape, concat, indexing, reductions.

``expand`` and ``count`` exist for gradients and means: ``expand`` broadcasts a reduced
cotangent back to its operand's shape, ``count`` is the (run-time) number of elements a
mean divides by, so a mean over the batch needs no batch size when the graph is built.
"""
from __future__ import annotations

import builtins
import itertools
import math

import numpy as np
import sympy

from ..errors import ShapeError
from ..graph import Node
from .base import contiguous, Op, apply, broadcast_shapes, fmt_shape, normalize_axes
from .indexing import Index, IndexGrad, index, index_spec, normalize_index, numpy_slice  # noqa: F401  (re-exported)


def _fixed(shape, batch):
    return tuple(batch if d is None else d for d in shape)


# -- matmul ----------------------------------------------------------------------------

class MatMul(Op):
    name = "matmul"
    symbol = "@"

    def infer_shape(self, shapes, attrs):
        a, b = shapes
        if len(a) < 2 or len(b) < 2:
            raise ShapeError("matmul needs operands with 2 or more dimensions (reshape vectors to rows or columns)")
        if a[-1] != b[-2]:
            raise ShapeError(f"inner dimensions differ: {fmt_shape(a)} @ {fmt_shape(b)} contracts "
                             f"{'B' if a[-1] is None else a[-1]} with {'B' if b[-2] is None else b[-2]}")
        return broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])

    def reference(self, node, a, b):
        return np.matmul(a, b)

    def vjp(self, node, g):
        from .elementwise import unbroadcast

        a, b = node.inputs
        return [unbroadcast(matmul(g, swap_last(b)), a.shape), unbroadcast(matmul(swap_last(a), g), b.shape)]

    def element_expr(self, node, index, sym, batch):
        a, b = node.inputs[:2]
        *lead, i, j = index
        k_size = _fixed(a.shape, batch)[-1]
        a_lead = _lead_index(lead, a.shape[:-2])
        b_lead = _lead_index(lead, b.shape[:-2])
        return sympy.Add(*[sym(0, a_lead + (i, k)) * sym(1, b_lead + (k, j)) for k in range(k_size)])


def _lead_index(lead, shape):
    offset = len(lead) - len(shape)
    return tuple(0 if d == 1 else lead[offset + n] for n, d in enumerate(shape))


def matmul(a, b, name=None, names=None):
    return apply(MatMul.instance(), [a, b], name=name, names=names)


class Linear(Op):
    """x @ W + b in one node: the course's net_j = Σ_i w_ij a_i + b_j (a dense layer)."""

    name = "linear"

    def infer_shape(self, shapes, attrs):
        x, w, b = shapes
        out = MatMul.infer_shape(self, [x, w], attrs)
        return broadcast_shapes(out, b)

    def reference(self, node, x, w, b):
        return np.matmul(x, w) + b

    def vjp(self, node, g):
        from .elementwise import unbroadcast

        x, w, b = node.inputs
        return [unbroadcast(matmul(g, swap_last(w)), x.shape),
                unbroadcast(matmul(swap_last(x), g), w.shape), unbroadcast(g, b.shape)]

    def element_expr(self, node, index, sym, batch):
        from .base import broadcast_index

        b = node.inputs[2]
        bias = sym(2, broadcast_index(index, b.shape, len(node.shape)))
        return MatMul.element_expr(self, node, index, sym, batch) + bias


def linear(x, w, b, name=None, names=None):
    return apply(Linear.instance(), [x, w, b], name=name, names=names)


# -- transpose, reshape, concat ----------------------------------------------------------

class Transpose(Op):
    name = "transpose"
    symbol = "ᵀ"

    def infer_shape(self, shapes, attrs):
        (s,) = shapes
        if sorted(attrs["axes"]) != list(range(len(s))):
            raise ShapeError(f"axes {attrs['axes']} are not a permutation of a {len(s)}-d operand's axes")
        return tuple(s[a] for a in attrs["axes"])

    def reference(self, node, x):
        return contiguous(np.transpose(x, node.attrs["axes"]))

    def vjp(self, node, g):
        return [transpose(g, tuple(np.argsort(node.attrs["axes"]).tolist()))]

    def element_expr(self, node, index, sym, batch):
        src = [0] * len(index)
        for out_axis, in_axis in enumerate(node.attrs["axes"]):
            src[in_axis] = index[out_axis]
        return sym(0, tuple(src))


def transpose(x, axes=None, name=None):
    """Permute axes; by default swap the last two (the matrix transpose, ``x.T``)."""
    if axes is None:
        axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2) if x.ndim >= 2 else (0,)
    return apply(Transpose.instance(), [x], {"axes": tuple(int(a) for a in axes)}, name=name)


def swap_last(x):
    return transpose(x)


class Reshape(Op):
    name = "reshape"

    def infer_shape(self, shapes, attrs):
        (s,), target = shapes, list(attrs["shape"])
        batched = bool(s) and s[0] is None
        if None in s[1:] or None in target[1:]:
            raise ShapeError("only the first axis may be the batch axis")
        if batched != (bool(target) and target[0] is None):
            raise ShapeError(f"reshape to {fmt_shape(target)} must keep the batch axis first, as in the operand")
        known = math.prod(d for d in s if d is not None)
        rest = [d for d in target if d is not None]
        if rest.count(-1) > 1:
            raise ShapeError("at most one -1 in a reshape target")
        if -1 in rest:
            other = math.prod(d for d in rest if d != -1)
            if other == 0 or known % other:
                raise ShapeError(f"cannot infer -1: {known} elements do not divide by {other}")
            target[target.index(-1)] = known // other
        elif math.prod(rest) != known:
            raise ShapeError(f"cannot reshape {known} elements into {fmt_shape(tuple(target))}")
        return tuple(target)

    def reference(self, node, x):
        shape = tuple(x.shape[0] if d is None else d for d in node.shape)
        return contiguous(x).reshape(shape)

    def vjp(self, node, g):
        return [reshape(g, node.inputs[0].shape)]

    def element_expr(self, node, index, sym, batch):
        out_shape, in_shape = _fixed(node.shape, batch), _fixed(node.inputs[0].shape, batch)
        flat = np.ravel_multi_index(index, out_shape) if out_shape else 0
        return sym(0, tuple(int(i) for i in np.unravel_index(flat, in_shape)))


def reshape(x, shape, name=None):
    return apply(Reshape.instance(), [x], {"shape": tuple(shape)}, name=name)


def flatten(x, name=None):
    """Keep the batch axis, flatten the rest (a CNN's feature maps into a dense layer)."""
    lead = (None,) if x.shape and x.shape[0] is None else (x.shape[0],)
    return reshape(x, lead + (-1,), name=name)


class Concat(Op):
    name = "concat"

    def infer_shape(self, shapes, attrs):
        axis = attrs["axis"]
        first = shapes[0]
        for s in shapes[1:]:
            if len(s) != len(first) or any(a != b for k, (a, b) in enumerate(zip(s, first)) if k != axis):
                raise ShapeError(f"operands must agree on every axis but {axis}")
        if any(s[axis] is None for s in shapes):
            raise ShapeError("cannot concatenate along the batch axis")
        # builtins.sum: this module's own `sum` is the graph reduction
        return first[:axis] + (builtins.sum(s[axis] for s in shapes),) + first[axis + 1:]

    def reference(self, node, *xs):
        return np.concatenate(xs, axis=node.attrs["axis"])

    def vjp(self, node, g):
        axis, start, out = node.attrs["axis"], 0, []
        for x in node.inputs:
            sl = [slice(None)] * g.ndim
            sl[axis] = slice(start, start + x.shape[axis])
            out.append(index(g, tuple(sl)))
            start += x.shape[axis]
        return out

    def element_expr(self, node, index, sym, batch):
        axis, k = node.attrs["axis"], index[node.attrs["axis"]]
        for pos, x in enumerate(node.inputs):
            if k < x.shape[axis]:
                return sym(pos, index[:axis] + (k,) + index[axis + 1:])
            k -= x.shape[axis]
        raise IndexError(index)


def concat(xs, axis=-1, name=None):
    xs = list(xs)
    if not xs:
        raise ShapeError(f"concat{f' ({name!r})' if name else ''}: needs at least one operand")
    if not all(isinstance(x, Node) for x in xs):
        return apply(Concat.instance(), xs, {"axis": axis}, name=name)   # names the bad operand
    if xs[0].ndim == 0:
        raise ShapeError(f"concat{f' ({name!r})' if name else ''}: operands are 0-d (scalars) and have no axis "
                         "to join along; reshape them to (1,) first")
    try:
        (axis,) = normalize_axes(int(axis), xs[0].ndim)
    except ShapeError as e:
        raise ShapeError(f"concat{f' ({name!r})' if name else ''}: {e}") from None
    return apply(Concat.instance(), xs, {"axis": axis}, name=name)


# -- reductions ------------------------------------------------------------------------

def _reduced_shape(shape, axes, keepdims):
    return tuple((1 if keepdims else None) if a in axes else d
                 for a, d in enumerate(shape) if keepdims or a not in axes)


class _Reduction(Op):
    def infer_shape(self, shapes, attrs):
        (s,) = shapes
        return _reduced_shape(s, attrs["axes"], attrs["keepdims"])

    def _terms(self, node, index, sym, batch):
        """The operand elements that output element ``index`` reduces over."""
        x, axes, keep = node.inputs[0], node.attrs["axes"], node.attrs["keepdims"]
        shape, it, ranges = _fixed(x.shape, batch), iter(index), []
        for a in range(x.ndim):
            if a in axes:
                if keep:
                    next(it)
                ranges.append(range(shape[a]))
            else:
                ranges.append((next(it),))
        return [sym(0, idx) for idx in itertools.product(*ranges)]


class Sum(_Reduction):
    name = "sum"
    symbol = "Σ"

    def reference(self, node, x):
        return np.asarray(np.sum(x, axis=node.attrs["axes"], keepdims=node.attrs["keepdims"]))

    def vjp(self, node, g):
        return [expand(g, node.inputs[0], node.attrs["axes"], node.attrs["keepdims"])]

    def element_expr(self, node, index, sym, batch):
        return sympy.Add(*self._terms(node, index, sym, batch))


class Max(_Reduction):
    name = "max"

    def infer_shape(self, shapes, attrs):
        (s,) = shapes
        empty = [a for a in attrs["axes"] if s[a] == 0]
        if empty:
            raise ShapeError(f"max over axis {empty[0]} of size 0: an empty axis has no largest element")
        return super().infer_shape(shapes, attrs)

    def reference(self, node, x):
        return np.asarray(np.max(x, axis=node.attrs["axes"], keepdims=node.attrs["keepdims"]))

    def vjp(self, node, g):
        from .elementwise import fmap

        x = node.inputs[0]
        axes, keep = node.attrs["axes"], node.attrs["keepdims"]
        gs, xs, ms, ns = sympy.symbols("g x m n")
        # Ties split the cotangent equally (a subgradient that sums to g); max pooling,
        # which routes to one winner per window, has its own op.
        hit = fmap(sympy.Piecewise((1, sympy.Eq(xs, ms)), (0, True)),
                   {xs: x, ms: expand(node, x, axes, keep)}, fn="[x = max]")
        ties = expand(sum(hit, axes, keep), x, axes, keep)
        return [fmap(gs * xs / ns, {gs: expand(g, x, axes, keep), xs: hit, ns: ties}, fn="∂max")]

    def element_expr(self, node, index, sym, batch):
        return sympy.Max(*self._terms(node, index, sym, batch))


class Expand(Op):
    """Broadcast a reduced value back to the shape of ``like`` (the reduced operand)."""

    name = "expand"
    nondiff_inputs = (1,)

    def infer_shape(self, shapes, attrs):
        g, like = shapes
        if tuple(g) != _reduced_shape(like, attrs["axes"], attrs["keepdims"]):
            raise ShapeError(f"{fmt_shape(g)} is not {fmt_shape(like)} reduced over {attrs['axes']}")
        return like

    def reference(self, node, g, like):
        if not node.attrs["keepdims"]:
            g = np.expand_dims(g, node.attrs["axes"])
        return contiguous(np.broadcast_to(g, like.shape))

    def vjp(self, node, g):
        return [sum(g, node.attrs["axes"], node.attrs["keepdims"]), None]

    def element_expr(self, node, index, sym, batch):
        axes, keep = node.attrs["axes"], node.attrs["keepdims"]
        src = tuple((0 if keep else None) if a in axes else i for a, i in enumerate(index))
        return sym(0, tuple(i for i in src if i is not None))


def expand(g, like, axes, keepdims=False):
    return apply(Expand.instance(), [g, like], {"axes": tuple(axes), "keepdims": keepdims})


class Count(Op):
    """The number of elements of ``x`` over ``axes``, known at run time (for means)."""

    name = "count"
    symbol = "n"
    nondiff_inputs = (0,)

    def infer_shape(self, shapes, attrs):
        return ()

    def reference(self, node, x):
        return np.asarray(math.prod(x.shape[a] for a in node.attrs["axes"]), dtype=x.dtype)

    def vjp(self, node, g):
        return [None]

    def element_expr(self, node, index, sym, batch):
        return sympy.Integer(math.prod(_fixed(node.inputs[0].shape, batch)[a] for a in node.attrs["axes"]))


def count(x, axes):
    return apply(Count.instance(), [x], {"axes": tuple(axes)})


def _reduce(op, x, axis, keepdims, name):
    axes = normalize_axes(axis, x.ndim)
    return apply(op, [x], {"axes": axes, "keepdims": bool(keepdims)}, name=name)


def sum(x, axis=None, keepdims=False, name=None):  # noqa: A001 - mirrors numpy
    return _reduce(Sum.instance(), x, axis, keepdims, name)


def max(x, axis=None, keepdims=False, name=None):  # noqa: A001
    return _reduce(Max.instance(), x, axis, keepdims, name)


def mean(x, axis=None, keepdims=False, name=None):
    from .elementwise import div

    axes = normalize_axes(axis, x.ndim)
    return div(sum(x, axes, keepdims), count(x, axes), name=name)


class StopGradient(Op):
    """Identity forward; no gradient flows through it ("consider constant")."""

    name = "stop_gradient"

    def infer_shape(self, shapes, attrs):
        return shapes[0]

    def reference(self, node, x):
        return x

    def vjp(self, node, g):
        return [None]

    def element_expr(self, node, index, sym, batch):
        return sym(0, index)


def stop_gradient(x, name=None):
    return apply(StopGradient.instance(), [x], name=name)
