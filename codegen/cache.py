"""On-disk cache for generated Numba source.

Numba's ``cache=True`` only works for functions defined in a real file that is
importable under a stable module name.  So generated source is written once to
``<cache_dir>/graphnn_gen_<key16>.py`` (key = hash of the source, the caller's
key parts and the library versions), imported from there, and registered in
``sys.modules`` before its body runs.  A second process then finds Numba's
compiled index (``__pycache__/*.nbi``) and skips compilation.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "GRAPHNN_CACHE_DIR"
PREFIX = "graphnn_gen_"


class CacheDirError(OSError):
    """The cache directory cannot be created or written."""


@dataclass(frozen=True)
class CacheEvent:
    """What one `load_generated_module` call found."""
    key: str                    # full sha256 hex digest
    path: Path                  # the generated .py file
    source_hit: bool            # source already on disk (or module already imported)
    numba_index_present: bool   # Numba's compiled-code index exists for this module


_stats = {"hits": 0, "misses": 0}
_events: list[CacheEvent] = []


def _versions() -> dict:
    try:
        graphnn_version = importlib.metadata.version("graphnn")
    except importlib.metadata.PackageNotFoundError:
        graphnn_version = "dev"
    import numba
    import numpy
    return {"numba": numba.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "graphnn": graphnn_version}


def cache_dir() -> Path:
    """The cache directory: $GRAPHNN_CACHE_DIR, else $XDG_CACHE_HOME/graphnn, else ~/.cache/graphnn."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphnn"


def _writable_cache_dir() -> Path:
    d = cache_dir()
    hint = f"set {ENV_VAR} to a writable directory"
    try:
        d.mkdir(parents=True, exist_ok=True)
        # os.access lies for root and on some network filesystems: really try a write.
        tempfile.TemporaryFile(dir=d).close()
    except OSError as e:
        raise CacheDirError(f"graphnn cache directory {str(d)!r} is not writable "
                            f"({e.strerror or e}); {hint}") from e
    return d


def cache_key(source: str, key_parts: dict) -> str:
    """sha256 over the source, the caller's key parts and the library versions."""
    payload = json.dumps({"source": source, "key": key_parts, "versions": _versions()},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _write_if_missing(path: Path, source: str) -> bool:
    """Write `source` to `path` atomically unless it exists; True if it was written."""
    if path.exists():
        # Never rewrite: Numba's cache is stamped by the source file (a content
        # hash in numba 0.68, mtime + size in older versions).
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        # os.replace is atomic: a concurrent process (another MPI rank) sees either
        # no file or the whole file; if two write, both wrote identical bytes.
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def _numba_index_present(module: types.ModuleType, path: Path) -> bool:
    """True if Numba's compiled-code index exists for any function of the module."""
    if glob.glob(str(path.parent / "__pycache__" / f"{path.stem}.*.nbi")):
        return True
    # NUMBA_CACHE_DIR or an unwritable __pycache__ moves the index elsewhere: ask
    # the dispatchers themselves where theirs is (private attributes, so guarded).
    for obj in vars(module).values():
        cache_file = getattr(getattr(obj, "_cache", None), "_cache_file", None)
        index = getattr(cache_file, "_index_path", None)
        if isinstance(index, str) and os.path.exists(index):
            return True
    return False


def _record(key: str, path: Path, hit: bool, module: types.ModuleType, verbose: bool) -> None:
    event = CacheEvent(key, path, hit, _numba_index_present(module, path))
    _stats["hits" if hit else "misses"] += 1
    _events.append(event)
    if verbose:
        if hit:
            what = "compiled code cached" if event.numba_index_present else "will compile"
            print(f"graphnn cache: hit  {path.stem}… ({what})")
        else:
            print(f"graphnn cache: miss {path.stem}… (writing source to {path.parent})")


def load_generated_module(source: str, key_parts: dict, *, verbose: bool = False) -> types.ModuleType:
    """Import generated `source` from the on-disk cache (writing it first if missing).

    `key_parts` (JSON-serialisable: graph hash, options, dtype...) goes into the key
    with the source and the numba/numpy/python/graphnn versions.  The module is
    named ``graphnn_gen_<key16>``; a module already imported is returned as is.
    """
    key = cache_key(source, key_parts)
    name = PREFIX + key[:16]
    d = _writable_cache_dir()
    path = d / f"{name}.py"

    module = sys.modules.get(name)
    if module is not None:
        _record(key, path, True, module, verbose)
        return module

    hit = not _write_if_missing(path, source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Numba's cache=True locates functions through sys.modules[__name__], so
    # the module must be registered before its body (the @njit decorators) runs.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _record(key, path, hit, module, verbose)
    return module


def cache_info() -> dict:
    """Directory, files on disk and this process's hit/miss counters and events."""
    d = cache_dir()
    sources = sorted(d.glob(f"{PREFIX}*.py")) if d.is_dir() else []
    nbi = list((d / "__pycache__").glob(f"{PREFIX}*.nbi")) if d.is_dir() else []
    size = sum(p.stat().st_size for p in d.rglob(f"{PREFIX}*") if p.is_file()) if d.is_dir() else 0
    return {"dir": str(d), "modules": len(sources), "numba_indexes": len(nbi),
            "bytes": size, "hits": _stats["hits"], "misses": _stats["misses"],
            "events": list(_events)}


def clear_cache() -> int:
    """Delete every generated module and its Numba cache files; return how many files.

    Generated modules are also dropped from ``sys.modules`` so a later load writes
    the source again instead of returning a module whose file is gone.
    """
    for name in [n for n in sys.modules if n.startswith(PREFIX)]:
        del sys.modules[name]
    d = cache_dir()
    if not d.is_dir():
        return 0
    removed = 0
    for pattern in (f"{PREFIX}*", f".{PREFIX}*.tmp", f"__pycache__/{PREFIX}*"):
        for p in d.glob(pattern):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed += 1
    return removed
