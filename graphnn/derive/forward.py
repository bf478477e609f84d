"""The 'forward' view: the forward pass with numbers, as Mazur's page starts.

    net_h1 = w_1 · i_1 + w_2 · i_2 + b_1 = 0.15 · 0.05 + 0.2 · 0.1 + 0.35 = 0.3775
    out_h1 = σ(net_h1) = 1/(1 + e^{−0.3775}) = 0.593270
    …
    E_o1 = ½(target_o1 − out_o1)² = ½(0.01 − 0.751365)² = 0.274811
    E_total = E_o1 + E_o2 = 0.274811 + 0.0235600 = 0.298371

Small nets (at most `ELEMENT_LIMIT` computed elements) are written element by element
from each op's element formula; bigger ones node by node with the formulas of
`formulas.py` and the values as (abbreviated) matrices. Every number is a value of the
reference evaluator; each step claims ('forward', node, index) for the tests.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..evaluate import evaluate
from ..looped import Loop
from ..ops import Count, Linear, Map, MatMul, Sum
from ..ops.base import all_indices, concrete_shape
from ..ops.dropout import FIRST_ROW, STEP, TRAINING
from .core import Form, Step, first_example, register_view
from .formulas import Formulas, activation_tex, is_leaf, is_loop_output, same_tex
from ..names import Names, activation_of
from .printing import TeachingPrinter, latex, matrix, signed_number

#: nets with more computed elements than this are written node by node
ELEMENT_LIMIT = 48


@register_view("forward", one_example=True, needs_wrt=False)
def forward_view(req) -> list:
    names = Names(req.graph)
    formulas = Formulas(names)
    loss_tex = names.tex(req.loss)
    req.title = f"Forward pass: from the inputs to ${loss_tex}$"
    nodes = [n for n in req.graph.nodes if n.kind == "op"]
    if req.feeds is None:
        from .matrix import MatrixContext, net_equations
        return net_equations(MatrixContext(req, names=names, values=None), req.graph.nodes)
    feeds = first_example(req.graph, req.feeds)
    _, values = evaluate(req.loss, feeds, return_values=True)
    size = sum(int(np.prod(concrete_shape(n.shape, 1))) for n in nodes if names.label(n))
    if size <= ELEMENT_LIMIT and not any(isinstance(n.op, Loop) for n in nodes):
        return _elementwise(req, names, values, nodes)
    return _by_node(req, names, formulas, values, nodes)


def _inputs_prose(req, names, values, scalar=True) -> str:
    parts = []
    for n in req.graph.inputs + [p for p in req.graph.parameters]:
        if n not in values or n in (TRAINING, STEP, FIRST_ROW):   # dropout's mode, step, shard: plumbing
            continue
        v = np.asarray(values[n])
        if scalar and v.size <= 8:
            parts += [f"${names.element(n, idx)} = {latex(float(v[idx]))}$" for idx in all_indices(v.shape)]
        elif not scalar:
            parts.append(f"${names.tex(n)}$ ({'×'.join(str(d) for d in v.shape) or '1'})")
    return "The inputs and weights: " + ", ".join(parts) + "." if parts else ""


def _elementwise(req, names, values, nodes) -> list:
    items = [_inputs_prose(req, names, values)]
    for node in nodes:
        if not names.label(node) and node is not req.loss:
            continue
        for idx in all_indices(concrete_shape(node.shape, 1)):
            sym_tex, num_tex = _element_forms(node, idx, names, values)
            value = float(np.asarray(values[node])[idx])
            lhs = names.element(node, idx)
            value_tex = latex(sympy.Float(value))
            texts = []
            for t in sym_tex:     # never x_1 = x_1, nor tanh(net_1) twice, nor n = 1 = 1 (the value follows)
                if not same_tex(t, lhs) and not any(same_tex(t, u) for u in texts + [value_tex]):
                    texts.append(t)
            if num_tex and texts and not any(same_tex(num_tex, u) for u in texts + [value_tex]):
                texts.append(num_tex)   # a bare leaf's number is its value, which follows
            forms = [Form(tex=t) for t in texts]
            forms.append(Form(expr=sympy.Float(value)))
            items.append(Step(names.element(node, idx), forms, kind="forward", value=value,
                              checks=[(("forward", node, idx), value)]))
    return [i for i in items if i]


def _inlined(node, idx, names):
    """The element formula of ``node[idx]`` with an unnamed elementwise operand (w·s + u·x
    inside net_t = … + b, the ½(t − s)² inside a sum) written out by its own formula rather
    than under a made-up name; (expression, symbol → (operand node, index))."""
    leaves: dict = {}

    def expand(n, i):
        def sym(pos, j):
            x = n.inputs[pos]
            if x.kind == "op" and not names.label(x) and isinstance(x.op, (Map, Sum)):
                return expand(x, tuple(j))
            s = sympy.Symbol(f"e{len(leaves)}")
            leaves[s] = (x, tuple(j))
            return s
        return n.op.element_expr(n, i, sym, 1)

    return expand(node, idx), leaves


def _element_forms(node, idx, names, values):
    """([symbolic forms], numeric form) of one element: Σ w·x + b for a net input, the
    activation and its formula for a unit, the element formula otherwise."""
    def element_names(expr):
        out, nums = {}, {}
        for s in expr.free_symbols:
            x, i = leaves[s]
            out[s] = names.element(x, i)
            nums[s] = signed_number(float(np.asarray(values[x])[i]))
        return out, nums

    if isinstance(node.op, (Linear, MatMul)) and len(node.shape) == 2:
        *_, j = idx
        k_n = node.inputs[1].shape[-2]
        pairs = [((1, (k, j)), (0, (idx[0], k))) for k in range(k_n)]
        terms = [(names.element(node.inputs[a[0]], a[1]), names.element(node.inputs[b[0]], b[1])) for a, b in pairs]
        nums = [(_num(values, node.inputs[a[0]], a[1]), _num(values, node.inputs[b[0]], b[1])) for a, b in pairs]
        sym_tex = " + ".join(rf"{w} \cdot {x}" for w, x in terms)
        num_tex = " + ".join(rf"{signed_number(w)} \cdot {signed_number(x)}" for w, x in nums)
        if isinstance(node.op, Linear):
            b = node.inputs[2]
            bi = tuple(0 if d == 1 else idx[len(idx) - len(b.shape) + k] for k, d in enumerate(b.shape))
            sym_tex += " + " + names.element(b, bi)
            num_tex += " + " + signed_number(_num(values, b, bi))
        return [sym_tex], num_tex
    expr, leaves = _inlined(node, idx, names)
    tex_names, num_names = element_names(expr)
    forms = []
    act = activation_of(node)
    if act is not None:
        forms.append(activation_tex(act) + r"\left(%s\right)" % tex_names[next(iter(expr.free_symbols))])
    forms.append(TeachingPrinter(tex_names).doprint(expr))
    return forms, TeachingPrinter(num_names).doprint(expr)


def _num(values, node, idx) -> float:
    return float(np.asarray(values[node])[idx])


def _by_node(req, names, formulas, values, nodes) -> list:
    from .matrix import MatrixContext
    from .recurrence import forward_items

    items = [_inputs_prose(req, names, values, scalar=False)]
    for node in nodes:
        if isinstance(node.op, Loop):          # the cell's equations, then the final state's values
            items += forward_items(MatrixContext(req, names=names, values=None), node)
            continue
        if not names.label(node) or is_leaf(node) or isinstance(node.op, Count):
            continue
        value = np.asarray(values[node])
        rhs = None if is_loop_output(node) else formulas.rhs(node)   # h_T: the last step's
        forms = [] if rhs is None or same_tex(rhs, names.tex(node)) else [Form(tex=rhs)]   # no vᵀ = vᵀ
        forms.append(Form(array=value) if value.ndim else Form(expr=sympy.Float(float(value))))
        items.append(Step(names.tex(node), forms, kind="forward", value=value,
                          checks=[(("forward", node, None), value)]))
    if req.loss not in [s.lhs for s in items if isinstance(s, Step)] and not names.label(req.loss):
        value = float(values[req.loss])
        items.append(Step(names.tex(req.loss), [Form(tex=formulas.rhs(req.loss)), Form(expr=sympy.Float(value))],
                          kind="forward", value=value, checks=[(("forward", req.loss, None), value)]))
    return [i for i in items if i]


__all__ = ["forward_view", "ELEMENT_LIMIT", "matrix"]
