"""conv2d and pooling: references against naive loops, gradients (first and second order)
against finite differences over hypothesis-drawn shapes, element formulas, shape errors."""
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphnn as gn
from graphnn.ops.conv import avg_pool2d, conv2d, max_pool2d, same_padding

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def naive_conv(x, w, b, stride, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])))
    B, F, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    ho = (xp.shape[2] - kh) // stride + 1
    wo = (xp.shape[3] - kw) // stride + 1
    y = np.zeros((B, F, ho, wo))
    for bb in range(B):
        for f in range(F):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[bb, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[bb, f, i, j] = np.sum(patch * w[f]) + (b[f] if b is not None else 0.0)
    return y


conv_cases = st.fixed_dictionaries({
    "batch": st.integers(1, 2), "channels": st.integers(1, 2), "filters": st.integers(1, 3),
    "h": st.integers(3, 5), "w": st.integers(3, 5), "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "stride": st.integers(1, 2), "padding": st.sampled_from(["valid", "same", 1]),
    "bias": st.booleans(), "seed": st.integers(0, 2 ** 16)})


def build(case):
    rng = np.random.default_rng(case["seed"])
    x = gn.input("x", (None, case["channels"], case["h"], case["w"]))
    w = gn.parameter("w", rng.normal(size=(case["filters"], case["channels"], case["kh"], case["kw"])))
    b = gn.parameter("b", rng.normal(size=case["filters"])) if case["bias"] else None
    y = conv2d(x, w, b, stride=case["stride"], padding=case["padding"])
    xv = rng.normal(size=(case["batch"], case["channels"], case["h"], case["w"]))
    return x, w, b, y, xv


@SETTINGS
@given(case=conv_cases)
def test_conv2d_matches_naive_loops(case):
    x, w, b, y, xv = build(case)
    expected = naive_conv(xv, w.value, None if b is None else b.value, case["stride"], y.attrs["pad"])
    np.testing.assert_allclose(gn.evaluate(y, {"x": xv}), expected, rtol=1e-12, atol=1e-12)
    if case["padding"] == "same":
        assert y.shape[2:] == (-(-case["h"] // case["stride"]), -(-case["w"] // case["stride"]))


@SETTINGS
@given(case=conv_cases)
def test_conv2d_gradients(case):
    x, w, b, y, xv = build(case)
    gn.check_grad(y, [x, w] + ([b] if b is not None else []), {"x": xv})


@SETTINGS
@given(case=conv_cases)
def test_conv2d_second_order(case):
    """The gradient ops are differentiable too: check_grad through conv2d_grad_input/_filter."""
    x, w, b, y, xv = build(case)
    loss = gn.sum(y * y)
    wrt = [x, w] + ([b] if b is not None else [])
    grads = gn.grad(loss, wrt)
    assert {n.op.name for n in grads.record.gradient_nodes()} >= {"conv2d_grad_input", "conv2d_grad_filter"}
    for node in wrt:  # b's gradient is conv2d_grad_bias, whose own gradient is an expand
        # the gradient is linear in every input, so central differences are exact up to
        # rounding (~1e-16·|E|/eps): entries near zero need an absolute tolerance of that size
        gn.check_grad(grads[node], wrt, {"x": xv}, atol=1e-6)


pool_cases = st.fixed_dictionaries({
    "h": st.integers(2, 5), "w": st.integers(2, 5), "size": st.integers(1, 2), "stride": st.integers(1, 2),
    "seed": st.integers(0, 2 ** 16)})


@pytest.mark.parametrize("pool, reduce", [(max_pool2d, np.max), (avg_pool2d, np.mean)])
@SETTINGS
@given(case=pool_cases)
def test_pooling_reference_and_gradient(pool, reduce, case):
    rng = np.random.default_rng(case["seed"])
    x = gn.input("x", (None, 2, case["h"], case["w"]))
    y = pool(x, case["size"], case["stride"])
    xv = rng.permutation(2 * 2 * case["h"] * case["w"]).reshape(2, 2, case["h"], case["w"]) / 7.0  # no ties
    s, k = case["stride"], case["size"]
    value = gn.evaluate(y, {"x": xv})
    for i in range(value.shape[2]):
        for j in range(value.shape[3]):
            np.testing.assert_allclose(value[:, :, i, j], reduce(xv[:, :, i * s:i * s + k, j * s:j * s + k],
                                                                 axis=(2, 3)))
    gn.check_grad(y, [x], {"x": xv})
    grads = gn.grad(gn.sum(y * y), [x])
    gn.check_grad(grads[x], [x], {"x": xv})  # second order: through maxpool2d_grad / avgpool2d_grad


def test_maxpool_gradient_goes_to_one_maximum_per_window():
    x = gn.input("x", (None, 1, 2, 4))
    y = max_pool2d(x, 2)
    xv = np.array([[[[1.0, 1.0, 0.0, 3.0], [1.0, 1.0, 3.0, 2.0]]]])  # a 4-way tie and a 2-way tie
    dx = gn.evaluate(gn.grad(gn.sum(y), [x])[x], {"x": xv})
    np.testing.assert_array_equal(dx, [[[[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]])
    assert dx.sum() == 2.0  # one unit per window, never shared


def test_overlapping_max_windows_accumulate():
    x = gn.input("x", (None, 1, 1, 3))
    y = max_pool2d(x, (1, 2), stride=1)
    dx = gn.evaluate(gn.grad(gn.sum(y), [x])[x], {"x": np.array([[[[0.0, 5.0, 1.0]]]])})
    np.testing.assert_array_equal(dx, [[[[0.0, 2.0, 0.0]]]])


def test_element_formulas_match_reference():
    rng = np.random.default_rng(3)
    x = gn.input("x", (None, 2, 4, 4))
    w = gn.parameter("w", rng.normal(size=(2, 2, 3, 3)))
    b = gn.parameter("b", rng.normal(size=2))
    conv = conv2d(x, w, b, stride=2, padding="same")
    xv = rng.normal(size=(1, 2, 4, 4))
    for node in (conv, max_pool2d(conv, 2, stride=1), avg_pool2d(conv, 2, stride=1)):
        values = gn.evaluate([node] + list(node.inputs), {"x": xv})
        out, ins = values[0], values[1:]

        def sym(pos, idx):
            return sympy.Symbol(f"v{pos}_{'_'.join(map(str, idx))}")

        subs = {sym(p, idx): float(v[idx]) for p, v in enumerate(ins) for idx in np.ndindex(*v.shape)}
        for idx in np.ndindex(*out.shape):
            expr = node.op.element_expr(node, idx, sym, 1)
            assert float(expr.subs(subs)) == pytest.approx(out[idx], rel=1e-10, abs=1e-12)


def test_labels_read_like_the_course():
    x = gn.input("x", (None, 1, 8, 8))
    w = gn.parameter("K", np.zeros((8, 1, 3, 3)))
    assert conv2d(x, w).op.label(conv2d(x, w)) == "conv2d 3×3×8"
    c = conv2d(x, w, stride=2, padding="same")
    assert c.op.label(c) == "conv2d 3×3×8, stride 2, same"
    p = max_pool2d(c, 2)
    assert p.op.label(p) == "max-pool 2×2"


def test_same_padding_rule():
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(5, 2, 2) == (0, 1)
    assert same_padding(4, 1, 2) == (0, 0)


def test_shape_errors_name_the_problem():
    x = gn.input("x", (None, 3, 8, 8))
    with pytest.raises(gn.ShapeError, match="filters have 2 channels but the input has 3"):
        conv2d(x, gn.parameter("w", np.zeros((4, 2, 3, 3))))
    with pytest.raises(gn.ShapeError, match="bias must have shape"):
        conv2d(x, gn.parameter("w", np.zeros((4, 3, 3, 3))), gn.parameter("b", np.zeros(3)))
    with pytest.raises(gn.ShapeError, match="does not fit"):
        conv2d(x, gn.parameter("w", np.zeros((4, 3, 9, 9))))
    with pytest.raises(gn.ShapeError, match="input must be"):
        conv2d(gn.input("v", (None, 64)), gn.parameter("w", np.zeros((4, 3, 3, 3))))
    with pytest.raises(gn.ShapeError, match="padding must be"):
        conv2d(x, gn.parameter("w", np.zeros((4, 3, 3, 3))), padding="full")
    with pytest.raises(gn.ShapeError, match="stride"):
        max_pool2d(x, 2, stride=0)
    with pytest.raises(gn.ShapeError, match="does not fit"):
        max_pool2d(x, 9)


def test_w4_hand_numpy_baseline_equals_the_reference():
    """The benchmark's hand-written NumPy W4 step computes what graphnn's graph computes."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.w4_cnn import W4Baseline, init_params, w4_model
    from graphnn.training import Trainer

    params = init_params()
    model = w4_model(params)
    hand, ref = W4Baseline(params, dtype=np.float64), Trainer(model, lr=0.1)
    X, T = model.data.train["x"][:32], model.data.train["t"][:32]
    for _ in range(3):
        assert hand.step(X, T) == pytest.approx(ref.backend.train_step({"x": X, "t": T}), rel=1e-12)
    for name in "KcWb":
        np.testing.assert_allclose(hand.params[name], ref.params[model.find(name)], rtol=1e-10, atol=1e-14)


def test_scalar_derivation_of_a_small_conv_net():
    """The element formulas let the scalar view write the chain rule through conv, ReLU and max-pool."""
    from graphnn import losses
    from graphnn.derive import derive

    x = gn.input("x", (None, 1, 3, 3))
    K = gn.parameter("K", [[[[0.5, -0.2], [0.1, 0.3]]]])
    pooled = max_pool2d(gn.relu(conv2d(x, K, name="conv"), name="a"), 2, name="pool")
    E = losses.quadratic(gn.flatten(pooled, name="f"), gn.input("t", (None, 1)), name="E")
    feeds = {"x": np.arange(9.0).reshape(1, 1, 3, 3) / 10, "t": np.array([[0.2]])}
    expected = gn.evaluate(gn.grad(E, [K])[K], feeds)
    for idx in [(0, 0, 0, 0), (0, 0, 1, 1)]:
        d = derive(E, [(K, idx)], values=feeds, view="scalar")
        assert "4 paths" in d.to_text()          # one per position of the 2×2 output
        values = [v for s in d.steps for claim, v in getattr(s, "checks", []) if claim[0] == "gradient"]
        assert values and float(values[-1]) == pytest.approx(expected[idx], rel=1e-12)
