"""The NumPy reference evaluator: the oracle every compiled backend is tested against.

Vectorised over the batch, in float64 or float32. Feeds are checked before anything runs
(a missing input, a wrong shape or dtype names the input and what it expected), and a
node that produces NaN/inf stops evaluation with an error naming that first node — or,
when the data are to blame, the input: one that holds NaN/inf (`check_finite_feeds`, the
check every backend makes of its training arrays) or an empty batch (a mean over no rows).

Feeds and parameter values are keyed by node or by name (`resolve`). A parameter name must
name exactly one parameter of the graph evaluated (or of its ``scope``: the model it is part
of): a misspelt one would leave the parameter at its value without a word. Feeds are a bag:
a name no input of this graph has is ignored (one feed dict serves a model's loss, its
output without the target, a hidden node), unless it is a mistake that would go unnoticed
(a parameter's name, a near miss of an input that falls back to its default); an input
left unfed is an error that lists the names that fed nothing. A node outside the graph is
ignored (a model's whole parameter dict may be given to part of it).

With ``GRAPHNN_CHECK_SHAPES=1`` (the test suite sets it; ``graphnn --debug`` too) every
op's output is also checked against the shape and dtype its node declares: the oracle
checks itself.
"""
from __future__ import annotations

import contextlib
import difflib
import os

import numpy as np

from .errors import FeedError, NonFiniteError, ShapeError
from .graph import Graph, Node
from .model import Model
from .ops.base import contiguous, describe, fmt_shape

DTYPES = {"float64": np.float64, "float32": np.float32}


def resolve_dtype(dtype) -> type:
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in DTYPES:
        raise ValueError(f"dtype must be float64 or float32, not {dtype!r}")
    return DTYPES[key]


class Evaluator:
    """Evaluates a fixed set of outputs many times (the topological order is computed once).

    ``scope``: a larger graph (nodes, a Graph, or a Model) whose parameters the values may
    also name; those the outputs do not read are ignored (see `resolve`).
    """

    def __init__(self, outputs, *, scope=None):
        self.single = isinstance(outputs, Node)
        self.outputs = [outputs] if self.single else list(outputs)
        self.graph = Graph(self.outputs)
        self.scope = as_graph(scope)

    def run(self, feeds=None, params=None, *, dtype="float64", check_finite=True) -> dict:
        """Values of every node of the graph, as a dict node → array."""
        dtype = resolve_dtype(dtype)
        values = bind(self.graph, feeds, params, dtype, scope=self.scope)
        checking = os.environ.get(CHECK_ENV, "") not in ("", "0")
        batch = _batch_size(self.graph, values) if checking else None
        empty = _empty_input(self.graph, values)
        # an empty batch's 0/0 is reported below as the empty batch, and with check_finite any
        # NaN/inf is one NonFiniteError naming its node: no numpy RuntimeWarning lines first
        quiet = np.errstate(over="ignore", divide="ignore", invalid="ignore") \
            if empty is not None or check_finite else contextlib.nullcontext()
        with quiet:
            for node in self.graph.nodes:
                if node in values:
                    continue
                args = [values[x] for x in node.inputs]
                try:
                    out = np.asarray(node.op.reference(node, *args))
                except (ValueError, NonFiniteError) as e:
                    # a max over no rows; a nested evaluation (a scan's cell) that met the bad
                    # data: named as this graph's data, not as the cell's slice of them
                    if empty is not None:
                        raise FeedError(_empty_message(empty, values[empty].shape, node,
                                                       f"cannot be computed ({e})")) from None
                    if isinstance(e, NonFiniteError) and check_finite:
                        check_finite_feeds({n: v for n, v in values.items() if n.kind == "input"})
                    raise
                if checking:
                    check_output(node, out, batch)
                if out.dtype != dtype:
                    out = out.astype(dtype)
                if check_finite and out.size and not np.isfinite(out).all():
                    _blame_the_data(node, out, values, empty)
                    raise NonFiniteError(_nonfinite_message(node, args, out), node)
                values[node] = out
        return values

    def __call__(self, feeds=None, params=None, **kw):
        values = self.run(feeds, params, **kw)
        outs = [values[o] for o in self.outputs]
        return outs[0] if self.single else outs


