"""Convolution, pooling and bias-gradient steps printed as calls of one helper each.

Written inline, a step's loops are compiled in every function that holds them: a CNN's
forward convolutions once in ``evaluate`` and again in ``train_epoch``, and all of them on the
longest path of the compile, ``train_epoch``'s. As a helper (its arrays renamed a0, a1, … in
order, so equal steps print equal text and share one), a step compiles once, and — since a
compiler process compiles ``train_epoch``'s helpers from the end while this process types it
(codegen/split_compile.py) — beside the rest. Its extents stay literals in the helper's text;
only the arrays' shapes and strides become run-time values. Measured: docs/codegen.md, "Cut in
the seventeenth session".
"""
from __future__ import annotations

import dataclasses
import hashlib
import re

from .printer import HELPERS, INDENT, Writer

__all__ = ["as_helper"]


def as_helper(emit, arrays, prefix: str):
    """An emitter printing ``emit``'s lines for a step as a helper ``<prefix>_<hash>`` and a call
    of it. ``arrays(step)``: the names of the arrays the step reads and writes (None skipped)."""

    def emitter(step, w: Writer):
        if getattr(step, "comment", ""):
            w(f"# {step.comment}")
        inner = Writer(w.dtype)
        inner.ranks, inner.strided, inner.specialise = w.ranks, w.strided, w.specialise
        emit(dataclasses.replace(step, comment=""), inner)
        names = list(dict.fromkeys(a for a in arrays(step) if a))
        text = _renamed("\n".join(inner.lines), names)
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        name = f"{prefix}_{digest}" + ("_f32" if w.dtype == "float32" else "")
        if name not in HELPERS:
            what = getattr(step, "kind", prefix)
            HELPERS[name] = (f"\n@njit(**JIT_INNER)\ndef {name}({', '.join(f'a{k}' for k in range(len(names)))}):\n"
                             f'{INDENT}"""A {prefix} step ({what}), shared by every step printed alike."""\n{text}\n')
        w.printer.helpers.add(name)
        w.printer.helpers |= inner.printer.helpers
        w(f"{name}({', '.join(names)})")

    return emitter


def _renamed(text: str, names: list) -> str:
    """``text`` with the arrays ``names`` renamed a0, a1, … in order, all at once (one called
    'a1' must not take another's new name with it), and with them the printers' locals named
    after an array (``x_rows``, ``_flat_x``, ``_gf_x``)."""
    canonical = {name: f"a{k}" for k, name in enumerate(names)}
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.sub(rf"(?<![\w])(_flat_|_gf_)?({pattern})(_rows)?(?![\w])",
                  lambda m: f"{m.group(1) or ''}{canonical[m.group(2)]}{m.group(3) or ''}", text)
