"""BPTT terms: Σ terms = looped gradient = unrolled gradient = finite differences;
truncation = the truncated sum; the partials match their formulas."""
import numpy as np
import pytest

import graphnn as gn
from graphnn.evaluate import Evaluator
from graphnn.models import get_model


def _fd(loss, param, feeds, eps=1e-6):
    """Central differences of the loss in one scalar parameter (float64)."""
    f = Evaluator(loss)
    base = float(param.value)
    return (float(f(feeds, {param: base + eps})) - float(f(feeds, {param: base - eps}))) / (2 * eps)


@pytest.mark.parametrize("name", ["w", "u", "b"])
def test_terms_sum_to_looped_and_unrolled_gradient_and_finite_differences(name):
    got = {}
    for mode in ("looped", "unrolled"):
        m = get_model("rnn-scalar", mode=mode)
        p = m.find(name)
        terms = gn.bptt_terms(m.loss, p, m.example)
        assert terms.view == mode and terms.steps == 4 and len(terms.terms) == 4
        autodiff = float(gn.evaluate(gn.grad(m.loss, [p])[p], m.example))
        assert terms.element(terms.total) == pytest.approx(autodiff, rel=1e-10, abs=1e-15)
        assert autodiff == pytest.approx(_fd(m.loss, p, m.example), rel=1e-6, abs=1e-10)
        got[mode] = [terms.element(t.value) for t in terms.terms]
        assert [t.kind for t in terms.terms] == ["implicit"] * 3 + ["explicit"]
    np.testing.assert_allclose(got["looped"], got["unrolled"], rtol=1e-10, atol=1e-15)


def test_partials_match_their_formulas_and_terms_are_path_products():
    m = get_model("rnn-scalar")
    terms = gn.bptt_terms(m.loss, m.find("w"), m.example)
    s = [float(v[0, 0]) for v in terms.states]
    w = 0.5
    # the forward pass, by hand: s_t = tanh(w s_{t-1} + u x_t + b)
    x = m.example["x"][0]
    ref = [0.0]
    for xt in x:
        ref.append(np.tanh(w * ref[-1] + xt + 0.1))
    np.testing.assert_allclose(s, ref, rtol=1e-12)
    dE_dsT = s[-1] - 1.0
    for t in terms.terms:
        k = t.k
        assert t.immediate[0, 0] == pytest.approx((1 - s[k] ** 2) * s[k - 1], abs=1e-14)
        assert t.step_jacobian[0, 0, 0] == pytest.approx((1 - s[k] ** 2) * w, rel=1e-12)
        product = np.prod([(1 - s[j] ** 2) * w for j in range(k + 1, 5)])
        assert t.jacobian[0, 0, 0] == pytest.approx(product, rel=1e-12)
        assert terms.element(t.value) == pytest.approx(dE_dsT * product * t.immediate[0, 0], rel=1e-10, abs=1e-16)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_truncated_bptt_is_the_truncated_sum(k):
    looped = get_model("rnn-scalar", mode="looped")
    terms = gn.bptt_terms(looped.loss, looped.find("w"), looped.example)
    manual = sum(terms.element(t.value) for t in terms.terms[-k:])
    assert terms.element(terms.truncated(k)) == pytest.approx(manual, rel=1e-12, abs=1e-16)
    # the looped node's reverse loop, truncated to k steps, gives the same number
    x, t = looped.inputs
    w, u, b = (looped.find(n) for n in "wub")

    def step(s, x_t):
        return gn.tanh(w * s + u * x_t + b), None

    rec = gn.scan(step, 0.0, x, truncate=k)
    loss = gn.losses.quadratic(rec.carry, t)
    got = float(gn.evaluate(gn.grad(loss, [w])[w], looped.example))
    assert got == pytest.approx(manual, rel=1e-10, abs=1e-16)


def test_per_step_loss_terms_and_truncation():
    x = gn.input("x", (None, 5))
    w, u, b = gn.parameter("w", 0.7), gn.parameter("u", 0.9), gn.parameter("b", -0.2)

    def step(s, x_t):
        s = gn.tanh(w * s + u * x_t + b)
        return s, s

    feeds = {"x": np.array([[0.5, -1.0, 2.0, 0.3, -0.7], [1.0, 0.2, -0.4, 0.8, 0.1]])}
    for k in (None, 1, 2, 5):
        rec = gn.scan(step, 0.0, x, truncate=k)
        loss = gn.sum((rec.ys - 0.5) ** 2)      # Σ_t d_t: a loss at every step
        terms = gn.bptt_terms(loss, w, feeds)
        got = float(gn.evaluate(gn.grad(loss, [w])[w], feeds))
        want = terms.element(terms.total if k is None else terms.truncated(k))
        assert got == pytest.approx(want, rel=1e-10)
    unrolled = gn.scan(step, 0.0, x, mode="unrolled")
    loss = gn.sum((unrolled.ys - 0.5) ** 2)
    terms_u = gn.bptt_terms(loss, w, feeds)
    assert terms_u.element(terms_u.total) == pytest.approx(terms.element(terms.total), rel=1e-10)
    assert terms.element(terms.total) == pytest.approx(_fd(loss, w, feeds), rel=1e-6)


