"""The compiled CPU backend's arrays start on a cache-line boundary (codegen/backend.py).

NumPy aligns its allocations to 16 bytes only, so a vectorised loop's loads and stores could
straddle two cache lines, by chance, differently in each process (W1 float64 varied 1.69–1.87
ms an epoch between processes; 1.57–1.64 aligned). Checked for every built-in model trained by
gradients (constructing the backend lowers and prints; nothing compiles) and for a user's graph.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphnn as gn
from codegen import CpuBackend
from codegen.backend import CACHE_LINE, aligned_copy, aligned_zeros
from graphnn.models import available, get_model
from graphnn.optim import make_optimizer

pytestmark = pytest.mark.usefixtures("private_cache_dir")

TRAINED = [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")]


def _aligned(a):
    return a.size == 0 or a.ctypes.data % CACHE_LINE == 0   # an empty array has no data to align


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 9), max_size=4).map(tuple),
       dtype=st.sampled_from([np.float64, np.float32, np.int32, np.uint8]))
def test_aligned_zeros_is_zeros_on_a_cache_line(shape, dtype):
    a = aligned_zeros(shape, dtype)
    assert a.shape == shape and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable
    assert _aligned(a) and not a.any()
    a[...] = 1   # its own memory: writing it changes nothing else
    assert a.sum() == a.size


def test_aligned_copy_keeps_the_values():
    value = np.arange(12.0).reshape(3, 4)[:, ::2]   # not contiguous
    out = aligned_copy(value, np.float32)
    assert _aligned(out) and out.flags.c_contiguous and out.dtype == np.float32
    np.testing.assert_array_equal(out, value)
    scalar = aligned_copy(2.5, np.float64)
    assert scalar.shape == () and scalar == 2.5


def _buffers(backend, batch):
    yield "flat_params", backend.flat_params
    yield "flat_grad", backend.flat_grad
    for s, a in backend.flat_state.items():
        yield f"state {s}", a
    for name, a in backend._temps(batch).items():
        yield f"temporary {name}", a
    for name, a in backend._consts.items():
        yield f"constant {name}", a
    for p, a in backend.params.items():
        if p not in backend.trainable:   # a trainable one is a view into flat_params
            yield f"fixed parameter {p.name}", a


def _check(backend):
    for batch in (1, 7, 32):
        bad = [name for name, a in _buffers(backend, batch) if not _aligned(a)]
        assert not bad, f"{backend.model.name}, batch {batch}: not on a {CACHE_LINE}-byte boundary: {bad}"


@pytest.mark.parametrize("name", TRAINED)
def test_every_array_a_compiled_backend_allocates_starts_on_a_cache_line(name):
    model = get_model(name)
    _check(CpuBackend(model, make_optimizer("adam", lr=0.01), "float32"))


def test_a_users_graph_with_a_fixed_parameter_and_a_constant():
    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 1))
    w = gn.parameter("w", np.ones((3, 1)))
    scale = gn.parameter("scale", np.full((1,), 2.0), trainable=False)
    y = gn.linear(x, w, gn.parameter("b", np.zeros(1))) * scale + gn.constant(np.array([0.5]))
    model = gn.Model("user", gn.losses.mse(y, t), y, (x, t))
    backend = CpuBackend(model, make_optimizer("momentum", lr=0.1), "float64")
    _check(backend)
    feeds = {"x": np.ones((5, 3)), "t": np.zeros((5, 1))}
    assert np.isfinite(backend.train_step(feeds))


def test_training_data_it_converts_is_aligned_and_data_it_reads_in_place_is_not_copied():
    model = get_model("digits-mlp")
    train = model.data.train
    as32 = CpuBackend(model, make_optimizer("sgd", lr=0.1), "float32")._data_arrays(train)
    assert all(_aligned(a) and a.dtype == np.float32 for a in as32.values())
    as64 = CpuBackend(model, make_optimizer("sgd", lr=0.1), "float64")._data_arrays(train)
    assert all(np.may_share_memory(as64[name], train[name]) for name in ("x", "t") if name in as64)
