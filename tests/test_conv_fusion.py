"""The CPU fusion of conv → ReLU → max-pool and its gradient (codegen/fuse_conv.py): applied
where it may be, left out where a map it drops is read elsewhere, and in both cases equal to
the NumPy reference (float64, 1e-10) — with many tied window maxima (the first one wins)."""
import re

import numpy as np
import pytest

pytest.importorskip("numba")

import codegen  # noqa: E402
from graphnn import losses  # noqa: E402
from graphnn.data import Dataset  # noqa: E402
from graphnn.model import Model  # noqa: E402
from graphnn.ops import flatten, input, linear, parameter, relu, tanh  # noqa: E402
from graphnn.ops.conv import conv2d, max_pool2d  # noqa: E402
from graphnn.optim import make_optimizer  # noqa: E402
from graphnn.training import make_backend  # noqa: E402

FUSED = "window maxima kept"


def block_model(extra_reader=False):
    """2-channel 7×7 images → conv 3×3×3 (+bias) → ReLU → 2×2 max-pool (the last row and column
    of the 5×5 maps fall outside every window) → dense → softmax CE. Small integer inputs and
    weights make equal values in a window common; a negative bias makes many zeros."""
    rng = np.random.default_rng(0)
    x, t = input("x", (None, 2, 7, 7)), input("t", (None, 3))
    conv = conv2d(x, parameter("K", rng.integers(-1, 2, (3, 2, 3, 3)).astype(float)),
                  parameter("c", np.array([-1.0, 0.0, 0.5])), name="conv")
    h = flatten(max_pool2d(relu(conv, name="a"), 2, name="pool"), name="features")
    if extra_reader:   # the conv map is also read by another branch: it must stay written
        h = h + flatten(tanh(conv), name="side")[:, :12]
    z = linear(h, parameter("W", rng.normal(0, 0.5, (12, 3))), parameter("b", np.zeros(3)), name="z")
    X = rng.integers(0, 3, (6, 2, 7, 7)).astype(float)
    T = np.eye(3)[rng.integers(0, 3, 6)]
    model = Model("conv-block", losses.softmax_cross_entropy(z, t), z, (x, t), Dataset({"x": X, "t": T}))
    return model, {"x": X, "t": T}


def _grad_step_source(model):
    opt = make_optimizer("sgd", lr=0.1)
    source = codegen.emit_module(codegen.lower(model, opt, "float64"), opt)
    return source.split("def grad_step(")[1].split("@njit")[0]


def test_fused_block_equals_reference():
    """(A whole fused epoch is test_conv_codegen's W4 test.)"""
    model, feeds = block_model()
    grad_step = _grad_step_source(model)
    assert FUSED in grad_step and "d_conv[" not in grad_step   # the ReLU gradient map is not written
    opt = make_optimizer("sgd", lr=0.1)
    ref, cpu = make_backend("numpy", model, opt), make_backend("cpu", model, opt)
    (loss_ref, g_ref), (loss_cpu, g_cpu) = ref.gradients(feeds), cpu.gradients(feeds)
    assert loss_cpu == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(g_cpu, g_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cpu.predict(feeds), ref.predict(feeds), rtol=1e-12, atol=1e-12)


def test_block_read_elsewhere_stays_unfused():
    """The conv map also feeds another branch: nothing is fused, the maps are written as before
    (that path is the unfused code every other conv test runs)."""
    grad_step = _grad_step_source(block_model(extra_reader=True)[0])
    assert FUSED not in grad_step
    # the ReLU gradient map d_conv is written, and the filter gradient's helper reads it
    assert re.search(r"\bconv_\w+\([^)]*\bd_conv\b", grad_step), grad_step


def test_ties_are_common_in_the_fused_test():
    """The test above means something: many windows hold their maximum more than once."""
    from graphnn.evaluate import evaluate

    model, feeds = block_model()
    a = evaluate(model.find("a"), feeds)[:, :, :4, :4].reshape(6, 3, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = a.reshape(-1, 4)
    tied = (windows == windows.max(axis=1, keepdims=True)).sum(axis=1) > 1
    assert tied.mean() > 0.2 and (windows.max(axis=1) > 0).mean() > 0.2
