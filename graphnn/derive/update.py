"""The update step after the gradient: w⁺ = w − η·∂E/∂w, from the optimizer's own rules,
and the loss after the step, E_total⁺ (Mazur: 0.298371 → 0.291028).

The rule text is the optimizer's sympy rules (graphnn/optim.py) with the weight's name
put in; the numbers come from the optimizer's NumPy reference `update` applied to the
parameter's value and its gradient as the gradient graph computes it (first step,
zero state). The loss after the step updates every trainable parameter at once from
the same gradients (fixed parameters stay) and evaluates the forward graph again.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..autodiff import grad
from ..evaluate import evaluate
from ..optim import g as G_SYM, make_optimizer, t as T_SYM, w as W_SYM
from .core import Form, Step
from .printing import HYPER_LATEX, latex, matrix, number, signed_number

HYPER_TEXT = {"lr": "η", "mu": "μ", "beta1": "β1", "beta2": "β2", "eps": "ε"}


def optimizer_for(req):
    """The optimizer the derivation shows: request's, else the model's default, else SGD."""
    defaults = getattr(req.model, "defaults", None) or {}
    spec = req.optimizer or defaults.get("optimizer", "sgd")
    lr = req.lr if req.lr is not None else defaults.get("lr")
    return make_optimizer(spec, **({"lr": lr} if lr is not None else {}))


def _hyper_text(opt) -> str:
    return ", ".join(f"${HYPER_LATEX.get(k, k)} = {number(v)}$" for k, v in opt.hyper.items())


def update_steps(req, node, index, w_sym, grad_expr, grad_value=None, header=True) -> list:
    """Steps w⁺ = rule for one element (``index``) or a whole tensor (``index`` None).

    ``w_sym``: the weight's symbol (w5, or W2 for a matrix); ``grad_expr``: how its
    gradient prints (∂E/∂w5).
    """
    opt = optimizer_for(req)
    names = {sympy.Symbol(k): HYPER_LATEX.get(k, k) for k in opt.hyper}
    state_syms = {sympy.Symbol(s): sympy.Symbol(f"{s}_{w_sym.name}") for s in opt.state}
    g_placeholder = sympy.Symbol("zz_grad")  # sorts after η: prints η · ∂E/∂w
    names[g_placeholder] = latex(grad_expr)
    subs = {W_SYM: w_sym, G_SYM: g_placeholder, **state_syms}
    items = [f"Update by {opt.name} ({_hyper_text(opt)}" + (", first step, zero state" if opt.state else "")
             + "):"] if header else []
    after = None
    if req.values is not None:
        value = np.array(node.value, dtype=float)
        grads = np.asarray(req.values.adjoint(node), dtype=float)
        params = {node: value}
        state = opt.init_state(params)
        before = {s: state[node][s].copy() for s in opt.state}
        opt.update(params, {node: grads}, state, step=1)
        after = {"w": params[node], **{s: state[node][s] for s in opt.state}}
        pick = (lambda a: float(np.asarray(a)[index])) if index is not None else (lambda a: a)
        current = {"w": pick(node.value), "g": pick(grads),
                   **{s: pick(before[s]) for s in opt.state}}
    for target, expr in opt.rules():
        shown = expr.subs({T_SYM: 1}).subs(subs, simultaneous=True)
        lhs = latex(subs.get(target, target) if target != W_SYM else w_sym) + "^{+}"
        forms = [Form(tex=latex(shown, names, mul_symbol="dot"))]
        if target in state_syms:  # later rules read the new value: print it as v⁺
            names[state_syms[target]] = lhs
        checks = []
        value = None
        if after is not None:
            key = "w" if target == W_SYM else str(target)
            nums = {w_sym: current["w"], g_placeholder: current["g"],
                    **{sym: current[str(s)] for s, sym in state_syms.items()},
                    **{sympy.Symbol(k): v for k, v in opt.hyper.items()}}
            value = pick(after[key])
            forms += [Form(tex=lambda tm, shown=shown, nums=dict(nums): latex(
                          shown, {k: _num(v, tm) for k, v in nums.items()}, mul_symbol="dot")),
                      Form(expr=sympy.Float(value)) if index is not None else Form(array=value)]
            current[key] = value
            if key == "w":
                checks = [(("update", node, index), value)]
        items.append(Step(lhs, forms, kind="update", value=value, checks=checks))
    return items


def loss_after_update(req) -> list:
    """Prose and a step: the loss before and after one step of every trainable parameter."""
    params = [p for p in req.graph.parameters if p.trainable]
    if not params:
        return []
    opt = optimizer_for(req)
    feeds = req.values.feeds
    grads = grad(req.loss, params, disconnected="zero")
    values = evaluate([req.loss] + [grads[p] for p in params], feeds)
    before, gvals = float(values[0]), values[1:]
    new = {p: np.array(p.value, dtype=float) for p in params}
    state = opt.init_state(new)
    opt.update(new, {p: np.asarray(gv, dtype=float) for p, gv in zip(params, gvals)}, state, step=1)
    after = float(evaluate(req.loss, feeds, new))
    fixed = [p for p in req.graph.parameters if not p.trainable]
    loss_tex = latex(sympy.Symbol(req.loss.label()))
    what = ", ".join(f"${latex(sympy.Symbol(p.label()))}$" for p in params)
    note = (f"After one step of every weight together ({what}" +
            (f"; {', '.join('$' + latex(sympy.Symbol(p.label())) + '$' for p in fixed)} fixed" if fixed else "")
            + f"), the forward pass again: the loss went from ${loss_tex} = {number(before)}$ to")
    return [Step(loss_tex + "^{+}", [Form(expr=sympy.Float(after))], kind="loss_after", value=after, note=note,
                 checks=[(("loss_after",), after)])]


def _num(v, text_mode=False):
    if np.ndim(v):
        return matrix(v, text_mode)
    return signed_number(v)
