"""Metrics by task, reported by name: what the history, the CLI and early stopping read.

- 'classification': ``accuracy``. Several output units: top-1 (the largest output against
  the one-hot target's, or against a class index). One unit: binary, the output
  thresholded at the middle of its range — 0.5 for a sigmoid (a probability), 0 for tanh,
  sign or an unbounded output (a logit) — against targets in {0, 1} or {−1, 1}.
  ``model.defaults["threshold"]`` (or ``Trainer(threshold=…)``) overrides it.
- 'regression': ``mse``, ``mae`` and ``r2`` (the coefficient of determination, averaged
  over output columns like scikit-learn's).

`MAXIMIZE` names the metrics where larger is better (early stopping, best checkpoints).
"""
from __future__ import annotations

import numpy as np

from ..ops import output_bounds

METRICS = {"classification": ("accuracy",), "regression": ("mse", "mae", "r2")}
MAXIMIZE = ("accuracy", "r2")


def metric_names(model) -> tuple:
    """The metrics reported for ``model`` (by its task); () for tasks without any."""
    return METRICS.get(model.task, ())


def larger_is_better(name: str) -> bool:
    """For a history key ('val_accuracy', 'test_loss', 'r2'): whether larger is better."""
    return name.rsplit("_", 1)[-1] in MAXIMIZE or name.endswith("accuracy")


def binary_threshold(model, threshold=None) -> float:
    """Where a one-unit output splits the classes: the middle of its range, 0 if unbounded."""
    if threshold is not None:
        return float(threshold)
    if "threshold" in model.defaults:
        return float(model.defaults["threshold"])
    bounds = output_bounds(model.output)
    return 0.0 if bounds is None else (bounds[0] + bounds[1]) / 2


def accuracy(out, target, threshold=0.5) -> float:
    """Top-1 accuracy (several output units) or binary accuracy at ``threshold`` (one unit)."""
    out, target = np.asarray(out), np.asarray(target)
    n = len(out)
    if len(target) != n:
        raise ValueError(f"accuracy: {n} outputs but {len(target)} targets")
    if out.ndim >= 2 and out.shape[-1] > 1:
        truth = target if target.ndim == out.ndim - 1 else np.argmax(target, -1)
        return float(np.mean(np.argmax(out, -1) == truth))
    o, t = out.reshape(n, -1), target.reshape(n, -1)
    if o.shape != t.shape:
        raise ValueError(f"accuracy: output {out.shape} and target {target.shape} do not match")
    truth = t > (0.0 if t.size and t.min() < 0 else 0.5)   # labels {0, 1} or {−1, 1}
    return float(np.mean((o > threshold) == truth))


def _columns(out, target):
    out, target = np.asarray(out, dtype=np.float64), np.asarray(target, dtype=np.float64)
    n = len(out)
    o, t = out.reshape(n, -1), target.reshape(n, -1)
    if o.shape != t.shape:
        raise ValueError(f"regression metrics: output {out.shape} and target {target.shape} do not match")
    return o, t


def mse(out, target) -> float:
    o, t = _columns(out, target)
    return float(np.mean((o - t) ** 2))


def mae(out, target) -> float:
    o, t = _columns(out, target)
    return float(np.mean(np.abs(o - t)))


def r2(out, target) -> float:
    """1 − SS_res/SS_tot per output column, averaged (a constant column: 1 if fitted exactly, else 0)."""
    o, t = _columns(out, target)
    ss_res = np.sum((t - o) ** 2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return float(np.mean(per))


def compute(model, out, target, threshold=None) -> dict:
    """{metric name: value} of ``model``'s output ``out`` against ``target``."""
    names = metric_names(model)
    if not names:
        return {}
    if names == METRICS["classification"]:
        return {"accuracy": accuracy(out, target, binary_threshold(model, threshold))}
    return {"mse": mse(out, target), "mae": mae(out, target), "r2": r2(out, target)}
