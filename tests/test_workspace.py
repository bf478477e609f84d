"""codegen/workspace.py: a generated function called from Python takes its temporaries as one
workspace array and its trainable parameters and gradients as the flat vectors, and carves them
(issue 18: the transformer's train_epoch took 174 arrays; its compile went 13.5 → 9 s).

Checked: the ``carve`` intrinsic against NumPy's slicing; the layout (aligned, disjoint, inside
the workspace, the printed offset equal to the computed one) for drawn buffer lists and batch
sizes; every built-in model's printed functions take no temporary, parameter or gradient one
by one, and train as the reference (test_differential.py and test_codegen_models.py train
every model; here a short last batch and a user's graph too); ``_nrt=False`` exactly where no
function allocates."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numba import njit
from numba.core.errors import TypingError

import codegen
import graphnn as gn
from codegen.backend import CpuBackend
from codegen.intrinsics import carve
from codegen.printer import ALLOCATES
from codegen.workspace import (CACHE_LINE, Carving, Workspace, polynomial_text, polynomial_value,
                               workspace_buffers, workspace_layout)
from graphnn.data import Dataset
from graphnn.model import Model
from graphnn.models import available, get_model
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend

MODELS = [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")]


@njit(cache=False)
def _carve2(work, offset, rows, cols):
    return carve(work, offset, (rows, cols))


@njit(cache=False)
def _carve_write(work, offset, n):
    part = carve(work, offset, (n,))
    for i in range(n):
        part[i] = i + 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(st.integers(0, 40), st.integers(0, 6), st.integers(0, 6))
@settings(max_examples=40, deadline=None)
def test_carve_is_numpys_slice_and_reshape(dtype, offset, rows, cols):
    work = np.arange(100, dtype=dtype)
    got = _carve2(work, offset, rows, cols)
    want = work[offset:offset + rows * cols].reshape(rows, cols)
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    if rows * cols:
        assert got.ctypes.data == want.ctypes.data   # the same memory, no copy


def test_carve_writes_into_the_workspace():
    work = np.zeros(10)
    _carve_write(work, 3, 4)
    np.testing.assert_array_equal(work, [0, 0, 0, 1, 2, 3, 4, 0, 0, 0])


@pytest.mark.parametrize("offset,rows,cols", [(95, 2, 3), (-1, 1, 1), (0, -1, 2), (0, 11, 10)])
def test_carve_outside_the_workspace_is_an_error(offset, rows, cols):
    with pytest.raises(ValueError, match="carve: a part outside the workspace"):
        _carve2(np.zeros(100), offset, rows, cols)


def test_carve_takes_only_a_flat_contiguous_workspace():
    with pytest.raises(TypingError, match="carve: a 1-D C-contiguous array"):
        _carve2(np.zeros((10, 10)), 0, 1, 1)
    with pytest.raises(TypingError, match="carve: a 1-D C-contiguous array"):
        _carve2(np.zeros(20)[::2], 0, 1, 1)


_dims = st.one_of(st.none(), st.integers(1, 40))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(st.lists(st.tuples(st.text("abcdefgh", min_size=1, max_size=6),
                          st.lists(_dims, min_size=0, max_size=3).map(tuple)), min_size=1, max_size=12,
                unique_by=lambda b: b[0]),
       st.integers(1, 70))
@settings(max_examples=60, deadline=None)
def test_layout_is_aligned_disjoint_and_printed_as_computed(dtype, buffers, batch):
    starts, end = workspace_layout(buffers, dtype)
    line = CACHE_LINE // np.dtype(dtype).itemsize
    spans = []
    for name, shape in buffers:
        text = polynomial_text(starts[name], "B")
        at = polynomial_value(starts[name], batch)
        assert eval(text, {"B": batch}) == at             # the generated code's offset is the caller's
        assert at % line == 0                            # every buffer on a cache line
        size = math.prod(batch if d is None else d for d in shape)
        spans.append((at, at + max(size, 1)))
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))   # disjoint
    assert spans[-1][1] <= polynomial_value(end, batch)  # inside the workspace
    ws = Workspace(buffers, batch, dtype)
    assert ws.work.ctypes.data % CACHE_LINE == 0
    for name, shape in buffers:
        assert ws.views[name].shape == (tuple(batch if d is None else d for d in shape) or (1,))
        assert np.shares_memory(ws.views[name], ws.work)


def _signatures(source):
    return {m.group(1): [a.strip() for a in m.group(2).split(",")]
            for m in re.finditer(r"^def (\w+)\(([^)]*)\):", source, re.M)}


@pytest.mark.parametrize("name", MODELS)
def test_python_called_functions_take_no_buffer_one_by_one(name):
    """Before: every temporary, parameter and gradient was an argument of its own (the
    transformer's train_epoch took 174 arrays)."""
    model = get_model(name)
    opt = gn.Trainer(model, backend="numpy").optimizer
    sched = codegen.lower(model, opt)
    source = codegen.emit_module(sched, opt)
    sigs = _signatures(source)
    carving = Carving.of(sched)
    for prog in sched.programs + [sched.evaluate]:
        owned = {a.name for a in prog.args if carving.carves(a)}
        assert owned, f"{name}: {prog.name} carves nothing"
        assert not owned & set(sigs[prog.name]), f"{name}: {prog.name} still takes {owned & set(sigs[prog.name])}"
    epoch = set(sigs["train_epoch"])
    buffers = {n for n, _ in workspace_buffers(sched)} | set(carving.places)
    assert not {b for b in buffers if b in epoch or f"{b}_all" in epoch}, f"{name}: train_epoch takes buffers"
    assert "work" in epoch and "flat_params" in epoch and "flat_grad" in epoch


@pytest.mark.parametrize("name", MODELS)
def test_reference_counting_is_off_exactly_where_nothing_allocates(name):
    model = get_model(name)
    opt = gn.Trainer(model, backend="numpy").optimizer
    source = codegen.emit_module(codegen.lower(model, opt), opt)
    jit = next(line for line in source.splitlines() if line.startswith("JIT = dict("))
    allocates = ALLOCATES.search(source.split("# -- the intrinsics")[0]) is not None
    assert ("_nrt=False" in jit) == (not allocates), f"{name}: {jit}"


def _user_mlp(n=23):
    """A user's MLP with a scalar parameter, a bias-free layer and a batch axis inside a temporary."""
    rng = np.random.default_rng(3)
    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 2))
    W1 = gn.parameter("W1", rng.normal(size=(3, 5)))
    scale = gn.parameter("scale", np.array(0.7))
    h = gn.tanh(scale * (x @ W1))
    W2 = gn.parameter("W2", rng.normal(size=(5, 2)))
    y = gn.sigmoid(h @ W2 + gn.parameter("b2", np.zeros(2)))
    data = Dataset({"x": rng.normal(size=(n, 3)), "t": rng.uniform(size=(n, 2))})
    return Model("user-ws", gn.losses.mse(y, t), y, (x, t), data, task="regression")


