"""Token embeddings and sinusoidal positional encodings (the Transformer's input layer).

- `embedding(ids, E)`: row ``ids[…]`` of the table E (V, D) — an integer gather, never a
  one-hot matmul. Its gradient is the scatter-add `EmbeddingGrad`: ∂L/∂E[v] = Σ over the
  positions p with ids[p] = v of ∂L/∂out[p]; the ids get no gradient.
- `positional_encoding(x)`: x + PE over the last two axes (positions, features), PE as in
  "Attention Is All You Need": PE(pos, 2i) = sin(pos/10000^(2i/D)), PE(pos, 2i+1) = cos(…).

Ids are fed as integers (an input declared ``dtype="int"``); the evaluator carries them in
the float dtype of the run, exact for any vocabulary below 2²⁴.
"""
from __future__ import annotations

import math

import numpy as np
import sympy

from ..errors import FeedError, ShapeError
from .base import Op, apply, describe, fmt_shape

#: 10000 in PE(pos, 2i) = sin(pos / 10000^(2i/D))
BASE = 10000.0


def index_array(node, values, n: int, what: str = "ids must be integers in"):
    """``values`` as int64 indices, checked to be whole numbers in 0..n − 1 (else a FeedError
    naming ``node``: "<what> 0..n−1, got lo..hi")."""
    idx = np.asarray(values).astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n or np.any(idx != np.asarray(values))):
        raise FeedError(f"{node.op.name} {describe(node)}: {what} 0..{n - 1}, got "
                        f"{np.min(values):g}..{np.max(values):g}")
    return idx


class Embedding(Op):
    """out[…, d] = E[ids[…], d]: inputs (ids, E), the ids read for their values only."""

    name = "embedding"
    nondiff_inputs = (0,)

    def infer_shape(self, shapes, attrs):
        ids, table = shapes
        if len(table) != 2 or None in table:
            raise ShapeError(f"the embedding table must be a fixed (vocabulary, features) matrix, got "
                             f"{fmt_shape(table)}")
        return tuple(ids) + (table[1],)

    def reference(self, node, ids, table):
        return table[index_array(node, ids, table.shape[0])]

    def vjp(self, node, g):
        ids, table = node.inputs
        return [None, apply(EmbeddingGrad.instance(), [g, ids, table])]

    def element_expr(self, node, index, sym, batch):
        # Σ_v [ids = v] E[v, d]: the gather as algebra (the row is picked by a value, not an index)
        vocab = node.inputs[1].shape[0]
        token = sym(0, tuple(index[:-1]))
        return sympy.Add(*[sympy.Piecewise((sym(1, (v, index[-1])), sympy.Eq(token, v)), (0, True))
                           for v in range(vocab)])

    def label(self, node):
        return "embedding"


class EmbeddingGrad(Op):
    """∂L/∂E: inputs (g, ids, E-like); out[v] = Σ_{p: ids[p] = v} g[p] (a scatter-add)."""

    name = "embedding_grad"
    nondiff_inputs = (1, 2)

    def infer_shape(self, shapes, attrs):
        g, ids, table = shapes
        if tuple(g) != tuple(ids) + (table[1],):
            raise ShapeError(f"the cotangent {fmt_shape(g)} must be ids {fmt_shape(ids)} + ({table[1]},)")
        return table

    def reference(self, node, g, ids, table):
        out = np.zeros(table.shape, dtype=g.dtype)
        np.add.at(out, index_array(node, ids, table.shape[0]), g)
        return out

    def vjp(self, node, g):
        # scatter-add's adjoint is the gather again
        return [apply(Embedding.instance(), [node.inputs[1], g]), None, None]

    def element_expr(self, node, index, sym, batch):
        g, ids = node.inputs[:2]
        shape = tuple(batch if d is None else d for d in ids.shape)
        v, d = index
        return sympy.Add(*[sympy.Piecewise((sym(0, p + (d,)), sympy.Eq(sym(1, p), v)), (0, True))
                           for p in np.ndindex(*shape)])

    def label(self, node):
        return "scatter-add"


def embedding(ids, table, name=None):
    """Rows of ``table`` (V, D) picked by the integer ``ids`` (any shape): ids + (D,)."""
    return apply(Embedding.instance(), [ids, table], name=name)


# -- positional encoding -----------------------------------------------------------------------

def frequency(d, features):
    """ω of feature ``d``: 10000^(−2⌊d/2⌋/D) (features 2i and 2i + 1 share one)."""
    return BASE ** (-2.0 * (d // 2) / features)


def sinusoid_table(positions, features):
    """PE (positions, features): sin(pos·ω) in the even features, cos(pos·ω) in the odd ones."""
    pos = np.arange(positions, dtype=np.float64)[:, None]
    d = np.arange(features)
    angle = pos * frequency(d, features)[None, :]
    return np.where(d % 2 == 0, np.sin(angle), np.cos(angle))


def sinusoid_expr(pos, d, features):
    """PE(pos, d) as sympy, for integer or symbolic (loop index) ``pos`` and ``d``: one
    formula, sin(pos·ω_d + (d mod 2)·π/2), since cos(a) = sin(a + π/2)."""
    omega = sympy.exp(-2 * sympy.log(sympy.Integer(int(BASE))) * sympy.floor(d / 2) / features)
    return sympy.sin(pos * omega + sympy.Mod(d, 2) * sympy.pi / 2)


class PositionalEncoding(Op):
    """x + PE: the sinusoidal encoding of the position (axis −2) and feature (axis −1)."""

    name = "positional_encoding"

    def infer_shape(self, shapes, attrs):
        (s,) = shapes
        if len(s) < 2 or None in s[-2:]:
            raise ShapeError(f"positional encoding needs (…, positions, features) with both fixed, got "
                             f"{fmt_shape(s)}")
        return s

    def reference(self, node, x):
        return x + sinusoid_table(*x.shape[-2:]).astype(x.dtype)

    def vjp(self, node, g):
        return [g]

    def element_expr(self, node, index, sym, batch):
        pos, d = index[-2:]
        angle = pos * sympy.Float(frequency(d, node.shape[-1]))
        return sym(0, index) + (sympy.sin(angle) if d % 2 == 0 else sympy.cos(angle))

    def label(self, node):
        return "+ PE"


def positional_encoding(x, name=None):
    """x + PE(pos, d) (sin in even, cos in odd features), positions along axis −2."""
    return apply(PositionalEncoding.instance(), [x], name=name)


def time_embedding_frequencies(features, max_period=BASE):
    """ω_k = max_period^(−k/K), k < K = features/2: the sinusoidal embedding of a scalar time
    step (a diffusion model's t), sin(t·ω) and cos(t·ω)."""
    half = features // 2
    return np.exp(-math.log(max_period) * np.arange(half) / max(half, 1))
