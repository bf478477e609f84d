"""Recurrence: a step function ``step(carry, x_t) -> (carry, y_t)`` applied over T steps.

`scan` builds the step once as a cell graph (`graphnn.cell.Cell`) and gives one of two
views of the same thing:

- ``mode='looped'``: ONE ``loop`` node holding the cell (evaluation, training, codegen of
  long sequences). Its gradient is a reverse loop whose body is the cell's gradient —
  backprop through time — optionally truncated to ``truncate`` steps.
- ``mode='unrolled'``: T explicit copies of the step in the ordinary IR (derivations and
  drawings of small T). The ordinary autodiff of this graph *is* BPTT: the oracle.

The graph IR has no cycles; the recurrence lives inside the loop node's cell.

Dependencies point one way: cell ← looped ← recurrent ← bptt (the BPTT terms explain a
`Scan`; `scans_in` finds the scans of a graph for them and for the drawings).
"""
from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass, field

import numpy as np

from .cell import Cell
from .errors import ShapeError
from .graph import Node
from .looped import Loop, Layout
from .ops import Index, concat, constant, input as input_, reshape
from .ops.base import apply, describe, fmt_shape
from .ops.structure import normalize_index

#: final carry / output nodes of unrolled scans → their Scan (so bptt_terms can find them)
_UNROLLED: "weakref.WeakKeyDictionary[Node, Scan]" = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class Scan:
    """The result of `scan`: nodes to build on, and what the views need."""

    mode: str
    carry: object              # final carry: a node, or a tuple like ``init``
    ys: object                 # stacked per-step outputs (batch, T, …): node, tuple or None
    cell: Cell
    length: int
    inits: tuple
    xs: tuple
    truncate: int | None = None
    node: Node | None = None   # the loop node (looped view)
    states: list = field(default_factory=list)   # unrolled: carries s_0 … s_T (tuples)
    outputs: list = field(default_factory=list)  # unrolled: y_1 … y_T (tuples)
    steps: list = field(default_factory=list)    # unrolled: the set of nodes each copy built

    @property
    def final(self) -> tuple:
        return self.carry if isinstance(self.carry, tuple) else (self.carry,)


def scan(step, init, xs=None, *, length=None, mode="looped", truncate=None, name="rnn") -> Scan:
    """Apply ``step(carry, x_t) -> (carry, y_t)`` over the time axis (axis 1) of ``xs``.

    ``init``: the initial carry, a node (batched ``(None, …)``, per example ``S``, or a row
    ``(1, …)``), a number, or a tuple of those (LSTM: ``(h0, c0)``). ``xs``: a node shaped
    ``(None, T, …)`` or a tuple of them, or None with ``length=T``. ``step`` receives
    nodes shaped like one step and returns nodes; if it takes a ``t`` argument it gets the
    1-based step number (unrolled) or the string ``"t"`` (the cell), for naming nodes
    ``s_1``, ``s_2`` … ``y_t`` may be None. ``truncate=k`` limits BPTT to k steps back.
    """
    if mode not in ("looped", "unrolled"):
        raise ValueError(f"scan mode must be 'looped' or 'unrolled', not {mode!r}")
    if truncate is not None and (not isinstance(truncate, (int, np.integer)) or truncate < 1):
        raise ValueError(f"truncate must be a positive number of steps or None, not {truncate!r}")
    if truncate is not None and mode == "unrolled":
        raise ValueError("truncate applies to the looped view's reverse loop; the unrolled view's "
                         "gradient is always the full BPTT sum (use mode='looped')")
    tuple_carry = isinstance(init, (tuple, list))
    inits = tuple(_as_node(v, f"{name}.init{i}") for i, v in enumerate(init if tuple_carry else [init]))
    tuple_xs = isinstance(xs, (tuple, list))
    xs_t = tuple(xs) if tuple_xs else (() if xs is None else (xs,))
    T = _length(xs_t, length)
    takes_t = "t" in inspect.signature(step).parameters

    def call(carry, x, t):
        c = carry if tuple_carry else carry[0]
        xv = (x if tuple_xs else x[0]) if xs_t else None
        out = step(c, xv, t=t) if takes_t else step(c, xv)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("a scan step must return (carry, y) — y may be None")
        new, y = out
        new = tuple(new) if tuple_carry else (new,)
        if len(new) != len(inits):
            raise TypeError(f"the step returned {len(new)} carries, the initial carry has {len(inits)}")
        ys = () if y is None else (tuple(y) if isinstance(y, (tuple, list)) else (y,))
        return new, ys, isinstance(y, (tuple, list))

    carry_ph = tuple(input_(f"{c.name or 'carry'}(t-1)", _carry_shape(c)) for c in inits)
    x_ph = tuple(input_(f"{x.name or 'x'}(t)", (None,) + tuple(x.shape[2:])) for x in xs_t)
    carry_out, y_out, tuple_y = call(carry_ph, x_ph, "t")
    cell = Cell(carry_ph, x_ph, carry_out, y_out)
    structure = (tuple_carry, tuple_y, bool(y_out))
    if mode == "looped":
        return _looped(cell, inits, xs_t, T, truncate, name, structure)
    return _unrolled(call, cell, inits, xs_t, T, truncate, name, structure)


