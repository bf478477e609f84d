"""The looped view of a recurrence: ONE node holding the cell, and its reverse (BPTT) loop.

``loop`` inputs: the initial carries, the input sequences (batch, T, …) and the cell's
free leaves. Its output packs, per example, the final carries and the stacked per-step
outputs into one row (``scan`` unpacks it with ``index``/``reshape`` nodes, so the
ordinary autodiff routes cotangents back into one array).

``loop_grad`` is the reverse loop: its body is the cell's gradient graph (`GradCell`,
made by `graphnn.grad`); it runs t = T−1 … 0 carrying d(carry), and sums each step's
immediate contribution to the free leaves — backprop through time. With ``truncate=k``
every cotangent that enters at step τ travels back through at most k cells.
"""
from __future__ import annotations

import math

import numpy as np
import sympy

from .cell import Cell, broadcast_carry
from .errors import GradientError, ShapeError
from .ops import fmap, index, reshape, sum as sum_
from .ops.base import Op, apply


def row_size(shape):
    return math.prod(d for d in shape[1:])


class Layout:
    """Where each part sits in the loop's packed row (per example)."""

    def __init__(self, cell: Cell, length: int, lead=None):
        """``lead``: the leading axis of every part, None (the batch) or 1 (see `batch_lead`)."""
        self.parts, offset = [], 0
        for s in cell.carry_shapes:
            self.parts.append((offset, row_size(s), (lead,) + tuple(s[1:])))
            offset += row_size(s)
        for s in cell.y_shapes:
            shape = (lead, length) + tuple(s[1:])
            self.parts.append((offset, length * row_size(s), shape))
            offset += length * row_size(s)
        self.width = offset

    def pack(self, arrays, batch, dtype):
        out = np.empty((batch, self.width), dtype=dtype)
        for (off, size, _), a in zip(self.parts, arrays):
            out[:, off:off + size] = np.reshape(a, (batch, size))
        return out

    def unpack_values(self, packed):
        batch = packed.shape[0]
        return [packed[:, off:off + size].reshape((batch,) + shape[1:]) for off, size, shape in self.parts]

    def unpack_nodes(self, packed, names=None):
        out = []
        for k, (off, size, shape) in enumerate(self.parts):
            part = index(packed, (slice(None), slice(off, off + size)))
            v = sympy.Symbol("v")
            if tuple(part.shape) != tuple(shape):
                # a strided column block reshapes only after a copy (compiled code: no view)
                part = reshape(fmap(v, {v: part}, fn="copy"), shape)
            # the result is an array of its own, so it can be a model's output in compiled code
            out.append(fmap(v, {v: part}, fn="copy", name=names[k] if names else None))
        return out


def _split(node, values):
    a = node.attrs
    nc, nx = a["n_carry"], a["n_xs"]
    nf = len(a["cell"].free)
    return values[:nc], values[nc:nc + nx], values[nc + nx:nc + nx + nf], values[nc + nx + nf:]


def _batch(node, values):
    """The loop's batch size: the rows of its sequences, of a batched initial carry or of a
    batched input its cell reads (the first input shaped (None, …)); 1 when nothing batched
    feeds it (then the loop has no batch axis: see `batch_lead`)."""
    return next((v.shape[0] for v, n in zip(values, node.inputs) if _is_batched(n)), 1)


def batch_lead(shapes) -> int | None:
    """The loop's leading axis: None (the batch) when any of its inputs is batched — a
    sequence, an initial carry, an input its cell reads —, else 1: a recurrence driven by
    parameters and constants alone is one sequence of states, shared by every example
    (as its unrolled view, whose nodes are (1, …), says too)."""
    return None if any(s and s[0] is None for s in shapes) else 1


