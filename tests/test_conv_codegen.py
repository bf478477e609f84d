"""The Numba lowerings of conv2d, pooling, dropout and noise (codegen/lower_conv.py) against
the NumPy reference: losses, outputs and every gradient, in training and evaluation mode."""
import numpy as np
import pytest

pytest.importorskip("numba")

import codegen  # noqa: E402,F401  (registers the 'cpu' backend)
from graphnn import losses  # noqa: E402
from graphnn.data import Dataset  # noqa: E402
from graphnn.model import Model  # noqa: E402
from graphnn.ops import flatten, input, linear, parameter, relu, tanh  # noqa: E402
from graphnn.ops.conv import avg_pool2d, conv2d, max_pool2d  # noqa: E402
from graphnn.ops.dropout import dropout, gaussian_noise, masking_noise  # noqa: E402
from graphnn.optim import make_optimizer  # noqa: E402
from graphnn.training import make_backend  # noqa: E402


def every_op_model():
    """conv (same, bias) → ReLU → overlapping max-pool → conv (stride 2, padded, no bias) → tanh →
    avg-pool → flatten → masking noise → dropout → dense → softmax CE."""
    rng = np.random.default_rng(0)
    x = input("x", (None, 2, 6, 6))
    t = input("t", (None, 3))
    h = relu(conv2d(x, parameter("K1", rng.normal(0, 0.5, (3, 2, 3, 3))), parameter("c1", rng.normal(0, 0.1, 3)),
                    padding="same", name="conv1"), name="a1")
    h = max_pool2d(h, 2, stride=1, name="pool1")                              # 5×5, windows overlap
    h = tanh(conv2d(h, parameter("K2", rng.normal(0, 0.5, (4, 3, 2, 2))), stride=2, padding=1, name="conv2"),
             name="a2")
    h = avg_pool2d(h, 2, name="pool2")                                        # (4, 1, 1)
    f = dropout(masking_noise(flatten(h, name="features"), 0.2, seed=3, name="noisy"), 0.3, seed=4, name="drop")
    z = linear(f, parameter("W", rng.normal(0, 0.5, (4, 3))), parameter("b", np.zeros(3)), name="z")
    loss = losses.softmax_cross_entropy(z, t, name="CE")
    X = rng.normal(size=(5, 2, 6, 6))
    T = np.eye(3)[rng.integers(0, 3, 5)]
    return Model("every-op", loss, z, (x, t), Dataset({"x": X, "t": T}), defaults={"lr": 0.1}), {"x": X, "t": T}


def gaussian_model():
    rng = np.random.default_rng(1)
    x = input("x", (None, 7))
    W = parameter("W", rng.normal(0, 0.5, (7, 3)))
    y = gaussian_noise(x, 0.5, seed=9, name="x̃") @ W
    loss = losses.mse(y, input("t", (None, 3)))
    X, T = rng.normal(size=(4, 7)), rng.normal(size=(4, 3))
    return Model("noise", loss, y, (x,), Dataset({"x": X, "t": T})), {"x": X, "t": T}


@pytest.mark.parametrize("build", [every_op_model, gaussian_model])
@pytest.mark.parametrize("mode", [{}, {"training": 1.0, "step": 17}])
def test_compiled_equals_reference(build, mode):
    model, feeds = build()
    feeds = {**feeds, **mode}
    opt = make_optimizer("sgd", lr=0.1)
    ref = make_backend("numpy", model, opt)
    cpu = make_backend("cpu", model, opt)
    loss_ref, g_ref = ref.gradients(feeds)
    loss_cpu, g_cpu = cpu.gradients(feeds)
    assert loss_cpu == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(g_cpu, g_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cpu.predict(feeds), ref.predict(feeds), rtol=1e-12, atol=1e-12)
    # one training step each: same parameters after the update
    ref.train_step(feeds)
    cpu.train_step(feeds)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-10, atol=1e-12)


def test_compiled_dropout_mask_is_bit_identical():
    model, feeds = every_op_model()
    opt = make_optimizer("sgd", lr=0.1)
    cpu = make_backend("cpu", model, opt)
    ref = make_backend("numpy", model, opt)
    drop = model.find("drop")
    from graphnn.evaluate import evaluate
    for step in (1, 2, 1000):
        mode = {**feeds, "training": 1.0, "step": step}
        _, g_cpu = cpu.gradients(mode)
        _, g_ref = ref.gradients(mode)
        zero_ref = g_ref[-7:-3] == 0   # d_W rows of dropped features are exactly zero in both
        np.testing.assert_array_equal(g_cpu[-7:-3] == 0, zero_ref)
    mask = evaluate(drop, {**feeds, "training": 1.0, "step": 5})
    assert np.any(mask == 0) and np.any(mask != 0)


def test_w4_epoch_compiled_equals_reference():
    """A whole compiled epoch (train_epoch gathers 4-d image batches) against the reference."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.w4_cnn import w4_model

    model = w4_model()
    opt = make_optimizer("sgd", lr=0.1)
    ref, cpu = make_backend("numpy", model, opt), make_backend("cpu", model, opt)
    n = 200
    feeds = {k: v[:n] for k, v in model.data.train.items()}
    order = np.random.default_rng(0).permutation(n)
    batches = [order[i:i + 32] for i in range(0, n, 32)]
    assert cpu.train_epoch(feeds, batches) == pytest.approx(ref.train_epoch(feeds, batches), rel=1e-10)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-9, atol=1e-12)


def test_large_filter_loop_form(monkeypatch):
    """Filters too large to write out tap by tap use bounds-checked tap loops: same results."""
    from codegen import emit_conv

    monkeypatch.setattr(emit_conv, "UNROLL", 0)
    model, feeds = every_op_model()
    feeds = {**feeds, "training": 1.0, "step": 5}
    opt = make_optimizer("sgd", lr=0.1)
    loss_ref, g_ref = make_backend("numpy", model, opt).gradients(feeds)
    cpu = make_backend("cpu", model, opt)
    assert "for _mm in range(max(0," in cpu.source  # the padded conv's bounds live in the ranges
    loss_cpu, g_cpu = cpu.gradients(feeds)
    assert loss_cpu == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(g_cpu, g_ref, rtol=1e-10, atol=1e-12)
