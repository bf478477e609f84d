"""Derivations: backprop rendered step by step, read from the autodiff record.

``derive(loss_or_model, wrt, values=..., view='scalar'|'matrix'|…)`` → `Derivation`.
Views live in `VIEWS`; every module of this package is imported here, so a module
that calls `register_view` (the scalar and matrix views, a recurrence module's 'time'
view) is available as soon as ``graphnn.derive`` is. Output formats: `documents`.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from ..callable_module import make_callable

from .core import VIEWS, Derivation, DerivationError, Form, Request, Step, Target, Values, derive, register_view

for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name not in ("core", "documents", "printing"):
        _importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["derive", "Derivation", "DerivationError", "Step", "Form", "Request", "Target", "Values", "VIEWS",
           "register_view"]

make_callable(__name__, derive)   # graphnn.derive(...) is this package's derive()
