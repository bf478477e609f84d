"""Dropout and input corruption (masking, Gaussian noise), pure and reproducible.

The reference evaluator is a pure function of its feeds, so randomness is one too: every
random number is a counter-based hash of (the op's ``seed``, the ``step`` input, the
element's flat index), splitmix64's mixer in unsigned 64-bit integers. The same integer
code runs vectorised in NumPy and as a scalar loop in Numba, so a compiled mask equals the
reference mask bit for bit, for any batch order and on any machine.

Mode, step and first row are ordinary scalar inputs that every such op shares:

- ``training`` (`TRAINING`, default 0): dropout and corruption act only when it is 1; in
  evaluation (the default, e.g. ``predict``) they are the identity.
- ``step`` (`STEP`, default 0): a new mask for every training step.
- ``first_row`` (`FIRST_ROW`, default 0): the row of the whole batch that the fed batch starts
  at. A data-parallel rank fed rows lo … hi − 1 of a batch feeds lo, so that its rows get the
  numbers those rows get in one process (the flat index counts from row lo); a rank with the
  same numbers as every other rank would train on correlated masks, and not as one process.

Training feeds the first two during training steps (graphnn.training.backends.TrainingFeeds),
data-parallel training the third (graphnn.training.distributed.DataParallel).
"""
from __future__ import annotations

import zlib

import numpy as np
import sympy

from ..errors import ShapeError
from ..graph import Node
from .base import Op, apply, fmt_shape
from .leaves import input as _input

#: dropout/noise act only when this input is fed 1 (evaluation by default)
TRAINING = _input("training", (), default=0.0)
#: the training step: a new mask per step
STEP = _input("step", (), default=0.0)
#: the fed batch's first row within the whole batch (a data-parallel shard's offset)
FIRST_ROW = _input("first_row", (), default=0.0)

#: splitmix64's constants (the compiled backends print the same hash)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 2.0 ** -53


def mix64(z):
    """splitmix64's finalizer on uint64 (scalars or arrays; wraps modulo 2⁶⁴ by design)."""
    z = (z ^ (z >> _S30)) * MIX1
    z = (z ^ (z >> _S27)) * MIX2
    return z ^ (z >> _S31)


def stream_key(seed, step):
    """The key of one op's numbers at one step (seed and step as non-negative integers)."""
    return mix64(np.uint64(seed) * GOLDEN + np.uint64(step))


def uniform_bits(key, index):
    """53 random bits for element ``index`` (uint64) of the stream ``key``."""
    return mix64(key + (index + np.uint64(1)) * GOLDEN) >> _S11


def uniform(seed, step, shape, first_row=0):
    """The op's uniforms for a whole tensor of ``shape`` (flat row-major indices), or for rows
    ``first_row`` on of a larger one (the flat index starts at first_row × the row's size)."""
    size = int(np.prod(shape))
    start = first_row * int(np.prod(shape[1:])) if first_row else 0
    with np.errstate(over="ignore"):
        key = stream_key(seed, step)
        bits = uniform_bits(key, np.arange(start, start + size, dtype=np.uint64))
    return (bits.astype(np.float64) * _TO_UNIT).reshape(shape)


def _whole(value, name):
    s = float(np.asarray(value))
    if s < 0 or s != int(s):
        raise ValueError(f"the {name!r} input must be a non-negative integer, got {s}")
    return int(s)


def _step_int(step):
    return _whole(step, "step")


def _batch_not_first(node):
    """Why a shard of the batch cannot get the whole batch's numbers at noise op ``node`` (its
    operand's batch axis is not the first), or None."""
    shape = node.inputs[0].shape
    if shape and shape[0] is not None and None in shape:
        return (f"{node.op.name} {node.label()!r}: its operand's batch axis is not the first ({fmt_shape(shape)}), "
                "so a shard of the batch cannot get the whole batch's numbers; put the batch axis first")
    return None


def check_shardable(graph) -> None:
    """Data-parallel training feeds each shard's first row: said at the start, on every rank,
    rather than at the first step of a rank whose shard does not start at row 0."""
    for n in graph.nodes:
        why = _batch_not_first(n) if n.kind == "op" and isinstance(n.op, (Dropout, GaussianNoise)) else None
        if why:
            raise ValueError(why)


def _first_row(node, first_row):
    """The fed rows' offset in the whole batch: 0 for a tensor without a batch axis (every
    shard gets the same numbers); an error where the batch axis is not the first."""
    row = _whole(first_row, "first_row")
    why = _batch_not_first(node) if row else None
    if why:
        raise ValueError(why)
    shape = node.inputs[0].shape
    return row if shape and shape[0] is None else 0


def _check_scalars(shapes, what):
    if len(shapes) != 4:   # (a graph built by hand, without dropout()/…_noise())
        raise ShapeError(f"{what}: takes (x, training, step, first_row), got {len(shapes)} operands")
    for name, s in zip(("training", "step", "first_row"), shapes[1:]):
        if tuple(s) != ():
            raise ShapeError(f"{what}: the {name!r} operand must be a scalar, got {fmt_shape(s)}")
    return shapes[0]


