"""The graph IR: immutable nodes, and a Graph of what is reachable from some outputs.

A node is a leaf (``input``, ``parameter``, ``constant``) or an op applied to other nodes.
Shapes are tuples whose entries are ints or ``None``; ``None`` is the batch dimension,
whose size is known only when data is fed. Nodes compare by identity; the *structural*
hash (`Graph.structural_hash`) is what keys compiled-code caches and checkpoints.

Because a node can only be built from nodes that already exist, the IR cannot contain a
cycle: recurrence is expressed by a node that holds a cell graph (see recurrent.py).
"""
from __future__ import annotations

import hashlib
import heapq
import itertools
from functools import cached_property
from types import MappingProxyType

import numpy as np
import sympy

from .errors import UnknownNameError

BATCH = None  # the symbolic batch dimension in a shape
_BUILT = itertools.count()  # each node's place in the order nodes were built (see written_order)


class Node:
    """One value in the graph. Immutable once built; build nodes with graphnn's functions."""

    __slots__ = ("op", "inputs", "attrs", "shape", "dtype", "name", "names", "value", "built", "__weakref__")

    def __init__(self, op, inputs, attrs, shape, dtype="float", name=None, names=None, value=None):
        set_ = object.__setattr__
        set_(self, "op", op)
        set_(self, "inputs", tuple(inputs))
        set_(self, "attrs", MappingProxyType(dict(attrs)))
        set_(self, "shape", tuple(shape))
        set_(self, "dtype", dtype)
        set_(self, "name", name)
        set_(self, "names", _check_names(names, shape, name))
        set_(self, "value", value)  # a parameter's initial value / a constant's value
        set_(self, "built", next(_BUILT))  # only orders texts (written_order), never semantics

    def __setattr__(self, key, value):
        raise AttributeError(f"graph nodes are immutable (tried to set {key!r} on {self})")

    # -- description ------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """'input', 'parameter', 'constant' or 'op'."""
        return self.op.kind

    @property
    def trainable(self) -> bool:
        return self.kind == "parameter" and bool(self.attrs.get("trainable", True))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def label(self) -> str:
        """A short human name: the node's name, else its op."""
        return self.name or self.op.label(self)

    def __repr__(self):
        shape = "(" + ", ".join("B" if d is None else str(d) for d in self.shape) + ")"
        name = f" {self.name!r}" if self.name else ""
        return f"<{self.op.name}{name} {shape}>"

    # -- operator sugar: graphs read like the maths ----------------------------------
    def __add__(self, other): return _ops().add(self, other)
    def __radd__(self, other): return _ops().add(other, self)
    def __sub__(self, other): return _ops().sub(self, other)
    def __rsub__(self, other): return _ops().sub(other, self)
    def __mul__(self, other): return _ops().mul(self, other)
    def __rmul__(self, other): return _ops().mul(other, self)
    def __truediv__(self, other): return _ops().div(self, other)
    def __rtruediv__(self, other): return _ops().div(other, self)
    def __pow__(self, other): return _ops().power(self, other)
    def __rpow__(self, other): return _ops().power(other, self)
    def __neg__(self): return _ops().neg(self)
    def __matmul__(self, other): return _ops().matmul(self, other)
    def __rmatmul__(self, other): return _ops().matmul(other, self)
    def __getitem__(self, index): return _ops().index(self, index)

    @property
    def T(self):
        return _ops().transpose(self)

    def sum(self, axis=None, keepdims=False): return _ops().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _ops().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops().max(self, axis, keepdims)
    def reshape(self, *shape):
        return _ops().reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)

    # Nodes are used as dict keys everywhere: identity semantics, and no truthiness.
    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError(f"a graph node has no truth value ({self}); evaluate it first")


def _ops():
    from . import ops  # late import: ops builds Nodes
    return ops


def _check_names(names, shape, name):
    """Element names must match the node's non-batch shape exactly."""
    if names is None:
        return None
    arr = np.array(names, dtype=object)
    fixed = tuple(d for d in shape if d is not None)
    if arr.shape != fixed:
        raise ValueError(
            f"element names for {name or 'node'} have shape {arr.shape}, "
            f"but the node's non-batch shape is {fixed}")
    return tuple(arr.ravel().tolist()), arr.shape


def element_name(node: Node, index: tuple) -> str:
    """The teaching name of one element: 'w5', 'net_o1', else 'W1[0,1]'-like.

    ``index`` indexes the node's full shape; batch positions are dropped for named
    elements (one example at a time is what lectures show).
    """
    fixed_index = tuple(i for i, d in zip(index, node.shape) if d is not None)
    if node.names is not None:
        flat, shp = node.names
        return flat[int(np.ravel_multi_index(fixed_index, shp))] if shp else flat[0]
    base = node.name or f"{node.op.name}{_short_id(node)}"
    if not index:
        return base
    return f"{base}[{','.join(str(i) for i in index)}]"


