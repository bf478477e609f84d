"""Recurrence in the IR: looped and unrolled views agree, in value and gradient."""
import numpy as np
import pytest

import graphnn as gn
from graphnn.errors import GradientError, ShapeError

RNG = np.random.default_rng(0)


def _scalar_rnn(mode, per_step=False, truncate=None, act=gn.tanh):
    x = gn.input("x", (None, 4))
    w, u, b = gn.parameter("w", 0.5), gn.parameter("u", 1.0), gn.parameter("b", 0.1)

    def step(s, xt, t):
        s_new = act(w * s + u * xt + b, name=f"s_{t}", names=f"s_{t}")
        return s_new, (s_new if per_step else None)

    sc = gn.scan(step, 0.0, x, mode=mode, truncate=truncate)
    loss = gn.sum(sc.ys ** 2) if per_step else gn.sum((sc.carry - 1.0) ** 2 / 2)
    return sc, loss, (w, u, b)


FEEDS = {"x": np.array([[1.0, -1.0, 0.5, 2.0], [0.3, 0.2, -1.0, 1.0]])}


@pytest.mark.parametrize("per_step", [False, True])
def test_looped_equals_unrolled_equals_finite_differences(per_step):
    results = []
    for mode in ("looped", "unrolled"):
        sc, loss, params = _scalar_rnn(mode, per_step)
        grads = gn.grad(loss, list(params))
        results.append(gn.evaluate([loss] + [grads[p] for p in params], FEEDS))
        gn.check_grad(loss, list(params) + [sc.xs[0]], FEEDS)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)
    looped, _, _ = _scalar_rnn("looped", per_step)
    assert looped.node.op.name == "loop"


def test_vector_cell_with_tuple_carry_and_row_initial_state():
    xs = gn.input("xs", (None, 5, 3))
    W = gn.parameter("W", shape=(4, 4))
    U = gn.parameter("U", shape=(3, 4))
    b = gn.parameter("b", shape=(4,), init="normal")
    h0 = gn.parameter("h0", np.full((1, 4), 0.1))

    def step(carry, xt):
        h, m = carry
        h2 = gn.tanh(gn.linear(h, W, b) + xt @ U)
        return (h2, m * gn.sigmoid(h2) + h2), h2

    feeds = {"xs": RNG.normal(size=(3, 5, 3))}
    values = []
    for mode in ("looped", "unrolled"):
        sc = gn.scan(step, (h0, gn.constant(np.zeros(4))), xs, mode=mode)
        h, m = sc.carry
        assert sc.ys.shape == (None, 5, 4) and h.shape == (None, 4)
        loss = gn.sum(m * m) + gn.sum(sc.ys)
        gn.check_grad(loss, [W, U, b, h0, xs], feeds)
        values.append(gn.evaluate(loss, feeds))
    assert values[0] == pytest.approx(values[1], rel=1e-12)


def test_truncated_bptt_differs_and_full_truncation_is_exact():
    full = None
    got = {}
    for k in (1, 2, 4, None):
        _, loss, (w, _, _) = _scalar_rnn("looped", truncate=k)
        got[k] = float(gn.evaluate(gn.grad(loss, [w])[w], FEEDS))
    full = got[None]
    assert got[4] == pytest.approx(full, rel=1e-12)
    assert abs(got[1] - full) > 1e-6


def test_structural_hash_covers_the_cell():
    h = {}
    for act in (gn.tanh, gn.sigmoid):
        _, loss, _ = _scalar_rnn("looped", act=act)
        h[act] = gn.Graph([loss]).structural_hash()
    assert h[gn.tanh] != h[gn.sigmoid]
    _, again, _ = _scalar_rnn("looped")
    assert gn.Graph([again]).structural_hash() == h[gn.tanh]


def test_bad_recurrences_are_clear_errors():
    x = gn.input("x", (None, 4))
    with pytest.raises(ShapeError, match="carry"):
        gn.scan(lambda s, xt: (gn.concat([gn.reshape(s, (None, 1))] * 2, axis=1), None), 0.0, x)
    with pytest.raises(ShapeError, match=r"\(batch, T"):
        gn.scan(lambda s, xt: (s, None), 0.0, gn.input("flat", (4,)))
    with pytest.raises(ValueError, match="truncate"):
        gn.scan(lambda s, xt: (s + xt, None), 0.0, x, mode="unrolled", truncate=2)
    sc, loss, (w, _, _) = _scalar_rnn("looped")
    g = gn.grad(loss, [w])[w]
    with pytest.raises(GradientError, match="second derivatives"):
        gn.grad(gn.sum(g), [w])


def test_scan_without_inputs_runs_length_steps():
    s0 = gn.input("s0", (None, 2))
    w = gn.parameter("w", np.array([0.5, -0.3]))
    feeds = {"s0": np.array([[1.0, 2.0], [0.5, -1.0]])}
    got = []
    for mode in ("looped", "unrolled"):
        rec = gn.scan(lambda s, _: (gn.tanh(s * w + 1.0), None), s0, length=3, mode=mode)
        loss = gn.sum(rec.carry)
        gn.check_grad(loss, [w, s0], feeds)
        got.append(gn.evaluate(rec.carry, feeds))
    ref = feeds["s0"]
    for _ in range(3):
        ref = np.tanh(ref * np.array([0.5, -0.3]) + 1.0)
    np.testing.assert_allclose(got[0], ref, rtol=1e-12)
    np.testing.assert_allclose(got[1], ref, rtol=1e-12)
    with pytest.raises(ValueError, match="length"):
        gn.scan(lambda s, _: (s, None), s0)
