"""Loop nests the generated functions share: each is compiled once per array type and
called from every place that needs it.

Numba's compile time grows with the code it types and lowers, and it compiles an array
expression (``a[...] = b``, ``a += b``) as a broadcasting kernel of its own at every place
it is written. Written out inline, an LSTM's forty small products and its recurrence's
copies cost it tens of seconds; as calls to these helpers they cost one compilation per
distinct shape. The helpers are registered in `codegen.printer.HELPERS` by name and
emitted into the module of any program that uses them.
"""
from __future__ import annotations

import hashlib
import re

import sympy

from . import schedule as S
from .printer import FASTMATH, HELPERS

__all__ = ["small_matmul", "shareable_nest", "share_nest", "array_helper", "ANY_NONZERO", "stack_helper",
           "swap01_helper"]


def small_matmul(trans_a, trans_b, shape, dtype, fixed=True) -> str:
    """A loop nest for tiny products, shared by every product of its shape (``fixed``) or of
    its transposition family (sizes read from the arrays).

    Written out inline, the forty small products of an LSTM's gradient cell cost tens of
    seconds of compilation; as calls they cost one compilation per distinct shape. With
    ``fixed`` the sizes stay literals, so LLVM unrolls and vectorises as it did inline: that
    pays in a recurrence's step, run T times a batch. Elsewhere (a small MLP's layers) the
    size-generic nest runs as fast and is compiled once for all shapes instead of once per
    shape. ``shape`` is (m, k, n) as printed: an int's text, or "B" for the batch."""
    if not fixed:
        return _generic_matmul(trans_a, trans_b, dtype)
    m, k, n = (str(d) for d in shape)
    name = (f"matmul_{'t' if trans_a else 'n'}{'t' if trans_b else 'n'}_{m}x{k}x{n}"
            + ("_f32" if dtype == "float32" else ""))
    if name in HELPERS:
        return name
    batch = ("a.shape[1]" if trans_a else "a.shape[0]") if m == "B" else \
            ("a.shape[0]" if trans_a else "a.shape[1]") if k == "B" else \
            ("b.shape[0]" if trans_b else "b.shape[1]")
    m, k, n = (batch if d == "B" else d for d in (m, k, n))
    ra = "a[p, i]" if trans_a else "a[i, p]"
    rb = "b[j, p]" if trans_b else "b[p, j]"
    what = f"out = {'a.T' if trans_a else 'a'} @ {'b.T' if trans_b else 'b'}"
    HELPERS[name] = f'''
@njit(**JIT_INNER)
def {name}(a, b, out):
    """{what}, {shape[0]}×{shape[1]} by {shape[1]}×{shape[2]}, as plain loops (a BLAS call costs more)."""
    for i in range({m}):
        for j in range({n}):
            acc = {"np.float32(0.0)" if dtype == "float32" else "0.0"}
            for p in range({k}):
                acc += {ra} * {rb}
            out[i, j] = acc
'''
    return name


def _generic_matmul(trans_a, trans_b, dtype) -> str:
    """``matmul_nn`` / ``_nt`` / ``_tn`` / ``_tt``: any sizes (see `_generic_matmul_text`)."""
    return _register(*_generic_matmul_text(trans_a, trans_b, dtype))


def _generic_matmul_text(trans_a, trans_b, dtype):
    """The innermost loop runs along contiguous rows of b and out (or, for b.T, a dot product
    of two rows), so it vectorises without literal sizes; each out[i, j] still sums over p in
    ascending order."""
    tag = f"{'t' if trans_a else 'n'}{'t' if trans_b else 'n'}"
    name = f"matmul_{tag}" + ("_f32" if dtype == "float32" else "")
    zero = "np.float32(0.0)" if dtype == "float32" else "0.0"
    m, k = ("a.shape[1]", "a.shape[0]") if trans_a else ("a.shape[0]", "a.shape[1]")
    n = "b.shape[0]" if trans_b else "b.shape[1]"
    ra = "a[p, i]" if trans_a else "a[i, p]"
    if trans_b:   # rows of a (or columns, for a.T) against rows of b
        body = (f"    for i in range({m}):\n        for j in range({n}):\n            acc = {zero}\n"
                f"            for p in range({k}):\n                acc += {ra} * b[j, p]\n"
                f"            out[i, j] = acc\n")
    else:         # out[i, :] += a_ip · b[p, :]
        body = (f"    for i in range({m}):\n        for j in range({n}):\n            out[i, j] = {zero}\n"
                f"        for p in range({k}):\n            aip = {ra}\n            for j in range({n}):\n"
                f"                out[i, j] += aip * b[p, j]\n")
    what = f"out = {'a.T' if trans_a else 'a'} @ {'b.T' if trans_b else 'b'}"
    return name, (f'\n@njit(**JIT)\ndef {name}(a, b, out):\n    """{what} for small sizes of any shape, as plain '
                  f'loops (a BLAS call costs more)."""\n' + body)


