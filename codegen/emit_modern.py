"""CPU printers of lower_modern.py's row steps: each one call to a kernel of
codegen/modern_kernels.py, which the generated module imports (a `codegen.printer.HELPERS`
entry that is an import line), so those kernels compile once per process however many
models and layers use them — not once per generated module.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .emit_cpu import register_emitter
from .lower_modern import RowNorm, RowNormGrad, ScatterAddRows, SparseCE
from .printer import HELPERS

KERNELS = ("layer_norm_rows", "layer_norm_grad_rows", "sparse_ce_rows", "sparse_ce_grad_rows", "scatter_add_rows")
# the kernels' digest in each import line: a module importing changed kernels has a new source,
# hence a new cache entry (Numba's cache of the importing module keeps the old code linked in)
_DIGEST = hashlib.sha256(Path(__file__).with_name("modern_kernels.py").read_bytes()).hexdigest()[:12]
for _name in KERNELS:
    HELPERS[_name] = f"from codegen.modern_kernels import {_name}  # kernels {_DIGEST}"


def _call(w, name, step, args):
    w.printer.helpers.add(name)
    w(f"# {step.comment}")
    w(f"{name}({', '.join(args)})")


def _row_norm(step: RowNorm, w):
    _call(w, "layer_norm_rows", step, [step.x, step.out, repr(step.eps)])


def _row_norm_grad(step: RowNormGrad, w):
    _call(w, "layer_norm_grad_rows", step, [step.g, step.x, step.out, repr(step.eps)])


def _sparse_ce(step: SparseCE, w):
    if step.grad is None:
        _call(w, "sparse_ce_rows", step, [step.logits, step.labels, step.out])
    else:
        _call(w, "sparse_ce_grad_rows", step, [step.grad, step.logits, step.labels, step.out])


def _scatter_add(step: ScatterAddRows, w):
    _call(w, "scatter_add_rows", step, [step.g, step.ids, step.out])


for _type, _fn in {RowNorm: _row_norm, RowNormGrad: _row_norm_grad, SparseCE: _sparse_ce,
                   ScatterAddRows: _scatter_add}.items():
    register_emitter(_type, _fn)
