"""The classic course nets: perceptrons, XOR, Mazur's 2-2-2 example, linear regression,
and the digits MLP. Names follow the course (i1, w5, net_o1, out_h1, E_total)."""
from __future__ import annotations

import numpy as np

from .. import losses
from ..data import Dataset, digits_dataset
from ..model import Model
from ..ops import input, linear, parameter, sigmoid, step, tanh
from . import register

TRUTH_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)


def _perceptron(name, w0, gate):
    x = input("x", (None, 2), names=("x1", "x2"))
    t = input("t", (None, 1), names=("t",))
    w = parameter("w", [[0.5], [0.5]], names=[["w1"], ["w2"]])
    b = parameter("w0", [w0], names=("w0",))
    out = step(linear(x, w, b, name="in", names=("in",)), name="o", names=("o",))
    targets = gate(TRUTH_INPUTS[:, :1], TRUTH_INPUTS[:, 1:]).astype(float)
    return Model(name, losses.quadratic(out, t, name="E"), out, (x, t),
                 Dataset({"x": TRUTH_INPUTS, "t": targets}), example={"x": TRUTH_INPUTS, "t": targets},
                 defaults={"lr": 0.1, "epochs": 20}, task="perceptron",
                 description=f"threshold unit o = step(w0 + w1 x1 + w2 x2), w0 = {w0}, w1 = w2 = 0.5")


@register("perceptron-and", "step unit computing AND (w0 = -0.8, w1 = w2 = 0.5); perceptron rule")
def perceptron_and():
    return _perceptron("perceptron-and", -0.8, np.logical_and)


@register("perceptron-or", "step unit computing OR (w0 = -0.3, w1 = w2 = 0.5); perceptron rule")
def perceptron_or():
    return _perceptron("perceptron-or", -0.3, np.logical_or)


@register("xor", "2-2-1 sigmoid MLP learning XOR by gradient descent (a perceptron cannot)")
def xor(seed: int = 2):
    rng = np.random.default_rng(seed)
    x = input("x", (None, 2), names=("x1", "x2"))
    t = input("t", (None, 1), names=("t",))
    W1 = parameter("W1", rng.uniform(-1, 1, (2, 2)), names=[["w1", "w3"], ["w2", "w4"]])
    b1 = parameter("b1", rng.uniform(-1, 1, 2), names=("b1", "b2"))
    W2 = parameter("W2", rng.uniform(-1, 1, (2, 1)), names=[["w5"], ["w6"]])
    b2 = parameter("b2", rng.uniform(-1, 1, 1), names=("b3",))
    h = sigmoid(linear(x, W1, b1, name="net_h", names=("net_h1", "net_h2")), name="out_h",
                names=("out_h1", "out_h2"))
    y = sigmoid(linear(h, W2, b2, name="net_o", names=("net_o",)), name="out_o", names=("out_o",))
    targets = np.array([[0.0], [1.0], [1.0], [0.0]])
    return Model("xor", losses.quadratic(y, t, name="E"), y, (x, t),
                 Dataset({"x": TRUTH_INPUTS, "t": targets}), example={"x": TRUTH_INPUTS, "t": targets},
                 defaults={"lr": 2.0, "steps": 3000}, task="regression",
                 description="XOR needs a hidden layer: 2-2-1 sigmoid net, quadratic error")


@register("mazur", "Mazur's 2-2-2 sigmoid net with the worked example's numbers (biases fixed)")
def mazur():
    x = input("i", (None, 2), names=("i1", "i2"))
    t = input("target", (None, 2), names=("target_o1", "target_o2"))
    W1 = parameter("W1", [[0.15, 0.25], [0.20, 0.30]], names=[["w1", "w3"], ["w2", "w4"]])
    b1 = parameter("b1", [0.35], names=("b1",), trainable=False)
    W2 = parameter("W2", [[0.40, 0.50], [0.45, 0.55]], names=[["w5", "w7"], ["w6", "w8"]])
    b2 = parameter("b2", [0.60], names=("b2",), trainable=False)
    net_h = linear(x, W1, b1, name="net_h", names=("net_h1", "net_h2"))
    out_h = sigmoid(net_h, name="out_h", names=("out_h1", "out_h2"))
    net_o = linear(out_h, W2, b2, name="net_o", names=("net_o1", "net_o2"))
    out_o = sigmoid(net_o, name="out_o", names=("out_o1", "out_o2"))
    E = losses.quadratic(out_o, t, name="E_total", element_names=("E_o1", "E_o2"))
    example = {"i": np.array([[0.05, 0.10]]), "target": np.array([[0.01, 0.99]])}
    return Model("mazur", E, out_o, (x, t), Dataset(example), example=example,
                 defaults={"lr": 0.5, "steps": 10000}, task="regression",
                 description="Matt Mazur's step-by-step backpropagation example (w1..w8, b1, b2 fixed)")


@register("linear-regression", "y = w x + b fitted to the course's five pairs (2,3) ... (6,7)")
def linear_regression():
    x = input("x", (None, 1), names=("x",))
    t = input("y", (None, 1), names=("y",))
    w = parameter("w", [[0.0]], names=[["w"]])
    b = parameter("b", [0.0], names=("b",))
    pred = linear(x, w, b, name="y_hat", names=("y_hat",))
    xs = np.arange(2.0, 7.0)[:, None]
    data = {"x": xs, "y": xs + 1.0}
    return Model("linear-regression", losses.mse(pred, t, name="L"), pred, (x, t), Dataset(data),
                 example=data, defaults={"lr": 0.05, "steps": 2000}, task="regression",
                 description="linear regression by gradient descent: the answer is w = 1, b = 1")


@register("digits-mlp", "64-128-10 tanh MLP, softmax cross-entropy, on the embedded 8x8 digits")
def digits_mlp(hidden: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = input("x", (None, 64))
    t = input("t", (None, 10))
    W1 = parameter("W1", shape=(64, hidden), rng=rng)
    b1 = parameter("b1", shape=(hidden,), init="zeros")
    W2 = parameter("W2", shape=(hidden, 10), rng=rng)
    b2 = parameter("b2", shape=(10,), init="zeros")
    h = tanh(linear(x, W1, b1, name="net_h"), name="h")
    logits = linear(h, W2, b2, name="z")
    loss = losses.softmax_cross_entropy(logits, t, name="CE")
    return Model("digits-mlp", loss, logits, (x, t), digits_dataset(),
                 defaults={"lr": 0.1, "batch_size": 32, "epochs": 20}, task="classification",
                 description="handwritten digits: 64 inputs, 128 tanh units, 10 softmax outputs")
