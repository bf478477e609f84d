"""``apply_update``: an optimizer's rules as one loop over the flat parameter vector.

The same text for every model trained by one built-in optimizer in one dtype, so those are
stored with the model-independent kernels (codegen/shared_loops.py: compiled once per install)
and a generated module imports them; another optimizer's is printed into the module.
"""
from __future__ import annotations

import sympy

from . import schedule as S
from .printer import INDENT, Writer


def emit_update(update: S.Update, dtype: str, name: str = "apply_update", helpers: set | None = None) -> str:
    """``def name(flat_params, flat_grad, state_*, step, hyper…)``: the optimizer's rules in one
    loop over the flat arrays, its per-step scalars computed once before it; the helpers its
    rules call (exp_f64, …) are added to ``helpers``."""
    w = Writer(dtype)
    step_sym = sympy.Symbol("step")
    tsym = sympy.Symbol("t")
    states = [f"state_{s}" for s in update.state]
    for sym, e in update.hoisted:
        text = w.expr(e.xreplace({tsym: step_sym}))
        w(f"{sym} = {text if dtype == 'float64' else f'np.float32({text})'}")
    w("for k in range(flat_params.shape[0]):")
    w.indent()
    w("w = flat_params[k]")
    w("g = flat_grad[k]")
    for s, arr in zip(update.state, states):
        w(f"{s} = {arr}[k]")
    for target, e in update.rules:
        w(f"{target} = {w.expr(e.xreplace({tsym: step_sym}))}")
    for s, arr in zip(update.state, states):
        w(f"{arr}[k] = {s}")
    w("flat_params[k] = w")
    if helpers is not None:
        helpers |= w.printer.helpers
    doc = f'{INDENT}"""One optimizer step on the flat parameters (step = 1, 2, ... for Adam\'s bias correction)."""'
    return "\n".join(["@njit(**JIT)", f"def {name}({', '.join(update_args(update))}):", doc, *w.lines]) + "\n"


def update_args(update: S.Update) -> list:
    return ["flat_params", "flat_grad", *[f"state_{s}" for s in update.state], "step", *update.hyper]
