"""Loop nests printed as calls instead of inline: each inline nest is seconds of Numba's typing,
lowering and LLVM time in every function it is written into.

- A nest that only copies (``dst[i, j] = src[i, j]``: a copy node, the unpacked gradient of a
  recurrence) is one call of the stored ``copy_Nd`` kernel (`identity_copy`).
- A self-contained nest that the module prints more than once (forward's layers again in
  ``evaluate`` and ``train_epoch``, a GAN's discriminator on real and on generated samples,
  a transformer's equal blocks) is one shared helper (`shared_loops.share_nest`), compiled
  once and called at every copy. `emit_module` prints its functions twice: the first time
  `CENSUS` only counts the nests (`NestCensus.counting`), the second it shares the repeated
  ones (`NestCensus.sharing`). A nest printed once stays inline: a call would cost more.
"""
from __future__ import annotations

import dataclasses
import threading
from contextlib import contextmanager

import sympy

from . import schedule as S
from .printer import Writer
from .shared_loops import share_nest


def identity_copy(step: S.Loop):
    """(dst, src) where the nest only copies ``dst[i, j] = src[i, j]`` over dst's whole shape
    (ranks 1–4, those the stored kernels have), else None."""
    if not 1 <= len(step.indices) <= 4 or len(step.body) != 2:
        return None
    let, store = step.body
    index = tuple(step.indices)
    if not (isinstance(let, S.Let) and isinstance(store, S.Store) and store.expr == let.name
            and isinstance(let.expr, sympy.Indexed) and tuple(let.expr.indices) == index
            and tuple(store.target.indices) == index):
        return None
    return str(store.target.base), str(let.expr.base)


def self_contained_nest(step: S.Loop) -> bool:
    """A nest of at least two loops that reads and writes arrays only (no scalar from outside
    it, no scalar accumulator): one helper can serve every copy of it."""
    if len(step.indices) < 2 or not step.body:
        return False
    lets = {b.name for b in step.body if isinstance(b, S.Let)}
    for b in step.body:
        if isinstance(b, S.Accumulate) and not isinstance(b.target, sympy.Indexed):
            return False
        reads = b.expr.atoms(sympy.Indexed)
        if b.expr.free_symbols - reads - set(step.indices) - {r.base.label for r in reads} - lets:
            return False
    return True


def nest_helper(step: S.Loop, w: Writer, print_inline):
    """(helper name, call arguments) of the shared helper for ``step``; ``print_inline(step,
    writer)`` prints a nest's loops (emit_cpu's). The nest's locals are renamed t0, t1, … (in
    the helper nothing else has such names), so equal nests print equal text whatever their
    nodes are called; what the nest's expressions call (tanh_f64, …) joins ``w``'s helpers."""
    lets = [b.name for b in step.body if isinstance(b, S.Let)]
    rename = {name: sympy.Symbol(f"t{k}", real=True) for k, name in enumerate(lets)}
    body = [dataclasses.replace(b, **({"name": rename[b.name]} if isinstance(b, S.Let) else {}),
                                expr=b.expr.xreplace(rename)) for b in step.body]
    inner = Writer(w.dtype)
    inner.ranks = w.ranks
    print_inline(dataclasses.replace(step, comment="", body=body), inner)
    name, args = share_nest(step, "\n".join(inner.lines), w.dtype)
    w.printer.helpers |= inner.printer.helpers
    return name, args


class NestCensus(threading.local):
    """Which self-contained nests a module prints more than once (see the module docstring).
    Per thread: two Trainers may lower their models at once (background compiles)."""

    def __init__(self):
        self.counts: dict | None = None   # while counting: helper name -> copies seen
        self.repeated: frozenset = frozenset()
        self.strided_at: dict = {}        # helper name -> argument positions some call passes strided

    @contextmanager
    def counting(self):
        self.counts, self.repeated, self.strided_at = {}, frozenset(), {}
        try:
            yield
            self.repeated = frozenset(name for name, k in self.counts.items() if k > 1)
        finally:
            self.counts = None

    @property
    def is_counting(self) -> bool:
        """Whether this printing only counts (its text is thrown away)."""
        return self.counts is not None

    @contextmanager
    def sharing(self):
        try:
            yield
        finally:
            self.repeated, self.strided_at = frozenset(), {}

    def one_layout(self, name, args, strided) -> list:
        """The arguments of a call of helper ``name``: where any call passes a strided array
        (``strided``: the names Numba types as any layout), the others pass theirs as
        ``strided(…)`` too, so the helper compiles once, not once per layout (a permuted view
        in the backward, a buffer in the forward: attention −0.5 s). A matrix's ``.T`` (F-ordered)
        keeps its own compile: LLVM vectorises a known-contiguous operand better."""
        if self.counts is not None:
            self.strided_at.setdefault(name, set()).update(p for p, a in enumerate(args) if a in strided)
            return list(args)
        at = self.strided_at.get(name, ())
        return [f"strided({a})" if p in at and a not in strided else a for p, a in enumerate(args)]

    def shares(self, step: S.Loop, w: Writer, print_inline) -> bool:
        """While counting: count ``step`` (False). While sharing: whether it is a repeated nest."""
        if not self_contained_nest(step) or (self.counts is None and not self.repeated):
            return False
        name, args = nest_helper(step, w, print_inline)
        if self.counts is not None:   # printed inline this time: its call's layouts are noted here
            self.counts[name] = self.counts.get(name, 0) + 1
            self.one_layout(name, args, w.strided)
            return False
        return name in self.repeated


CENSUS = NestCensus()
