"""Users' data files as feeds: ``.npz`` (one array per input name) or ``.csv`` (a header row).

A CSV's columns are named in the model. For each input, in this order:

1. ``model.extras["columns"][input name]``: a list of column names (reshaped to the input's
   shape, e.g. 784 pixel columns → (1, 28, 28)) or one column name;
2. the input's element names (``gn.input("x", (None, 2), names=("x1", "x2"))``);
3. a column named like the input itself (``label``: one value per example, class indices
   for a one-hot target input).

Targets given as class indices are expanded to one-hot rows (graphnn.data.arrays).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FeedError
from .arrays import as_feeds


def load_file(path, inputs, columns=None) -> dict:
    """Feeds {input name: array} for ``inputs`` (the model's input nodes) from ``path``.

    ``columns``: {input name: column name or list of names} (CSV only; see the module doc).
    Inputs the file lacks are an error naming them and what the file has; inputs with a
    default value (dropout's ``training``) may be missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        feeds = _npz(path, inputs)
    elif suffix == ".csv":
        feeds = _csv(path, inputs, columns or {})
    else:
        raise ValueError(f"data file {path}: expected a .npz or .csv file, got {suffix or 'no suffix'!r}")
    return as_feeds(inputs, feeds)


def _npz(path, inputs):
    with np.load(path, allow_pickle=False) as f:
        found = {k: f[k] for k in f.files}
    missing = [n.name for n in inputs if n.name not in found and n.value is None]
    if missing:
        raise FeedError(f"{path} has arrays {sorted(found)}, but the model's inputs {missing} are not among them")
    return {n.name: found[n.name] for n in inputs if n.name in found}


def _csv(path, inputs, columns):
    with open(path, encoding="utf-8") as f:
        header = [h.strip().strip('"') for h in f.readline().strip().split(",")]
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise FeedError(f"{path}: every value must be a number ({e})") from None
    where = {name: i for i, name in enumerate(header)}
    feeds = {}
    for node in inputs:
        wanted = _columns_of(node, columns, where)
        if wanted is None:
            if node.value is not None:
                continue   # an input with a default (training mode) needs no column
            raise FeedError(f"{path}: no columns for input {node.name!r}: give the model "
                            f"extras['columns'][{node.name!r}], element names, or a column named "
                            f"{node.name!r}; the file has {_show(header)}")
        missing = [c for c in wanted if c not in where]
        if missing:
            raise FeedError(f"{path}: input {node.name!r} needs columns {_show(missing)}, which the file "
                            f"lacks; it has {_show(header)}")
        values = table[:, [where[c] for c in wanted]]
        feeds[node.name] = _shaped(values, node, len(wanted) == 1, path)
    return feeds


def _columns_of(node, columns, where):
    spec = columns.get(node.name)
    if spec is not None:
        return [spec] if isinstance(spec, str) else list(spec)
    if node.names is not None:
        flat = list(node.names[0])       # (flat element names, their shape)
        if any(c in where for c in flat):
            return flat
    return [node.name] if node.name in where else None


def _shaped(values, node, single, path):
    rest = tuple(node.shape[1:])
    if single and rest != (1,):
        return values[:, 0]          # one value per example: a label or a scalar input
    if values.shape[1] != int(np.prod(rest)):
        raise FeedError(f"{path}: input {node.name!r} of shape {node.shape} cannot take "
                        f"{values.shape[1]} columns")
    return values.reshape((len(values),) + rest)


def _show(names, limit=8):
    names = list(names)
    more = f", … ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(map(repr, names[:limit])) + more
