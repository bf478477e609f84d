"""A recurrent cell: one time step ``(carry, x_t) -> (carry, y_t)`` as an ordinary graph.

The cell's graph reads *placeholder* inputs (the previous carry, the step's input) and
any outer leaves it closes over (parameters W, U, b; outer inputs): its *free leaves*.
The same cell is what the looped node iterates, what the unrolled view copies, and —
differentiated by the one autodiff, `graphnn.grad` — what the reverse (BPTT) loop runs.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .autodiff import grad
from .errors import ShapeError
from .evaluate import Evaluator
from .graph import Graph
from .ops import input as input_, sum as sum_
from .ops.base import describe, fmt_shape


class Cell:
    """Placeholders in, nodes out; ``step`` evaluates one time step with NumPy."""

    def __init__(self, carry_in, x_in, carry_out, y_out):
        self.carry_in, self.x_in = tuple(carry_in), tuple(x_in)
        self.carry_out, self.y_out = tuple(carry_out), tuple(y_out)
        for ph, out in zip(self.carry_in, self.carry_out):
            if tuple(ph.shape) != tuple(out.shape):
                raise ShapeError(f"the step returns a carry {describe(out)} of shape {fmt_shape(out.shape)}, "
                                 f"but the carry it received has shape {fmt_shape(ph.shape)}; a recurrence "
                                 "must return a carry shaped like the one it gets")
        for y in self.y_out:
            if not y.shape or y.shape[0] is not None:
                raise ShapeError(f"per-step output {describe(y)} must have the batch axis first, "
                                 f"got {fmt_shape(y.shape)}")
        self.graph = Graph(self.carry_out + self.y_out)
        placeholders = set(self.carry_in + self.x_in)
        self.free = tuple(n for n in self.graph.nodes
                          if n.kind in ("input", "parameter") and n not in placeholders)
        self._eval = Evaluator(list(self.carry_out + self.y_out))

    # -- identity -----------------------------------------------------------------------
    def structural_key(self):
        """What the loop node's hash covers: the cell graph and which nodes play which role."""
        idx = self.graph.index
        role = lambda nodes: tuple(idx.get(n, -1) for n in nodes)  # noqa: E731
        return (self.graph.structural_hash(), role(self.carry_in), role(self.x_in),
                role(self.carry_out), role(self.y_out), role(self.free))

    @property
    def carry_shapes(self):
        return [n.shape for n in self.carry_in]

    @property
    def y_shapes(self):
        return [n.shape for n in self.y_out]

    # -- evaluation ------------------------------------------------------------------------
    def step(self, carries, xs, free, dtype):
        """One step: (new carries, outputs) for NumPy values of carries, inputs, free leaves."""
        feeds, params = _bind(self.carry_in + self.x_in, list(carries) + list(xs), self.free, free)
        outs = self._eval(feeds, params, dtype=dtype)
        n = len(self.carry_out)
        return outs[:n], outs[n:]

    # -- the gradient cell -------------------------------------------------------------
    @cached_property
    def grad_cell(self) -> "GradCell":
        return GradCell(self)


class GradCell:
    """The cell's vector-Jacobian product as a graph, made by `graphnn.grad`.

    Inputs: the forward placeholders plus the cotangents ``gc`` of the new carry and
    ``gy`` of the step's outputs. Outputs: the cotangents of the previous carry, of the
    step's input, and of every free leaf — one BPTT step.
    """

    def __init__(self, cell: Cell):
        self.cell = cell
        self.gc = tuple(input_(f"d{_label(c)}", c.shape) for c in cell.carry_out)
        self.gy = tuple(input_(f"d{_label(y)}", y.shape) for y in cell.y_out)
        pairs = list(zip(cell.carry_out, self.gc)) + list(zip(cell.y_out, self.gy))
        total = None
        for out, g in pairs:
            term = sum_(out * g)
            total = term if total is None else total + term
        wrt = list(cell.carry_in) + list(cell.x_in) + list(cell.free)
        self.grads = grad(total, wrt, disconnected="zero")
        self.outputs = [self.grads[w] for w in wrt]
        self.graph = Graph(self.outputs)
        self._eval = Evaluator(self.outputs)

    def structural_key(self):
        return ("grad", self.cell.structural_key())

    def step(self, carries, xs, free, gc, gy, dtype):
        """(d carry_in, d x_in, d free) for one step, given the cotangents gc, gy."""
        cell = self.cell
        feeds, params = _bind(cell.carry_in + cell.x_in + self.gc + self.gy,
                              list(carries) + list(xs) + list(gc) + list(gy), cell.free, free)
        outs = self._eval(feeds, params, dtype=dtype)
        nc, nx = len(cell.carry_in), len(cell.x_in)
        return outs[:nc], outs[nc:nc + nx], outs[nc + nx:]


def _bind(placeholders, values, free, free_values):
    feeds = dict(zip(placeholders, values))
    params = {}
    for leaf, v in zip(free, free_values):
        (feeds if leaf.kind == "input" else params)[leaf] = v
    return feeds, params


def _label(node):
    return node.name or node.op.name


def broadcast_carry(value, shape, batch):
    """An initial carry given per example (shape S or (1, *S)) broadcast to (batch, *S)."""
    full = (batch,) + tuple(shape[1:])
    return np.ascontiguousarray(np.broadcast_to(value, full))
