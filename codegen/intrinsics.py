"""The intrinsics generated code calls where Numba's own construct costs a compile per place:
``gemm(a, b, out)`` instead of ``np.dot(a, b, out)``, ``view(a, shape)`` instead of
``a.reshape(shape)``, ``permuted(a, axes)`` instead of ``a.transpose(axes)`` and ``rows(a, n)``
instead of ``a[:n]``. Each is a few instructions at its
call site.

``gemm(a, b, out)``: out = a @ b by one BLAS call. Numba compiles ``np.dot(a, b, out)`` as an
overload, one function per combination of operand layouts (C·C, C·Fᵀ, Fᵀ·C — each 0.2–0.35 s
of a cold compile), and each checks the shapes with an error message built by Numba's string
machinery. ``gemm`` hands the operands to the same BLAS routine (``numba_xxgemm``: SciPy's
BLAS), the transposes read from the layouts (a ``.T`` view of a C-contiguous buffer is
F-contiguous). Contract: ``a`` (m, k) and ``b`` (k, n) C- or F-contiguous, ``out`` (m, n)
C-contiguous, one float dtype, ``out`` not overlapping ``a`` or ``b``. Shapes that do not match
raise ValueError (a constant message: three comparisons); any other layout or dtype is a
typing error at compile time, never a silent copy.

``gemm_update(a, b, out, alpha)``: out += alpha · (a @ b), the same BLAS call with β = 1: plain
SGD's step folded into a weight's gradient product (codegen/fuse_update.py), so that the
gradient is never stored and read back. Operands as for ``gemm``; ``out`` must not overlap them.

``view(a, shape)``: ``a.reshape(shape)`` for a C-contiguous ``a`` — a new header on the same
data, its C strides computed from the shape (one ``-1`` is inferred); a size that differs
raises ValueError. Numba's reshape goes through a C helper that searches for strides, with
stack buffers and its own error paths (~17 ms of compile per call site; the LSTM's module has
175). An F-contiguous array goes to Numba's reshape; any other layout is a typing error, as
there.

``permuted(a, axes)``: ``a.transpose(axes)`` — a new header, the shape and strides permuted
(axes that are not a permutation raise ValueError). Numba's transpose with axes compiles a
helper (fancy indexing of the shape) per function that uses it: ~1.4 s of cold compile each,
a third of the attention model's.

``strided(a)``: ``a`` itself, typed as any layout ('A'). Numba compiles a function once per
argument layout, so a shared loop nest called with a permuted view in one place and a
contiguous array in another compiled twice (attention: three helpers, ~0.5 s); its contiguous
operands at that position are passed as ``strided`` (codegen/nest_sharing.py).

``carve(work, offset, shape)``: ``work[offset:offset + size].reshape(shape)`` for a 1-D
C-contiguous ``work`` — a C-contiguous header on its data from element ``offset`` on. A
Python-callable generated function takes its temporaries as one workspace and carves them in
its first lines (codegen/workspace.py: why); a part outside ``work`` raises ValueError.

``rows(a, n)``: ``a[:n]``, the batch's leading rows of an epoch buffer (a header with n rows;
n outside 0 … len(a) raises ValueError). Numba's slicing handles any slice (negative bounds,
steps, clipping): ~7 ms of compile per place, and the transformer's epoch slices ~150 buffers.

The generated module ends with this file's code from the marker below on (printed by
codegen/emit_cpu.py after the kernels, which read first): the module stays self-contained — its compiler process imports nothing
of graphnn — and its cache key covers this code. Names are private so that they cannot meet
a generated name (``gemm``, ``view``, ``permuted``, ``strided``, ``carve`` and ``rows`` are reserved: codegen/lower.py). Under Numba's
DISABLE_JIT (the module run as plain Python) they are NumPy's own ``np.dot``, ``reshape`` and slicing.
"""
# -- printed into generated modules from here on --
import llvmlite.ir as _llvm
import numpy as np
from numba.core import cgutils as _cgutils, config as _config, types as _types
from numba.core.errors import TypingError as _TypingError
from numba.core.extending import intrinsic as _intrinsic
from numba.core.imputils import impl_ret_borrowed as _borrowed
from numba.core.typing import signature as _signature
from numba.np.linalg import check_blas_return as _check_blas, ensure_blas as _ensure_blas, \
    get_blas_kind as _blas_kind