CHECK_ENV = "GRAPHNN_CHECK_SHAPES"


def _batch_size(graph, values):
    return next((values[n].shape[0] for n in graph.inputs if n.shape and n.shape[0] is None and n in values), None)


def check_output(node, out, batch) -> None:
    """An op's reference output must have the node's declared shape (batch axis: ``batch``) and be real."""
    want = tuple(batch if d is None else d for d in node.shape)
    fits = out.ndim == len(want) and all(w is None or w == o for w, o in zip(want, out.shape))
    if not fits or out.dtype.kind not in "fiub":
        raise ShapeError(f"{node.op.label(node)} node {describe(node)}: its NumPy reference returned shape "
                         f"{fmt_shape(out.shape)} of dtype {out.dtype}, but the node declares shape "
                         f"{fmt_shape(node.shape)} of real numbers (batch {batch}); a bug in op "
                         f"{node.op.name!r}")


def evaluate(outputs, feeds=None, params=None, *, dtype="float64", check_finite=True,
             return_values=False, scope=None):
    """Evaluate ``outputs`` (a node or a list) with NumPy.

    ``feeds`` maps inputs (nodes or names) to arrays (names no input has are ignored; see
    `resolve`); ``params`` optionally overrides parameter values (default: each parameter's
    own value). A parameter name that names no parameter of the graph, or several, is a
    `FeedError`; ``scope`` (e.g. the model, when ``outputs`` are part of it) widens the names
    accepted to its graph's. With ``return_values`` also returns the dict of every node's
    value (what drawings and derivations show).
    """
    ev = Evaluator(outputs, scope=scope)
    values = ev.run(feeds, params, dtype=dtype, check_finite=check_finite)
    outs = [values[o] for o in ev.outputs]
    result = outs[0] if ev.single else outs
    return (result, values) if return_values else result


def bind(graph: Graph, feeds, params, dtype, *, scope=None) -> dict:
    """Check and convert the leaves' values: inputs from feeds, parameters, constants.

    Keys are resolved by `resolve` (``scope``: a Graph, or nodes, whose names are accepted too).
    """
    scope = as_graph(scope)
    given = feeds or {}
    feeds = resolve(graph, given, "input", scope)
    params = resolve(graph, params or {}, "parameter", scope)
    values, batch = {}, {}
    missing = [n for n in graph.inputs if n not in feeds and n.value is None]  # value: the default
    if missing:
        names = {n.name for n in graph.inputs}
        unused = [k for k in given if isinstance(k, str) and k not in names]   # a misspelt one, perhaps
        raise FeedError("missing feed for " + ", ".join(f"input {describe(n)} of shape {fmt_shape(n.shape)}"
                                                        for n in missing)
                        + (f"; the feeds also hold {', '.join(map(repr, unused))}, which no input of this "
                           "graph is called" if unused else ""))
    for node in graph.nodes:
        if node.kind == "input":
            values[node] = _checked(node, feeds[node] if node in feeds else node.value, dtype, batch, "input")
        elif node.kind == "parameter":
            values[node] = _checked(node, params.get(node, node.value), dtype, batch, "parameter")
        elif node.kind == "constant":
            values[node] = np.asarray(node.value, dtype=dtype)
    return values


def as_graph(scope):
    """``scope`` (None, a Graph, a node or nodes, or a Model: its graph) as a Graph or None."""
    if scope is None or isinstance(scope, Graph):
        return scope
    if isinstance(scope, Model):
        return scope.graph
    return Graph(scope)


#: how a value for each kind of leaf is called in messages
_WHAT = {"input": "feed", "parameter": "parameter value"}
_OTHER = {"input": "parameter", "parameter": "input"}
_WHERE = {"input": "feed it in feeds", "parameter": "give its value in params"}


