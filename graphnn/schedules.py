"""Learning-rate schedules: a hyperparameter as a sympy expression in the step count ``t``.

``t`` is the 1-based number of the update (the same ``t`` as Adam's bias correction). A
schedule is only ever *evaluated* — in NumPy, for the steps about to run — and handed to
the update as a run-time value, so the compiled update never changes with it: switching
from a constant rate to a cosine decay, or editing the decay, recompiles nothing.

    opt = make_optimizer("sgd", lr=cosine(0.1, steps=1000))
    warmup(exponential(0.01, 0.5, every=100), steps=50)
    schedule(0.1 / sympy.sqrt(t))          # any expression in t
    parse("0.5*0.99**t", origin="--lr-schedule '0.5*0.99**t'")   # a user's text

A schedule's values must be real and finite at every step evaluated (an error names the
step); whether they may be negative is the consumer's rule (`graphnn.optim`: a learning
rate must not be).
"""
from __future__ import annotations

import ast
from functools import cached_property

import numpy as np
import sympy

t = sympy.Symbol("t")


class Schedule:
    """A value per update, ``expr`` in ``t`` (1, 2, …). ``schedule(t_value)`` or ``values(steps)``.

    ``origin``: where the schedule came from, named by its errors instead of the description
    (the CLI passes "--lr-schedule '2-t'", so the user reads back what they typed).
    """

    def __init__(self, expr, description=None, origin=None):
        expr = sympy.sympify(expr)
        extra = expr.free_symbols - {t}
        if extra:
            raise ValueError(f"a schedule is an expression in the step count t only; {expr} also uses "
                             f"{', '.join(sorted(map(str, extra)))}")
        self.expr = expr
        self.description = description or f"schedule({expr})"
        self.origin = origin

    @property
    def named(self) -> str:
        """How errors name this schedule: its origin if it has one, else its description."""
        return self.origin or self.description

    @cached_property
    def _fn(self):
        return sympy.lambdify(t, self.expr, modules="numpy")

    def values(self, steps) -> np.ndarray:
        """The values at update numbers ``steps`` (an array of ints ≥ 1); complex or non-finite
        ones are an error naming the first such step."""
        steps = np.asarray(steps, dtype=np.float64)
        with np.errstate(all="ignore"):
            raw = np.broadcast_to(np.asarray(self._fn(steps)), steps.shape)
        if np.iscomplexobj(raw):   # casting to float would drop the imaginary part without a word
            imaginary = raw.imag != 0
            if imaginary.any():
                raise ValueError(f"{self.named} is not a real number at step t = {int(steps[imaginary][0])} "
                                 f"(it is {complex(raw[imaginary][0]):g})")
            raw = raw.real
        out = np.asarray(raw, dtype=np.float64).copy()
        bad = ~np.isfinite(out)
        if bad.any():
            raise ValueError(f"{self.named} is {out[bad][0]} at step t = {int(steps[bad][0])}")
        return out

    def __call__(self, step) -> float:
        return float(self.values([step])[0])

    def __repr__(self):
        return self.description


def schedule(expr, description=None) -> Schedule:
    """A user's schedule: any sympy expression in ``graphnn.schedules.t`` (or a number)."""
    return expr if isinstance(expr, Schedule) else Schedule(expr, description)


def parse(text: str, origin=None) -> Schedule:
    """A schedule from the text a user typed (``--lr-schedule``): an expression in ``t``.

    Any mistake is one ValueError line that starts with ``origin`` (default: the text
    quoted): a parse error (Python's own reason when it is a syntax error, not sympy's
    multi-line report), a symbol other than ``t``, a value at t = 1 that is not a real
    finite number.
    """
    origin = origin or repr(text)
    _check_words(text, origin)     # before sympify, which evaluates its text as Python
    try:
        expr = sympy.sympify(text, locals={"t": t, **{k: getattr(sympy, v) for k, v in FUNCTIONS.items()}})
    except (sympy.SympifyError, SyntaxError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{origin} is not an expression in the step count t ({_why_unparsed(text, e)})") from None
    if not isinstance(expr, sympy.Expr):   # a Matrix, a tuple, a relation: no number per step
        raise ValueError(f"{origin} is not an expression in the step count t (it is a {type(expr).__name__})")
    try:
        result = Schedule(expr, origin=origin)
    except ValueError as e:
        raise ValueError(f"{origin}: {e}") from None
    if expr.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):   # 1/0, log(0): no finite rate at any step
        raise ValueError(f"{origin} is not a finite number (it simplifies to {expr})")
    try:
        result(1)   # fails now, naming the origin, rather than once training has started
    except (TypeError, ArithmeticError, KeyError) as e:   # a function NumPy cannot evaluate
        raise ValueError(f"{origin} cannot be evaluated at t = 1 ({type(e).__name__}: {e})") from None
    return result


#: what a typed schedule may call: its name → sympy's function
FUNCTIONS = {"exp": "exp", "log": "log", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tan": "tan",
             "tanh": "tanh", "atan": "atan", "floor": "floor", "ceiling": "ceiling", "ceil": "ceiling",
             "min": "Min", "max": "Max", "Min": "Min", "Max": "Max", "abs": "Abs", "Abs": "Abs"}
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod,
          ast.FloorDiv, ast.USub, ast.UAdd, ast.Constant, ast.Name, ast.Load, ast.Call)


def _check_words(text: str, origin: str) -> None:
    """Only numbers, t, pi, E, + − * / ** % // and `FUNCTIONS` called by name: the text is never
    run as Python (sympify evaluates it) and anything else is one line saying what is allowed."""
    allowed = (f"numbers, t, pi, E, + - * / ** and the functions {', '.join(sorted(set(FUNCTIONS)))}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"{origin} is not an expression in the step count t ({e.msg})") from None
    for node in ast.walk(tree):
        bad = None
        if not isinstance(node, _NODES):
            bad = f"a {type(node).__name__.lower()}"
        elif isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                                 or not isinstance(node.value, (int, float))):
            bad = f"the constant {node.value!r}"
        elif isinstance(node, ast.Name) and node.id not in ("t", "pi", "E", "I") and node.id not in FUNCTIONS:
            raise ValueError(f"{origin} is an expression in the step count t only, not in {node.id!r} "
                             f"(a schedule may use {allowed})")
        elif isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS
                                             or node.keywords):
            bad = f"the call {ast.unparse(node)[:40]!r}"
        if bad:
            raise ValueError(f"{origin}: a schedule may use {allowed}; not {bad}")


def _why_unparsed(text, error) -> str:
    """One line: Python's syntax error message if the text is not even Python, else the error's name."""
    try:
        compile(text, "<schedule>", "eval")
    except SyntaxError as e:
        return e.msg
    base = getattr(error, "base_exc", None) or error
    return f"{type(base).__name__}: {' '.join(str(base).split())}"[:200]


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


__all__ = ["Schedule", "cosine", "exponential", "parse", "schedule", "step_decay", "t", "warmup"]