def _gemm_types(name, a, b, out):
    """gemm's and gemm_update's operand checks (typing errors at compile time)."""
    arrays = (a, b, out)
    if not all(isinstance(x, _types.Array) and x.ndim == 2 for x in arrays):
        raise _TypingError(f"{name}: 2-d arrays expected, got {arrays}")
    if len({x.dtype for x in arrays}) != 1 or a.dtype not in (_types.float32, _types.float64):
        raise _TypingError(f"{name}: one float dtype expected, got {[x.dtype for x in arrays]}")
    if a.layout not in "CF" or b.layout not in "CF" or out.layout != "C":
        raise _TypingError(f"{name}: contiguous operands expected (a, b: C or F; out: C), got layouts "
                           f"{a.layout}, {b.layout}, {out.layout}")


def _gemm_call(context, builder, sig, args, name, alpha=None, beta=0.0):
    """out = alpha·(a @ b) + beta·out by one ``numba_xxgemm`` call (SciPy's BLAS), with Numba's
    own argument order (row-major out: BLAS computes outᵀ = bᵀ·aᵀ); alpha an LLVM value of the
    dtype (None: 1), beta a constant."""
    _ensure_blas()
    x, y, z = (_Header(context, builder, t, v) for t, v in zip(sig.args[:3], args[:3]))
    (m, k), (k2, n), (m2, n2) = (_cgutils.unpack_tuple(builder, v.shape) for v in (x, y, z))
    differ = [builder.icmp_signed("!=", p, q) for p, q in ((k, k2), (m, m2), (n, n2))]
    with builder.if_then(builder.or_(builder.or_(*differ[:2]), differ[2]), likely=False):
        context.call_conv.return_user_exc(builder, ValueError, (f"{name}: the operands' shapes do not match",))
    dtype = sig.args[0].dtype
    alpha = context.get_constant(dtype, 1.0) if alpha is None else alpha
    slots = [_cgutils.alloca_once_value(builder, v) for v in (alpha, context.get_constant(dtype, beta))]
    char, voidp, intp = _llvm.IntType(8), _cgutils.voidptr_t, context.get_value_type(_types.intp)
    fnty = _llvm.FunctionType(_llvm.IntType(32), [char, char, char, intp, intp, intp, voidp, voidp, intp,
                                                  voidp, intp, voidp, voidp, intp])
    fn = _cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

    def operand(ty, cols, rows, data):   # a C operand as is, an F one (a transpose) as 't'
        c = ty.layout == "C"
        return _llvm.Constant(char, ord("n" if c else "t")), cols if c else rows, builder.bitcast(data, voidp)

    trans_b, ld_b, data_b = operand(sig.args[1], n, k2, y.data)
    trans_a, ld_a, data_a = operand(sig.args[0], k, m, x.data)
    kind = _llvm.Constant(char, ord(_blas_kind(dtype)))
    status = builder.call(fn, (kind, trans_b, trans_a, n, m, k, builder.bitcast(slots[0], voidp), data_b, ld_b,
                               data_a, ld_a, builder.bitcast(slots[1], voidp), builder.bitcast(z.data, voidp), n))
    _check_blas(context, builder, status)


@_intrinsic
def gemm(typingctx, a, b, out):
    """out = a @ b by one BLAS call: a, b C- or F-contiguous, out C-contiguous (codegen/intrinsics.py)."""
    _gemm_types("gemm", a, b, out)

    def codegen(context, builder, sig, args):
        _gemm_call(context, builder, sig, args, "gemm")
        return context.get_dummy_value()

    return _signature(_types.none, a, b, out), codegen


@_intrinsic
def gemm_update(typingctx, a, b, out, alpha):
    """out += alpha · (a @ b) by one BLAS call (β = 1): plain SGD's step folded into a weight's
    gradient product (codegen/fuse_update.py); operands as for gemm, alpha a number."""
    _gemm_types("gemm_update", a, b, out)
    if not isinstance(alpha, (_types.Float, _types.Integer)):
        raise _TypingError(f"gemm_update: a number alpha expected, got {alpha}")

    def codegen(context, builder, sig, args):
        dtype = sig.args[0].dtype
        _gemm_call(context, builder, sig, args, "gemm_update",
                   alpha=context.cast(builder, args[3], sig.args[3], dtype), beta=1.0)
        return context.get_dummy_value()

    return _signature(_types.none, a, b, out, alpha), codegen


