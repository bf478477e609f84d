"""Built-in models: the course's nets, each a function that returns a `Model`.

``graphnn models`` lists them; every other command takes their names. Modules in this
package register their builders with `register`.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import UnknownNameError

_BUILDERS: dict = {}


def register(name: str, summary: str):
    """Decorator: make a model builder available by ``name`` (CLI and `get_model`)."""
    def wrap(fn):
        fn.model_name, fn.summary = name, summary
        _BUILDERS[name] = fn
        return fn
    return wrap


def _load_all():
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available() -> dict:
    """name → builder, in registration order."""
    _load_all()
    return dict(_BUILDERS)


def get_model(name: str, **kw):
    builders = available()
    if name not in builders:
        raise UnknownNameError(f"unknown model {name!r}; built-in models: {', '.join(builders)}")
    return builders[name](**kw)


def load_model_file(path: str, **kw):
    """A user's Python file that defines ``build()`` (or ``model``) returning a Model."""
    import runpy
    from pathlib import Path

    from ..model import Model

    if not Path(path).is_file():
        raise FileNotFoundError(f"model file {path!r} does not exist")
    ns = runpy.run_path(path)
    obj = ns["build"](**kw) if "build" in ns else ns.get("model")
    if not isinstance(obj, Model):
        raise ValueError(f"{path} must define build() returning a graphnn Model, or a `model` variable")
    return obj


def resolve(name_or_path: str, **kw):
    """A built-in model by name, or a model file by path (anything ending in .py)."""
    if name_or_path.endswith(".py"):
        return load_model_file(name_or_path, **kw)
    return get_model(name_or_path, **kw)
