"""Training: one loop for every backend.

A backend owns the parameter values and runs steps; the `Trainer` owns the schedule
(epochs or steps, full-batch or mini-batches, the seeded batch order), the history and
the metrics. Backends register by name in `BACKENDS`: 'numpy' (the reference) lives
here; compiled backends register themselves when their package is imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .autodiff import grad
from .data import Dataset
from .errors import UnknownNameError
from .evaluate import Evaluator, resolve_dtype
from .optim import make_optimizer


class NumpyBackend:
    """The reference backend: the evaluator runs forward and backward, NumPy updates."""

    name = "numpy"

    def __init__(self, model, optimizer, dtype="float64", params=None):
        self.model, self.optimizer = model, optimizer
        self.dtype = resolve_dtype(dtype)
        self.trainable = model.params
        grads = grad(model.loss, self.trainable)
        self._step = Evaluator([model.loss] + [grads[p] for p in self.trainable])
        self._loss = Evaluator(model.loss)
        self._predict = Evaluator(model.output)
        start = params or model.initial_params()
        self.params = {p: np.array(start[p], dtype=self.dtype) for p in model.parameters}
        self.state = optimizer.init_state({p: self.params[p] for p in self.trainable})
        self.steps = 0

    def train_step(self, feeds) -> float:
        loss, *grads = self._step(feeds, self.params, dtype=self.dtype)
        self.steps += 1
        self.optimizer.update({p: self.params[p] for p in self.trainable},
                              dict(zip(self.trainable, grads)), self.state, self.steps)
        return float(loss)

    # train_step split in two, for data-parallel training (graphnn/distributed.py): the
    # gradients in ONE flat buffer (trainable order) that an all-reduce can sum in place,
    # then the update from such a buffer. Compiled backends provide the same pair.
    def gradients(self, feeds):
        """Forward + backward on ``feeds``: (loss, flat gradient), no update."""
        loss, *grads = self._step(feeds, self.params, dtype=self.dtype)
        if not hasattr(self, "_flat"):
            self._flat = np.empty(sum(self.params[p].size for p in self.trainable), self.dtype)
        np.concatenate([np.ravel(g_) for g_ in grads], out=self._flat)
        return float(loss), self._flat

    def apply_gradients(self, flat_grad) -> None:
        """The optimizer update from a flat gradient (the layout `gradients` returns)."""
        grads, offset = {}, 0
        for p in self.trainable:
            value = self.params[p]
            grads[p] = flat_grad[offset:offset + value.size].reshape(value.shape)
            offset += value.size
        self.steps += 1
        self.optimizer.update({p: self.params[p] for p in self.trainable}, grads, self.state, self.steps)

    def train_epoch(self, feeds, batches) -> float:
        """One epoch over ``batches`` (index arrays); the mean loss per example."""
        total, count = 0.0, 0
        for idx in batches:
            total += self.train_step({k: v[idx] for k, v in feeds.items()}) * len(idx)
            count += len(idx)
        return total / count

    def loss(self, feeds) -> float:
        return float(self._loss(feeds, self.params, dtype=self.dtype))

    def predict(self, feeds):
        return self._predict(feeds, self.params, dtype=self.dtype)


BACKENDS = {"numpy": NumpyBackend}


def make_backend(name, model, optimizer, dtype="float64", params=None):
    if name not in BACKENDS:
        _load_plugins()
    if name not in BACKENDS:
        raise UnknownNameError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](model, optimizer, dtype=dtype, params=params)


def _load_plugins():
    """Compiled backends live in codegen/, imported only when asked for."""
    try:
        import codegen  # noqa: F401  (registers 'cpu', 'cuda', … in BACKENDS)
    except ImportError:
        pass


@dataclass
class History:
    """Loss per epoch (or per logged step), and test metrics as they were measured."""

    records: list = field(default_factory=list)

    def append(self, **row):
        self.records.append(row)

    @property
    def losses(self):
        return [r["loss"] for r in self.records]

    def last(self, key="loss"):
        return self.records[-1][key] if self.records else None


class Trainer:
    """Train a `Model` with one backend: ``Trainer(model, backend='numpy').fit(epochs=20)``."""

    def __init__(self, model, *, backend="numpy", optimizer=None, lr=None, batch_size=None,
                 dtype="float64", seed=0, data: Dataset | None = None, params=None, comm=None,
                 **hyper):
        d = model.defaults
        self.model = model
        self.data = data or model.data
        if self.data is None:
            raise ValueError(f"model {model.name!r} has no data; pass data=Dataset(...)")
        self.batch_size = batch_size if batch_size is not None else d.get("batch_size")
        lr = lr if lr is not None else d.get("lr")
        self.optimizer = make_optimizer(optimizer or d.get("optimizer", "sgd"), lr=lr, **hyper)
        self.backend = make_backend(backend, model, self.optimizer, dtype, params)
        # comm (graphnn/distributed.py): data-parallel over ranks; the same seed and batch
        # order everywhere, each rank computes its shard of every batch. Rank 0 logs.
        self.comm = comm
        if comm is not None:
            from .distributed import DataParallel
            self.backend = DataParallel(self.backend, comm, self.data.train,
                                        settings={"batch_size": self.batch_size, "seed": seed})
        self.rng = np.random.default_rng(seed)
        self.history = History()
        self.epoch = 0

    @property
    def params(self) -> dict:
        return self.backend.params

    def _batches(self):
        n = self.data.n_train
        if not self.batch_size or self.batch_size >= n:
            return [np.arange(n)]  # full batch: in order, like the course's worked examples
        order = self.rng.permutation(n)
        return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    def fit(self, epochs=None, steps=None, *, log=None, log_every=None):
        """Run ``epochs`` passes over the data, or ``steps`` updates; return the History.

        ``log(row)`` is called with each history row (the CLI prints them).
        """
        if epochs is None and steps is None:
            epochs, steps = self.model.defaults.get("epochs"), self.model.defaults.get("steps")
        if (epochs is None) == (steps is None):
            raise ValueError("give exactly one of epochs= or steps=")
        feeds = self.data.train
        if steps is not None:
            self._fit_steps(feeds, steps, log, log_every or max(1, steps // 10))
        else:
            for _ in range(epochs):
                self.epoch += 1
                loss = self.backend.train_epoch(feeds, self._batches())
                self._record(log, epoch=self.epoch, loss=loss)
        return self.history

    def _fit_steps(self, feeds, steps, log, log_every):
        done = 0
        while done < steps:
            for idx in self._batches():
                self.backend.train_step({k: v[idx] for k, v in feeds.items()})
                done += 1
                if done % log_every == 0 or done == steps:
                    # the loss after the update, as the course reports "E after n steps"
                    self._record(log, step=done, loss=self.backend.loss(feeds))
                if done == steps:
                    return
            self.epoch += 1

    def _record(self, log, **row):
        if self.model.task == "classification" and self.data.test is not None:
            row["test_accuracy"] = self.accuracy("test")
        self.history.append(**row)
        if log and (self.comm is None or self.comm.rank == 0):
            log(row)

    def loss(self, split="train") -> float:
        return self.backend.loss(self._split(split))

    def accuracy(self, split="test") -> float:
        """Fraction of examples whose largest output matches the one-hot target."""
        feeds = self._split(split)
        out = self.backend.predict(feeds)
        target = feeds[self.model.inputs[1].name]
        return float(np.mean(np.argmax(out, -1) == np.argmax(target, -1)))

    def _split(self, split):
        feeds = self.data.train if split == "train" else self.data.test
        if feeds is None:
            raise ValueError(f"model {self.model.name!r} has no {split} data")
        return feeds


def fit(model, *, epochs=None, steps=None, **kw):
    """Train and return the Trainer (``fit(model, epochs=20, backend='cpu').accuracy()``)."""
    trainer = Trainer(model, **kw)
    trainer.fit(epochs=epochs, steps=steps)
    return trainer


#: task name -> function(model, cli args) for models trained by a rule other than
#: gradient descent (Hopfield storage and recall, …); the CLI dispatches on model.task.
TASK_TRAINERS: dict = {}