def _looped(cell, inits, xs, T, truncate, name, structure):
    attrs = {"cell": cell, "length": T, "n_carry": len(inits), "n_xs": len(xs), "truncate": truncate}
    node = apply(Loop.instance(), list(inits) + list(xs) + list(cell.free), attrs, name=name)
    labels = [_final_name(c, name, k) for k, c in enumerate(cell.carry_out)] + \
        [f"{name}.ys{j}" if len(cell.y_out) > 1 else f"{name}.ys" for j in range(len(cell.y_out))]
    parts = Layout(cell, T, node.shape[0]).unpack_nodes(node, labels)
    nc = len(inits)
    carry, ys = tuple(parts[:nc]), tuple(parts[nc:])
    return Scan("looped", *_shape_result(carry, ys, structure), cell, T, inits, xs, truncate, node=node)


def _unrolled(call, cell, inits, xs, T, truncate, name, structure):
    states, outputs, steps = [inits], [], []
    carry, seen = inits, set()
    for t in range(1, T + 1):
        x_t = tuple(_step_input(x, t) for x in xs)
        carry, ys, _ = call(carry, x_t, t)
        built = _new_nodes(carry + ys, seen, x_t + inits)
        states.append(carry)
        outputs.append(ys)
        steps.append(built)
    ys_stacked = tuple(_stack([o[j] for o in outputs], f"{_base(outputs[0][j])}s")
                       for j in range(len(outputs[0]))) if T and outputs[0] else ()
    result = Scan("unrolled", *_shape_result(carry, ys_stacked, structure), cell, T, inits, xs, truncate,
                  states=states, outputs=outputs, steps=steps)
    for n in list(carry) + list(ys_stacked) + [y for o in outputs for y in o]:
        _UNROLLED[n] = result
    return result


def _final_name(carry_out, name, k):
    """The final carry's name: s_t → s_T; else rnn.carry0."""
    n = carry_out.name or ""
    return n[:-2] + "_T" if n.endswith("_t") else f"{name}.carry{k}"


def _shape_result(carry, ys, structure):
    tuple_carry, tuple_y, has_y = structure
    c = carry if tuple_carry else carry[0]
    y = (ys if tuple_y else ys[0]) if has_y else None
    return c, y


def _as_node(value, name):
    if isinstance(value, Node):
        return value
    return constant(np.asarray(value, dtype=float), name=name)


def _carry_shape(init):
    s = tuple(init.shape)
    if s and s[0] is None:
        return s
    if s and s[0] == 1:
        return (None,) + s[1:]
    return (None,) + s


def _length(xs, length):
    for x in xs:
        if len(x.shape) < 2 or x.shape[0] is not None:
            raise ShapeError(f"scan input {describe(x)} must be shaped (batch, T, …), got {fmt_shape(x.shape)}")
    lengths = {x.shape[1] for x in xs}
    if len(lengths) > 1:
        raise ShapeError("scan inputs differ in length: "
                         + ", ".join(f"{describe(x)} {fmt_shape(x.shape)}" for x in xs))
    if lengths and length is not None and length not in lengths:
        raise ShapeError(f"length={length} but the inputs have {lengths.pop()} steps")
    T = lengths.pop() if lengths else length
    if T is None:
        raise ValueError("scan needs input sequences or length=T")
    return int(T)


def _step_input(x, t):
    """x[:, t−1], named x_t (scalar elements get the teaching name x_t too)."""
    base = _base(x)
    names = f"{base}_{t}" if len(x.shape) == 2 else None
    spec = normalize_index((slice(None), t - 1), x.shape)
    return apply(Index.instance(), [x], {"spec": spec}, name=f"{base}_{t}", names=names)


def _base(node):
    return node.name or node.op.name


def _stack(nodes, name):
    """(batch, …) per step → (batch, T, …); a step fed nothing batched, (1, …) or per example,
    → (1, T, …), as the looped view's (see looped.batch_lead)."""
    def as_row(shape):
        if shape and shape[0] is None:
            return (None, 1) + shape[1:]
        return (1, 1) + (shape[1:] if shape[:1] == (1,) else shape)
    rows = [reshape(n, as_row(tuple(n.shape))) for n in nodes]
    return rows[0] if len(rows) == 1 else concat(rows, axis=1, name=name)


def _new_nodes(outputs, seen, leaves):
    """The nodes one unrolled copy built (for attributing gradient terms to steps)."""
    from .graph import Graph

    built = set()
    for n in Graph(list(outputs)).nodes:
        if n not in seen and n.kind == "op" and n not in leaves:
            built.add(n)
    seen |= built
    return built


def scans_in(graph) -> list:
    """The recurrences of ``graph`` (a `Graph`): unrolled scans found by their nodes, and
    one `Scan` per loop node (rebuilt from its attributes), in graph order."""
    found, seen = [], set()
    for n in graph.nodes:
        s = _UNROLLED.get(n)
        if s is not None and id(s) not in seen:
            seen.add(id(s))
            found.append(s)
        elif isinstance(n.op, Loop):
            found.append(_scan_of_loop(n))
    return found


def _scan_of_loop(loop: Node) -> Scan:
    a = loop.attrs
    nc, nx = a["n_carry"], a["n_xs"]
    return Scan("looped", None, None, a["cell"], a["length"], tuple(loop.inputs[:nc]),
                tuple(loop.inputs[nc:nc + nx]), a["truncate"], node=loop)
