"""Deprecated: training moved to `graphnn.training` (kept for one release).

``from graphnn.train import Trainer`` still works, with a DeprecationWarning; write
``from graphnn.training import Trainer`` (or ``graphnn.Trainer``).
"""
import warnings

from .training import (BACKENDS, EarlyStopping, History, NumpyBackend, Trainer, epoch_by_steps,  # noqa: F401
                       fit, make_backend)

warnings.warn("graphnn.train is deprecated; use graphnn.training (Trainer, fit, make_backend, BACKENDS)",
              DeprecationWarning, stacklevel=2)
