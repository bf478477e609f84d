"""Backends: who runs the steps. The protocol, the NumPy reference, and the registry by name.

A backend owns the parameter values and runs forward, backward and update; the `Trainer`
owns the schedule. Every backend offers the methods of `Backend`. 'numpy' (the
reference, here) is always there; compiled backends are *registered by name and loaded on
first use* (``'cpu' → 'codegen.backend:CpuBackend'``), so importing graphnn imports no
compiler, and a backend that cannot load says what it needs and the import error that
stopped it.

Dropout and input corruption read two ordinary inputs, ``training`` and ``step``
(graphnn.ops.dropout); `TrainingFeeds` feeds them during training steps on any backend.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..autodiff import grad
from ..errors import GraphnnError, NonFiniteError, UnknownNameError
from ..evaluate import Evaluator, check_finite_feeds, resolve_dtype
from ..ops.dropout import STEP, TRAINING


class BackendUnavailableError(GraphnnError, ImportError):
    """A registered backend whose code (or a library it needs) cannot be imported."""


class Backend(Protocol):
    """What the Trainer (and data-parallel training) use of a backend.

    ``params``: node -> array (the live values; updates are visible at once); ``steps``:
    updates applied so far; ``state``: node -> {optimizer state name: array}. The flat
    gradient layout of `gradients`/`apply_gradients` is the trainable parameters of
    ``model.params`` (graph order), each raveled C-order, concatenated.
    """

    name: str
    params: dict
    steps: int

    def train_step(self, feeds) -> float: ...
    def train_epoch(self, feeds, batches) -> float: ...
    def gradients(self, feeds) -> tuple: ...
    def apply_gradients(self, flat_grad) -> None: ...
    def loss(self, feeds) -> float: ...
    def predict(self, feeds): ...
    def evaluate(self, feeds) -> tuple: ...


def epoch_by_steps(train_step, feeds, batches) -> float:
    """An epoch as one ``train_step`` call per batch from Python; the mean loss per example."""
    total, count = 0.0, 0
    for idx in batches:
        total += train_step({k: v[idx] for k, v in feeds.items()}) * len(idx)
        count += len(idx)
    return total / count


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
        self._evaluate = Evaluator([model.loss, model.output])
        start = params or model.initial_params()
        self.params = {p: np.array(start[p], dtype=self.dtype) for p in model.parameters}
        self.state = optimizer.init_state({p: self.params[p] for p in self.trainable})
        self.steps = 0
        self._flat = np.empty(sum(self.params[p].size for p in self.trainable), self.dtype)
        self._inputs = {n.name: n for n in model.graph.inputs}
        self._checked: dict = {}   # input name -> the training array last checked for NaN/inf

    def train_step(self, feeds) -> float:
        loss, *grads = self._checked_step(feeds)
        self.steps += 1
        self.optimizer.update({p: self.params[p] for p in self.trainable},
                              dict(zip(self.trainable, grads)), self.state, self.steps)
        return float(loss)

    def _checked_step(self, feeds):
        """Loss and gradients of one step; a NaN/inf is named with the step's number, as every
        backend names it (codegen/finite.py)."""
        try:
            return self._step(feeds, self.params, dtype=self.dtype)
        except NonFiniteError as e:
            raise NonFiniteError(f"training step {self.steps + 1}: {e}", e.node) from None

    # train_step split in two, for data-parallel training (training/distributed.py): the
    # gradients in ONE flat buffer that an all-reduce can sum in place, then the update.
    def gradients(self, feeds):
        """Forward + backward on ``feeds``: (loss, flat gradient), no update."""
        loss, *grads = self._checked_step(feeds)
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
        """One epoch over ``batches`` (index arrays); the mean loss per example.

        The training arrays are checked for NaN/inf once each, on entry, as the compiled
        backends check them (graphnn.evaluate.check_finite_feeds): bad data are named before
        any update, not as the first node to compute with them."""
        for name, value in feeds.items():
            node = self._inputs.get(getattr(name, "name", name))
            if node is not None and self._checked.get(node.name) is not value:
                check_finite_feeds({node: np.asarray(value)})
                self._checked[node.name] = value
        return epoch_by_steps(self.train_step, feeds, batches)

    def loss(self, feeds) -> float:
        return float(self._loss(feeds, self.params, dtype=self.dtype))

    def predict(self, feeds):
        return self._predict(feeds, self.params, dtype=self.dtype)

    def evaluate(self, feeds):
        """(loss, output) of a batch: what the Trainer's test metrics need, in one pass."""
        loss, out = self._evaluate(feeds, self.params, dtype=self.dtype)
        return float(loss), out


