"""codegen/scalar_math.py: exp and tanh compiled as the generated modules compile them (their
fast-math flags, in a loop LLVM vectorises) against NumPy, in ulps, with the special values."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numba import njit

import graphnn as gn
from graphnn.data import Dataset
from graphnn.model import Model

from codegen.printer import FASTMATH
from codegen.scalar_math import exp_f32, exp_f64, tanh_f32, tanh_f64

RNG = np.random.default_rng(0)
#: a libm function named in assembly ('movabsq $exp, %rax' before the call, or a direct call)
LIBM_CALL = re.compile(r"(\$|call\w*\s+|@)(exp|expf|tanh|tanhf)\b")


def _loop(fn):
    @njit(fastmath=FASTMATH, error_model="numpy")
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])
    return run


def _apply(fn, x):
    out = np.empty_like(x)
    _loop(fn)(x, out)
    return out


def _ulps(got, want):
    with np.errstate(all="ignore"):
        d = np.abs(got.astype(np.float64) - want.astype(np.float64)) / np.spacing(np.abs(want)).astype(np.float64)
    return np.where(got == want, 0.0, d)


def _sample(dtype, lo, hi):
    spread = [RNG.normal(size=200_000) * s for s in (1e-9, 1e-3, 0.1, 1, 3, 10, 100)]
    return np.concatenate(spread + [np.linspace(lo, hi, 400_001)]).astype(dtype)


@pytest.mark.parametrize("fn, dtype, lo, hi", [(exp_f64, np.float64, -760, 720), (exp_f32, np.float32, -110, 95)])
def test_exp_is_within_one_ulp_where_the_result_is_normal(fn, dtype, lo, hi):
    x = _sample(dtype, lo, hi)
    x = x[(x > lo) & (x < hi)]
    got = _apply(fn, x)
    with np.errstate(all="ignore"):
        want = np.exp(x.astype(np.float64)).astype(dtype)   # NumPy's float32 exp is itself 1 ulp off
    normal = np.isfinite(want) & (want >= np.finfo(dtype).tiny)
    assert _ulps(got[normal], want[normal]).max() <= 1.0
    assert (got[np.isinf(want)] == np.inf).all()
    small = ~normal & np.isfinite(want)      # subnormal or 0: one rounding of the scaled result
    assert np.abs(got[small] - want[small]).max() <= 2 * np.finfo(dtype).smallest_subnormal


@pytest.mark.parametrize("fn, dtype", [(exp_f64, np.float64), (exp_f32, np.float32)])
def test_exp_special_values(fn, dtype):
    big = 800.0 if dtype == np.float64 else 110.0
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, big, -big, 1e30, -1e30], dtype=dtype)
    got = _apply(fn, x)
    assert np.isnan(got[0])
    assert got[1:].tolist() == [np.inf, 0.0, 1.0, 1.0, np.inf, 0.0, np.inf, 0.0]


@pytest.mark.parametrize("fn, dtype, ulps", [(tanh_f64, np.float64, 4.0), (tanh_f32, np.float32, 6.0)])
def test_tanh_is_within_a_few_ulp(fn, dtype, ulps):
    x = _sample(dtype, -30, 30)
    got = _apply(fn, x)
    want = np.tanh(x.astype(np.float64)).astype(dtype)
    tiny = np.abs(want) < np.finfo(dtype).tiny
    assert _ulps(got[~tiny], want[~tiny]).max() <= ulps
    special = np.array([np.nan, np.inf, -np.inf, 0.0, 1e300 if dtype == np.float64 else 1e30], dtype=dtype)
    out = _apply(fn, special)
    assert np.isnan(out[0])   # NaN is never hidden
    assert _ulps(out[1:], np.array([1.0, -1.0, 0.0, 1.0], dtype)).max() <= ulps


def test_the_libm_check_sees_a_libm_call():
    run = _loop(njit(lambda x: math.exp(x)))
    run(np.zeros(8), np.zeros(8))
    assert LIBM_CALL.search(next(iter(run.inspect_asm().values())))


@pytest.mark.parametrize("fn, dtype", [(exp_f64, np.float64), (tanh_f64, np.float64), (exp_f32, np.float32)])
def test_loops_over_them_are_vectorised_and_call_no_libm(fn, dtype):
    run = _loop(fn)
    run(np.zeros(8, dtype), np.zeros(8, dtype))
    asm = next(iter(run.inspect_asm().values()))
    if _x86_with_fma():   # packed fused multiply-adds: inlined and vectorised
        assert re.search(r"vfmadd\d+pd\s+%[yz]mm", asm)
    assert not LIBM_CALL.search(asm)


def _x86_with_fma() -> bool:
    import platform

    import llvmlite.binding as llvm

    return platform.machine() in ("x86_64", "AMD64") and "+fma" in llvm.get_host_cpu_features().flatten()


def test_the_generated_modules_import_them_with_a_digest():
    from codegen.printer import HELPERS

    line = HELPERS["exp_f64"]
    assert line.startswith("from codegen.scalar_math import exp_f64  # kernels ")
    assert math.isfinite(float(int(line.rsplit(" ", 1)[1], 16)))


@pytest.mark.parametrize("fn", ["tanh", "sigmoid", "exp"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_nan_reaching_tanh_or_exp_is_not_hidden_in_compiled_code(dtype, fn):
    """float32's tanh clamped its argument first, and a NaN came out as 0.99999976: a compiled
    prediction could be finite where the reference's is NaN."""
    from codegen import CpuBackend
    from graphnn.optim import make_optimizer

    model, X = _nan_model(fn)
    cpu = CpuBackend(model, make_optimizer("sgd", lr=0.1), dtype)
    with pytest.raises(gn.NonFiniteError):   # as the reference: the NaN reached the output
        cpu.predict({"x": X.astype(dtype)})


