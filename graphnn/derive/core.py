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
from ..errors import FeedError, GraphnnError
from ..evaluate import evaluate
from ..graph import Graph, Node
from . import documents as docs
from .printing import DisplayNames, latex, matrix, numbers, printing, product
from .resolve import Target, parameter_listing, resolve_feeds, resolve_wrt, training_step  # noqa: F401 (Target: public here)

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
            return numbers(self.values, self.joiner)
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
        """One align row per form: ``lhs &= form₁`` then ``&= form₂`` … (a form whose
        LaTeX is None — a numeric form equal to the value after it — is left out)."""
        shown = [(f, f.latex(text_mode)) for f in self.forms]
        shown = [(f, tex) for f, tex in shown if tex is not None]
        texs = [tex for _, tex in shown]
        if self.shape is not None and texs:
            texs[-1] += r" \quad [%s]" % self.shape
        first, *rest = texs or [""]
        leads = [f.lead for f, _ in shown[1:]]
        return [f"{self.lhs_latex()} &= {first}"] + [f"&{lead} {f}" for lead, f in zip(leads, rest)]

    def __repr__(self):
        from .textual import latex_text
        first = latex_text(self.rows(True)[0].replace("&", "")).strip()
        more = f" … ({len(self.forms)} forms)" if len(self.forms) > 1 else ""
        return f"<Step {self.kind}: {first}{more}>"

    def _repr_latex_(self):
        return "$$\\begin{aligned}" + " \\\\ ".join(self.rows()) + "\\end{aligned}$$"

    @property
    def equations(self) -> list:
        """The step as sympy equations (forms that have a sympy form)."""
        lhs = self.lhs if not isinstance(self.lhs, str) else sympy.Symbol(self.lhs)
        return [sympy.Eq(lhs, f.sympy, evaluate=False) for f in self.forms if f.sympy is not None]


class Derivation(docs.RichMixin):
    """A rendered derivation: prose and steps, in order. Render with ``to_text()``,
    ``to_latex()`` (align blocks), ``to_latex_document()``, ``to_markdown()``,
    ``to_html()``, ``to_pdf(path)``, or ``render(format)``; in Jupyter it shows itself."""

    FORMATS = ("text", "latex", "latex-document", "markdown", "html", "pdf", "beamer")

    def __init__(self, title: str, items=None, precision: int = 6, display=None):
        self.title = title
        self.items: list = list(items or [])
        self.precision = precision
        self.display = display if display is not None else DisplayNames()

    # -- contents ----------------------------------------------------------------------
    @property
    def steps(self) -> list[Step]:
        return [i for i in self.items if isinstance(i, Step)]

    def __iter__(self):
        return iter(self.steps)

    def __len__(self):
        return len(self.steps)

    def __add__(self, other: "Derivation") -> "Derivation":
        return Derivation.combine(self.title, [self, other])

    @classmethod
    def combine(cls, title: str, derivations) -> "Derivation":
        """One document from several derivations, each under its own title."""
        derivations = list(derivations)
        items, display = [], DisplayNames()
        for d in derivations:
            items += [_Heading(d.title)] + d.items
            display.add(d.display)
        return cls(title, items, max((d.precision for d in derivations), default=6), display)

    # -- output ------------------------------------------------------------------------
    def to_document(self, text_mode: bool = False) -> docs.Document:
        """Prose and math blocks; ``Step`` boundaries are kept (`docs.MathBlock.steps`) so
        slides can give each step a frame of its own."""
        blocks, rows, starts = [], [], []
        with printing(self.precision, self.display):
            for item in self.items:
                if isinstance(item, Step):
                    if item.note:
                        _flush(blocks, rows, starts)
                        blocks.append(docs.Prose(item.note))
                    starts.append(len(rows))
                    rows += item.rows(text_mode)
                else:
                    _flush(blocks, rows, starts)
                    blocks.append(docs.Heading(str(item)) if isinstance(item, _Heading) else docs.Prose(str(item)))
            _flush(blocks, rows, starts)
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

    def to_beamer(self, pause: bool = False) -> str:
        """A 16:9 Beamer deck, one frame per step (`graphnn.derive.beamer`)."""
        from .beamer import to_beamer
        return to_beamer(self.to_document(), pause=pause)

    def to_pdf(self, path, beamer: bool = False, pause: bool = False) -> Path:
        """Compile with pdflatex: an article, or with ``beamer=True`` the slides."""
        source = self.to_beamer(pause) if beamer else self.to_latex_document()
        return docs.compile_pdf(source, path)

    def render(self, fmt: str = "text") -> str:
        """The derivation as a string in ``fmt`` (not 'pdf': use `to_pdf` or `save`)."""
        writers = {"text": self.to_text, "latex": self.to_latex,
                   "latex-document": self.to_latex_document, "markdown": self.to_markdown,
                   "html": self.to_html, "beamer": self.to_beamer}
        if fmt not in writers:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(self.FORMATS)}")
        return writers[fmt]()

    def save(self, path, fmt: str | None = None, pause: bool = False) -> Path:
        """Write to ``path``; the format follows the ending (.txt .tex .md .html .pdf; .tex is
        a full document) unless ``fmt`` names it. ``fmt='beamer'`` writes slides: their LaTeX,
        or compiled for a .pdf path. An ending it cannot tell, or a ``fmt`` that clashes with
        the ending (HTML into x.pdf), is a ValueError (`documents.file_format`)."""
        fmt = docs.file_format(path, fmt)
        if fmt in ("pdf", "beamer-pdf"):
            return self.to_pdf(path, beamer=fmt == "beamer-pdf", pause=pause)
        if fmt == "beamer":
            return docs.write_atomic(path, self.to_beamer(pause))
        return docs.write_atomic(path, self.render(fmt))

    def __str__(self):
        return self.to_text()

    def __repr__(self):
        return f"<Derivation {self.title!r}: {len(self.steps)} steps>"


