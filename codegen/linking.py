"""Our compiled functions call each other by declaration: a caller's code holds no copy of
its callees'.

Numba links a callee's whole LLVM module into every caller and optimises and compiles it to
machine code again there (``CPUCodeLibrary.finalize``), so that it may be inlined. For
generated code that calls tens of shared helpers, this is most of the cold compile: the
LSTM's ``evaluate`` compiled its cells a second time, ``train_epoch`` a third; the
transformer's ``train_epoch`` module held 33 helpers beside itself (12 000 of its 18 800
lines of optimised IR). Here a call from any compiled function to one of ours — a function
on arrays of a module that decorates with this module's `njit`: the generated modules, the
stored kernels — is left a declaration, which the JIT resolves against the callee's own,
already compiled code. Still linked in: a callee short enough that LLVM would inline it
(`SMALL_LINES`), a function of scalars, a generator (its caller calls a ``next`` too) and any
function a later process could not find by its module's name for it (a nested function).

A caller compiled this way needs its callees' code in the process before its own loads
from Numba's cache. So its cache entry also lists them (symbol, module, name, argument
types): loading it first loads each (from its own cache entry, or compiles it) and binds
the recorded symbol to that code, which also covers a callee cached by another process
under another name (Numba's symbols carry a per-process counter). The entry's layout is
one an unpatched Numba refuses with an error, never one it half-loads. Inside
`loading_only` (codegen/cache.py's ``load_from_cache``) a callee in no cache makes the load
a miss instead of a compile.

`install` patches Numba's CPU code library once per process: `njit` does it before it
decorates, so it has happened before any of our functions compiles or loads. Functions of
other modules (a user's own ``@njit`` code, Numba's internals) keep Numba's linking.
"""
from __future__ import annotations

import contextvars
import importlib
import sys
import threading
import weakref
from contextlib import contextmanager

from numba.core import types

from . import liveness

__all__ = ["install", "njit", "loading_only", "CalleeNotCached"]

#: a callee under this many lines of optimised LLVM IR is linked in whole (`_small`): about
#: LLVM's inlining threshold (225 instructions' cost), with the lines of labels and declarations
SMALL_LINES = 300

#: Numba's own cache reader, kept by `install` (tests/test_linking.py reads an entry with it)
NUMBA_UNSERIALIZE = None
_installed = False
_lock = threading.Lock()
_described: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # library → its fndesc
_kept: set = set()   # what a bound symbol points into (Numba frees no JIT code today; if it did)
_loading_only = contextvars.ContextVar("graphnn_loading_only", default=False)


class CalleeNotCached(Exception):
    """Raised instead of compiling a cached caller's callee, inside `loading_only`."""


@contextmanager
def loading_only():
    """Within it, a cached caller whose callee is in no cache fails with `CalleeNotCached`
    instead of compiling the callee (codegen/cache.py's ``load_from_cache`` never compiles)."""
    token = _loading_only.set(True)
    try:
        yield
    finally:
        _loading_only.reset(token)


def _declared(fndesc, library) -> bool:
    """Whether a call to this function is left a declaration: it takes an array, and its module
    decorates with `njit` below (the generated and stored kernel modules). A function of scalars
    (``exp_f64``, ``tanh_f64``) runs per element inside loops: it must be inlined (declared, the
    transformer's epoch took 1.7 s, not 1.0)."""
    module = sys.modules.get(fndesc.modname) if fndesc is not None else None
    return (getattr(module, "njit", None) is njit
            and any(isinstance(t, types.Array) for t in fndesc.argtypes)
            and not isinstance(fndesc.restype, types.Generator)   # its caller also calls a `next`
            and _found(module, fndesc, library))


def _found(module, fndesc, library) -> bool:
    """Whether a later process finds this code as `_callee` does (the module's attribute
    ``qualname``, that overload): not a nested function, a method, a parfor kernel."""
    overloads = getattr(getattr(module, fndesc.qualname, None), "overloads", None)
    cres = overloads.get(tuple(fndesc.argtypes)) if isinstance(overloads, dict) else None
    return cres is not None and cres.library is library


def _small(library, fndesc) -> bool:
    """Whether the callee's optimised code is short enough that LLVM would inline it: such a
    callee is linked in as Numba does: compiling it again costs little, and a call per time
    step to a small cell is dear (declared, rnn's epoch took 0.56 ms, not 0.49)."""
    fn = library._get_module_for_linking().get_function(fndesc.mangled_name)
    return str(fn).count("\n") < SMALL_LINES


