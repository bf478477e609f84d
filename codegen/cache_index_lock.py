"""Numba's cache index of each function read and written under a file lock.

`lock_index` is applied by codegen/linking.py's `njit` to every function it decorates: the
generated modules' and the stored kernels' (compiled once per install); its docstring says
why. The lock is advisory (``flock``) and per function: ``<index>.lock`` beside Numba's
``.nbi`` file, opened without following a link.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

__all__ = ["lock_index"]


def lock_index(cache_file) -> None:
    """Each read and write of a function's Numba cache index under a lock (``<index>.lock``),
    shared by the processes compiling one module at once (codegen/split_compile.py, a compiler
    process beside this one).

    Numba saves an entry by reading the index, adding the entry (naming its data file after
    the first free number) and writing the index back. Two processes saving two signatures of
    one function at once both read the same index: the second write drops the first entry,
    and both data files get the same name — an index entry can then name the other
    signature's code. Under the lock (exclusive to save or flush, shared to load) the second
    save reads the first one's index."""
    if cache_file is None or not hasattr(cache_file, "_index_path") or getattr(cache_file, "_graphnn_locked", False):
        return   # (twice would deadlock: two descriptors of one file exclude each other)
    path = cache_file._index_path + ".lock"
    for method, exclusive in (("save", True), ("flush", True), ("load", False)):
        unlocked = getattr(cache_file, method)

        def locked(*args, _unlocked=unlocked, _exclusive=exclusive, **kw):
            with _index_lock(path, _exclusive):
                return _unlocked(*args, **kw)

        setattr(cache_file, method, locked)
    cache_file._graphnn_locked = True


@contextmanager
def _index_lock(path: str, exclusive: bool):
    """An advisory lock on ``path`` (created 0600, never followed if a link), held while the
    block runs; where there is none to take (no ``fcntl``, a read-only folder) the block runs
    unlocked, as Numba's own cache does."""
    try:
        import fcntl
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)   # closing the descriptor releases the lock
