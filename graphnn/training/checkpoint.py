"""Checkpoints: parameters, optimizer state and counters, saved with the graph's structural hash.

A checkpoint is a ``.npz`` file (a zip of ``.npy`` entries) holding one array per parameter
and per optimizer-state buffer, keyed by the parameter's *position* in ``model.parameters``
(two parameters may share a display name), and a JSON ``__meta__`` entry: the format, the
model's name and graph hash, the parameters' names and shapes, the step and epoch counters
and what an exact resume needs (the batch-order generator, the position inside the epoch).

Writing is atomic: a temporary file beside the target, fsync'd, then ``os.replace`` — a
crash or ``kill -9`` at any moment leaves the previous checkpoint whole, and a symlink at the
target is replaced, never followed. Non-finite values are never written.

Reading trusts nothing: every entry is looked up by name, its ``.npy`` header checked
(real floating dtype, the parameter's exact shape, a size bounded by the parameter's)
before any data is read, so a crafted file cannot make the loader allocate more than the
model itself; the metadata is validated field by field. Anything wrong is one
`CheckpointError` naming the file and what is wrong with it.
"""
from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GraphnnError, NonFiniteError
from ..files import atomic_write, not_a_file

FORMAT = "graphnn-checkpoint-2"
OLD_FORMAT = "graphnn-checkpoint-1"      # keyed by display name; still read when names are unique
META = "__meta__"
MAX_META_CHARS = 1 << 20                 # the JSON metadata: a megabyte is far more than it needs
COUNTERS = ("steps", "epoch", "batch_in_epoch")


class CheckpointError(GraphnnError, ValueError):
    """A checkpoint that cannot be loaded into this model (another graph, a bad file)."""


@dataclass
class Checkpoint:
    params: dict                      # parameter node -> array
    state: dict = field(default_factory=dict)   # node -> {state name: array}
    steps: int = 0
    epoch: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def counters(self) -> dict:
        """Counters besides steps/epoch (e.g. the training-mode step of dropout/noise)."""
        return dict(self.meta.get("counters") or {})