# -- the registry ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LazyBackend:
    """A backend known by name whose code loads on first use: ``"package.module:attr"``.

    ``options``: the keyword options it takes, listed so that they can be checked without
    loading it (None: ask the loaded factory). ``background``: ``"module:attr"`` of its
    preparer, if it can compile in the background while the reference trains
    (graphnn.training.switching).
    """

    target: str
    needs: str = ""
    options: tuple | None = None
    background: str = ""

    def load(self, name):
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            needs = f" it needs {self.needs};" if self.needs else ""
            raise BackendUnavailableError(
                f"backend {name!r} cannot load:{needs} importing {module_name} failed with "
                f"{type(e).__name__}: {e}") from e
        return getattr(module, attr)


#: name -> backend class / factory(model, optimizer, dtype, params, **options), or a LazyBackend
BACKENDS: dict = {
    "numpy": NumpyBackend,
    "cpu": LazyBackend("codegen.backend:CpuBackend", "Numba and SciPy (pip install numba scipy)",
                       options=("verbose", "blas_threads"), background="codegen.background:prepare"),
    "cuda": LazyBackend("codegen.cuda:cuda_backend", "NVIDIA's numba-cuda (pip install 'graphnn[cuda]')"),
}


def register_backend(name: str, factory, needs: str = "", *, options=None, background: str = "") -> None:
    """Make a backend available by ``name``: a class/factory, or ``"module:attr"`` loaded lazily
    (``options``, ``background``: see `LazyBackend`)."""
    BACKENDS[name] = LazyBackend(factory, needs, options and tuple(options), background) \
        if isinstance(factory, str) else factory


def backend_factory(name: str):
    """The class/factory registered as ``name`` (loading it if it is lazy)."""
    if name not in BACKENDS:
        raise UnknownNameError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    entry = BACKENDS[name]
    return entry.load(name) if isinstance(entry, LazyBackend) else entry


def make_backend(name, model, optimizer, dtype="float64", params=None, **options):
    """Build backend ``name`` for ``model`` (see `BACKENDS`)."""
    return backend_factory(name)(model, optimizer, dtype=dtype, params=params, **options)


# -- training mode ------------------------------------------------------------------------------

def training_feeds(step: int) -> dict:
    """What a training step adds to its feeds (inputs a graph lacks are ignored)."""
    return {TRAINING.name: 1.0, STEP.name: float(step)}


def uses_training_mode(graph_nodes) -> bool:
    """Whether the graph reads the ``training``/``step`` inputs (dropout, corruption)."""
    return any(n is TRAINING or n is STEP for n in graph_nodes)


class TrainingFeeds:
    """Wrap a backend so that each training step runs in training mode with its step number.

    Everything else (loss, predict, params) is the wrapped backend's, in evaluation mode.
    """

    def __init__(self, backend):
        self.inner = backend
        self.count = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_step(self, feeds) -> float:
        self.count += 1
        return self.inner.train_step({**feeds, **training_feeds(self.count)})

    def gradients(self, feeds):
        """For data-parallel training: one gradient per step, in training mode."""
        self.count += 1
        return self.inner.gradients({**feeds, **training_feeds(self.count)})

    def skip_step(self) -> None:
        """A data-parallel step this rank has no rows of: the step number still moves on (the
        other ranks' masks are step k's; this rank's next rows must get step k + 1's)."""
        self.count += 1

    def train_epoch(self, feeds, batches) -> float:
        # A backend whose epoch numbers the steps itself (``epoch_feeds_steps``: the fed step
        # is the first batch's) runs it whole, compiled; others step per batch from Python.
        if not getattr(self.inner, "epoch_feeds_steps", False):
            return epoch_by_steps(self.train_step, feeds, batches)
        loss = self.inner.train_epoch({**feeds, **training_feeds(self.count + 1)}, batches)
        self.count += len(batches)
        return loss


def with_training_feeds(trainer):
    """Make ``trainer`` feed training=1 and the step number (idempotent); returns it. Under
    data-parallel training it goes under the sharding backend (each shard's feeds)."""
    owner, attr = (trainer.backend, "inner") if getattr(trainer, "comm", None) is not None else (trainer, "backend")
    if not isinstance(getattr(owner, attr), TrainingFeeds):
        setattr(owner, attr, TrainingFeeds(getattr(owner, attr)))
    return trainer