def element_symbol(node: Node, index: tuple) -> sympy.Symbol:
    """The sympy symbol derivations use for one element (see `element_name`)."""
    return sympy.Symbol(element_name(node, index))


def _short_id(node):
    return f"#{id(node) % 10007}"


class Graph:
    """The nodes reachable from ``outputs``, in a deterministic topological order."""

    def __init__(self, outputs):
        if isinstance(outputs, Node):
            outputs = [outputs]
        self.outputs = tuple(outputs)
        for out in self.outputs:
            if not isinstance(out, Node):
                raise TypeError(f"Graph outputs must be graph nodes, got {type(out).__name__}")
        self.nodes = _topological_order(self.outputs)
        self.index = {n: i for i, n in enumerate(self.nodes)}

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    def __contains__(self, node):
        return node in self.index

    @property
    def inputs(self):
        return [n for n in self.nodes if n.kind == "input"]

    @property
    def parameters(self):
        return [n for n in self.nodes if n.kind == "parameter"]

    @property
    def trainable(self):
        return [n for n in self.nodes if n.trainable]

    def consumers(self):
        """node -> list of (consumer, input position), in topological order."""
        users = {n: [] for n in self.nodes}
        for n in self.nodes:
            for pos, x in enumerate(n.inputs):
                users[x].append((n, pos))
        return users

    def find(self, name: str) -> Node:
        """The node called ``name`` (or holding an element called ``name``)."""
        for n in self.nodes:
            if n.name == name:
                return n
        for n in self.nodes:
            if n.names is not None and name in n.names[0]:
                return n
        known = sorted({n.name for n in self.nodes if n.name})
        raise UnknownNameError(f"no node named {name!r} in this graph; named nodes: {', '.join(known)}")

    @cached_property
    def nx(self):
        """A networkx DiGraph view: nodes are integer positions, edges carry the input slot."""
        import networkx as nx

        g = nx.MultiDiGraph()
        for i, n in enumerate(self.nodes):
            g.add_node(i, node=n, label=n.label(), op=n.op.name, shape=n.shape)
        for i, n in enumerate(self.nodes):
            for pos, x in enumerate(n.inputs):
                g.add_edge(self.index[x], i, position=pos)
        return g

    def structural_hash(self) -> str:
        """sha256 of ops, attributes, wiring, shapes, names — not of parameter values."""
        h = hashlib.sha256()
        for n in self.nodes:
            parts = [n.op.name, _stable(dict(n.attrs)), [self.index[x] for x in n.inputs],
                     n.shape, n.dtype, n.name, n.names]
            if n.kind == "constant":
                parts.append(_stable(n.value))
            h.update(repr(parts).encode())
            h.update(b"\n")
        h.update(repr([self.index[o] for o in self.outputs]).encode())
        return h.hexdigest()


def _stable(value):
    """A deterministic text form of an attribute value (for hashing)."""
    if isinstance(value, sympy.Basic):
        return sympy.srepr(value)
    if isinstance(value, np.ndarray):
        return ("array", value.shape, str(value.dtype), hashlib.sha256(value.tobytes()).hexdigest())
    if isinstance(value, dict):
        return tuple((k, _stable(v)) for k, v in sorted(value.items()))
    if isinstance(value, (tuple, list)):
        return tuple(_stable(v) for v in value)
    if isinstance(value, Graph):
        return value.structural_hash()
    if hasattr(value, "structural_key"):
        return value.structural_key()
    return repr(value)


def written_order(nodes) -> list:
    """``nodes`` in a topological order that follows the order they were built.

    For texts that list equations: independent nodes (an LSTM's gates) come in the order the
    model's author wrote them (g, i, f, o), not the order a walk from the outputs meets them.
    Dependencies inside ``nodes`` still come first.
    """
    nodes = list(nodes)
    members = set(nodes)
    waiting = {n: sum(x in members for x in set(n.inputs)) for n in nodes}
    users = {n: [] for n in nodes}
    for n in nodes:
        for x in set(n.inputs):
            if x in members:
                users[x].append(n)
    place = {n: i for i, n in enumerate(nodes)}   # a tie-break that never compares nodes
    ready = [(n.built, place[n], n) for n in nodes if waiting[n] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, i, n = heapq.heappop(ready)
        out.append(n)
        for u in users[n]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (u.built, place[u], u))
    return out


def _topological_order(outputs):
    """Post-order DFS from the outputs, inputs visited left to right (deterministic)."""
    order, seen = [], set()
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            for x in reversed(node.inputs):
                if x not in seen:
                    stack.append((x, False))
    # A node pushed twice before expansion is appended once: dedupe keeps first finish.
    out, done = [], set()
    for n in order:
        if n not in done:
            done.add(n)
            out.append(n)
    return out
