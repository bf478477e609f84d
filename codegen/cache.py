"""On-disk cache for generated Numba source, which no one else can plant code in.

Numba's ``cache=True`` only works for functions defined in a real file that is
importable under a stable module name.  So generated source is written once to
``<cache_dir>/graphnn_gen_<key16>.py`` (key = hash of the source, the caller's
key parts and the library versions), and the module is registered in ``sys.modules``
before its body runs.  A second process then finds Numba's compiled index
(``__pycache__/*.nbi``) and skips compilation.

What the cache folder holds is code that will run, and Numba's ``.nbi``/``.nbc`` files
are pickles, so nothing is trusted that another user could have written:

- the folder (and its ``__pycache__``) must be owned by the user and not writable by
  group or others; otherwise a warning says why and the private default folder is used
  instead (or, if that is unsafe too, the code is compiled in memory);
- a generated source file is opened without following symlinks, must be a regular file
  the user owns, and must hold exactly the source being loaded (its content hash); the
  module is executed from that verified text, never re-read from disk;
- a corrupted or foreign entry (source, or a Numba cache file that fails to load) is
  discarded and rebuilt, with a one-line notice;
- a folder that cannot be written (read-only, disk full) means the module is compiled in
  memory, without Numba's cache, with a one-line notice — never an error.
"""
from __future__ import annotations

import gc
import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import stat
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from graphnn.files import write_text

ENV_VAR = "GRAPHNN_CACHE_DIR"
PREFIX = "graphnn_gen_"
#: LLVM's optimisation level for generated code (Numba's default is 3). At O2 LLVM unrolls
#: less (full-unroll threshold 150, not 300) and unswitches no non-trivial loop: cold compile
#: −4 % over the built-in models (contrastive 8.8 → 6.2 s, rnn 3.55 → 3.2 s), epochs the same
#: or better (docs/codegen.md). An explicit NUMBA_OPT in the environment wins.
GENERATED_OPT_LEVEL = 2


class CacheDirError(OSError):
    """The cache directory cannot be created or written."""


@dataclass(frozen=True)
class CacheEvent:
    """What one `load_generated_module` call found."""
    key: str                    # full sha256 hex digest
    path: Path                  # the generated .py file (None: compiled in memory)
    source_hit: bool            # source already on disk (or module already imported)
    numba_index_present: bool   # Numba's compiled-code index exists for this module
    in_memory: bool = False     # no usable cache folder: compiled without Numba's cache


_stats = {"hits": 0, "misses": 0}
_events: list[CacheEvent] = []
_notices: list[str] = []


def notice(message: str) -> None:
    """One line on stderr (each distinct message once per process); kept in ``cache_info()``."""
    if message not in _notices:
        _notices.append(message)
        print(f"graphnn cache: {message}", file=sys.stderr, flush=True)


def library_versions() -> dict:
    try:
        graphnn_version = importlib.metadata.version("graphnn")
    except importlib.metadata.PackageNotFoundError:
        graphnn_version = "dev"
    import numba
    import numpy
    return {"numba": numba.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "graphnn": graphnn_version}


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/graphnn, else ~/.cache/graphnn: the user's private folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphnn"