def test_vector_state_terms_sum_to_the_gradient():
    m = get_model("rnn", steps=4, hidden=5)
    W = m.find("W")
    terms = gn.bptt_terms(m.loss, W, m.example, index=(1, 2))
    grad = gn.evaluate(gn.grad(m.loss, [W])[W], m.example)
    np.testing.assert_allclose(terms.total, grad, rtol=1e-9, atol=1e-14)
    assert terms.terms[0].jacobian.shape == (1, 5, 5)


def test_bptt_terms_errors_name_the_problem():
    m = get_model("rnn")
    with pytest.raises(gn.GradientError, match="not used by the recurrence"):
        gn.bptt_terms(m.loss, m.find("V"), m.example)
    mazur = get_model("mazur")
    with pytest.raises(gn.GradientError, match="exactly one recurrence"):
        gn.bptt_terms(mazur.loss, mazur.find("W1"), mazur.example)


def test_hand_written_bptt_of_the_w3_benchmark_matches_autodiff():
    from benchmarks.w3_rnn import W3Baseline

    m = get_model("rnn", steps=6, hidden=5)
    feeds = {k: v[:9] for k, v in m.data.train.items()}
    hand = W3Baseline({p.name: p.value for p in m.parameters}, dtype=np.float64)
    loss, g = hand.gradients(feeds["x"], feeds["t"])
    grads = gn.grad(m.loss, m.params)
    values = gn.evaluate([m.loss] + [grads[p] for p in m.params], feeds)
    assert loss == pytest.approx(float(values[0]), rel=1e-12)
    for p, v in zip(m.params, values[1:]):
        np.testing.assert_allclose(g[p.name], v, rtol=1e-10, atol=1e-14)


def test_hand_written_lstm_bptt_of_the_w5_benchmark_matches_autodiff():
    from benchmarks.w5_lstm import GATES, W5Baseline

    m = get_model("lstm", steps=5, hidden=3)
    feeds = {k: v[:7] for k, v in m.data.train.items()}
    hand = W5Baseline({p.name: p.value for p in m.parameters}, dtype=np.float64)
    loss, packed = hand.gradients(feeds["x"], feeds["t"])
    H = 3
    g = {"V": packed["V"], "c": packed["c"]}
    for n, k in enumerate(GATES):
        for w in ("W", "U", "b"):
            g[f"{w}_{k}"] = packed[w][..., n * H:(n + 1) * H]
    grads = gn.grad(m.loss, m.params)
    values = gn.evaluate([m.loss] + [grads[p] for p in m.params], feeds)
    assert loss == pytest.approx(float(values[0]), rel=1e-12)
    for p, v in zip(m.params, values[1:]):
        np.testing.assert_allclose(g[p.name], v, rtol=1e-9, atol=1e-13, err_msg=p.name)


def test_per_step_softmax_loss_the_courses_sum_of_minus_log_y():
    """Σ_t d_t with d_t = −log y_t,c, y_t = softmax(s_t V + c) computed inside the cell."""
    rng = np.random.default_rng(4)
    x = gn.input("x", (None, 5, 3))
    t = gn.input("t", (None, 5, 2))
    W = gn.parameter("W", rng.normal(0, 0.5, (4, 4)))
    U = gn.parameter("U", rng.normal(0, 0.5, (3, 4)))
    V = gn.parameter("V", rng.normal(0, 0.5, (4, 2)))
    c = gn.parameter("c", np.zeros(2))

    def step(s, x_t):
        s = gn.tanh(s @ W + x_t @ U)
        return s, gn.linear(s, V, c)          # z_t; y_t = softmax(z_t)

    feeds = {"x": rng.normal(size=(3, 5, 3)), "t": np.eye(2)[rng.integers(0, 2, (3, 5))]}
    values = {}
    for mode in ("looped", "unrolled"):
        rec = gn.scan(step, np.zeros((1, 4)), x, mode=mode)
        loss = gn.sum(gn.softmax_cross_entropy(rec.ys, t))     # Σ_b Σ_t −log y_t,c
        gn.check_grad(loss, [W, U, V, c], feeds)
        terms = gn.bptt_terms(loss, W, feeds, index=(0, 1))
        values[mode] = gn.evaluate(gn.grad(loss, [W, V])[W], feeds)
        np.testing.assert_allclose(terms.total, values[mode], rtol=1e-10, atol=1e-14)
        v_terms = gn.bptt_terms(loss, V, feeds, index=(1, 0))
        assert v_terms.output_terms       # V reaches the loss through y_t directly, every step
        np.testing.assert_allclose(v_terms.total, gn.evaluate(gn.grad(loss, [V])[V], feeds), rtol=1e-10)
    np.testing.assert_allclose(values["looped"], values["unrolled"], rtol=1e-12)
