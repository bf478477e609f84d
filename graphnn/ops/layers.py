"""Layers: a few ops and the parameters they own, built in one call.

A layer names its parameters after itself (``<name>.W``) and, unless given an ``rng``,
seeds each from its own name: two layers of one shape with different names start
different, and building a model twice gives the same weights. With
``return_params=True`` a layer returns ``(output, {short name: parameter node})``.
"""
from __future__ import annotations

from .elementwise import ACTIVATIONS, Activation
from .leaves import parameter
from .nn import softmax
from .structure import linear


def dense(x, units, activation=None, *, name="dense", init="glorot", bias=True, rng=None,
          return_params=False, names=None):
    """A fully connected layer ``activation(x W + b)``: W (in, units) from ``init`` (a name of
    `INITIALIZERS`), b zeros (``bias=False``: fixed zeros). ``activation``: None (linear), a
    registered name ('relu', 'sigmoid', …, 'softmax' over each row) or an `Activation`."""
    if not isinstance(units, int) or units < 1:
        raise ValueError(f"dense {name!r}: units must be a positive int, got {units!r}")
    act = _activation(activation, name)
    W = parameter(f"{name}.W", shape=(x.shape[-1], units), init=init, rng=rng)
    b = parameter(f"{name}.b", shape=(units,), init="zeros", trainable=bias)
    net = linear(x, W, b, name=name if act is None else f"{name}.net", names=None if act else names)
    out = net if act is None else act(net, name=name, names=names)
    return (out, {"W": W, "b": b}) if return_params else out


def _activation(activation, name):
    if activation is None or isinstance(activation, Activation):
        return activation
    if activation == "softmax":     # not elementwise: the row op (Keras's Dense(k, "softmax"))
        return softmax
    if activation not in ACTIVATIONS:
        raise ValueError(f"dense {name!r}: unknown activation {activation!r}; choose from "
                         f"{', '.join(sorted([*ACTIVATIONS, 'softmax']))} or pass an Activation")
    return ACTIVATIONS[activation]