def _nan_model(fn):
    x = gn.input("x", (None, 3))
    W = gn.parameter("W", RNG.normal(size=(3, 4)))
    y = getattr(gn, fn)(gn.sqrt(x @ W, name="roots"), name="y")   # √ of a negative: NaN (sympy folds exp(log z) to z)
    X = RNG.normal(size=(6, 3))
    return Model("nan-through", gn.sum(y), y, (x,), Dataset({"x": X})), X


@pytest.mark.parametrize("module", ["codegen.scalar_math", "codegen.generic_kernels", "codegen.modern_kernels"])
def test_the_stored_kernels_write_out_the_generated_modules_flags(module):
    """Numba's cache of these files sees only their text: flags imported from elsewhere could
    change while their compiled code stayed the old flags'."""
    import importlib
    import inspect

    mod = importlib.import_module(module)
    assert mod.JIT["fastmath"] == FASTMATH
    assert "FASTMATH" not in inspect.getsource(mod).split("\nJIT = ", 1)[1].split("\n", 1)[0]


def test_tanh_keeps_the_sign_of_zero_tiny_values_and_saturates_at_one():
    zeros = np.array([0.0, -0.0])
    for fn, dtype in ((tanh_f64, np.float64), (tanh_f32, np.float32)):
        assert np.signbit(_apply(fn, zeros.astype(dtype))).tolist() == [False, True]   # NumPy's: +0 → +0
    tiny = np.logspace(np.log10(np.finfo(np.float32).tiny), -3, 4001).astype(np.float32)
    got = _apply(tanh_f32, tiny)   # c·p underflowed: 103 ulp off at 1.2e-38
    assert _ulps(got, np.tanh(tiny.astype(np.float64)).astype(np.float32)).max() <= 6
    assert (got[tiny < 1e-30] == tiny[tiny < 1e-30]).all()
    big = np.array([7.9, 8.0, 9.5, 2000.0], dtype=np.float32)
    got = _apply(tanh_f32, np.concatenate([big, -big]))
    assert (got[1:4] == 1.0).all() and (got[5:] == -1.0).all()   # it stopped at ±0.99999976
    assert _ulps(got[[0, 4]], np.tanh(np.array([7.9, -7.9])).astype(np.float32)).max() <= 6


def test_they_run_as_plain_python_when_numba_jit_is_disabled():
    """Imported first under NUMBA_DISABLE_JIT (the tests' interpreted mode), the intrinsics were
    called from Python: NotImplementedError in every interpreted model with exp or tanh."""
    import subprocess
    import sys

    code = ("import numpy as np\nnp.seterr(all='ignore')\n"
            "from codegen.scalar_math import exp_f32, exp_f64, tanh_f32, tanh_f64\n"
            "xs = [-800.0, -3.5, -1e-9, 0.0, 0.7, 5.0, 800.0]\n"
            "for x in xs:\n"
            "    got, want = exp_f64(x), np.exp(x)\n"
            "    assert got == want or abs(got - want) <= 4e-16 * want, x\n"
            "    assert abs(tanh_f64(x) - np.tanh(x)) <= 1e-15 * max(abs(np.tanh(x)), 1e-300), x\n"
            "    assert abs(tanh_f32(np.float32(x)) - np.tanh(x)) <= 1e-6 * abs(np.tanh(x)) + 1e-40, x\n"
            "    assert np.isclose(exp_f32(np.float32(x / 10)), np.exp(x / 10), rtol=2e-7), x\n"
            "print('ok')\n")
    env = {**__import__("os").environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


_LOOPS = {np.float64: (_loop(exp_f64), _loop(tanh_f64), 4.0), np.float32: (_loop(exp_f32), _loop(tanh_f32), 6.0)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_float_array_agrees_with_numpy(dtype, data):
    """Drawn from every float of the dtype (subnormals, ±0, ±inf, NaN, the overflow edges)."""
    width = 64 if dtype == np.float64 else 32
    x = data.draw(arrays(dtype, st.integers(1, 64), elements=st.floats(allow_nan=True, allow_infinity=True,
                                                                        width=width)))
    exp_loop, tanh_loop, tanh_ulps = _LOOPS[dtype]
    got_exp, got_tanh = np.empty_like(x), np.empty_like(x)
    exp_loop(x, got_exp)
    tanh_loop(x, got_tanh)
    with np.errstate(all="ignore"):   # the float64 function, rounded once (NumPy's float32 exp is 1 ulp off)
        want_exp, want_tanh = (f(x.astype(np.float64)).astype(dtype) for f in (np.exp, np.tanh))
    for got, want, ulps in ((got_exp, want_exp, 1.0), (got_tanh, want_tanh, tanh_ulps)):
        assert (np.isnan(got) == np.isnan(want)).all()
        finite = np.isfinite(want) & (np.abs(want) >= np.finfo(dtype).tiny)
        assert _ulps(got[finite], want[finite]).max(initial=0.0) <= ulps
        rest = ~finite & ~np.isnan(want)   # ±inf, 0 and subnormals: equal or one subnormal step
        with np.errstate(invalid="ignore"):
            near = np.abs(got[rest] - want[rest]) <= 2 * np.finfo(dtype).smallest_subnormal
        assert ((got[rest] == want[rest]) | near).all()
