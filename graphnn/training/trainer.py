"""The Trainer: one training loop for every backend.

A backend (backends.py) owns the parameter values and runs steps; the `Trainer` owns the
data (train, validation and test sets; users' arrays), the schedule (epochs or steps,
full-batch or mini-batches, the seeded batch order), the history and its metrics
(metrics.py), callbacks (callbacks.py: early stopping, checkpoints, hooks) and plots.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..data import Dataset, as_feeds, hold_out, with_test_split
from ..errors import FeedError
from ..evaluate import check_finite_feeds, check_value, resolve
from ..graph import Node
from ..ops.base import describe
from ..optim import OPTIMIZERS, Optimizer, make_optimizer
from . import metrics
from .backends import BACKENDS, LazyBackend, TrainingFeeds, backend_factory, make_backend, uses_training_mode
from .callbacks import EarlyStopping
from .checkpoint import save_checkpoint
from .distributed import DataParallel
from .keywords import KeywordError, check_keywords, keywords_of, takes_any
from .plot import plot_history
from .progress import progress_bar
from .resume import export_state, import_state, read_checkpoint, resumed_batches
from .switching import SwitchingBackend, end_of_training, start_of_training, wants_background
from .validation import (check_count, check_data, check_learning_rate, check_trainable, class_targets,
                         require_examples)


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


class Trainer:
    """Train a `Model` with one backend: ``Trainer(model, backend='cpu').fit(x, y, epochs=20)``.

    Full-batch (``batch_size=None``), mini-batch or stochastic (``batch_size=1``) gradient
    descent with SGD, momentum or Adam (hyperparameters such as ``lr`` may be schedules,
    graphnn.schedules); a seeded batch order (the same for every backend). Data: the
    model's, ``data=Dataset(...)``, or arrays given to `fit`; ``test_fraction`` holds out a
    test set (data without one), ``validation_split`` / ``validation_data`` a validation set
    (what early stopping and best checkpoints watch; the test set is only reported).
    History of loss and, per set, loss and metrics by name (graphnn.training.metrics);
    callbacks; `predict`, `evaluate`, `gradients`; checkpoints (`save`/`load`).
    ``backend_options`` go to the backend (the cpu backend takes ``verbose``, ``blas_threads``);
    other keywords are the optimizer's hyperparameters (``mu``, ``beta1``, …).
    ``background_compile``: a compiled backend that can (cpu) starts training on the NumPy
    reference at once and takes over when compiled in the background (switching.py); None is
    on unless $GRAPHNN_BACKGROUND_COMPILE=0, False compiles before the first batch.
    """

    def __init__(self, model, *, backend="numpy", optimizer=None, lr=None, batch_size=None,
                 dtype="float64", seed=0, data: Dataset | None = None, params=None, comm=None,
                 test_fraction=None, validation_split=None, validation_data=None, threshold=None,
                 backend_options=None, background_compile=None, **hyper):
        d = model.defaults
        self.model, self.seed, self.threshold = model, seed, threshold
        spec = optimizer or d.get("optimizer", "sgd")
        check_keywords(hyper, {"Trainer()": TRAINER_KEYWORDS, f"optimizer {_name(spec)!r}": hyper_keywords(spec)},
                       "Trainer()")
        check_trainable(model)
        self.data = None
        self._use_data(data if data is not None else model.data, test_fraction, validation_split, validation_data)
        self.batch_size = batch_size if batch_size is not None else d.get("batch_size")
        if self.batch_size is not None:
            self.batch_size = check_count(self.batch_size, "batch_size")
        lr = lr if lr is not None else d.get("lr")
        check_learning_rate(lr)
        self.optimizer = make_optimizer(spec, lr=lr, **hyper)
        options = backend_options or {}
        background = wants_background(backend, background_compile)
        takes = _backend_keywords(backend, load=not background)
        if takes is not None:
            check_keywords(options, {f"backend {backend!r}": takes}, "backend_options")
        if background:   # the reference trains while the compiled backend is prepared
            self.backend = SwitchingBackend(backend, model, self.optimizer, dtype, params, options=options)
        else:
            self.backend = make_backend(backend, model, self.optimizer, dtype, params, **options)
        # Dropout and input corruption read `training`/`step` inputs (evaluation mode by
        # default); training steps must switch them on, on every backend.
        if uses_training_mode(model.graph.nodes):
            self.backend = TrainingFeeds(self.backend)
        # comm (graphnn/distributed.py): data-parallel over ranks; the same seed and batch
        # order everywhere, each rank computes its shard of every batch. Rank 0 logs.
        self.comm = comm
        if comm is not None:
            if self.data is None:
                raise ValueError("data-parallel training needs its data when the Trainer is built: pass data=")
            self.backend = DataParallel(self.backend, comm, self.data.train,
                                        settings={"batch_size": self.batch_size, "seed": seed})
        self.rng = np.random.default_rng(seed)
        # exact resume mid-epoch: the generator's state before this epoch's order was drawn,
        # how many of its batches are done, and how many a resumed run must skip
        self._epoch_rng, self._batch_pos, self._skip = self.rng.bit_generator.state, 0, 0
        self.history = History()
        self.epoch = 0
        self.step = 0             # updates done, over every fit and before a resume: rows' "step"
        self.stopped_early = False
        self.early_stopping = None
        self.kept_row = None      # the history row whose parameters the trainer holds after fit

    @property
    def params(self) -> dict:
        return self.backend.params

    def set_params(self, values: dict) -> None:
        """Overwrite parameters in place, on any backend. ``values``: the model's parameters
        (nodes, or names as `graphnn.evaluate` takes them) → arrays of exactly their shape (a
        scalar fills no matrix), all checked before any is set; a `FeedError` names the culprit."""
        graph = self.model.graph
        for p in values:
            if isinstance(p, Node) and p not in graph:   # resolve() would skip it: not here
                raise FeedError(f"{p.kind} {describe(p)} is not a parameter of model {self.model.name!r}")
        checked = {p: check_value(p, v) for p, v in resolve(graph, values, "parameter").items()}
        check_finite_feeds(checked, "parameter")   # NaN set here was blamed on the learning rate later
        setter = getattr(self.backend, "set_params", None)
        if setter is not None:
            return setter(checked)
        for p, v in checked.items():
            self.params[p][...] = v

    # -- data ------------------------------------------------------------------------------
    def _use_data(self, data, test_fraction=None, validation_split=None, validation_data=None):
        """Take ``data`` (a Dataset, or None), with the held-out sets asked for."""
        if data is None:
            if test_fraction is not None or validation_split is not None:
                raise ValueError(f"model {self.model.name!r} has no data to split; pass data= or arrays to fit()")
            self.data = None
            return
        inputs, classes = self.model.inputs, class_targets(self.model)
        data = Dataset(*(None if f is None else as_feeds(inputs, f, class_inputs=classes)
                         for f in (data.train, data.test)),
                       classes=data.classes,
                       validation=None if data.validation is None else as_feeds(inputs, data.validation,
                                                                                class_inputs=classes))
        if test_fraction is not None:
            data = with_test_split(data, test_fraction, self.seed)
        if validation_data is not None:
            if validation_split is not None:
                raise ValueError("give validation_split= or validation_data=, not both")
            given = validation_data if isinstance(validation_data, dict) else \
                as_feeds(inputs, *validation_data, class_inputs=classes)
            data = dataclasses.replace(data, validation=as_feeds(inputs, given, class_inputs=classes))
        elif validation_split is not None:
            if data.validation is not None:
                raise ValueError("the data already has a validation set; validation_split splits data that has none")
            train, held = hold_out(data.train, validation_split, self.seed)
            data = dataclasses.replace(data, train=train, validation=held)
        check_data(self.model, data)
        self.data = data

    def _feeds(self, x, y=None) -> dict:
        return as_feeds(self.model.inputs, x, y, class_inputs=class_targets(self.model))

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

    # -- training --------------------------------------------------------------------------
    def fit(self, x=None, y=None, *, epochs=None, steps=None, validation_split=None, validation_data=None,
            callbacks=(), log=None, log_every=None, progress=None, early_stopping=None, monitor=None,
            restore_best=True, **unknown):
        """Run ``epochs`` passes over the data, or ``steps`` more updates; return the History.

        Rows are numbered by the trainer's own counts (``epoch``, ``step``: updates done), which
        go on over every fit and from a loaded checkpoint: a second ``fit(steps=5)`` logs steps
        6 … 10.

        ``x``, ``y``: training arrays (or a feeds dict) replacing the training data (a test set
        stays), or a `Dataset` replacing all; ``y`` may hold class indices where the model
        takes one-hot targets.
        ``validation_split`` / ``validation_data`` (x, y): a validation set. ``callbacks``: see
        graphnn.training.callbacks. ``log(row)`` is called with each history row (the CLI
        prints them). ``progress``: True/False, or None for a tqdm bar on long runs (≥ 20
        epochs or ≥ 1000 steps). ``early_stopping=k`` stops after k rows without improvement
        of ``monitor`` (default 'val_loss' with validation data, else 'loss') and, with
        ``restore_best``, puts back the parameters of the best row.
        Any other keyword is a `KeywordError` naming it (a `Trainer()` keyword, such as
        ``batch_size``, as one), before anything trains.
        """
        if unknown:
            _check_fit_keywords(unknown)
        if x is not None:
            # arrays replace the training data; a test set the trainer has stays (it is only reported)
            data = x if isinstance(x, Dataset) else Dataset(self._feeds(x, y), self.data and self.data.test)
            if self.comm is not None:   # data-parallel: every rank must hold the same (e.g. a seeded draw)
                self.backend.agree_on_data(data.train)
            self._use_data(data, validation_split=validation_split, validation_data=validation_data)
        elif validation_split is not None or validation_data is not None:
            self._use_data(self.data, validation_split=validation_split, validation_data=validation_data)
        if self.data is None:
            raise ValueError(f"model {self.model.name!r} has no data; pass arrays (fit(x, y)) or data=Dataset(...)")
        if epochs is None and steps is None:
            epochs, steps = self.model.defaults.get("epochs"), self.model.defaults.get("steps")
        if (epochs is None) == (steps is None):
            raise ValueError("give exactly one of epochs= or steps=")
        if epochs is not None:
            epochs = check_count(epochs, "epochs", least=0)
        else:
            steps = check_count(steps, "steps", least=0)
        callbacks = list(callbacks)
        if early_stopping:
            default = "val_loss" if self.data.validation is not None else "loss"
            callbacks.append(EarlyStopping(int(early_stopping), monitor or default, restore_best=restore_best))
        self.early_stopping = next((c for c in callbacks if isinstance(c, EarlyStopping)), None)
        self._run(epochs, steps, callbacks, log, log_every, progress)
        return self.history

    def _run(self, epochs, steps, callbacks, log, log_every, progress):
        total = epochs if epochs is not None else steps
        show = progress if progress is not None else total >= (20 if epochs is not None else 1000)
        if self.comm is not None and self.comm.rank != 0:
            show = False
        bar = progress_bar(total, "epoch" if epochs is not None else "step", show)
        self.stopped_early = False
        # NaN/inf in the training arrays: named by their row in the data, on every backend and
        # schedule, before any update (a batch's check named the row inside the batch)
        by_name = {n.name: n for n in self.model.inputs}
        check_finite_feeds({by_name[k]: v for k, v in self.data.train.items() if k in by_name})
        self._check_schedules(epochs, steps)
        # a background compile needs evaluate too if rows measure a held-out set (or, by steps, the loss)
        start_of_training(self.backend, steps is not None or self.data.validation is not None
                          or self.data.test is not None)
        for cb in callbacks:
            cb.on_train_begin(self)

        def after(row):   # every callback sees every row; any of them may stop training
            stop = [bool(cb.on_epoch_end(self, row)) for cb in callbacks]
            self.stopped_early = any(stop)
            return self.stopped_early

        try:
            if steps is not None:
                self._fit_steps(self.data.train, steps, log, log_every or max(1, steps // 10), bar, after)
            else:
                for _ in range(epochs):
                    batches = self._batches()
                    loss = self.backend.train_epoch(self.data.train, batches)
                    self.epoch += 1
                    self.step += len(batches)
                    self._batch_pos = 0
                    row = self._record(log, bar, epoch=self.epoch, loss=loss)
                    bar.update(1)
                    if after(row):
                        break
        except BaseException:
            bar.close()
            end_of_training(self.backend, quiet=True)   # a background compile stops with training
            raise
        bar.close()
        end_of_training(self.backend)
        self.kept_row = self.history.records[-1] if self.history.records else None
        for cb in callbacks:
            cb.on_train_end(self)

    def _check_schedules(self, epochs, steps) -> None:
        """Every scheduled hyperparameter over the updates this fit will make, before the first:
        a learning rate that turns negative at update 6 stopped a run after 5 (the optimizer's
        own check, `Optimizer.hyper_table`, names the step)."""
        if not self.optimizer.schedules:
            return
        size = self._effective_batch_size()
        planned = steps if steps is not None else epochs * (-(-self.data.n_train // size) if size else 1)
        if planned:
            self.optimizer.hyper_table(self.step + 1, planned)

    def _fit_steps(self, feeds, steps, log, log_every, bar, after):
        done = 0
        while done < steps:
            batches = self._batches()
            total = self._batch_pos + len(batches)
            try:
                for idx in batches:
                    self.backend.train_step({k: v[idx] for k, v in feeds.items()})
                    done += 1
                    self.step += 1
                    self._batch_pos += 1
                    bar.update(1)
                    if done % log_every == 0 or done == steps:
                        # the loss after the update, as the course reports "E after n steps";
                        # numbered by the trainer's count, so a resumed run goes on from where it was
                        row = self._record(log, bar, step=self.step, loss=self.backend.loss(feeds))
                        if after(row):
                            return
                    if done == steps:
                        return
            finally:
                if self._batch_pos == total:   # its last batch is done: the epoch is complete
                    self.epoch += 1
                    self._batch_pos = 0
                elif self._batch_pos:          # stopped mid-epoch: the next fit goes on with this epoch's order
                    self.rng.bit_generator.state = self._epoch_rng
                    self._skip = self._batch_pos

    def _record(self, log, bar=None, **row):
        for prefix, feeds in (("val", self.data.validation), ("test", self.data.test)):
            if feeds is not None:
                row.update({f"{prefix}_{k}": v for k, v in self._measure(feeds).items()})
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

    # -- measuring -------------------------------------------------------------------------
    def _measure(self, feeds) -> dict:
        """{'loss': …, metric: …} of the current parameters on ``feeds`` (evaluation mode)."""
        require_examples(feeds)
        if hasattr(self.backend, "evaluate"):   # loss and output in one pass
            loss, out = self.backend.evaluate(feeds)
        else:
            loss, out = self.backend.loss(feeds), self.backend.predict(feeds)
        target = self._target(feeds)
        found = metrics.compute(self.model, out, target, self.threshold) if target is not None else {}
        return {"loss": float(loss), **found}

    def _target(self, feeds):
        inputs = self.model.inputs
        return feeds.get(inputs[1].name) if len(inputs) > 1 else None

    def evaluate(self, x=None, y=None, *, split="test") -> dict:
        """{'loss': …, the task's metrics by name} on ``x``, ``y`` or a split ('train', 'validation', 'test')."""
        return self._measure(self._feeds(x, y) if x is not None else self._split(split))

    def predict(self, x):
        """The model's output for inputs ``x`` (an array for the first input, or feeds), in
        evaluation mode (dropout off)."""
        return np.asarray(self.backend.predict(self._feeds(x)))

    def gradients(self, x, y=None) -> dict:
        """{trainable parameter: ∂loss/∂parameter} on ``x``, ``y`` (or feeds) with the current
        parameters, from the backend's compiled gradient (evaluation mode; nothing is updated)."""
        backend = self.backend
        while isinstance(backend, (TrainingFeeds, DataParallel)):   # no training mode, no all-reduce
            backend = backend.inner
        _, flat = backend.gradients(self._feeds(x, y))
        flat, out, offset = np.asarray(flat), {}, 0
        for p in self.model.params:
            size = int(np.prod(p.shape))
            out[p] = flat[offset:offset + size].reshape(p.shape).copy()
            offset += size
        return out

    def loss(self, split="train") -> float:
        return self.backend.loss(self._split(split))

    def accuracy(self, split="test", out=None) -> float:
        """Accuracy on a set: top-1 for several output units, thresholded for one (metrics.py)."""
        feeds = self._split(split)
        if out is None:
            out = self.backend.evaluate(feeds)[1] if hasattr(self.backend, "evaluate") else \
                self.backend.predict(feeds)
        return metrics.accuracy(out, self._target(feeds), metrics.binary_threshold(self.model, self.threshold))

    def _split(self, split):
        if self.data is None:
            raise ValueError(f"model {self.model.name!r} has no data")
        sets = {"train": self.data.train, "validation": self.data.validation, "val": self.data.validation,
                "test": self.data.test}
        if split not in sets:
            raise ValueError(f"split must be 'train', 'validation' or 'test', not {split!r}")
        if sets[split] is None:
            raise ValueError(f"model {self.model.name!r} has no {split} data")
        return sets[split]

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
                               optimizer=self.optimizer, batch_size=self._effective_batch_size())

    def load(self, path) -> "Trainer":
        """Load a checkpoint saved from the same graph (another graph, a bad file: `CheckpointError`).

        Under data-parallel training rank 0 reads it and broadcasts it to the other ranks.
        """
        ck = read_checkpoint(path, self.model, self.comm)
        import_state(self.backend, ck, path)
        self.epoch, self.step = ck.epoch, int(ck.steps)
        if "rng" in ck.meta:  # the batch order continues where the saved run stopped
            self.rng.bit_generator.state = ck.meta["rng"]
        done = resumed_batches(ck, path, self._effective_batch_size())
        self._epoch_rng, self._batch_pos = self.rng.bit_generator.state, done
        self._skip = self._batch_pos
        return self

    def _effective_batch_size(self) -> int | None:
        """The size of this run's batches: None for full batch (one batch an epoch)."""
        n = self.data.n_train if getattr(self, "data", None) is not None else None
        return None if not self.batch_size or (n is not None and self.batch_size >= n) else int(self.batch_size)

    def plot(self, path, title=None) -> str:
        """Training curves (loss, test loss, test accuracy) as a PNG."""
        if self.comm is not None and self.comm.rank != 0:  # data-parallel: rank 0 alone writes
            return str(path)
        return plot_history(self.history, path, title=title or f"{self.model.name} ({getattr(self.backend, 'name', '')})")


