"""Optimizers as elementwise update rules written in sympy.

One definition serves every backend: the NumPy reference lambdifies the rules, the code
generators print them into their kernels, and derivations print them
(w₅⁺ = w₅ − η·∂E/∂w₅). A rule list is applied in order; a later rule sees the values
that earlier rules assigned. Symbols: ``w`` (the parameter), ``g`` (its gradient), the
optimizer's state names, its hyperparameters, and ``t`` (the 1-based step count).

Hyperparameters are run-time values of the compiled update, never constants in its code:
any of them may be a `graphnn.schedules.Schedule` (a sympy expression in ``t``), which is
evaluated per step and fed in, so changing a rate or a schedule recompiles nothing.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import sympy

from .schedules import Schedule

w, g, t = sympy.symbols("w g t")

_SPOKEN = {"lr": "learning rate"}   # hyperparameters as errors name them


class Optimizer:
    """Base: subclasses set ``name``, ``state`` (per-parameter buffers) and ``rules``.

    Hyperparameters in ``non_negative`` must be ≥ 0 at every step, numbers and schedules'
    values alike (a schedule is checked for the steps about to run): a negative learning rate
    climbs the loss, which would look like training that merely goes badly. Zero is allowed:
    `graphnn.schedules.cosine` ends there, and a zero step changes nothing.
    """

    name = "optimizer"
    state: tuple = ()
    non_negative: tuple = ("lr",)

    def __init__(self, **hyper):
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise TypeError(f"{self.name} takes {sorted(self.defaults)}, not {sorted(unknown)}")
        self.schedules = {k: v for k, v in hyper.items() if isinstance(v, Schedule)}
        # a scheduled hyperparameter's entry is its value at the first step
        self.hyper = {**self.defaults, **hyper, **{k: float(self._scheduled(k, [1])[0]) for k in self.schedules}}
        for k, v in self.hyper.items():
            if not np.isfinite(v):
                raise ValueError(f"{self.name}: {k} must be finite, got {v}")
            if k in self.non_negative and v < 0:
                raise ValueError(f"{self.name}: {k} must not be negative (that climbs the loss), got {v}")

    defaults: dict = {}

    def rules(self):
        """[(assigned symbol, expression)], in order."""
        raise NotImplementedError

    def structural_key(self):
        return (self.name, tuple(sorted(self.hyper.items())),
                tuple(sorted((k, str(v.expr)) for k, v in self.schedules.items())))

    def code_key(self):
        """What compiled code depends on: the rules and the hyperparameters' names, not values."""
        return (self.name, tuple(self.hyper))

    def hyper_at(self, step) -> dict:
        """The hyperparameters of update number ``step`` (1-based): schedules evaluated."""
        return {**self.hyper, **{k: float(self._scheduled(k, [step])[0]) for k in self.schedules}}

    def hyper_table(self, first, n) -> dict:
        """name -> array of the values for updates ``first`` … ``first + n − 1``."""
        steps = np.arange(first, first + n)
        return {k: self._scheduled(k, steps) if k in self.schedules else np.full(n, float(v))
                for k, v in self.hyper.items()}

    def _scheduled(self, name, steps) -> np.ndarray:
        """Schedule ``name``'s values at update numbers ``steps``, checked (class doc)."""
        steps = np.asarray(steps)
        values = self.schedules[name].values(steps)
        if name in self.non_negative and (values < 0).any():
            i = int(np.argmax(values < 0))
            raise ValueError(f"{self.schedules[name].named} is {values[i]:g} at step t = {int(steps[i])}: "
                             f"a negative {_SPOKEN.get(name, name)} climbs the loss instead of descending it")
        return values

    def __repr__(self):
        shown = {**{k: f"{v:g}" for k, v in self.hyper.items()}, **{k: repr(v) for k, v in self.schedules.items()}}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in shown.items())})"

    @cached_property
    def hyper_symbols(self):
        return {k: sympy.Symbol(k) for k in self.hyper}

    def init_state(self, params: dict) -> dict:
        """Zeroed buffers: {param: {state name: array}}."""
        return {p: {s: np.zeros_like(v) for s in self.state} for p, v in params.items()}

    @cached_property
    def _compiled(self):
        args = [w, g, t, *map(sympy.Symbol, self.state), *self.hyper_symbols.values()]
        return [(str(target), sympy.lambdify(args, expr, modules="numpy")) for target, expr in self.rules()]

    def update(self, params: dict, grads: dict, state: dict, step: int):
        """Apply one update in place (the NumPy reference of every compiled update)."""
        hyper = list(self.hyper_at(step).values())
        for p, value in params.items():
            env = {"w": value, "g": grads[p], **state[p]}
            for target, fn in self._compiled:
                new = fn(env["w"], env["g"], step, *(env[s] for s in self.state), *hyper)
                env[target] = np.asarray(new, dtype=value.dtype)
            value[...] = env["w"]
            for s in self.state:
                state[p][s][...] = env[s]


class SGD(Optimizer):
    """Plain gradient descent: w ← w − η g (full-batch, mini-batch or stochastic)."""

    name = "sgd"
    defaults = {"lr": 0.1}

    def rules(self):
        lr = self.hyper_symbols["lr"]
        return [(w, w - lr * g)]


class Momentum(Optimizer):
    """Heavy-ball momentum: v ← μ v − η g;  w ← w + v."""

    name = "momentum"
    state = ("v",)
    defaults = {"lr": 0.1, "mu": 0.9}

    def rules(self):
        v, lr, mu = sympy.Symbol("v"), self.hyper_symbols["lr"], self.hyper_symbols["mu"]
        return [(v, mu * v - lr * g), (w, w + v)]


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction."""

    name = "adam"
    state = ("m", "v")
    defaults = {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

    def rules(self):
        m, v = sympy.symbols("m v")
        h = self.hyper_symbols
        b1, b2 = h["beta1"], h["beta2"]
        return [(m, b1 * m + (1 - b1) * g),
                (v, b2 * v + (1 - b2) * g ** 2),
                (w, w - h["lr"] * (m / (1 - b1 ** t)) / (sympy.sqrt(v / (1 - b2 ** t)) + h["eps"]))]


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Adam)}


def make_optimizer(spec, **hyper) -> Optimizer:
    """An optimizer from a name ('sgd', 'momentum', 'adam') or an instance; hyperparameters
    are numbers or schedules (`graphnn.schedules`)."""
    if isinstance(spec, Optimizer):
        return spec
    if spec not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {spec!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[spec](**{k: v for k, v in hyper.items() if v is not None})