class Dropout(Op):
    """y = x · m / (1 − p) in training (m_i = 1 with probability 1 − p), y = x in evaluation.

    Inputs (x, training, step, first_row); attrs rate, seed, scale (False: masking noise, no
    1/(1−p)). Its gradient is the same op applied to the cotangent: the same mask, since the
    mask depends only on (seed, step, element index in the whole batch).
    """

    name = "dropout"

    def infer_shape(self, shapes, attrs):
        return _check_scalars(shapes, "dropout")

    def mask(self, node, shape, training, step, first_row=0):
        """The multiplier per element: 0 or 1/(1 − p) in training (0 or 1 unscaled), 1 otherwise."""
        rate = node.attrs["rate"]
        if not float(np.asarray(training)):
            return np.ones(shape)
        keep = uniform(node.attrs["seed"], _step_int(step), shape, _first_row(node, first_row)) >= rate
        return keep / (1.0 - rate) if node.attrs["scale"] else keep.astype(np.float64)

    def reference(self, node, x, training, step, first_row=0.0):
        return x * self.mask(node, x.shape, training, step, first_row).astype(x.dtype)

    def vjp(self, node, g):
        return [apply(self, [g, *node.inputs[1:]], dict(node.attrs)), *[None] * (len(node.inputs) - 1)]

    def element_expr(self, node, index, sym, batch):
        # the mask is data (a hash), not algebra: shown as a named factor m[index]
        m = sympy.Symbol(f"m_{{{'dropout' if node.attrs['scale'] else 'mask'}}}{list(index)}")
        scale = 1 / (1 - sympy.Float(node.attrs["rate"])) if node.attrs["scale"] else 1
        return sym(0, index) * m * scale

    def label(self, node):
        return f"{'dropout' if node.attrs['scale'] else 'masking noise'} p={node.attrs['rate']:g}"


class GaussianNoise(Op):
    """y = x + σ·z (z ~ N(0, 1) by Box–Muller from two hashed uniforms) in training, y = x otherwise."""

    name = "gaussian_noise"

    def infer_shape(self, shapes, attrs):
        return _check_scalars(shapes, "gaussian_noise")

    def noise(self, node, shape, training, step, first_row=0):
        if not float(np.asarray(training)):
            return np.zeros(shape)
        u = uniform(node.attrs["seed"], _step_int(step), tuple(shape) + (2,), _first_row(node, first_row))
        return node.attrs["sigma"] * np.sqrt(-2.0 * np.log1p(-u[..., 0])) * np.cos(2 * np.pi * u[..., 1])

    def reference(self, node, x, training, step, first_row=0.0):
        return x + self.noise(node, x.shape, training, step, first_row).astype(x.dtype)

    def vjp(self, node, g):
        return [g, *[None] * (len(node.inputs) - 1)]

    def element_expr(self, node, index, sym, batch):
        return sym(0, index) + sympy.Float(node.attrs["sigma"]) * sympy.Symbol(f"z{list(index)}")

    def label(self, node):
        return f"+ N(0, {node.attrs['sigma']:g}²)"


def _seed(seed, name, default):
    if seed is None:
        seed = zlib.crc32((name or default).encode())
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _operands(x, training, step, what):
    if not isinstance(x, Node):
        raise TypeError(f"{what}: x must be a graph node, got {type(x).__name__}")
    return [x, TRAINING if training is None else training, STEP if step is None else step, FIRST_ROW]


def dropout(x, rate=0.5, *, seed=None, training=None, step=None, name=None):
    """Inverted dropout: zero each element with probability ``rate`` and scale the rest by 1/(1 − rate).

    Active only when the ``training`` input is 1 (see the module doc); ``seed`` (default: from
    ``name``) separates the masks of different layers.
    """
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"dropout rate must lie in [0, 1), got {rate}")
    attrs = {"rate": float(rate), "seed": _seed(seed, name, "dropout"), "scale": True}
    return apply(Dropout.instance(), _operands(x, training, step, "dropout"), attrs, name=name)


def masking_noise(x, rate=0.25, *, seed=None, training=None, step=None, name=None):
    """Corruption x̃ = x · m: each element set to 0 with probability ``rate`` (no rescaling)."""
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"masking rate must lie in [0, 1), got {rate}")
    attrs = {"rate": float(rate), "seed": _seed(seed, name, "masking"), "scale": False}
    return apply(Dropout.instance(), _operands(x, training, step, "masking_noise"), attrs, name=name)


def gaussian_noise(x, sigma=0.1, *, seed=None, training=None, step=None, name=None):
    """Corruption x̃ = x + σ z, z ~ N(0, 1) per element, in training only."""
    if not float(sigma) >= 0.0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    attrs = {"sigma": float(sigma), "seed": _seed(seed, name, "gaussian")}
    return apply(GaussianNoise.instance(), _operands(x, training, step, "gaussian_noise"), attrs, name=name)
