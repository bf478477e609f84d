"""Learning-rate schedules: a hyperparameter as a sympy expression in the step count ``t``.

``t`` is the 1-based number of the update (the same ``t`` as Adam's bias correction). A
schedule is only ever *evaluated* — in NumPy, for the steps about to run — and handed to
the update as a run-time value, so the compiled update never changes with it: switching
from a constant rate to a cosine decay, or editing the decay, recompiles nothing.

    opt = make_optimizer("sgd", lr=cosine(0.1, steps=1000))
    warmup(exponential(0.01, 0.5, every=100), steps=50)
    schedule(0.1 / sympy.sqrt(t))          # any expression in t
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import sympy

t = sympy.Symbol("t")


class Schedule:
    """A value per update, ``expr`` in ``t`` (1, 2, …). ``schedule(t_value)`` or ``values(steps)``."""

    def __init__(self, expr, description=None):
        expr = sympy.sympify(expr)
        extra = expr.free_symbols - {t}
        if extra:
            raise ValueError(f"a schedule is an expression in the step count t only; {expr} also uses "
                             f"{', '.join(sorted(map(str, extra)))}")
        self.expr = expr
        self.description = description or f"schedule({expr})"

    @cached_property
    def _fn(self):
        return sympy.lambdify(t, self.expr, modules="numpy")

    def values(self, steps) -> np.ndarray:
        """The values at update numbers ``steps`` (an array of ints ≥ 1); non-finite ones are an error."""
        steps = np.asarray(steps, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = np.broadcast_to(np.asarray(self._fn(steps), dtype=np.float64), steps.shape).copy()
        bad = ~np.isfinite(out)
        if bad.any():
            raise ValueError(f"{self.description} is {out[bad][0]} at step t = {int(steps[bad][0])}")
        return out

    def __call__(self, step) -> float:
        return float(self.values([step])[0])

    def __repr__(self):
        return self.description


def schedule(expr, description=None) -> Schedule:
    """A user's schedule: any sympy expression in ``graphnn.schedules.t`` (or a number)."""
    return expr if isinstance(expr, Schedule) else Schedule(expr, description)


def step_decay(lr, every, factor=0.1) -> Schedule:
    """lr · factorᵏ after k·``every`` updates (PyTorch's StepLR, counted in updates)."""
    return Schedule(lr * sympy.Float(factor) ** sympy.floor((t - 1) / every),
                    f"step_decay({lr:g}, every={every}, factor={factor:g})")


def exponential(lr, rate, every=1) -> Schedule:
    """lr · rate^((t − 1)/every): smooth decay by ``rate`` per ``every`` updates."""
    return Schedule(lr * sympy.Float(rate) ** ((t - 1) / sympy.Integer(every)),
                    f"exponential({lr:g}, rate={rate:g}, every={every})")


def cosine(lr, steps, final=0.0) -> Schedule:
    """Cosine decay from lr to ``final`` over ``steps`` updates, then ``final``."""
    progress = sympy.Min(t - 1, steps) / sympy.Integer(steps)
    return Schedule(final + (lr - final) * (1 + sympy.cos(sympy.pi * progress)) / 2,
                    f"cosine({lr:g}, steps={steps}, final={final:g})")


def warmup(base, steps) -> Schedule:
    """Linear warm-up over the first ``steps`` updates (factor t/steps), then ``base`` (a number
    or a schedule)."""
    inner = schedule(base)
    return Schedule(sympy.Min(1, t / sympy.Integer(steps)) * inner.expr, f"warmup({inner!r}, steps={steps})")


__all__ = ["Schedule", "cosine", "exponential", "schedule", "step_decay", "t", "warmup"]
