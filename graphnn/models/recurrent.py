"""Recurrent nets of the course: the lecture-sized scalar RNN, an Elman net, an LSTM, Hopfield.

The sequence task is generated in code (deterministic): a sequence of one-hot symbols;
the class is the symbol shown at the *first* step, so the net must carry it through
every later step. With a few steps an Elman net learns it; over many steps its gradient
vanishes through the product of step Jacobians, and the LSTM's gated self-loop
(c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t) is what carries it.
"""
from __future__ import annotations

import numpy as np

from .. import losses
from ..data import Dataset, one_hot
from .hopfield import hopfield_model
from ..model import Model
from ..ops import constant, input, linear, parameter, sigmoid, softmax, tanh
from ..recurrent import scan
from . import register

LECTURE_X = (1.0, -1.0, 0.5, 2.0)


@register("rnn-scalar", "s_t = tanh(w s_{t-1} + u x_t + b), s_0 = 0, E = ½(t − s_T)²; the BPTT lecture case",
          options={"steps": "unroll over T time steps"})
def rnn_scalar(steps: int = 4, mode: str = "unrolled", w: float = 0.5, u: float = 1.0, b: float = 0.1):
    """x = (1, −1, 0.5, 2) (repeated for longer T), target t = 1, w = 0.5, u = 1, b = 0.1."""
    x = input("x", (None, steps))
    t = input("t", (None,), names="t")
    w_, u_, b_ = parameter("w", w), parameter("u", u), parameter("b", b)

    def step(s, x_t, t):
        net = w_ * s + u_ * x_t + b_
        net = _named(net, f"net_{t}")
        return tanh(net, name=f"s_{t}", names=f"s_{t}"), None

    rec = scan(step, constant(0.0, name="s_0", names="s_0"), x, mode=mode, name="rnn")
    E = losses.quadratic(rec.carry, t, name="E")
    xs = np.resize(np.array(LECTURE_X), steps)[None, :]
    example = {"x": xs, "t": np.array([1.0])}
    return Model("rnn-scalar", E, rec.carry, (x, t), Dataset(example), example=example,
                 defaults={"lr": 0.5, "steps": 200}, task="regression",
                 description=f"scalar RNN over T = {steps} steps (x = {tuple(float(v) for v in xs[0])}), "
                             "loss ½(t − s_T)²",
                 extras={"scan": rec, "state": "s", "builder": rnn_scalar, "steps": steps})


def recall_task(n: int, steps: int, symbols: int = 4, seed: int = 0):
    """(xs (n, steps, 2·symbols), targets (n, symbols)): remember the first step's symbol.

    Step 1 shows one of ``symbols`` class symbols; steps 2 … T show random distractor
    symbols (another ``symbols`` one-hot channels). The class is the first symbol.
    """
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, symbols, size=n)
    noise = rng.integers(symbols, 2 * symbols, size=(n, steps))
    noise[:, 0] = cls
    return np.eye(2 * symbols)[noise], one_hot(cls, symbols)


def _recall_dataset(steps, symbols, n_train=512, n_test=256, seed=0):
    xs, ts = recall_task(n_train + n_test, steps, symbols, seed)
    return Dataset({"x": xs[:n_train], "t": ts[:n_train]}, {"x": xs[n_train:], "t": ts[n_train:]},
                   classes=symbols)


@register("rnn", "Elman net s_t = tanh(s_{t-1}W + x_tU + b), y = softmax(s_T V + c): recall the first symbol",
          options={"steps": "unroll over T time steps", "truncate": "truncated BPTT, K steps back"})
