"""Mazur's form for a weight reached by several paths: sum at the node the paths share.

For w1, both paths pass through out_h1 and then split towards o1 and o2. Mazur writes

    ∂E_total/∂w1     = ∂E_total/∂out_h1 · ∂out_h1/∂net_h1 · ∂net_h1/∂w1
    ∂E_total/∂out_h1 = ∂E_o1/∂out_h1 + ∂E_o2/∂out_h1
    ∂E_o1/∂out_h1    = ∂E_o1/∂out_o1 · ∂out_o1/∂net_o1 · ∂net_o1/∂out_h1 = 0.0553994
    ∂E_total/∂out_h1 = 0.0553994 + (−0.0190491) = 0.0363503

Each piece is named by the loss element its path comes through (E_o1: the term of the
loss sum). The sum is ∂E_total/∂out_h1, the autodiff's adjoint of out_h1, and the tests
compare it with the autodiff; the pieces multiply the path's printed factors.
"""
from __future__ import annotations

import numpy as np
import sympy

from .core import Form, Step
from .printing import Partial, Total, latex


def _common_tail(paths):
    """The links every path ends with (the same edges, the same element), top first."""
    tail = []
    while all(len(p) > len(tail) + 1 for p in paths):
        last = [p[len(p) - 1 - len(tail)] for p in paths]
        if all(x.key[:4] == last[0].key[:4] for x in last):
            tail.insert(0, last[0])
        else:
            break
    return tail


def shared_node_form(ctx, node, index, paths) -> list:
    """The steps above for one element reached by several paths (none if they share no node,
    or if they do not split at distinct named loss elements)."""
    tail = _common_tail(paths)
    if not tail:
        return []
    heads = [p[0].head for p in paths]
    if any(h is None for h in heads) or len(set(heads)) != len(heads):
        return []
    shared, shared_index = tail[0].consumer, tail[0].index
    loss_sym = ctx.record.symbol(ctx.record.loss, ())
    s_sym = tail[0].of
    w_sym = ctx.record.symbol(node, index)
    have_values = ctx.values is not None
    items = [f"Summing at the shared node, as Mazur does: every path passes through ${latex(s_sym)}$, "
             f"so ${latex(Total(loss_sym, s_sym))}$ collects what each output's error "
             f"({', '.join('$' + latex(h) + '$' for h in heads)}) sends back to it."]
    tail_partials = [Partial(s.of, s.wrt) for s in tail]
    items.append(Step(Total(loss_sym, w_sym), [Form(factors=[Total(loss_sym, s_sym)] + tail_partials)],
                      kind="rule"))
    pieces = [Partial(h, s_sym) for h in heads]
    items.append(Step(Total(loss_sym, s_sym), [Form(expr=sympy.Add(*pieces, evaluate=False),
                                                    tex=" + ".join(latex(p) for p in pieces))], kind="rule"))
    piece_values = []
    for head, path, piece in zip(heads, paths, pieces):
        upper = path[:len(path) - len(tail)]
        chain = [Partial(head if k == 0 else s.of, s.wrt) for k, s in enumerate(upper)]
        forms = [Form(factors=chain)] if len(chain) > 1 else []
        forms.append(Form(factors=[s.display for s in upper]))
        checks, value = [], None
        if have_values:
            vals = [s.value for s in upper]
            value = float(np.prod(vals))
            piece_values.append(value)
            forms += ([Form(values=tuple(vals))] if len(vals) > 1 else []) + [Form(expr=sympy.Float(value))]
            checks = [(("local", str(head), str(s_sym)), value)]
        items.append(Step(piece, forms, kind="piece", value=value, checks=checks))
    if not have_values:
        return items
    total = sum(piece_values)
    items.append(Step(Total(loss_sym, s_sym), [Form(values=tuple(piece_values), joiner=" + "),
                                               Form(expr=sympy.Float(total))],
                      kind="shared", value=total, checks=[(("adjoint", shared, shared_index), total)]))
    tail_values = [s.value for s in tail]
    grad = total * float(np.prod(tail_values))
    items.append(Step(Total(loss_sym, w_sym), [Form(values=(total, *tail_values)), Form(expr=sympy.Float(grad))],
                      kind="gradient", value=grad, checks=[(("gradient", node, index), grad)]))
    return items