#: Trainer()'s own keywords; the backend factory's positional arguments
TRAINER_KEYWORDS = keywords_of(Trainer.__init__) - {"model"}
FIT_KEYWORDS = keywords_of(Trainer.fit) - {"x", "y"}
BACKEND_ARGUMENTS = {"model", "optimizer", "dtype", "params"}


def _check_fit_keywords(given) -> None:
    """Raise `KeywordError` for ``given``, keywords fit does not take: a Trainer() keyword is
    named as one (docs/own-data.md sets batch_size there), a typo gets its closest match."""
    for k in given:
        if k in TRAINER_KEYWORDS:
            raise KeywordError(f"Trainer.fit() takes no {k!r}: it is a Trainer() keyword; give it as "
                               f"Trainer(model, {k}=...), or use gn.fit(model, x, y, {k}=...)")
    check_keywords(given, {"Trainer.fit()": FIT_KEYWORDS, "Trainer()": TRAINER_KEYWORDS}, "Trainer.fit()")


def _name(spec):
    return spec.name if isinstance(spec, Optimizer) else spec


def hyper_keywords(spec) -> set:
    """The hyperparameters optimizer ``spec`` (a name or an instance) takes."""
    if isinstance(spec, Optimizer):
        return set(spec.hyper)
    cls = OPTIMIZERS.get(spec)
    return set(cls.defaults) if cls is not None else set()


