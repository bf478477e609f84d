"""Built-in models: the course's nets, each a function that returns a `Model`.

``graphnn models`` lists them; every other command takes their names. Modules in this
package register their builders with `register`, declaring the options a user may set
from the command line (``options={"steps": "unroll over T time steps"}``): each is an
argument of the builder, and ``resolve(name, steps=4)`` checks it against the declaration.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import runpy
import sys
from pathlib import Path

from ..errors import GraphnnError, UnknownNameError
from ..files import not_a_file
from ..model import Model

_BUILDERS: dict = {}


class ModelFileError(GraphnnError):
    """A model file that raised, or that does not define a model."""


def register(name: str, summary: str, *, options: dict | None = None):
    """Decorator: make a model builder available by ``name`` (CLI and `get_model`).

    ``options``: builder argument -> help text, the settings the CLI offers for this model.
    """
    def wrap(fn):
        params = inspect.signature(fn).parameters
        for key in options or {}:
            if key not in params:
                raise TypeError(f"model {name!r} declares option {key!r}, which {fn.__name__}() does not take")
        fn.model_name, fn.summary, fn.options = name, summary, dict(options or {})
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


def options_of(name: str) -> dict:
    """The options built-in model ``name`` declares (option -> help)."""
    return dict(getattr(available().get(name), "options", {}))


def get_model(name: str, **kw):
    builders = available()
    if name not in builders:
        raise UnknownNameError(f"unknown model {name!r}; built-in models: {', '.join(builders)}")
    return builders[name](**kw)


def load_model_file(path: str, **kw):
    """A user's Python file that defines ``build()`` (or ``model``) returning a Model.

    The file runs as ``python FILE`` would run it: its folder is on ``sys.path`` (so it can
    import a module beside it). An exception it raises is a `ModelFileError` naming the file
    and the line.
    """
    if not Path(path).is_file():
        raise not_a_file("model file", path)
    folder = str(Path(path).resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        ns = _run_user_code(path, runpy.run_path, path)
        if kw:
            _check_build_takes(ns.get("build"), kw, path)
        obj = _run_user_code(path, ns["build"], **kw) if "build" in ns else ns.get("model")
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    if not isinstance(obj, Model):
        raise ModelFileError(f"{path} must define build() returning a graphnn Model, or a `model` variable")
    return obj


def _run_user_code(path, fn, *args, **kw):
    """``fn(*args, **kw)``, where any exception is the user's: a `ModelFileError` with its frame."""
    try:
        return fn(*args, **kw)
    except SystemExit as e:   # would end graphnn with the file's exit code and not a word said
        raise ModelFileError(f"your model file {path} called sys.exit({e.code!r}){_where(e, path)} instead of "
                             "defining a model") from e
    except Exception as e:   # the user's code: report it as theirs, with where it happened
        raise ModelFileError(f"your model file {path} raised {type(e).__name__}: {e}{_where(e, path)}") from e


def _where(error, path) -> str:
    """' (at FILE line N)': the deepest frame of the traceback inside the user's file."""
    import traceback

    target = str(Path(path).resolve())
    frames = [f for f in traceback.extract_tb(error.__traceback__) if str(Path(f.filename).resolve()) == target]
    return f" (at {path} line {frames[-1].lineno}: {frames[-1].line})" if frames else ""


def resolve(name_or_path: str, **options):
    """A built-in model by name, or a model file by path (anything ending in .py).

    ``options`` (e.g. ``steps=4``) must be ones the model declares (`register`); for a model
    file, arguments its ``build()`` takes.
    """
    options = {k: v for k, v in options.items() if v is not None}
    for key, value in options.items():
        if isinstance(value, int) and value < 1:
            raise ValueError(f"--{key} must be at least 1, got {value}")
    if name_or_path.endswith(".py"):
        return load_model_file(name_or_path, **options)
    builders = available()
    if name_or_path in builders:
        declared = builders[name_or_path].options
        for key in options:
            if key not in declared:
                takers = [n for n, b in builders.items() if key in b.options]
                raise ValueError(f"model {name_or_path!r} has no option --{key} "
                                 f"(it applies to: {', '.join(takers) or 'no built-in model'})")
    if name_or_path not in builders and Path(name_or_path).is_file():
        raise UnknownNameError(f"{name_or_path!r} is a file but not a model file: a model file's name ends in .py "
                               "(it runs as Python); a built-in model is named by one of "
                               f"{', '.join(builders)}")
    return get_model(name_or_path, **options)


def _check_build_takes(build, options, path):
    if build is None:
        raise ValueError(f"{path} defines no build(), so it takes no option {', '.join('--' + k for k in options)}")
    params = inspect.signature(build).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params and not takes_any]
    if unknown:
        raise ValueError(f"{path}: build() takes no option {', '.join('--' + k for k in unknown)}")
