"""Derivations: backprop rendered step by step, read from the autodiff record.

``derive(loss_or_model, wrt, values=..., view='scalar'|'matrix'|…)`` → `Derivation`;
`VIEWS` / `register_view` let other modules add views. Output formats live in
`documents`.
"""
from .core import VIEWS, Derivation, Form, Request, Step, Target, Values, derive, register_view
from . import scalar  # noqa: F401  (registers the 'scalar' view)

__all__ = ["derive", "Derivation", "Step", "Form", "Request", "Target", "Values", "VIEWS",
           "register_view"]
from . import matrix  # noqa: F401,E402  (registers the 'matrix' view)
