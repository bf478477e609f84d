"""Plain SGD folded into train_epoch's weight-gradient products (codegen/fuse_update.py, issue 19).

With SGD, ``W += −η·(aᵀδ)`` is one BLAS call and the gradient of W is never stored; the
epoch must still equal the reference's. A weight read or added to after its gradient product
(weight decay written in the loss, a weight used twice) is not folded; other optimizers
never fold; grad_step and train_step keep writing every gradient.
"""
import numpy as np
import pytest

import codegen
from codegen.emit_cpu import emit_module
from codegen.fuse_update import _names, sgd_coefficient
from codegen.plan import lower
from graphnn import losses
from graphnn.data import Dataset
from graphnn.model import Model
from graphnn.models import available, get_model
from graphnn.ops import input, linear, matmul, mul, parameter, sum as total, tanh, transpose
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend

pytestmark = pytest.mark.usefixtures("private_cache_dir")


def _mlp(decay=0.0, tied=False):
    """A user's 12-24-24-3 tanh MLP (products past the tiny size); ``decay``: λ·ΣW1² in the
    loss; ``tied``: the last layer reuses W2ᵀ·V (W2 read again after its gradient product)."""
    rng = np.random.default_rng(11)
    x, t = input("x", (None, 12)), input("t", (None, 3))
    W1 = parameter("W1", rng.normal(0, 0.3, (12, 24)))
    W2 = parameter("W2", rng.normal(0, 0.2, (24, 24)))
    h = tanh(linear(tanh(linear(x, W1, parameter("b1", np.zeros(24)))), W2, parameter("b2", np.zeros(24))))
    if tied:
        h = tanh(matmul(h, transpose(W2)))
    z = linear(h, parameter("W3", rng.normal(0, 0.2, (24, 3))), parameter("b3", np.zeros(3)))
    loss = losses.mse(z, t)
    if decay:
        loss = loss + mul(decay, total(mul(W1, W1)))
    X, T = rng.normal(size=(70, 12)), rng.normal(size=(70, 3))
    return Model("user-mlp-fold", loss, z, (x, t), Dataset({"x": X, "t": T}))


def _train_epoch_source(model, optimizer="sgd"):
    src = emit_module(lower(model, make_optimizer(optimizer, lr=0.1), "float64"))
    body = src.split("def train_epoch(", 1)[1].split("\n\n\n", 1)[0]
    grad_step = src.split("def grad_step(", 1)[1].split("\n\n\n", 1)[0]
    return body, grad_step


def _folded(body):
    return sorted(line.split(",")[2].strip() for line in body.splitlines() if "gemm_update(" in line)


def _same_epochs(model, optimizer="sgd", epochs=2):
    cpu = codegen.CpuBackend(model, make_optimizer(optimizer, lr=0.05), "float64")
    ref = NumpyBackend(model, make_optimizer(optimizer, lr=0.05), "float64")
    for e in range(epochs):
        order = np.random.default_rng(e).permutation(model.data.n_train)
        batches = [order[i:i + 16] for i in range(0, len(order), 16)]   # a short last batch
        assert cpu.train_epoch(model.data.train, batches) == pytest.approx(
            ref.train_epoch(model.data.train, batches), rel=1e-10)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=0, atol=1e-10, err_msg=p.name)
    return cpu


def test_sgd_folds_every_weight_product_and_updates_only_the_rest():
    model = _mlp()
    body, grad_step = _train_epoch_source(model)
    assert _folded(body) == ["W1", "W2", "W3"]
    # apply_update runs on the biases' parts of the flat vectors only: [288:312], [888:912], [984:987]
    updates = [line.strip() for line in body.splitlines() if "apply_update(" in line]
    assert updates == [f"apply_update(rows_at(flat_params, {a}, {b - a}), rows_at(flat_grad, {a}, {b - a}), step, lr)"
                       for a, b in ((288, 312), (888, 912), (984, 987))]
    assert "gemm_update" not in grad_step   # grad_step still writes every gradient
    assert all(f"gemm(" in line for line in grad_step.splitlines() if line.strip().endswith(("d_W1)", "d_W2)", "d_W3)")))
    assert sum(line.strip().endswith(("d_W1)", "d_W2)", "d_W3)")) for line in grad_step.splitlines()) == 3
    cpu = _same_epochs(model)
    # a single step (train_step: gradients written, then the update) after folded epochs agrees too
    feeds = {k: v[:5] for k, v in model.data.train.items()}
    ref = NumpyBackend(model, make_optimizer("sgd", lr=0.05), "float64", params=dict(cpu.params))
    assert cpu.train_step(feeds) == pytest.approx(ref.train_step(feeds), rel=1e-12)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_an_optimizer_with_state_never_folds(optimizer):
    body, _ = _train_epoch_source(_mlp(), optimizer)
    assert _folded(body) == [] and "apply_update(flat_params, flat_grad" in body


