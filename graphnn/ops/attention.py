"""Scaled dot-product attention, softmax(QKᵀ/√d_k)V, and multi-head attention — composed ops.

No dedicated op: attention is matmul, transpose, one elementwise scaling, softmax and
matmul again, so its gradient (through softmax, the scaling and both matmuls) comes from
those ops' rules, every backend runs it, and derivations show it step by step with the
intermediates named ``<name>.scores``, ``<name>.S``, ``<name>.A``:

    scores = Q Kᵀ,   S = scores / √d_k (+ M),   A = softmax(S),   out = A V

Shapes: Q (…, T, d_k), K (…, S, d_k), V (…, S, d_v), batch first; the optional causal
mask M adds −10⁹ where key position j > query position i (+ S − T), so those weights are 0.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import ShapeError
from .base import fmt_shape
from .elementwise import fmap
from .leaves import constant, parameter
from .nn import softmax
from .structure import matmul, reshape, transpose

MASKED = -1e9  # finite, so evaluation's NaN/inf check stays meaningful; exp underflows to 0


def causal_mask(t, s=None):
    """(T, S) additive mask: 0 where query i may see key j (j ≤ i + S − T), −10⁹ elsewhere."""
    s = t if s is None else s
    return np.triu(np.full((t, s), MASKED), k=1 + s - t)


def scaled_dot_product_attention(q, k, v, *, causal=False, name="attn", return_weights=False):
    """softmax(Q Kᵀ / √d_k) V over the last two axes; ``causal`` hides later keys.

    Returns the output (…, T, d_v), or (output, attention weights A) with ``return_weights``.
    """
    for what, node in (("Q", q), ("K", k), ("V", v)):
        if node.ndim < 2:
            raise ShapeError(f"attention {name!r}: {what} must be (…, tokens, features), got {fmt_shape(node.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ShapeError(f"attention {name!r}: Q has d_k = {q.shape[-1]} features but K has {k.shape[-1]} "
                         f"(Q {fmt_shape(q.shape)}, K {fmt_shape(k.shape)})")
    if k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"attention {name!r}: K has {k.shape[-2]} positions but V has {v.shape[-2]} "
                         f"(K {fmt_shape(k.shape)}, V {fmt_shape(v.shape)})")
    d_k = q.shape[-1]
    scores = matmul(q, transpose(k, name=f"{name}.Kᵀ"), name=f"{name}.scores")
    s, m = sympy.symbols("s M")
    operands = {s: scores}
    expr = s / sympy.sqrt(d_k)
    if causal:
        operands[m] = constant(causal_mask(q.shape[-2], k.shape[-2]), name=f"{name}.mask")
        expr = expr + m
    scaled = fmap(expr, operands, name=f"{name}.S", fn=f"/√{d_k}" + (" + mask" if causal else ""))
    weights = softmax(scaled, name=f"{name}.A")
    out = matmul(weights, v, name=f"{name}.out")
    return (out, weights) if return_weights else out


def multi_head_attention(x, heads, d_k, d_v=None, d_out=None, *, context=None, causal=False,
                         name="mha", rng=None, init="glorot", return_params=False):
    """Multi-head attention of x (B, T, D) over ``context`` (default: x itself, self-attention).

    Per head h: Q_h = x W_Q[h], K_h = c W_K[h], V_h = c W_V[h]; the heads' outputs are
    concatenated and projected by W_O to ``d_out`` (default D). The weights are parameters
    named ``<name>.W_Q`` etc., initialised by ``init`` and, without ``rng``, each seeded by
    its own name (layers named apart start apart); heads are a reshape + transpose, not
    separate nodes. ``return_params=True``: ``(output, {"W_Q": node, "W_K": …, "W_O": …})``.
    """
    if x.ndim != 3 or x.shape[0] is not None:
        raise ShapeError(f"multi-head attention {name!r}: x must be (batch, tokens, features), got "
                         f"{fmt_shape(x.shape)}")
    context = x if context is None else context
    d_v = d_k if d_v is None else d_v
    d_model, t, s = x.shape[-1], x.shape[1], context.shape[1]
    d_out = d_model if d_out is None else d_out
    wq = parameter(f"{name}.W_Q", shape=(d_model, heads * d_k), rng=rng, init=init)
    wk = parameter(f"{name}.W_K", shape=(context.shape[-1], heads * d_k), rng=rng, init=init)
    wv = parameter(f"{name}.W_V", shape=(context.shape[-1], heads * d_v), rng=rng, init=init)
    wo = parameter(f"{name}.W_O", shape=(heads * d_v, d_out), rng=rng, init=init)

    def split(node, n, d, what):  # (B, n, heads·d) → (B, heads, n, d)
        return transpose(reshape(node, (None, n, heads, d)), (0, 2, 1, 3), name=f"{name}.{what}")

    q = split(matmul(x, wq), t, d_k, "Q")
    k = split(matmul(context, wk), s, d_k, "K")
    v = split(matmul(context, wv), s, d_v, "V")
    heads_out = scaled_dot_product_attention(q, k, v, causal=causal, name=f"{name}.head")
    merged = reshape(transpose(heads_out, (0, 2, 1, 3)), (None, t, heads * d_v), name=f"{name}.concat")
    out = matmul(merged, wo, name=name)
    return (out, {"W_Q": wq, "W_K": wk, "W_V": wv, "W_O": wo}) if return_params else out

