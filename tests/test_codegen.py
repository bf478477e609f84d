"""Codegen lowerings, one op at a time: compiled forward, loss and gradients vs the reference.

Each case builds a tiny model around one op, compiles it with the 'cpu' backend and
compares `loss`, `predict` and `gradients` with the NumPy reference backend (float64 to
1e-10). Plus: what the generated source looks like (fusion, BLAS, names), and the errors.
"""
import re

import numpy as np
import pytest
import sympy

import codegen
import graphnn as gn
from codegen import CodegenError, register_lowering
from codegen.lower import LOWERINGS
from graphnn.ops import Map
from graphnn.model import Model
from graphnn.data import Dataset
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend


pytestmark = pytest.mark.usefixtures("private_cache_dir")


RNG = np.random.default_rng(3)
X = RNG.normal(size=(5, 4))


def _model(build, x_shape=(None, 4)):
    x = gn.input("x", x_shape)
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    b = gn.parameter("b", RNG.normal(size=(3,)))
    out = build(x, W, b)
    loss = gn.sum(out) if out.shape == () or out.ndim else out
    loss = gn.sum(loss) if loss.shape != () else loss
    return Model("case", loss, out, (x,), Dataset({"x": X}))


def _compare(model, feeds, dtype="float64", tol=1e-10):
    opt = make_optimizer("sgd", lr=0.1)
    cpu = codegen.CpuBackend(model, opt, dtype)
    ref = NumpyBackend(model, make_optimizer("sgd", lr=0.1), dtype)
    np.testing.assert_allclose(cpu.predict(feeds), ref.predict(feeds), rtol=tol, atol=tol)
    (lc, gc), (lr_, gr) = cpu.gradients(feeds), ref.gradients(feeds)
    assert lc == pytest.approx(lr_, rel=tol, abs=tol)
    np.testing.assert_allclose(gc, gr, rtol=tol, atol=tol)
    return cpu


CASES = {
    "linear+tanh": lambda x, W, b: gn.tanh(gn.linear(x, W, b)),
    "sigmoid-chain": lambda x, W, b: gn.sigmoid(gn.sigmoid(x @ W) * 2.0 + b),
    "relu": lambda x, W, b: gn.relu(gn.linear(x, W, b)),
    "leaky-softplus-silu": lambda x, W, b: gn.softplus(gn.leaky_relu(x @ W)) + gn.silu(x @ W + b),
    "fan-out (tied)": lambda x, W, b: (x @ W) * (x @ W) + gn.exp(b),
    "mean": lambda x, W, b: gn.mean(gn.tanh(x @ W + b), axis=1, keepdims=True) * b,
    "sum-axis-keepdims": lambda x, W, b: gn.sum(x @ W, axis=1, keepdims=True) * b,
    "max-reduction": lambda x, W, b: gn.max(x @ W + b, axis=1),
    "softmax": lambda x, W, b: gn.softmax(x @ W + b) * gn.constant([1.0, 2.0, 3.0]),
    "log_softmax": lambda x, W, b: gn.log_softmax(x @ W + b) * gn.constant([1.0, 2.0, 3.0]),
    "transpose-matmul": lambda x, W, b: gn.tanh(gn.transpose(gn.transpose(x @ W))) + b,
    "index": lambda x, W, b: gn.index(x @ W, (slice(None), slice(0, 2))) * b[1:],
    "reshape": lambda x, W, b: gn.reshape(x @ W, (None, 3, 1)) * 2.0,
    "concat": lambda x, W, b: gn.concat([x @ W, gn.tanh(x)], axis=1),
    "stop_gradient": lambda x, W, b: gn.stop_gradient(x @ W) * (x @ W) + b,
    "abs-sqrt-power": lambda x, W, b: gn.sqrt(gn.absolute(x @ W) + 1.0) + (x @ W + b) ** 3,
}


GROUPS = [list(CASES)[k::3] for k in range(3)]   # 3 compiled modules keep the test quick


@pytest.mark.parametrize("names", GROUPS, ids=["+".join(g) for g in GROUPS])
def test_lowerings_match_reference(names):
    """Every case's output summed into one loss: forward and every op's gradient checked at once."""
    def build(x, W, b):
        return gn.concat([gn.reshape(CASES[n](x, W, b), (None, -1)) if CASES[n](x, W, b).ndim > 1 else
                          gn.reshape(CASES[n](x, W, b), (None, 1)) for n in names], axis=1)
    _compare(_model(build), {"x": X})