def install() -> None:
    """Patch Numba's CPU code library (idempotent; thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        from numba.core import codegen, cpu

        library = codegen.CPUCodeLibrary
        _patch_context(cpu.CPUContext)
        _patch_library(library)
        _installed = True


def _patch_context(context_class) -> None:
    insert = context_class.insert_user_function

    def insert_user_function(self, func, fndesc, libs=()):
        for lib in libs:   # what each compiled function's library holds: its name and types
            _described[lib] = fndesc
        return insert(self, func, fndesc, libs)

    context_class.insert_user_function = insert_user_function


def _patch_library(library_class) -> None:
    add_linking_library = library_class.add_linking_library
    serialize = library_class.serialize_using_object_code
    unserialize = library_class._unserialize.__func__
    global NUMBA_UNSERIALIZE
    NUMBA_UNSERIALIZE = unserialize

    def add_linking_library_(self, library):
        fndesc = _described.get(library)
        deps = self.__dict__.setdefault("_graphnn_declared", {})
        if not _declared(fndesc, library) or _small(library, fndesc):
            # linked in whole, as Numba does: what the callee declares, the caller now declares
            deps.update(library.__dict__.get("_graphnn_declared", {}))
            return add_linking_library(self, library)
        library._ensure_finalized()   # its code in the JIT before the caller's is resolved
        deps[fndesc.mangled_name] = (fndesc.modname, fndesc.qualname, tuple(fndesc.argtypes))
        return None

    def serialize_using_object_code(self):
        name, kind, data = serialize(self)
        deps = self.__dict__.get("_graphnn_declared")
        if deps:
            data = (*data, sorted(deps.items()))   # (object, bitcode, callees): see the docstring
        return name, kind, data

    @classmethod
    def _unserialize_(cls, codegen_, state):
        name, kind, data = state
        if kind == "object" and len(data) == 3:
            object_code, bitcode, deps = data
            _bind(deps)
            self = unserialize(cls, codegen_, (name, kind, (object_code, bitcode)))
            self.__dict__["_graphnn_declared"] = dict(deps)   # a re-save lists them again
            return self
        return unserialize(cls, codegen_, state)

    library_class.add_linking_library = add_linking_library_
    library_class.serialize_using_object_code = serialize_using_object_code
    library_class._unserialize = _unserialize_


def _bind(deps) -> None:
    """Load each recorded callee and bind its recorded symbol to the code loaded now."""
    import llvmlite.binding as ll

    for symbol, (modname, qualname, argtypes) in deps:
        cres = _callee(modname, qualname, argtypes)
        address = cres.library.get_pointer_to_function(cres.fndesc.mangled_name)
        if not address:
            raise RuntimeError(f"graphnn: {modname}.{qualname}{argtypes} has no code for a cached caller")
        _kept.add(cres.library)
        ll.add_symbol(symbol, address)


def _callee(modname, qualname, argtypes):
    """The compile result of ``modname.qualname`` for ``argtypes`` (from its cache, or compiled).
    A generated module is only looked up where its loader registered it, never imported by
    name: the cache entry names it, and the cache folder is not trusted to say what runs."""
    if modname.startswith("codegen."):
        module = importlib.import_module(modname)
    else:
        module = sys.modules.get(modname)
    dispatcher = getattr(module, qualname, None) if module is not None else None
    if dispatcher is None or not hasattr(dispatcher, "compile"):
        raise RuntimeError(f"graphnn: a cached function calls {modname}.{qualname}, which is not loaded")
    if _loading_only.get():
        from .cache import load_from_cache

        if not load_from_cache(dispatcher, argtypes):
            raise CalleeNotCached(f"{modname}.{qualname}{argtypes}")
    else:
        dispatcher.compile(argtypes)
    return dispatcher.overloads[tuple(argtypes)]


def njit(*args, **kwargs):
    """``numba.njit``, after `install` (and codegen/liveness.py's): the decorator of the
    generated and stored kernel modules. Each function's Numba cache index is read and written
    under a file lock (codegen/cache_index_lock.py)."""
    install()
    liveness.install()
    import numba

    made = numba.njit(*args, **kwargs)
    if len(args) == 1 and callable(args[0]):   # @njit on the function itself
        return _locked(made)
    return lambda fn: _locked(made(fn))   # @njit(**options)


def _locked(dispatcher):
    from .cache_index_lock import lock_index

    lock_index(getattr(getattr(dispatcher, "_cache", None), "_cache_file", None))
    return dispatcher