def cache_dir() -> Path:
    """The cache directory: $GRAPHNN_CACHE_DIR, else $XDG_CACHE_HOME/graphnn, else ~/.cache/graphnn."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else default_cache_dir()


# -- the folder ---------------------------------------------------------------------------------

def unsafe_reason(folder) -> str | None:
    """Why code in ``folder`` could have been written by someone else (None: it could not)."""
    if not hasattr(os, "geteuid"):
        return None   # no POSIX owners (Windows): nothing to check
    st = os.stat(folder)
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != os.geteuid():
        return f"is owned by user id {st.st_uid}, not by you ({os.geteuid()})"
    if st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002)) if st.st_mode & bit)
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_folder(folder: Path) -> str | None:
    """Create ``folder`` and its ``__pycache__`` (mode 700) if missing; why it is unusable, or None."""
    try:
        for d in (folder, folder / "__pycache__"):
            if not d.exists():
                d.mkdir(parents=True, mode=0o700)
                os.chmod(d, 0o700)   # whatever the umask
            if not d.is_dir():   # a file of that name: nothing to do with other users
                return f"{d} is not a folder"
            reason = unsafe_reason(d)
            if reason:
                return f"{d} {reason}; another user could plant code there"
        tempfile.TemporaryFile(dir=folder).close()   # os.access lies for root and on NFS: try
    except OSError as e:
        return f"{folder} cannot be written ({e.strerror or e})"
    return None


def usable_cache_dir() -> Path | None:
    """The folder to cache in, checked; None: compile in memory (a notice says why)."""
    folder = cache_dir()
    reason = _private_folder(folder)
    if reason is None:
        reason = _numba_folder_reason()
        if reason is None:
            return folder
    fallback = default_cache_dir()
    if os.environ.get(ENV_VAR) and fallback != folder and _private_folder(fallback) is None \
            and _numba_folder_reason() is None and "cannot be written" not in reason:
        notice(f"not using {reason} (set {ENV_VAR} to a folder only you can write); using {fallback}")
        return fallback
    notice(f"{reason}: compiling in memory (set {ENV_VAR} to a folder only you can write to cache)")
    return None


def _numba_folder_reason() -> str | None:
    """NUMBA_CACHE_DIR moves Numba's pickles: that folder must be private too."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if not env or not os.path.isdir(env):
        return None
    reason = unsafe_reason(env)
    return f"NUMBA_CACHE_DIR {env} {reason}; another user could plant code there" if reason else None


