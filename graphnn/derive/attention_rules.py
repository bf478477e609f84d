"""Matrix-view rules for the ops attention is made of: softmax's vector-Jacobian product.

Registered into the matrix view's `TERM_RULES` (derive/matrix.py), so the gradient of
softmax(QKᵀ/√d_k)V prints as δ_S = A ⊙ (δ_A − Σ_cols δ_A ⊙ A) instead of an opaque vjp.
"""
from __future__ import annotations

from .matrix import HADAMARD, TERM_RULES, _bracket, _name


def _softmax_rule(ctx, term, up):
    """∂E/∂s = a ⊙ (g − Σ_k g_k a_k) per row, for a = softmax(s) and upstream g."""
    a = _name(term.consumer)
    g = _bracket(up.tex)
    sym = rf"{a}{HADAMARD}\left({g} - \sum_{{\mathrm{{cols}}}} {g}{HADAMARD}{a}\right)"

    def num(tm):
        return ctx.mat(ctx.values.all[term.contribution], tm)
    return None, sym, num


TERM_RULES.setdefault("softmax", _softmax_rule)
