"""What every view — derivations and drawings — calls each node: the graph's names, made short and unique, and course
names for what the user left unnamed.

- a named node keeps its name; a dotted one (``attn.head.A``) is called by its last part
  (``A``) where that is unique in the graph;
- an unnamed node whose elements are named (``net_h1``, ``net_h2``) is called by their
  common stem (``net_h``);
- an unnamed net input (a layer's x W + b, a convolution) is ``net⁽ˡ⁾`` for layer l, the
  activation right after it ``out⁽ˡ⁾``, an unnamed pre-activation of a named unit (the
  LSTM's gate g_t) ``net_{g,t}``; anything else unnamed gets a letter ``u⁽ᵏ⁾`` and is
  usually written out inline by its formula instead. k is the node's place among the
  graph's unlabelled nodes in topological order (from the inputs), fixed when `Names` is
  built: every view of the same graph calls it the same, whatever order the view asks in
  (so numbers can skip: a view shows u⁽²⁾ without u⁽¹⁾ when u⁽¹⁾ is written inline);
- a layer's δ is ``δ⁽ˡ⁾`` (numbered like the net inputs, from the input side).

`display` gives the element-level symbols of a `GradRecord` their course names: 1-based
indices, no batch index (derivations show one example), the node's course name.
"""
from __future__ import annotations

import os
import re
from collections import Counter

from .graph import Graph, Node
from .notation import latex_name
from .ops import ACTIVATIONS, NET_OPS, Conv2D, Count, Map, Reshape, Transpose

