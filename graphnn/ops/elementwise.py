"""Elementwise ops, all one op: `Map`, defined by a sympy expression of its operands.

An activation, ``a + b``, a loss term ``½(t − y)²`` and every elementwise gradient are
`Map` nodes. Their NumPy reference is the expression lambdified, their derivative is
``sympy.diff`` of it (or a hand form proven equal in the tests), their derivation formula
is the expression itself, and codegen prints it with sympy's code printers and fuses
chains of them into one loop. Operands broadcast like NumPy.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy
from sympy.codegen.cfunctions import log1p

from ..errors import GradientError
from ..graph import Node
from .base import contiguous, Op, apply, broadcast_index, broadcast_shapes

# Graph values are real: declaring it lets sympy differentiate |x| to sign(x), not re/im parts.
class _Operands:
    """The operand placeholders v0, v1, … inside a Map's expression, as many as are asked for
    (``V[i]``, ``V[:n]``): a node used by 40 others gets one Map summing 40 gradient terms."""

    def __init__(self):
        self._symbols = list(sympy.symbols("v0:16", real=True))

    def _grow(self, n):
        while len(self._symbols) < n:
            self._symbols.append(sympy.Symbol(f"v{len(self._symbols)}", real=True))

    def __getitem__(self, k):
        if isinstance(k, slice):
            self._grow(k.stop or 0)
            return tuple(self._symbols[k])
        self._grow(k + 1)
        return self._symbols[k]

    def __contains__(self, symbol):
        return symbol in self._symbols


V = _Operands()
Y = sympy.Symbol("y", real=True)        # the op's own output, usable in hand derivatives
X = sympy.Symbol("x", real=True)        # the variable activations are written in


class Map(Op):
    """Elementwise application of ``attrs['expr']`` (in v0, v1, …) to broadcast operands.

    attrs: expr, fn (display name), and optionally dexprs (hand derivatives per operand,
    in v_i and y), compute (a numerically safer equal expression), nondiff (why there
    is no gradient).
    """

    name = "map"

    def infer_shape(self, shapes, attrs):
        return broadcast_shapes(*shapes)

    def reference(self, node, *values):
        fn = _lambdified(node.attrs.get("compute", node.attrs["expr"]), len(values))
        with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
            out = fn(*values)
        dtype = np.result_type(*values) if values else np.float64
        return contiguous(np.broadcast_to(np.asarray(out, dtype=dtype), _shape_of(values)))

    def derivative(self, node, pos):
        """∂expr/∂v_pos, in v's and y: the hand form if given, else sympy's."""
        hand = node.attrs.get("dexprs")
        if hand is not None and hand[pos] is not None:
            return hand[pos]
        return sympy.diff(node.attrs["expr"], V[pos])

    def vjp(self, node, g):
        if "nondiff" in node.attrs:
            raise GradientError(node.attrs["nondiff"])
        grads = []
        for pos, x in enumerate(node.inputs):
            d = self.derivative(node, pos)
            operands = {V[i]: inp for i, inp in enumerate(node.inputs)}
            operands[Y] = node
            gsym = sympy.Symbol("g")
            operands[gsym] = g
            contribution = fmap(gsym * d, operands, fn=f"∂{self.label(node)}/∂{_arg_name(pos)}")
            grads.append(unbroadcast(contribution, x.shape))
        return grads

    def element_expr(self, node, index, sym, batch):
        return node.attrs["expr"].subs(self._element_subs(node, index, sym), simultaneous=True)

    def element_partial(self, node, index, pos, in_index, sym, out, batch):
        subs = self._element_subs(node, index, sym)
        subs[Y] = out(index)
        return self.derivative(node, pos).subs(subs, simultaneous=True)

    def _element_subs(self, node, index, sym):
        return {V[i]: sym(i, broadcast_index(index, x.shape, len(node.shape)))
                for i, x in enumerate(node.inputs)}

    def label(self, node):
        return node.attrs.get("fn", "map")


def _arg_name(pos):
    return "x" if pos == 0 else f"x{pos}"


def _shape_of(values):
    return np.broadcast_shapes(*(np.shape(v) for v in values)) if values else ()


@lru_cache(maxsize=4096)
def _lambdified(expr, n):
    """NumPy code for ``expr``; SciPy's where NumPy has no such function (erf, gamma, Bessel:
    sympy's NumPy printing falls back to ``math``, which takes no arrays)."""
    fn = sympy.lambdify(V[:n], expr, modules="numpy")
    try:
        with np.errstate(all="ignore"):
            fn(*[np.full(2, 0.5)] * n)
    except (TypeError, NameError):   # a math.* function handed an array; a name NumPy lacks
        fn = sympy.lambdify(V[:n], expr, modules=["numpy", "scipy"])
    return fn


