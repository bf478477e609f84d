"""Compiled recurrences (codegen/lower_loop.py) against the NumPy reference evaluator."""
import numpy as np
import pytest

import graphnn as gn
from graphnn.model import Model
from graphnn.models import get_model
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend, Trainer

codegen = pytest.importorskip("codegen")
from codegen.backend import CpuBackend  # noqa: E402


def _compare(model, feeds, dtype="float64", tol=1e-10, steps=3):
    cpu = CpuBackend(model, make_optimizer("sgd", lr=0.05), dtype=dtype)
    ref = NumpyBackend(model, make_optimizer("sgd", lr=0.05), dtype=dtype)
    assert cpu.loss(feeds) == pytest.approx(ref.loss(feeds), rel=tol, abs=tol)
    np.testing.assert_allclose(cpu.predict(feeds), ref.predict(feeds), rtol=tol, atol=tol)
    for _ in range(steps):   # forward + the compiled reverse loop + the update
        assert cpu.train_step(feeds) == pytest.approx(ref.train_step(feeds), rel=tol, abs=tol)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=tol, atol=tol)
    return cpu


# Numba compiles each model's module once per process (and caches it on disk): the tests
# share few, small models to stay fast.

def test_compiled_rnn_matches_the_reference_and_trains_like_it():
    m = get_model("rnn", steps=4, hidden=6)
    feeds = {k: v[:7] for k, v in m.data.train.items()}
    cpu = _compare(m, feeds)
    assert "def cell_" in cpu.source and "def cell_grad_" in cpu.source   # the cell, compiled once
    hist = {}
    for backend in ("numpy", "cpu"):    # the same module: whole epochs inside compiled code
        tr = Trainer(m, backend=backend, optimizer="sgd", lr=0.05, batch_size=64)
        hist[backend] = tr.fit(epochs=2).losses
    np.testing.assert_allclose(hist["cpu"], hist["numpy"], rtol=1e-9)


def test_compiled_per_step_outputs_tuple_carry_and_per_example_initial_state():
    xs = gn.input("xs", (None, 6, 3))
    t = gn.input("t", (None, 6, 4))
    W = gn.parameter("W", shape=(4, 4))
    U = gn.parameter("U", shape=(3, 4))
    b = gn.parameter("b", shape=(4,), init="normal")

    def step(carry, x_t):
        h, m = carry
        h2 = gn.tanh(gn.linear(h, W, b) + x_t @ U)
        return (h2, m * gn.sigmoid(h2) + h2), h2

    rec = gn.scan(step, (np.zeros((1, 4)), np.zeros(4)), xs)
    h, m = rec.carry
    loss = gn.losses.mse(rec.ys, t) + gn.sum(m * m) * 0.01
    model = Model("seq", loss, rec.ys, (xs, t))
    rng = np.random.default_rng(0)
    feeds = {"xs": rng.normal(size=(5, 6, 3)), "t": rng.normal(size=(5, 6, 4))}
    _compare(model, feeds)


@pytest.mark.parametrize("per_step", [False, True])
def test_compiled_truncated_bptt_matches_the_reference(per_step):
    """Loss on the last state (one short sweep) and at every step (a sweep per step), k = 2."""
    xs = gn.input("xs", (None, 5, 3))
    t = gn.input("t", (None, 5, 4) if per_step else (None, 4))
    W = gn.parameter("W", shape=(4, 4))
    U = gn.parameter("U", shape=(3, 4))
    b = gn.parameter("b", shape=(4,), init="normal")

    def step(h, x_t):
        h2 = gn.tanh(gn.linear(h, W, b) + x_t @ U)
        return h2, h2

    rec = gn.scan(step, np.zeros(4), xs, truncate=2)
    out = rec.ys if per_step else rec.carry
    model = Model("trunc", gn.losses.mse(out, t), out, (xs, t))
    rng = np.random.default_rng(1)
    feeds = {"xs": rng.normal(size=(6, 5, 3)), "t": rng.normal(size=(6,) + t.shape[1:])}
    cpu = _compare(model, feeds)
    assert "truncated to 2 steps" in cpu.source
    # truncation changes the gradient (else this test could not tell the two apart)
    full = gn.scan(step, np.zeros(4), xs)
    full_out = full.ys if per_step else full.carry
    g_trunc = gn.evaluate(gn.grad(model.loss, [W])[W], feeds, dtype="float64")
    g_full = gn.evaluate(gn.grad(gn.losses.mse(full_out, t), [W])[W], feeds, dtype="float64")
    assert not np.allclose(g_trunc, g_full)


