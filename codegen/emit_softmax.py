"""emit_softmax: the CPU printers of the row softmax steps (SoftmaxCE, RowSoftmax).

One pass per row over the last axis: the max, the sum of exponentials, then the loss (and,
where the gradient needs it, softmax(z) for p − t) or the softmax / log-softmax itself. An
N-d operand is printed as its (rows, last axis) view.
"""
from __future__ import annotations

from . import schedule as S
from .emit_cpu import Writer, register_emitter
from .printer import reshaped
from .step_helpers import as_helper


def _as_rows(w, name):
    """A 2-d (rows, last axis) view of a contiguous N-d array."""
    w(f"{name}_rows = {reshaped(name, f'(-1, {name}.shape[-1])')}")
    return f"{name}_rows"


def _softmax_ce(step: S.SoftmaxCE, w: Writer):
    if step.comment:
        w(f"# {step.comment}")
    z, t, p = step.logits, step.targets, step.probs
    if step.ndim != 2:   # rows of the last axis
        z, t, loss = _as_rows(w, z), _as_rows(w, t), f"{step.loss}_rows"
        w(f"{loss} = {reshaped(step.loss, '-1')}")
        p = _as_rows(w, p) if p else p
    else:
        loss = step.loss
    w(f"for r in range({z}.shape[0]):")
    w.indent()
    w(f"zmax = {z}[r, 0]")
    w(f"for c in range(1, {z}.shape[1]):")
    w(f"    zmax = max(zmax, {z}[r, c])")
    w(f"s = {w.num(0.0)}")
    w(f"for c in range({z}.shape[1]):")
    w.indent()
    if p:
        w(f"e = {w.exp(f'{z}[r, c] - zmax')}")
        w(f"{p}[r, c] = e")
        w("s += e")
    else:
        w(f"s += {w.exp(f'{z}[r, c] - zmax')}")
    w.dedent()
    w("lse = math.log(s) + zmax")
    w(f"acc = {w.num(0.0)}")
    w(f"for c in range({z}.shape[1]):")
    w(f"    acc += {t}[r, c] * (lse - {z}[r, c])  # −t·log softmax(z)")
    w(f"{loss}[r] = acc")
    if p:
        w(f"inv = {w.num(1.0)} / s")
        w(f"for c in range({z}.shape[1]):")
        w(f"    {p}[r, c] *= inv")
    w.dedent()


def _row_softmax(step: S.RowSoftmax, w: Writer):
    x, out = step.x, step.out
    w(f"# {step.comment or ('log_softmax' if step.log else 'softmax')} over the last axis")
    if step.ndim != 2:
        x, out = _as_rows(w, x), _as_rows(w, out)
    w(f"for r in range({x}.shape[0]):")
    w.indent()
    w(f"zmax = {x}[r, 0]")
    w(f"for c in range(1, {x}.shape[1]):")
    w(f"    zmax = max(zmax, {x}[r, c])")
    w(f"s = {w.num(0.0)}")
    w(f"for c in range({x}.shape[1]):")
    w(f"    s += {w.exp(f'{x}[r, c] - zmax')}")
    if step.log:
        w("lse = math.log(s) + zmax")
        w(f"for c in range({x}.shape[1]):")
        w(f"    {out}[r, c] = {x}[r, c] - lse")
    else:
        w(f"inv = {w.num(1.0)} / s")
        w(f"for c in range({x}.shape[1]):")
        w(f"    {out}[r, c] = {w.exp(f'{x}[r, c] - zmax')} * inv")
    w.dedent()


register_emitter(S.SoftmaxCE, as_helper(_softmax_ce, lambda s: (s.loss, s.logits, s.targets, s.probs), "softmax_ce"))
register_emitter(S.RowSoftmax, as_helper(_row_softmax, lambda s: (s.out, s.x), "row_softmax"))
