"""exp and tanh as branch-free arithmetic, so the loops that call them vectorise.

libm's ``exp`` is a scalar call: a loop over a softmax row or a sigmoid layer calls it once
per element and cannot use the vector units (W1's softmax, every LSTM gate). These are plain
multiply-adds and bit operations, compiled once per install (``cache=True``, the generated
modules' fast-math flags); LLVM inlines them into the loops that call them, which then
vectorise. (Numba's own ``inline="always"`` gave the same kernels but cost every calling
module ~0.4 s more to compile: LSTM 6.9 s against 7.7 s.)

- ``exp``: x = k·ln2 + r with |r| ≤ ln2/2 (Cody–Waite: ln2 in two parts, by fused
  multiply-adds that the caller's ``reassoc`` flag cannot merge), then
  exp(x) = 2^k·(1 + expm1(r)), expm1(r) by its Taylor polynomial in Estrin's scheme (a short
  dependency chain), 2^k built from its exponent bits, in two factors so that results down to
  the smallest subnormal come out right. NaN in gives NaN out; ±inf and overflow give inf and 0.
- ``tanh`` (float64): −expm1(−2|x|)/(2 + expm1(−2|x|)) with the same reduction: for k = 0 the
  polynomial gives expm1 to full relative precision (no 1 − 1 cancellation near 0).

Accuracy against NumPy (tests/test_scalar_math.py, in loops compiled with the generated
modules' flags): exp ≤ 1 ulp where the result is normal, tanh ≤ 4 ulp (float64) and ≤ 6 ulp
(float32). Generated modules import these (codegen/printer.py: the import line carries a
digest of this file, so a change recompiles them).
"""
from __future__ import annotations

import math

import llvmlite.ir as llvm_ir
import numpy as np
from numba import types
from numba.core import config
from numba.core.errors import TypingError
from numba.core.extending import intrinsic
from numba.core.typing import signature

from .linking import njit  # calls between our functions: codegen/linking.py

#: the generated modules' flags (codegen/printer.py's FASTMATH, tests/test_scalar_math.py keeps
#: them equal), written out: Numba's cache of this file and the digest in the modules' import
#: lines see only this file's text, so a change of flags must change it
JIT = dict(cache=True, fastmath={"afn", "arcp", "contract", "nsz", "reassoc"}, error_model="numpy",
           no_cfunc_wrapper=True)


@intrinsic
def fused_multiply_add(typingctx, a, b, c):
    """a·b + c rounded once (LLVM's ``llvm.fma``), for float32 or float64 operands of one type;
    fast-math reassociation does not look through it."""
    if not (a == b == c and a in (types.float32, types.float64)):
        raise TypingError(f"fused_multiply_add: three operands of one float type expected, got {a}, {b}, {c}")

    def codegen(context, builder, sig, args):
        return builder.fma(*args)
    return signature(a, a, a, a), codegen


@intrinsic
def power_of_two(typingctx, k, like):
    """2.0**k in the float type of ``like`` (its value is not read), from the exponent bits;
    k (an integer) must keep the result normal: −1022 ≤ k ≤ 1023 (float64), −126 ≤ k ≤ 127."""
    if like not in (types.float32, types.float64) or not isinstance(k, types.Integer):
        raise TypingError(f"power_of_two: an integer and a float type expected, got {k}, {like}")
    bits, bias, mantissa = (64, 1023, 52) if like == types.float64 else (32, 127, 23)

    def codegen(context, builder, sig, args):
        int_t = llvm_ir.IntType(bits)
        kk = context.cast(builder, args[0], sig.args[0], types.int64)
        kk = builder.trunc(kk, int_t) if bits == 32 else kk
        raw = builder.shl(builder.add(kk, llvm_ir.Constant(int_t, bias)), llvm_ir.Constant(int_t, mantissa))
        return builder.bitcast(raw, context.get_value_type(like))
    return signature(like, k, like), codegen


if config.DISABLE_JIT:   # imported as plain Python (NUMBA_DISABLE_JIT: tests' interpreted mode)
    def fused_multiply_add(a, b, c):  # noqa: F811
        return a * b + c

    def power_of_two(k, like):  # noqa: F811
        return type(like)(2.0 ** int(k))


_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10     # fdlibm's split


@njit(**JIT, inline='always')
def _expm1_reduced_f64(r):
    """expm1(r) for |r| ≤ ln2/2 to ~1e-17 relative: Taylor to r¹³, Estrin's scheme."""
    r2 = r * r
    r4 = r2 * r2
    q0 = (1.0 + r * 0.5) + r2 * (1.0 / 6 + r * (1.0 / 24))
    q1 = (1.0 / 120 + r * (1.0 / 720)) + r2 * (1.0 / 5040 + r * (1.0 / 40320))
    q2 = (1.0 / 362880 + r * (1.0 / 3628800)) + r2 * (1.0 / 39916800 + r * (1.0 / 479001600))
    return r * ((q0 + r4 * q1) + (r4 * r4) * (q2 + r4 * (1.0 / 6227020800)))


@njit(**JIT)
def exp_f64(x):
    """e**x in float64 (≤ 1 ulp), vectorisable."""
    xc = max(min(x, 709.8), -745.2)
    k = math.floor(xc * _LOG2E + 0.5)
    kf = float(k)
    r = fused_multiply_add(kf, -_LN2_LO, fused_multiply_add(kf, -_LN2_HI, xc))
    half = k >> 1
    scale = power_of_two(half, xc)
    e = fused_multiply_add(scale, _expm1_reduced_f64(r), scale) * power_of_two(k - half, xc)
    return e if x == x else x


@njit(**JIT)
def tanh_f64(x):
    """tanh in float64 (≤ 4 ulp), vectorisable: −u/(2 + u) with u = expm1(−2|x|)."""
    y = -2.0 * min(abs(x), 20.0)        # tanh(20) is 1 in float64
    k = math.floor(y * _LOG2E + 0.5)    # −58 ≤ k ≤ 0: 2^k stays normal
    kf = float(k)
    r = fused_multiply_add(kf, -_LN2_LO, fused_multiply_add(kf, -_LN2_HI, y))
    scale = power_of_two(k, y)
    u = fused_multiply_add(scale, _expm1_reduced_f64(r), scale - 1.0)
    t = math.copysign(u / (2.0 + u), x)   # tanh(±0) = ±0
    return t if x == x else x


@njit(**JIT)
def exp_f32(x):
    """e**x in float32 (≤ 1 ulp), vectorisable: float64's, rounded once (a float32 polynomial
    came out 3 ulp off)."""
    return np.float32(exp_f64(np.float64(x)))


@njit(**JIT)
def tanh_f32(x):
    """tanh in float32 as a rational function (Eigen's fast tanh, error of a few ulp),
    vectorisable (libm's tanhf is a scalar call)."""
    c = max(np.float32(-7.90531110763549805), min(np.float32(7.90531110763549805), x))
    x2 = c * c
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    t = c * p / q
    a = abs(x)
    t = x if a < np.float32(0.0004) else t   # tanh x = x to < 1 ulp there; c·p underflowed below ~1e-37
    t = t if a < np.float32(7.90531110763549805) else math.copysign(np.float32(1.0), x)   # the fit's end
    return t if x == x else x
