"""The compiler process's side of a background compile (codegen/worker.py starts it).

Loaded by file path from the parent's own codegen folder (so the child does not import the
lowering, sympy or graphnn: only the cache module, by path too, and Numba). It imports and
warms up Numba while the parent lowers, reads its job, loads the generated module through
the cache (the same verified file and module name as the parent), compiles each
``(function, signature)``, prints ``compiled <function> <seconds>`` per function and exits.
Numba writes its cache files atomically. Before its own functions it may compile the helpers of
the parent's (``helps``: codegen/split_compile.py). It dies with its parent (Linux: PR_SET_PDEATHSIG)
and exits when the pipe from its parent closes.
"""
import importlib.util
import os
import pickle
import sys
import threading
import time


def main(head: dict, stream) -> None:
    _die_with_parent(head["parent"])
    cache = _load("graphnn_compile_child_cache", head["cache"])
    warm_up()
    try:
        job = pickle.load(stream)
    except EOFError:   # the parent needed no compile (or is gone)
        os._exit(0)
    threading.Thread(target=_exit_when_parent_closes, args=(stream,), daemon=True).start()
    from numba.core.errors import NumbaError

    module = cache.load_generated_module(job["source"], job["key"])
    if job.get("helps"):
        _help(module, job["helps"], cache)
    for fn, sig in job["signatures"]:
        print(f"compiling {fn}", flush=True)   # the parent waits for a child at its own functions
        start = time.perf_counter()
        try:
            getattr(module, fn).compile(sig)
        except NumbaError as e:
            from codegen.backend import explain_numba_error   # the whole codegen: only now
            print(explain_numba_error(e, fn, job["source"], module), file=sys.stderr, flush=True)
            os._exit(1)
        print(f"compiled {fn} {time.perf_counter() - start:.3f}", flush=True)
    sys.stderr.flush()
    os._exit(0)   # Numba has written its cache files; nothing else to tear down


def _help(module, helps, cache) -> None:
    """Compile the helpers of the functions ``helps`` that the parent compiles itself, from the
    last one backwards, until one is in the cache (codegen/split_compile.py). Prints ``helped
    <count> <seconds> <functions>``; a failure here only means less help (the parent compiles
    the rest)."""
    start, done, names = time.perf_counter(), 0, ",".join(fn for fn, _ in helps)
    try:
        from codegen.split_compile import compile_from_the_end, helper_calls

        for fn, sig in helps:
            done += compile_from_the_end(helper_calls(getattr(module, fn), sig), cache.load_from_cache)
    except Exception as e:  # noqa: BLE001 — whatever it is, the parent meets it and says so
        print(f"helped {done} {time.perf_counter() - start:.3f} {names} (stopped: {type(e).__name__})", flush=True)
        return
    print(f"helped {done} {time.perf_counter() - start:.3f} {names}", flush=True)


def warm_up() -> None:
    """Numba's one-time start-up (its typing and target registries, SciPy's BLAS), which the
    first compile or cache load of a process pays, done now by compiling a one-liner."""
    import numba

    numba.njit(cache=False)(_one_liner)(1.0)


def _one_liner(x):
    return x + 1.0


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:   # the parent died before the line above
        os._exit(3)


def _exit_when_parent_closes(stream) -> None:
    try:
        while stream.read(4096):
            pass
    finally:
        os._exit(3)
