"""Callbacks, as Keras users know them: ``Trainer.fit(..., callbacks=[...])``.

A callback may define ``on_train_begin(trainer)``, ``on_epoch_end(trainer, row)`` — after
every history row: each epoch, or each logged step with ``steps=`` — returning True to
stop training, and ``on_train_end(trainer)``. Rows hold 'loss', 'val_loss' and
'val_<metric>' (with validation data), 'test_loss' and 'test_<metric>' (with test data);
metrics by name in graphnn.training.metrics.
"""
from __future__ import annotations

import numpy as np

from .metrics import larger_is_better


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_end(self, trainer, row):
        return False

    def on_train_end(self, trainer):
        pass


class LambdaCallback(Callback):
    """Hooks from plain functions: ``LambdaCallback(on_epoch_end=lambda trainer, row: …)``."""

    def __init__(self, on_epoch_end=None, on_train_begin=None, on_train_end=None):
        self._end, self._begin, self._train_end = on_epoch_end, on_train_begin, on_train_end

    def on_train_begin(self, trainer):
        if self._begin:
            self._begin(trainer)

    def on_epoch_end(self, trainer, row):
        return bool(self._end(trainer, row)) if self._end else False

    def on_train_end(self, trainer):
        if self._train_end:
            self._train_end(trainer)


class _Monitor:
    """Tracks the best value of one row key; direction from the metric's name, or ``mode``."""

    def __init__(self, monitor, mode="auto", min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', not {mode!r}")
        self.monitor, self.min_delta = monitor, min_delta
        self.maximize = larger_is_better(monitor) if mode == "auto" else mode == "max"
        self.best, self.best_row = None, None

    def improved(self, row) -> bool:
        if self.monitor not in row:
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, but the history rows have "
                             f"{sorted(row)} (validation metrics need validation_split= or validation_data=)")
        value = row[self.monitor]
        better = self.best is None or (value > self.best + self.min_delta if self.maximize
                                       else value < self.best - self.min_delta)
        if better:
            self.best, self.best_row = value, dict(row)
        return better


class EarlyStopping(_Monitor, Callback):
    """Stop when ``monitor`` has not improved for ``patience`` rows; with ``restore_best``, put
    back the parameters of the best row when training ends."""

    def __init__(self, patience: int, monitor: str = "val_loss", min_delta: float = 0.0, mode="auto",
                 restore_best=True):
        if patience < 1:
            raise ValueError(f"early stopping patience must be at least 1, not {patience}")
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best = patience, restore_best
        self.best_params, self.bad = None, 0

    def update(self, row, params) -> bool:
        """Record ``row``; True when training should stop."""
        if self.improved(row):
            self.bad = 0
            self.best_params = {p: np.array(v, copy=True) for p, v in params.items()}
        else:
            self.bad += 1
        return self.bad >= self.patience

    def on_epoch_end(self, trainer, row):
        return self.update(row, trainer.params)

    def on_train_end(self, trainer):
        if self.restore_best and self.best_params is not None:
            trainer.set_params(self.best_params)
            trainer.kept_row = self.best_row


class ModelCheckpoint(_Monitor, Callback):
    """Save a checkpoint (`Trainer.save`) after every row, or only when ``monitor`` improves
    (``best_only``). ``path`` may hold ``{epoch}`` or ``{step}`` to keep one file per row.
    ``epochs_only``: save after whole epochs only, never after a logged step (what
    ``graphnn train --checkpoint`` does: a steps run writes its checkpoint at the end)."""

    def __init__(self, path, monitor: str = "val_loss", best_only=False, mode="auto", epochs_only=False):
        super().__init__(monitor, mode)
        self.path, self.best_only, self.epochs_only = str(path), best_only, epochs_only
        self.saved: list = []

    def on_epoch_end(self, trainer, row):
        if self.epochs_only and "epoch" not in row:
            return False
        if self.best_only and not self.improved(row):
            return False
        path = self.path.format(epoch=row.get("epoch", trainer.epoch), step=row.get("step", ""))
        self.saved.append(trainer.save(path))
        return False


__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "ModelCheckpoint"]
