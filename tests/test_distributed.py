"""Data-parallel pieces that need no MPI: sharding, the loss's batch scaling, agreement checks,
the gradient/update split of the backend, and that plain training never imports mpi4py."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from graphnn import input, losses, parameter, sigmoid, linear, sum as sum_, mul, add
from graphnn.data import Dataset
from graphnn.training.distributed import (DataParallel, DistributedError, LocalComm, batch_reduction,
                                 check_agreement, shard_bounds)
from graphnn.model import Model
from graphnn.models import get_model
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend, Trainer


@pytest.mark.parametrize("n,size", [(10, 3), (4, 4), (1, 2), (128, 2), (7, 1), (0, 2)])
def test_shards_cover_the_batch_in_order_and_differ_by_at_most_one(n, size):
    bounds = [shard_bounds(n, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    lengths = [hi - lo for lo, hi in bounds]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == [len(s) for s in np.array_split(np.arange(n), size)]


def test_gradients_then_apply_equals_train_step():
    model = get_model("digits-mlp", hidden=8)
    feeds = {k: v[:20] for k, v in model.data.train.items()}
    a = NumpyBackend(model, make_optimizer("adam", lr=0.01))
    b = NumpyBackend(model, make_optimizer("adam", lr=0.01))
    for _ in range(3):
        loss_a = a.train_step(feeds)
        loss_b, flat = b.gradients(feeds)
        assert flat.ndim == 1 and flat.size == sum(b.params[p].size for p in b.trainable)
        b.apply_gradients(flat)
        assert loss_a == loss_b
    for p in model.parameters:
        np.testing.assert_array_equal(a.params[p], b.params[p])


def test_one_rank_data_parallel_is_plain_training():
    kw = dict(batch_size=50, optimizer="momentum", lr=0.05, seed=4)
    plain = Trainer(get_model("digits-mlp", hidden=8), **kw)
    local = Trainer(get_model("digits-mlp", hidden=8), comm=LocalComm(), **kw)
    assert isinstance(local.backend, DataParallel)
    plain.fit(epochs=2)
    local.fit(epochs=2)
    assert local.history.losses == pytest.approx(plain.history.losses, rel=1e-13)
    for p, q in zip(plain.model.parameters, local.model.parameters):
        np.testing.assert_allclose(local.params[q], plain.params[p], rtol=0, atol=1e-13)


def _regularised_sum_model():
    x, t = input("x", (None, 2)), input("t", (None, 1))
    W = parameter("W", [[0.3], [-0.2]])
    b = parameter("b", [0.1])
    y = sigmoid(linear(x, W, b))
    loss = add(losses.quadratic(y, t), mul(sum_(mul(W, W)), 0.01))
    data = {"x": np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), "t": np.array([[1.0], [1.0], [0.0]])}
    return Model("reg-sum", loss, y, (x, t), Dataset(data))


def test_batch_reduction_is_found_by_doubling_the_batch():
    def backend(model):
        return NumpyBackend(model, make_optimizer("sgd", lr=0.1))

    digits = get_model("digits-mlp", hidden=8)  # softmax cross-entropy, batch mean
    assert batch_reduction(backend(digits), digits.data.train) == "mean"
    xor = get_model("xor")  # the course's ½Σ(t−y)²: a sum
    assert batch_reduction(backend(xor), xor.data.train) == "sum"
    reg = _regularised_sum_model()  # a sum plus a weight penalty: shards cannot be combined
    with pytest.raises(DistributedError, match="neither a sum nor a mean"):
        batch_reduction(backend(reg), reg.data.train)


class TwoRankEcho(LocalComm):
    """Pretends to be rank 0 of two whose peer reports ``other``'s fingerprint."""

    size = 2

    def __init__(self, change):
        self.change = change

    def allgather(self, obj):
        return [obj, {**obj, **self.change}]


def test_ranks_that_disagree_are_told_what_differs():
    fp = {"graph": "a" * 64, "batch_size": 32}
    with pytest.raises(DistributedError, match=r"(?s)graph structure \(structural hash\).*rank 0 has aaaaaaaaaaaa…, "
                                               r"rank 1 has bbbbbbbbbbbb…"):
        check_agreement(TwoRankEcho({"graph": "b" * 64}), fp)
    with pytest.raises(DistributedError, match="(?s)training setup.*batch_size: rank 0 has 32, rank 1 has 64"):
        check_agreement(TwoRankEcho({"batch_size": 64}), fp)
    check_agreement(TwoRankEcho({}), fp)


