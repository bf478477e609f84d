"""emit_arrays: the CPU printers of the whole-array steps (Fill, Copy, Scatter, Concat).

Each is a call to a plain-loop helper per rank (`codegen.shared_loops.array_helper`):
written as an array expression (``a[...] = b``), Numba would compile its broadcasting and
the formatting of its shape-mismatch message (Numba's string machinery) inline at every
place, seconds of compile time each (an RNN's whole module: 21 → 16 CPU seconds).
"""
from __future__ import annotations

from . import schedule as S
from .emit_cpu import Writer, index_text, register_emitter
from .printer import reshaped
from .shared_loops import array_helper

__all__ = ["array_op"]


def array_op(w, kind, rank, *args) -> bool:
    """``kind`` (copy/fill) as a call to the plain-loop helper for ``rank``; False where the
    rank is unknown. An array expression (``a[...] = b``) would compile Numba's broadcasting
    and its error-message formatting inline at every place it is written (seconds each)."""
    if rank is None or rank < 1:
        return False
    name = array_helper(kind, (None,) * rank)
    w.printer.helpers.add(name)
    w(f"{name}({', '.join(args)})")
    return True


def _fill(step: S.Fill, w: Writer):
    if not array_op(w, "fill", w.ranks.get(step.out), step.out, w.num(step.value)):
        w(f"{step.out}[...] = {w.num(step.value)}")


def _scatter(step: S.Scatter, w: Writer):
    if not array_op(w, "fill", w.ranks.get(step.out), step.out, w.num(0.0)):
        w(f"{step.out}[...] = {w.num(0.0)}")
    at = f"{step.out}[{index_text(step.spec)}]"
    rank = w.ranks.get(step.out)
    rank = None if rank is None else rank - sum(1 for k in step.spec if k[0] == "i")
    if not array_op(w, "copy", rank, at, step.g):
        w(f"{at} = {step.g}")


def _concat(step: S.Concat, w: Writer):
    w(f"start = 0  # concatenate along axis {step.axis}")
    for x in step.inputs:
        at = f"{step.out}[{':, ' * step.axis}start:start + {x}.shape[{step.axis}]]"
        if not array_op(w, "copy", w.ranks.get(step.out), at, x):
            w(f"{at} = {x}")
        w(f"start += {x}.shape[{step.axis}]")


def _copy(step: S.Copy, w: Writer):
    at = reshaped(step.out, f"{step.src}.shape")
    if array_op(w, "copy", w.ranks.get(step.src), at, step.src):
        w.lines[-1] += f"  # a copy: {step.src} is a strided view"
    else:
        w(f"{at}[...] = {step.src}  # a copy: {step.src} is a strided view")


for _type, _fn in {S.Fill: _fill, S.Scatter: _scatter, S.Concat: _concat, S.Copy: _copy}.items():
    register_emitter(_type, _fn)