def shareable_nest(step: S.Loop) -> bool:
    """A deep nest of array sums only (a batched matmul, an axis reduction): self-contained,
    so one helper can serve every nest of the same shape."""
    if len(step.indices) < 3 or not all(isinstance(b, S.Accumulate) and b.op == "sum"
                                        and isinstance(b.target, sympy.Indexed) for b in step.body):
        return False
    for b in step.body:
        for e in (b.expr, b.target):
            reads = e.atoms(sympy.Indexed)
            loose = e.free_symbols - reads - set(step.indices) - {r.base.label for r in reads}
            if loose:
                return False   # a scalar from outside the nest: keep it inline
    return True


def share_nest(step: S.Loop, text: str, dtype: str):
    """The helper for a nest printed as ``text`` (its arrays renamed a0, a1… in order of
    appearance, so equal nests share one) and the arguments to call it with."""
    names = {str(i.base) for b in step.body
             for i in (b.expr.atoms(sympy.Indexed) | ({b.target} if hasattr(b, "target") else set()))}
    first = {n: re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", text).start() for n in names}
    arrays = sorted(names, key=first.get)
    # all at once: renamed one by one, an array called 'a1' would take x's new name 'a1' with it
    canonical = {name: f"a{k}" for k, name in enumerate(arrays)}
    pattern = "|".join(re.escape(n) for n in sorted(arrays, key=len, reverse=True))
    text = re.sub(rf"(?<![\w])(?:{pattern})(?![\w])", lambda m: canonical[m.group(0)], text)
    batch = ["B"] if re.search(r"(?<![\w])B(?![\w])", text) else []
    params = [f"a{k}" for k in range(len(arrays))] + batch
    # the depth first: a name of digits after "loops_" would read as a uniqueness suffix (names.py)
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    name = f"loops_{len(step.indices)}d_{digest}" + ("_f32" if dtype == "float32" else "")
    if name not in HELPERS:
        dims = " × ".join("B" if str(d) == "B" else str(d) for d in step.extents)
        what = "accumulation nest" if all(isinstance(b, S.Accumulate) for b in step.body) else "loop nest"
        doc = f"A {len(step.indices)}-deep {what} ({dims}), shared by every nest of this shape."
        HELPERS[name] = f"\n@njit(**JIT_INNER)\ndef {name}({', '.join(params)}):\n    \"\"\"{doc}\"\"\"\n{text}\n"
    return name, arrays + batch


# -- the recurrence's array statements, as plain loops per rank ----------------------------
def _rank(shape):
    return max(1, len(shape))   # 0-d values are 1-element arrays in generated code


def _loops(rank, statement):
    idx = ", ".join(f"i{d}" for d in range(rank))
    lines = [f"{'    ' * (d + 1)}for i{d} in range(dst.shape[{d}]):" for d in range(rank)]
    return "\n".join(lines + ["    " * (rank + 1) + statement.format(idx=idx)])


def array_helper(kind, shape):
    """``copy_2d`` / ``add_2d`` / ``fill_2d``… for arrays of ``shape``'s rank (made once)."""
    return _register(*_array_text(kind, _rank(shape)))


def _array_text(kind, rank):
    name = f"{kind}_{rank}d"
    args, doc, statement = {"copy": ("dst, src", "dst[...] = src", "dst[{idx}] = src[{idx}]"),
                            "add": ("dst, src", "dst += src", "dst[{idx}] += src[{idx}]"),
                            "fill": ("dst, value", "dst[...] = value", "dst[{idx}] = value")}[kind]
    return name, (f'\n@njit(**JIT)\ndef {name}({args}):\n    """{doc} ({rank}-d)."""\n'
                  + _loops(rank, statement) + "\n")


ANY_NONZERO = "any_nonzero"
_ANY_NONZERO_TEXT = '''
@njit(**JIT)
def any_nonzero(a):
    """True if an element of a (contiguous) is not zero."""
    for v in a.flat:
        if v != 0:
            return True
    return False
'''


def stack_helper(kind) -> str:
    """``stack_to_cols`` / ``cols_to_stack``: a time-major stack (T, B, F) to or from the
    per-example columns off … off + T·F of a (B, width) array (the loop's packed row)."""
    return _register(*_stack_text(kind))


def _stack_text(kind):
    if kind == "stack_to_cols":
        sig, doc, stmt = "dst, off, src", "dst[b, off + t·F + c] = src[t, b, c]", \
            "dst[b, off + t * F + c] = src[t, b, c]"
        shape = "src"
    else:
        sig, doc, stmt = "dst, src, off", "dst[t, b, c] = src[b, off + t·F + c]", \
            "dst[t, b, c] = src[b, off + t * F + c]"
        shape = "dst"
    return kind, (f'\n@njit(**JIT)\ndef {kind}({sig}):\n    """{doc}."""\n'
                  f"    F = {shape}.shape[2]\n"
                  f"    for b in range({shape}.shape[1]):\n"
                  f"        for t in range({shape}.shape[0]):\n"
                  f"            for c in range(F):\n"
                  f"                {stmt}\n")


def swap01_helper(rank) -> str:
    """``swap01_<r>d(dst, src)``: dst[t, b, …] = src[b, t, …] (batch-major ↔ time-major)."""
    return _register(*_swap01_text(rank))


def _swap01_text(rank):
    name = f"swap01_{rank}d"
    rest = "".join(f", i{d}" for d in range(2, rank))
    lines = ["    for b in range(src.shape[0]):", "        for t in range(src.shape[1]):"]
    for d in range(2, rank):
        lines.append("    " * (d + 1) + f"for i{d} in range(src.shape[{d}]):")
    lines.append("    " * (rank + 1) + f"dst[t, b{rest}] = src[b, t{rest}]")
    return name, (f'\n@njit(**JIT)\ndef {name}(dst, src):\n    """dst[t, b, …] = src[b, t, …] '
                  f'({rank}-d)."""\n' + "\n".join(lines) + "\n")


# -- compiled once per install ------------------------------------------------------------------
# The helpers above that depend on no model (size- and rank-generic) are stored, as these
# generators print them, in codegen/generic_kernels.py, which Numba compiles and caches once;
# a generated module imports them instead of compiling its own copies (a small model's cold
# compile spent a fifth of its time on them). Ranks beyond these are printed into the module.
GENERIC_RANKS = (1, 2, 3, 4)
GENERIC_MODULE = "codegen.generic_kernels"


def _generic_texts() -> dict:
    texts = dict(_generic_matmul_text(ta, tb, dt) for dt in ("float64", "float32")
                 for ta in (False, True) for tb in (False, True))
    texts.update(_array_text(kind, r) for kind in ("copy", "add", "fill") for r in GENERIC_RANKS)
    texts.update(_swap01_text(r) for r in GENERIC_RANKS if r >= 2)
    texts.update(_stack_text(kind) for kind in ("stack_to_cols", "cols_to_stack"))
    texts[ANY_NONZERO] = _ANY_NONZERO_TEXT
    texts.update(_stored_updates())
    return texts


#: the optimizers whose apply_update is stored (the same text for every model)
STORED_OPTIMIZERS = ("sgd", "momentum", "adam")


def _update_name(optimizer: str, dtype: str) -> str:
    return f"apply_update_{optimizer}_{dtype}"


def _stored_updates() -> dict:
    from graphnn.optim import make_optimizer

    from .emit_update import emit_update
    from .plan import update_step

    return {_update_name(o, dt): emit_update(update_step(make_optimizer(o)), dt, _update_name(o, dt))
            for o in STORED_OPTIMIZERS for dt in ("float64", "float32")}


_GENERIC = _generic_texts()


def generic_kernels_source() -> str:
    """The text of codegen/generic_kernels.py (tests/test_generic_kernels.py keeps the file equal)."""
    header = ('"""Size- and rank-generic loop helpers, compiled by Numba once per install (cache=True) and\n'
              'imported by every generated module. Generated by codegen/shared_loops.py — do not edit; after\n'
              'changing a generator there, run `python scripts/write_generic_kernels.py` to write this file again.\n"""\n'
              "import math\n\nimport numpy as np\n\n"
              "from .linking import njit  # calls between our functions: codegen/linking.py\n\n"
              "# the generated modules' flags (printer.FASTMATH) written out: Numba's cache of this file\n"
              "# and the digest in the modules' import lines see only this file's text\n"
              f'JIT = dict(cache=True, fastmath={{{", ".join(repr(f) for f in sorted(FASTMATH))}}}, '
              'error_model="numpy", no_cfunc_wrapper=True)\n')
    return header + "".join("\n\n" + _GENERIC[name].strip("\n") + "\n" for name in sorted(_GENERIC))


#: the stored kernels' version: in each import line, so a module that imports changed
#: kernels has a new source, hence a new cache entry (Numba's cache of the importing module
#: would keep the old kernels' code linked in)
_GENERIC_DIGEST = hashlib.sha256(generic_kernels_source().encode()).hexdigest()[:12]


def _register(name, text) -> str:
    """Make ``name`` a helper: imported from the stored kernels when it is one of them."""
    if name not in HELPERS:
        HELPERS[name] = (f"from {GENERIC_MODULE} import {name}  # kernels {_GENERIC_DIGEST}"
                         if _GENERIC.get(name) == text else text)
    return name


HELPERS[ANY_NONZERO] = f"from {GENERIC_MODULE} import {ANY_NONZERO}  # kernels {_GENERIC_DIGEST}"


def stored_update(update, dtype: str, helpers: set) -> str:
    """The module's ``apply_update``: imported from the stored kernels when a built-in
    optimizer's rules print the stored text (~0.2 s less of every cold compile), else printed
    (the helpers its rules call join ``helpers``)."""
    from .emit_update import emit_update

    for optimizer in STORED_OPTIMIZERS:
        name = _update_name(optimizer, dtype)
        if emit_update(update, dtype, name) == _GENERIC[name]:
            return f"from {GENERIC_MODULE} import {name} as apply_update  # kernels {_GENERIC_DIGEST}\n"
    return emit_update(update, dtype, helpers=helpers)