def test_a_backend_without_the_gradient_split_is_refused():
    class Opaque:
        name = "opaque"

    with pytest.raises(DistributedError, match="backend 'opaque' cannot train data-parallel: it lacks "
                                               "gradients, apply_gradients"):
        DataParallel(Opaque(), LocalComm(), {})


def test_plain_training_never_imports_mpi():
    code = ("import sys; from graphnn.cli import main; "
            "assert main(['train', 'xor', '--steps', '3']) == 0; "
            "from graphnn.training import Trainer; from graphnn.models import get_model; "
            "Trainer(get_model('mazur')).fit(steps=2); "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'; print('no mpi')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "no mpi" in out.stdout


def test_missing_mpi4py_gives_an_install_hint():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from graphnn.cli import main\n"
            "sys.exit(main(['train', 'xor', '--steps', '3', '--distributed']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "graphnn train: error: distributed training needs mpi4py" in out.stderr
    assert "pip install 'graphnn[mpi]'" in out.stderr


class _RankOf(LocalComm):
    """Rank ``rank`` of ``size`` seen alone: collectives the identity (its local state)."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def bcast(self, obj, root=0):
        return "mean" if obj is None else obj


def test_a_rank_without_rows_still_moves_the_noise_step_on():
    """A batch with fewer rows than ranks leaves a rank empty; its step number fell behind
    for the rest of the run, so its later rows got another step's masks."""
    from graphnn.training.backends import TrainingFeeds

    model = get_model("denoising-autoencoder", hidden=4)
    train = {k: v[:10] for k, v in model.data.train.items()}
    counts = []
    for rank in (0, 1):
        feeds = TrainingFeeds(NumpyBackend(model, make_optimizer("sgd", lr=0.1), "float64"))
        dp = DataParallel(feeds, _RankOf(rank, 2), train)
        dp.train_step({k: v[:1] for k, v in train.items()})   # one row: rank 1 has none
        dp.train_step({k: v[:4] for k, v in train.items()})
        counts.append(feeds.count)
    assert counts == [2, 2]


def test_with_training_feeds_on_a_data_parallel_trainer_goes_under_the_shards():
    """It wrapped the sharding backend, which then sliced the scalar training feeds."""
    from graphnn.training import with_training_feeds

    def trained(comm):
        t = Trainer(get_model("autoencoder", hidden=4), batch_size=10, seed=1, comm=comm)
        with_training_feeds(with_training_feeds(t))   # idempotent
        t.fit(steps=2, progress=False)
        return t.history.losses

    assert trained(LocalComm()) == pytest.approx(trained(None), rel=1e-12)


class _Prep:
    def __init__(self, done, ok):
        self._done, self._ok = done, ok

    def done(self):
        return self._done

    def ok(self):
        return self._ok


class _Switcher:
    """What agree_to_switch reads of a SwitchingBackend."""

    def __init__(self, prep=None):
        self._prep, self.failure, self.compiled, self.decided, self.took = prep, None, False, False, None

    def take(self, switch=True):
        self.took, self._prep = switch, None
        self.compiled = switch

    def _say(self, text):
        pass


class _Votes(LocalComm):
    """Rank 0 of 2; the other rank's vote is added by the all-reduce; calls are counted."""

    def __init__(self, other):
        self.rank, self.size, self.other, self.calls = 0, 2, np.array(other, dtype=float), 0

    def allreduce_sum_inplace(self, buf):
        self.calls += 1
        buf += self.other


def test_every_rank_votes_on_the_switch_even_before_its_compile_started():
    """A rank with no rows yet has no compile running; it used to skip the vote, so its
    gradient all-reduce met another rank's vote (an MPI error or a hang)."""
    from graphnn.training.switching import agree_to_switch

    idle, comm = _Switcher(), _Votes([1, 1])        # the other rank's compile is done and fine
    agree_to_switch(idle, comm)
    assert comm.calls == 1 and not idle.decided     # voted, not ready: nobody switches
    ready, comm = _Switcher(_Prep(True, True)), _Votes([1, 1])
    agree_to_switch(ready, comm)
    assert ready.took is True and ready.decided
    agree_to_switch(ready, comm)
    assert comm.calls == 1                          # decided: no more votes
    fine, comm = _Switcher(_Prep(True, True)), _Votes([1, 0])   # the other's compile failed
    agree_to_switch(fine, comm)
    assert fine.took is None and fine.failure and fine.decided and fine._prep is None
