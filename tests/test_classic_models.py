"""The course's small nets do what the course says they do."""
import numpy as np
import pytest

import graphnn as gn
from graphnn.training import perceptron
from graphnn.models import get_model
from graphnn.training import Trainer


@pytest.mark.parametrize("name,gate", [("perceptron-and", np.logical_and), ("perceptron-or", np.logical_or)])
def test_course_weights_compute_the_truth_table(name, gate):
    m = get_model(name)
    X = m.data.train["x"]
    out = gn.evaluate(m.output, {"x": X})
    np.testing.assert_array_equal(out[:, 0], gate(X[:, 0], X[:, 1]).astype(float))


@pytest.mark.parametrize("name", ["perceptron-and", "perceptron-or"])
def test_perceptron_rule_learns_from_zero_weights(name):
    m = get_model(name)
    result = perceptron.train(m, lr=0.1, max_epochs=50)
    assert result.converged and result.errors[-1] == 0
    out = perceptron.predict(m, result.weights, m.data.train["x"])
    np.testing.assert_array_equal(out, m.data.train["t"])


def test_perceptron_rule_never_separates_xor():
    m = get_model("perceptron-and")
    X = m.data.train["x"]
    T = np.array([[0.0], [1.0], [1.0], [0.0]])
    result = perceptron.train(m, X, T, lr=0.1, max_epochs=500)
    assert not result.converged
    assert min(result.errors) >= 1   # every epoch misclassifies at least one pattern
    out = perceptron.predict(m, result.weights, X)
    assert np.any(out != T)


def test_xor_mlp_learns_the_truth_table():
    m = get_model("xor")
    trainer = Trainer(m)
    trainer.fit()
    pred = trainer.backend.predict(m.data.train)
    np.testing.assert_array_equal(pred[:, 0] > 0.5, m.data.train["t"][:, 0] > 0.5)
    assert trainer.history.last() < 0.01


def test_linear_regression_finds_w1_b1():
    m = get_model("linear-regression")
    trainer = Trainer(m)
    trainer.fit()
    assert trainer.params[m.find("w")][0, 0] == pytest.approx(1.0, abs=1e-6)
    assert trainer.params[m.find("b")][0] == pytest.approx(1.0, abs=1e-6)


def test_digits_mlp_learns_on_the_reference_backend():
    m = get_model("digits-mlp")
    trainer = Trainer(m, seed=0)
    trainer.fit(epochs=3)
    assert trainer.accuracy("test") > 0.9
    losses = trainer.history.losses
    assert losses[-1] < losses[0]


def test_embedded_digits():
    from graphnn.data import digits_dataset, load_digits

    images, labels = load_digits()
    assert images.shape == (1797, 64) and labels.shape == (1797,)
    assert images.min() == 0.0 and images.max() == 1.0 and set(labels) == set(range(10))
    a, b = digits_dataset(), digits_dataset()
    np.testing.assert_array_equal(a.test["x"], b.test["x"])        # fixed, seeded split
    assert len(a.train["x"]) + len(a.test["x"]) == 1797


def test_nonfinite_loss_stops_training_naming_the_node():
    m = get_model("linear-regression")
    trainer = Trainer(m, lr=10.0)     # far past stability: the weights blow up to inf
    with pytest.raises(gn.NonFiniteError, match="first to produce"):
        trainer.fit(steps=2000)


def test_optimizers_match_their_formulas():
    from graphnn.optim import Adam, Momentum

    w0, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    mom = Momentum(lr=0.1, mu=0.9)
    p = {"w": w0.copy()}
    state = mom.init_state(p)
    for step in (1, 2):
        mom.update(p, {"w": g}, state, step)
    v1 = -0.1 * g
    v2 = 0.9 * v1 - 0.1 * g
    np.testing.assert_allclose(p["w"], w0 + v1 + v2)
    adam = Adam(lr=0.01)
    p = {"w": w0.copy()}
    state = adam.init_state(p)
    adam.update(p, {"w": g}, state, 1)
    m_hat, v_hat = g, g ** 2    # bias-corrected first step
    np.testing.assert_allclose(p["w"], w0 - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8))
