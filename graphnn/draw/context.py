"""What every view draws from: the graph, its loss and output, and (optionally) values
and gradients computed by graphnn's own evaluator and autodiff.

A view receives a `DrawContext` and returns a ``graphviz.Digraph``. Values come from
``evaluate(..., return_values=True)``; gradients from ``grad(loss, wrt)`` evaluated the same
way — nothing is re-implemented here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..autodiff import grad
from ..errors import FeedError, GradientError, GraphnnError
from ..evaluate import evaluate
from ..graph import Graph, Node
from ..model import Model
from .style import Html, fmt_array, fmt_number


class DrawError(GraphnnError, ValueError):
    """A drawing was asked for that this graph cannot give (wrong view, no loss, no feeds)."""


@dataclass
class DrawContext:
    """The subject of a drawing and the options shared by all views."""

    graph: Graph
    loss: Node | None = None          # scalar node gradients are taken of
    output: Node | None = None        # the network's prediction (where the net ends)
    name: str = "graph"
    feeds: dict | None = None         # None: draw structure only
    params: dict | None = None        # parameter value overrides (e.g. trained weights)
    show_grads: bool = False
    example_index: int = 0            # which row of a batch the units show, 0-based (make_context
                                      # takes the 1-based ``example`` users give and checks its range)
    precision: int = 3                # significant digits of numbers
    max_units: int = 10                # wider layers collapse into an ellipsis group
    collapse: bool = False            # ops view: one box per layer (CNNs, deep nets)
    size: tuple | None = None         # (width, height) in pixels the picture must fit, or None
    options: dict = field(default_factory=dict)   # view-specific extras
    training_note: str | None = None  # the values are a training step's (dropout, masking noise): says which
    _values: dict | None = field(default=None, repr=False)
    _names: object = field(default=None, repr=False)
    _grad_cache: dict = field(default_factory=dict, repr=False)

    # -- ids: graph positions, never id(), so DOT text is the same in every process --
    def node_id(self, node: Node) -> str:
        return f"n{self.graph.index[node]}"

    # -- names: the derivations' own (one naming for every view) --------------------------
    @property
    def names(self):
        """The derivations' `graphnn.names.Names` of this graph, built over the loss's
        graph first (the graph `derive` names), so a drawing and a derivation of the same
        model call every node alike."""
        if self._names is None:
            from ..names import Names
            roots = [self.loss] if self.loss is not None else []
            roots += [o for o in self.graph.outputs if o is not self.loss]
            self._names = Names(Graph(roots))
        return self._names

    def node_name(self, node: Node) -> str | None:
        """What a drawing calls ``node``: exactly what the derivations call it (`Names.label`):
        the user's name (a dotted ``attn.head.A`` by its last part where that is unique),
        else its course name (net⁽¹⁾, out⁽¹⁾; E_o for a loss's elements E_o1, E_o2, which
        the losses name ``<loss>_elements`` for want of a better name), else None (the
        drawing shows the op instead)."""
        return self.names.label(node)

    # -- values ---------------------------------------------------------------------
    @property
    def has_values(self) -> bool:
        return self.feeds is not None

    @property
    def values(self) -> dict:
        """node -> array for every node the feeds determine (empty without feeds)."""
        if self.feeds is None:
            return {}
        if self._values is None:
            outputs = [o for o in self.graph.outputs if self._fed(o)]
            if not outputs:
                missing = ", ".join(repr(n.name) for n in self.graph.inputs if not self._has_feed(n))
                raise FeedError(f"cannot show values: no feed for input {missing}")
            self._values = evaluate(outputs, self.feeds, self.params, return_values=True, scope=self.graph)[1]
        return self._values

    def value(self, node: Node):
        return self.values.get(node)

    def _has_feed(self, node):
        # an input with a default (dropout's `training` flag) needs no feed
        return node in self.feeds or node.name in self.feeds or node.value is not None

    def _fed(self, out):
        return all(self._has_feed(n) for n in Graph([out]).inputs)

    @property
    def nondiff_reason(self) -> str | None:
        """Why the loss has no gradient (a step/sign unit's message), else None."""
        if self.loss is None:
            return None
        for n in Graph([self.loss]).nodes:
            if "nondiff" in n.attrs:
                return n.attrs["nondiff"]
        return None

    # -- gradients ------------------------------------------------------------------
    def gradients(self, wrt) -> dict:
        """node -> value of d(loss)/d(node) for each node in ``wrt`` (autodiff + evaluate)."""
        if self.loss is None:
            raise DrawError(f"{self.name} has no scalar loss to take gradients of; "
                            "draw a Model or a scalar node")
        if self.feeds is None:
            raise DrawError("gradients need values: pass values='example' or feeds")
        wanted = [w for w in dict.fromkeys(wrt) if w not in self._grad_cache]
        if wanted:
            try:
                grads = grad(self.loss, wanted, disconnected="zero")
            except GradientError as e:
                raise DrawError(f"cannot show gradients of {self.loss.label()}: {e}") from None
            arrays = evaluate([grads[w] for w in wanted], self.feeds, self.params, scope=self.graph)
            self._grad_cache.update(zip(wanted, arrays))
        return {w: self._grad_cache[w] for w in wrt}

    def contributions(self, node: Node) -> dict:
        """(consumer, input position) -> value of that use's term of d(loss)/d(node): the
        autodiff record's split of a gradient over the node's uses (a tied W's encoder and
        decoder shares)."""
        key = ("terms", node)
        if key not in self._grad_cache:
            self.gradients([node])
            try:
                record = grad(self.loss, [node], disconnected="zero").record
            except GradientError as e:
                raise DrawError(f"cannot show gradients of {self.loss.label()}: {e}") from None
            terms = record.terms_into(node)
            arrays = evaluate([t.contribution for t in terms], self.feeds, self.params,
                              scope=self.graph) if terms else []
            self._grad_cache[key] = {(t.consumer, t.position): v for t, v in zip(terms, arrays)}
        return self._grad_cache[key]

    def memo(self, key, compute):
        """``compute()`` once per context and ``key`` (a slide fit draws a view several times)."""
        if key not in self._grad_cache:
            self._grad_cache[key] = compute()
        return self._grad_cache[key]

    def evaluate_nodes(self, nodes) -> dict:
        """Values of ``nodes`` and everything they read (e.g. a gradient graph's nodes)."""
        if self.feeds is None:
            return {}
        return evaluate(list(nodes), self.feeds, self.params, return_values=True, scope=self.graph)[1]

    def example_value(self, node: Node):
        """``node`` evaluated on the shown example alone (the row the units show): a loss
        over the batch is not the loss of the example the picture shows."""
        if self.feeds is None:
            return None
        one = {}
        for key, value in self.feeds.items():
            n = key if isinstance(key, Node) else next((i for i in self.graph.inputs if i.name == key), None)
            arr = np.asarray(value)
            batched = n is not None and n.shape and n.shape[0] is None and arr.ndim == len(n.shape)
            one[key] = arr[self.example_index:self.example_index + 1] if batched else value
        return evaluate(node, one, self.params, scope=self.graph)

    # -- text -----------------------------------------------------------------------
    def num(self, x) -> Html:
        """A number as labels show it (`notation.number_html`, ``precision`` digits)."""
        return fmt_number(x, self.precision)

    def arr(self, value) -> Html:
        return fmt_array(value, self.precision)

    def row(self, value):
        """The example row a unit shows (batched arrays), else the array itself."""
        arr = np.asarray(value)
        if arr.ndim < 2:
            return arr
        if not 0 <= self.example_index < arr.shape[0]:
            raise example_range_error(self.example_index + 1, arr.shape[0])
        return arr[self.example_index]

    def row_count(self, node) -> int:
        """Rows of ``node``'s batch in the drawn values (1 when unbatched or not evaluated)."""
        v = self.value(node)
        return int(v.shape[0]) if v is not None and node.shape and node.shape[0] is None else 1

    @property
    def loss_name(self) -> str:
        return self.loss.label() if self.loss is not None else "E"


def example_feeds(model: Model) -> dict:
    """The model's worked example, else the first training example (one row)."""
    found = model.example_feeds()
    if found is not None:
        return found[0]
    raise DrawError(f"model {model.name!r} has no example feeds; pass values as a dict of feeds")


def example_range_error(example, rows: int) -> DrawError:
    """The one error for an ``example`` outside 1 … ``rows`` (CLI and Python name it alike)."""
    valid = "1" if rows == 1 else f"1 … {rows}"
    return DrawError(f"--example (example=) {example} is out of range: the values have {rows} "
                     f"example{'s' if rows != 1 else ''}, counted from 1 ({valid})")


def batch_rows(graph: Graph, feeds: dict | None) -> int | None:
    """How many examples ``feeds`` hold: the rows of the batched inputs' feeds (None when
    no input is batched or fed)."""
    rows = None
    for key, value in (feeds or {}).items():
        n = key if isinstance(key, Node) else next((i for i in graph.inputs if i.name == key), None)
        arr = np.asarray(value)
        if n is not None and n.shape and n.shape[0] is None and arr.ndim == len(n.shape):
            rows = max(rows or 0, int(arr.shape[0]))
    return rows


def make_context(subject, values=None, grads=False, example: int = 1, **options) -> DrawContext:
    """Normalise a Model, Graph or Node (and values/grads requests) into a DrawContext.

    ``example`` counts from 1 (the labels say "example 1"); it must lie in 1 … the feeds'
    rows, else a `DrawError` naming ``--example``."""
    if isinstance(subject, Model):
        graph, loss, output, name = subject.graph, subject.loss, subject.output, subject.name
    elif isinstance(subject, Graph):
        graph, name = subject, "graph"
        scalars = [o for o in graph.outputs if tuple(o.shape) == ()]
        loss = scalars[0] if len(scalars) == 1 else None
        others = [o for o in graph.outputs if o is not loss]
        output = others[0] if len(others) == 1 else None
    elif isinstance(subject, Node):
        graph, name = Graph([subject]), subject.label()
        loss = subject if tuple(subject.shape) == () else None
        output = None if loss is not None else subject
    else:
        raise TypeError(f"draw() takes a Model, Graph or Node, not {type(subject).__name__}")
    if grads and values is None:
        values = "example"   # gradients need an example; show its values too
    if isinstance(values, str):
        if values != "example":
            raise DrawError(f"values must be None, a dict of feeds or 'example', not {values!r}")
        if not isinstance(subject, Model):
            raise DrawError("values='example' needs a Model (with an example); pass a dict of feeds")
        values = example_feeds(subject)
    elif values is not None and not isinstance(values, dict):
        raise DrawError(f"values must be None, a dict of feeds or 'example', not {type(values).__name__}")
    if isinstance(example, bool) or not isinstance(example, (int, np.integer)):
        raise DrawError(f"--example (example=) counts examples from 1: a whole number, not {example!r}")
    if values is None and example != 1:
        raise DrawError(f"--example (example=) {example} picks an example of the values, and this drawing "
                        "has none: add --values (values='example' or a dict of feeds)")
    rows = batch_rows(graph, values) or 1
    if not 1 <= example <= rows:
        raise example_range_error(example, rows)
    values, note = _training_step(graph, values)
    ctx = DrawContext(graph=graph, loss=loss, output=output, name=name, feeds=values,
                      show_grads=bool(grads), example_index=int(example) - 1, training_note=note, **options)
    if ctx.show_grads and ctx.loss is None:
        raise DrawError(f"{name} has no scalar loss, so there are no gradients to show; "
                        "draw a Model or a scalar node")
    return ctx


def _training_step(graph: Graph, feeds: dict | None):
    """(feeds, note): the values a drawing shows are those of the training step `derive`
    shows — `graphnn.noise.training_step`, the one mechanism: ``training`` fed 1
    and ``step`` 0 unless the feeds say otherwise, so dropout and masking noise act with
    the same seeded masks. The note (plain text for a title) says which step, or that the
    user's ``training = 0`` shows evaluation; None for graphs without such ops."""
    from ..noise import training_step

    feeds, said = training_step(graph, feeds)
    if said is None:
        return feeds, None
    given = {k.name if isinstance(k, Node) else k: v for k, v in feeds.items()}
    if not float(np.asarray(given.get("training", 1.0))):
        return feeds, "evaluation (training = 0): no noise"
    return feeds, f"training step {int(float(np.asarray(given.get('step', 0.0))))}: its seeded noise acts, as in derive"
