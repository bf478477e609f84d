"""The scalar view: one weight element, its chain(s) of partials, as Mazur writes them.

∂E_total/∂w5 = ∂E_total/∂out_o1 · ∂out_o1/∂net_o1 · ∂net_o1/∂w5
             = −(target_o1 − out_o1) · out_o1(1 − out_o1) · out_h1
             = 0.741365 · 0.186816 · 0.593270 = 0.0821670

Paths come from `GradRecord.chains` (one per way the weight reaches the loss: w1 has
two, through o1 and o2, listed as terms and summed). Links whose partial is exactly 1
(a sum's E_total ← E_o1) are merged into their neighbour, as the course does. Then
Mazur's own form, summing at the node the paths share (∂E_total/∂out_h1 =
∂E_o1/∂out_h1 + ∂E_o2/∂out_h1, `shared.py`), and the delta form naming the
intermediates: δ_o1 = ∂E/∂net_o1, δ_h1 = (δ_o1·w5 + δ_o2·w7)·…, ∂E/∂w = δ · input.

The view writes one term per path, so it refuses a request with more than `MAX_PATHS`
terms before enumerating any (`count_paths` bounds them from the record's tensor terms
in one sweep), pointing to the matrix view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from ..graph import Node
from ..ops import NET_OPS, Count, Linear, MatMul, Map, Max, OpTable, Softmax, SoftmaxCrossEntropy, Sum
from ..ops.base import all_indices, concrete_shape
from .core import DerivationError, Form, Step, Target, register_view
from ..names import Names
from .printing import Partial, Total, factored, latex, numbers, product, signed_number
from .update import loss_after_update, update_steps

#: the scalar view writes one term per path from the loss to each requested element; past
#: this many terms the listing is unreadable (and slow): the matrix view is the one to use
MAX_PATHS = 64


@dataclass(frozen=True)
class ShownLink:
    """One displayed factor ∂of/∂wrt (possibly several record links merged)."""

    of: sympy.Symbol
    wrt: sympy.Symbol
    partial: sympy.Expr          # as the record gives it
    display: sympy.Expr          # the course's form (−(t − y), p − t)
    consumer: Node
    index: tuple
    input: Node
    in_index: tuple
    value: float | None = None
    head: sympy.Symbol | None = None   # the loss element a merged first link came through (E_o1)

    @property
    def key(self):
        return (self.consumer, self.index, self.input, self.in_index, self.of)


class ScalarContext:
    """Shared state of one scalar derivation: the record, symbol values, special forms."""

    def __init__(self, req):
        self.req, self.record = req, req.record
        self.values = req.values
        self.names = Names(req.graph)
        self._sym_values = None
        self._numbers: dict = {}

    # -- numbers ---------------------------------------------------------------------------
    def symbol_values(self) -> dict:
        """Every element symbol of the forward graph → its value (batch of one)."""
        if self._sym_values is None:
            out = {}
            for node in self.req.graph.nodes:
                if node not in self.values:
                    continue
                for idx in all_indices(concrete_shape(node.shape, 1)):
                    out[self.record.symbol(node, idx)] = self.values.element(node, idx)
            self._sym_values = out
        return self._sym_values

    def number(self, expr) -> float:
        """The value of a partial at the example (only its own symbols substituted: fast)."""
        expr = sympy.sympify(expr)
        if expr not in self._numbers:
            values = self.symbol_values()
            filled = expr.xreplace({s: sympy.Float(values[s], 17) for s in expr.free_symbols if s in values})
            self._numbers[expr] = float(sympy.N(filled.doit() if isinstance(filled, sympy.Basic) else filled))
        return self._numbers[expr]

    # -- links -----------------------------------------------------------------------------
    def shown(self, path, merge_unnamed=True) -> list[ShownLink]:
        """A record path as displayed. A link is merged into the next one when its partial
        is exactly 1 (a sum's E_total ← E_o1) or when it ends in an unnamed node (the
        inside of a mean); the merged factor's partial is the product. A path that would
        merge into one factor although it has several keeps its unnamed nodes."""
        out, pending = [], []
        for k, link in enumerate(path):
            last = k == len(path) - 1
            if not last and (link.partial == 1 or (merge_unnamed and _unnamed(link.input))):
                pending.append(link)
                continue
            parts = [x for x in pending + [link] if x.partial != 1] or [link]
            shown = [self.display(x) for x in parts]
            display = shown[0][0] if len(shown) == 1 else sympy.Mul(*[d for d, _ in shown])
            value = None
            if self.values is not None:
                value = 1.0
                for _, v in shown:
                    value *= v
            of = (pending[0] if pending else link).output_symbol
            head = pending[0].input_symbol if pending and not out and not _unnamed(pending[0].input) else None
            partial = sympy.Mul(*[x.partial for x in parts])
            out.append(ShownLink(of, link.input_symbol, partial, display, link.consumer,
                                 link.index, link.input, link.in_index, value, head))
            pending = []
        if merge_unnamed and len(out) == 1 and sum(1 for link in path if link.partial != 1) > 1:
            return self.shown(path, merge_unnamed=False)
        return out

    def display(self, link):
        """The course's form of a link's partial, and its value (None without values)."""
        c = link.consumer
        special = SPECIAL_LINKS.get(c.op)
        if special is not None:
            shown = special(self, link)
            if shown is not None:
                return shown
        display = _factored(link, self.record).subs(self.count_symbols())
        return display, (self.number(link.partial) if self.values is not None else None)

    def count_symbols(self) -> dict:
        """Element counts of means print as n (their node has no teaching name)."""
        if not hasattr(self, "_counts"):
            self._counts = {self.record.symbol(n, ()): sympy.Symbol("n")
                            for n in self.req.graph.nodes if isinstance(n.op, Count)}
        return self._counts


def _factored(link, record):
    """−(target − out) rather than out − target: a partial that is a multiple of a
    difference appearing in the consumer's own formula is printed as that multiple."""
    p = link.partial
    if not isinstance(p, sympy.Add):
        return p
    c = link.consumer
    try:
        forward = c.op.element_expr(c, link.index, lambda pos, i: record.symbol(c.inputs[pos], i), 1)
    except NotImplementedError:
        return p
    return factored(p, forward)


