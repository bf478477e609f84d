"""Dropout and corruption: inverted scaling, off in evaluation, seeded and reproducible, a new
mask per step, the gradient uses the same mask, and the counter hash is bit-identical in Numba."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphnn as gn
from graphnn.ops.dropout import STEP, TRAINING, dropout, gaussian_noise, masking_noise, uniform
from graphnn.training import TrainingFeeds, training_feeds

ON = {"training": 1.0, "step": 3}


def test_evaluation_mode_is_the_identity_by_default():
    x = gn.input("x", (None, 10))
    xv = np.random.default_rng(0).normal(size=(4, 10))
    for node in (dropout(x, 0.5, seed=1), masking_noise(x, 0.5, seed=1), gaussian_noise(x, 1.0, seed=1)):
        np.testing.assert_array_equal(gn.evaluate(node, {"x": xv}), xv)  # training not fed: 0


def test_inverted_scaling_and_rate():
    x = gn.input("x", (None, 200))
    y = dropout(x, 0.3, seed=5)
    v = gn.evaluate(y, {"x": np.ones((50, 200)), **ON})
    assert set(np.unique(v)) == {0.0, 1 / 0.7}
    assert abs((v == 0).mean() - 0.3) < 0.02
    assert abs(v.mean() - 1.0) < 0.03  # expectation preserved: no rescaling needed at test time
    m = gn.evaluate(masking_noise(x, 0.3, seed=5), {"x": np.ones((50, 200)), **ON})
    np.testing.assert_array_equal(m, (v != 0).astype(float))  # same seed and step: same mask, unscaled


def test_reproducible_per_seed_and_step_and_fresh_otherwise():
    x = gn.input("x", (None, 100))
    xv = np.ones((8, 100))
    a = gn.evaluate(dropout(x, 0.5, seed=1), {"x": xv, **ON})
    again = gn.evaluate(dropout(x, 0.5, seed=1), {"x": xv, **ON})
    np.testing.assert_array_equal(a, again)
    other_step = gn.evaluate(dropout(x, 0.5, seed=1), {"x": xv, "training": 1, "step": 4})
    other_seed = gn.evaluate(dropout(x, 0.5, seed=2), {"x": xv, **ON})
    assert 0.3 < (a == other_step).mean() < 0.7 and 0.3 < (a == other_seed).mean() < 0.7
    # layers named differently get different default seeds
    assert dropout(x, name="d1").attrs["seed"] != dropout(x, name="d2").attrs["seed"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(1, 3), cols=st.integers(1, 5), rate=st.floats(0.0, 0.9), step=st.integers(0, 1000),
       seed=st.integers(0, 2 ** 16))
def test_gradient_uses_the_same_mask(rows, cols, rate, step, seed):
    rng = np.random.default_rng(seed)
    x = gn.input("x", (None, cols))
    w = gn.parameter("w", rng.normal(size=(cols, 3)))
    y = dropout(gn.tanh(x @ w), rate, seed=seed)
    feeds = {"x": rng.normal(size=(rows, cols)), "training": 1.0, "step": step}
    gn.check_grad(y, [x, w], feeds)
    z = gaussian_noise(x @ w, 0.7, seed=seed)
    gn.check_grad(z, [x, w], feeds)


def test_gaussian_noise_statistics():
    x = gn.input("x", (None, 100))
    v = gn.evaluate(gaussian_noise(x, 0.5, seed=3), {"x": np.zeros((100, 100)), **ON})
    assert abs(v.mean()) < 0.02 and abs(v.std() - 0.5) < 0.02


def test_counter_hash_is_bit_identical_in_numba():
    numba = pytest.importorskip("numba")
    from graphnn.ops.dropout import GOLDEN as golden, MIX1 as m1, MIX2 as m2

    @numba.njit
    def mix(z):
        z = (z ^ (z >> np.uint64(30))) * m1
        z = (z ^ (z >> np.uint64(27))) * m2
        return z ^ (z >> np.uint64(31))

    @numba.njit
    def uniforms(seed, step, n):
        key = mix(np.uint64(seed) * golden + np.uint64(step))
        out = np.empty(n)
        for i in range(n):
            out[i] = float(mix(key + (np.uint64(i) + np.uint64(1)) * golden) >> np.uint64(11)) * 2.0 ** -53
        return out

    for seed, step in [(0, 0), (7, 5), (2 ** 31, 123456)]:
        np.testing.assert_array_equal(uniforms(seed, step, 999), uniform(seed, step, (999,)))


def test_training_feeds_wrapper_feeds_mode_and_counts_steps():
    seen = []

    class Recorder:
        params = {}

        def train_step(self, feeds):
            seen.append((feeds["training"], feeds["step"]))
            return 0.0

    wrapped = TrainingFeeds(Recorder())
    wrapped.train_epoch({"x": np.zeros((5, 1))}, [np.arange(2), np.arange(2, 5)])
    assert seen == [(1.0, 1.0), (1.0, 2.0)]
    assert training_feeds(7) == {"training": 1.0, "step": 7.0}
    assert TRAINING.name == "training" and STEP.name == "step"


def test_bad_arguments():
    x = gn.input("x", (None, 3))
    with pytest.raises(ValueError, match="rate"):
        dropout(x, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise(x, -1.0)
    with pytest.raises(gn.ShapeError, match="scalar"):
        dropout(x, 0.5, training=gn.input("flag", (None,)))
    with pytest.raises(ValueError, match="non-negative integer"):
        gn.evaluate(dropout(x, 0.5), {"x": np.ones((1, 3)), "training": 1, "step": 1.5})


def dropout_mlp():
    import graphnn as gn
    from graphnn.data import Dataset
    from graphnn.model import Model

    rng = np.random.default_rng(3)
    x, t = gn.input("x", (None, 6)), gn.input("t", (None, 3))
    W1, W2 = gn.parameter("W1", rng.normal(size=(6, 8)) * 0.5), gn.parameter("W2", rng.normal(size=(8, 3)) * 0.5)
    h = gn.dropout(gn.relu(x @ W1, name="h"), 0.5, name="h_drop")
    z = gn.matmul(h, W2, name="z")
    data = Dataset({"x": rng.normal(size=(16, 6)), "t": np.eye(3)[rng.integers(0, 3, 16)]})
    return Model("dropout-mlp", gn.losses.softmax_cross_entropy(z, t), z, (x, t), data,
                 defaults={"lr": 0.1, "batch_size": 4}), W1


def test_plain_trainer_trains_with_dropout_on_and_predicts_with_it_off():
    from graphnn.training import Trainer

    model, W1 = dropout_mlp()
    trainer = Trainer(model)                           # no helper call: the Trainer knows
    eval_loss = trainer.loss("train")                  # evaluation mode: dropout off
    step_loss = trainer.backend.train_step(model.data.train)
    assert step_loss != pytest.approx(eval_loss)       # the step ran with a mask
    p1, p2 = trainer.backend.predict(model.data.train), trainer.backend.predict(model.data.train)
    np.testing.assert_array_equal(p1, p2)              # prediction is deterministic


def test_compiled_dropout_training_equals_the_reference():
    from graphnn.training import Trainer

    model, W1 = dropout_mlp()
    ref, cpu = Trainer(model, backend="numpy"), Trainer(model, backend="cpu")
    ref.fit(epochs=2, progress=False)
    cpu.fit(epochs=2, progress=False)
    np.testing.assert_allclose(cpu.params[W1], ref.params[W1], rtol=1e-10, atol=1e-12)
