"""codegen/intrinsics.py: what generated code calls instead of np.dot (one overload compiled per
operand layout, 0.2–0.35 s each) and instead of .reshape (~17 ms of compile per call site; the
LSTM had 175) — issue 18. Checked against NumPy for every layout they take, in both dtypes;
anything else is a clear error, never a silent copy."""
import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

import itertools

from codegen.intrinsics import gemm, gemm_update, permuted, rows, rows_at, view


@njit(cache=False)
def _nn(a, b, out):
    gemm(a, b, out)


@njit(cache=False)
def _tn(a, b, out):
    gemm(a.T, b, out)


@njit(cache=False)
def _nt(a, b, out):
    gemm(a, b.T, out)


@njit(cache=False)
def _tt(a, b, out):
    gemm(a.T, b.T, out)


@njit(cache=False)
def _rows(a, b, out, n):
    gemm(a[:n], b, out[:n])   # the epoch's batch: the leading rows of a buffer stay C-contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 2), (32, 64, 10), (7, 1, 9)])
def test_every_transposition_equals_numpy(dtype, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a, b = rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for fn, x, y in [(_nn, a, b), (_tn, np.ascontiguousarray(a.T), b), (_nt, a, np.ascontiguousarray(b.T)),
                     (_tt, np.ascontiguousarray(a.T), np.ascontiguousarray(b.T))]:
        out = np.full((m, n), np.nan, dtype)
        fn(x, y, out)
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, **tol)
    out = np.full((m + 2, n), 7.0, dtype)
    _rows(np.vstack([a, np.ones((2, k), dtype)]), b, out, m)
    np.testing.assert_allclose(out[:m], a.astype(np.float64) @ b, **tol)
    assert (out[m:] == 7.0).all()                     # rows past the batch untouched


@njit(cache=False)
def _update_nn(a, b, out, alpha):
    gemm_update(a, b, out, alpha)


@njit(cache=False)
def _update_tn(a, b, out, alpha):   # a weight gradient's product: xᵀ·δ
    gemm_update(a.T, b, out, alpha)


@njit(cache=False)
def _update_nt(a, b, out, alpha):
    gemm_update(a, b.T, out, alpha)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 2), (64, 32, 128), (7, 1, 9)])
def test_gemm_update_adds_the_scaled_product_to_out(dtype, m, k, n):
    """out += α·(a @ b): plain SGD's step in the weight-gradient product (fuse_update.py)."""
    rng = np.random.default_rng(m + 10 * k + 100 * n)
    a, b = rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)
    start = rng.normal(size=(m, n)).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    want = start.astype(np.float64) - 0.25 * (a.astype(np.float64) @ b)
    for fn, x, y in [(_update_nn, a, b), (_update_tn, np.ascontiguousarray(a.T), b),
                     (_update_nt, a, np.ascontiguousarray(b.T))]:
        for alpha in (-0.25, dtype(-0.25)):   # a Python float or the kernel's dtype (a learning rate)
            out = start.copy()
            fn(x, y, out, alpha)
            np.testing.assert_allclose(out, want, **tol)
    with pytest.raises(ValueError, match="gemm_update: the operands' shapes do not match"):
        _update_nn(a, b, np.zeros((m + 1, n), dtype), 1.0)
    with pytest.raises(TypingError, match="a number alpha"):
        _update_nn(a, b, start.copy(), a)


def test_mismatched_shapes_raise_a_clear_error():
    with pytest.raises(ValueError, match="shapes do not match"):
        _nn(np.ones((3, 4)), np.ones((5, 2)), np.empty((3, 2)))
    with pytest.raises(ValueError, match="shapes do not match"):
        _nn(np.ones((3, 4)), np.ones((4, 2)), np.empty((3, 3)))


def test_strided_or_mixed_operands_are_a_typing_error():
    with pytest.raises(TypingError, match="contiguous operands expected"):
        _nn(np.ones((6, 4))[::2], np.ones((4, 2)), np.empty((3, 2)))
    with pytest.raises(TypingError, match="one float dtype"):
        _nn(np.ones((3, 4)), np.ones((4, 2), np.float32), np.empty((3, 2)))


@njit(cache=False)
def _view3(a, b):
    return view(a, (2, b, -1))


@njit(cache=False)
def _view_flat(a):
    return view(a, -1)


@njit(cache=False)
def _view_of_rows(a, n):
    v = view(a[:n], (n * a.shape[1],))
    v[0] = 42.0          # a view: writes reach the buffer
    return v


