"""Every fixed CUDA kernel template (codegen/cuda/kernels.py), run in Numba's CUDA simulator
on tiny shapes, against NumPy and graphnn's reference evaluator. The kernels printed from
schedules (fused loops with their reductions, scalars, the optimizer update) are checked
through whole models in test_cuda_backend.py."""
import numpy as np
import pytest

from codegen.cuda.device import enable_simulator

cuda = enable_simulator()  # before anything imports numba.cuda for the real target

from codegen.cuda import kernels  # noqa: E402
from codegen.cuda.module import LaunchOptions, load_module  # noqa: E402
import graphnn as gn  # noqa: E402
from graphnn.evaluate import evaluate  # noqa: E402

DTYPES = [("float64", 1e-12), ("float32", 1e-5)]


def _mod(*parts, dtype, options=None):
    return load_module(list(parts), dtype=dtype, options=options)[0]


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_matmul_forms_match_numpy(dtype, tol):
    rng = np.random.default_rng(0)
    m = _mod(kernels.matmul("mm_nn"), kernels.matmul("mm_nt", trans_b=True), kernels.matmul("mm_tn", trans_a=True),
             dtype=dtype, options=LaunchOptions(tile=4, threads=16, max_blocks=2))
    # 4x4 tiles: 3x2 output tiles strided over 2 blocks, K = 7 ends in a partial tile
    A, B = _rand(rng, (9, 7), dtype), _rand(rng, (7, 6), dtype)
    C = np.zeros((9, 6), dtype)
    m.run_mm_nn(A, B, C)
    np.testing.assert_allclose(C, A @ B, rtol=tol, atol=tol)
    # backward forms: g @ Wᵀ and xᵀ @ g with the transposed operand stored as is
    G = _rand(rng, (9, 6), dtype)
    dX = np.zeros((9, 7), dtype)
    m.run_mm_nt(G, B, dX)
    np.testing.assert_allclose(dX, G @ B.T, rtol=tol, atol=tol)
    dW = np.zeros((7, 6), dtype)
    m.run_mm_tn(A, G, dW)
    np.testing.assert_allclose(dW, A.T @ G, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_fill_and_copy_over_views(dtype, tol):
    m = _mod(kernels.fill("fill2", 2), kernels.copy("copy2", 2), kernels.copy("copy3", 3), dtype=dtype)
    rng = np.random.default_rng(1)
    out = cuda.to_device(np.zeros((3, 5), dtype))
    m.run_fill2(out, np.dtype(dtype).type(2.5))
    np.testing.assert_array_equal(out.copy_to_host(), np.full((3, 5), 2.5, dtype))
    src = _rand(rng, (5, 3), dtype)
    m.run_copy2(cuda.to_device(src).T, out)          # a transposed (strided) source
    np.testing.assert_array_equal(out.copy_to_host(), src.T)
    big = cuda.to_device(np.zeros((2, 3, 4), dtype))
    part = _rand(rng, (2, 3, 2), dtype)
    m.run_copy3(part, big[:, :, 1:3])               # into a slice view (concat, scatter)
    expect = np.zeros((2, 3, 4), dtype)
    expect[:, :, 1:3] = part
    np.testing.assert_array_equal(big.copy_to_host(), expect)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_softmax_rows_and_cross_entropy_match_reference(dtype, tol):
    rng = np.random.default_rng(3)
    z_in, t_in = gn.input("z", (None, 4)), gn.input("t", (None, 4))
    ce = gn.ops.softmax_cross_entropy(z_in, t_in)
    sm, lsm = gn.ops.softmax(z_in), gn.ops.log_softmax(z_in)
    z = _rand(rng, (5, 4), dtype) * 3
    t = np.eye(4, dtype=dtype)[rng.integers(0, 4, 5)]
    ref_ce, ref_p, ref_lp = evaluate([ce, sm, lsm], {"z": z, "t": t}, dtype=dtype)
    m = _mod(kernels.softmax_ce_rows("sce_p", probs=True), kernels.softmax_ce_rows("sce"),
             kernels.row_softmax("smax"), kernels.row_softmax("lsmax", log=True), dtype=dtype)
    rows, p = np.zeros(5, dtype), np.zeros((5, 4), dtype)
    m.run_sce_p(z, t, rows, p)
    np.testing.assert_allclose(rows, ref_ce, rtol=tol, atol=tol)
    np.testing.assert_allclose(p, ref_p, rtol=tol, atol=tol)
    rows2 = np.zeros(5, dtype)
    m.run_sce(z, t, rows2)
    np.testing.assert_allclose(rows2, ref_ce, rtol=tol, atol=tol)
    out = np.zeros((5, 4), dtype)
    m.run_smax(z, out)
    np.testing.assert_allclose(out, ref_p, rtol=tol, atol=tol)
    m.run_lsmax(z, out)
    np.testing.assert_allclose(out, ref_lp, rtol=tol, atol=tol)


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


def test_every_template_compiles_to_ptx():
    """Type-check each template for a GPU (the simulator does not type kernels)."""
    from codegen.cuda.ptx import check_ptx, record_launches, toolkit_available

    if not toolkit_available():
        pytest.skip("CUDA toolkit wheels not installed (pip install 'numba-cuda[cu12]')")
    modules = []
    for dtype in ("float32", "float64"):
        m = _mod(kernels.matmul("mm_nn"), kernels.matmul("mm_nt", trans_b=True),
                 kernels.matmul("mm_tn", trans_a=True), kernels.row_softmax("smax"),
                 kernels.row_softmax("lsmax", log=True), kernels.softmax_ce_rows("sce"),
                 kernels.softmax_ce_rows("sce_p", probs=True), kernels.fill("fill2", 2),
                 kernels.copy("copy3", 3), kernels.add_into("add2", 2), kernels.repeat_row("rep"),
                 kernels.gather_rows("gather"), kernels.scale_add("add_loss"), dtype=dtype)
        f = np.dtype(dtype).type
        z, t = np.ones((2, 3), dtype), np.ones((2, 3), dtype)
        with record_launches(m) as launched:
            m.run_mm_nn(z, z.T.copy(), np.zeros((2, 2), dtype))
            m.run_mm_nt(z, z, np.zeros((2, 2), dtype))
            m.run_mm_tn(z, z, np.zeros((3, 3), dtype))
            m.run_smax(z, z.copy())
            m.run_lsmax(z, z.copy())
            m.run_sce(z, t, np.zeros(2, dtype))
            m.run_sce_p(z, t, np.zeros(2, dtype), z.copy())
            m.run_fill2(z.copy(), f(1))
            m.run_copy3(np.ones((1, 2, 2), dtype), np.zeros((1, 2, 2), dtype))
            m.run_add2(z, z.copy())
            m.run_rep(z[:1].copy(), z.copy())
            m.run_gather(cuda.to_device(z), cuda.to_device(np.arange(2)), 0, cuda.to_device(z.copy()))
            m.run_add_loss(np.ones(1, dtype), f(2), np.zeros(1, dtype))
        modules.append((m.__file__, launched))
    for sizes, (_, launched) in zip(check_ptx(modules), modules):
        assert set(sizes) == set(launched) and len(sizes) == 13


@pytest.mark.parametrize("split", [1, 3])
def test_loop_kernel_reductions_registers_in_place_and_scalar_tree(split):
    """A hand-made schedule Loop: every way the emitter maps reductions onto threads."""
    import sympy
    import types

    from codegen.cuda.emit import CudaEmitter
    from codegen.schedule import BATCH, Accumulate, Buffer, Let, Loop, Program, Store

    i, j = sympy.symbols("i j")
    X, Y = sympy.IndexedBase("X"), sympy.IndexedBase("Y")
    rowmax, colsum, both = sympy.IndexedBase("rowmax"), sympy.IndexedBase("colsum"), sympy.IndexedBase("both")
    e = sympy.Symbol("e_ij")
    # loop 1: threads split i (kept by both reductions); rowmax[i] lives in a register, both[i, j]
    # (indexed by the serial j too) is prefilled and updated in place. loop 2: threads over j,
    # i serial (a bias gradient; with split > 1, `split` threads per column and a combining
    # kernel). loop 3: scalar reductions, one block and a shared-memory tree.
    loops = [
        Loop((i, j), (BATCH, sympy.Integer(5)), [
            Let(e, sympy.exp(X[i, j]) * 2), Store(Y[i, j], e),
            Accumulate(rowmax[i], X[i, j], "max"), Accumulate(both[i, j], e)], comment="rows"),
        Loop((i, j), (BATCH, sympy.Integer(5)), [Accumulate(colsum[j], X[i, j] * X[i, j])], comment="cols"),
        Loop((i, j), (BATCH, sympy.Integer(5)), [Accumulate(sympy.Symbol("total"), X[i, j]),
                                                 Accumulate(sympy.Symbol("biggest"), X[i, j], "max")]),
    ]
    args = [Buffer("X", (None, 5), "input"), Buffer("Y", (None, 5), "temp"), Buffer("rowmax", (None,), "temp"),
            Buffer("both", (None, 5), "temp"), Buffer("colsum", (5,), "temp")]
    em = CudaEmitter("float64", split)
    em.program(Program("prog", args, loops, sympy.Symbol("total")), {})
    assert ("combine" in "".join(em.kernels)) == (split > 1)
    m = _mod(*em.source_parts(), dtype="float64")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((23, 5))            # 23 rows: more than the simulator's threads
    a = types.SimpleNamespace(X=x, Y=np.zeros((23, 5)), rowmax=np.zeros(23), both=np.zeros((23, 5)),
                              colsum=np.zeros(5), total=np.zeros(1), biggest=np.zeros(1))
    for name, shape in em.all_extras([Program("prog", [], [])]).items():
        setattr(a, name, np.zeros(shape))
    m.bind_prog(a)
    total = m.prog(a, 23)
    np.testing.assert_allclose(a.Y, 2 * np.exp(x), rtol=1e-12)
    np.testing.assert_array_equal(a.rowmax, x.max(1))
    np.testing.assert_allclose(a.both, 2 * np.exp(x), rtol=1e-12)     # prefilled, then += in place
    np.testing.assert_allclose(a.colsum, (x * x).sum(0), rtol=1e-12)
    np.testing.assert_allclose(total[0], x.sum(), rtol=1e-12)
    assert a.biggest[0] == x.max()


def test_every_schedule_step_the_cpu_prints_has_a_cuda_printer():
    """A step type added to the shared schedule (with its CPU printer) needs a CUDA printer
    too (codegen.cuda.emit.register_cuda_printer); this names the ones missing. Steps only a
    CPU rewrite makes (the fused conv-ReLU-pool block, train_epoch's product with SGD folded
    in) are exempt — and never reach the CUDA printer: a CUDA module of a model the CPU fuses
    is printed from the unfused schedule."""
    import codegen  # noqa: F401  (registers every lowering and CPU printer)
    from codegen.cuda import backend  # noqa: F401  (registers the CUDA printers)
    from codegen.cuda.emit import cuda_can_print
    from codegen.emit_cpu import CPU_ONLY_STEPS, EMITTERS

    missing = sorted(t.__name__ for t in EMITTERS if not cuda_can_print(t) and t not in CPU_ONLY_STEPS)
    assert not missing, f"schedule steps without a CUDA printer: {missing}"
    assert {t.__name__ for t in CPU_ONLY_STEPS} == {"ConvReluPool", "PoolReluConvGrad", "GemmUpdate"}
