"""NaN and inf on the compiled backends: cheap checks while training, the reference to name the node.

Compiled code never tests each value (that would cost what it saves). Instead:

- the data are checked once, when a backend first converts them (`check_finite_feeds`,
  graphnn.evaluate: the reference backend makes the same check);
- each step's loss is a number the backend returns anyway, and its gradient buffer gets a
  one-pass check (`step_is_finite`), before the update touches the parameters;
- a whole compiled epoch (`guarded_epoch`) keeps a copy of the parameters and optimizer
  state from its start and checks its total loss and the parameters at its end.

On a non-finite value the step is replayed on the NumPy reference (`name_nonfinite`), which
raises `NonFiniteError` naming the first node that produced it, exactly as
``backend='numpy'`` does; the backend's parameters are left as they were before that step.
Training therefore stops before any checkpoint of the bad values can be written.
"""
from __future__ import annotations

import math

import numpy as np

from graphnn.errors import NonFiniteError
from graphnn.evaluate import bind, check_finite_feeds
from graphnn.ops.base import describe


def step_is_finite(loss, flat_grad) -> bool:
    """The loss and every gradient finite?"""
    if not math.isfinite(loss):
        return False
    # g · 0 is 0 for finite g and NaN for NaN/inf (exact, never an overflow): one BLAS pass,
    # ~2 µs for 10k values, half of np.isfinite(g).all()
    zeros = _ZEROS.get((flat_grad.size, flat_grad.dtype))
    if zeros is None:
        zeros = _ZEROS[(flat_grad.size, flat_grad.dtype)] = np.zeros(flat_grad.size, flat_grad.dtype)
    with np.errstate(invalid="ignore"):
        return math.isfinite(flat_grad.reshape(-1).dot(zeros))


_ZEROS: dict = {}


def name_nonfinite(backend, feeds, step: int):
    """Replay one training step on the reference from ``backend``'s current values and raise.

    ``feeds``: the step's batch (names or nodes -> arrays, training-mode inputs included).
    Raises `NonFiniteError`: the reference's (naming the first node), or one saying which
    parameter is already non-finite, or that only the compiled code produced it.
    """
    from graphnn.graph import Graph
    from graphnn.training.backends import NumpyBackend

    bound = bind(Graph([backend.model.loss]), feeds, None, backend.dtype)
    check_finite_feeds({n: v for n, v in bound.items() if n.kind == "input"})
    params, state = backend.export_state() if hasattr(backend, "export_state") else (backend.params, backend.state)
    for p, value in params.items():
        if not np.isfinite(value).all():
            raise NonFiniteError(f"training step {step}: parameter {describe(p)} already holds NaN/inf, so the "
                                 "previous update overflowed; lower the learning rate", p)
    ref = NumpyBackend(backend.model, backend.optimizer, backend.dtype, params=params)
    for p, per in state.items():
        for s, v in per.items():
            ref.state[p][s][...] = v
    ref.steps = step - 1
    ref.train_step(feeds)   # raises NonFiniteError("training step {step}: …") naming the node
    raise NonFiniteError(f"training step {step}: the compiled {backend.name!r} backend computed a NaN/inf loss "
                         f"or gradient, but the NumPy reference ({np.dtype(backend.dtype).name}) computes this "
                         "step finite: please report it as a codegen bug")


def guarded_epoch(backend, run, feeds, batches, snapshot, restore, params_finite) -> float:
    """``run()`` (a compiled epoch returning its total loss), checked at its end.

    On NaN/inf: ``restore(snapshot())``-taken values from before the epoch come back and the
    epoch is replayed step by step through ``backend.train_step`` (checked), which raises at
    the first bad step.
    """
    saved = snapshot()
    total = run()
    if math.isfinite(total) and params_finite():
        return total
    restore(saved)
    for idx in batches:
        backend.train_step({k: v[idx] for k, v in feeds.items()})
    if not params_finite():
        raise NonFiniteError(f"training step {backend.steps}: the last update of the epoch made a parameter "
                             "NaN/inf; lower the learning rate")
    raise NonFiniteError(f"the compiled {backend.name!r} epoch produced a NaN/inf loss, but replaying it step by "
                         "step did not: please report it as a codegen bug")


def check_result(backend, what: str, feeds, *values) -> None:
    """Raise unless ``values`` (a compiled ``predict``/``evaluate``/``loss``'s loss and output)
    are finite: the reference then computes ``what`` on ``feeds`` from the backend's parameters
    and raises `NonFiniteError` naming the first node, as ``backend='numpy'`` does."""
    if all(np.isfinite(v).all() for v in values):
        return
    from graphnn.training.backends import NumpyBackend

    params = backend.export_state()[0] if hasattr(backend, "export_state") else backend.params
    getattr(NumpyBackend(backend.model, backend.optimizer, backend.dtype, params=params), what)(feeds)
    raise NonFiniteError(f"{what}: the compiled {backend.name!r} backend computed NaN/inf, but the NumPy reference "
                         f"({np.dtype(backend.dtype).name}) computes it finite: please report it as a codegen bug")