def resolve(graph: Graph, mapping, kind, scope=None) -> dict:
    """``mapping`` (node or name → value) keyed by the ``kind`` nodes ('input' or 'parameter')
    of ``graph`` it sets; raise `FeedError` on a key that sets nothing by mistake.

    A node of ``graph`` must be of ``kind``; a node outside it is ignored. A name that names
    several ``kind`` nodes of ``graph`` is ambiguous. A parameter name must name one of
    ``graph``'s parameters, or one of ``scope``'s (a larger graph: the model this graph is
    part of; ignored). A feed name that names no input is ignored (feeds are a bag: the
    model's target when only its output is evaluated), unless `_extra_feed` finds a mistake.
    """
    out = {}
    what = _WHAT[kind]
    for key, value in mapping.items():
        if isinstance(key, Node):
            if key in graph:
                if key.kind != kind:
                    raise FeedError(f"{what} {describe(key)} names {_a(key.kind)}, not {_a(kind)}: "
                                    f"{_WHERE.get(key.kind, 'it is computed')}")
                out[key] = value
            continue
        found = [n for n in graph.nodes if n.name == key and n.kind == kind]
        if len(found) == 1:
            out[found[0]] = value
        elif found:
            raise FeedError(f"{what} {key!r} is ambiguous: {len(found)} {kind}s of this graph are called "
                            f"{key!r}; key the values by node")
        elif kind == "input":
            _extra_feed(graph, key, mapping)
        elif scope is None or not any(n.name == key and n.kind == kind for n in scope.nodes):
            raise FeedError(_unknown(graph, key, kind, what, scoped=scope is not None))
    return out


def _extra_feed(graph, key, given) -> None:
    """Raise if feed name ``key`` (no input of ``graph`` has it) is a mistake nothing else would
    catch: a parameter's name, or a near miss of an input that nothing feeds and that has a
    default (dropout's ``training``: the default would be used without a word). A near miss
    of an input without a default is left to the missing-feed error, which lists ``key``."""
    if any(n.name == key and n.kind == "parameter" for n in graph.nodes):
        raise FeedError(_unknown(graph, key, "input", "feed"))
    fed = {getattr(k, "name", k) for k in given}
    defaulted = [n.name for n in graph.inputs if n.value is not None and n.name and n.name not in fed]
    close = _close(key, defaulted, cutoff=0.75)
    if close:
        raise FeedError(f"feed {key!r} names no input of this graph (did you mean {close!r}? it is not fed, "
                        f"so its default would be used)")


def _close(key, names, cutoff=0.6):
    """The name ``key`` most likely misspells: a case slip first ('h.w' for 'h.W': difflib alone
    would pick 'h.b'), else difflib's closest; None."""
    same = [k for k in names if k.lower() == str(key).lower()]
    found = same or difflib.get_close_matches(str(key), names, n=1, cutoff=cutoff)
    return found[0] if found else None


def _unknown(graph, key, kind, what, scoped=False) -> str:
    other = next((n for n in graph.nodes if n.name == key and n.kind == _OTHER[kind]), None)
    if other is not None:
        return f"{what} {key!r} names {_a(other.kind)}, not {_a(kind)}: {_WHERE[other.kind]}"
    known = sorted({n.name for n in graph.nodes if n.kind == kind and n.name})
    close = _close(key, known)
    listing = ", ".join(map(repr, known[:8])) + (f", … ({len(known)} in all)" if len(known) > 8 else "")
    return (f"{what} {key!r} names no {kind} of this graph" + (f" (did you mean {close!r}?)" if close else "")
            + (f"; its {kind}s: {listing}" if known else f"; it has no {kind}s")
            # no close name: perhaps a parameter of the model outside this part of it
            + (" (evaluating part of a model? pass scope=model)" if kind == "parameter" and not close
               and not scoped else ""))


def _a(kind):
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def check_value(node, value, dtype="float64", what=None):
    """``value`` for the leaf ``node`` checked as `bind` checks it (real numbers, integers for
    an int node, exactly the node's shape, any batch size) and converted to ``dtype``; a
    `FeedError` names the node and both shapes. ``what``: its kind ('input', 'parameter')."""
    return _checked(node, value, resolve_dtype(dtype), {}, what or node.kind)


