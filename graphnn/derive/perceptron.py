"""Threshold units: no gradient, so the derivation is the perceptron rule, worked through.

o = step(w₀ + w₁x₁ + w₂x₂) has derivative 0 wherever it exists: backpropagation has
nothing to send back. The course trains such units by Rosenblatt's rule

    w_i ← w_i + η (t − o) x_i,    w₀ ← w₀ + η (t − o)

one example at a time. The 'perceptron' view writes one pass over the examples: each
example's net input and output with numbers (values of the reference evaluator) and,
where the unit is wrong, the update. `derive` uses it for the scalar and matrix views of
a loss that runs through a threshold unit.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..evaluate import evaluate
from ..graph import Graph
from ..ops import Linear, Map
from .core import DerivationError, Form, Step, register_view
from .formulas import Formulas
from ..names import Names
from .printing import number, signed_number


def threshold_unit(graph: Graph):
    """The first unit without a gradient (a step or sign Map) in ``graph``, else None."""
    return next((n for n in graph.nodes if isinstance(n.op, Map) and "nondiff" in n.attrs), None)


def _elements(names, node, row):
    return [names.element(node, (row,) + idx) if node.shape and node.shape[0] is None
            else names.element(node, idx) for idx in np.ndindex(*[d for d in node.shape if d is not None])]


@register_view("perceptron")
def perceptron_view(req) -> list:
    unit = threshold_unit(req.graph)
    lin = unit.inputs[0] if unit is not None else None
    if lin is None or not isinstance(lin.op, Linear) or lin.shape[-1] != 1:
        raise DerivationError("the perceptron rule needs a single threshold unit o = step(x w + w0)")
    x, w, b = lin.inputs
    t = next((n for n in req.graph.inputs if n is not x), None)
    names = Names(req.graph)
    lr = req.lr if req.lr is not None else (getattr(req.model, "defaults", None) or {}).get("lr", 0.1)
    items = [f"${names.tex(unit)} = {Formulas(names).rhs(unit)}$ is a threshold unit: its derivative is 0 "
             "wherever it exists, "
             "so backpropagation has nothing to send back. It learns by the perceptron rule, one example at "
             rf"a time: $w_i \leftarrow w_i + \eta\,(t - o)\,x_i$ and the bias likewise with $x_0 = 1$ "
             rf"($\eta = {number(lr)}$)."]
    if req.feeds is None:
        return items
    feeds = {k: np.asarray(v, dtype=float) for k, v in req.feeds.items()}
    X, T = feeds[x.name], feeds[t.name] if t is not None else None
    wv, bv = np.array(w.value, dtype=float), np.array(b.value, dtype=float)
    w_names, x_names = _elements(names, w, 0), _elements(names, x, 0)
    b_name = _elements(names, b, 0)[0]
    for k in range(X.shape[0]):
        row = {x.name: X[k:k + 1], **({t.name: T[k:k + 1]} if t is not None else {})}
        net, out = evaluate([lin, unit], row, {w: wv, b: bv})
        net, out, target = float(net.ravel()[0]), float(out.ravel()[0]), float(T[k].ravel()[0])
        xs = X[k].ravel()
        items.append(f"Example {k + 1}: " + ", ".join(f"${n} = {number(v)}$" for n, v in zip(x_names, xs))
                     + f", target ${number(target)}$.")
        terms = " + ".join(rf"{wn} \cdot {xn}" for wn, xn in zip(w_names, x_names)) + f" + {b_name}"
        nums = " + ".join(rf"{signed_number(a)} \cdot {signed_number(c)}" for a, c in zip(wv.ravel(), xs)) \
            + f" + {signed_number(bv.ravel()[0])}"
        items.append(Step(names.tex(lin), [Form(tex=terms), Form(tex=nums), Form(expr=sympy.Float(net))],
                          kind="forward", value=net, checks=[(("local", f"net {k + 1}"), net)]))
        items.append(Step(names.tex(unit), [Form(expr=sympy.Float(out))], kind="forward", value=out))
        err = target - out
        if err == 0:
            items.append("$t - o = 0$: right, no change.")
            continue
        for i, (wn, xn) in enumerate(zip(w_names, x_names)):
            new = wv.ravel()[i] + lr * err * xs[i]
            items.append(Step(wn + "^{+}", [Form(tex=rf"{wn} + \eta\,(t - o)\,{xn}"),
                                            Form(tex=rf"{signed_number(wv.ravel()[i])} + {number(lr)} \cdot "
                                                     rf"{signed_number(err)} \cdot {signed_number(xs[i])}"),
                                            Form(expr=sympy.Float(new))], kind="update", value=new))
            wv.ravel()[i] = new
        bv = bv + lr * err
        items.append(Step(b_name + "^{+}", [Form(tex=rf"{b_name} + \eta\,(t - o)"), Form(expr=sympy.Float(bv.ravel()[0]))],
                          kind="update", value=float(bv.ravel()[0])))
    return items
