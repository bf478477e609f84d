"""Each op's forward formula in the course's notation, for whole tensors.

``net = x W + b``, ``out = σ(net)``, ``a = x ⋆ K + c`` (convolution as cross-correlation),
``p = maxpool_{2×2}(a)``, ``S = QKᵀ/√d_k``, ``A = softmax(S)``, ``CE = (1/n) Σ (−Σ_k t_k log
softmax(z)_k)``: the matrix view states the net with these before differentiating it, the
forward view substitutes numbers into them, and the recurrence view writes the cell's
equations (the LSTM's gates) with them. `FORMULAS` is keyed by op class (an `OpTable`): a
user's op adds its formula there; an op without one is written as a function of its
operands.

A node with a course name (`names.Names`) is written by that name where it is used;
unnamed ones are written out inline, bracketed where needed.
"""
from __future__ import annotations

import re

import numpy as np
import sympy

from ..looped import Loop
from ..notation import latex_escape
from ..ops import (AvgPool2D, Concat, Constant, Conv2D, Count, Dropout, Expand, GaussianNoise, Index, Input,
                   Linear, LogSoftmax, Map, MatMul, Max, MaxPool2D, OpTable, Parameter, Reshape, Softmax,
                   SoftmaxCrossEntropy, StopGradient, Sum, Transpose)
from ..ops.elementwise import V, Y
from ..names import activation_of
from .printing import ElementwisePrinter, integral_floats, matrix, needs_brackets, number, operand_names


def bracket(tex: str) -> str:
    """(a + b) around a sum or a signed term; names and products stay bare."""
    return r"\left(%s\right)" % tex if needs_brackets(tex) else tex


def sup_base(tex: str) -> str:
    """A base that takes a superscript (ᵀ): a plain name as is, a name with a superscript of
    its own in braces (never a double superscript), a fraction or product in brackets."""
    t = tex.strip()
    if needs_brackets(t) or "\\frac" in t or " " in t:
        return r"\left(%s\right)" % t
    depth = 0
    for ch in t:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0 and ch in "^'":
            return "{%s}" % t
    return t


def last_two_swapped(node) -> bool:
    axes = node.attrs["axes"]
    n = len(axes)
    return n >= 2 and tuple(axes) == tuple(range(n - 2)) + (n - 1, n - 2)


def _linear(node, args, f):
    x, w, b = args
    return rf"{bracket(x)} \, {bracket(w)} + {b}"


def _matmul(node, args, f):
    return rf"{bracket(args[0])} \, {bracket(args[1])}"


def _transpose(node, args, f):
    if last_two_swapped(node):
        return sup_base(args[0]) + r"^{\top}"
    return args[0]          # heads split or merged: the same numbers, rearranged


def _reshape(node, args, f):
    x = node.inputs[0]
    if len(node.shape) == 2 and len(x.shape) > 2:
        return r"\operatorname{flatten}\left(%s\right)" % args[0]
    if len(node.shape) < len(x.shape) and isinstance(x.op, Transpose) and not last_two_swapped(x):
        return r"\operatorname{concat}_{\mathrm{heads}}\left(%s\right)" % args[0]   # heads side by side
    return args[0]


def scale_tex(c) -> str | None:
    """1/√8 for √2/4: a constant factor the way the course writes a scaling."""
    c = sympy.nsimplify(c)
    inv2 = sympy.nsimplify(1 / c ** 2) if c != 0 else None
    if inv2 is not None and inv2.is_Integer and inv2 > 1 and not (1 / c).is_Integer:
        return r"\frac{1}{\sqrt{%s}}" % inv2
    return None


def _map(node, args, f):
    act = activation_of(node)
    if act is not None:
        return activation_tex(act, node) + r"\left(%s\right)" % args[0]
    expr = integral_floats(node.attrs["expr"])
    if expr == V[0]:
        return args[0]                                   # a copy
    if len(node.inputs) == 2 and expr == V[0] / V[1] and isinstance(node.inputs[1].op, Count):
        return r"\frac{1}{%s} %s" % (args[1], bracket(args[0]))   # a mean
    coeff, rest = expr.as_independent(V[0], as_Add=False)
    if rest == V[0] and coeff != 1:
        s = scale_tex(coeff)
        if s is not None:
            return s + " " + bracket(args[0])
    plain_sum = expr.is_Add and all(t in V for t in expr.args)       # a + b needs no brackets
    names = {V[i]: a for i, a in enumerate(args)}
    names = names if plain_sum else operand_names(names, expr)
    arrays = [V[i] for i, x in enumerate(node.inputs) if x.shape != ()]
    return ElementwisePrinter(names, arrays).doprint(expr)


def activation_tex(act, node=None) -> str:
    """σ, \\tanh, ReLU: how the course writes an activation's name."""
    if act.latex:
        return act.latex
    if act.name in ("tanh", "exp", "log"):
        return "\\" + act.name
    return r"\operatorname{%s}" % latex_escape(act.name).replace(r"\_", "-")


def _sum(node, args, f):
    x = node.inputs[0]
    axes = node.attrs["axes"]
    if len(axes) == len(x.shape):
        return r"\sum %s" % bracket(args[0])
    return r"\sum_{%s} %s" % (axes_tex(x, axes), bracket(args[0]))


def axes_tex(x, axes) -> str:
    """What a sum runs over: the batch (rows), tokens, columns, an axis number."""
    words = []
    for a in axes:
        if x.shape[a] is None:
            words.append(r"\mathrm{rows}")
        elif a == len(x.shape) - 1:
            words.append(r"\mathrm{cols}")
        else:
            words.append(r"\mathrm{axis}\,%d" % (a + 1))
    return ",".join(words)