def test_batched_matmul_loops_match_reference():
    x = gn.input("x", (None, 2, 4))
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    V = gn.parameter("V", RNG.normal(size=(3, 3)))
    h = gn.tanh(gn.matmul(x, W))                                # (B, 2, 3) @ broadcast weight
    s = gn.matmul(h, gn.transpose(h, (0, 2, 1)))                 # (B, 2, 2): batched, strided operand
    out = gn.reshape(gn.transpose(gn.matmul(s, h), (0, 2, 1)), (None, 6))  # strided reshape: a copy
    model = Model("bmm", gn.sum(out * out) + gn.sum(V), out, (x,), Dataset({"x": RNG.normal(size=(3, 2, 4))}))
    cpu = _compare(model, {"x": RNG.normal(size=(3, 2, 4))})
    assert "(batched, as loops)" in cpu.source


def test_softmax_cross_entropy_is_fused_with_its_gradient():
    x = gn.input("x", (None, 4))
    t = gn.input("t", (None, 3))
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    b = gn.parameter("b", np.zeros(3))
    z = gn.linear(x, W, b, name="z")
    model = Model("sce", gn.losses.softmax_cross_entropy(z, t), z, (x, t),
                  Dataset({"x": X, "t": np.eye(3)[[0, 1, 2, 0, 1]]}))
    cpu = _compare(model, model.data.train)
    grad_src = cpu.source.split("def grad_step")[1].split("@njit")[0]
    calls = re.findall(r"\b(softmax_ce_\w+)\(", grad_src)   # one step, printed as a helper call
    assert len(calls) == 1 and "exp_f64(" not in grad_src
    helper = cpu.source.split(f"def {calls[0]}(")[1].split("@njit")[0]
    assert helper.count("exp_f64(") == 1             # one row pass: loss and softmax together
    d_z_line = next(line for line in grad_src.splitlines() if "d_z_ij = " in line)
    assert "softmax[i, j]" in d_z_line and "t[i, j]" in d_z_line   # p − t, no softmax Jacobian


def test_elementwise_chain_is_one_loop_without_temporaries():
    x = gn.input("x", (None, 4))
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    out = gn.tanh(gn.sigmoid(gn.exp(x @ W) * 0.5) + 1.0, name="out")
    model = Model("chain", gn.sum(out), out, (x,), Dataset({"x": X}))
    src = codegen.source(model)
    fwd = src.split("def forward")[1].split("@njit")[0]
    assert fwd.startswith("(x, flat_params, work):")   # W lives in the flat vector, temporaries in one workspace …
    carved = [line.split(" = ")[0].strip() for line in fwd.splitlines() if "= carve(work, " in line]
    assert carved == ["out", "matmul"]                # … and are no more than these: no buffer for exp, ×0.5, sigmoid, +1
    assert fwd.count("_ij = ") == 1                    # the whole chain is one assignment …
    assert fwd.count("for i in range(B):") == 1        # … in one loop
    assert "matmul_nn(x, W, matmul)" in fwd             # x @ W: the tiny-product loops (any sizes)
    assert "tanh_f64(" in fwd and "exp_f64(" in fwd and "math.exp" not in fwd   # codegen/scalar_math.py


def test_generated_module_uses_blas_names_and_no_globals():
    from graphnn.models import get_model
    model = get_model("digits-mlp")
    src = codegen.source(model, dtype="float32")
    assert "gemm(x, W1, net_h_xW)" in src             # BLAS into a preallocated buffer
    assert "gemm(x.T, d_net_h, d_W1)" in src          # the weight gradient straight into the flat buffer view
    assert "tanh_f32(" in src                         # float32: the rational tanh
    assert "fastmath={'afn', 'arcp', 'contract', 'nsz', 'reassoc'}" in src   # no nnan/ninf
    assert "error_model='numpy'" in src and "cache=True" in src
    for fn in ("forward", "loss", "grad_step", "train_step", "train_epoch"):
        assert f"def {fn}(" in src
    assert "import apply_update_sgd_float32 as apply_update" in src   # stored: tests/test_generic_kernels.py
    assert "np.empty" not in src and "np.zeros" not in src   # no allocation inside kernels
    compile(src, "generated", "exec")


def test_op_without_lowering_is_a_clear_error():
    x = gn.input("x", (None, 4))
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    h = gn.tanh(x @ W, name="h3")
    saved = LOWERINGS.pop(Map)
    try:
        with pytest.raises(CodegenError, match=r"no CPU lowering for op 'map' \(node 'h3'\); available: .*matmul"):
            codegen.lower(Model("m", gn.sum(h), h, (x,)), make_optimizer("sgd"))
    finally:
        register_lowering(Map, saved)