class _Heading(str):
    """A section title inside a combined derivation (prose that reads as a heading)."""


def _flush(blocks, rows, starts):
    if rows:
        blocks.append(docs.MathBlock(list(rows), steps=list(starts)))
        rows.clear()
    starts.clear()


# -- the values a derivation substitutes ---------------------------------------------------


class Values:
    """Forward values and adjoints (∂loss/∂node) from ONE evaluation of the graph and its
    gradient graph: every number a derivation prints is read or computed from these."""

    def __init__(self, record, feeds, params=None):
        self.record = record
        self.feeds = feeds
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
    precision: int = 6
    display: DisplayNames = field(default_factory=DisplayNames)
    title: str | None = None     # a view may title its derivation itself

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


def first_example(graph: Graph, feeds: dict, row: int = 0) -> dict:
    """The feeds cut to one row, the first unless ``row`` says (lectures derive one example
    at a time); unbatched feeds are kept whole."""
    out = {}
    for key, value in feeds.items():
        node = key if isinstance(key, Node) else next((n for n in graph.inputs if n.name == key), None)
        arr = np.asarray(value)
        out[key] = arr[row:row + 1] if node is not None and node.shape and node.shape[0] is None else arr
    return out


# -- the views registry -----------------------------------------------------------------------

VIEWS: dict = {}


def register_view(name: str, fn=None, *, one_example: bool = False, needs_wrt: bool = True):
    """Add a view: ``fn(request: Request) -> list`` of items (str prose and `Step`s).

    Contract: the view reads the chain rule from ``request.record`` (the autodiff's
    `GradRecord`; do not differentiate anything yourself) and every number from
    ``request.values`` (a `Values`, None when the derivation is symbolic only: then show
    symbols only). Use ``Step.kind`` to say what a step is and put each printed number
    into ``Step.checks`` as ``(claim, value)`` where claim is ('adjoint', node, index) —
    ∂loss/∂node[index] —, ('forward', node, index), ('gradient', node, index),
    ('update', node, index) or ('local', description); the tests compare the first four
    with the autodiff's values. ``one_example=True`` makes derive() slice batched feeds
    to their first row before the view runs; ``needs_wrt=False``: the view may be asked
    without a ``wrt`` (the forward pass). A view may set ``request.title`` and give
    symbols display names (``request.display.add(lookup)``). Usable as a decorator.
    """
    def add(f):
        VIEWS[name] = f
        f.one_example = one_example
        f.needs_wrt = needs_wrt
        return f
    return add(fn) if fn is not None else add