def _count(node, args, f):
    x, axes = node.inputs[0], node.attrs["axes"]
    if any(x.shape[a] is None for a in axes):
        return "n"
    return str(int(np.prod([x.shape[a] for a in axes])))


def _sce(node, args, f):
    z, t = args
    return r"-\sum_{k} %s_{k} \log \, \operatorname{softmax}\left(%s\right)_{k}" % (bracket(t), z)


def _conv(node, args, f):
    x, K = args[:2]
    core = rf"{bracket(x)} \star {K}"
    return core + (f" + {args[2]}" if len(args) > 2 else "")


def _pool(name):
    def rule(node, args, f):
        kh, kw = node.attrs.get("size", (2, 2))
        return r"\operatorname{%s}_{%d \times %d}\left(%s\right)" % (name, kh, kw, args[0])
    return rule


def _dropout(node, args, f):
    m = r"\frac{m}{1 - %s}" % number(node.attrs["rate"]) if node.attrs.get("scale", True) else "m"
    return rf"{bracket(args[0])} \odot {m}"


def _noise(node, args, f):
    return rf"{args[0]} + \varepsilon"


def _concat(node, args, f):
    return r"\left[%s\right]" % r",\; ".join(args)


def _index(node, args, f):
    """x_{[:, 2]}: the part an index takes, 1-based."""
    parts = []
    for entry in node.attrs["spec"]:
        if entry[0] == "i":
            parts.append(str(entry[1] + 1))
        elif entry[1] is None or (entry[1] == 0 and entry[3] == 1 and entry[2] >= 0 and False):
            parts.append(":")
        else:
            start, stop, step = entry[1:]
            parts.append(f"{start + 1}:{stop}" + (f":{step}" if step != 1 else ""))
    while parts and parts[-1] == ":":
        parts.pop()
    return bracket(args[0]) + r"_{[%s]}" % r",\,".join(parts) if parts else args[0]


def _constant(node, args, f):
    value = np.asarray(node.value)
    if value.size == 1:
        return number(value.ravel()[0])
    if not np.any(value):
        return "0"
    return matrix(value)


#: op class -> fn(node, operand LaTeX list, Formulas) -> the node's formula
FORMULAS = OpTable("a forward formula", {
    Linear: _linear, MatMul: _matmul, Transpose: _transpose, Reshape: _reshape, Map: _map, Sum: _sum,
    Count: _count, Softmax: lambda n, a, f: r"\operatorname{softmax}\left(%s\right)" % a[0],
    LogSoftmax: lambda n, a, f: r"\log \operatorname{softmax}\left(%s\right)" % a[0],
    SoftmaxCrossEntropy: _sce, Conv2D: _conv, MaxPool2D: _pool("maxpool"), AvgPool2D: _pool("avgpool"),
    Dropout: _dropout, GaussianNoise: _noise, Concat: _concat, Constant: _constant,
    Max: lambda n, a, f: r"\max %s" % bracket(a[0]),
    StopGradient: lambda n, a, f: r"\operatorname{sg}\left[%s\right]" % a[0],    # stop_gradient: no gradient back
    Expand: lambda n, a, f: a[0], Index: _index,
})


class Formulas:
    """Formulas of one graph's nodes, with `Names` for the named ones."""

    def __init__(self, names, overrides: dict | None = None):
        self.names = names
        self.overrides = dict(overrides or {})   # node -> LaTeX used wherever it appears
        self._memo: dict = {}

    def ref(self, node) -> str:
        """How ``node`` is written where it is used: its name, else its formula inline."""
        if node in self.overrides:
            return self.overrides[node]
        if self.names.label(node) or node.kind in ("parameter", "input"):
            return self.names.tex(node)
        if node not in self._memo:
            self._memo[node] = self.rhs(node)
        return self._memo[node]

    def rhs(self, node) -> str:
        """The node's own formula in terms of its operands."""
        rule = FORMULAS.get(node.op)
        args = [self.ref(x) for pos, x in enumerate(node.inputs) if pos not in node.op.nondiff_inputs
                or isinstance(node.op, Count)]
        if isinstance(node.op, (Dropout, GaussianNoise)):
            args = args[:1]
        if rule is None:
            return r"\operatorname{%s}\left(%s\right)" % (latex_escape(node.op.label(node)).replace(r"\_", "-"),
                                                          ", ".join(args))
        return rule(node, args, self)

    def equations(self, nodes) -> list:
        """(lhs LaTeX, rhs LaTeX, node) for every named, computed node among ``nodes``."""
        out = []
        for n in nodes:
            if n.kind != "op" or n in self.overrides or not self.names.label(n) or isinstance(n.op, Loop) \
                    or is_loop_output(n):
                continue
            rhs = self.rhs(n)
            if not same_tex(rhs, self.names.tex(n)):      # never softplus(−D) = softplus(−D)
                out.append((self.names.tex(n), rhs, n))
        return out


def same_tex(a: str, b: str) -> bool:
    """Whether two LaTeX strings print the same (a node named by its own formula: no x = x)."""
    def plain(tex):
        tex = tex.replace(r"\operatorname", r"\mathrm").replace(r"\left", "").replace(r"\right", "")
        return re.sub(r"[{}\s]", "", tex)
    return plain(a) == plain(b)


def is_loop_output(node) -> bool:
    """A final carry or output unpacked from a loop node (copy ∘ reshape ∘ index of it)."""
    n = node
    while isinstance(n.op, (Index, Reshape)) or (isinstance(n.op, Map) and str(n.attrs.get("fn")) == "copy"):
        n = n.inputs[0]
        if isinstance(n.op, Loop):
            return True
    return False


def is_leaf(node) -> bool:
    return isinstance(node.op, (Input, Parameter, Constant))


__all__ = ["FORMULAS", "Formulas", "activation_tex", "bracket", "scale_tex", "axes_tex", "Y"]
