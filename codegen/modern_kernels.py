"""The row kernels of the Transformer-era ops, compiled once per process (and cached by Numba)
rather than once per generated module: every generated module imports them (emit_modern.py).

Rows are the last axis of arrays of any rank and any strides (``x[idx]`` for each index of
the leading axes); sums accumulate in float64 and results are written in the arrays' dtype.
"""
from __future__ import annotations

import math

import numpy as np
from .linking import njit  # calls between our functions: codegen/linking.py

# the generated modules' flags (printer.FASTMATH) written out: Numba's cache of this file and the
# digest in the modules' import lines see only this file's text; no C address taken
JIT = dict(cache=True, fastmath={"afn", "arcp", "contract", "nsz", "reassoc"}, error_model="numpy",
           no_cfunc_wrapper=True)


@njit(**JIT)
def _stats(x):
    """(mean, 1/√(variance + eps) without eps: the caller adds it) of one row."""
    n = x.shape[0]
    mu = 0.0
    for k in range(n):
        mu += x[k]
    mu /= n
    var = 0.0
    for k in range(n):
        var += (x[k] - mu) * (x[k] - mu)
    return mu, var / n


@njit(**JIT)
def layer_norm_rows(x, out, eps):
    """out = (x − μ)/√(σ² + eps) row by row."""
    for idx in np.ndindex(x.shape[:-1]):
        xr, o = x[idx], out[idx]
        mu, var = _stats(xr)
        inv = 1.0 / math.sqrt(var + eps)
        for k in range(xr.shape[0]):
            o[k] = (xr[k] - mu) * inv


@njit(**JIT)
def layer_norm_grad_rows(g, x, out, eps):
    """out = (1/σ)(g − mean g − x̂ mean(g x̂)) row by row: layer norm's compact gradient."""
    for idx in np.ndindex(x.shape[:-1]):
        xr, gr, o = x[idx], g[idx], out[idx]
        n = xr.shape[0]
        mu, var = _stats(xr)
        inv = 1.0 / math.sqrt(var + eps)
        mg, mgx = 0.0, 0.0
        for k in range(n):
            mg += gr[k]
            mgx += gr[k] * (xr[k] - mu) * inv
        mg, mgx = mg / n, mgx / n
        for k in range(n):
            o[k] = inv * (gr[k] - mg - (xr[k] - mu) * inv * mgx)


@njit(**JIT)
def _logsumexp(z):
    """(max, Σ exp(z − max)) of one row."""
    m = z[0]
    for k in range(1, z.shape[0]):
        m = max(m, z[k])
    s = 0.0
    for k in range(z.shape[0]):
        s += math.exp(z[k] - m)
    return m, s


@njit(**JIT)
def sparse_ce_rows(z, labels, out):
    """out[…] = logsumexp(z[…]) − z[…, label]: softmax cross-entropy on class indices."""
    for idx in np.ndindex(z.shape[:-1]):
        zr = z[idx]
        m, s = _logsumexp(zr)
        out[idx] = math.log(s) + m - zr[int(labels[idx])]


@njit(**JIT)
def sparse_ce_grad_rows(g, z, labels, out):
    """out[…, c] = g[…]·(softmax(z[…])_c − [c = label]): the fused cross-entropy's gradient."""
    for idx in np.ndindex(z.shape[:-1]):
        zr, o = z[idx], out[idx]
        m, s = _logsumexp(zr)
        gs = g[idx] / s
        for k in range(zr.shape[0]):
            o[k] = gs * math.exp(zr[k] - m)
        o[int(labels[idx])] -= g[idx]


@njit(**JIT)
def scatter_add_rows(g, ids, out):
    """out = 0; out[ids[p]] += g[p] for every position p of ids (∂ of an embedding)."""
    for v in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[v, k] = 0.0
    for idx in np.ndindex(ids.shape):
        gr, v = g[idx], int(ids[idx])
        for k in range(gr.shape[0]):
            out[v, k] += gr[k]
