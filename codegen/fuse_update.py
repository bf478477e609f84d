"""Plain SGD folded into train_epoch's weight-gradient products: W += (−η)·(aᵀδ) in one BLAS call.

The separate update is a pass over memory: the product writes a weight's gradient into the
flat gradient buffer, then ``apply_update`` reads it with the weights and writes the weights
back. For W2's 784×256 layer that is 1.6 MB each way per batch in float64, more than L2
holds. When the optimizer is plain gradient descent (w ← w + c·g with c free of w, g and the
step: SGD's c = −η), BLAS applies the step inside the product itself (C ← αAB + βC, α = c,
β = 1: the ``gemm_update`` intrinsic), so that gradient is never stored.

A product ``d_W = a' @ b'`` (codegen.schedule.MatMul, not a tiny one) is folded when:
- ``d_W`` is the whole gradient of the trainable parameter ``W`` (the program's 'grad' buffer);
- no later step of the program names ``W``, ``d_W`` or a view of either (nothing reads the old
  weights or the gradient after it, and nothing adds to the gradient);
- ``a`` and ``b`` are not ``W`` (BLAS must not read what it writes).
Every later step is a dataclass whose fields are walked for the names they hold; a step of any
other kind stops the folding (nothing unknown is assumed safe).

Only train_epoch folds: grad_step and train_step still write every gradient, which
`gradients()`, MPI's all-reduce and the NaN check read. ``apply_update`` then runs on the
parts of the flat vectors that were not folded (the biases, scalars, tiny products). The
result equals the separate update up to rounding (BLAS adds α·(the product's partial sums)
to W rather than W to the rounded gradient): 1e-16 relative per step.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import sympy

from graphnn.graph import Node

from . import schedule as S


@dataclass
class GemmUpdate:
    """``param += alpha · a' @ b'`` (a' = a.T if trans_a, likewise b): a gradient product with
    plain SGD's step applied by BLAS; alpha is kernel source text (``-lr``)."""
    param: str
    a: str
    b: str
    trans_a: bool
    trans_b: bool
    alpha: str
    comment: str = ""


@dataclass
class FoldedSGD:
    """What train_epoch prints instead: the steps with the folded products replaced, and the
    [start, stop) ranges of the flat vectors ``apply_update`` still updates."""
    steps: list
    ranges: list


def sgd_coefficient(update: S.Update):
    """c when the update is w ← w + c·g with no optimizer state and c a function of the
    hyperparameters only (SGD: c = −η); else None."""
    from graphnn.optim import g, w

    if update.state or len(update.rules) != 1 or update.rules[0][0] != w:
        return None
    expr = update.rules[0][1].xreplace(dict(update.hoisted))
    c = sympy.expand(expr).coeff(g, 1)
    hyper = {sympy.Symbol(h) for h in update.hyper}
    if c == 0 or not c.free_symbols <= hyper or sympy.expand(expr - c * g - w) != 0:
        return None
    return c


def fold_sgd(sched, steps: list, writer) -> FoldedSGD | None:
    """The products of ``steps`` (train_epoch's gradient step, after the CPU rewrites) that can
    apply plain SGD themselves (module doc), or None when none can; ``writer`` prints the
    coefficient."""
    c = sgd_coefficient(sched.update)
    if c is None:
        return None
    grads = {sched.names[sched.gradients[p]]: (sched.names[p], off, size)
             for p, off, size, _ in sched.flat_layout if p in sched.gradients}
    aliases = _aliases(steps)
    alpha = writer.expr(c)
    folded, out = set(), list(steps)
    names = [_names(s) for s in steps]   # walked once: each candidate checks the steps after it
    for i, step in enumerate(steps):
        if not (isinstance(step, S.MatMul) and not step.tiny and step.out in grads):
            continue
        param = grads[step.out][0]
        touched = aliases(step.out) | aliases(param)
        if any(held is None or held & touched for held in names[i + 1:]) or {step.a, step.b} & touched:
            continue
        note = f"{step.comment}: plain SGD applies it to {param} in the product" if step.comment else ""
        out[i] = GemmUpdate(param, step.a, step.b, step.trans_a, step.trans_b, alpha, note)
        folded.add(step.out)
    if not folded:
        return None
    n_flat = sched.n_flat
    spans = sorted((off, off + size) for name, (_, off, size) in grads.items() if name in folded)
    ranges, at = [], 0
    for lo, hi in spans:
        if lo > at:
            ranges.append((at, lo))
        at = max(at, hi)
    if at < n_flat:
        ranges.append((at, n_flat))
    return FoldedSGD(out, ranges)


def _aliases(steps):
    """name -> the name and every view of it (View steps, transitively)."""
    views: dict = {}
    for s in steps:
        if isinstance(s, S.View):
            views.setdefault(s.source, set()).add(s.name)

    def closure(name):
        seen, todo = {name}, [name]
        while todo:
            for v in views.get(todo.pop(), ()):
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen
    return closure


_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def _names(obj):
    """Every identifier a step holds (its fields, walked; comments skipped), or None for
    something that is not plain data (then nothing is known about what it reads)."""
    found: set = set()

    def walk(x) -> bool:
        if x is None or isinstance(x, (bool, int, float)):
            return True
        if isinstance(x, str):
            found.update(_WORD.findall(x))
            return True
        if isinstance(x, sympy.Basic):
            found.update(_WORD.findall(str(x)))
            return True
        if isinstance(x, (list, tuple, set, frozenset)):
            return all(walk(v) for v in x)
        if isinstance(x, dict):
            return all(walk(k) and walk(v) for k, v in x.items())
        if isinstance(x, Node):   # the graph node a buffer holds: not a name in the code
            return True
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return all(walk(getattr(x, f.name)) for f in dataclasses.fields(x) if f.name != "comment")
        return False

    return found if walk(obj) else None
