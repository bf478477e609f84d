"""The perceptron learning rule (Rosenblatt), for threshold units that have no gradient.

For a single-layer net o = step(x·w + w0):  w ← w + η (t − o) x,  w0 ← w0 + η (t − o).
It converges when the classes are linearly separable (AND, OR) and never settles
otherwise (XOR): `train` reports both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluate import Evaluator
from ..graph import Node
from ..ops import Linear


@dataclass
class PerceptronResult:
    weights: dict           # parameter node -> final value
    converged: bool
    epochs: int
    errors: list            # misclassified examples per epoch


def train(model, X=None, T=None, *, lr=0.1, max_epochs=100, zero_init=True, start=None) -> PerceptronResult:
    """Train ``model`` (output = step(linear(x, w, w0))) example by example.

    ``start`` ({node: array}, e.g. a checkpoint's parameters) overrides the initial weights.
    """
    lin = _linear_node(model.output)
    x_node, w_node, b_node = lin.inputs
    X = model.data.train[x_node.name] if X is None else np.asarray(X, float)
    T = model.data.train[model.inputs[1].name] if T is None else np.asarray(T, float)
    w = np.zeros(w_node.shape) if zero_init else w_node.value.copy()
    b = np.zeros(b_node.shape) if zero_init else b_node.value.copy()
    if start is not None:
        w, b = np.array(start[w_node], dtype=float), np.array(start[b_node], dtype=float)
    predict = Evaluator(model.output)
    errors = []
    for epoch in range(1, max_epochs + 1):
        wrong = 0
        for x, t in zip(X, T):
            o = predict({x_node: x[None]}, {w_node: w, b_node: b})[0]
            delta = t - o
            if np.any(delta != 0):
                wrong += 1
                w += lr * np.outer(x, delta)
                b += lr * delta
        errors.append(wrong)
        if wrong == 0:
            return PerceptronResult({w_node: w, b_node: b}, True, epoch, errors)
    return PerceptronResult({w_node: w, b_node: b}, False, max_epochs, errors)


def _linear_node(output: Node) -> Node:
    node = output
    while not isinstance(node.op, Linear):
        if len(node.inputs) != 1:
            raise ValueError("the perceptron rule needs output = step(linear(x, w, w0))")
        node = node.inputs[0]
    return node


def predict(model, weights: dict, X):
    """The model's output for inputs ``X`` with the given weights."""
    lin = _linear_node(model.output)
    return Evaluator(model.output)({lin.inputs[0]: np.asarray(X, float)}, weights)