def cache_key(source: str, key_parts: dict) -> str:
    """sha256 over the source, the caller's key parts and the library versions."""
    payload = json.dumps({"source": source, "key": key_parts, "versions": library_versions()},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


# -- the generated source -----------------------------------------------------------------------

def read_own_file(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of ours (no symlink followed); None if absent.

    Raises ValueError saying what is wrong with an entry that is not ours.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:   # ELOOP: a symlink
        raise ValueError(f"cannot be opened as a plain file ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("is not a regular file")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise ValueError(f"is owned by user id {st.st_uid}")
        return f.read(limit + 1)


def _verified_source(path: Path, source: str) -> bool:
    """True if ``path`` holds exactly ``source``; a wrong entry is discarded (notice), False."""
    data = source.encode("utf-8")
    try:
        found = read_own_file(path, len(data))
        if found is None:
            return False
        if hashlib.sha256(found).digest() == hashlib.sha256(data).digest():
            return True
        why = "does not match its content hash (corrupted or replaced)"
    except ValueError as e:
        why = str(e)
    notice(f"{path.name} {why}: discarded, rebuilding it")
    _discard(path)
    return False


def _discard(path: Path) -> None:
    """Remove a generated module and Numba's files for it."""
    for p in [path] + [Path(f) for f in glob.glob(str(path.parent / "__pycache__" / f"{path.stem}.*"))]:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _write_source(path: Path, source: str) -> bool:
    """Write ``source`` to ``path`` atomically, private to its owner (0600); False (and a
    notice) if the disk refuses. A concurrent process (another MPI rank) sees either no file
    or the whole file; if two write, both wrote identical bytes."""
    try:
        write_text(path, source, mode=0o600)
        return True
    except OSError as e:
        notice(f"cannot write {path.name} to {path.parent} ({e.strerror or e}): compiling in memory")
        return False


def _scrub_numba_files(folder: Path, stem: str) -> None:
    """Numba's pickles for this module that are not regular files of ours are removed unread."""
    for name in glob.glob(str(folder / "__pycache__" / f"{stem}.*")):
        try:
            st = os.lstat(name)
            foreign = not stat.S_ISREG(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid != os.geteuid())
        except FileNotFoundError:
            continue
        if foreign:
            notice(f"{Path(name).name} is not a file of yours: discarded, recompiling")
            os.unlink(name)


# -- loading ------------------------------------------------------------------------------------

def _exec(name: str, source: str, filename: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = filename
    # Numba's cache=True locates functions through sys.modules[__name__], so the module
    # must be registered before its body (the @njit decorators) runs.
    sys.modules[name] = module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)   # the verified text, not a re-read
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _guard_numba_cache(module: types.ModuleType) -> None:
    """A Numba cache file that fails to load is dropped (recompile); one that cannot be saved is skipped."""
    from codegen.linking import CalleeNotCached   # absolute: a compile child loads this file by path

    for obj in list(vars(module).values()):
        cache = getattr(obj, "_cache", None)
        if cache is None or not hasattr(cache, "load_overload") or getattr(cache, "_graphnn_guarded", False):
            continue
        load, save = cache.load_overload, cache.save_overload

        def guarded_load(*args, _load=load, _cache=cache, **kw):
            try:
                return _load(*args, **kw)
            except (_NotCached, CalleeNotCached):   # load_from_cache's refusal: not a corrupted entry
                raise
            except Exception:  # noqa: BLE001  (a corrupted pickle raises anything)
                notice(f"Numba's compiled code of {module.__name__} is corrupted: discarded, recompiling")
                try:
                    _cache.flush()            # an empty index: the bad entries are forgotten
                except Exception:  # noqa: BLE001
                    pass
                return None

        def guarded_save(*args, _save=save, **kw):
            try:
                return _save(*args, **kw)
            except OSError as e:
                notice(f"cannot save compiled code ({e.strerror or e}): it stays in memory for this run")

        cache.load_overload, cache.save_overload = guarded_load, guarded_save
        cache._graphnn_guarded = True



def _compile_settings(module: types.ModuleType) -> None:
    """Each of the module's own Numba functions compiles at `GENERATED_OPT_LEVEL` (unless
    ``NUMBA_OPT`` is set) with Python's cyclic garbage collector paused (their callees,
    compiled inside that compile, too), however the compile starts: an explicit
    ``.compile``, a first call, a compiler process."""
    level = None if "NUMBA_OPT" in os.environ else GENERATED_OPT_LEVEL
    for obj in list(vars(module).values()):
        compiler = getattr(obj, "_compiler", None)
        if compiler is not None and getattr(getattr(obj, "py_func", None), "__module__", None) == module.__name__ \
                and not isinstance(compiler, _GeneratedCompile):
            obj._compiler = _GeneratedCompile(compiler, level)


class _GeneratedCompile:
    """A Numba function compiler run at LLVM level ``opt_level`` (None: Numba's own) with the
    cyclic garbage collector off.

    Numba reads its LLVM level from the global ``config.OPT`` each time it builds a pass
    pipeline, so the level is set for this compile only, under Numba's compiler lock (no
    other compile sees it). A compile makes hundreds of thousands of objects (Numba's IR,
    llvmlite's): the collector ran 500–700 times in the CNN's and the transformer's
    ``train_epoch``, scanning Numba's own long-lived objects at each full pass, which took
    10–15 % of those compiles (0.6 of 5.6 s, 1.0 of 7.7 s). The garbage a compile leaves in
    cycles waits for the next collection after it (the transformer's peak memory +40 MB)."""

    def __init__(self, compiler, opt_level):
        self.compiler = compiler
        self.opt_level = opt_level

    def compile(self, args, return_type):
        from numba.core import config
        from numba.core.compiler_lock import global_compiler_lock

        with global_compiler_lock:
            saved, collecting = config.OPT, gc.isenabled()
            if self.opt_level is not None:
                config.OPT = config._OptLevel(self.opt_level)
            gc.disable()   # a callee's compile, inside, finds it off and leaves it so
            try:
                return self.compiler.compile(args, return_type)
            finally:
                config.OPT = saved
                if collecting:
                    gc.enable()

    def __getattr__(self, name):   # the rest of Numba's compiler interface, unchanged
        return getattr(self.compiler, name)


class _NotCached(Exception):
    """Raised instead of compiling: the signature was not in Numba's cache."""


class _RefuseToCompile:
    def compile(self, args, return_type):
        raise _NotCached


def load_from_cache(dispatcher, sig) -> bool:
    """Give ``dispatcher`` its compiled code for ``sig`` from memory or Numba's disk cache,
    never compiling; False if it is in neither (a background compile fills the cache).

    ``Dispatcher.compile`` looks in memory, then on disk, and only then compiles: the
    compiler is stood in for by one that refuses (private attribute, so checked).
    """
    from codegen.linking import CalleeNotCached, loading_only   # (this file may be loaded by path)

    compiler = getattr(dispatcher, "_compiler", None)
    if compiler is None or not hasattr(dispatcher, "compile"):
        return False
    dispatcher._compiler = _RefuseToCompile()
    try:
        with loading_only():   # nor its callees (codegen/linking.py)
            dispatcher.compile(sig)
        return True
    except (_NotCached, CalleeNotCached):
        return False
    finally:
        dispatcher._compiler = compiler


def numba_index_present(module: types.ModuleType, function: str) -> bool:
    """Whether Numba's cache has an index for ``function`` of a generated module (any
    signature), found without loading it; False for a module compiled in memory."""
    path = getattr(module, "_graphnn_path", None)
    if path is None:
        return False
    if glob.glob(str(path.parent / "__pycache__" / f"{path.stem}.{function}-*.nbi")):
        return True
    index = getattr(getattr(getattr(getattr(module, function, None), "_cache", None), "_cache_file", None),
                    "_index_path", None)   # NUMBA_CACHE_DIR moves it: ask the dispatcher (guarded)
    return isinstance(index, str) and os.path.exists(index)


def _numba_index_present(module: types.ModuleType, path: Path | None) -> bool:
    """True if Numba's compiled-code index exists for any function of the module."""
    if path is None:
        return False
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


def _record(key: str, path, hit: bool, module: types.ModuleType, verbose: bool) -> None:
    event = CacheEvent(key, path, hit, _numba_index_present(module, path), in_memory=path is None)
    _stats["hits" if hit else "misses"] += 1
    _events.append(event)
    if verbose:
        if path is None:
            print(f"graphnn cache: none  {module.__name__}… (compiled in memory)")
        elif hit:
            what = "compiled code cached" if event.numba_index_present else "will compile"
            print(f"graphnn cache: hit  {path.stem}… ({what})")
        else:
            print(f"graphnn cache: miss {path.stem}… (writing source to {path.parent})")


def load_generated_module(source: str, key_parts: dict, *, verbose: bool = False) -> types.ModuleType:
    """Import generated `source` through the on-disk cache (see the module docstring).

    `key_parts` (JSON-serialisable: graph hash, options, dtype...) goes into the key
    with the source and the numba/numpy/python/graphnn versions.  The module is
    named ``graphnn_gen_<key16>``; a module already imported is returned as is.
    """
    key = cache_key(source, key_parts)
    name = PREFIX + key[:16]
    folder = usable_cache_dir()
    module = sys.modules.get(name)
    loaded_from = getattr(module, "_graphnn_path", None)
    # imported already, from this folder (after a change of GRAPHNN_CACHE_DIR in this process the
    # module goes into the new folder: a plan there names its module by file name)
    if module is not None and (loaded_from.parent if loaded_from is not None else None) == folder:
        _record(key, loaded_from, True, module, verbose)
        return module
    path = folder / f"{name}.py" if folder is not None else None
    hit = False
    if path is not None:
        hit = _verified_source(path, source)
        if not hit and not _write_source(path, source):
            path = None
    if path is None:   # no usable folder: Numba cannot cache a function without a file
        module = _exec(name, source.replace("cache=True", "cache=False"), f"<graphnn in-memory {name}>")
    else:
        _scrub_numba_files(path.parent, name)
        module = _exec(name, source, str(path))
        _guard_numba_cache(module)
    _compile_settings(module)
    module._graphnn_path = path
    _record(key, path, hit, module, verbose)
    return module


def cache_info() -> dict:
    """Directory, files on disk and this process's hit/miss counters, events and notices."""
    d = cache_dir()
    sources = sorted(d.glob(f"{PREFIX}*.py")) if d.is_dir() else []
    nbi = list((d / "__pycache__").glob(f"{PREFIX}*.nbi")) if d.is_dir() else []
    size = sum(p.stat().st_size for p in d.rglob(f"{PREFIX}*") if p.is_file()) if d.is_dir() else 0
    plans = list(d.glob(f"{PREFIX}plan_*.json")) if d.is_dir() else []   # codegen/plan_cache.py
    return {"dir": str(d), "modules": len(sources), "numba_indexes": len(nbi), "plans": len(plans),
            "bytes": size, "hits": _stats["hits"], "misses": _stats["misses"],
            "events": list(_events), "notices": list(_notices)}


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