def fmap(expr, operands: dict, *, fn=None, name=None, names=None, dexprs=None,
         compute=None, nondiff=None) -> Node:
    """Build a Map node from an expression over symbols bound to nodes.

    Numbers stay inside the expression (``x * 2`` is one node with one operand);
    operands whose symbol does not occur are dropped, so gradients carry only what
    they need. Symbols are renamed to v0, v1, … in order of ``operands``.
    """
    expr = sympy.sympify(expr)
    used = [s for s in operands if s in expr.free_symbols
            or any(d is not None and s in d.free_symbols for d in (dexprs or {}).values())
            or (compute is not None and s in compute.free_symbols)]
    if not used and operands:
        # the expression folded to a constant (x * 0): keep the operands for the shape it has
        for s in operands:
            if operands[s] not in [operands[u] for u in used]:
                used.append(s)
    inputs, rename = [], {}
    for s in used:
        node = operands[s]
        if node in inputs:  # the same node bound to two symbols: one operand
            rename[s] = V[inputs.index(node)]
        else:
            rename[s] = V[len(inputs)]
            inputs.append(node)
    unbound = expr.free_symbols - set(operands)
    if unbound:
        raise ValueError(f"elementwise expression {expr} uses unbound symbols {sorted(map(str, unbound))}")
    attrs = {"expr": expr.subs(rename, simultaneous=True), "fn": fn or str(expr)}
    if dexprs:
        attrs["dexprs"] = tuple(
            None if dexprs.get(s) is None else dexprs[s].subs(rename, simultaneous=True)
            for s in used)
    if compute is not None:
        attrs["compute"] = compute.subs(rename, simultaneous=True)
    if nondiff:
        attrs["nondiff"] = nondiff
    if not inputs:
        raise ValueError(f"elementwise expression {expr} has no graph operand")
    return apply(Map.instance(), inputs, attrs, name=name, names=names)


def unbroadcast(g: Node, shape) -> Node:
    """Sum a cotangent over the axes that broadcasting added or stretched."""
    from .structure import reshape, sum as sum_

    if tuple(g.shape) == tuple(shape):
        return g
    lead = len(g.shape) - len(shape)
    axes = list(range(lead))
    axes += [lead + k for k, d in enumerate(shape) if d == 1 and g.shape[lead + k] != 1]
    out = sum_(g, axes, keepdims=False) if axes else g
    return out if tuple(out.shape) == tuple(shape) else reshape(out, shape)


# -- operand coercion ------------------------------------------------------------------

def _operand(value, symbol, operands):
    """A node becomes a bound symbol; a Python number stays a number in the expression."""
    if isinstance(value, Node):
        operands[symbol] = value
        return symbol
    if isinstance(value, (int, float, np.integer, np.floating)):
        return sympy.Integer(int(value)) if float(value).is_integer() else sympy.Float(float(value))
    raise TypeError(f"cannot use a {type(value).__name__} as a graph operand; wrap arrays in graphnn.constant()")


def _binary(a, b, build, fn, name=None):
    operands: dict = {}
    ea, eb = _operand(a, sympy.Symbol("a"), operands), _operand(b, sympy.Symbol("b"), operands)
    return fmap(build(ea, eb), operands, fn=fn, name=name)


def add(a, b, name=None): return _binary(a, b, lambda x, y: x + y, "+", name)
def sub(a, b, name=None): return _binary(a, b, lambda x, y: x - y, "−", name)
def mul(a, b, name=None): return _binary(a, b, lambda x, y: x * y, "×", name)
def div(a, b, name=None): return _binary(a, b, lambda x, y: x / y, "÷", name)
def power(a, b, name=None): return _binary(a, b, lambda x, y: x ** y, "pow", name)
def neg(a, name=None): return fmap(-X, {X: a}, fn="neg", name=name)
def exp(a, name=None): return fmap(sympy.exp(X), {X: a}, fn="exp", name=name, dexprs={X: Y})
def log(a, name=None): return fmap(sympy.log(X), {X: a}, fn="log", name=name)
def sqrt(a, name=None): return fmap(sympy.sqrt(X), {X: a}, fn="sqrt", name=name)
def absolute(a, name=None): return fmap(sympy.Abs(X), {X: a}, fn="abs", name=name,
                                        dexprs={X: sympy.sign(X)})


def elementwise(expr, operands: dict, *, name=None, fn=None):
    """A user-defined elementwise op: ``elementwise(x**2 * y, {x: node_a, y: node_b})``."""
    return fmap(expr, operands, fn=fn, name=name)


# -- activations -----------------------------------------------------------------------

