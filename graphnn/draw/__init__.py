"""Drawing graphs with Graphviz: ``draw(model_or_graph, view=...)`` returns a ``graphviz.Digraph``.

Views (see `VIEWS`; each module of this package registers its own with `register_view`):
'ops' (every op and variable, grouped by layer, time step or attention block), 'neurons'
(the lecture picture: one unit per neuron, bias units, named weights on the edges),
'backward' (the gradient graph on the forward one's right), 'unrolled' (a recurrence over
its time steps, BPTT paths), 'cell' (an LSTM cell, Goodfellow's block diagram), 'block'
(softmax(QKᵀ/√d_k)V with shapes) and 'maps' (a CNN's filters and feature maps, a matplotlib
figure). ``size='slide'`` fits any of them to 1920×1080 at a readable font (`fit`).

A view is a function ``fn(ctx: DrawContext) -> graphviz.Digraph``. The context carries the
graph, its loss and output, and computes values (``ctx.values``, from ``evaluate``) and
gradients (``ctx.gradients(nodes)``, from ``grad`` + ``evaluate``) only when asked; it also
formats numbers (``ctx.num``, ``ctx.arr``) and gives deterministic node ids (``ctx.node_id``).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from ..callable_module import make_callable
from ..errors import UnknownNameError
from .context import DrawContext, DrawError, example_feeds, make_context
from .fit import MIN_FONT_PX, SLIDE, fit, slide_size
from .render import MissingDotError, require_dot, save

VIEWS: dict[str, Callable] = {}
VIEW_HELP: dict[str, str] = {}
VIEW_FITS: dict[str, list] = {}
#: views that draw no gradients (register_view(grads=False)): draw(grads=True) is refused there
NO_GRADS: set[str] = set()
#: views that show one example of a batch (register_view(example=True)): elsewhere --example K ≠ 1 is refused
ONE_EXAMPLE: set[str] = set()


def register_view(name: str, fn: Callable, help: str = "", fits=None, grads: bool = True,
                  example: bool = False) -> Callable:
    """Make ``draw(..., view=name)`` and ``graphnn draw --view name`` call ``fn(ctx)``.

    ``fits``: levels of detail for ``size=`` (see `graphnn.draw.fit`), each a list of option
    sets (DrawContext fields such as ``max_units``, or view options) from the most detailed
    to the most compact; without it, a sized drawing is the plain one scaled into the box.
    ``grads=False``: the view draws no gradients, so ``draw(grads=True)`` is refused rather
    than silently ignored. ``example=True``: the view shows the batch row ``ctx.example_index``
    (``--example``); other views are refused an ``example`` other than 1, which they would
    ignore.
    """
    VIEWS[name] = fn
    (ONE_EXAMPLE.add if example else ONE_EXAMPLE.discard)(name)
    if not grads:
        NO_GRADS.add(name)
    else:
        NO_GRADS.discard(name)
    VIEW_HELP[name] = help
    VIEW_FITS[name] = list(fits) if fits else [[{}]]
    return fn


def draw(subject, view: str = "ops", values=None, grads: bool = False, *, params=None,
         example: int = 1, precision: int = 3, max_units: int = 10, collapse: bool = False,
         size=None, output=None, **options):
    """Draw a Model, Graph or Node; returns a ``graphviz.Digraph`` (Jupyter displays it).

    ``values``: None (structure only), a dict of feeds, or 'example' (the model's worked
    example). ``grads=True`` adds d(loss)/d(·) from graphnn's autodiff (and implies
    values='example' when no values are given). ``params`` overrides parameter values
    (e.g. trained weights). ``example`` picks the batch row units show, counted from 1
    as every label counts (CLI ``--example``; outside 1 … rows: a `DrawError`);
    ``precision`` is significant digits; layers wider than ``max_units`` collapse into
    an ellipsis group (neurons view); ``collapse`` draws one box per group (ops view).
    ``size``: 'slide' (1920×1080) or (width, height) in pixels — the picture is made to fit
    that box at a readable font (wide layers collapsed, middle time steps elided, …).
    Save with `save(digraph, 'net.svg')` or ``digraph.render``. The 'maps' view returns a
    matplotlib Figure instead (`save` writes it too).
    """
    _load_views()
    if view not in VIEWS:
        raise UnknownNameError(f"unknown view {view!r}; views: {', '.join(sorted(VIEWS))}")
    _check_options(view, grads, precision, max_units, options)
    ctx = make_context(subject, values, grads, params=params, example=example,
                       precision=precision, max_units=max_units, collapse=collapse,
                       size=None if size is None else slide_size(size), options=options)
    if example != 1 and view not in ONE_EXAMPLE:    # after make_context: a range error comes first
        shown = " and ".join(sorted(ONE_EXAMPLE))
        raise DrawError(f"the {view} view shows the values of the whole batch, not one example: drop "
                        f"--example {example} (example={example}); it applies to the {shown} views")
    if output is not None:
        ctx.output = output
    fn = VIEWS[view]
    if ctx.size is None or getattr(fn, "fits_itself", False):
        return fn(ctx)
    return fit(lambda opts: _with_options(ctx, opts, fn), ctx.size, VIEW_FITS[view])


def _check_options(view, grads, precision, max_units, options) -> None:
    """One clear error for an option the drawing would otherwise ignore or bend silently."""
    if "example_index" in options:   # the 0-based keyword of old: it would land in the view options, unread
        raise DrawError(f"example_index= is gone: pass example={options['example_index'] + 1} "
                        "(examples are counted from 1, as the pictures' labels count them)")
    if grads and view in NO_GRADS:
        shown = ", ".join(v for v in sorted(VIEWS) if v not in NO_GRADS)
        raise DrawError(f"the {view} view draws no gradients: drop --grads (grads=True), use --values for its "
                        f"numbers, or draw gradients in the {shown} view")
    if int(precision) < 1:
        raise DrawError(f"--precision (precision=) counts significant digits: at least 1, got {precision}")
    if int(max_units) < 3:   # a collapsed layer shows its first unit, ⋮ and its last
        raise DrawError(f"--max-units (max_units=) must be at least 3 (the first unit, ⋮, the last), got {max_units}")
    for option, flag, only in (("wrt", "--wrt", "unrolled"), ("shown_steps", "--show-steps", "unrolled"),
                               ("step", "--step", "cell")):
        if option in options and view != only:   # it was ignored without a word
            raise DrawError(f"{flag} ({option}=) applies to the {only} view only, not to the {view} view")
    if options.get("shown_steps") is not None and int(options["shown_steps"]) < 2:   # was drawn as 2
        raise DrawError(f"--show-steps (shown_steps=) draws the first and last steps at least: 2 or more, "
                        f"got {options['shown_steps']}")


def _with_options(ctx, options: dict, fn):
    """``fn(ctx)`` with ``options`` set (context fields, else view options), then restored."""
    saved_fields, saved_options = {}, dict(ctx.options)
    for key, value in options.items():
        if hasattr(ctx, key) and not key.startswith("_"):
            saved_fields[key] = getattr(ctx, key)
            setattr(ctx, key, value)
        else:
            ctx.options[key] = value
    try:
        return fn(ctx)
    finally:
        for key, value in saved_fields.items():
            setattr(ctx, key, value)
        ctx.options.clear()
        ctx.options.update(saved_options)


def _load_views():
    """Import every module of this package: view modules register themselves on import
    (so graphnn/draw/unrolled.py, added by the recurrence code, needs no edit here)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")


def available_views() -> dict:
    _load_views()
    return {name: VIEW_HELP.get(name, "") for name in sorted(VIEWS)}


__all__ = ["draw", "save", "register_view", "available_views", "VIEWS", "DrawContext", "DrawError",
           "MissingDotError", "require_dot", "example_feeds", "SLIDE", "MIN_FONT_PX", "NO_GRADS"]

make_callable(__name__, draw)   # graphnn.draw(...) is this package's draw()