def rnn(steps: int = 5, hidden: int = 16, symbols: int = 4, mode: str = "looped", seed: int = 0,
        truncate: int | None = None):
    """``truncate=k``: BPTT back through at most k steps (the looped view)."""
    rng = np.random.default_rng(seed)
    x = input("x", (None, steps, 2 * symbols))
    t = input("t", (None, symbols))
    W = parameter("W", rng.normal(0, 1 / np.sqrt(hidden), (hidden, hidden)))
    U = parameter("U", shape=(2 * symbols, hidden), rng=rng)
    b = parameter("b", shape=(hidden,), init="zeros")
    V = parameter("V", shape=(hidden, symbols), rng=rng)
    c = parameter("c", shape=(symbols,), init="zeros")

    def step(s, x_t, t):
        return tanh(linear(s, W, b) + x_t @ U, name=f"s_{t}"), None

    rec = scan(step, np.zeros((1, hidden)), x, mode=mode, name="elman", truncate=truncate)
    z = linear(rec.carry, V, c, name="z")
    y = softmax(z, name="y")
    loss = losses.softmax_cross_entropy(z, t, name="CE")
    data = _recall_dataset(steps, symbols)
    return Model("rnn", loss, y, (x, t), data, example={k: v[:1] for k, v in data.train.items()},
                 defaults={"lr": 0.01, "optimizer": "adam", "batch_size": 32, "epochs": 6},
                 task="classification",
                 description=f"Elman RNN ({hidden} tanh units) recalling the first of {steps} symbols",
                 extras={"scan": rec, "state": "s", "builder": rnn, "steps": steps})


@register("lstm", "LSTM cell (input unit, input/forget/output gates, gated self-loop): recall over 20 steps",
          options={"steps": "unroll over T time steps", "truncate": "truncated BPTT, K steps back"})
def lstm(steps: int = 20, hidden: int = 16, symbols: int = 4, mode: str = "looped", seed: int = 0,
         forget_bias: float = 2.0, truncate: int | None = None):
    """Goodfellow et al.'s cell: g = tanh(x U_g + h W_g + b_g) (the input unit),
    i, f, o = σ(x U_* + h W_* + b_*) (gates), c_t = f ⊙ c_{t−1} + i ⊙ g (the state's
    self-loop, weighted by the forget gate), h_t = o ⊙ tanh(c_t). ``truncate=k``: BPTT back
    through at most k steps (the looped view)."""
    rng = np.random.default_rng(seed)
    x = input("x", (None, steps, 2 * symbols))
    t = input("t", (None, symbols))
    gates = {}
    for g in ("g", "i", "f", "o"):
        bias = np.full(hidden, forget_bias if g == "f" else 0.0)   # f ≈ σ(2): remember by default
        gates[g] = (parameter(f"U_{g}", shape=(2 * symbols, hidden), rng=rng),
                    parameter(f"W_{g}", rng.normal(0, 1 / np.sqrt(hidden), (hidden, hidden))),
                    parameter(f"b_{g}", bias))
    V = parameter("V", shape=(hidden, symbols), rng=rng)
    c_out = parameter("c", shape=(symbols,), init="zeros")

    def unit(g, x_t, h, t, act):
        U, W, b = gates[g]
        return act(linear(h, W, b) + x_t @ U, name=f"{g}_{t}")

    def step(carry, x_t, t):
        h, cell = carry
        g = unit("g", x_t, h, t, tanh)
        i, f, o = (unit(k, x_t, h, t, sigmoid) for k in ("i", "f", "o"))
        c_new = _named(f * cell + i * g, f"c_{t}")
        h_new = _named(o * tanh(c_new), f"h_{t}")
        return (h_new, c_new), None

    zeros = np.zeros((1, hidden))
    rec = scan(step, (zeros, zeros), x, mode=mode, name="lstm", truncate=truncate)
    h_T, _ = rec.carry
    z = linear(h_T, V, c_out, name="z")
    loss = losses.softmax_cross_entropy(z, t, name="CE")
    data = _recall_dataset(steps, symbols)
    return Model("lstm", loss, softmax(z, name="y"), (x, t), data,
                 example={k: v[:1] for k, v in data.train.items()},
                 defaults={"lr": 0.01, "optimizer": "adam", "batch_size": 32, "epochs": 6},
                 task="classification",
                 description=f"LSTM ({hidden} cells) recalling the first of {steps} symbols",
                 extras={"scan": rec, "state": "s", "builder": lstm, "steps": steps})


@register("hopfield", "3 sign units, Hebbian W = p pᵀ (zero diagonal), the course's recall example")
def hopfield():
    return hopfield_model()


def _named(node, name):
    """Give an elementwise result a name (the graph is immutable: rebuild the Map node)."""
    from ..ops.base import apply

    return apply(node.op, node.inputs, dict(node.attrs), name=name, names=name if node.shape == (None,) else None)
