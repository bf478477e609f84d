"""What a derivation is asked for: the targets (`Target`) from names, nodes or pairs, and
the feeds (the worked example, the first training example, or the user's)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FeedError, UnknownNameError
from ..graph import Graph, Node
from ..ops.base import all_indices, concrete_shape, describe
from ..noise import training_step  # noqa: F401 (public here: derive's numbers are a training step's)


@dataclass
class Target:
    """What to differentiate by: a parameter (or input) node, and one element or all."""

    node: Node
    index: tuple | None = None   # None: the whole tensor

    def elements(self, batch=1):
        if self.index is not None:
            return [self.index]
        return list(all_indices(concrete_shape(self.node.shape, batch)))


def resolve_feeds(graph: Graph, values, model, example: int = 1):
    """(feeds, where they come from): (None, None) when symbolic; feeds checked to cover
    every input of the loss's graph (inputs with a default, dropout's training flag,
    may be left out). The source is said only when it is not the worked example.
    ``example``: with values=True and no worked example, the training example taken."""
    if values is None or values is False:
        return None, None
    source = None
    if values is True:
        found = model.example_feeds(example) if model is not None else None
        if found is None:
            need = ", ".join(f"{describe(n)} {_shape(n)}" for n in graph.inputs)
            where = f"model {model.name!r}" if model is not None else "this loss (no model given)"
            raise FeedError(f"{where} has no example feeds and no training data, so values (--values) are "
                            f"missing for the inputs {need}; pass values={{name: array, ...}} in Python "
                            "(--feed name=value,... or --feed FILE.json)")
        values, source = found
        if model.example:
            source = None
        else:
            source += " of the model's data (it has no worked example)"
    if not isinstance(values, dict):
        raise TypeError(f"values must be None, True or a dict of feeds, not {type(values).__name__}")
    given = {k.name if isinstance(k, Node) else k for k in values}
    missing = [n for n in graph.inputs if n.name not in given and n not in values and n.value is None]
    if missing:
        raise FeedError("values are missing feeds for " + ", ".join(
            f"input {describe(n)} of shape {_shape(n)}" for n in missing))
    return dict(values), source


def _shape(n):
    from ..ops.base import fmt_shape
    return fmt_shape(n.shape)


def resolve_wrt(graph: Graph, wrt) -> list[Target]:
    """Targets from names, nodes, (node, index) pairs or a list of them."""
    if isinstance(wrt, (list, tuple)) and not _is_pair(wrt):
        out = []
        for w in wrt:
            out += resolve_wrt(graph, w)
        return out
    if _is_pair(wrt):
        return [Target(wrt[0], tuple(wrt[1]))]
    if isinstance(wrt, Node):
        return [Target(wrt)]
    if isinstance(wrt, str):
        candidates = [n for n in graph.nodes if n.kind in ("parameter", "input")]
        for n in candidates:
            if n.name == wrt:
                return [Target(n)]
        for n in candidates:
            if n.names is not None and wrt in n.names[0]:
                flat, shp = n.names
                idx = tuple(int(i) for i in np.unravel_index(flat.index(wrt), shp)) if shp else ()
                if n.shape and n.shape[0] is None:
                    idx = (0,) + idx
                return [Target(n, idx)]
        raise UnknownNameError(f"--wrt {wrt!r} names nothing in this graph; parameters: "
                               + parameter_listing(graph))
    raise TypeError(f"wrt must be a name, a node or a (node, index) pair, not {type(wrt).__name__}")


def _is_pair(w) -> bool:
    return isinstance(w, tuple) and len(w) == 2 and isinstance(w[0], Node) and isinstance(w[1], tuple)


def parameter_listing(graph: Graph) -> str:
    """'W1 (2, 2): w1, w3, w2, w4; b1 (1,) fixed: b1; …' — what --wrt may name."""
    parts = []
    for p in graph.parameters:
        fixed = "" if p.trainable else " fixed"
        elems = f": {', '.join(p.names[0])}" if p.names is not None else ""
        parts.append(f"{p.name} {_shape(p)}{fixed}{elems}")
    return "; ".join(parts) or "(none)"


def feeds_from_assignments(model, assignments: dict) -> dict:
    """Feeds from ``{name: value}``: a whole input by its name (``i: [0.05, 0.1]``, one example)
    or one element by its teaching name (``i1: 0.05``). Inputs left out come from the model's
    worked example (else its first training example)."""
    graph = model.graph if hasattr(model, "graph") else Graph([model])
    found = model.example_feeds() if hasattr(model, "example_feeds") else None
    feeds = {k: np.array(v, dtype=float) for k, v in (found[0] if found else {}).items()}
    inputs = {n.name: n for n in graph.inputs}
    elements = {}
    for n in graph.inputs:
        if n.names is not None:
            flat, shp = n.names
            for k, name in enumerate(flat):
                elements[name] = (n, tuple(int(i) for i in np.unravel_index(k, shp)) if shp else ())
    by_element = set()   # inputs given element by element where no example had them: all elements needed
    for name, value in assignments.items():
        if name in inputs:
            node = inputs[name]
            shape = concrete_shape(node.shape, 1)
            arr = _numbers(name, value)
            if arr.size != int(np.prod(shape)):
                raise FeedError(f"feed {name!r}: {arr.size} value(s) given, but input {describe(node)} holds "
                                f"{int(np.prod(shape))} per example (shape {shape})")
            feeds[name] = arr.reshape(shape)
        elif name in elements:
            node, idx = elements[name]
            if node.name not in feeds:   # no worked example: the elements must give the whole input
                feeds[node.name] = np.full(concrete_shape(node.shape, 1), np.nan)
                by_element.add(node)
            arr = feeds[node.name] = np.array(feeds[node.name][:1] if node.shape and node.shape[0] is None
                                              else feeds[node.name], dtype=float)
            arr[((0,) if node.shape and node.shape[0] is None else ()) + idx] = _numbers(name, value, one=True)
        else:
            known = ", ".join(list(inputs) + list(elements))
            raise FeedError(f"feed {name!r} names no input of this model; inputs and their elements: {known}")
    for node in by_element:
        missing = [e for e, (n, idx) in elements.items() if n is node and np.isnan(feeds[node.name][
            ((0,) if node.shape and node.shape[0] is None else ()) + idx])]
        if missing:
            raise FeedError(f"input {describe(node)} has no values for {', '.join(missing)} (this model has no "
                            f"worked example to take them from); give every element, or the whole input, "
                            f"{node.name}=…")
    return feeds


def _numbers(name, value, one=False) -> np.ndarray:
    """``value`` as float64 (one number when ``one``), or a FeedError naming the feed."""
    try:   # (None would be NaN, True 1.0: neither is a number someone typed)
        arr = None if value is None or isinstance(value, (bool, dict)) else np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        arr = None
    if arr is None or (one and arr.ndim) or (arr.dtype == object):
        what = "a number" if one else "a number or a (nested) list of numbers of one shape"
        raise FeedError(f"feed {name!r}: {value!r} is not {what}")
    return arr