def checkpoint_path(path) -> Path:
    """Where ``path`` is saved: ``.npz`` appended unless it ends so (``ck`` → ``ck.npz``)."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _existing(path) -> Path:
    """The file ``--resume path`` means: ``path`` itself, else ``path.npz`` (what saving it wrote)."""
    path = Path(path)
    if not path.is_file() and checkpoint_path(path).is_file():
        return checkpoint_path(path)
    if not path.is_file():
        raise not_a_file("checkpoint", path)
    return path


# -- writing -----------------------------------------------------------------------------------

def save_checkpoint(path, model, params, *, state=None, steps=0, epoch=0, rng_state=None,
                    batch_in_epoch=0, counters=None, optimizer=None, batch_size=None) -> str:
    """Write ``params`` ({node: array}) of ``model`` to ``path`` (.npz added if missing), atomically.

    ``state``: {node: {name: array}} optimizer state; ``rng_state`` (the Trainer's
    batch-order generator, as it was when the current epoch's order was drawn) and
    ``batch_in_epoch`` make a resumed run draw the batches an uninterrupted one would have
    drawn (``batch_size``: the size those batches had, None for full batch); ``counters``
    are other named step counters. Non-finite values raise
    `NonFiniteError` and write nothing (the previous checkpoint stays).
    """
    path = checkpoint_path(path)
    arrays, names, state_names = {}, [], []
    for i, p in enumerate(model.parameters):
        value = _finite(np.asarray(params[p]), f"parameter {_label(p, i)}", path)
        arrays[f"param/{i}"] = value
        names.append([p.name, list(p.shape)])
        per = (state or {}).get(p) or {}
        state_names.append(sorted(per))
        for s in sorted(per):
            arrays[f"state/{i}/{s}"] = _finite(np.asarray(per[s]), f"optimizer state {s!r} of {_label(p, i)}", path)
    meta = {"format": FORMAT, "model": model.name, "graph_hash": model.structural_hash(),
            "params": names, "state": state_names, "steps": int(steps), "epoch": int(epoch),
            "batch_in_epoch": int(batch_in_epoch), "counters": {k: int(v) for k, v in (counters or {}).items()}}
    if optimizer is not None:
        meta["optimizer"] = str(optimizer)
    if batch_size is not None:
        meta["batch_size"] = int(batch_size)
    if rng_state is not None:
        meta["rng"] = rng_state
    arrays[META] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return str(path)


def _finite(value, what, path):
    if value.dtype.kind in "fc" and not np.isfinite(value).all():
        bad = "NaN" if np.isnan(value).any() else "inf"
        raise NonFiniteError(f"{what} holds {bad}: not writing checkpoint {path} (the previous one is kept)")
    return value


# -- reading -----------------------------------------------------------------------------------

def load_checkpoint(path, model) -> Checkpoint:
    """Read a checkpoint for ``model``: a file from another graph or a bad file raises `CheckpointError`.

    ``path`` may omit the ``.npz`` that saving it added.
    """
    path = _existing(path)
    try:
        with zipfile.ZipFile(path) as zf:
            entries = {info.filename: info for info in zf.infolist()}
            meta = _read_meta(zf, entries, path)
            _check_graph(meta, model, path)
            keys = _keys(meta, model, path)
            params, state = {}, {}
            for i, p in enumerate(model.parameters):
                what = f"parameter {_label(p, i)}"
                params[p] = _read_array(zf, entries, keys[i], p.shape, what, path)
                names = meta["state"][i] if meta["format"] == FORMAT else _old_state_names(entries, keys[i])
                per = {s: _read_array(zf, entries, _state_key(keys[i], s), p.shape,
                                      f"optimizer state {s!r} of {what}", path) for s in names}
                if per:
                    state[p] = per
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable graphnn checkpoint ({type(e).__name__}: {e})") from None
    return Checkpoint(params, state, meta.get("steps", 0), meta.get("epoch", 0), meta)


def _label(p, i) -> str:
    return f"{p.name!r} (#{i})" if p.name else f"#{i}"


def _state_key(param_key, name):
    return f"state/{param_key.split('/', 1)[1]}/{name}"


def _npy_header(f):
    """(shape, dtype) of an open ``.npy`` stream, reading only its header."""
    version = np.lib.format.read_magic(f)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = reader(f)
    return shape, dtype


def _entry(entries, key, what, path):
    info = entries.get(key + ".npy")
    if info is None:
        raise CheckpointError(f"{path} has no values for {what} (entry {key!r} is missing)")
    return info


def _read_array(zf, entries, key, shape, what, path) -> np.ndarray:
    """One array, checked (dtype, exact shape, bounded size, finite) before and after reading."""
    info = _entry(entries, key, what, path)
    shape = tuple(shape)
    if info.file_size > 8 * math.prod(shape) + 4096:
        raise CheckpointError(f"{path}: the entry for {what} holds {info.file_size} bytes, more than a "
                              f"{shape} array of float64 ever needs")
    with zf.open(info) as f:
        got_shape, dtype = _npy_header(f)
    if dtype.kind != "f":
        raise CheckpointError(f"{path}: {what} has dtype {dtype}; a checkpoint holds real floating-point arrays")
    if tuple(got_shape) != shape:
        raise CheckpointError(f"{path}: {what} has shape {tuple(got_shape)}, but the model's has shape {shape}")
    with zf.open(info) as f:
        value = np.lib.format.read_array(f, allow_pickle=False)
    if not np.isfinite(value).all():
        raise CheckpointError(f"{path}: {what} holds NaN or inf")
    return value


def _read_meta(zf, entries, path) -> dict:
    info = _entry(entries, META, "the metadata", path)
    if info.file_size > 4 * MAX_META_CHARS + 4096:
        raise CheckpointError(f"{path}: its metadata entry is {info.file_size} bytes, too large to be one")
    with zf.open(info) as f:
        shape, dtype = _npy_header(f)
    if shape != () or dtype.kind != "U":
        raise CheckpointError(f"{path}: its metadata is not one text value (shape {shape}, dtype {dtype})")
    with zf.open(info) as f:
        text = str(np.lib.format.read_array(f, allow_pickle=False))
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its metadata is not valid JSON ({e})") from None
    validate_meta(meta, path)
    return meta


def validate_meta(meta, path) -> None:
    """Every field a checkpoint's metadata may hold, checked for type and range."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its metadata is a {type(meta).__name__}, not a JSON object")
    if meta.get("format") not in (FORMAT, OLD_FORMAT):
        raise CheckpointError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    for key in ("model", "graph_hash"):
        if not isinstance(meta.get(key), str):
            raise CheckpointError(f"{path}: metadata field {key!r} must be a string, got {meta.get(key)!r}")
    for key in COUNTERS:
        if not _count(meta.get(key, 0)):
            raise CheckpointError(f"{path}: metadata field {key!r} must be a non-negative integer, "
                                  f"got {meta.get(key)!r}")
    counters = meta.get("counters", {})
    if not isinstance(counters, dict) or not all(isinstance(k, str) and _count(v) for k, v in counters.items()):
        raise CheckpointError(f"{path}: metadata field 'counters' must map names to non-negative integers")
    if "batch_size" in meta and not (_count(meta["batch_size"]) and meta["batch_size"] > 0):
        raise CheckpointError(f"{path}: metadata field 'batch_size' must be a positive integer, "
                              f"got {meta['batch_size']!r}")
    if "rng" in meta:
        _check_rng(meta["rng"], path)
    if meta["format"] == FORMAT:
        _check_layout(meta, path)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_rng(state, path):
    try:
        np.random.default_rng().bit_generator.state = state
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        raise CheckpointError(f"{path}: its batch-order generator state is invalid ({e})") from None


def _check_layout(meta, path):
    params, state = meta.get("params"), meta.get("state")
    if not (isinstance(params, list) and isinstance(state, list) and len(params) == len(state)):
        raise CheckpointError(f"{path}: metadata fields 'params' and 'state' must be lists of one length")
    for entry in params:
        if not (isinstance(entry, list) and len(entry) == 2 and (entry[0] is None or isinstance(entry[0], str))
                and isinstance(entry[1], list) and all(_count(d) for d in entry[1])):
            raise CheckpointError(f"{path}: metadata entry {entry!r} of 'params' is not [name, shape]")
    for names in state:
        if not (isinstance(names, list) and all(isinstance(s, str) and s.isidentifier() for s in names)):
            raise CheckpointError(f"{path}: metadata field 'state' holds {names!r}, not a list of state names")


def _check_graph(meta, model, path):
    ours = model.structural_hash()
    if meta["graph_hash"] != ours:
        raise CheckpointError(
            f"checkpoint {path} was saved from model {meta['model']!r} (graph {meta['graph_hash'][:12]}), "
            f"but model {model.name!r} has graph {ours[:12]}: parameters cannot be loaded into a "
            "different graph")
    if meta["format"] == FORMAT and len(meta["params"]) != len(model.parameters):
        raise CheckpointError(f"{path} holds {len(meta['params'])} parameters, model {model.name!r} has "
                              f"{len(model.parameters)}")


def _keys(meta, model, path) -> list:
    """The entry of each parameter: by position (format 2), by unique name (format 1)."""
    if meta["format"] == FORMAT:
        return [f"param/{i}" for i in range(len(model.parameters))]
    names = [p.name or f"param{i}" for i, p in enumerate(model.parameters)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CheckpointError(f"{path} is an old checkpoint keyed by parameter name, and this model has "
                              f"several parameters named {', '.join(map(repr, twice))}: it cannot tell them apart")
    return [f"param/{n}" for n in names]


def _old_state_names(entries, param_key) -> list:
    prefix = _state_key(param_key, "")
    return sorted(k[len(prefix):-4] for k in entries if k.startswith(prefix) and k.endswith(".npy"))


def check_state_names(ck: Checkpoint, state: dict | None, path) -> None:
    """The checkpoint's optimizer state must be the state this optimizer keeps (exact resume)."""
    ours = {p: sorted(per) for p, per in (state or {}).items()}
    for p, names in ours.items():
        theirs = sorted((ck.state.get(p) or {}))
        if theirs != names:
            raise CheckpointError(
                f"{path} holds optimizer state {theirs or 'none'} for parameter {p.name!r}, but this "
                f"trainer's optimizer keeps {names or 'none'}: resume with the optimizer it was saved with")