def test_a_weight_in_the_loss_itself_is_not_folded():
    """λ·ΣW1² adds 2λW1 to W1's gradient after its product: folding would lose it."""
    model = _mlp(decay=0.01)
    body, _ = _train_epoch_source(model)
    assert "W1" not in _folded(body) and _folded(body) == ["W2", "W3"]
    _same_epochs(model)


def test_a_weight_used_twice_is_not_folded():
    """W2 in layer 2 and again as W2ᵀ in layer 3: its gradient has two terms."""
    model = _mlp(tied=True)
    body, _ = _train_epoch_source(model)
    assert "W2" not in _folded(body)
    _same_epochs(model)


def _fold(steps_of):
    """fold_sgd on _mlp's grad_step with its steps rearranged by ``steps_of(steps)``: the
    parameters whose products were folded."""
    from codegen.fuse_update import fold_sgd
    from codegen.printer import Writer

    sched = lower(_mlp(), make_optimizer("sgd", lr=0.1), "float64")
    plan = fold_sgd(sched, steps_of(list(sched.grad_step.steps)), Writer("float64"))
    return [] if plan is None else sorted(s.param for s in plan.steps if type(s).__name__ == "GemmUpdate")


def test_a_product_followed_by_a_read_of_its_weight_is_not_folded():
    """The analysis itself, on a valid reordering: d_W3 = e_2ᵀ·δ computed before δ·W3ᵀ (which
    reads the old W3), then W3ᵀ read through a view; either way W3 must keep its old value."""
    from codegen import schedule as S

    def w3_product_first(steps):
        i = next(k for k, s in enumerate(steps) if isinstance(s, S.MatMul) and s.out == "d_W3")
        j = next(k for k, s in enumerate(steps) if isinstance(s, S.MatMul) and s.b == "W3" and s.trans_b)
        return steps[:j] + [steps[i]] + [s for k, s in enumerate(steps[j:], j) if k != i]

    def through_a_view(steps):
        steps = w3_product_first(steps)
        j = next(k for k, s in enumerate(steps) if isinstance(s, S.MatMul) and s.b == "W3" and s.trans_b)
        read = steps[j]
        view = S.View("W3_T", "W3", "transpose", (1, 0))
        return [view] + steps[:j] + [S.MatMul(read.out, read.a, "W3_T", False, False, False, read.shape)] + steps[j + 1:]

    assert _fold(lambda steps: steps) == ["W1", "W2", "W3"]
    assert _fold(w3_product_first) == ["W1", "W2"]
    assert _fold(through_a_view) == ["W1", "W2"]


def test_the_sgd_rule_is_recognised_and_nothing_else():
    def update(optimizer):
        return lower(_mlp(), make_optimizer(optimizer, lr=0.1), "float64").update

    assert str(sgd_coefficient(update("sgd"))) == "-lr"
    assert sgd_coefficient(update("momentum")) is None and sgd_coefficient(update("adam")) is None


def test_a_step_that_is_not_plain_data_stops_the_folding():
    """Nothing unknown is assumed safe: an object whose names cannot be read is None."""
    from codegen import schedule as S

    assert _names(S.View("v", "W1", "transpose", (1, 0), comment="W2 in a comment")) == {"v", "W1", "transpose"}
    assert _names(S.View("v", "W1", "alias", (object(),))) is None


@pytest.mark.parametrize("name", sorted(n for n in available() if get_model(n).task not in ("perceptron", "hopfield")))
def test_every_built_in_model_trains_an_epoch_as_the_reference_with_sgd(interpreted, name):
    """The generated train_epoch (folded where it can), run as plain Python, against the
    reference: two shuffled batches, the second short."""
    model = get_model(name)
    opt = lambda: make_optimizer("sgd", lr=model.defaults.get("lr", 0.05))  # noqa: E731
    cpu, ref = codegen.CpuBackend(model, opt(), "float64"), NumpyBackend(model, opt(), "float64")
    train = {k: v for k, v in model.data.train.items()}
    order = np.random.default_rng(1).permutation(model.data.n_train)[:5]
    batches = [order[:3], order[3:]]
    assert cpu.train_epoch(train, batches) == pytest.approx(ref.train_epoch(train, batches), rel=1e-9)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-9, atol=1e-12, err_msg=p.name)