def test_float32_and_float64_cells_are_distinct_functions():
    m = get_model("rnn", steps=3, hidden=4)
    src64 = codegen.source(m, dtype="float64")
    src32 = codegen.source(m, dtype="float32")
    name64 = src64.split("def cell_")[1].split("(")[0]
    name32 = src32.split("def cell_")[1].split("(")[0]
    body32 = src32.split("def cell_")[1].split("\n\n\n")[0]
    assert name64 != name32 and name32.endswith("_f32")
    assert "tanh_f32(" in body32 and "_f32(" in body32.split("matmul_", 1)[1]   # float32 helpers only
    assert "_f32" not in src64.split("def cell_")[1].split("\n\n\n")[0]


def _recurrent_models():
    """Every built-in model whose graph holds a looped recurrence (small sizes)."""
    from graphnn.graph import Graph
    from graphnn.looped import Loop
    from graphnn.models import available

    sizes = {"rnn": {"steps": 3, "hidden": 4}, "lstm": {"steps": 3, "hidden": 4}, "rnn-scalar": {"mode": "looped"}}
    out = []
    for name, build in available().items():
        model = build(**sizes.get(name, {}))
        if model.data is not None and any(isinstance(n.op, Loop) for n in Graph([model.loss]).nodes):
            out.append((name, model))
    return out


RECURRENT = _recurrent_models()


def test_recurrent_models_are_found():
    assert {"rnn", "lstm", "rnn-scalar"} <= {name for name, _ in RECURRENT}


@pytest.mark.parametrize("name,model", RECURRENT, ids=[n for n, _ in RECURRENT])
def test_bptt_schedule_keeps_states_and_hoists_the_products(name, model):
    """The standard BPTT schedule, read off the lowered grad_step (no compilation):
    the forward step runs once per time step (BPTT reads the kept states, it does not run
    the forward again), x_t·U for all t is one product before the loop, and the weight
    gradients Σ_t s_{t−1}ᵀδ_t, Σ_t x_tᵀδ_t are one product each after it (none per step)."""
    from codegen.lower_loop import Recurrence
    from codegen.schedule import MatMul

    sched = codegen.lower(model, make_optimizer("sgd", lr=0.1), "float64")
    steps = [s for s in sched.grad_step.steps if isinstance(s, Recurrence)]
    assert [s.kind for s in steps] == ["loop", "grad"]
    loop, bptt = steps
    assert not bptt.forward and "bwd" in bptt.calls and "fwd" in loop.calls
    src = codegen.emit_cpu.program_lines(sched.grad_step, "float64")
    fwd = loop.calls["fwd"].fn
    assert sum(line.count(f"{fwd}(") for line in src) == 1          # one call site: the forward loop

    def products(call):
        return [s for s in call.program.steps if isinstance(s, MatMul)]

    x_args = {b.name for b, (role, _) in zip(loop.calls["fwd"].program.args, loop.calls["fwd"].args)
              if role[0] == "at" and role[1].startswith("x")}
    assert not any({p.a, p.b} & x_args for p in products(loop.calls["fwd"]))   # x_t·U is not per step
    if name != "rnn-scalar":   # (the scalar net has no matrix product to hoist)
        assert products(loop.calls["pre"])
    per_step = [p for p in products(bptt.calls["bwd"]) if "B" not in map(str, p.shape[:1])]
    assert not per_step, "a weight gradient is still a product per time step"
    assert all(t[0] == "out" for t in bptt.free_targets.values())   # every weight gradient: once, after the loop