def _backend_keywords(name, load=True):
    """The keyword options backend ``name`` takes (None: any); from its registry entry where
    that lists them and ``load`` is False (the backend is not imported yet)."""
    entry = BACKENDS.get(name)
    if not load and isinstance(entry, LazyBackend) and entry.options is not None:
        return set(entry.options)
    factory = backend_factory(name)
    return None if takes_any(factory) else keywords_of(factory) - BACKEND_ARGUMENTS


def fit(model, x=None, y=None, **kw):
    """Train ``model`` and return the Trainer: ``fit(model, x, y, epochs=20, backend='cpu',
    validation_split=0.1)``. Keywords go to `Trainer` (backend, lr, batch_size, …), to
    `Trainer.fit` (epochs, callbacks, early_stopping, progress, …) or to the optimizer
    (mu, beta1, …); any other is an error listing each one's valid keywords."""
    spec = kw.get("optimizer") or model.defaults.get("optimizer", "sgd")
    hyper = hyper_keywords(spec)
    check_keywords(kw, {"Trainer()": TRAINER_KEYWORDS, "fit()": FIT_KEYWORDS,
                        f"optimizer {_name(spec)!r}": hyper}, "fit()")
    trainer = Trainer(model, **{k: v for k, v in kw.items() if k not in FIT_KEYWORDS})
    trainer.fit(x, y, **{k: v for k, v in kw.items() if k in FIT_KEYWORDS})
    return trainer
