"""`derive()` and `Derivation`: backprop written out, read from the autodiff record.

A derivation is a list of items: prose (str) and `Step`s. A step is one displayed
equation ``lhs = form₁ = form₂ = …``: the chain of partials, the same in symbols, the
same with numbers, the value. Every number comes from evaluating the graph — forward
values and the gradient graph's adjoints (`Values`) — and symbolic partials come from
`GradRecord.chains` (scalar view) or the record's terms (matrix view); nothing here
differentiates anything.

Views are pluggable (`register_view`), so other modules add their own (``'time'``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import sympy

from ..autodiff import grad
from ..errors import FeedError, GraphnnError, UnknownNameError
from ..evaluate import evaluate
from ..graph import Graph, Node
from ..ops.base import all_indices, concrete_shape, describe
from . import documents as docs
from .printing import latex, matrix, numbers, product

class DerivationError(GraphnnError):
    """A derivation that cannot be written (a view that does not fit this graph)."""


# -- what a derivation is made of ---------------------------------------------------------


@dataclass
class Form:
    """One right-hand side. Exactly one of: ``expr`` (sympy), ``factors`` (a product, in
    chain order — sympy would reorder a Mul), ``values`` (numbers joined by ``joiner``),
    ``array`` (a matrix), ``tex`` (ready LaTeX, or a function of text_mode giving it)."""

    expr: object = None
    factors: list | None = None
    values: tuple | None = None
    joiner: str = r" \cdot "
    array: np.ndarray | None = None
    tex: object = None
    lead: str = "="      # how the row starts: '=' or a continuation such as '\\quad +'

    def latex(self, text_mode=False) -> str:
        if self.tex is not None:
            return self.tex(text_mode) if callable(self.tex) else self.tex
        if self.factors is not None:
            return product(self.factors)
        if self.values is not None:
            if self.joiner == r" \cdot ":
                return numbers(self.values)
            return self.joiner.join(latex(v) for v in self.values).replace("+ -", "- ")
        if self.array is not None:
            return matrix(self.array, text_mode)
        return latex(self.expr)

    @property
    def sympy(self):
        """This form as a sympy expression (None for matrices and prebuilt LaTeX)."""
        if self.expr is not None:
            return self.expr
        if self.factors is not None:
            return sympy.Mul(*self.factors, evaluate=False)
        if self.values is not None:
            nums = [sympy.Float(float(v)) for v in self.values]
            return sympy.Mul(*nums, evaluate=False) if self.joiner == r" \cdot " else \
                sympy.Add(*nums, evaluate=False)
        return None


@dataclass
class Step:
    """lhs = forms[0] = forms[1] = …; ``value`` is the last form's number (or array).

    ``kind`` says what the step is ('chain', 'path', 'sum', 'delta', 'gradient',
    'update', 'rule', 'forward'); ``checks`` maps what each printed number claims to be
    (e.g. ('adjoint', node, index)) to the number, so tests can compare every one with
    the autodiff value.
    """

    lhs: object
    forms: list
    kind: str = "chain"
    value: object = None
    shape: tuple | None = None
    note: str | None = None
    checks: list = field(default_factory=list)

    def lhs_latex(self) -> str:
        return self.lhs if isinstance(self.lhs, str) else latex(self.lhs)

    def rows(self, text_mode=False) -> list[str]:
        forms = [f.latex(text_mode) for f in self.forms]
        if self.shape is not None:
            forms[-1] += r" \quad [%s]" % self.shape
        first, *rest = forms or [""]
        leads = [f.lead for f in self.forms[1:]]
        return [f"{self.lhs_latex()} &= {first}"] + [f"&{lead} {f}" for lead, f in zip(leads, rest)]

    @property
    def equations(self) -> list:
        """The step as sympy equations (forms that have a sympy form)."""
        lhs = self.lhs if not isinstance(self.lhs, str) else sympy.Symbol(self.lhs)
        return [sympy.Eq(lhs, f.sympy, evaluate=False) for f in self.forms if f.sympy is not None]


class Derivation(docs.RichMixin):
    """A rendered derivation: prose and steps, in order. Render with ``to_text()``,
    ``to_latex()`` (align blocks), ``to_latex_document()``, ``to_markdown()``,
    ``to_html()``, ``to_pdf(path)``, or ``render(format)``; in Jupyter it shows itself."""

    FORMATS = ("text", "latex", "latex-document", "markdown", "html", "pdf")

    def __init__(self, title: str, items=None):
        self.title = title
        self.items: list = list(items or [])

    # -- contents ----------------------------------------------------------------------
    @property
    def steps(self) -> list[Step]:
        return [i for i in self.items if isinstance(i, Step)]

    def __iter__(self):
        return iter(self.steps)

    def __len__(self):
        return len(self.steps)

    def __add__(self, other: "Derivation") -> "Derivation":
        return Derivation(self.title, self.items + [other.title] + other.items)

    @classmethod
    def combine(cls, title: str, derivations) -> "Derivation":
        """One document from several derivations, each under its own title."""
        items = []
        for d in derivations:
            items += [_Heading(d.title)] + d.items
        return cls(title, items)

    # -- output ------------------------------------------------------------------------
    def to_document(self, text_mode: bool = False) -> docs.Document:
        blocks, rows = [], []
        for item in self.items:
            if isinstance(item, Step):
                if item.note:
                    _flush(blocks, rows)
                    blocks.append(docs.Prose(item.note))
                rows += item.rows(text_mode)
            else:
                _flush(blocks, rows)
                blocks.append(docs.Prose(str(item)))
        _flush(blocks, rows)
        return docs.Document(self.title, blocks)

    def to_text(self) -> str:
        return docs.to_text(self.to_document(text_mode=True))

    def to_latex(self) -> str:
        """The math as ``align*`` blocks (prose as LaTeX comments): paste into Beamer."""
        out = []
        for block in self.to_document().blocks:
            if isinstance(block, docs.MathBlock):
                out.append(docs.to_latex_align(block))
            else:
                out.append("% " + block.text.replace("\n", " "))
        return "\n".join(out) + "\n"

    def to_latex_document(self) -> str:
        return docs.to_latex_document(self.to_document())

    def to_markdown(self) -> str:
        return docs.to_markdown(self.to_document())

    def to_html(self, full_page: bool = True) -> str:
        return docs.to_html(self.to_document(), full_page=full_page)

    def to_pdf(self, path) -> Path:
        return docs.compile_pdf(self.to_latex_document(), path)

    def render(self, fmt: str = "text") -> str:
        """The derivation as a string in ``fmt`` (not 'pdf': use `to_pdf` or `save`)."""
        writers = {"text": self.to_text, "latex": self.to_latex,
                   "latex-document": self.to_latex_document, "markdown": self.to_markdown,
                   "html": self.to_html}
        if fmt not in writers:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(self.FORMATS)}")
        return writers[fmt]()

    def save(self, path, fmt: str | None = None) -> Path:
        """Write to ``path``; the format follows the suffix (.tex is a full document)."""
        path = Path(path)
        fmt = fmt or {".txt": "text", ".tex": "latex-document", ".md": "markdown",
                      ".html": "html", ".htm": "html", ".pdf": "pdf"}.get(path.suffix, "text")
        if fmt == "latex" and path.suffix == ".tex":
            fmt = "latex-document"  # a .tex file must compile on its own
        if fmt == "pdf":
            return self.to_pdf(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(fmt), encoding="utf-8")
        return path

    def __str__(self):
        return self.to_text()

    def __repr__(self):
        return f"<Derivation {self.title!r}: {len(self.steps)} steps>"


class _Heading(str):
    """A section title inside a combined derivation (prose that reads as a heading)."""


def _flush(blocks, rows):
    if rows:
        blocks.append(docs.MathBlock(list(rows)))
        rows.clear()


# -- the values a derivation substitutes ---------------------------------------------------


class Values:
    """Forward values and adjoints (∂loss/∂node) from ONE evaluation of the graph and its
    gradient graph: every number a derivation prints is read or computed from these."""

    def __init__(self, record, feeds, params=None):
        self.record = record
        totals = [a.total for a in record.adjoints.values() if a.total is not None]
        _, self.all = evaluate([record.loss] + totals, feeds, params, return_values=True)

    def forward(self, node: Node) -> np.ndarray:
        return self.all[node]

    def adjoint(self, node: Node) -> np.ndarray:
        """∂loss/∂node, as the gradient graph computes it."""
        return self.all[self.record.adjoints[node].total]

    def element(self, node: Node, index) -> float:
        return float(np.asarray(self.all[node])[tuple(index)])

    def __contains__(self, node):
        return node in self.all


# -- the request a view answers ---------------------------------------------------------------


@dataclass
class Target:
    """What to differentiate by: a parameter (or input) node, and one element or all."""

    node: Node
    index: tuple | None = None   # None: the whole tensor

    def elements(self, batch=1):
        if self.index is not None:
            return [self.index]
        return list(all_indices(concrete_shape(self.node.shape, batch)))


@dataclass
class Request:
    """Everything a view needs; the views registry's functions take one of these.

    loss, targets (list of `Target`), feeds (dict or None: symbolic only), model (or
    None), update (bool), lr (float or None), optimizer (name, instance or None),
    one_example (scalar views slice the feeds to the first example). ``record``,
    ``grads`` and ``values`` are computed on first use.
    """

    loss: Node
    targets: list
    feeds: dict | None = None
    model: object = None
    update: bool = False
    lr: float | None = None
    optimizer: object = None
    one_example: bool = False

    @cached_property
    def graph(self) -> Graph:
        return Graph([self.loss])

    @cached_property
    def grads(self):
        wrt = list(dict.fromkeys(t.node for t in self.targets))
        return grad(self.loss, wrt)

    @property
    def record(self):
        return self.grads.record

    @cached_property
    def values(self) -> Values | None:
        if self.feeds is None:
            return None
        feeds = self.feeds
        if self.one_example:
            feeds = first_example(self.graph, feeds)
        return Values(self.record, feeds)

    @property
    def batch(self) -> int:
        """Batch size the derivation shows (element indices assume it)."""
        if self.feeds is None or self.one_example:
            return 1
        for n in self.graph.inputs:
            if n.shape and n.shape[0] is None and n.name in self.feeds:
                return int(np.shape(self.feeds[n.name])[0])
        return 1

    def loss_name(self) -> str:
        return self.loss.label()


def first_example(graph: Graph, feeds: dict) -> dict:
    """The feeds cut to their first row (lectures derive one example at a time)."""
    out = {}
    for key, value in feeds.items():
        node = key if isinstance(key, Node) else next((n for n in graph.inputs if n.name == key), None)
        arr = np.asarray(value)
        out[key] = arr[:1] if node is not None and node.shape and node.shape[0] is None else arr
    return out


# -- the views registry -----------------------------------------------------------------------

VIEWS: dict = {}


def register_view(name: str, fn=None, *, one_example: bool = False):
    """Add a view: ``fn(request: Request) -> list`` of items (str prose and `Step`s).

    Contract: the view reads the chain rule from ``request.record`` (the autodiff's
    `GradRecord`; do not differentiate anything yourself) and every number from
    ``request.values`` (a `Values`, None when the derivation is symbolic only: then show
    symbols only). Use ``Step.kind`` to say what a step is and put each printed number
    into ``Step.checks`` as ``(claim, value)`` where claim is ('adjoint', node, index) —
    ∂loss/∂node[index] —, ('forward', node, index), ('gradient', node, index),
    ('update', node, index) or ('local', description); the tests compare the first four
    with the autodiff's values. ``one_example=True`` makes derive() slice batched feeds
    to their first row before the view runs. Usable as a decorator.
    """
    def add(f):
        VIEWS[name] = f
        f.one_example = one_example
        return f
    return add(fn) if fn is not None else add


def derive(loss, wrt, values=None, view: str = "scalar", update: bool = False, lr=None,
           model=None, optimizer=None) -> Derivation:
    """Backprop for ``loss`` with respect to ``wrt``, step by step.

    ``loss``: the loss node, or a `Model` (then its loss, example and defaults are used).
    ``wrt``: an element name ('w5'), a node name ('W2': every element / the matrix), a
    node, a (node, index) pair, or a list of these. ``values``: None or False (symbols
    only), True (the model's ``example`` feeds) or a feeds dict. ``view``: a key of
    `VIEWS` ('scalar', 'matrix', …). ``update``: add the optimizer's step
    w⁺ = w − η·dE/dw (η: ``lr``, else the model's default; the optimizer likewise).
    """
    from ..model import Model

    if isinstance(loss, Model):
        model, loss = loss, loss.loss
    if not isinstance(loss, Node):
        raise TypeError(f"derive() needs a loss node or a Model, got {type(loss).__name__}")
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    graph = Graph([loss])
    feeds = resolve_feeds(graph, values, model)
    targets = resolve_wrt(graph, wrt)
    fn = VIEWS[view]
    req = Request(loss, targets, feeds, model, update, lr, optimizer,
                  one_example=getattr(fn, "one_example", False))
    title = f"Backpropagation: {_derivative_titles(loss, targets)} ({view} view)"
    try:
        items = fn(req)
    except NotImplementedError as e:  # an op with no element formula, a looped scan, …
        raise DerivationError(f"the {view} view cannot be written for this graph: {e}") from None
    return Derivation(title, items)


def _derivative_titles(loss, targets) -> str:
    """``$dE_{total}/dw_{5}$, …`` in the course's notation (inline math: every format
    typesets it, the text format as dE_total/dw_5)."""
    import sympy
    from .printing import latex
    num = latex(sympy.Symbol(loss.label()))
    return ", ".join(f"$d{num}/d{latex(sympy.Symbol(_target_label(t)))}$" for t in targets)


def _target_label(t: Target) -> str:
    from ..graph import element_name
    return t.node.label() if t.index is None else element_name(t.node, t.index)


def resolve_feeds(graph: Graph, values, model):
    """None (symbolic), or feeds checked to cover every input of the loss's graph."""
    if values is None or values is False:
        return None
    if values is True:
        example = getattr(model, "example", None)
        if not example:
            need = ", ".join(f"{describe(n)} {_shape(n)}" for n in graph.inputs)
            where = f"model {model.name!r}" if model is not None else "this loss (no model given)"
            raise FeedError(f"{where} has no example feeds, so values (--values) are missing for "
                            f"the inputs {need}; pass values={{name: array, ...}} in Python")
        values = example
    if not isinstance(values, dict):
        raise TypeError(f"values must be None, True or a dict of feeds, not {type(values).__name__}")
    given = {k.name if isinstance(k, Node) else k for k in values}
    missing = [n for n in graph.inputs if n.name not in given and n not in values]
    if missing:
        raise FeedError("values are missing feeds for " + ", ".join(
            f"input {describe(n)} of shape {_shape(n)}" for n in missing))
    return dict(values)


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
