"""The Op protocol: every op declares, in one class, everything each use of it needs.

- ``infer_shape``  the shape rule (raises ShapeError naming operands and shapes);
- ``reference``    the NumPy reference: the oracle every backend is tested against;
- ``vjp``          the gradient rule, building *graph nodes* (gradients are graphs too);
- ``element_expr`` one output element as a sympy expression of input elements —
                   what the scalar derivations print and differentiate locally.

What other layers attach to an op (a CPU lowering, a derivation rule, a drawing label)
lives beside those layers in an `OpTable`: keyed by the op's *class*, looked up along its
MRO, so a user's subclass of `Map` inherits Map's lowering and no code anywhere tests
``op.name == "…"``.
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy

from ..errors import ShapeError
from ..graph import Node

_REGISTRY: dict[str, "Op"] = {}


class Op:
    """Base class of ops. Subclasses are singletons registered under ``name``."""

    name = "op"
    #: 'op' for an op application; the leaves say 'input', 'parameter' or 'constant'
    kind = "op"
    #: the derivation/drawing label; may use attrs via `label`
    symbol = None
    #: input positions read only for their shape or size: no gradient flows through them
    nondiff_inputs: tuple = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("name"):
            _REGISTRY[cls.name] = cls()

    def infer_shape(self, shapes, attrs):
        raise NotImplementedError(self.name)

    def reference(self, node, *values):
        raise NotImplementedError(f"op {self.name!r} has no NumPy reference")

    def vjp(self, node, g):
        """Cotangents for each input (a Node, or None for no contribution)."""
        raise NotImplementedError(f"op {self.name!r} has no gradient rule")

    def element_expr(self, node, index, sym, batch):
        """Output element ``index`` as a sympy expression of input elements.

        ``sym(pos, idx)`` is the symbol of element ``idx`` of input ``pos``; ``batch`` is
        the batch size the element indices assume.
        """
        raise NotImplementedError(f"op {self.name!r} has no element formula")

    def element_partial(self, node, index, pos, in_index, sym, out, batch):
        """∂ out[index] / ∂ input[pos][in_index]; ``out(idx)`` is the symbol of an output element."""
        return sympy.diff(self.element_expr(node, index, sym, batch), sym(pos, in_index))

    def label(self, node):
        return self.symbol or self.name

    def structural_key(self):
        return self.name

    @classmethod
    def instance(cls) -> "Op":
        """The op's one instance (ops are singletons; nodes hold it)."""
        return _REGISTRY[cls.name]


def get_op(name: str) -> Op:
    return _REGISTRY[name]


class OpTable:
    """One facet of the ops (a lowering, a derivation rule, …), keyed by op class.

    ``table[MapClass] = fn`` registers; ``table.get(op)`` finds the entry of the op's class
    or of the nearest base class that has one (None if none does). ``what`` names the
    facet in error messages.
    """

    def __init__(self, what: str, entries=None):
        self.what = what
        self._by_class: dict = {}
        for cls, value in (entries or {}).items():
            self[cls] = value

    def __setitem__(self, op_class, value):
        if not (isinstance(op_class, type) and issubclass(op_class, Op)):
            raise TypeError(f"{self.what} is keyed by an Op class, not {op_class!r}")
        self._by_class[op_class] = value

    def register(self, op_class):
        """Decorator form: ``@table.register(Softmax)``."""
        def wrap(value):
            self[op_class] = value
            return value
        return wrap

    def __getitem__(self, op_class):
        return self._by_class[op_class]

    def __delitem__(self, op_class):
        del self._by_class[op_class]

    def pop(self, op_class, *default):
        return self._by_class.pop(op_class, *default)

    def get(self, op, default=None):
        cls = op if isinstance(op, type) else type(op)
        for base in cls.__mro__:
            if base in self._by_class:
                return self._by_class[base]
        return default

    def __contains__(self, op):
        return self.get(op) is not None

    def classes(self) -> list:
        return list(self._by_class)


def registered_ops():
    return dict(_REGISTRY)


def apply(op: Op, inputs, attrs=None, *, name=None, names=None, dtype="float") -> Node:
    """Build an op node: check operand types and shapes now, not at run time."""
    attrs = dict(attrs or {})
    for pos, x in enumerate(inputs):
        if not isinstance(x, Node):
            raise TypeError(f"{op.name}: operand {pos} must be a graph node, got {type(x).__name__}")
    try:
        shape = op.infer_shape([x.shape for x in inputs], attrs)
    except ShapeError as e:
        operands = ", ".join(f"{describe(x)} {fmt_shape(x.shape)}" for x in inputs)
        where = f" (building {name!r})" if name else ""
        raise ShapeError(f"{op.name}{where}: {e} — operands: {operands}") from None
    return Node(op, inputs, attrs, shape, dtype=dtype, name=name, names=names)


def describe(node: Node) -> str:
    return repr(node.name) if node.name else f"<{node.op.name}>"


def fmt_shape(shape) -> str:
    inner = ", ".join("B" if d is None else str(d) for d in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"


# -- shape helpers ---------------------------------------------------------------------

def broadcast_shapes(*shapes):
    """NumPy broadcasting, with None (batch) matching None or 1 only."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        dims = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError(f"shapes {', '.join(fmt_shape(s) for s in shapes)} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    norm = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for a {ndim}-d operand")
        norm.append(a % ndim)
    return tuple(sorted(set(norm)))


def concrete_shape(shape, batch):
    """Replace the batch dimension by a size (derivations enumerate elements)."""
    return tuple(batch if d is None else d for d in shape)


def all_indices(shape):
    return itertools.product(*(range(d) for d in shape))


def broadcast_index(index, in_shape, out_ndim):
    """The input element that broadcasting maps to output element ``index``."""
    offset = out_ndim - len(in_shape)
    return tuple(0 if d == 1 else index[offset + k] for k, d in enumerate(in_shape))


def contiguous(value, dtype=None):
    """A C-contiguous array of the same rank (np.ascontiguousarray turns 0-d into 1-d)."""
    arr = np.asarray(value, dtype=dtype)
    return arr if arr.flags.c_contiguous and arr.flags.writeable else arr.copy()
