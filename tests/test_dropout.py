"""Dropout and corruption: inverted scaling, off in evaluation, seeded and reproducible, a new
mask per step, the gradient uses the same mask, and the counter hash is bit-identical in Numba."""
import re

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


# -- data-parallel shards: a shard's masks are its rows' masks in the whole batch --------------

NOISES = {"dropout": lambda v: dropout(v, 0.4, name="d"), "masking": lambda v: masking_noise(v, 0.3, name="m"),
          "gaussian": lambda v: gaussian_noise(v, 0.5, name="g")}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(NOISES)), rows=st.integers(1, 7), inner=st.lists(st.integers(1, 3), max_size=2),
       step=st.integers(0, 50), data=st.data())
def test_a_shard_fed_its_first_row_gets_the_whole_batchs_numbers(kind, rows, inner, step, data):
    """Rows lo … hi − 1 fed alone with first_row = lo equal those rows of the whole batch
    (before: every shard got the numbers of rows 0 …, so data-parallel ranks shared masks)."""
    lo = data.draw(st.integers(0, rows - 1))
    hi = data.draw(st.integers(lo + 1, rows))
    x = gn.input("x", (None, *inner))
    y = NOISES[kind](x)
    xv = np.random.default_rng(step).normal(size=(rows, *inner))
    whole = gn.evaluate(y, {"x": xv, **ON, "step": step})
    part = gn.evaluate(y, {"x": xv[lo:hi], **ON, "step": step, "first_row": float(lo)})
    np.testing.assert_array_equal(part, whole[lo:hi])


@pytest.mark.parametrize("kind", sorted(NOISES))
def test_a_shard_without_its_first_row_gets_other_numbers(kind):
    """What the property above rules out (the old behaviour: a shard hashed as rows 0 …)."""
    y = NOISES[kind](gn.input("x", (None, 16)))
    xv = np.random.default_rng(0).normal(size=(8, 16))
    whole = gn.evaluate(y, {"x": xv, **ON})
    assert not np.array_equal(gn.evaluate(y, {"x": xv[4:], **ON}), whole[4:])


def test_first_row_on_a_tensor_whose_batch_axis_is_not_first_is_one_clear_error():
    x = gn.input("x", (None, 3))
    y = dropout(gn.transpose(x), 0.5, name="late")
    assert gn.evaluate(y, {"x": np.ones((4, 3)), **ON}).shape == (3, 4)   # unsharded: fine
    with pytest.raises(ValueError, match="'late'.*batch axis is not the first"):
        gn.evaluate(y, {"x": np.ones((4, 3)), **ON, "first_row": 2.0})
    w = gn.parameter("w", np.ones((2, 2)))   # no batch axis: the same numbers on every shard
    np.testing.assert_array_equal(gn.evaluate(dropout(w, 0.5, name="dc"), {**ON, "first_row": 3.0}),
                                  gn.evaluate(dropout(w, 0.5, name="dc"), ON))


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_compiled_shards_get_the_whole_batchs_masks(backend):
    """The generated code (and the CUDA printer, under the simulator) offsets the hash's index
    by first_row like the reference."""
    from graphnn.optim import make_optimizer
    from graphnn.training import NumpyBackend

    if backend == "cuda":
        from codegen.cuda.device import enable_simulator

        enable_simulator()   # (what CI runs; test_cuda_backend.py does the same at import)
        from codegen.cuda.backend import CudaBackend as Compiled
    else:
        from codegen import CpuBackend as Compiled
    model, _ = dropout_mlp()
    feeds = {k: v[:6] for k, v in model.data.train.items()}
    shard = {**{k: v[2:5] for k, v in feeds.items()}, **ON, "step": 4.0, "first_row": 2.0}
    ref = NumpyBackend(model, make_optimizer("sgd", lr=0.1), "float64")
    dev = Compiled(model, make_optimizer("sgd", lr=0.1), "float64")
    loss_ref, g_ref = ref.gradients(shard)
    g_ref = g_ref.copy()   # (a backend's gradient buffer is rewritten by its next call)
    loss_dev, g_dev = dev.gradients(shard)
    np.testing.assert_allclose(g_dev, g_ref, rtol=1e-10, atol=1e-12)
    assert loss_dev == pytest.approx(loss_ref, rel=1e-10)
    unshifted = ref.gradients({**shard, "first_row": 0.0})[1]
    assert not np.allclose(unshifted, g_ref)   # the offset changes the masks: the check can fail


@pytest.mark.parametrize("view", ["ops", "backward"])
def test_drawings_leave_out_the_data_parallel_first_row(view):
    """The shard offset is plumbing (0 in every run a lecture shows): not a fourth input node
    beside x, training and step."""
    from graphnn.models import get_model

    from graphnn.draw.ops_view import NOT_DRAWN

    for model, options in ((get_model("denoising-autoencoder", hidden=4), {}), (dropout_mlp()[0], {}),
                           (dropout_mlp()[0], {"reads": True})):   # (its backward dropout reads first_row)
        d = gn.draw(model, view=view, **options)
        assert "first" not in d.source and ">training<" in d.source.replace("<b>", ">").replace("</b>", "<")
        declared = set(re.findall(r"^\s*(\w+) \[", d.source, re.M))   # every edge's ends are drawn nodes
        ends = set(re.findall(r"^\s*(\w+) -> (\w+)", d.source, re.M))
        assert {e for pair in ends for e in pair} <= declared, "an edge to a node that is not drawn"
    assert NOT_DRAWN


def test_the_forward_derivation_lists_no_first_row():
    from graphnn.models import get_model

    text = gn.derive(get_model("denoising-autoencoder", hidden=4), view="forward", values=True).to_markdown()
    assert "first" not in text.replace("first training example", "")


def test_data_parallel_refuses_a_noise_op_whose_batch_axis_is_not_first_at_the_start():
    """It failed only on ranks whose shard does not start at row 0, at their first step."""
    from graphnn.data import Dataset
    from graphnn.model import Model
    from graphnn.training import Trainer
    from graphnn.training.distributed import LocalComm

    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 3))
    y = gn.transpose(dropout(gn.transpose(x), 0.5, name="late"))
    data = Dataset({"x": np.ones((4, 3)), "t": np.ones((4, 3))})
    model = Model("late", gn.losses.mse(y * gn.parameter("w", np.ones(3)), t), y, (x, t), data)
    Trainer(model, batch_size=2)   # one process: fine
    with pytest.raises(ValueError, match="'late'.*batch axis is not the first"):
        Trainer(model, batch_size=2, comm=LocalComm())


def test_a_noise_op_built_by_hand_with_three_operands_is_one_clear_error():
    from graphnn.ops.base import apply
    from graphnn.ops.dropout import STEP, TRAINING, Dropout

    with pytest.raises(gn.ShapeError, match="takes \\(x, training, step, first_row\\), got 3"):
        apply(Dropout.instance(), [gn.input("x", (None, 2)), TRAINING, STEP], {"rate": 0.5, "seed": 1, "scale": True})
