"""Leaves of the graph: inputs (fed per run), parameters (learned or fixed), constants."""
from __future__ import annotations

import zlib

import numpy as np

from ..errors import ShapeError
from ..graph import Node
from .base import Op


class _Leaf(Op):
    def infer_shape(self, shapes, attrs):  # leaves are built directly, never via apply
        raise AssertionError("leaves have no operands")

    def vjp(self, node, g):
        return []


class Input(_Leaf):
    name = kind = "input"


class Parameter(_Leaf):
    name = kind = "parameter"


class Constant(_Leaf):
    name = kind = "constant"

    def reference(self, node):
        return node.value

    def element_expr(self, node, index, sym, batch):
        import sympy
        return sympy.Float(float(node.value[index])) if node.value.ndim else sympy.Float(float(node.value))


def _numbers(value, what, usage) -> np.ndarray:
    """``value`` as a float64 array; anything else is an error naming the node (``what``) and how
    the builder is called (``usage``): a swapped name and value is the usual cause."""
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ValueError(f"{what}: its value must be numbers (a number or a rectangular array of them), "
                         f"got {shown} ({usage})") from None


def _shape(shape, what):
    shape = tuple(shape)
    for d in shape:
        if d is not None and (not isinstance(d, (int, np.integer)) or d < 0):
            raise ShapeError(f"{what}: shape entries must be non-negative ints or None (batch), got {shape}")
    if None in shape[1:]:
        raise ShapeError(f"{what}: only the first axis may be the batch axis (None), got {shape}")
    return tuple(None if d is None else int(d) for d in shape)


def input(name: str, shape, *, names=None, dtype="float", default=None) -> Node:  # noqa: A001
    """A value fed at run time. ``None`` in ``shape`` marks the batch axis: ``(None, 2)``.

    ``default``: the value used when nothing is fed (e.g. dropout's ``training`` flag, 0).
    """
    shape = _shape(shape, f"input {name!r}")
    if default is not None:
        default = np.array(default, dtype=np.float64)
        if None in shape or default.shape != shape:
            raise ShapeError(f"input {name!r}: a default needs a fixed shape equal to its own, "
                             f"got {default.shape} for {shape}")
        default.setflags(write=False)
    return Node(Input.instance(), (), {}, shape, dtype=dtype, name=name, names=names, value=default)


def fans(shape) -> tuple:
    """(fan_in, fan_out) of a weight: a dense matrix is (in, out); a conv filter
    (out_channels, in_channels, kh, kw) has in_channels·kh·kw inputs per output."""
    if len(shape) == 2:
        return shape[0], shape[1]
    field = int(np.prod(shape[2:]))
    return shape[1] * field, shape[0] * field


def _fan_init(draw):
    """An initializer that needs fans: biases and scalars (ndim < 2) start at zero."""
    return lambda rng, shape: draw(rng, shape, *fans(shape)) if len(shape) >= 2 else np.zeros(shape)


_glorot_uniform = _fan_init(lambda rng, shape, i, o: rng.uniform(-1, 1, shape) * np.sqrt(6.0 / (i + o)))
_glorot_normal = _fan_init(lambda rng, shape, i, o: rng.normal(0.0, np.sqrt(2.0 / (i + o)), shape))
_he_normal = _fan_init(lambda rng, shape, i, o: rng.normal(0.0, np.sqrt(2.0 / i), shape))

#: initializers by name: fn(rng, shape) -> array. Fans as `fans` defines them.
INITIALIZERS = {
    "zeros": lambda rng, shape: np.zeros(shape),
    "ones": lambda rng, shape: np.ones(shape),
    "normal": lambda rng, shape: rng.normal(0.0, 0.1, shape),
    # Glorot/Xavier: keeps tanh/sigmoid layers' variance steady, U(±√(6/(fan_in + fan_out)))
    "glorot": _glorot_uniform, "glorot_uniform": _glorot_uniform, "xavier": _glorot_uniform,
    "xavier_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal, "xavier_normal": _glorot_normal,   # N(0, 2/(fan_in + fan_out))
    # He/Kaiming: for ReLU layers, N(0, 2/fan_in) or U(±√(6/fan_in))
    "he": _he_normal, "he_normal": _he_normal, "kaiming": _he_normal, "kaiming_normal": _he_normal,
    "he_uniform": _fan_init(lambda rng, shape, i, o: rng.uniform(-1, 1, shape) * np.sqrt(6.0 / i)),
    # the course's (and torch.nn.Linear's) U(±1/√fan_in)
    "uniform_fan_in": _fan_init(lambda rng, shape, i, o: rng.uniform(-1, 1, shape) / np.sqrt(i)),
}


def initial_value(init, shape, rng, what="parameter"):
    """Values from ``init`` (a name of `INITIALIZERS` or a function (rng, shape) -> array)."""
    if callable(init):
        fn = init
    elif init in INITIALIZERS:
        fn = INITIALIZERS[init]
    else:
        raise ValueError(f"{what}: unknown init {init!r}; choose from {', '.join(sorted(INITIALIZERS))} "
                         "or pass a function (rng, shape) -> array")
    value = np.asarray(fn(rng, tuple(shape)), dtype=np.float64)
    if value.shape != tuple(shape):
        raise ShapeError(f"{what}: init {init!r} gave shape {value.shape}, expected {tuple(shape)}")
    return value


def parameter(name: str, value=None, *, shape=None, init="glorot", rng=None, names=None,
              trainable=True) -> Node:
    """A weight. Give its ``value``, or a ``shape`` and an initializer ``init`` (a name of
    `INITIALIZERS` — 'glorot'/'xavier', 'he', 'uniform_fan_in', … — or fn(rng, shape)).

    ``trainable=False`` makes a fixed parameter (Mazur's biases). ``rng`` defaults to one
    seeded by the name, so a model builds the same weights every time.
    """
    if value is not None:
        value = _numbers(value, f"parameter {name!r}" if isinstance(name, str) else "parameter",
                         "gn.parameter(name, value): the name comes first")
        if shape is not None and tuple(shape) != value.shape:
            raise ShapeError(f"parameter {name!r}: value has shape {value.shape}, shape says {tuple(shape)}")
    else:
        if shape is None:
            raise ValueError(f"parameter {name!r} needs a value or a shape")
        rng = rng if rng is not None else np.random.default_rng(zlib.crc32(name.encode()))
        value = initial_value(init, shape, rng, f"parameter {name!r}")
    value.setflags(write=False)
    return Node(Parameter.instance(), (), {"trainable": bool(trainable)}, _shape(value.shape, name),
                name=name, names=names, value=value)


def constant(value, name=None, names=None) -> Node:
    """A fixed value (numbers), optionally named."""
    value = _numbers(value, f"constant {name!r}" if isinstance(name, str) else "constant",
                     "gn.constant(value, name): the value comes first")
    value.setflags(write=False)
    return Node(Constant.instance(), (), {}, value.shape, name=name, names=names, value=value)