def run_forward(node, inits, xs, free, keep_history=False):
    """Iterate the cell; returns final carries, stacked outputs, and optionally every carry."""
    cell, T = node.attrs["cell"], node.attrs["length"]
    dtype = np.result_type(*(list(inits) + list(xs) + list(free)))
    B = _batch(node, list(inits) + list(xs) + list(free))
    carries = [broadcast_carry(v, s, B) for v, s in zip(inits, cell.carry_shapes)]
    ys = [np.empty((B, T) + tuple(s[1:]), dtype=dtype) for s in cell.y_shapes]
    history = [carries]
    for t in range(T):
        carries, outs = cell.step(carries, [x[:, t] for x in xs], free, dtype)
        for buf, y in zip(ys, outs):
            buf[:, t] = y
        if keep_history:
            history.append(carries)
    return carries, ys, history, dtype, B


class Loop(Op):
    """T applications of a cell graph (attrs: cell, length, n_carry, n_xs, truncate)."""

    name = "loop"
    symbol = "loop"

    def infer_shape(self, shapes, attrs):
        cell, n_c = attrs["cell"], attrs["n_carry"]
        for s, want, ph in zip(shapes[:n_c], cell.carry_shapes, cell.carry_in):
            if not _init_fits(tuple(s), tuple(want)):
                raise ShapeError(f"initial carry of shape {s} does not fit the carry {ph.name!r} {want}")
        return (batch_lead(shapes), Layout(cell, attrs["length"]).width)

    def reference(self, node, *values):
        inits, xs, free, _ = _split(node, values)
        carries, ys, _, dtype, B = run_forward(node, inits, xs, free)
        return Layout(node.attrs["cell"], node.attrs["length"]).pack(carries + ys, B, dtype)

    def vjp(self, node, g):
        a = node.attrs
        inputs = list(node.inputs)
        nc, nx = a["n_carry"], a["n_xs"]
        batched = [(pos, x) for pos, x in enumerate(inputs) if pos < nc + nx or _is_batched(x)]
        flat = [(pos, x) for pos, x in enumerate(inputs) if (pos, x) not in batched]
        out = [None] * len(inputs)
        for group, emit in ((batched, "batched"), (flat, "flat")):
            if not group:
                continue
            width = sum(_grad_width(group, emit, a))
            gnode = apply(LoopGrad.instance(), inputs + [g], {**a, "emit": emit, "width": width},
                          name=f"BPTT({node.label()})")
            for (pos, x), part in zip(group, _unpack_grads(gnode, group, emit, a)):
                out[pos] = part
        return out

    def element_expr(self, node, index, sym, batch):
        raise NotImplementedError("a looped recurrence has no element formula; use the 'time' view "
                                  "(--view time: the BPTT terms), or build it unrolled "
                                  "(graphnn.scan(..., mode='unrolled'))")


