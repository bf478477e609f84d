"""The Trainer: one training loop for every backend.

A backend (backends.py) owns the parameter values and runs steps; the `Trainer` owns the
schedule (epochs or steps, full-batch or mini-batches, the seeded batch order), the
history and the metrics, early stopping, checkpoints and plots.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data import Dataset, split
from ..optim import make_optimizer
from .backends import TrainingFeeds, make_backend, uses_training_mode
from .checkpoint import save_checkpoint
from .distributed import DataParallel
from .plot import plot_history
from .resume import export_state, import_state, read_checkpoint
from .validation import check_data, check_learning_rate


@dataclass
class History:
    """One row per epoch (or per logged step): loss, and test metrics as they were measured."""

    records: list = field(default_factory=list)

    def append(self, **row):
        self.records.append(row)

    @property
    def losses(self):
        return [r["loss"] for r in self.records]

    def column(self, key):
        """The values of ``key`` over the rows that have it."""
        return [r[key] for r in self.records if key in r]

    def last(self, key="loss"):
        return self.records[-1][key] if self.records else None

    def __len__(self):
        return len(self.records)


class EarlyStopping:
    """Stop when ``monitor`` has not improved for ``patience`` evaluations; keep the best params."""

    def __init__(self, patience: int, monitor: str, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"early stopping patience must be at least 1, not {patience}")
        self.patience, self.monitor, self.min_delta = patience, monitor, min_delta
        self.maximize = "accuracy" in monitor
        self.best, self.best_row, self.best_params, self.bad = None, None, None, 0

    def update(self, row, params) -> bool:
        """Record ``row``; True when training should stop."""
        if self.monitor not in row:
            raise ValueError(f"early stopping monitors {self.monitor!r}, but the history rows have "
                             f"{sorted(row)}")
        value = row[self.monitor]
        better = self.best is None or (value > self.best + self.min_delta if self.maximize
                                       else value < self.best - self.min_delta)
        if better:
            self.best, self.best_row, self.bad = value, dict(row), 0
            self.best_params = {p: np.array(v, copy=True) for p, v in params.items()}
        else:
            self.bad += 1
        return self.bad >= self.patience


class Trainer:
    """Train a `Model` with one backend: ``Trainer(model, backend='cpu').fit(epochs=20)``.

    Full-batch (``batch_size=None``), mini-batch or stochastic (``batch_size=1``) gradient
    descent with SGD, momentum or Adam; a seeded batch order (the same for every backend);
    a train/test split (``test_fraction`` when the data has no test set); history of loss,
    test loss and test accuracy; progress bar; early stopping; checkpoints (`save`/`load`).
    ``backend_options`` go to the backend (the cpu backend takes ``verbose``, ``blas_threads``).
    """

    def __init__(self, model, *, backend="numpy", optimizer=None, lr=None, batch_size=None,
                 dtype="float64", seed=0, data: Dataset | None = None, params=None, comm=None,
                 test_fraction=None, backend_options=None, **hyper):
        d = model.defaults
        self.model = model
        self.data = data or model.data
        if self.data is None:
            raise ValueError(f"model {model.name!r} has no data; pass data=Dataset(...)")
        if test_fraction is not None:
            self.data = _with_test_split(self.data, test_fraction, seed)
        check_data(model, self.data)
        self.batch_size = batch_size if batch_size is not None else d.get("batch_size")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        lr = lr if lr is not None else d.get("lr")
        check_learning_rate(lr)
        self.optimizer = make_optimizer(optimizer or d.get("optimizer", "sgd"), lr=lr, **hyper)
        self.backend = make_backend(backend, model, self.optimizer, dtype, params, **(backend_options or {}))
        # Dropout and input corruption read `training`/`step` inputs (evaluation mode by
        # default); training steps must switch them on, on every backend.
        if uses_training_mode(model.graph.nodes):
            self.backend = TrainingFeeds(self.backend)
        # comm (graphnn/distributed.py): data-parallel over ranks; the same seed and batch
        # order everywhere, each rank computes its shard of every batch. Rank 0 logs.
        self.comm = comm
        if comm is not None:
            self.backend = DataParallel(self.backend, comm, self.data.train,
                                        settings={"batch_size": self.batch_size, "seed": seed})
        self.rng = np.random.default_rng(seed)
        # exact resume mid-epoch: the generator's state before this epoch's order was drawn,
        # how many of its batches are done, and how many a resumed run must skip
        self._epoch_rng, self._batch_pos, self._skip = self.rng.bit_generator.state, 0, 0
        self.history = History()
        self.epoch = 0
        self.stopped_early = False

    @property
    def params(self) -> dict:
        return self.backend.params

    def _batches(self):
        """This epoch's batches (after a mid-epoch resume: the ones not yet trained)."""
        n = self.data.n_train
        self._epoch_rng = self.rng.bit_generator.state
        if not self.batch_size or self.batch_size >= n:
            batches = [np.arange(n)]  # full batch: in order, like the course's worked examples
        else:
            order = self.rng.permutation(n)
            batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        self._batch_pos, self._skip = self._skip, 0
        return batches[self._batch_pos:]

    def fit(self, epochs=None, steps=None, *, log=None, log_every=None, progress=None,
            early_stopping=None, monitor=None, restore_best=True):
        """Run ``epochs`` passes over the data, or ``steps`` updates; return the History.

        ``log(row)`` is called with each history row (the CLI prints them). ``progress``:
        True/False, or None for a tqdm bar on long runs (≥ 20 epochs or ≥ 1000 steps).
        ``early_stopping=k`` stops after k evaluations without improvement of ``monitor``
        (default 'test_loss' when there is test data, else 'loss') and, with
        ``restore_best``, puts back the parameters of the best evaluation.
        """
        if epochs is None and steps is None:
            epochs, steps = self.model.defaults.get("epochs"), self.model.defaults.get("steps")
        if (epochs is None) == (steps is None):
            raise ValueError("give exactly one of epochs= or steps=")
        if (epochs if epochs is not None else steps) < 0:
            raise ValueError("epochs/steps must not be negative")
        stopper = None
        if early_stopping:
            default = "test_loss" if self.data.test is not None else "loss"
            stopper = EarlyStopping(int(early_stopping), monitor or default)
        total = epochs if epochs is not None else steps
        show = progress if progress is not None else total >= (20 if epochs is not None else 1000)
        if self.comm is not None and self.comm.rank != 0:
            show = False
        bar = _progress(total, "epoch" if epochs is not None else "step", show)
        self.stopped_early = False
        try:
            if steps is not None:
                self._fit_steps(self.data.train, steps, log, log_every or max(1, steps // 10), bar, stopper)
            else:
                for _ in range(epochs):
                    loss = self.backend.train_epoch(self.data.train, self._batches())
                    self.epoch += 1
                    self._batch_pos = 0
                    row = self._record(log, bar, epoch=self.epoch, loss=loss)
                    bar.update(1)
                    if stopper is not None and stopper.update(row, self.params):
                        self.stopped_early = True
                        break
        finally:
            bar.close()
        if stopper is not None and restore_best and stopper.best_params is not None:
            for p, v in stopper.best_params.items():
                self.params[p][...] = v
        self.early_stopping = stopper
        return self.history

    def _fit_steps(self, feeds, steps, log, log_every, bar, stopper):
        done = 0
        while done < steps:
            batches = self._batches()
            total = self._batch_pos + len(batches)
            try:
                for idx in batches:
                    self.backend.train_step({k: v[idx] for k, v in feeds.items()})
                    done += 1
                    self._batch_pos += 1
                    bar.update(1)
                    if done % log_every == 0 or done == steps:
                        # the loss after the update, as the course reports "E after n steps"
                        row = self._record(log, bar, step=done, loss=self.backend.loss(feeds))
                        if stopper is not None and stopper.update(row, self.params):
                            self.stopped_early = True
                            return
                    if done == steps:
                        return
            finally:
                if self._batch_pos == total:   # its last batch is done: the epoch is complete
                    self.epoch += 1
                    self._batch_pos = 0

    def _record(self, log, bar=None, **row):
        if self.data.test is not None:
            if hasattr(self.backend, "evaluate"):
                row["test_loss"], out = self.backend.evaluate(self.data.test)
            else:
                row["test_loss"], out = self.loss("test"), None
            if self.model.task == "classification":
                row["test_accuracy"] = self.accuracy("test", out)
        if self.comm is not None:  # rank 0's row everywhere: early stopping decides alike on all ranks
            row = self.comm.bcast(row)
        self.history.append(**row)
        if bar is not None:
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("epoch", "step")}, refresh=False)
        if log and (self.comm is None or self.comm.rank == 0):
            if bar is not None and bar.active:
                with bar.external_write_mode():
                    log(row)
            else:
                log(row)
        return row

    def loss(self, split="train") -> float:
        return self.backend.loss(self._split(split))

    def accuracy(self, split="test", out=None) -> float:
        """Fraction of examples whose largest output matches the one-hot target."""
        feeds = self._split(split)
        if out is None:   # evaluate (loss and output in one call) when the backend has it
            out = self.backend.evaluate(feeds)[1] if hasattr(self.backend, "evaluate") else \
                self.backend.predict(feeds)
        target = feeds[self.model.inputs[1].name]
        return float(np.mean(np.argmax(out, -1) == np.argmax(target, -1)))

    def _split(self, split):
        feeds = self.data.train if split == "train" else self.data.test
        if feeds is None:
            raise ValueError(f"model {self.model.name!r} has no {split} data")
        return feeds

    # -- checkpoints and plots (graphnn/checkpoint.py, graphnn/plot.py) ------------------
    def save(self, path) -> str:
        """Save parameters, optimizer state, counters and batch order with the graph's structural hash.

        Atomic (graphnn/training/checkpoint.py); a run resumed from it continues exactly as
        the saved one would have, mid-epoch included.
        """
        if self.comm is not None and self.comm.rank != 0:  # data-parallel: rank 0 alone writes
            return str(path)
        params, state, counters = export_state(self.backend)
        steps = counters.pop("steps")
        rng = self._epoch_rng if self._batch_pos else self.rng.bit_generator.state
        return save_checkpoint(path, self.model, params, state=state, steps=steps, epoch=self.epoch,
                               rng_state=rng, batch_in_epoch=self._batch_pos, counters=counters,
                               optimizer=self.optimizer)

    def load(self, path) -> "Trainer":
        """Load a checkpoint saved from the same graph (another graph, a bad file: `CheckpointError`).

        Under data-parallel training rank 0 reads it and broadcasts it to the other ranks.
        """
        ck = read_checkpoint(path, self.model, self.comm)
        import_state(self.backend, ck, path)
        self.epoch = ck.epoch
        if "rng" in ck.meta:  # the batch order continues where the saved run stopped
            self.rng.bit_generator.state = ck.meta["rng"]
        self._epoch_rng, self._batch_pos = self.rng.bit_generator.state, ck.meta.get("batch_in_epoch", 0)
        self._skip = self._batch_pos
        return self

    def plot(self, path, title=None) -> str:
        """Training curves (loss, test loss, test accuracy) as a PNG."""
        if self.comm is not None and self.comm.rank != 0:  # data-parallel: rank 0 alone writes
            return str(path)
        return plot_history(self.history, path, title=title or f"{self.model.name} ({getattr(self.backend, 'name', '')})")


class _NoBar:
    active = False

    def update(self, n=1):
        pass

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass


def _progress(total, unit, show):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit=unit, dynamic_ncols=True, leave=True)
    bar.active = True
    return bar


def _with_test_split(data: Dataset, fraction, seed) -> Dataset:
    if data.test is not None:
        raise ValueError("the data already has a test set; test_fraction splits data that has none")
    if not 0 < fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, not {fraction}")
    tr, te = split(data.n_train, fraction, seed)
    return Dataset({k: v[tr] for k, v in data.train.items()}, {k: v[te] for k, v in data.train.items()},
                   classes=data.classes)


def fit(model, *, epochs=None, steps=None, **kw):
    """Train and return the Trainer (``fit(model, epochs=20, backend='cpu').accuracy()``)."""
    trainer = Trainer(model, **kw)
    trainer.fit(epochs=epochs, steps=steps)
    return trainer
