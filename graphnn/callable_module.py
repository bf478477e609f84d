"""A subpackage that is also its main function: ``graphnn.derive(model, "w5")`` calls the
function, ``from graphnn.derive import Derivation`` imports from the package.

Python sets a package's attribute to a subpackage once that subpackage is imported, so a
function and a subpackage of one name cannot both live in ``graphnn``'s namespace; making
the module object callable lets the name mean both, whichever was imported first.
"""
import sys
import types


class CallableModule(types.ModuleType):
    """A module whose call is its ``__main_function__``."""

    def __call__(self, *args, **kwargs):
        return getattr(self, "__main_function__")(*args, **kwargs)


def make_callable(module_name: str, function) -> None:
    """Make module ``module_name`` callable as ``function`` (call at the end of its __init__)."""
    module = sys.modules[module_name]
    module.__class__ = CallableModule
    module.__main_function__ = function