def _dims_types(shape, who):
    """The integer types of a shape argument (an integer or a tuple of them); else a typing error."""
    if isinstance(shape, _types.Integer):
        return [shape]
    if isinstance(shape, _types.BaseTuple) and all(isinstance(t, _types.Integer) for t in shape.types):
        return list(shape.types)
    raise _TypingError(f"{who}: a shape of integers expected, got {shape}")


def _dims(context, builder, shapety, value, dims_types):
    """A shape argument's values as intp."""
    raw = [value] if isinstance(shapety, _types.Integer) else _cgutils.unpack_tuple(builder, value)
    return [context.cast(builder, d, t, _types.intp) for d, t in zip(raw, dims_types)]


class _Header:
    """An array argument's header fields, read from its value (``extractvalue``): no stack slot,
    where Numba's ``make_array`` proxy stores the header to memory and loads each field back."""

    def __init__(self, context, builder, aryty, value):
        self._model, self._builder, self._value = context.data_model_manager[aryty], builder, value

    def __getattr__(self, name):   # meminfo, parent, nitems, itemsize, data, shape, strides
        return self._builder.extract_value(self._value, self._model.get_field_position(name))


def _new_header(context, builder, view_type, data, shape, strides, like):
    """A header of ``view_type`` on ``data`` with the given ``shape`` and ``strides`` (lists of
    intp values, or an array value for strides), ``like``'s itemsize, meminfo and parent —
    built by ``insertvalue``, as an SSA value: each header Numba's ``populate_array`` makes
    is a stack slot that LLVM's SROA must take apart again (the epoch functions make hundreds)."""
    model = context.data_model_manager[view_type]
    nitems = context.get_constant(_types.intp, 1)
    for d in shape:
        nitems = builder.mul(nitems, d, flags=["nsw"])
    value = _llvm.Constant(model.get_value_type(), _llvm.Undefined)
    for name, v in (("meminfo", like.meminfo), ("parent", like.parent), ("nitems", nitems),
                    ("itemsize", like.itemsize), ("data", data)):
        value = builder.insert_value(value, v, model.get_field_position(name))
    for name, values in (("shape", shape), ("strides", strides)):
        at = model.get_field_position(name)
        if isinstance(values, (list, tuple)):
            for i, v in enumerate(values):
                value = builder.insert_value(value, v, [at, i])
        else:
            value = builder.insert_value(value, values, at)
    return _borrowed(context, builder, view_type, value)


def _c_contiguous(context, builder, view_type, ary, data, dims):
    """A new C-contiguous header of shape ``dims`` on ``ary``'s memory from ``data`` on (view, carve)."""
    strides, step = [], ary.itemsize
    for d in reversed(dims):
        strides.append(step)
        step = builder.mul(step, d)
    return _new_header(context, builder, view_type, data, dims, strides[::-1], ary)


@_intrinsic
def view(typingctx, a, shape):
    """a.reshape(shape) without a copy for a C-contiguous a (codegen/intrinsics.py)."""
    if not isinstance(a, _types.Array) or a.layout not in "CF":
        raise _TypingError(f"view: a contiguous array expected (as for Numba's reshape), got {a}")
    dims_types = _dims_types(shape, "view")
    result = a.copy(ndim=len(dims_types))   # the type Numba's reshape gives

    def codegen(context, builder, sig, args):
        aryty, shapety = sig.args
        if aryty.layout != "C":   # F-contiguous: Numba's reshape (it may need to copy, and says so)
            return context.compile_internal(builder, lambda x, s: x.reshape(s), sig, args)
        ary = _Header(context, builder, aryty, args[0])
        dims = _dims(context, builder, shapety, args[1], dims_types)
        one, zero = (context.get_constant(_types.intp, v) for v in (1, 0))
        known = one
        for d in dims:   # one -1 is inferred: nitems / the product of the others
            known = builder.mul(known, builder.select(builder.icmp_signed("<", d, zero), one, d))
        safe = builder.select(builder.icmp_signed("==", known, zero), one, known)
        inferred = builder.sdiv(ary.nitems, safe)
        dims = [builder.select(builder.icmp_signed("<", d, zero), inferred, d) for d in dims]
        total = one
        for d in dims:
            total = builder.mul(total, d)
        with builder.if_then(builder.icmp_signed("!=", total, ary.nitems), likely=False):
            context.call_conv.return_user_exc(builder, ValueError, ("view: the new shape's size differs",))
        return _c_contiguous(context, builder, sig.return_type, ary, ary.data, dims)

    return _signature(result, a, shape), codegen


