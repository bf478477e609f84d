"""What a training run is given, checked before anything trains: one clear error per mistake.

`check_options` (the ``graphnn train`` options: counts at least 1, a positive finite
learning rate, not both ``--lr`` and ``--lr-schedule``, a test fraction inside (0, 1)), `check_learning_rate`, and `check_data`
(non-empty splits, and targets a cross-entropy can take: non-negative rows summing to 1,
one-hot or smoothed). Row counts that differ between a split's columns are the Dataset's
own error (graphnn/data).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import FeedError
from ..evaluate import check_feed

from ..model import class_targets, probability_targets, unit_interval_targets  # noqa: F401  (re-exported)


def check_options(opts) -> None:
    """The CLI's training options (`tasks.TrainOptions`); raises ValueError naming the flag."""
    for flag, value in (("--epochs", opts.epochs), ("--steps", opts.steps), ("--batch-size", opts.batch_size),
                        ("--patience", opts.patience)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    check_learning_rate(opts.lr, "--lr")
    if opts.lr is not None and opts.lr_schedule:   # neither may silently win over the other
        raise ValueError(f"--lr {opts.lr:g} and --lr-schedule {opts.lr_schedule!r} both set the learning rate; "
                         "give one (a constant rate as a schedule: --lr-schedule 0.5)")
    if opts.test_fraction is not None and not 0 < opts.test_fraction < 1:
        raise ValueError(f"--test-fraction must lie strictly between 0 and 1, got {opts.test_fraction}")
    split = getattr(opts, "validation_split", None)
    if split is not None and not 0 < split < 1:   # was named validation_split, the Python keyword
        raise ValueError(f"--validation-split must lie strictly between 0 and 1, got {split}")
    if getattr(opts, "seed", 0) is not None and opts.seed < 0:   # was numpy's "expected non-negative integer"
        raise ValueError(f"--seed must be a whole number ≥ 0, got {opts.seed}")


def check_learning_rate(lr, what="lr") -> None:
    """A number must be positive and finite (a schedule — graphnn.schedules — is checked by its
    own rules); anything else (a string, a list) is an error naming it, not numpy's TypeError."""
    from ..schedules import Schedule

    if lr is None or isinstance(lr, Schedule):
        return
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a positive number or a schedule (graphnn.schedules), "
                         f"got {type(lr).__name__} {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{what} must be a positive finite number, got {lr}")


def check_count(value, what, least=1):
    """``value`` as an int if it is a whole number ≥ ``least`` (1.0 and numpy integers
    pass); a bool, a fraction or a string is a ValueError naming ``what``."""
    whole = isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating))
                                                      and math.isfinite(value) and float(value).is_integer())
    if isinstance(value, (bool, np.bool_)) or not whole:
        raise ValueError(f"{what} must be a whole number, got {type(value).__name__} {value!r}")
    if value < least:
        raise ValueError(f"{what} must be at least {least}, not {value}")
    return int(value)