class LoopGrad(Op):
    """The reverse loop of `Loop`: BPTT, its body the cell's gradient graph."""

    name = "loop_grad"
    symbol = "BPTT"

    def infer_shape(self, shapes, attrs):   # shapes[-1]: the loop's cotangent, (lead, width)
        return (shapes[-1][0], attrs["width"]) if attrs["emit"] == "batched" else (attrs["width"],)

    def reference(self, node, *values):
        inits, xs, free, (g,) = _split(node, values)
        a = node.attrs
        cell, T, k = a["cell"], a["length"], a["truncate"]
        gcell = cell.grad_cell
        _, _, history, dtype, B = run_forward(node, inits, xs, free, keep_history=True)
        parts = Layout(cell, T).unpack_values(g)
        nc = len(cell.carry_in)
        g_final, g_ys = parts[:nc], parts[nc:]
        acc = {"init": [np.zeros_like(c) for c in history[0]],
               "xs": [np.zeros_like(x) for x in xs],
               "free": [np.zeros(np.shape(f), dtype=dtype) for f in free]}

        def back(t, gc, gy):
            """One reverse step through cell t: returns d(carry before step t)."""
            dc, dx, df = gcell.step(history[t], [x[:, t] for x in xs], free, gc, gy, dtype)
            for buf, d in zip(acc["xs"], dx):
                buf[:, t] += d
            acc["free"] = [f + d for f, d in zip(acc["free"], df)]
            return dc

        def finish(gc):
            acc["init"] = [i + d for i, d in zip(acc["init"], gc)]

        if k is None:      # full BPTT: one sweep, each step's output cotangent joining as we pass
            gc = list(g_final)
            for t in range(T - 1, -1, -1):
                gc = back(t, gc, [gy[:, t] for gy in g_ys])
            finish(gc)
        else:              # truncated: what enters at step tau travels back at most k cells
            zeros_c = [np.zeros_like(c) for c in history[0]]
            for tau in range(T - 1, -1, -1):
                gc = list(g_final) if tau == T - 1 else zeros_c
                gy = [v[:, tau] for v in g_ys]
                if not (any(np.any(v) for v in gc) or any(np.any(v) for v in gy)):
                    continue
                for t in range(tau, max(0, tau - k + 1) - 1, -1):
                    gc = back(t, gc, gy if t == tau else [np.zeros_like(v) for v in gy])
                if tau - k + 1 <= 0:
                    finish(gc)
        group = _group_values(node, acc["init"], acc["xs"], acc["free"])
        if a["emit"] == "batched":
            return np.concatenate([np.reshape(v, (B, -1)) for v in group], axis=1).astype(dtype)
        return np.concatenate([np.ravel(v) for v in group]).astype(dtype)

    def vjp(self, node, g):
        raise GradientError("second derivatives through a recurrence (a gradient of BPTT) are not "
                            "supported; differentiate the unrolled view instead")


def _is_batched(node):
    return bool(node.shape) and node.shape[0] is None


def _init_fits(init, carry):
    """A carry (B, *S) starts from a batched (B, *S), a per-example S, or a row (1, *S)."""
    return init == carry or init == carry[1:] or init == (1,) + carry[1:]


def grad_group_members(attrs, inputs):
    nc, nx = attrs["n_carry"], attrs["n_xs"]
    members = []
    for pos, x in enumerate(inputs):
        is_b = pos < nc + nx or _is_batched(x)
        if is_b == (attrs["emit"] == "batched"):
            members.append(pos)
    return members


def _group_values(node, d_init, d_xs, d_free):
    everything = list(d_init) + list(d_xs) + list(d_free)
    return [everything[pos] for pos in grad_group_members(node.attrs, node.inputs[:-1])]


def _grad_width(group, emit, attrs):
    nc, cell = attrs["n_carry"], attrs["cell"]
    sizes = []
    for pos, x in group:
        if pos < nc:
            sizes.append(row_size(cell.carry_shapes[pos]))
        elif emit == "batched":
            sizes.append(row_size(x.shape))
        else:
            sizes.append(math.prod(x.shape))
    return sizes


def _unpack_grads(gnode, group, emit, attrs):
    """Cotangent nodes for each input of ``group`` from the reverse loop's packed output."""
    nc = attrs["n_carry"]
    sizes = _grad_width(group, emit, attrs)
    out, off = [], 0
    for (pos, x), size in zip(group, sizes):
        if emit == "batched":
            piece = index(gnode, (slice(None), slice(off, off + size)))
            if pos < nc and not _is_batched(x):   # a per-example initial carry: sum the batch
                carry_shape = (gnode.shape[0],) + tuple(attrs["cell"].carry_shapes[pos][1:])
                piece = sum_(reshape(piece, carry_shape), 0, keepdims=len(x.shape) == len(carry_shape))
                out.append(reshape(piece, x.shape) if tuple(piece.shape) != tuple(x.shape) else piece)
            else:
                out.append(reshape(piece, x.shape))
        else:
            out.append(reshape(index(gnode, slice(off, off + size)), x.shape))
        off += size
    # an elementwise copy, not a view: the gradient is an array of its own (codegen writes
    # gradients into their own buffers; a reshape of a slice would only be a view)
    g = sympy.Symbol("g")
    return [fmap(g, {g: piece}, fn="BPTT total") for piece in out]
