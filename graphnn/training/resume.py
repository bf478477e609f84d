"""Exact resume: what a backend must give a checkpoint, and take back from one.

A training run is fully described by its parameters, the optimizer's state buffers, the
optimizer's step counter (Adam's bias correction), the training-mode step that seeds
dropout masks and input noise (`TrainingFeeds`), and the Trainer's batch order (kept by
the Trainer itself). Backends are reached through their wrappers (`TrainingFeeds`,
data-parallel): the innermost one holds the values. A backend whose ``params``/``state``
are not live host arrays (CUDA) offers ``export_state()`` and ``import_state(params,
state)``; the others are read and written in place.

Under MPI the checkpoint is read on rank 0 only and broadcast, so every rank starts from
the same values whether or not the file is visible to it.
"""
from __future__ import annotations

import numpy as np

from .checkpoint import Checkpoint, CheckpointError, check_state_names, load_checkpoint


def chain(backend) -> list:
    """The backend and every backend it wraps, outermost first."""
    out = [backend]
    while getattr(out[-1], "__dict__", {}).get("inner") is not None:
        out.append(out[-1].__dict__["inner"])
    return out


def core(backend):
    """The innermost backend: the one that owns the parameter values and the step counter."""
    return chain(backend)[-1]


def export_state(backend) -> tuple:
    """(params {node: array}, optimizer state {node: {name: array}}, counters {name: int})."""
    inner = core(backend)
    if hasattr(inner, "export_state"):
        params, state = inner.export_state()
    else:
        params, state = inner.params, getattr(inner, "state", None) or {}
    counters = {"steps": int(getattr(inner, "steps", 0))}
    for wrapper in chain(backend)[:-1]:
        if "count" in vars(wrapper):          # TrainingFeeds: the dropout/noise step
            counters["training_step"] = int(wrapper.count)
    return params, state, counters


def import_state(backend, ck: Checkpoint, path) -> None:
    """Put a checkpoint's parameters, optimizer state and counters into ``backend``."""
    _, ours, _ = export_state(backend)
    check_state_names(ck, ours, path)
    put_state(core(backend), ck.params, ck.state, int(ck.steps))
    for wrapper in chain(backend)[:-1]:
        if "count" in vars(wrapper):
            wrapper.count = int(ck.counters.get("training_step", ck.steps))


def put_state(inner, params, state, steps) -> None:
    """Write parameters, optimizer state and the update count into an innermost backend."""
    if hasattr(inner, "import_state"):
        inner.import_state(params, state)
    else:
        for p, v in params.items():
            inner.params[p][...] = v
        for p, per in state.items():
            for s, v in per.items():
                inner.state[p][s][...] = v
    if hasattr(inner, "steps"):
        inner.steps = int(steps)


def copy_state(source, target) -> None:
    """Move a run from one innermost backend to another of the same model and optimizer
    (the reference to compiled code, graphnn.training.switching): everything a checkpoint
    would hold, so the run continues exactly."""
    params, state, counters = export_state(source)
    put_state(target, params, state, counters["steps"])


def read_checkpoint(path, model, comm=None) -> Checkpoint:
    """`load_checkpoint`, on rank 0 only under data-parallel training, broadcast to the others."""
    if comm is None or comm.size == 1:
        return load_checkpoint(path, model)
    payload = None
    if comm.rank == 0:
        ck = load_checkpoint(path, model)
        order = list(model.parameters)
        payload = {"params": [np.asarray(ck.params[p]) for p in order],
                   "state": [ck.state.get(p, {}) for p in order],
                   "steps": ck.steps, "epoch": ck.epoch, "meta": ck.meta}
    payload = comm.bcast(payload)   # a rank 0 that failed to read has told the others (guard)
    order = list(model.parameters)
    return Checkpoint(dict(zip(order, payload["params"])),
                      {p: s for p, s in zip(order, payload["state"]) if s},
                      payload["steps"], payload["epoch"], payload["meta"])


def resumed_batches(ck: Checkpoint, path, batch_size) -> int:
    """How many of this epoch's batches of ``batch_size`` (None: full batch) the checkpoint's
    run had trained: its own count when it used the same size (or did not record one); the
    same examples in batches of another size when they divide evenly; else a `CheckpointError`
    (a resumed epoch would skip or repeat examples without a word)."""
    done = int(ck.meta.get("batch_in_epoch", 0))
    saved = ck.meta.get("batch_size")
    if not done or "batch_size" not in ck.meta or saved == batch_size:
        return done
    examples = done * saved
    if batch_size is not None and examples % batch_size == 0:
        return examples // batch_size
    now = "full batches" if batch_size is None else f"batches of {batch_size}"
    raise CheckpointError(f"{path} stopped mid-epoch, after {done} batches of {saved} ({examples} examples); "
                          f"{now} cannot start at example {examples + 1} of that epoch's order: resume with "
                          f"batch size {saved}, or from a checkpoint saved at the end of an epoch")