def check_data(model, data) -> None:
    """Splits that hold rows, arrays of real numbers in their inputs' shapes (`check_feed`:
    named with the data's shape, before training, not a batch's at its first step), and
    cross-entropy targets that are probability rows."""
    declared = {n.name for n in model.inputs}
    unlisted = [n.name for n in model.graph.inputs if n.name not in declared and n.value is None
                and n.name not in data.train]
    if unlisted:   # Model(..., inputs=(x,)) while the loss reads y: was "missing feed" at the first step
        raise FeedError(f"model {model.name!r}: its graph reads input(s) {', '.join(map(repr, unlisted))}, which "
                        f"are not among the model's inputs ({', '.join(map(repr, declared))}) and get no data; "
                        "list them in gn.Model(..., inputs=...)")
    missing = [n.name for n in model.inputs if n.name not in data.train and n.value is None]
    if missing:   # fit(x) without y: was the evaluator's "missing feed" at the first step, the data replaced
        second = model.inputs[1].name if len(model.inputs) > 1 else None
        hint = f", its target: give fit(x, y)" if missing == [second] else ""
        raise FeedError(f"model {model.name!r}: the training data has no values for input(s) "
                        f"{', '.join(map(repr, missing))}{hint}")
    if data.n_train < 1:
        raise ValueError(f"model {model.name!r}: the training split is empty (a test fraction too large "
                         "for the data?)")
    if data.test is not None and _rows(data.test) < 1:
        raise ValueError(f"model {model.name!r}: the test split is empty (a test fraction too small for the data?)")
    for split, feeds in (("training", data.train), ("validation", data.validation), ("test", data.test)):
        for node in model.inputs:   # the whole arrays, before any batch: shapes as the user gave them
            if feeds is not None and node.name in feeds:
                check_feed(node, feeds[node.name])
    for node in probability_targets(model):
        for split, feeds in (("training", data.train), ("test", data.test)):
            if feeds is not None and node.name in feeds:
                _check_distribution(np.asarray(feeds[node.name]), node.name, split, model.name)
    for node in unit_interval_targets(model):
        for split, feeds in (("training", data.train), ("validation", data.validation), ("test", data.test)):
            if feeds is not None and node.name in feeds:
                _check_unit_interval(np.asarray(feeds[node.name]), node.name, split, model.name)


def _check_unit_interval(t, name, split, model_name) -> None:
    """Binary cross-entropy's targets are probabilities: a label 7 gave a negative loss, trained on."""
    if t.dtype.kind not in "fiub" or not t.size:
        return
    bad = (t < 0) | (t > 1)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"model {model_name!r}: target {name!r} ({split} row {row + 1}) holds "
                         f"{np.ravel(t[row])[np.ravel(bad[row]).argmax()]:g}; binary cross-entropy targets are "
                         f"0/1 labels or probabilities in [0, 1] (its values here run {t.min():g} … {t.max():g})")


def require_examples(feeds) -> None:
    """Raise FeedError naming an input fed no rows: a loss and metrics over 0 examples are no
    numbers (Trainer.evaluate on an empty batch ended in a numpy reshape error)."""
    for name, value in feeds.items():
        if np.ndim(value) and np.shape(value)[0] == 0:
            raise FeedError(f"input {name!r} is an empty batch, shape {tuple(np.shape(value))}: there is no "
                            "example to measure the loss and metrics on; pass at least one")


def _rows(feeds) -> int:
    return len(next(iter(feeds.values()))) if feeds else 0


def _check_distribution(t, name, split, model_name) -> None:
    if t.dtype.kind not in "fiub" or t.ndim < 1:
        return   # the feed checks name a wrong dtype or shape
    if t.size and t.min() < 0:
        row = int(np.argwhere(t < 0)[0][0])
        raise ValueError(f"model {model_name!r}: target {name!r} ({split} row {row}) holds {t[t < 0].min():g}; "
                         "cross-entropy targets must be non-negative (one-hot or probability rows)")
    sums = t.sum(axis=-1) if t.ndim > 1 else t
    bad = np.abs(sums - 1) > 1e-6 * max(1, t.shape[-1])
    if t.ndim > 1 and bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"model {model_name!r}: target {name!r} ({split} row {row}) sums to "
                         f"{np.ravel(sums)[row]:g}, not 1; cross-entropy targets are one-hot or probability rows")


def check_trainable(model) -> None:
    """Every trainable parameter must influence the loss, or training cannot move it."""
    from ..errors import GradientError
    from ..graph import Graph

    in_loss = set(Graph([model.loss]).nodes)
    cut = [p.name or "?" for p in model.params if p not in in_loss]
    if cut:
        raise GradientError(
            f"model {model.name!r}: parameter(s) {', '.join(map(repr, cut))} reach the output but not the loss "
            f"{model.loss.label()!r}, so training cannot change them; declare them with trainable=False "
            "(they keep their values) or make the loss depend on them")
