"""Lowerings of the Transformer-era ops: layer norm, embedding, positional encoding, softmax
cross-entropy on class indices, row numbers.

Elementwise ones give an element formula and fuse into their consumers' loops like any
`Map`: the embedding gather reads ``E[int(ids[b, t]), d]`` (an index computed from data,
`AsIndex`), the positional encoding is its sin/cos formula of the loop indices, the row
numbers are the loop index. Row-wise ones are one schedule step each (`RowNorm`,
`RowNormGrad`, `SparseCE` for the fused cross-entropy and for its gradient), and the
embedding's gradient is a scatter-add (`ScatterAddRows`): emit_modern.py prints them for the
CPU, cuda/modern.py for CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from graphnn.ops import (Embedding, EmbeddingGrad, PositionalEncoding, RowNumbers, SparseSoftmaxCEGrad,
                         SparseSoftmaxCrossEntropy, Standardize, StandardizeGrad)
from graphnn.ops.embedding import sinusoid_expr

from .lower import CodegenError, Lowered, register_lowering


class AsIndex(sympy.Function):
    """An array index computed from a stored value: prints as ``int(value)``."""

    is_integer = True

    def _sympystr(self, printer):
        return f"int({printer._print(self.args[0])})"


# -- schedule steps ------------------------------------------------------------------------

@dataclass
class RowNorm:
    """out = (x − μ)/√(σ² + eps) over the last axis, row by row."""
    out: str
    x: str
    eps: float
    rank: int
    comment: str = ""


@dataclass
class RowNormGrad:
    """out = (1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) over the last axis, from g and x."""
    out: str
    g: str
    x: str
    eps: float
    rank: int
    comment: str = ""


@dataclass
class SparseCE:
    """out[…] = logsumexp(z[…, :]) − z[…, int(labels[…])] (``rank``: the logits' rank); with
    ``grad`` (the cotangent g[…]) instead its gradient: out[…, c] = g[…]·(softmax(z[…])_c − [c = label])."""
    out: str
    logits: str
    labels: str
    rank: int
    comment: str = ""
    grad: str | None = None


@dataclass
class ScatterAddRows:
    """out (V, D) = 0, then out[int(ids[p]), :] += g[p, :] for every position p of ids."""
    out: str
    g: str
    ids: str
    rank: int            # the ids' rank
    comment: str = ""


# -- lowerings -------------------------------------------------------------------------------

def _rows(node, x, what):
    """The compiled row kernels take a batch of rows: (…, n) with at least one leading axis."""
    if x.ndim < 2:
        raise CodegenError(f"codegen: {what} {node.label()!r} needs rows (…, n) with a leading axis, got "
                           f"shape {x.shape}")
    return x


def _standardize(node, ctx):
    x = _rows(node, node.inputs[0], "layer norm")
    return Lowered(steps=[RowNorm(ctx.name(node), ctx.array(x), node.attrs["eps"], x.ndim,
                                  comment=f"{ctx.name(node)} = (x − μ)/σ of {ctx.name(x)} (layer norm)")])


def _standardize_grad(node, ctx):
    g, x = node.inputs
    return Lowered(steps=[RowNormGrad(ctx.name(node), ctx.array(g), ctx.array(x), node.attrs["eps"], x.ndim,
                                      comment=f"{ctx.name(node)} = (1/σ)(g − mean g − x̂ mean(g x̂)), layer norm's "
                                              f"gradient from {ctx.name(g)}")])


def _sparse_ce(node, ctx):
    z, labels = _rows(node, node.inputs[0], "softmax cross-entropy"), node.inputs[1]
    return Lowered(steps=[SparseCE(ctx.name(node), ctx.array(z), ctx.array(labels), z.ndim,
                                   comment=f"{ctx.name(node)} = logsumexp({ctx.name(z)}) − {ctx.name(z)}[label]")])


def _embedding_grad(node, ctx):
    g, ids, _ = node.inputs
    return Lowered(steps=[ScatterAddRows(ctx.name(node), ctx.array(g), ctx.array(ids), ids.ndim,
                                         comment=f"{ctx.name(node)} = scatter-add of {ctx.name(g)} into the rows "
                                                 f"{ctx.name(ids)} picked")], shape_only=(2,))


def _embedding(node, ctx):
    def element(index, read):
        token = AsIndex(read(0, tuple(index[:-1])))
        return read(1, (token, index[-1]))
    return Lowered(element=element)


def _positional_encoding(node, ctx):
    features = node.shape[-1]

    def element(index, read):
        return read(0, tuple(index)) + sinusoid_expr(index[-2], index[-1], features)
    return Lowered(element=element)


def _sparse_ce_grad(node, ctx):
    g, z, labels = node.inputs[0], _rows(node, node.inputs[1], "softmax cross-entropy"), node.inputs[2]
    return Lowered(steps=[SparseCE(ctx.name(node), ctx.array(z), ctx.array(labels), z.ndim, grad=ctx.array(g),
                                   comment=f"{ctx.name(node)} = {ctx.name(g)}·(softmax({ctx.name(z)}) − onehot)")])


def _row_numbers(node, ctx):
    return Lowered(element=lambda index, read: index[-1], cheap=True, shape_only=(0,))


for _op, _fn in {Standardize: _standardize, StandardizeGrad: _standardize_grad,
                 SparseSoftmaxCrossEntropy: _sparse_ce, EmbeddingGrad: _embedding_grad, Embedding: _embedding,
                 PositionalEncoding: _positional_encoding, SparseSoftmaxCEGrad: _sparse_ce_grad,
                 RowNumbers: _row_numbers}.items():
    register_lowering(_op, _fn)

from . import emit_modern  # noqa: E402,F401  (their CPU printers)