def derive(loss, wrt=None, values=None, view: str = "scalar", update: bool = False, lr=None,
           model=None, optimizer=None, precision: int = 6, example: int = 1) -> Derivation:
    """Backprop for ``loss`` with respect to ``wrt``, step by step.

    ``loss``: the loss node, or a `Model` (then its loss, example and defaults are used).
    ``wrt``: an element name ('w5'), a node name ('W2': every element / the matrix), a
    node, a (node, index) pair, or a list of these (None only for a view that needs none,
    'forward'). ``values``: None or False (symbols only), True (the model's worked
    example, else its first training example: the derivation says which) or a feeds
    dict. ``view``: a key of `VIEWS` ('scalar', 'matrix', 'forward', 'time', …).
    ``update``: add the optimizer's step w⁺ = w − η·∂E/∂w and the loss after it (η:
    ``lr``, else the model's default; the optimizer likewise). ``precision``: significant
    digits of every printed number (exact ones print exactly: 0.4, η = 0.5). ``example``:
    the row of the feeds a one-example view ('scalar', 'forward', 'time') shows, counted
    from 1 (with values=True and no worked example: that training example).
    """
    from ..model import Model

    if isinstance(loss, Model):
        model, loss = loss, loss.loss
    if not isinstance(loss, Node):
        raise TypeError(f"derive() needs a loss node or a Model, got {type(loss).__name__}")
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    if int(precision) < 1:
        raise ValueError(f"precision counts significant digits: at least 1, got {precision}")
    graph = Graph([loss])
    if view in ("scalar", "matrix") and "perceptron" in VIEWS:
        from .perceptron import threshold_unit
        if threshold_unit(graph) is not None:   # no gradient to derive: the perceptron rule instead
            view = "perceptron"
    fn = VIEWS[view]
    one_example = getattr(fn, "one_example", False)
    example = _example_number(example, view, one_example, values)
    feeds, source = resolve_feeds(graph, values, model, example)
    feeds, noise = training_step(graph, feeds)     # backprop is a training step: its noise acts
    rows = _rows(graph, feeds)
    if one_example and feeds is not None:   # the row asked for (the views read row 1)
        feeds = _example_row(graph, feeds, example, rows, values is True and model is not None and not model.example)
    if wrt is None and getattr(fn, "needs_wrt", True):
        raise ValueError(f"the {view} view needs wrt (what to differentiate by); parameters: "
                         + parameter_listing(graph))
    req = Request(loss, _unique_targets(graph, wrt), feeds, model, update, lr, optimizer,
                  one_example=one_example, precision=int(precision))
    with printing(req.precision, req.display):
        try:
            items = fn(req)
        except NotImplementedError as e:  # an op with no element formula, a looped scan, …
            raise DerivationError(f"the {view} view cannot be written for this graph: {e}") from None
        # after the view: it may narrow a target to the element it derives (the time view)
        title = f"Backpropagation: {_derivative_titles(loss, req.targets, graph)} ({view} view)"
    if one_example and rows > 1:    # every one-example view says so, not the scalar view alone
        which = "the first example" if example == 1 else f"example {example}"
        items = [f"Values are those of {which} of the feeds (example {example} of {rows})."] + list(items)
    if noise:
        items = [noise] + list(items)
    if source:
        items = [f"Numbers: {source}."] + list(items)
    return Derivation(req.title or title, items, req.precision, req.display)


def _example_number(example, view: str, one_example: bool, values) -> int:
    """``example`` checked: a whole number ≥ 1, and other than 1 only where a view shows one example."""
    if isinstance(example, bool) or not isinstance(example, (int, np.integer)) or example < 1:
        raise ValueError(f"example counts rows from 1: a whole number ≥ 1, got {example!r}")
    if example != 1 and not one_example:
        shown = ", ".join(sorted(n for n, f in VIEWS.items() if getattr(f, "one_example", False)))
        raise ValueError(f"the {view} view shows the whole batch, so example={example} picks nothing; "
                         f"one example is shown by the {shown} views")
    if example != 1 and (values is None or values is False):
        raise ValueError(f"example={example} picks a row of the values, and this derivation has none "
                         "(symbols only): pass values=True or feeds (--values or --feed)")
    return int(example)


def _unique_targets(graph: Graph, wrt) -> list:
    """The targets ``wrt`` names, each derivative once in the order first asked (--wrt w5,w5;
    W2 and w5 of W2 twice)."""
    unique: list = []
    for t in resolve_wrt(graph, wrt) if wrt is not None else []:
        if not any(t.node is u.node and t.index == u.index for u in unique):
            unique.append(t)
    return unique


def _example_row(graph: Graph, feeds: dict, example: int, rows: int, picked: bool) -> dict:
    """Row ``example`` (from 1) of the feeds, or the one error that names the range; ``picked``:
    resolve_feeds took that training example already (values=True, no worked example)."""
    if picked:
        return feeds
    if example > rows:
        valid = "1" if rows == 1 else f"1 … {rows}"
        raise FeedError(f"--example (example=) {example} is out of range: the feeds have {rows} "
                        f"example{'s' if rows != 1 else ''}, counted from 1 ({valid})")
    return first_example(graph, feeds, example - 1)


def _rows(graph: Graph, feeds: dict | None) -> int:
    """How many examples the feeds of ``graph``'s batched inputs hold (1 without feeds)."""
    rows = 1
    for n in graph.inputs:
        value = (feeds or {}).get(n.name, (feeds or {}).get(n))
        if value is not None and n.shape and n.shape[0] is None and np.ndim(value) == len(n.shape):
            rows = max(rows, int(np.shape(value)[0]))
    return rows


def _derivative_titles(loss, targets, graph=None) -> str:
    r"""``$\partial E_{total}/\partial w_{5}$, …`` in the course's notation (inline math: every
    format typesets it, the text format as ∂E_total/∂w_5)."""
    from ..names import Names
    names = Names(graph if graph is not None else Graph([loss]))
    num = names.tex(loss)
    parts = [rf"$\partial {num}/\partial {names.tex(t.node) if t.index is None else names.element(t.node, t.index)}$"
             for t in targets]
    if len(parts) > 3:                  # a title, not a list: the first two and the last
        parts = parts[:2] + [r"$\ldots$"] + parts[-1:]
    return ", ".join(parts)

