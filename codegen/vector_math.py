"""float64 tanh from glibc's vector math library (libmvec), where this machine has it.

Generated loops call ``tanh_vec(x)``. That is a call of the scalar ``graphnn_tanh`` (libm's
tanh under another name: LLVM would turn a call of ``tanh`` into its own tanh intrinsic, which
it lowers to four scalar calls) whose declaration names libmvec's AVX2 ``_ZGVdN4v_tanh`` as its
four-wide variant (the ``vector-function-abi-variant`` attribute), so LLVM's loop vectoriser
calls that one for four values at a time: 2–3× the polynomial ``tanh_f64`` here, within a few
ulp of libm.

``AVAILABLE`` is False where there is no libmvec, no AVX2 in Numba's target, or Numba runs as
plain Python; the printer then writes ``tanh_f64`` as before. The module text differs either
way and ``AVAILABLE`` is in the plan cache's key (codegen/plan_cache.py reads generators'
upper-case settings), so code printed for one kind of machine is never loaded on another.
Importing this module registers both symbols with LLVM's JIT linker — the generated module
imports ``tanh_vec`` from here, before any of its functions is compiled or loaded from cache.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import sys

from numba.core import config

SCALAR = "graphnn_tanh"
VECTOR = "_ZGVdN4v_tanh"
#: the attribute that names the four-wide variant (LLVM's vector function ABI, internal ISA)
VARIANT = f'"vector-function-abi-variant"="_ZGV_LLVM_N4v_{SCALAR}({VECTOR})"'


def _enable() -> bool:
    """Load libmvec and register the scalar symbol; False where the vector tanh cannot be used."""
    if config.DISABLE_JIT or not sys.platform.startswith("linux"):
        return False
    # a target other than this host's (NUMBA_CPU_NAME/FEATURES, for portable caches) may lack
    # AVX2, and a <4 x double> argument is then passed in another way: not used there
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return False
    import llvmlite.binding as ll

    if "+avx2" not in ll.get_host_cpu_features().flatten().split(","):
        return False
    try:
        mvec, libm = ctypes.CDLL("libmvec.so.1"), ctypes.CDLL("libm.so.6")
        getattr(mvec, VECTOR)
        tanh = ctypes.cast(libm.tanh, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return False
    ll.load_library_permanently("libmvec.so.1")
    ll.add_symbol(SCALAR, tanh)
    return True


AVAILABLE = _enable()
#: of this file's text: the import line in generated modules carries it, so that a change here
#: gives their functions a new cache entry (Numba's cache would keep the old inlined call)
DIGEST = "vector tanh " + hashlib.sha256(open(__file__, "rb").read()).hexdigest()[:12]

if config.DISABLE_JIT:   # the module runs as plain Python
    def tanh_vec(x):
        return math.tanh(x)
else:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.core.errors import TypingError
    from numba.extending import intrinsic

    @intrinsic
    def tanh_vec(typingctx, x):
        """tanh(x) for a float64 ``x``, vectorised by LLVM through libmvec (module docstring)."""
        if x != types.float64:
            raise TypingError(f"tanh_vec: a float64 expected, got {x}")

        def codegen(context, builder, sig, args):
            module = builder.module
            double = ir.DoubleType()
            four = ir.VectorType(double, 4)
            vector = cgutils.get_or_insert_function(module, ir.FunctionType(four, [four]), VECTOR)
            scalar = cgutils.get_or_insert_function(module, ir.FunctionType(double, [double]), SCALAR)
            if VARIANT not in scalar.attributes:
                # llvmlite accepts only attributes it knows: this string attribute is added to the set
                scalar.attributes._known = frozenset(scalar.attributes._known) | {VARIANT}
                for attr in (VARIANT, "nounwind", "readnone"):
                    scalar.attributes.add(attr)
                _keep(module, vector)
            return builder.call(scalar, args)

        return types.float64(types.float64), codegen


def _keep(module, fn) -> None:
    """``fn``'s declaration kept in ``module`` (llvm.compiler.used) until the vectoriser has
    looked for it: an unused declaration is dropped before then."""
    if "llvm.compiler.used" in module.globals:
        return   # someone else's list: the scalar calls stay correct, only not vectorised
    byte_ptr = ir.PointerType(ir.IntType(8))
    kept = ir.GlobalVariable(module, ir.ArrayType(byte_ptr, 1), "llvm.compiler.used")
    kept.linkage = "appending"
    kept.section = "llvm.metadata"
    kept.initializer = ir.Constant(ir.ArrayType(byte_ptr, 1), [fn.bitcast(byte_ptr)])
