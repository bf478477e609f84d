"""Keyword arguments checked per component: a typo is an error that names it and lists the
valid keywords of each component that could have taken it (Trainer, fit, the optimizer,
the backend), with the closest match."""
from __future__ import annotations

import difflib
import inspect

from ..errors import GraphnnError


class KeywordError(GraphnnError, TypeError):
    """A keyword argument no component takes."""


def keywords_of(fn, skip=("self",)) -> set:
    """The named keyword arguments ``fn`` takes (a ``**kwargs`` is not counted: see `takes_any`)."""
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip}


def takes_any(fn) -> bool:
    """Whether ``fn`` takes any keyword (``**kwargs``)."""
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def check_keywords(given, components: dict, call: str) -> None:
    """Raise `KeywordError` for keywords in ``given`` that no component takes.

    ``components``: {component description: its valid keyword names}, in the order to list them.
    """
    valid = set().union(*components.values())
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, sorted(valid), n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    listing = "; ".join(f"{what} takes {', '.join(sorted(names)) or 'none'}" for what, names in components.items())
    plural = "s" if len(unknown) > 1 else ""
    raise KeywordError(f"{call} got unknown keyword argument{plural} {', '.join(hints)}; {listing}")