def _row_view(context, builder, view_type, ary, data, count):
    """A new header on ``ary``'s data from ``data`` on: ``count`` rows, the same strides (rows, rows_at)."""
    shape = _cgutils.unpack_tuple(builder, ary.shape)
    return _new_header(context, builder, view_type, data, [count] + shape[1:], ary.strides, ary)


@_intrinsic
def rows(typingctx, a, n):
    """a[:n] for 0 <= n <= len(a): the same header with n rows (codegen/intrinsics.py)."""
    if not isinstance(a, _types.Array) or a.ndim < 1 or not isinstance(n, _types.Integer):
        raise _TypingError(f"rows: an array and a row count expected, got {a}, {n}")

    def codegen(context, builder, sig, args):
        ary = _Header(context, builder, sig.args[0], args[0])
        count = context.cast(builder, args[1], sig.args[1], _types.intp)
        shape = _cgutils.unpack_tuple(builder, ary.shape)
        bad = builder.or_(builder.icmp_signed("<", count, context.get_constant(_types.intp, 0)),
                          builder.icmp_signed(">", count, shape[0]))
        with builder.if_then(bad, likely=False):
            context.call_conv.return_user_exc(builder, ValueError, ("rows: more rows asked than the array has",))
        return _row_view(context, builder, sig.return_type, ary, ary.data, count)

    result = a if a.layout == "C" else a.copy(layout="A")   # leading rows of an F array are strided
    return _signature(result, a, n), codegen


@_intrinsic
def rows_at(typingctx, a, first, n):
    """a[first:first + n] for 0 <= first, 0 <= n, first + n <= len(a): the same data from row
    ``first`` on, n rows (codegen/intrinsics.py)."""
    if not isinstance(a, _types.Array) or a.ndim < 1 or not all(isinstance(x, _types.Integer) for x in (first, n)):
        raise _TypingError(f"rows_at: an array, a first row and a row count expected, got {a}, {first}, {n}")

    def codegen(context, builder, sig, args):
        ary = _Header(context, builder, sig.args[0], args[0])
        start, count = (context.cast(builder, v, t, _types.intp) for v, t in zip(args[1:], sig.args[1:]))
        shape = _cgutils.unpack_tuple(builder, ary.shape)
        zero = context.get_constant(_types.intp, 0)
        bad = builder.or_(builder.or_(builder.icmp_signed("<", start, zero), builder.icmp_signed("<", count, zero)),
                          builder.icmp_signed(">", builder.add(start, count), shape[0]))
        with builder.if_then(bad, likely=False):
            context.call_conv.return_user_exc(builder, ValueError, ("rows_at: rows outside the array asked",))
        stride0 = _cgutils.unpack_tuple(builder, ary.strides)[0]
        byte = builder.bitcast(ary.data, _cgutils.voidptr_t)
        data = builder.bitcast(builder.gep(byte, [builder.mul(start, stride0)]), ary.data.type)
        return _row_view(context, builder, sig.return_type, ary, data, count)

    result = a if a.layout == "C" else a.copy(layout="A")
    return _signature(result, a, first, n), codegen



