"""Files written atomically: the one writer behind checkpoints, figures, derivations, PDFs,
drawings and lecture pages.

`atomic_write(path, write)` calls ``write(binary file)`` on a temporary file beside ``path``
(mkstemp: a name no concurrent writer shares), flushes and fsyncs it, renames it over
``path`` and fsyncs the folder. A reader sees the old file or the new one, never a part; on
any failure (an exception, Ctrl-C) the temporary file is removed and the old file stays. A
symlink at ``path`` is replaced by the file, never followed. The file gets the usual mode
(0666 & ~umask), not mkstemp's 0600. Missing folders are made. A temporary file of the same
target left by a writer that was killed (older than `STALE_AFTER` seconds: no live write
takes that long) is removed by the next write. A path that cannot be written (a file where a
folder should be, a folder as the output, a folder that takes no new files) is a `WriteError`
(an OSError) whose one-line message names the given path and what is wrong.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

STALE_AFTER = 3600.0   # seconds


def atomic_write(path, write, mode: int | None = None) -> Path:
    """Write ``path`` by ``write(binary file)``, atomically (see the module doc); ``mode``:
    the file's permission bits (default 0666 & ~umask; the code cache keeps its files 0600)."""
    given, path = str(path), Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _cannot_write(given, path, e) from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, (0o666 & ~_umask()) if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _cannot_write(given, path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    _remove_stale(path)
    return path


#: what matplotlib writes, by the file's ending
FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def figure_format(path) -> str:
    """The picture format ``path``'s ending names (png, svg, pdf); anything else is a ValueError
    (a PNG written into curves.txt or curves.svg was one, without a word)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise ValueError(f"{path}: a figure is written as .png, .svg or .pdf, by the file's ending "
                         f"({'no ending' if not suffix else suffix + ' is none of them'})")
    return FIGURE_FORMATS[suffix]


def not_a_file(what: str, path) -> OSError:
    """The error for a ``what`` (model file, data file, checkpoint) at ``path`` that is no file:
    a folder is named a folder (it was "does not exist")."""
    if Path(path).is_dir():
        return IsADirectoryError(f"{what} {str(path)!r} is a folder, not a file")
    return FileNotFoundError(f"{what} {str(path)!r} does not exist")


def keep_earlier(path) -> Path | None:
    """Before a *default* output (no file named by the user) replaces ``path``: move the file
    there to the first free ``<stem>.<n><suffix>`` (transformer.npz → transformer.1.npz), one
    atomic rename, and return where it went (None: there was none). A second run must not
    destroy the first one's checkpoint or picture without a word."""
    path = Path(path)
    if not path.exists():
        return None
    n = 1
    while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    os.replace(path, kept)
    return kept


def check_writable(path) -> None:
    """Raise OSError (a message to follow the caller's name for ``path``) unless `atomic_write`
    could write ``path`` now: it is not a folder, and the nearest existing folder above it takes
    a new file (atomic_write makes the missing ones). For work whose result goes to ``path``:
    a bad path fails at once instead of after the work. Nothing is left behind."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write it: {path} is a folder")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot write it: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise type(e)(f"cannot write a file in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


class WriteError(OSError):
    """A path that cannot be written; the message names the path the caller gave and why
    (never the temporary file's name, which the caller never saw)."""

    def __str__(self):   # OSError would print "[Errno …]" and the temporary's name
        return str(self.args[0])


def _cannot_write(given: str, path: Path, error: OSError) -> WriteError:
    """One line for ``error`` (from making the folders, the temporary file or the rename)."""
    if path.is_dir():
        why = "it is a folder"
    else:
        # the nearest existing ancestor: a file there is why no folder could be made
        existing = next((p for p in path.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():
            why = f"{str(existing)!r} is not a folder"
        else:
            where = existing if existing is not None else path.parent
            why = f"no file can be made in {str(where)!r} ({(error.strerror or str(error)).lower()})"
    e = WriteError(f"cannot write {given!r}: {why}")
    e.errno, e.strerror, e.filename = error.errno, error.strerror, given   # callers that test errno keep working
    return e


def _remove_stale(path: Path) -> None:
    """Temporaries of ``path`` that a killed writer left (another user's stay: not ours)."""
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            st = tmp.lstat()
            if now - st.st_mtime > STALE_AFTER and (not hasattr(os, "geteuid") or st.st_uid == os.geteuid()):
                tmp.unlink()


def write_bytes(path, data: bytes, mode: int | None = None) -> Path:
    """``data`` to ``path``, atomically."""
    return atomic_write(path, lambda f: f.write(data), mode)


def write_text(path, text: str, mode: int | None = None) -> Path:
    """``text`` to ``path`` as UTF-8, atomically."""
    return write_bytes(path, text.encode("utf-8"), mode)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
