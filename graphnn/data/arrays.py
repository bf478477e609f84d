"""Users' arrays as feeds: ``x``/``y`` to the model's inputs, labels to targets, held-out splits.

A model's first input takes ``x`` and its second ``y`` (the `Model.inputs` order), or a dict
names every input. Targets may be given as class indices where the model's target input
(``inputs[1]``) is one-hot (N, C) *and a classifier's target* (``class_inputs``: the
targets of a softmax cross-entropy, or the second input of a 'classification' model,
`graphnn.model.class_targets`): they are checked (integers in 0..C−1) and
expanded, so a user never writes the one-hot encoding. Any other target of shape
(None, C > 1) given a vector is an error naming it (a GAN's noise ``z`` or a regression's
two outputs are no classes: encoding them one-hot trained on made-up numbers). A vector
given to a feature input of shape (None, C > 1) is left as it is, for the evaluator to
report the shape (it may be one example without its batch axis, or anything else; guessing
would train on the wrong numbers). A vector given to any input of shape (None, 1) is its
column. Every error names the input and the shapes.
"""
from __future__ import annotations

import numpy as np

from ..errors import FeedError


def column_for(node, x):
    """``x`` as the input ``node`` takes it: a vector (N,) → a column (N, 1) when the node is
    (None, 1) (N examples of one number: no other reading exists); anything else unchanged."""
    x = np.asarray(x)
    if x.ndim == 1 and tuple(node.shape) == (None, 1):
        return x.reshape(-1, 1)
    return x


def targets_for(node, y, one_hot=True):
    """``y`` as the target input ``node`` takes it: class indices (N,) → one-hot (N, C) when
    the node is (None, C > 1) of floats and ``one_hot`` (it is a classifier's target; else
    a `FeedError`); a vector (N,) → a column (N, 1) when it is (None, 1). An integer node
    holds ids (a language model's next tokens), never one-hot rows."""
    y = column_for(node, y)
    shape = tuple(node.shape)
    if one_hot and y.ndim == 2 and y.shape[1:] == (1,) and len(shape) == 2 and shape[1] not in (None, 1):
        y = y[:, 0]   # a column of class indices (a one-column frame, (N, 1)): no probability row of C
    if y.ndim != 1 or len(shape) != 2 or shape[1] == 1 or node.dtype == "int":
        return y
    classes = shape[1]
    if not one_hot:
        raise FeedError(f"input {node.name!r} expects shape (B, {classes}), got {tuple(y.shape)}: one value per "
                        f"example is read as a class index only for a classifier's target (a softmax "
                        f"cross-entropy's, or task='classification'), and {node.name!r} is not one; "
                        f"give its {classes} columns")
    if y.dtype.kind not in "biuf":
        names = ", ".join(repr(str(v)) for v in np.unique(y.astype(str))[:5])
        raise FeedError(f"input {node.name!r} takes class indices 0..{classes - 1} or one-hot rows, got labels "
                        f"that are not numbers ({names}, …): map them first, e.g. "
                        f"classes, y = np.unique(y, return_inverse=True)")
    whole = np.mod(y, 1) == 0
    if not whole.all():
        row = int(np.argmin(whole))
        raise FeedError(f"input {node.name!r} takes one-hot rows of {classes} classes; labels given as one value "
                        f"per example must be class indices 0..{classes - 1}, got {y[row]:g} at row {row}")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise FeedError(f"input {node.name!r} takes one-hot rows of {classes} classes; labels given "
                        f"as one value per example must be class indices 0..{classes - 1}, got "
                        f"{y.min():g}..{y.max():g}")
    out = np.zeros((len(y), classes))
    out[np.arange(len(y)), y.astype(np.int64)] = 1.0
    return out


def as_feeds(inputs, x, y=None, *, class_inputs=()) -> dict:
    """Feeds {input name: array} from ``x`` (an array for the first input, or a dict of feeds)
    and ``y`` (for the second input: targets or labels). ``class_inputs``: the names of the
    inputs that may take class indices for one-hot rows (the model's classifier targets,
    `graphnn.model.class_targets`); no other input is one-hot encoded."""
    if isinstance(x, dict):
        feeds = {getattr(k, "name", k): v for k, v in x.items()}
    else:
        if not inputs:
            raise FeedError("the model has no inputs to feed x to")
        feeds = {inputs[0].name: np.asarray(x)}
    if y is not None:
        if len(inputs) < 2:
            raise FeedError(f"the model has one input ({inputs[0].name!r}); it takes no targets y")
        feeds[inputs[1].name] = y
    by_name = {n.name: n for n in inputs}
    target = inputs[1] if len(inputs) > 1 else None
    feeds = {k: np.asarray(v) if k not in by_name else
             targets_for(by_name[k], v, k in class_inputs) if by_name[k] is target else column_for(by_name[k], v)
             for k, v in feeds.items()}
    # rows of the arrays that have their input's rank; a wrong rank is the evaluator's shape
    # error, which names the input and both shapes (a row count would mislead)
    rows = {k: len(v) for k, v in feeds.items() if k in by_name and by_name[k].shape
            and by_name[k].shape[0] is None and np.ndim(v) == len(by_name[k].shape)}
    if len(set(rows.values())) > 1:
        raise FeedError(f"inputs have different numbers of examples: {rows}")
    return feeds


def hold_out(feeds: dict, fraction, seed=0, what="validation_split") -> tuple:
    """(kept, held out): a seeded random ``fraction`` of the examples held out."""
    from . import split

    if not 0 < fraction < 1:
        raise ValueError(f"{what} must lie strictly between 0 and 1, not {fraction}")
    n = len(next(iter(feeds.values())))
    keep, held = split(n, fraction, seed)
    if len(held) == 0 or len(keep) == 0:
        raise ValueError(f"{what}={fraction} of {n} examples leaves an empty set")
    return {k: v[keep] for k, v in feeds.items()}, {k: v[held] for k, v in feeds.items()}


def with_test_split(data, fraction, seed=0):
    """``data`` (a Dataset without a test set) with a seeded ``fraction`` of its training
    examples held out as its test set."""
    from . import Dataset, split

    if data.test is not None:
        raise ValueError("the data already has a test set; test_fraction splits data that has none")
    if not 0 < fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, not {fraction}")
    tr, te = split(data.n_train, fraction, seed)
    return Dataset({k: v[tr] for k, v in data.train.items()}, {k: v[te] for k, v in data.train.items()},
                   classes=data.classes)
