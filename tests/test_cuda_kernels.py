"""Every CUDA kernel template, run in Numba's CUDA simulator on tiny shapes, against NumPy
and graphnn's reference evaluator (the simulator is slow: shapes stay small)."""
import numpy as np
import pytest

from codegen.cuda.device import enable_simulator

cuda = enable_simulator()  # before anything imports numba.cuda for the real target

from codegen.cuda import kernels  # noqa: E402
from codegen.cuda.module import load_module  # noqa: E402
import graphnn as gn  # noqa: E402
from graphnn.evaluate import evaluate  # noqa: E402
from graphnn.optim import OPTIMIZERS  # noqa: E402

DTYPES = [("float64", 1e-12), ("float32", 1e-5)]


def _mod(*parts, dtype):
    return load_module(list(parts), dtype=dtype)[0]


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_matmul_forms_match_numpy(dtype, tol):
    rng = np.random.default_rng(0)
    m = _mod(kernels.matmul("mm_nn_bias", bias=True), kernels.matmul("mm_nt", trans_b=True),
             kernels.matmul("mm_tn", trans_a=True), kernels.matmul("mm_acc", accumulate=True),
             dtype=dtype)
    A, B, b = _rand(rng, (5, 7), dtype), _rand(rng, (7, 6), dtype), _rand(rng, (6,), dtype)
    C = np.zeros((5, 6), dtype)
    m.run_mm_nn_bias(A, B, b, C)
    np.testing.assert_allclose(C, A @ B + b, rtol=tol, atol=tol)
    # backward forms: g @ Wᵀ and xᵀ @ g with the transposed operand stored as is
    G = _rand(rng, (5, 6), dtype)
    dX = np.zeros((5, 7), dtype)
    m.run_mm_nt(G, B, b, dX)
    np.testing.assert_allclose(dX, G @ B.T, rtol=tol, atol=tol)
    dW = np.zeros((7, 6), dtype)
    m.run_mm_tn(A, G, b, dW)
    np.testing.assert_allclose(dW, A.T @ G, rtol=tol, atol=tol)
    C2 = C.copy()
    m.run_mm_acc(A, B, b, C2)
    np.testing.assert_allclose(C2, C + A @ B, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_fused_elementwise_broadcasts_like_numpy(dtype, tol):
    import sympy

    v0, v1, v2 = sympy.symbols("v0 v1 v2")
    h = sympy.Symbol("h")
    src = kernels.elementwise(
        "ew", [("x", "v0", (False, False)), ("b", "v1", (False,)), ("c", "v2", (True, False))],
        [("out_h", "h"), ("out_d", "d")],
        [(h, sympy.tanh(v0 + v1) * v2), (sympy.Symbol("d"), 1 - h ** 2 + sympy.Max(v0, 0))],
        dtype=dtype)
    m = _mod(src, dtype=dtype)
    rng = np.random.default_rng(1)
    x, b, c = _rand(rng, (3, 5), dtype), _rand(rng, (5,), dtype), _rand(rng, (1, 5), dtype)
    oh, od = np.zeros((3, 5), dtype), np.zeros((3, 5), dtype)
    m.run_ew(x, b, c, oh, od)
    ref_h = np.tanh(x + b) * c
    np.testing.assert_allclose(oh, ref_h, rtol=tol, atol=tol)
    np.testing.assert_allclose(od, 1 - ref_h ** 2 + np.maximum(x, 0), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_reductions(dtype, tol):
    m = _mod(kernels.reduce_rows("rsum"), kernels.reduce_rows("rmax", "max"),
             kernels.reduce_cols("csum"), kernels.reduce_all("asum"), kernels.reduce_all("amax", "max"),
             dtype=dtype)
    rng = np.random.default_rng(2)
    X = _rand(rng, (6, 11), dtype)   # 66 elements > 32 threads: the grid-stride fold runs
    out = np.zeros(6, dtype)
    m.run_rsum(X, out)
    np.testing.assert_allclose(out, X.sum(1), rtol=tol, atol=tol)
    m.run_rmax(X, out)
    np.testing.assert_array_equal(out, X.max(1))
    cols = np.zeros(11, dtype)
    m.run_csum(X, cols)
    np.testing.assert_allclose(cols, X.sum(0), rtol=tol, atol=tol)
    one = np.zeros(1, dtype)
    m.run_asum(X, one)
    np.testing.assert_allclose(one[0], X.sum(), rtol=tol * 10, atol=tol * 10)
    m.run_amax(X, one)
    assert one[0] == X.max()


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_softmax_cross_entropy_and_gradient_match_reference(dtype, tol):
    rng = np.random.default_rng(3)
    z_in, t_in = gn.input("z", (None, 4)), gn.input("t", (None, 4))
    ce = gn.ops.softmax_cross_entropy(z_in, t_in)
    loss = gn.ops.sum(ce)
    dz_ref = gn.grad(loss, [z_in])[z_in]
    z = _rand(rng, (5, 4), dtype) * 3
    t = np.eye(4, dtype=dtype)[rng.integers(0, 4, 5)]
    ref_ce, ref_dz = evaluate([ce, dz_ref], {"z": z, "t": t}, dtype=dtype)
    m = _mod(kernels.softmax_ce("sce"), kernels.softmax_ce("sce_fwd", with_grad=False), dtype=dtype)
    g = np.full(1, 0.5, dtype)
    rows, dz = np.zeros(5, dtype), np.zeros((5, 4), dtype)
    m.run_sce(z, t, g, rows, dz)
    np.testing.assert_allclose(rows, ref_ce, rtol=tol, atol=tol)
    np.testing.assert_allclose(dz, 0.5 * ref_dz, rtol=tol, atol=tol)
    rows2 = np.zeros(5, dtype)
    m.run_sce_fwd(z, t, rows2)
    np.testing.assert_allclose(rows2, rows, rtol=tol, atol=tol)


def test_gather_rows_and_loss_accumulator():
    m = _mod(kernels.gather_rows("gather"), kernels.scale_add("add_loss"), dtype="float64")
    src = np.arange(24, dtype=np.float64).reshape(8, 3)
    order = np.array([5, 2, 7, 0, 1, 3, 4, 6], dtype=np.int64)
    dst = np.zeros((3, 3))
    d_src, d_order, d_dst = cuda.to_device(src), cuda.to_device(order), cuda.to_device(dst)
    m.run_gather(d_src, d_order, 3, d_dst)
    np.testing.assert_array_equal(d_dst.copy_to_host(), src[order[3:6]])
    acc = np.zeros(1)
    m.run_add_loss(np.array([2.5]), 4.0, acc)
    m.run_add_loss(np.array([1.0]), 2.0, acc)
    assert acc[0] == 12.0


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_optimizer_update_matches_reference(name, dtype, tol):
    opt = OPTIMIZERS[name](lr=0.05)
    m = _mod(kernels.optimizer_update("upd", opt.rules(), opt.state, opt.hyper, dtype), dtype=dtype)
    rng = np.random.default_rng(4)
    w = _rand(rng, (7,), dtype)
    ref_w = w.copy()
    state = opt.init_state({"w": ref_w})
    dev_state = [np.zeros(7, dtype) for _ in opt.state]
    for step in (1, 2, 3):
        g = _rand(rng, (7,), dtype)
        opt.update({"w": ref_w}, {"w": g}, state, step)
        m.run_upd(w, g, *dev_state, step)
        np.testing.assert_allclose(w, ref_w, rtol=tol, atol=tol)
        for s, arr in zip(opt.state, dev_state):
            np.testing.assert_allclose(arr, state["w"][s], rtol=tol, atol=tol)
