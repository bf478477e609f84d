"""Reverse-mode autodiff as a graph-to-graph transform, keeping a record of the chain rule.

``grad(loss, wrt)`` walks the loss's graph in reverse topological order. Each node's
adjoint (dLoss/dnode) is the sum of one *term* per outgoing edge; each term is the
consumer's vector-Jacobian product, built by the consumer's op as ordinary graph nodes.
The `GradRecord` keeps every term — which edge, which upstream adjoint, which
contribution — so derivations can print the chain rule from the record alone, and
`GradRecord.chains` expands it to per-element paths (dE/dw5 = ∂E/∂out_o1 · …).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy

from .errors import GradientError, UnknownNameError
from .graph import Graph, Node, element_name
from .ops import Map, constant, fmap
from .ops.base import all_indices, apply, concrete_shape, describe


@dataclass(frozen=True, eq=False)
class Term:
    """One edge's share of an adjoint: d(loss)/d(input) via ``consumer`` at slot ``position``."""

    consumer: Node       # y = f(…, x, …)
    position: int        # x is consumer.inputs[position]
    input: Node          # x
    upstream: Node       # d(loss)/dy, the consumer's adjoint
    contribution: Node   # upstream · ∂y/∂x as a graph node, shaped like x


@dataclass(eq=False)
class Adjoint:
    """d(loss)/d(node): the sum of its terms (one per use of the node)."""

    node: Node
    terms: list = field(default_factory=list)
    total: Node | None = None


@dataclass(frozen=True, eq=False)
class Link:
    """One factor of an element-level chain: ∂ consumer[index] / ∂ input[in_index]."""

    consumer: Node
    index: tuple
    input: Node
    in_index: tuple
    position: int
    partial: sympy.Expr        # in the elements' teaching symbols (out_o1, net_o1, …)
    output_symbol: sympy.Symbol
    input_symbol: sympy.Symbol


class GradRecord:
    """Everything the gradient computation did, in the order it did it."""

    def __init__(self, loss, wrt, adjoints, order):
        self.loss = loss
        self.wrt = tuple(wrt)
        self.adjoints: dict[Node, Adjoint] = adjoints
        self.order = order               # nodes with adjoints, loss first
        self._symbols: dict = {}
        self._names: dict = {}
        self._unnamed: dict = {}          # an unnamed node -> its readable base name
        self._elements: dict = {}         # symbol -> (node, index): what `symbol` made it for

    def adjoint(self, node: Node) -> Adjoint:
        return self.adjoints[node]

    def terms_into(self, node: Node) -> list[Term]:
        """The terms summed into ``node``'s adjoint (more than one = fan-out)."""
        return list(self.adjoints[node].terms) if node in self.adjoints else []

    def gradient_nodes(self):
        """Every node the backward pass built, in topological order."""
        totals = [a.total for a in self.adjoints.values() if a.total is not None]
        forward = set(Graph([self.loss]).nodes)
        return [n for n in Graph(totals).nodes if n not in forward]

    # -- element level: the chain rule a lecture writes out -------------------------
    def symbol(self, node: Node, index: tuple) -> sympy.Symbol:
        """A unique teaching symbol per element (names from the graph, made unique)."""
        key = (node, tuple(index))
        if key not in self._symbols:
            base = self._unnamed_base(node)
            name = element_name(node, index) if base is None else (
                f"{base}[{','.join(str(i) for i in index)}]" if index else base)
            owner = self._names.setdefault(name, node)
            if owner is not node:
                name = f"{name}'{sum(1 for n in self._names if n.startswith(name))}"
                self._names[name] = node
            self._symbols[key] = sympy.Symbol(name)
            self._elements[self._symbols[key]] = key
        return self._symbols[key]

    def element_of(self, symbol: sympy.Symbol):
        """(node, index) of a symbol `symbol` made (None for any other): derivations print
        elements by names of their own choosing."""
        return self._elements.get(symbol)

    def _unnamed_base(self, node: Node):
        """'sigmoid', 'sigmoid2', … for a node the user did not name (None if named): what
        its op computes, never an id like 'map#3882'."""
        if node.name or node.names is not None:
            return None
        if node not in self._unnamed:
            label = node.op.label(node)
            base = label if label.isidentifier() else node.op.name
            taken = set(self._unnamed.values()) | {n.name for n in Graph([self.loss]).nodes if n.name}
            name, k = base, 1
            while name in taken:
                k += 1
                name = f"{base}{k}"
            self._unnamed[node] = name
        return self._unnamed[node]

    def chains(self, wrt: Node, index: tuple = (), batch: int = 1) -> list[list[Link]]:
        """Every path from the loss down to element ``index`` of ``wrt``.

        Each path is a list of `Link` from the loss end to ``wrt``; the product of their
        partials is that path's term, and the terms sum to d(loss)/d(wrt[index]).
        ``batch`` fixes the batch size the indices assume (lectures show one example).
        """
        wrt = self._resolve(wrt)
        cache: dict = {}

        def up(node, idx):
            if node is self.loss:
                return [[]]
            paths = []
            for term in self.terms_into(node):
                for out_idx, link in self._links(term, idx, batch, cache):
                    paths += [rest + [link] for rest in up(term.consumer, out_idx)]
            return paths

        return up(wrt, tuple(index))

    def _links(self, term, in_idx, batch, cache):
        """Output elements of ``term.consumer`` that read ``term.input[in_idx]``, with partials."""
        c, pos = term.consumer, term.position
        made: dict = {}        # placeholder -> (input position, index): renamed only where used

        def placeholder(p, i):
            sym = sympy.Symbol(f"__in{p}_{'_'.join(map(str, i))}")
            made[sym] = (p, tuple(i))
            return sym

        def display(expr):
            return expr.xreplace({s: self.symbol(c.inputs[made[s][0]], made[s][1])
                                  for s in expr.free_symbols if s in made})
        target = placeholder(pos, in_idx)
        out = []
        for out_idx in all_indices(concrete_shape(c.shape, batch)):
            key = (c, out_idx)
            if key not in cache:
                cache[key] = c.op.element_expr(c, out_idx, placeholder, batch)
            if target not in cache[key].free_symbols:
                continue
            partial = c.op.element_partial(c, out_idx, pos, in_idx, placeholder,
                                           lambda i: self.symbol(c, i), batch)
            out.append((out_idx, Link(c, out_idx, term.input, in_idx, pos, display(partial),
                                      self.symbol(c, out_idx), self.symbol(term.input, in_idx))))
        return out

    def _resolve(self, wrt):
        if isinstance(wrt, Node):
            return wrt
        for w in self.wrt:
            if w.name == wrt:
                return w
        raise UnknownNameError(f"{wrt!r} is not among the gradient's inputs: "
                               f"{', '.join(describe(w) for w in self.wrt)}")