def test_numba_typing_error_names_function_and_generated_line(monkeypatch):
    """A lowering (via a new step type and its emitter) whose code Numba cannot type."""
    from dataclasses import dataclass

    from codegen import Lowered
    from codegen.emit_cpu import EMITTERS

    @dataclass
    class Broken:
        out: str
        x: str

    monkeypatch.setitem(EMITTERS, Broken, lambda step, w: w(f"{step.out}[...] = {step.x}.no_such_attribute"))
    monkeypatch.setitem(LOWERINGS, Map, lambda node, ctx: Lowered(
        steps=[Broken(ctx.name(node), ctx.array(node.inputs[0]))]))
    x = gn.input("x", (None, 4))
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    h = gn.tanh(x @ W)
    cpu = codegen.CpuBackend(Model("broken", gn.sum(h), h, (x,)), make_optimizer("sgd"))
    with pytest.raises(CodegenError) as info:
        cpu.predict({"x": X})
    msg = str(info.value)
    assert "generated function 'forward'" in msg
    assert "generated line" in msg and "no_such_attribute" in msg
    assert "Traceback" not in msg


def test_unprintable_expression_is_a_clear_error():
    x = gn.input("x", (None, 4))
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    h = gn.elementwise(sympy.Function("mystery")(sympy.Symbol("a")), {sympy.Symbol("a"): x @ W}, name="h")
    with pytest.raises(CodegenError, match="mystery"):
        codegen.source(Model("m", gn.sum(h), h, (x,)))


def test_scalar_parameters_and_fixed_parameters():
    x = gn.input("x", (None, 2))
    w = gn.parameter("w", 0.7)
    c = gn.parameter("c", [0.1, -0.2], trainable=False)
    out = gn.tanh(x * w + c)
    model = Model("scalars", gn.sum(out * out), out, (x,), Dataset({"x": X[:, :2]}))
    cpu = _compare(model, {"x": X[:, :2]})
    assert cpu.params[w].shape == ()


def test_float32_kernels_stay_float32():
    from graphnn.models import get_model
    model = get_model("digits-mlp")
    cpu = codegen.CpuBackend(model, make_optimizer("sgd", lr=0.1), "float32")
    feeds = {k: v[:8] for k, v in model.data.train.items()}
    cpu.train_step(feeds)
    sig = cpu.module.grad_step.signatures[0]
    assert all("float64" not in str(t) for t in sig)
    assert cpu.predict(feeds).dtype == np.float32


def test_update_hoists_per_step_scalars():
    from graphnn.models import get_model
    sched = codegen.lower(get_model("mazur"), make_optimizer("adam"))
    hoisted = {str(e) for _, e in sched.update.hoisted}
    assert "1 - beta1" in hoisted and any("beta1**t" in h for h in hoisted)
    loop_exprs = " ".join(str(e) for _, e in sched.update.rules)
    assert "beta1**t" not in loop_exprs


def test_unnamed_nodes_do_not_clash_with_emitter_locals():
    """An unnamed exp node beside softmax-CE once got the buffer name `e`, the row loop's local."""
    import graphnn as gn
    from graphnn.data import Dataset
    from graphnn.model import Model
    from graphnn.training import Trainer

    rng = np.random.default_rng(0)
    x, t = gn.input("x", (None, 4)), gn.input("t", (None, 3))
    W = gn.parameter("W", rng.normal(size=(4, 3)))
    z = gn.exp(x @ W) * 0.5
    data = Dataset({"x": rng.normal(size=(8, 4)), "t": np.eye(3)[rng.integers(0, 3, 8)]})
    model = Model("clash", gn.losses.softmax_cross_entropy(z, t), z, (x, t), data, defaults={"lr": 0.1})
    ref, cpu = Trainer(model, backend="numpy"), Trainer(model, backend="cpu")
    ref.fit(steps=3)
    cpu.fit(steps=3)
    np.testing.assert_allclose(cpu.params[W], ref.params[W], rtol=1e-10, atol=1e-12)


def test_equal_batched_matmul_nests_share_one_helper():
    """Two 3-d products of one shape are one compiled loop-nest helper, called twice; the
    compiled gradients still equal the reference."""
    x = gn.input("x", (None, 3, 4))
    A = gn.parameter("A", RNG.normal(size=(4, 4)))
    C = gn.parameter("C", RNG.normal(size=(4, 4)))
    out = gn.tanh(x @ A) + gn.sigmoid(x @ C)
    model = Model("bmm", gn.sum(out), out, (x,), Dataset({"x": RNG.normal(size=(5, 3, 4))}))
    cpu = _compare(model, model.data.train)
    fwd = cpu.source.split("def forward")[1].split("@njit")[0]
    calls = [line.split("(")[0].strip() for line in fwd.splitlines() if line.strip().startswith("loops_")]
    assert len(calls) == 2 and calls[0] == calls[1]
    assert cpu.source.count(f"def {calls[0]}(") == 1


