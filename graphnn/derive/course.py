"""Small nets from the course material, built as graphs, for derivations and their tests.

- `boley_net`: Boley's 2-layer tanh net with bias rows, his ``deltaNN`` (x → V → y → W → z,
  ŷ = [1, x] V, y = tanh(ŷ), ẑ = [1, y] W, z = tanh(ẑ), E = Σ (z − t)²/2), in the
  row-vector convention (his V and W transposed);
- `single_neuron`: APS360's y = σ(a), a = Σ_p x_p w_p, E = (y − t)², whose rule is
  dE/dw_p = 2 x_p (y − t) y (1 − y);
- `hmkcode`: HMKCode's linear 2-2-1 example (prediction = h1 w5 + h2 w6, Error =
  ½(prediction − actual)², Δ = prediction − actual).
"""
from __future__ import annotations

import numpy as np
import sympy

from ..model import Model
from ..ops import concat, constant, elementwise, input, matmul, parameter, sigmoid, sum as sum_, tanh


def _elements(prefix, n):
    return tuple(f"{prefix}{k}" for k in range(1, n + 1))


def boley_net(n_in: int = 2, n_hidden: int = 2, n_out: int = 2, seed: int = 0) -> Model:
    """Boley's deltaNN net: bias rows as a constant 1 joined to x and to y."""
    rng = np.random.default_rng(seed)
    x = input("x", (1, n_in), names=[_elements("x", n_in)])
    t = input("t", (1, n_out), names=[_elements("t", n_out)])
    V = parameter("V", rng.uniform(-0.5, 0.5, (n_in + 1, n_hidden)))
    W = parameter("W", rng.uniform(-0.5, 0.5, (n_hidden + 1, n_out)))
    one = constant([[1.0]], name="1")
    x1 = concat([one, x], axis=-1, name="x_b")
    y_hat = matmul(x1, V, name="y_hat", names=[_elements("yhat", n_hidden)])
    y = tanh(y_hat, name="y", names=[_elements("y", n_hidden)])
    y1 = concat([one, y], axis=-1, name="y_b")
    z_hat = matmul(y1, W, name="z_hat", names=[_elements("zhat", n_out)])
    z = tanh(z_hat, name="z", names=[_elements("z", n_out)])
    zs, ts = sympy.symbols("z t")
    e = elementwise((zs - ts) ** 2 / 2, {zs: z, ts: t}, name="E_elements", fn="½(z−t)²")
    E = sum_(e, name="E")
    example = {"x": rng.uniform(-1, 1, (1, n_in)), "t": np.array([[0.5, -0.5][:n_out] + [0.0] * max(0, n_out - 2)])}
    return Model("boley-deltann", E, z, (x, t), example=example, defaults={"lr": 0.01},
                 description="Boley's 2-layer tanh net with bias rows (deltaNN), row-vector form")


def single_neuron(n: int = 3) -> Model:
    """One sigmoid neuron with squared error: the APS360 single-neuron rule."""
    x = input("x", (None, n), names=_elements("x", n))
    t = input("t", (None, 1), names=("t",))
    w = parameter("w", [[0.2], [-0.4], [0.1]][:n] + [[0.0]] * max(0, n - 3),
                  names=[[f"w{k}"] for k in range(1, n + 1)])
    a = matmul(x, w, name="a", names=("a",))
    y = sigmoid(a, name="y", names=("y",))
    ys, tsym = sympy.symbols("y t")
    E = sum_(elementwise((ys - tsym) ** 2, {ys: y, tsym: t}, name="E_elements", fn="(y−t)²"), name="E")
    example = {"x": np.array([[1.0, 0.5, -1.5][:n] + [0.0] * max(0, n - 3)]), "t": np.array([[1.0]])}
    return Model("single-neuron", E, y, (x, t), example=example, defaults={"lr": 0.1},
                 description="APS360: y = sigmoid(sum_p x_p w_p), E = (y - t)^2")


def hmkcode() -> Model:
    """HMKCode's linear 2-2-1 net with its numbers (inputs 2, 3; target 1)."""
    i = input("i", (None, 2), names=("i1", "i2"))
    actual = input("actual", (None, 1), names=("actual",))
    W1 = parameter("W1", [[0.11, 0.12], [0.21, 0.08]], names=[["w1", "w3"], ["w2", "w4"]])
    W2 = parameter("W2", [[0.14], [0.15]], names=[["w5"], ["w6"]])
    h = matmul(i, W1, name="h", names=("h1", "h2"))
    prediction = matmul(h, W2, name="prediction", names=("prediction",))
    ps, acs = sympy.symbols("p a")
    Error = sum_(elementwise((ps - acs) ** 2 / 2, {ps: prediction, acs: actual}, name="Error_elements",
                             fn="½(p−a)²"), name="Error")
    example = {"i": np.array([[2.0, 3.0]]), "actual": np.array([[1.0]])}
    return Model("hmkcode", Error, prediction, (i, actual), example=example, defaults={"lr": 0.05},
                 description="HMKCode's linear 2-2-1 backpropagation example")