class Gradients(Mapping):
    """wrt node → gradient node (look up by node or by name), plus the `record`."""

    def __init__(self, grads: dict, record: GradRecord):
        self._grads = grads
        self.record = record

    def __getitem__(self, key):
        if isinstance(key, str):
            key = self.record._resolve(key)
        return self._grads[key]

    def __iter__(self):
        return iter(self._grads)

    def __len__(self):
        return len(self._grads)

    def __repr__(self):
        what = ", ".join(w.name or describe(w) for w in self._grads)
        return f"<gradients of {describe(self.record.loss)} with respect to {what}>"


def grad(loss: Node, wrt, *, disconnected: str = "raise") -> Gradients:
    """Gradient nodes of scalar ``loss`` with respect to each node in ``wrt``.

    ``disconnected``: 'raise' (default) makes a ``wrt`` that does not influence the loss
    an error; 'zero' gives it a zero gradient instead.
    """
    wrt = [wrt] if isinstance(wrt, Node) else list(wrt)
    if disconnected not in ("raise", "zero"):
        raise ValueError(f"disconnected must be 'raise' or 'zero', not {disconnected!r}")
    if tuple(loss.shape) != ():
        raise GradientError(f"the loss {describe(loss)} must be a scalar, but has shape {loss.shape}; "
                            "reduce it with sum() or mean() first")
    graph = Graph([loss])
    relevant = _depends_on(graph, wrt)
    adjoints = {loss: Adjoint(loss, [], constant(1.0, name=f"d{loss.label()}/d{loss.label()}"))}
    order = []
    for node in reversed(graph.nodes):
        adj = adjoints.get(node)
        if adj is None or node not in relevant:
            continue
        if adj.total is None:
            adj.total = _sum_terms(adj.terms, loss, node)
        order.append(node)
        if not node.inputs or not any(x in relevant for x in node.inputs):
            continue
        for pos, contribution in enumerate(node.op.vjp(node, adj.total)):
            x = node.inputs[pos]
            if contribution is None or x not in relevant:
                continue
            if tuple(contribution.shape) != tuple(x.shape):
                raise AssertionError(f"{node.op.name} gradient for input {pos} has shape "
                                     f"{contribution.shape}, expected {x.shape}")
            adjoints.setdefault(x, Adjoint(x)).terms.append(Term(node, pos, x, adj.total, contribution))
    grads = {}
    for w in wrt:
        adj = adjoints.get(w)
        if adj is not None and adj.total is None and adj.terms:
            adj.total = _sum_terms(adj.terms, loss, w)
        if adj is None or adj.total is None:
            if disconnected == "raise":
                raise GradientError(f"{describe(w)} does not influence the loss {describe(loss)} "
                                    "(pass disconnected='zero' for a zero gradient)")
            grads[w] = apply(Map.instance(), [w], {"expr": sympy.Integer(0), "fn": "0"},
                             name=f"d{loss.label()}/d{w.label()}")
        else:
            grads[w] = adj.total
    return Gradients(grads, GradRecord(loss, wrt, adjoints, order))


def _depends_on(graph, wrt):
    """Nodes of ``graph`` through which some ``wrt`` reaches the output."""
    hit = set(wrt)
    for n in graph.nodes:
        skip = n.op.nondiff_inputs
        if any(x in hit for pos, x in enumerate(n.inputs) if pos not in skip):
            hit.add(n)
    return hit


def _sum_terms(terms, loss, node):
    """Fan-out: a node used k times gets the sum of its k terms (tied weights: W and Wᵀ)."""
    if len(terms) == 1:
        return terms[0].contribution
    syms = sympy.symbols(f"c0:{len(terms)}")
    return fmap(sympy.Add(*syms), dict(zip(syms, (t.contribution for t in terms))),
                fn="Σ", name=f"d{loss.label()}/d{node.label()}")