def rows_model(d=17, k=18, T=3, n=6, seed=5):
    """(B, T, d) @ (d, k) on computed buffers — a transformer's projections — with a weight
    before it (so its input gradient δ Wᵀ is computed too) and a linear layer after it."""
    rng = np.random.default_rng(seed)
    x = gn.input("x", (None, T, d))
    W0 = gn.parameter("W0", rng.normal(size=(d, d)) / d ** 0.5)
    W = gn.parameter("W", rng.normal(size=(d, k)) / d ** 0.5)
    V = gn.parameter("V", rng.normal(size=(k, k)) / k ** 0.5)
    b = gn.parameter("b", rng.normal(size=k))
    h = gn.tanh(gn.matmul(x, W0))
    y = gn.linear(gn.tanh(gn.matmul(h, W)), V, b)
    return Model("rows", gn.mean(y * y), y, (x,), Dataset({"x": rng.normal(size=(n, T, d))}))


def test_a_batch_of_rows_times_a_matrix_is_one_gemm():
    """(B, T, d) @ (d, k) ran as a triple loop (the transformer's step 0.76× hand NumPy): now one
    GEMM over the B·T rows, forward and δ Wᵀ, equal to the reference; the short last batch of
    an epoch (a slice of the epoch's buffers) too."""
    model = rows_model()
    cpu = _compare(model, {"x": model.data.train["x"][:4]})
    assert cpu.source.count("one GEMM over all B × 3 rows") >= 3      # h @ W, the linear, δ Wᵀ
    # the weight gradients Σ_b x_bᵀ δ_b too (they were a (B, d, k) loop nest, then a sum over b),
    # and the input x @ W0: no batched product is left to loops
    grad = cpu.source.split("def grad_step")[1].split("@njit")[0]
    assert grad.count("Σ_b") == 3 and "as loops" not in grad, grad
    fits = [gn.fit(model, epochs=2, batch_size=4, lr=0.1, backend=be, progress=False, seed=1)
            for be in ("numpy", "cpu")]
    for p in model.parameters:
        np.testing.assert_allclose(fits[1].params[p], fits[0].params[p], rtol=1e-10, atol=1e-12)


def test_printed_expressions_are_reused_with_the_helpers_they_call():
    """Each expression is printed once per dtype (the same statements recur in five programs);
    a Writer that reuses a printed text still learns the helpers it calls (tanh_f64)."""
    import sympy
    from codegen.emit_cpu import Writer

    x = sympy.Symbol("x_ij", real=True)
    e = sympy.tanh(x) + 1
    first, second = Writer("float64"), Writer("float64")
    first.expr(sympy.tanh(2 * x))                       # the helper already known to this Writer …
    assert first.expr(e) == second.expr(e)              # … is still recorded as what e calls
    assert "tanh_f64" in first.expr(e) and "tanh_f64" in first.printer.helpers
    assert "tanh_f64" in second.printer.helpers          # from the memo, not a second print
    assert "tanh_f32" in Writer("float32").expr(e)       # per dtype


def _sliced_parameter_model():
    """One flat parameter whose slices are reshaped into two matrices (as a recurrence's packed
    gradient row is unpacked), plus a copy node, a 0-d element and a slice after a slice."""
    x = gn.input("x", (None, 4))
    flat = gn.parameter("flat", RNG.normal(size=(24,)))
    W1 = gn.reshape(flat[0:12], (4, 3))
    W2 = gn.reshape(flat[12:18], (3, 2))
    scale = gn.reshape(flat[18:19], ())
    tail = gn.reshape(flat[19:24][1:4], (3, 1))
    h = gn.tanh(x @ W1)
    out = (h @ W2) * scale + gn.sum(h @ tail)
    loss = gn.sum(out * out)
    return Model("sliced", loss, out, (x,), Dataset({"x": X}))