@dataclass(frozen=True)
class Activation:
    """An activation defined by a sympy expression in ``x`` (the course's g(in))."""

    name: str
    expr: sympy.Expr
    derivative: sympy.Expr | None = None   # hand form in x and y (= g(x)), tested equal
    compute: sympy.Expr | None = None      # numerically stable equal form, if needed
    nondiff: str | None = None
    params: tuple = ()                     # (symbol name, default) pairs, e.g. alpha
    latex: str | None = None
    bounds: tuple | None = None            # (low, high) of its values, e.g. (0, 1) for sigmoid

    def __call__(self, node, name=None, names=None, **params):
        values = dict(self.params)
        unknown = set(params) - set(values)
        if unknown:
            raise TypeError(f"{self.name} takes parameters {sorted(values)}, not {sorted(unknown)}")
        values.update(params)
        subs = {sympy.Symbol(k): sympy.Float(v) for k, v in values.items()}
        fill = (lambda e: None if e is None else sympy.sympify(e).subs(subs))
        label = self.name if not self.params else \
            f"{self.name}({', '.join(f'{k}={values[k]:g}' for k in values)})"
        return fmap(fill(self.expr), {X: node}, fn=label, name=name, names=names,
                    dexprs={X: fill(self.derivative)}, compute=fill(self.compute),
                    nondiff=self.nondiff)


ACTIVATIONS: dict[str, Activation] = {}


def activation(name, expr, derivative=None, *, compute=None, params=(), nondiff=None, latex=None, bounds=None):
    """Register an activation given as a sympy expression in ``graphnn.ops.X``; returns it.

    ``bounds=(low, high)``: the range of its values, which metrics read (a one-unit sigmoid
    output is a probability, thresholded at 0.5; an unbounded one a logit, thresholded at 0).
    """
    act = Activation(name, sympy.sympify(expr), None if derivative is None else sympy.sympify(derivative),
                     None if compute is None else sympy.sympify(compute), nondiff, tuple(params), latex,
                     None if bounds is None else tuple(bounds))
    ACTIVATIONS[name] = act
    return act


def activation_of(node) -> Activation | None:
    """The registered activation a node applies (its Map carries the activation's label and
    expression), or None."""
    if not isinstance(node.op, Map) or len(node.inputs) != 1:
        return None
    act = ACTIVATIONS.get(node.attrs.get("fn", ""))
    if act is None or (not act.params and node.attrs["expr"] != act.expr.subs(X, V[0])):
        return None
    return act


_PERCEPTRON_HINT = ("has no useful gradient (its derivative is 0 wherever it exists); train "
                    "threshold units with the perceptron learning rule, graphnn.perceptron.train()")
_a, _b = sympy.Symbol("alpha"), sympy.Symbol("beta")

identity = activation("identity", X, 1)
sign = activation("sign", sympy.Piecewise((1, X >= 0), (-1, True)), nondiff="sign " + _PERCEPTRON_HINT,
                  latex=r"\operatorname{sgn}", bounds=(-1, 1))
step = activation("step", sympy.Heaviside(X, 0), nondiff="step " + _PERCEPTRON_HINT, bounds=(0, 1))
sigmoid = activation("sigmoid", 1 / (1 + sympy.exp(-X)), Y * (1 - Y), latex=r"\sigma", bounds=(0, 1))
tanh = activation("tanh", sympy.tanh(X), 1 - Y ** 2, bounds=(-1, 1))
relu = activation("relu", sympy.Max(X, 0), sympy.Heaviside(X, 0), latex=r"\operatorname{ReLU}")
leaky_relu = activation("leaky_relu", sympy.Max(X, 0) + _a * sympy.Min(X, 0),
                        sympy.Piecewise((1, X > 0), (_a, True)), params=(("alpha", 0.01),))
silu = activation("silu", X / (1 + sympy.exp(-X)), latex=r"\operatorname{SiLU}")
# GELU x·Φ(x) in the tanh form of GPT-2 / BERT (erf has no NumPy-only spelling to lambdify)
_c = sympy.sqrt(2 / sympy.pi)
gelu = activation("gelu", X / 2 * (1 + sympy.tanh(_c * (X + sympy.Rational(44715, 10 ** 6) * X ** 3))),
                  latex=r"\operatorname{GELU}")
softplus = activation("softplus", sympy.log(1 + sympy.exp(_b * X)) / _b, 1 / (1 + sympy.exp(-_b * X)),
                      compute=sympy.Max(X, 0) + log1p(sympy.exp(-_b * sympy.Abs(X))) / _b,
                      params=(("beta", 1.0),))


def prelu(x: Node, slope: Node, name=None):
    """PReLU: max(x, 0) + a·min(x, 0) with a learnable slope ``a`` (a parameter node)."""
    xs, a = sympy.symbols("x a")
    return fmap(sympy.Max(xs, 0) + a * sympy.Min(xs, 0), {xs: x, a: slope}, fn="prelu", name=name,
                dexprs={xs: sympy.Piecewise((1, xs > 0), (a, True)), a: sympy.Min(xs, 0)})