def _softmax_ce_link(ctx, link):
    """Fused softmax cross-entropy: ∂CE/∂z_k = p_k − t_k, with p = softmax(z) named."""
    if link.position != 0:
        return None
    c = link.consumer
    t_sym = ctx.record.symbol(c.inputs[1], link.in_index)
    p_sym = sympy.Symbol(f"p_{_suffix(link.input_symbol.name)}")
    display = p_sym - t_sym
    if ctx.values is None:
        return display, None
    p = _softmax_value(ctx, link)
    return display, p - ctx.values.element(c.inputs[1], link.in_index)


def _softmax_value(ctx, link):
    """p_k from the gradient graph: the softmax node the fused op's gradient built."""
    for term in ctx.record.terms_into(link.input):
        if term.consumer is link.consumer:
            for n in term.contribution.inputs:
                if isinstance(n.op, Softmax):
                    return ctx.values.element(n, link.in_index)
    raise AssertionError("softmax_cross_entropy's gradient has no softmax node")


#: op class -> fn(ctx, link) -> (the course's form, value) or None: links shown specially
SPECIAL_LINKS = OpTable("a scalar-view link form", {SoftmaxCrossEntropy: _softmax_ce_link})


def _unnamed(node) -> bool:
    return node.name is None and node.names is None


def _suffix(name: str) -> str:
    return name.split("_", 1)[1] if "_" in name else name