def test_reshaped_slices_of_a_contiguous_array_are_views_and_train_as_the_reference():
    """A reshape of ``flat[a:b]`` needs no copy (Numba types the slice C-contiguous): the module
    writes ``view(…)``; a 0-d element keeps its copy; gradients equal the reference's."""
    model = _sliced_parameter_model()
    cpu = _compare(model, {"x": X})
    import re

    src = cpu.source
    for shape in ("(4, 3)", "(3, 2)", "(3, 1)"):   # each was a copy into a buffer of its own
        assert re.search(rf"= view\(index\w*, {re.escape(shape)}\)", src), (shape, src)
    assert re.search(r"copy_1d\(view\(reshape\w*, index\w*\.shape\), index\w*\)", src)   # the 0-d one


def test_a_nest_that_only_copies_is_one_call_of_the_stored_copy_kernel():
    """``h_T = copy(index)``-like nests (the unpacked gradients of every recurrence) print as
    one ``copy_Nd`` call instead of an inline loop nest (compile time), with equal results."""
    from graphnn.ops.elementwise import fmap

    v = sympy.Symbol("v")
    x = gn.input("x", (None, 4))
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    h = x @ W                                   # a GEMM's buffer, kept whole
    out = fmap(v, {v: h}, fn="copy", name="h_copy")
    loss = gn.sum(gn.tanh(out))
    model = Model("copying", loss, out, (x,), Dataset({"x": X}))
    cpu = _compare(model, {"x": X})
    assert "copy_2d(h_copy, " in cpu.source, cpu.source


def test_a_shared_nest_keeps_arrays_apart_whatever_they_are_called():
    """Arrays of a shared nest are renamed a0, a1, … by first appearance; renamed one at a time,
    a node called 'a1' took the new name of the array before it too (the transformer's residual
    'a1': the compiled loss 4.46 against the reference's 4.52). Every name here is one the
    renaming makes."""
    x = gn.input("x", (None, 4))
    W = gn.parameter("W", RNG.normal(size=(4, 3)))
    V = gn.parameter("V", RNG.normal(size=(4, 3)))
    a2 = gn.parameter("a2", RNG.normal(size=(3,)))
    a0 = gn.tanh(x @ W, name="a0")
    a1 = gn.sigmoid(x @ V, name="a1")
    out = (a0 + a2) * a1
    loss = gn.sum(out * out)
    model = Model("a-names", loss, out, (x,), Dataset({"x": X}))
    cpu = _compare(model, {"x": X})
    assert "def loops_" in cpu.source   # the nests are shared helpers: the renaming is exercised


def test_a_module_printed_while_another_thread_counts_is_printed_as_alone():
    """The nest census is per thread: a background compile lowering one model while another
    thread prints its first (counting) pass gets the module it would get alone."""
    import threading

    from codegen.nest_sharing import CENSUS

    model = _model(lambda x, W, b: gn.tanh(gn.linear(x, W, b)))
    alone = codegen.source(model)
    printed = []
    with CENSUS.counting():   # this thread is counting …
        t = threading.Thread(target=lambda: printed.append(codegen.source(model)))
        t.start()
        t.join()
    assert printed == [alone]   # … the other printed as if alone


def test_a_function_numba_cannot_spell_is_one_line_and_erf_compiles():
    """loggamma's gradient (polygamma) has no kernel spelling: one line, no sympy advice on
    printer options; erf has one (math.erf) and trains as the reference does."""
    from codegen.backend import CpuBackend
    from codegen.lower import CodegenError
    from graphnn.optim import make_optimizer
    from graphnn.training.backends import NumpyBackend

    def model(fn):
        x = gn.input("x", (None, 2))
        W = gn.parameter("W", np.array([[0.3, -0.2], [0.1, 0.4]]))
        y = gn.elementwise(fn(gn.ops.X), {gn.ops.X: x @ W}, name="special")
        return gn.Model("special", gn.sum(y * y), y, (x,), gn.Dataset({"x": np.array([[0.5, -1.0], [1.5, 0.3]])}))
    with pytest.raises(CodegenError) as e:
        CpuBackend(model(lambda v: sympy.loggamma(v * v + 1)), make_optimizer("sgd", lr=0.1))
    assert "\n" not in str(e.value) and "polygamma" in str(e.value) and "strict" not in str(e.value)
    m = model(sympy.erf)
    feeds = m.data.train
    (l_ref, g_ref), (l_cpu, g_cpu) = (NumpyBackend(m, make_optimizer("sgd", lr=0.1)).gradients(feeds),
                                      CpuBackend(m, make_optimizer("sgd", lr=0.1)).gradients(feeds))
    assert l_cpu == pytest.approx(l_ref, rel=1e-12)
    np.testing.assert_allclose(g_cpu, g_ref, rtol=1e-10)
