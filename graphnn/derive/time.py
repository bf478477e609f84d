"""The 'time' view: backprop through time with the explicit and implicit terms named.

    ∂s_t/∂w = ∂⁺s_t/∂w + ∂s_t/∂s_{t−1} · ∂s_{t−1}/∂w      (∂⁺: s_{t−1} held constant)

expanded into one path term per step k, each with its numbers, and their sum. The terms
come from `graphnn.bptt_terms` (in the unrolled view: each copy's contribution in the
autodiff record; looped: the reverse loop's body at step k), so their sum is the
autodiff gradient. Formulas of the partials (scalar states) are sympy's derivative of
the cell's own element expressions.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..bptt import bptt_terms
from ..graph import element_name
from .core import Form, Step, first_example, register_view
from .resolve import Target
from .printing import number, numbers, symbol_latex


def _d(num, den, kind="d"):
    """∂num/∂den: the total derivative ('d') and an immediate one ('p') both with ∂, as the
    course writes them; '+' is the explicit ∂⁺ (the previous state held constant)."""
    op = {"d": r"\partial ", "p": r"\partial ", "+": r"\partial^{+} "}[kind]
    return rf"\frac{{{op}{num}}}{{\partial {den}}}"


def _s(state, k):
    return f"{state}_{{{k}}}"


def _recurrence(req):
    """(the recurrence: the model's ``extras['scan']``, else the first the graph holds — a
    user's own `scan` — , its state letter); an error for a graph without one."""
    from ..recurrent import scans_in
    from .core import DerivationError

    extras = (req.model.extras or {}) if req.model is not None else {}
    found = [extras["scan"]] if extras.get("scan") is not None else scans_in(req.graph)
    if not found:
        raise DerivationError("the time view writes backprop through time, and this graph has no recurrence "
                              "(rnn-scalar, rnn and lstm have one); use --view matrix or --view scalar")
    return found[0], extras.get("state", "s")


@register_view("time", one_example=True)
def time_view(req):
    scan, state = _recurrence(req)
    target = req.targets[0]
    w = target.node
    index = target.index if target.index is not None else (0,) * len(w.shape)
    if target.index is None and index:   # a matrix: the view follows one element, and says which
        req.targets[0] = Target(w, index)
    w_tex = symbol_latex(element_name(w, index))
    E = symbol_latex(req.loss.label())
    feeds = first_example(req.graph, req.feeds) if req.feeds is not None else None
    if feeds is None:
        # structure only: the factors need forward values, the formulas do not
        terms, T = None, scan.length
    else:
        terms = bptt_terms(req.loss, w, feeds, index=index, scan=scan)
        T = terms.steps
    items = [
        f"The state ${state}_t$ depends on ${w_tex}$ twice: explicitly, through step $t$'s own use of "
        f"${w_tex}$ (the immediate partial $\\partial^{{+}}$, with ${state}_{{t-1}}$ held constant), and "
        f"implicitly, through ${state}_{{t-1}}$, which depends on ${w_tex}$ too. "
        f"$\\partial {state}_t/\\partial {w_tex}$ is the total derivative (every path), "
        f"$\\partial^{{+}}$ the immediate one."]
    if target.index is None and index:
        items.insert(0, f"${symbol_latex(w.label())}$ has {int(np.prod(w.shape))} elements; this view follows one, "
                        f"${w_tex}$ (in Python, wrt=(W, (i, j)) picks another; --view matrix shows all).")
    if len(scan.cell.carry_out) > 1:
        parts = ", ".join(_base_name(c) for c in scan.cell.carry_out)
        items.append(f"The state is every carry together: ${state}_t = ({parts})$, so the step "
                     f"Jacobians $\\partial {state}_t/\\partial {state}_{{t-1}}$ are block matrices.")
    items += _formulas(scan, w, index, state)
    items.append(Step(_d(_s(state, "t"), w_tex), [Form(tex=_d(_s(state, "t"), w_tex, "+") + " + "
                      + _d(_s(state, "t"), _s(state, "t-1"), "p") + r" \cdot " + _d(_s(state, "t-1"), w_tex))],
                      kind="rule", note="The recursion (BPTT):"))
    last_only = terms is None or not any(np.any(d) for d in terms.direct[:-1])
    if last_only:
        items.append(Step(_d(E, w_tex), [Form(tex=_d(E, _s(state, T), "p") + r" \cdot " + _d(_s(state, T), w_tex))],
                          kind="rule", note=f"The loss reads the last state ${_s(state, T)}$ only:"))
        items.append(_expanded(state, w_tex, E, T))
    else:
        items.append(Step(_d(E, _s(state, "k")), [Form(tex=_d(E, _s(state, "k"), "p") + " + "
                          + _d(E, _s(state, "k+1")) + r" \cdot " + _d(_s(state, "k+1"), _s(state, "k"), "p"))],
                          kind="rule", note="The loss reads every step: the total derivative w.r.t. each state "
                                            "gathers its own use and all later ones,"))
        items.append(Step(_d(E, w_tex), [Form(tex=rf"\sum_{{k=1}}^{{{T}}} " + _d(E, _s(state, "k")) + r" \cdot "
                                              + _d(_s(state, "k"), w_tex, "+"))], kind="rule"))
    if terms is None:
        return items
    items += _forward_values(terms, state)
    items += _term_steps(terms, state, w_tex, E, last_only, w, index)
    total = terms.element(terms.total)
    parts = [terms.element(t.value) for t in reversed(terms.terms)]
    items.append(Step(_d(E, w_tex), [Form(values=tuple(parts), joiner=" + "), Form(expr=sympy.Float(total))],
                      kind="sum", value=total, note="The total: the sum of the explicit and implicit terms",
                      checks=[(("gradient", w, index), total)]))
    return items


def _base_name(node):
    name = (node.name or "s").split("(")[0]
    return (name[:-2] if name.endswith("_t") else name) + "_t"


def _formulas(scan, w, index, state):
    """s_t = f(s_{t−1}, x_t) and its two partials, when the state is one number per example."""
    cell = scan.cell
    if len(cell.carry_out) != 1 or cell.carry_out[0].shape != (None,) or w.shape != ():
        return []
    s_prev, s_now = sympy.Symbol(f"{state}_t-1"), sympy.Symbol(f"{state}_t")
    leaf = {cell.carry_in[0]: s_prev}
    for x in cell.x_in:
        if x.shape == (None,):
            leaf[x] = sympy.Symbol((x.name or "x").split("(")[0] + "_t")
    expr = _element_expr(cell.carry_out[0], leaf)
    if expr is None:
        return []
    w_sym = sympy.Symbol(element_name(w, ()))
    explicit = sympy.factor_terms(sympy.diff(expr, w_sym).subs(expr, s_now))
    implicit = sympy.factor_terms(sympy.diff(expr, s_prev).subs(expr, s_now))
    return [Step(s_now, [Form(expr=expr)], kind="rule", note="One step of the recurrence:"),
            Step(_d(_s(state, "t"), symbol_latex(w_sym.name), "+"), [Form(expr=explicit)], kind="rule",
                 note="Its partials: the explicit one (previous state constant) and the step Jacobian"),
            Step(_d(_s(state, "t"), _s(state, "t-1"), "p"), [Form(expr=implicit)], kind="rule")]


def _element_expr(node, leaf, memo=None):
    """The cell output as one sympy expression (scalar cells: every element index is fixed)."""
    memo = {} if memo is None else memo
    if node in leaf:
        return leaf[node]
    if node in memo:
        return memo[node]
    if node.kind in ("parameter", "input"):
        if node.shape not in ((), (None,)):
            return None
        return sympy.Symbol(element_name(node, ()) if node.shape == () else node.name)
    if node.kind == "constant":
        return sympy.Float(float(np.asarray(node.value).ravel()[0])) if node.value.size == 1 else None
    args = [_element_expr(x, leaf, memo) for x in node.inputs]
    if any(a is None for a in args) or node.shape not in ((), (None,)):
        return None
    try:
        expr = node.op.element_expr(node, (0,) * len(node.shape), lambda pos, idx: args[pos], 1)
    except NotImplementedError:
        return None
    memo[node] = expr
    return expr


def _jacobians(state, T, k) -> list:
    """∂s_T/∂s_{T−1} ⋯ ∂s_{k+1}/∂s_k: written out up to three factors, else as a product Π."""
    if T - k > 3:
        return [r"\prod_{j=%d}^{%d} %s" % (k + 1, T, _d(_s(state, "j"), _s(state, "j-1"), "p"))]
    return [_d(_s(state, j), _s(state, j - 1), "p") for j in range(T, k, -1)]


def _through(state, T, k) -> str:
    """'s_3, s_2' — or 's_19, …, s_1' when the list is long."""
    steps = list(range(T - 1, k - 1, -1))
    if len(steps) > 4:
        return f"${_s(state, steps[0])}, \\ldots, {_s(state, steps[-1])}$"
    return ", ".join(f"${_s(state, j)}$" for j in steps)


def _expanded(state, w_tex, E, T):
    """ds_T/dw written out: one product of step Jacobians per earlier step."""
    rows = []
    for k in range(T, 0, -1):
        rows.append(r" \cdot ".join(_jacobians(state, T, k) + [_d(_s(state, k), w_tex, "+")]))
    forms = [Form(tex=rows[0])] + [Form(tex=r, lead="\\quad +") for r in rows[1:]]
    return Step(_d(_s(state, T), w_tex), forms, kind="rule",
                note=f"Expanded: one path per step k; k = {T} is explicit, the others implicit")


def _forward_values(terms, state):
    if terms.states[0].shape != (1, 1):
        return []
    vals = ",\\; ".join(f"{_s(state, k)} = {number(s[0, 0])}" for k, s in enumerate(terms.states))
    return [f"Forward pass: ${vals}$"]


def _term_steps(terms, state, w_tex, E, last_only, w, index):
    T, scalar = terms.steps, terms.states[0].shape == (1, 1)
    out = []
    for t in reversed(terms.terms):
        k = t.k
        kind = "explicit" if k == T else "implicit"
        held = f"${_s(state, k - 1)}$ held constant" if k == T else f"through {_through(state, T, k)}"
        value = terms.element(t.value)
        if last_only:
            symbols = [_d(E, _s(state, T), "p")] + _jacobians(state, T, k) + [_d(_s(state, k), w_tex, "+")]
        else:
            symbols = [_d(E, _s(state, k)), _d(_s(state, k), w_tex, "+")]
        forms = [Form(tex=r" \cdot ".join(symbols))]
        if scalar:
            if last_only:
                nums = [terms.direct[-1][0, 0]] + [terms.terms[j - 1].step_jacobian[0, 0, 0]
                                                   for j in range(T, k, -1)] + [t.immediate[0, 0]]
            else:
                nums = [t.upstream[0, 0], t.immediate[0, 0]]
            forms.append(Form(tex=numbers(nums)))
        forms.append(Form(expr=sympy.Float(value)))
        out.append(Step(f"\\mathrm{{term}}_{{{k}}}", forms, kind="path", value=value,
                        note=f"Step k = {k}, {kind} ({held}):",
                        checks=[(("local", f"BPTT term {k}"), value)]))
    return out
