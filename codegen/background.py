"""The 'cpu' backend made ready while training runs: what graphnn.training.switching calls on
its background thread (the registry names it ``'codegen.background:prepare'``).

`prepare` builds the `CpuBackend` (lowering, emitting, loading the module through the cache),
finds the exact Numba signatures its calls will have by recording the calls the training
plan makes (nothing runs), loads what Numba's cache already holds and has child processes
compile the rest into the cache (codegen/worker.py), then loads that. Without a usable
cache folder (compiled in memory) or a Python to start, it compiles on this thread.

`compile_into_cache` does the same without training: a module compiled ahead of time.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from graphnn.data import as_feeds

from .cache import load_from_cache, numba_index_present
from .compile_child import warm_up
from .lower import CodegenError
from .worker import Cancelled, CompilerPool, can_spawn


def prepare(model, optimizer, dtype, params, options, plan, cancelled: threading.Event, report=None,
            load_backend=None):
    """A `CpuBackend` whose functions for ``plan`` are compiled (see the module docstring).

    ``plan``: (kind, feeds, batches, evaluates) — kind 'epoch' (``train_epoch(feeds,
    batches)``), 'step' (``train_step(feeds)``) or 'gradients' (``gradients`` +
    ``apply_gradients``); ``evaluates``: ``evaluate`` too (the Trainer's losses and metrics).
    ``load_backend()`` imports the backend class (the registry's loader: a missing Numba is
    named). Raises `Cancelled` once ``cancelled`` is set.
    """
    with CompilerPool(1 if can_spawn() else 0) as pool:   # its start-up overlaps what follows
        backend_class = load_backend() if load_backend is not None else _cpu_backend()
        backend = backend_class(model, optimizer, dtype, params, **options)
        if cancelled.is_set():
            raise Cancelled
        compile_ready(backend, signatures(backend, plan), cancelled, report, pool)
    return backend


def compile_ready(backend, sigs, cancelled, report=None, pool=None, compile_here=False) -> None:
    """Every ``(function, signature)`` of ``sigs`` loaded into ``backend.module``, compiled first
    by child processes (``pool``) where Numba's cache lacks it. ``compile_here``: nothing else
    runs in this process (and nothing cancels), so it compiles the first missing function
    itself (`_compile_beside`)."""
    module = backend.module
    # what Numba's cache holds is loaded; a function with no cache index at all is sent to
    # the compiler processes before this process pays Numba's start-up to look
    absent = [(fn, sig) for fn, sig in sigs if not numba_index_present(module, fn)]
    missing = absent + [(fn, sig) for fn, sig in sigs if (fn, sig) not in absent
                        and not load_from_cache(getattr(module, fn), sig)]
    if not missing:
        return
    cached = getattr(module, "_graphnn_path", None) is not None
    if cached and pool is not None and can_spawn():
        if compile_here and len(missing) > 1:
            timings = _compile_beside(pool, backend, missing[:1], missing[1:], report)
        else:
            timings = pool.run(backend.source, backend.cache_key, missing, cancelled, report=report,
                               meanwhile=warm_up)
        if report and timings:
            report("compiled " + ", ".join(f"{fn} in {t:.1f} s" for fn, t in timings.items()))
        missing = [(fn, sig) for fn, sig in missing if not load_from_cache(getattr(module, fn), sig)]
        if missing and report:
            report("the compiled code could not be read back from the cache: compiling it here")
    _compile(backend, missing, {}, cancelled)   # in memory (no cache folder), or the cache could not keep it


def _compile_beside(pool, backend, here, sent, report) -> dict:
    """Compile ``here`` in this process while the pool's children compile ``sent`` ({function:
    seconds}), the first child helping with ``here``'s helpers first (codegen/split_compile.py):
    no child's start-up on the longest path (``here`` is ``train_epoch``, the largest). A
    child that has not begun its own functions once this process is done is overtaken — this
    process compiles them and the child is stopped — so that a small model, whose
    ``evaluate`` compiles here sooner than a child has started, waits for no child; one at
    work on them is waited for (what it has left takes less than all of it would here)."""
    timings, overtaken = {}, threading.Event()

    def meanwhile():
        _compile(backend, here, timings)
        if pool.helping():
            _compile(backend, sent, timings)
            overtaken.set()   # the pool stops its children

    try:
        return {**pool.run(backend.source, backend.cache_key, sent, overtaken, report=report,
                           meanwhile=meanwhile, helps=here), **timings}
    except Cancelled:
        if not overtaken.is_set():
            raise
        return timings


def _compile(backend, sigs, timings, cancelled=None) -> None:
    """Compile ``sigs`` in this process, noting each one's seconds in ``timings``. A Numba error
    is a `CodegenError` naming the generated function and line, as a compiler process says it."""
    from numba.core.errors import NumbaError

    for fn, sig in sigs:
        if cancelled is not None and cancelled.is_set():
            raise Cancelled
        start = time.perf_counter()
        try:
            getattr(backend.module, fn).compile(sig)
        except NumbaError as e:
            from .backend import explain_numba_error

            raise CodegenError(explain_numba_error(e, fn, backend.source, backend.module)) from None
        timings[fn] = time.perf_counter() - start


def signatures(backend, plan) -> list:
    """[(function name, Numba argument types)] of the compiled calls ``plan`` makes (see
    `prepare`), found by recording the calls (nothing runs)."""
    kind, feeds, batches, evaluates = plan
    with backend.recording() as calls:
        if kind == "epoch":
            backend.train_epoch(feeds, batches)
        elif kind == "step":
            backend.train_step(feeds)
        elif kind == "gradients":
            backend.apply_gradients(backend.gradients(feeds)[1])
        else:
            raise ValueError(f"unknown training plan {kind!r}: 'epoch', 'step' or 'gradients'")
        if evaluates:
            backend.evaluate(_some_rows(feeds))
    import numba

    out = []
    for fn, args in calls:
        sig = tuple(numba.typeof(a) for a in args)
        if (fn, sig) not in out:
            out.append((fn, sig))
    return out


def _cpu_backend():
    from .backend import CpuBackend   # imports Numba
    return CpuBackend


def _some_rows(feeds, rows=2) -> dict:
    """A few rows of the batched feeds, in evaluation mode (no training-mode scalars)."""
    return {k: v[:rows] for k, v in feeds.items() if np.ndim(v) > 0}


def compile_into_cache(model, optimizer, dtype="float64", *, feeds=None, batch_size=None, report=None,
                       verbose=False) -> dict:
    """Compile ``model``'s training module into the cache without training (the functions a
    ``Trainer.fit(epochs=…)`` calls on ``feeds``, default the model's training data), in
    child processes where there are cores for them; returns {'seconds': wall time,
    'functions': [...], 'path': the module's file, 'source': its text}. A later run finds it
    compiled."""
    start = time.perf_counter()
    # nothing else runs: this process compiles train_epoch and children the rest, one per
    # other core; they start now, so that their start-up (importing Numba) overlaps the
    # lowering (a cached module only kills them again)
    with CompilerPool(1 if can_spawn() else 0, reserve=1) as pool:
        backend = _cpu_backend()(model, optimizer, dtype, verbose=verbose)
        feeds = as_feeds(model.inputs, feeds if feeds is not None else model.data.train)
        n = len(next(v for v in feeds.values() if np.ndim(v) > 0))
        size = min(batch_size or n, n)
        batches = [np.arange(i, min(i + size, n)) for i in range(0, n, size)]
        sigs = signatures(backend, ("epoch", feeds, batches, True))
        compile_ready(backend, sigs, threading.Event(), report, pool, compile_here=True)
    return {"seconds": time.perf_counter() - start, "functions": [fn for fn, _ in sigs],
            "path": getattr(backend.module, "__file__", None), "source": backend.source}
