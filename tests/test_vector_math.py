"""float64 tanh through glibc's libmvec (codegen/vector_math.py): accurate, vectorised where the
machine has it, never printed where it has not, and never loaded on a machine of the other kind."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
from numba import njit  # noqa: E402

from codegen import vector_math  # noqa: E402

needs_libmvec = pytest.mark.skipif(not vector_math.AVAILABLE, reason="no libmvec/AVX2 here: tanh_f64 is printed")


@njit(cache=False, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
def _tanh_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = vector_math.tanh_vec(x[i])


@needs_libmvec
def test_the_vector_tanh_is_within_a_few_ulp_and_keeps_the_edges():
    x = np.concatenate([np.linspace(-25, 25, 100_001), [0.0, -0.0, 1e-300, -1e-300, 710.0, -710.0,
                                                        np.inf, -np.inf, 1e-8, 0.5493061443340548]])
    out = np.empty_like(x)
    _tanh_loop(x, out)
    want = np.tanh(x)
    ulp = np.abs(out - want) / np.spacing(np.maximum(np.abs(want), np.finfo(float).tiny))
    assert ulp.max() <= 4, (x[ulp.argmax()], out[ulp.argmax()], want[ulp.argmax()])
    assert np.signbit(out[x == 0]).tolist() == np.signbit(want[x == 0]).tolist()
    nan = np.array([np.nan, 1.0, 2.0, 3.0])
    _tanh_loop(nan, out[:4])
    assert np.isnan(out[0]) and np.allclose(out[1:4], np.tanh(nan[1:]))


@needs_libmvec
def test_loops_call_the_four_wide_variant():
    """The point of it: LLVM's loop vectoriser calls libmvec's AVX2 tanh for four values at a
    time (LLVM's own tanh intrinsic would be lowered to four scalar calls)."""
    x = np.linspace(-3, 3, 64)
    _tanh_loop(x, np.empty_like(x))
    asm = _tanh_loop.inspect_asm(_tanh_loop.signatures[0])
    assert vector_math.VECTOR in asm


def test_the_printer_writes_the_polynomial_where_libmvec_is_missing(monkeypatch):
    from codegen.printer import Writer
    import sympy

    x = sympy.Symbol("x")
    monkeypatch.setattr(vector_math, "AVAILABLE", False)
    w = Writer("float64")
    assert w.printer.doprint(sympy.tanh(x)) == "tanh_f64(x)"
    monkeypatch.setattr(vector_math, "AVAILABLE", True)
    w = Writer("float64")
    assert w.printer.doprint(sympy.tanh(x)) == "tanh_vec(x)"
    assert Writer("float32").printer.doprint(sympy.tanh(x)) == "tanh_f32(x)"


def test_a_target_other_than_this_host_gets_no_vector_tanh(monkeypatch):
    """NUMBA_CPU_NAME (a portable cache for other machines) may lack AVX2: a four-wide argument
    would be passed another way, so the vector tanh is off there."""
    monkeypatch.setenv("NUMBA_CPU_NAME", "generic")
    assert vector_math._enable() is False


def test_the_plan_cache_key_knows_which_tanh_was_printed(monkeypatch):
    """A plan written where libmvec is used names a module that calls it: a machine without it
    must not find that plan."""
    import graphnn as gn
    from codegen.plan_cache import plan_key
    from graphnn.models import get_model

    model = get_model("xor")
    opt = gn.Trainer(model, backend="numpy").optimizer
    monkeypatch.setattr(vector_math, "AVAILABLE", True)
    with_vector = plan_key(model, opt, "float64")
    monkeypatch.setattr(vector_math, "AVAILABLE", False)
    assert plan_key(model, opt, "float64") != with_vector