def check_feed(node, value, what="input") -> None:
    """Raise `FeedError` unless ``value`` suits the leaf ``node`` as `check_value` checks it
    (real numbers, integers for an int node, exactly the node's shape, any batch size),
    without converting or copying it: a whole data set is checked before training."""
    _check_kind_and_shape(node, np.asarray(value), what)


def _check_kind_and_shape(node, arr, what):
    if arr.dtype.kind not in "fiub":
        raise FeedError(f"{what} {describe(node)} expects real numbers, got an array of dtype {arr.dtype}")
    if node.dtype == "int" and arr.dtype.kind not in "iu" and not np.array_equal(arr, np.trunc(arr)):
        # floats holding whole numbers pass: a run carries ids in its float dtype (check_grad re-feeds them)
        raise FeedError(f"{what} {describe(node)} expects integers, got dtype {arr.dtype} with fractions")
    if arr.ndim != len(node.shape) or any(d is not None and d != a for d, a in zip(node.shape, arr.shape)):
        raise FeedError(f"{what} {describe(node)} expects shape {fmt_shape(node.shape)}, "
                        f"got {fmt_shape(arr.shape)}")


def _checked(node, value, dtype, batch, what):
    arr = np.asarray(value)
    _check_kind_and_shape(node, arr, what)
    if node.shape and node.shape[0] is None:
        first = batch.setdefault("size", (arr.shape[0], node))
        if first[0] != arr.shape[0]:
            raise FeedError(f"batch sizes differ: {what} {describe(node)} has {arr.shape[0]} rows, "
                            f"{describe(first[1])} has {first[0]}")
    return contiguous(arr, dtype=dtype)


def check_finite_feeds(values: dict, what="input") -> None:
    """``values``: node → array (as a backend will use them); raise `NonFiniteError` naming the
    first node that holds NaN/inf and where. The one check of data every backend makes: the
    compiled ones and the reference on each training array once, on entry (not per batch);
    the evaluator when a NaN/inf appears, to blame the data rather than the net."""
    for node, value in values.items():
        value = np.asarray(value)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            where = np.argwhere(~np.isfinite(value))[0]
            bad = value[tuple(where)]
            kind = "data" if what == "input" else f"{what}s"   # 'parameters must be finite numbers'
            raise NonFiniteError(f"{what} {describe(node)} holds {bad} at index {tuple(int(i) for i in where)}: "
                                 f"{kind} must be finite numbers", node)


def _empty_input(graph, values):
    """The first input fed an empty batch (0 rows), or None."""
    return next((n for n in graph.inputs if n.shape and n.shape[0] is None and n in values
                 and values[n].shape[0] == 0), None)


def _empty_message(empty, shape, node, happened) -> str:
    return (f"input {describe(empty)} is an empty batch, shape {fmt_shape(shape)}: {node.op.label(node)} node "
            f"{describe(node)} {happened} over 0 examples; feed at least one example")


def _blame_the_data(node, out, values, empty) -> None:
    """``node`` produced NaN/inf: raise naming the data if they are the cause (an input that
    holds NaN/inf, an empty batch), since no learning rate is then to blame."""
    if empty is not None:
        bad = "NaN" if np.isnan(out).any() else "inf"
        raise FeedError(_empty_message(empty, values[empty].shape, node, f"is {bad}"))
    check_finite_feeds({n: v for n, v in values.items() if n.kind == "input"})


def _nonfinite_message(node, args, out):
    bad = "NaN" if np.isnan(out).any() else "inf"
    ins = ", ".join(f"{describe(x)} (range {_range(v)})" for x, v in zip(node.inputs, args))
    return (f"{node.op.label(node)} node {describe(node)} is the first to produce {bad}"
            + (f"; its inputs: {ins}" if ins else "")
            + ". Lower the learning rate, or check the inputs' scale.")


def _range(v):
    v = np.asarray(v)
    return f"{v.min():.3g}..{v.max():.3g}" if v.size else "empty"