@_intrinsic
def permuted(typingctx, a, axes):
    """a.transpose(axes): the same data, its shape and strides permuted (codegen/intrinsics.py)."""
    if not isinstance(a, _types.Array) or not isinstance(axes, _types.UniTuple) \
            or not isinstance(axes.dtype, _types.Integer) or axes.count != a.ndim:
        raise _TypingError(f"permuted: an array and one axis per dimension expected, got {a}, {axes}")

    def codegen(context, builder, sig, args):
        n = a.ndim
        ary = _Header(context, builder, sig.args[0], args[0])
        picks = [context.cast(builder, v, axes.dtype, _types.intp) for v in _cgutils.unpack_tuple(builder, args[1], n)]
        shape, strides = (_cgutils.unpack_tuple(builder, t, n) for t in (ary.shape, ary.strides))
        zero, top = (context.get_constant(_types.intp, v) for v in (0, n))
        bad = _cgutils.false_bit
        new_shape, new_strides = [], []
        for i, p in enumerate(picks):   # constants at every call site: LLVM folds the selects
            bad = builder.or_(bad, builder.or_(builder.icmp_signed("<", p, zero), builder.icmp_signed(">=", p, top)))
            for q in picks[:i]:
                bad = builder.or_(bad, builder.icmp_signed("==", p, q))
            size, step = zero, zero
            for j in range(n):
                hit = builder.icmp_signed("==", p, context.get_constant(_types.intp, j))
                size, step = builder.select(hit, shape[j], size), builder.select(hit, strides[j], step)
            new_shape.append(size)
            new_strides.append(step)
        with builder.if_then(bad, likely=False):
            context.call_conv.return_user_exc(builder, ValueError, ("permuted: the axes are not a permutation",))
        return _new_header(context, builder, sig.return_type, ary.data, new_shape, new_strides, ary)

    return _signature(a.copy(layout="A"), a, axes), codegen   # the type Numba's transpose gives


@_intrinsic
def strided(typingctx, a):
    """``a`` typed as any layout ('A'), the same value (codegen/intrinsics.py)."""
    if not isinstance(a, _types.Array):
        raise _TypingError(f"strided: an array expected, got {a}")

    def codegen(context, builder, sig, args):
        return _borrowed(context, builder, sig.return_type, args[0])   # one data model for every layout

    return _signature(a.copy(layout="A"), a), codegen


@_intrinsic
def carve(typingctx, work, offset, shape):
    """work[offset:offset + size].reshape(shape) of a 1-D C-contiguous ``work``: a C-contiguous
    header on its data from element ``offset`` on (codegen/intrinsics.py)."""
    if not isinstance(work, _types.Array) or work.ndim != 1 or work.layout != "C" \
            or not isinstance(offset, _types.Integer):
        raise _TypingError(f"carve: a 1-D C-contiguous array and an offset expected, got {work}, {offset}")
    dims_types = _dims_types(shape, "carve")

    def codegen(context, builder, sig, args):
        ary = _Header(context, builder, sig.args[0], args[0])
        start = context.cast(builder, args[1], sig.args[1], _types.intp)
        dims = _dims(context, builder, sig.args[2], args[2], dims_types)
        zero = context.get_constant(_types.intp, 0)
        bad, total = builder.icmp_signed("<", start, zero), context.get_constant(_types.intp, 1)
        for d in dims:
            bad = builder.or_(bad, builder.icmp_signed("<", d, zero))
            total = builder.mul(total, d)
        bad = builder.or_(bad, builder.icmp_signed(">", builder.add(start, total), ary.nitems))
        with builder.if_then(bad, likely=False):
            context.call_conv.return_user_exc(builder, ValueError, ("carve: a part outside the workspace asked",))
        return _c_contiguous(context, builder, sig.return_type, ary, builder.gep(ary.data, [start]), dims)

    return _signature(_types.Array(work.dtype, len(dims_types), "C"), work, offset, shape), codegen


if _config.DISABLE_JIT:   # the module runs as plain Python (NUMBA_DISABLE_JIT): the same operations by NumPy
    def gemm(a, b, out):  # noqa: F811
        np.dot(a, b, out)

    def gemm_update(a, b, out, alpha):  # noqa: F811
        out += alpha * (a @ b)

    def view(a, shape):  # noqa: F811
        return a.reshape(shape)

    def rows(a, n):  # noqa: F811
        return a[:n]

    def permuted(a, axes):  # noqa: F811
        return a.transpose(axes)

    def strided(a):  # noqa: F811
        return a

    def rows_at(a, first, n):  # noqa: F811
        if first < 0 or n < 0 or first + n > len(a):
            raise ValueError("rows_at: rows outside the array asked")
        return a[first:first + n]

    def carve(work, offset, shape):  # noqa: F811
        size = int(np.prod(shape))
        if offset < 0 or np.any(np.asarray(shape) < 0) or offset + size > len(work):
            raise ValueError("carve: a part outside the workspace asked")
        return work[offset:offset + size].reshape(shape)