@njit(cache=False)
def _view_of_column(a):
    return view(a[:, 1:], (a.shape[0] * (a.shape[1] - 1),))   # strided: not a view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_view_equals_reshape_and_shares_the_data(dtype):
    a = np.arange(24, dtype=dtype).reshape(4, 6)
    v = _view3(a, 3)
    assert v.shape == (2, 3, 4) and v.flags.c_contiguous and np.shares_memory(v, a)
    np.testing.assert_array_equal(v, a.reshape(2, 3, 4))
    np.testing.assert_array_equal(_view_flat(a), a.reshape(-1))
    w = _view_of_rows(a, 2)
    np.testing.assert_array_equal(w, a[:2].reshape(-1))
    assert a[0, 0] == 42.0
    with pytest.raises(TypingError, match="contiguous array expected"):   # as Numba's reshape says
        _view_of_column(a)


def test_view_of_a_wrong_size_raises_a_clear_error():
    with pytest.raises(ValueError, match="size differs"):
        _view3(np.zeros((4, 6)), 5)


@njit(cache=False)
def _leading(a, n):
    return rows(a, n)


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 3), (6,)])
def test_rows_are_the_leading_rows_without_a_copy(shape):
    a = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    for n in range(shape[0] + 1):
        r = _leading(a, n)
        np.testing.assert_array_equal(r, a[:n])
        assert r.shape == a[:n].shape and (n == 0 or np.shares_memory(r, a))
    with pytest.raises(ValueError, match="more rows asked"):
        _leading(a, shape[0] + 1)
    with pytest.raises(ValueError, match="more rows asked"):
        _leading(a, -1)
    f = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    np.testing.assert_array_equal(_leading(f, 2), f[:2])   # an F array's rows: strided, still right


@njit(cache=False)
def _from(a, first, n):
    return rows_at(a, first, n)


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 3), (6,), (3, 1, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_at_are_those_rows_without_a_copy(shape, dtype):
    a = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    for first in range(shape[0] + 1):
        for n in range(shape[0] - first + 1):
            r = _from(a, first, n)
            np.testing.assert_array_equal(r, a[first:first + n])
            assert r.shape == a[first:first + n].shape and (n == 0 or np.shares_memory(r, a))
    for first, n in ((0, shape[0] + 1), (shape[0], 1), (-1, 1), (0, -1), (2, shape[0] - 1)):
        with pytest.raises(ValueError, match="rows outside the array"):
            _from(a, first, n)
    f = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    np.testing.assert_array_equal(_from(f, 1, 2), f[1:3])   # an F array's rows: strided, still right


@njit(cache=False)
def _permuted(a, axes):
    return permuted(a, axes)


@pytest.mark.parametrize("ndim", [2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_permuted_equals_transpose_for_every_permutation_and_shares_the_data(ndim, dtype):
    shape = (2, 3, 4, 5)[:ndim]
    base = np.arange(np.prod(shape) * 2, dtype=dtype).reshape(shape[:-1] + (2 * shape[-1],))
    for a in (base[..., :shape[-1]], np.ascontiguousarray(base[..., :shape[-1]]),
              np.asfortranarray(base[..., :shape[-1]])):   # strided, C, F
        for axes in itertools.permutations(range(ndim)):
            p = _permuted(a, axes)
            np.testing.assert_array_equal(p, a.transpose(axes))
            assert p.shape == a.transpose(axes).shape and p.strides == a.transpose(axes).strides
            assert np.shares_memory(p, a)


def test_permuted_axes_that_are_no_permutation_raise_a_clear_error():
    a = np.zeros((2, 3, 4))
    for axes in ((0, 0, 1), (0, 1, 3), (-1, 0, 1)):
        with pytest.raises(ValueError, match="not a permutation"):
            _permuted(a, axes)
    with pytest.raises(TypingError, match="one axis per dimension"):
        _permuted(a, (1, 0))


def test_generated_modules_transpose_with_axes_through_permuted():
    """Numba's a.transpose(axes) compiles a helper per function (~1.4 s of a cold compile each);
    the generated code of a model with attention heads uses the intrinsic instead."""
    from codegen import CpuBackend
    from graphnn.models import get_model
    from graphnn.optim import make_optimizer

    source = CpuBackend(get_model("attention"), make_optimizer("sgd", lr=0.1), "float64").source
    kernels = source[:source.index("def permuted(")]   # the intrinsics' own text follows the kernels
    assert "permuted(" in kernels and ".transpose(" not in kernels
