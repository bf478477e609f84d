"""Users' data files as feeds: ``.npz`` (one array per input name) or ``.csv`` (a header row).

A CSV's columns are named in the model. For each input, in this order:

1. ``model.extras["columns"][input name]``: a list of column names (reshaped to the input's
   shape, e.g. 784 pixel columns → (1, 28, 28)) or one column name;
2. the input's element names (``gn.input("x", (None, 2), names=("x1", "x2"))``);
3. a column named like the input itself (``label``: one value per example, class indices
   for a one-hot target input).

Targets given as class indices are expanded to one-hot rows (graphnn.data.arrays). A label
column may hold class *names* (``setosa``) when the model lists them, in index order, in
``extras["classes"]``: the mapping is the model's, so a test file missing a class maps the
same way as the training file.
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from ..errors import FeedError
from ..files import not_a_file
from .arrays import as_feeds


def load_file(path, inputs, columns=None, classes=None, class_inputs=None) -> dict:
    """Feeds {input name: array} for ``inputs`` (the model's input nodes, or the `Model`) from ``path``.

    ``columns``: {input name: column name or list of names} (CSV only; see the module doc).
    ``classes``: the class names, in index order, that a CSV label column may hold.
    ``class_inputs``: the inputs whose one value per example is a class index, one-hot
    encoded (graphnn.data.arrays.as_feeds); None: the model's classifier targets when a
    `Model` is given, else the target input if ``classes`` names classes, else none.
    Inputs the file lacks are an error naming them and what the file has; inputs with a
    default value (dropout's ``training``) may be missing.
    """
    from ..model import Model, class_targets

    if isinstance(inputs, Model):
        model, inputs = inputs, inputs.inputs
        columns = model.extras.get("columns") if columns is None else columns
        classes = model.extras.get("classes") if classes is None else classes
        class_inputs = class_targets(model) if class_inputs is None else class_inputs
    if class_inputs is None:
        class_inputs = {inputs[1].name} if classes is not None and len(inputs) > 1 else ()
    path = Path(path)
    if not path.is_file():
        raise not_a_file("data file", path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        feeds = _npz(path, inputs)
    elif suffix == ".csv":
        try:
            feeds = _csv(path, inputs, columns or {}, classes)
        except UnicodeDecodeError as e:
            raise FeedError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                            "save it as UTF-8 CSV") from None
    else:
        raise ValueError(f"data file {path}: expected a .npz or .csv file, got {suffix or 'no suffix'!r}")
    from ..evaluate import check_feed   # not at the top: evaluate imports model, which imports this package

    feeds = as_feeds(inputs, feeds, class_inputs=class_inputs)
    for node in inputs:   # named with the file: --data and --test-data may both be given
        if node.name in feeds:
            try:
                check_feed(node, feeds[node.name])
            except FeedError as e:
                raise FeedError(f"{path}: {e}") from None
    return feeds


def _npz(path, inputs):
    # Never allow_pickle: loading a data file must not run code. Without that, numpy calls
    # any non-zip file "pickled data", which names neither the file nor the real problem.
    if not zipfile.is_zipfile(path):
        raise FeedError(f"{path} is not a readable .npz file (not a zip archive of .npy arrays, as np.savez "
                        "writes)")
    found, key = {}, None
    try:
        with np.load(path, allow_pickle=False) as f:
            for key in f.files:
                found[key] = f[key]
    except ValueError as e:   # an array of Python objects: reading it would unpickle
        raise FeedError(f"{path} is not a readable .npz file (array {key!r}: {e}; data files are never "
                        "unpickled)") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        raise FeedError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    empty = next((k for k, v in found.items() if np.ndim(v) and len(v) == 0), None)
    if empty is not None:
        raise FeedError(f"{path}: array {empty!r} has no rows (shape {found[empty].shape}): expected one row "
                        "per example")
    missing = [n.name for n in inputs if n.name not in found and n.value is None]
    if missing:
        raise FeedError(f"{path} has arrays {sorted(found)}, but the model's inputs {missing} are not among them")
    return {n.name: found[n.name] for n in inputs if n.name in found}


def _csv(path, inputs, columns, classes):
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        has_rows = any(any(cell.strip() for cell in row) for row in reader)   # stops at the first
    if not header:
        raise FeedError(f"{path} is empty: expected a header row of column names, then one row per example")
    if not has_rows:   # checked here: np.loadtxt would warn, and an empty table fail far from the cause
        raise FeedError(f"{path} has a header but no rows: expected one row per example after "
                        f"{_show(header, 4)}")
    where = {name: i for i, name in enumerate(header)}
    table = _Table(path, header, classes)
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
        twice = next((c for c in wanted if header.count(c) > 1), None)
        if twice is not None:   # which of them is meant? (the last one was read, without a word)
            places = [i + 1 for i, h in enumerate(header) if h == twice]
            raise FeedError(f"{path}: input {node.name!r} reads column {twice!r}, which the header names "
                            f"{len(places)} times (columns {', '.join(map(str, places))}); rename them apart")
        label = len(wanted) == 1 and tuple(node.shape[1:]) != (1,)   # one value per example: may be a class
        values = np.column_stack([table.column(where[c], label) for c in wanted])
        feeds[node.name] = _shaped(values, node, len(wanted) == 1, path)
    return feeds


class _Table:
    """A CSV's body, read column by column: numbers, or class names for a label column.

    An all-number file is read in one fast pass (Fashion-MNIST's 60000 × 785); a file with
    words in it is read as text, and only its label columns may hold them."""

    def __init__(self, path, header, classes):
        self.path, self.header = path, header
        self.classes = None if classes is None else {str(c): i for i, c in enumerate(classes)}
        try:
            self.numbers = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
        except ValueError:
            self.numbers = None
            with open(path, encoding="utf-8-sig", newline="") as f:
                self.rows = [row for row in csv.reader(f) if row][1:]
            for line, row in enumerate(self.rows, start=2):
                if len(row) != len(header):
                    raise FeedError(f"{path}, line {line}: {len(row)} values, but the header names "
                                    f"{len(header)} columns") from None
        if self.numbers is not None and self.numbers.size and self.numbers.shape[1] != len(header):
            raise FeedError(f"{path}: rows of {self.numbers.shape[1]} values, but the header names "
                            f"{len(header)} columns")

    def column(self, j, label: bool) -> np.ndarray:
        """Column ``j`` as numbers; a word, or nan/inf, is named by its line and column."""
        if self.numbers is not None:
            return self._finite(self.numbers[:, j], j)
        cells = [row[j].strip() for row in self.rows]
        try:
            return self._finite(np.array([float(c) for c in cells], dtype=np.float64), j)
        except ValueError:
            pass
        line, bad = next((k + 2, c) for k, c in enumerate(cells) if not _is_number(c))
        name = self.header[j]
        if not label:
            raise FeedError(f"{self.path}, line {line}, column {name!r}: {bad!r} is not a number") from None
        names = sorted(set(cells))
        if self.classes is None:
            raise FeedError(f"{self.path}: label column {name!r} holds class names ({_show(names, 5)}); list "
                            f"them in the model, in index order, e.g. extras['classes'] = {names!r}") from None
        unknown = [c for c in names if c not in self.classes]
        if unknown:
            raise FeedError(f"{self.path}: label column {name!r} holds {_show(unknown, 5)}, not among the "
                            f"model's classes {list(self.classes)}") from None
        return np.array([self.classes[c] for c in cells], dtype=np.float64)

    def _finite(self, values, j) -> np.ndarray:
        """NaN/inf named by the file's line (later checks name only the input and its row)."""
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.argmax(bad))
            raise FeedError(f"{self.path}, line {k + 2}, column {self.header[j]!r}: {values[k]:g} is not a "
                            "finite number (data must be finite)")
        return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