def test_a_users_graph_with_a_short_last_batch_trains_as_the_reference():
    model = _user_mlp()
    cpu = CpuBackend(model, make_optimizer("adam", lr=0.01), dtype="float64")
    ref = NumpyBackend(model, make_optimizer("adam", lr=0.01), dtype="float64")
    feeds = model.data.train
    batches = [np.arange(i, min(i + 5, 23)) for i in range(0, 23, 5)]   # 5, 5, 5, 5, 3 rows
    for _ in range(3):
        assert cpu.train_epoch(feeds, batches) == pytest.approx(ref.train_epoch(feeds, batches), rel=1e-10)
    assert cpu.train_step({k: v[:4] for k, v in feeds.items()}) == \
        pytest.approx(ref.train_step({k: v[:4] for k, v in feeds.items()}), rel=1e-10)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-10, atol=1e-12)
    loss, out = cpu.evaluate(feeds)
    want_loss, want_out = ref.evaluate(feeds)
    assert loss == pytest.approx(want_loss, rel=1e-10)
    np.testing.assert_allclose(out, want_out, rtol=1e-10, atol=1e-12)
    views = cpu._temps(5)
    names = sorted(views)
    for i, a in enumerate(names):   # the buffers of one workspace never share memory
        for b in names[i + 1:]:
            assert not np.shares_memory(views[a], views[b]), (a, b)


def test_padded_convolutions_allocate_nothing_and_train_as_the_reference():
    """Before: each call of a padded conv (and of a conv's bias gradient) allocated its padded
    image with np.zeros, so the CNN's module kept Numba's reference counting on. Now those live
    in the workspace; reused call after call (the padded gradient is accumulated into), they
    must be zeroed each time: three epochs with a short last batch against the reference."""
    from test_conv_codegen import every_op_model

    model, feeds = every_op_model()
    for m in (model, get_model("cnn")):
        opt = make_optimizer("sgd", lr=0.1)
        source = codegen.emit_module(codegen.lower(m, opt), opt)
        kernels = source.split("# -- the intrinsics")[0]
        assert not re.search(r"\bnp\.(zeros|empty|ones)\(", kernels), m.name
        assert "_nrt=False" in next(ln for ln in source.splitlines() if ln.startswith("JIT = dict("))
    cpu = CpuBackend(model, make_optimizer("sgd", lr=0.1), dtype="float64")
    ref = NumpyBackend(model, make_optimizer("sgd", lr=0.1), dtype="float64")
    batches = [np.array([0, 1]), np.array([2, 3]), np.array([4])]
    for _ in range(3):
        assert cpu.train_epoch(feeds, batches) == pytest.approx(ref.train_epoch(feeds, batches), rel=1e-10)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("line,allocates", [
    ("    _t = np.empty(_n, x.dtype)", True), ("    _g = view(np.ascontiguousarray(g), (B, 4))", True),
    ("    y = x.copy()", True), ("    _p = np.zeros((B, 2), x.dtype)", True),
    ("    z = carve(work, 8 * B, (B, 4))", False), ("    acc = np.float32(0.0)", False)])
def test_reference_counting_stays_on_for_any_allocation(line, allocates):
    from codegen.printer import jit_settings

    settings_text = jit_settings(["def f(x, work):\n" + line + "\n"])
    assert ("_nrt=False" not in settings_text) == allocates
