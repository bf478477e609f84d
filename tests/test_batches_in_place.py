"""A batch of consecutive data rows, in order, is read where it lies by the compiled epoch.

Full-batch training (the Trainer's mode for ``batch_size=None``) and unshuffled epochs feed
batches ``order[start:stop]`` that are rows first … first + nb − 1 of the data: the generated
``train_epoch`` views them (``rows_at``) instead of copying them row by row into its batch
buffers. Any other batch is gathered. Both give the reference's numbers, and the fed arrays
are never written.
"""
import numpy as np
import pytest

import codegen
from graphnn import losses
from graphnn.data import Dataset
from graphnn.model import Model
from graphnn.models import get_model
from graphnn.ops import flatten, input, linear, parameter, relu
from graphnn.ops.conv import conv2d, max_pool2d
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend

pytestmark = pytest.mark.usefixtures("private_cache_dir")


def _user_cnn():
    """A user's own graph with a 4-d input (B, 1, 6, 6)."""
    rng = np.random.default_rng(3)
    x, t = input("x", (None, 1, 6, 6)), input("t", (None, 3))
    conv = conv2d(x, parameter("K", rng.normal(0, 0.5, (2, 1, 3, 3))), parameter("c", np.zeros(2)))
    h = flatten(max_pool2d(relu(conv), 2))
    z = linear(h, parameter("W", rng.normal(0, 0.5, (8, 3))), parameter("b", np.zeros(3)))
    X = rng.normal(size=(40, 1, 6, 6))
    T = np.eye(3)[rng.integers(0, 3, 40)]
    data = Dataset(train={"x": X, "t": T}, test={"x": X[:8], "t": T[:8]})
    return Model("user-cnn", losses.softmax_cross_entropy(z, t), z, (x, t), data, task="classification")


CASES = {"digits-mlp": lambda: get_model("digits-mlp"),   # (B, 64) inputs
         "rnn": lambda: get_model("rnn"),                 # (B, T, d) sequences
         "user-cnn": _user_cnn}                           # (B, C, H, W) images


def _epoch(build, batches_of):
    model = build()
    cpu = codegen.CpuBackend(model, make_optimizer("sgd", lr=0.05), "float64")
    ref = NumpyBackend(model, make_optimizer("sgd", lr=0.05), "float64")
    n = model.data.n_train
    feeds = {k: np.array(v, dtype=np.float64)[:min(n, 100)] for k, v in model.data.train.items()}
    before = {k: v.copy() for k, v in feeds.items()}
    batches = batches_of(min(n, 100))
    assert cpu.train_epoch(feeds, batches) == pytest.approx(ref.train_epoch(feeds, batches), rel=1e-10)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=0, atol=1e-10)
    for k in feeds:
        assert np.array_equal(feeds[k], before[k]), f"the fed {k!r} was written"
    names = {a.name for a in codegen.workspace.batched_inputs(cpu.schedule)}
    return {name: buf for name, buf in cpu._temps(len(batches[0])).items() if name in names}


@pytest.mark.parametrize("case", sorted(CASES))
def test_in_order_batches_are_read_in_place(case):
    full = _epoch(CASES[case], lambda n: [np.arange(n)])
    minibatches = _epoch(CASES[case], lambda n: [np.arange(i, min(i + 32, n)) for i in range(0, n, 32)])
    for buffers in (full, minibatches):
        assert buffers and all(not buf.any() for buf in buffers.values()), "an in-order batch was copied"


@pytest.mark.parametrize("case", sorted(CASES))
def test_shuffled_batches_are_gathered(case):
    def shuffled(n):
        order = np.random.default_rng(5).permutation(n)
        order[:2] = [0, 1]   # a batch that starts in order, then is not
        return [order[i:i + 32] for i in range(0, n, 32)]
    buffers = _epoch(CASES[case], shuffled)
    assert all(buf.any() for buf in buffers.values())


def _user_transposed():
    """A user's graph whose activation is transposed (the batch axis second): (W·xᵀ) then back."""
    from graphnn.ops import matmul, tanh, transpose

    rng = np.random.default_rng(5)
    x, t = input("x", (None, 5)), input("t", (None, 3))
    A = parameter("A", rng.normal(0, 0.5, (20, 5)))
    h = transpose(tanh(matmul(A, transpose(x))))          # (20, B) inside, (B, 20) out
    z = linear(h, parameter("W", rng.normal(0, 0.3, (20, 3))), parameter("b", np.zeros(3)))
    X, T = rng.normal(size=(23, 5)), rng.normal(size=(23, 3))
    return Model("user-transposed", losses.mse(z, t), z, (x, t), Dataset({"x": X, "t": T}))


def test_a_short_last_batch_trains_right_when_a_buffer_has_the_batch_axis_second():
    """Regression: train_epoch gives a short last batch the leading rows of each buffer, which
    for a (20, B) activation is not its part: the compiled epoch's loss and weights were wrong
    (the plain-Python module raised IndexError). Now that batch runs as its own step."""
    model = _user_transposed()
    cpu = codegen.CpuBackend(model, make_optimizer("sgd", lr=0.05), "float64")
    ref = NumpyBackend(model, make_optimizer("sgd", lr=0.05), "float64")
    order = np.random.default_rng(0).permutation(23)
    batches = [order[i:i + 8] for i in range(0, 23, 8)]   # 8, 8, 7
    for _ in range(2):
        assert cpu.train_epoch(model.data.train, batches) == pytest.approx(
            ref.train_epoch(model.data.train, batches), rel=1e-10)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=0, atol=1e-10)
    assert cpu.steps == ref.steps == 6