_SUPERSCRIPT_DIGITS = dict(zip("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def superscript(k) -> str:
    return "⁽" + "".join(_SUPERSCRIPT_DIGITS[c] for c in str(k)) + "⁾"


def is_weight(node: Node) -> bool:
    """A parameter, or a parameter seen through a transpose (the tied decoder's Wᵀ)."""
    while isinstance(node.op, Transpose):
        node = node.inputs[0]
    return node.kind == "parameter"


def is_net(node: Node) -> bool:
    """A layer's net input: x W (+ b) with a weight, a convolution, or an input scaled
    elementwise by a weight (x ⊙ w)."""
    if isinstance(node.op, Conv2D):
        return True
    if isinstance(node.op, Map) and node.attrs.get("fn") == "×" and len(node.inputs) == 2:
        return sum(x.kind == "parameter" for x in node.inputs) == 1 and \
            any(x.kind == "input" for x in node.inputs)
    return isinstance(node.op, NET_OPS) and any(is_weight(x) for x in node.inputs[1:2] or node.inputs[:1])


def is_net_sum(node: Node, uses: Counter) -> bool:
    """h W + x U + b as one net input: an unnamed sum of nets, each used only here."""
    if not isinstance(node.op, Map) or node.attrs.get("fn") != "+" or len(node.inputs) < 2:
        return False
    return all(is_net(x) and uses[x] == 1 and not x.name for x in node.inputs)


def activation_of(node: Node):
    """The registered activation a one-operand Map computes (σ, tanh, ReLU), else None."""
    if not isinstance(node.op, Map) or len(node.inputs) != 1:
        return None
    fn = str(node.attrs.get("fn", "")).split("(")[0]
    return ACTIVATIONS.get(fn)


def _stem(names) -> str | None:
    """net_h for (net_h1, net_h2): the element names' common stem, if it reads as a name."""
    stem = os.path.commonprefix(list(names)).rstrip("0123456789_")
    return stem if re.fullmatch(r"[^\W\d]\w*", stem or "") and len(names) > 1 else None


class Names:
    """Course names of one graph's nodes (see the module docstring)."""

    def __init__(self, graph: Graph | list, extra: dict | None = None):
        nodes = graph.nodes if isinstance(graph, Graph) else list(graph)
        self.uses = Counter(x for n in nodes for pos, x in enumerate(n.inputs) if pos not in n.op.nondiff_inputs)
        self.consumers: dict = {}
        for n in nodes:
            for x in n.inputs:
                self.consumers.setdefault(x, []).append(n)
        self.nets = [n for n in nodes if is_net_sum(n, self.uses)
                     or (is_net(n) and not self._inside_sum(n, nodes) and not self._rearranged(n))]
        self.layer = {n: k for k, n in enumerate(self.nets, 1)}
        self.labels: dict = dict(extra or {})
        self._label_all(nodes)
        # u⁽ᵏ⁾ by graph position, never by the order a view asks (forward and scalar views agreed on
        # no number when the scalar view asked from the loss down)
        self._unnamed = {n: k for k, n in enumerate((n for n in nodes if n not in self.labels), 1)}

    def _rearranged(self, node) -> bool:
        """x W_Q split into heads and named Q: the net is Q, rearranged, not a layer of its own."""
        users = self.consumers.get(node, [])
        return bool(users) and all(isinstance(c.op, (Reshape, Transpose)) for c in users) and not node.name

    def _inside_sum(self, node, nodes) -> bool:
        return any(is_net_sum(c, self.uses) and node in c.inputs for c in nodes if node in c.inputs) \
            if self.uses[node] == 1 else False

    def _label_all(self, nodes):
        self.unit_nets = set()
        named = [n for n in nodes if n.name and n not in self.labels and not n.name.endswith("_elements")]
        short = {n: _short(n.name) for n in named}
        counts = Counter(short.values())
        for n in named:
            self.labels[n] = short[n] if counts[short[n]] == 1 else n.name
        taken = set(self.labels.values())
        for n in nodes:
            if n in self.labels or self._rearranged(n):
                continue
            label = self._course_label(n, self.consumers.get(n, []))
            if label and label not in taken:
                self.labels[n] = label
                taken.add(label)

    def _course_label(self, n, consumers):
        if isinstance(n.op, Count):      # a mean over the batch divides by n (a fixed count is a number)
            return "n" if any(n.inputs[0].shape[a] is None for a in n.attrs["axes"]) else None
        if n.names is not None:
            stem = _stem(n.names[0])
            if stem:
                return stem
        if n in self.layer:
            unit = next((c for c in consumers if activation_of(c) and c.name), None)
            if unit is not None and len(consumers) == 1:
                self.unit_nets.add(n)
                return "net_" + unit.name.replace("_", ",", 1) if "_" in unit.name else f"net_{unit.name}"
            return f"net{superscript(self.layer[n])}"
        act = activation_of(n)
        if act is not None and n.inputs[0] in self.layer:
            return f"out{superscript(self.layer[n.inputs[0]])}"
        return None

    # -- lookups ---------------------------------------------------------------------------
    def label(self, node: Node) -> str | None:
        """The node's course name as a teaching-name string (None: write it by its formula)."""
        return self.labels.get(node)

    def fallback(self, node: Node) -> str:
        """A name for an unnamed node that must be named after all: u⁽ᵏ⁾, k its place among
        the graph's unlabelled nodes (a node outside the graph: numbered after them all, in
        the order asked)."""
        if node not in self.labels:
            if node not in self._unnamed:
                self._unnamed[node] = len(self._unnamed) + 1
            self.labels[node] = f"u{superscript(self._unnamed[node])}"
        return self.labels[node]

    def tex(self, node: Node) -> str:
        return latex_name(self.label(node) or self.fallback(node))

    def delta(self, node: Node) -> str:
        """δ⁽ˡ⁾ of a net input (δ_{g,t} for a named unit's net inside a cell)."""
        label = self.label(node) or ""
        if node in self.unit_nets and label.startswith("net_"):
            return latex_name("delta_" + label[4:])
        return r"\delta^{(%d)}" % self.layer[node]

    def element(self, node: Node, index: tuple) -> str:
        """One element as LaTeX: its own name (w5), else the node's name with 1-based
        indices and no batch index: (W_1)_{1,2}, \\mathrm{net}^{(1)}_{2}."""
        if node.names is not None:
            from .graph import element_name
            return latex_name(element_name(node, index))
        fixed = tuple(i for i, d in zip(index, node.shape) if d is not None)
        base = self.label(node) or self.fallback(node)
        return latex_name(f"{base}[{','.join(map(str, fixed))}]" if fixed else base)

    def display(self, record):
        """symbol name → LaTeX for the symbols ``record`` makes (see `printing.DISPLAY`)."""
        def show(name):
            import sympy
            found = record.element_of(sympy.Symbol(name))
            return None if found is None else self.element(*found)
        return _Display(show)


class _Display(dict):
    """A lookup `printing.symbol_latex` reads: the names it computes, cached."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __contains__(self, name):
        if not dict.__contains__(self, name):
            tex = self.fn(name)
            if tex is None:
                return False
            self[name] = tex
        return True


def _short(name: str) -> str:
    """attn.head.A → A; names without a dot unchanged."""
    if "." in name and not name.startswith(".") and not re.search(r"\d\.\d", name):
        return name.rsplit(".", 1)[1] or name
    return name