def delta_symbol(ctx, sym: sympy.Symbol, node, index) -> sympy.Symbol:
    """δ_o1 for net_o1 (the net input's suffix), δ⁽²⁾_1 for net⁽²⁾_1, δ_name otherwise; the
    symbol's course LaTeX goes into the derivation's display names."""
    name = sym.name
    delta = sympy.Symbol(f"delta_{name[4:]}" if name.startswith("net_") else f"delta_{{{name}}}")
    shown = ctx.names.element(node, index)
    if shown.startswith(r"\mathrm{net}"):
        ctx.req.display[delta.name] = r"\delta" + shown[len(r"\mathrm{net}"):]
    elif not name.startswith("net_"):
        ctx.req.display[delta.name] = r"\delta_{%s}" % shown
    return delta


# -- how many paths: a bound from the tensor-level record, before enumerating any -------------


def _reads(term) -> int:
    """How many elements of the consumer read one element of the input (batch of one)."""
    c, x = term.consumer, term.input
    out = int(np.prod(concrete_shape(c.shape, 1), dtype=np.int64))
    size = max(1, int(np.prod(concrete_shape(x.shape, 1), dtype=np.int64)))
    if isinstance(c.op, Map):
        return max(1, out // size)
    if isinstance(c.op, (Sum, Max, Count)):
        return 1
    if isinstance(c.op, (Linear, MatMul)):
        rows = concrete_shape(c.shape, 1)
        return int(rows[-1]) if term.position == 0 else int(np.prod(rows[:-1], dtype=np.int64)) or 1
    return out


def count_paths(record) -> dict:
    """node → an upper bound of the paths from the loss to one of its elements."""
    paths = {record.loss: 1}
    for node in record.order[1:]:
        paths[node] = sum(paths.get(t.consumer, 0) * _reads(t) for t in record.terms_into(node))
    return paths


def _check_size(req, targets):
    from ..looped import Loop
    if any(isinstance(n.op, Loop) for n in req.record.order):
        raise DerivationError("the scalar view follows every element, and this net's recurrence is one looped "
                              "node; use view='time' (--view time: backprop through time, term by term) or "
                              "view='matrix' (--view matrix)")
    paths = count_paths(req.record)
    total, worst = 0, None
    for t in targets:
        n = len(t.elements(batch=1))
        total += n * paths.get(t.node, 0)
        worst = worst or (t.node, n, paths.get(t.node, 0))
    if total > MAX_PATHS:
        node, n, per = worst
        what = f"{node.label()} has {n} element{'s' if n > 1 else ''} with up to {per} path{'s' if per > 1 else ''} each"
        raise DerivationError(
            f"the scalar view writes one term per path from {req.loss.label()} to each element: {what} "
            f"(up to {total} terms, more than {MAX_PATHS}); use view='matrix' (--view matrix), which "
            "writes the same gradient for whole layers")


# -- the view ---------------------------------------------------------------------------------


@register_view("scalar", one_example=True)
def scalar_view(req) -> list:
    targets = [Target(t.node, ()) if not t.node.shape and t.index is None else t for t in req.targets]
    _check_size(req, targets)
    ctx = ScalarContext(req)
    req.display.add(ctx.names.display(req.record))
    items = []
    for target in targets:
        for index in target.elements(batch=1):
            items += element_derivation(ctx, target.node, index)
    if req.update and req.values is not None:
        items += loss_after_update(req)
    return items


def element_derivation(ctx, node, index) -> list:
    """Chain rule, per-path terms, sum, the shared-node and delta forms and update for one element."""
    from .shared import shared_node_form

    record = ctx.record
    loss_sym = record.symbol(record.loss, ())
    w_sym = record.symbol(node, index)
    paths = [ctx.shown(p) for p in record.chains(node, index, batch=1)]
    total = Total(loss_sym, w_sym)
    have_values = ctx.values is not None
    if not paths:   # sliced away, multiplied by a constant 0 …: no term to write, the gradient is 0
        return _no_path(ctx, node, index, loss_sym, w_sym, total, have_values)
    items = [f"How ${_tex(loss_sym)}$ changes with ${_tex(w_sym)}$: the chain rule along "
             + ("the one path" if len(paths) == 1 else f"each of the {len(paths)} paths")
             + f" from ${_tex(loss_sym)}$ down to ${_tex(w_sym)}$."]
    chains = [[Partial(s.of, s.wrt) for s in p] for p in paths]
    term_values = []
    if len(paths) == 1:
        items.append(_path_step(total, chains[0], paths[0], have_values, "chain", term_values))
    else:
        terms = [sympy.Symbol(f"term_{k}") for k in range(1, len(paths) + 1)]
        items.append(Step(total, [Form(factors=chains[0])]
                          + [Form(factors=c, lead=r"\quad +") for c in chains[1:]]
                          + [Form(expr=sympy.Add(*terms, evaluate=False),
                                  tex=" + ".join(latex(t) for t in terms))], kind="chain"))
        for k, (chain, path) in enumerate(zip(chains, paths), 1):
            via = ", ".join(f"${_tex(s.wrt)}$" for s in path[:-1])
            step = _path_step(sympy.Symbol(f"term_{k}"), chain, path, have_values, "path", term_values)
            step.note = f"Path {k} of {len(paths)}" + (f" (through {via}):" if via else ":")
            items.append(step)
        if have_values:
            value = sum(term_values)
            items.append(Step(total, [Form(values=tuple(term_values), joiner=" + "), Form(expr=sympy.Float(value))],
                              kind="sum", value=value, checks=[(("gradient", node, index), value)],
                              note=f"Sum of the {len(paths)} path terms:"))
        items += shared_node_form(ctx, node, index, paths)
    if term_values and len(paths) == 1:
        items[-1].checks.append((("gradient", node, index), term_values[0]))
    items += delta_form(ctx, node, index, paths)
    if ctx.req.update:
        grad_value = sum(term_values) if have_values else None
        items += update_steps(ctx.req, node, index, w_sym, total, grad_value)
    return items


def _no_path(ctx, node, index, loss_sym, w_sym, total, have_values) -> list:
    """The derivation of an element the loss does not read: ∂E/∂w = 0 (and w⁺ = w)."""
    items = [f"${_tex(loss_sym)}$ does not depend on ${_tex(w_sym)}$: no path leads from "
             f"${_tex(loss_sym)}$ down to ${_tex(w_sym)}$, so the chain rule has no term.",
             Step(total, [Form(expr=sympy.Integer(0))], kind="gradient", value=0.0 if have_values else None,
                  checks=[(("gradient", node, index), 0.0)] if have_values else [])]
    if ctx.req.update:
        items += update_steps(ctx.req, node, index, w_sym, total, 0.0 if have_values else None)
    return items


def _product(factors):
    return sympy.Mul(*factors, evaluate=False)


def _tex(sym):
    return latex(sym)


def _path_step(lhs, chain, path, have_values, kind, term_values):
    forms = [Form(factors=chain)] if chain else []
    forms.append(Form(factors=[s.display for s in path]))
    checks = []
    if have_values:
        vals = [s.value for s in path]
        term = float(np.prod(vals))
        forms += ([Form(values=tuple(vals))] if len(vals) > 1 else []) + [Form(expr=sympy.Float(term))]
        term_values.append(term)
        checks = [(("local", str(s.of), str(s.wrt)), s.value) for s in path]
        checks.append((("term",), term))
    return Step(lhs, forms, kind=kind, value=term_values[-1] if have_values else None, checks=checks)


# -- the delta form: named intermediates ----------------------------------------------------


def delta_form(ctx, node, index, paths) -> list:
    """δ's at every net input along the paths, then ∂E/∂w = Σ δ · ∂net/∂w."""
    deltas: dict = {}          # (node, index) → {'symbol', 'terms': {key: (upstream, links)}}
    final: dict = {}
    for path in paths:
        upstream, start = None, 0
        for k, s in enumerate(path):
            if k == len(path) - 1 or not isinstance(s.input.op, NET_OPS):
                continue
            key = (s.input, s.in_index)
            d = deltas.setdefault(key, {"symbol": delta_symbol(ctx, s.wrt, s.input, s.in_index), "of": s.wrt, "terms": {},
                                        "depth": k})
            seg = tuple(path[start:k + 1])
            d["terms"].setdefault((upstream, tuple(x.key for x in seg)), (upstream, seg))
            upstream, start = key, k + 1
        if upstream is None:
            return []  # no net input on the way: the chain above says it all
        seg = tuple(path[start:])
        final.setdefault((upstream, tuple(x.key for x in seg)), (upstream, seg))
    have_values = ctx.values is not None
    loss_sym = ctx.record.symbol(ctx.record.loss, ())
    ordered = sorted(deltas.items(), key=lambda kv: kv[1]["depth"])
    items = ["With named intermediates (the delta rule): "
             + ", ".join(f"${_tex(d['symbol'])} = \\partial {_tex(loss_sym)}/\\partial {_tex(d['of'])}$"
                         for _, d in ordered) + "."]
    dvalues = {}
    for key, d in ordered:
        sym_form, num_tex, value = _combine(list(d["terms"].values()), deltas, dvalues, have_values)
        forms = [Form(expr=Partial(loss_sym, d["of"])), sym_form]
        checks = []
        if have_values:
            dvalues[key] = value
            forms += ([Form(tex=num_tex)] if num_tex != latex(sympy.Float(value)) else []) \
                + [Form(expr=sympy.Float(value))]
            checks = [(("adjoint", key[0], key[1]), value)]
        items.append(Step(d["symbol"], forms, kind="delta", value=value, checks=checks))
    sym_form, num_tex, value = _combine(list(final.values()), deltas, dvalues, have_values)
    w_sym = ctx.record.symbol(node, index)
    forms = [sym_form]
    checks = []
    if have_values:
        forms += [Form(tex=num_tex), Form(expr=sympy.Float(value))]
        checks = [(("gradient", node, index), value)]
    items.append(Step(Total(loss_sym, w_sym), forms, kind="gradient", value=value, checks=checks))
    return items


def _combine(terms, deltas, dvalues, have_values):
    """Σ upstream δ · Π partials, with a partial common to every term factored out."""
    common = []
    while all(len(seg) > len(common) for _, seg in terms) and len(terms) > 1:
        last = [seg[len(seg) - 1 - len(common)] for _, seg in terms]
        if all(x.key[:4] == last[0].key[:4] and x.display == last[0].display for x in last):
            common.insert(0, last[0])
        else:
            break
    sym_terms, num_terms, value = [], [], 0.0
    for upstream, seg in terms:
        links = seg[:len(seg) - len(common)]
        factors = ([deltas[upstream]["symbol"]] if upstream is not None else []) + [s.display for s in links]
        sym_terms.append(factors)
        if have_values:
            vals = ([dvalues[upstream]] if upstream is not None else []) + [s.value for s in links]
            num_terms.append(vals)
            value += float(np.prod(vals))
    inner_sym = " + ".join(product(f) for f in sym_terms)
    inner_num = " + ".join(t if k == 0 or not t.startswith("-") else rf"\left({t}\right)"
                           for k, t in enumerate(numbers(v) for v in num_terms))
    expr = sympy.Add(*[_product(f) for f in sym_terms], evaluate=False)
    if common:
        cvals = [s.value for s in common]
        tail_sym = product([s.display for s in common])
        if len(sym_terms) > 1:
            inner_sym, inner_num = rf"\left({inner_sym}\right)", rf"\left({inner_num}\right)"
        sym_tex = inner_sym + r" \cdot " + tail_sym
        num_tex = inner_num + (r" \cdot " + (numbers(cvals) if len(cvals) > 1 else signed_number(cvals[0]))
                               if have_values else "")
        expr = sympy.Mul(expr, *[s.display for s in common], evaluate=False)
        if have_values:
            for v in cvals:
                value *= v
    else:
        sym_tex, num_tex = inner_sym, inner_num
    return Form(expr=expr, tex=sym_tex), num_tex, (value if have_values else None)
