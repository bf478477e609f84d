"""Errors graphnn raises. Each names what is wrong: the node, the shapes, the input."""


class GraphnnError(Exception):
    """Base class of every error graphnn raises on purpose."""


class ShapeError(GraphnnError, ValueError):
    """An op was given operands whose shapes do not fit its shape rule."""


class FeedError(GraphnnError, ValueError):
    """A value fed to an input or parameter is missing or has the wrong shape/dtype."""


class GradientError(GraphnnError):
    """A gradient was asked for that does not exist (sign, step, disconnected input)."""


class NonFiniteError(GraphnnError, FloatingPointError):
    """A node produced NaN or inf; `node` is the first one that did."""

    def __init__(self, message, node=None):
        super().__init__(message)
        self.node = node


class UnknownNameError(GraphnnError, KeyError):
    """A name (model, parameter, option) that does not exist; the message lists what does."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])
