"""Checkpoints: parameters (and optimizer state) saved with the graph's structural hash.

``np.savez`` files with one array per parameter (by name), the optimizer state, counters
and the hash of the graph that produced them. Loading into a model whose graph has a
different structure is an error naming both graphs — never a silent reshape.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GraphnnError

FORMAT = "graphnn-checkpoint-1"


class CheckpointError(GraphnnError, ValueError):
    """A checkpoint that cannot be loaded into this model (another graph, a bad file)."""


@dataclass
class Checkpoint:
    params: dict                      # parameter node -> array
    state: dict = field(default_factory=dict)   # node -> {state name: array}
    steps: int = 0
    epoch: int = 0
    meta: dict = field(default_factory=dict)


def _key(node, index):
    return node.name or f"param{index}"


def save_checkpoint(path, model, params, *, state=None, steps=0, epoch=0, rng_state=None) -> str:
    """Write ``params`` ({node: array}) of ``model`` to ``path`` (.npz added if missing).

    ``rng_state`` (the Trainer's batch-order generator) makes a resumed run draw the batches
    an uninterrupted one would have drawn.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    nodes = model.parameters
    arrays = {}
    for i, p in enumerate(nodes):
        arrays[f"param/{_key(p, i)}"] = np.asarray(params[p])
        for s, v in ((state or {}).get(p) or {}).items():
            arrays[f"state/{_key(p, i)}/{s}"] = np.asarray(v)
    meta = {"format": FORMAT, "model": model.name, "graph_hash": model.structural_hash(),
            "steps": int(steps), "epoch": int(epoch)}
    if rng_state is not None:
        meta["rng"] = rng_state
    arrays["__meta__"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return str(path)


def load_checkpoint(path, model) -> Checkpoint:
    """Read a checkpoint for ``model``; a file from another graph raises `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        meta = json.loads(str(data.pop("__meta__")))
    except (KeyError, ValueError, OSError) as e:
        raise CheckpointError(f"{path} is not a graphnn checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    ours = model.structural_hash()
    if meta["graph_hash"] != ours:
        raise CheckpointError(
            f"checkpoint {path} was saved from model {meta['model']!r} (graph {meta['graph_hash'][:12]}), "
            f"but model {model.name!r} has graph {ours[:12]}: parameters cannot be loaded into a "
            "different graph")
    params, state = {}, {}
    for i, p in enumerate(model.parameters):
        key = _key(p, i)
        params[p] = data[f"param/{key}"]
        per = {k.rsplit("/", 1)[1]: v for k, v in data.items() if k.startswith(f"state/{key}/")}
        if per:
            state[p] = per
    return Checkpoint(params, state, meta.get("steps", 0), meta.get("epoch", 0), meta)
