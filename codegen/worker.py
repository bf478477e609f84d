"""Compiler processes: generated functions compiled into the on-disk cache by child processes.

A `CompilerPool` starts children (``python -I -c BOOT``) that import the compiler at once,
then wait for a job: they load the generated module through the cache (codegen/cache.py: the
same verified file, the same module name), compile each ``(function, Numba signature)`` they
are given and exit; Numba writes its cache atomically, so the parent then loads the compiled
code from disk instead of compiling.

Safety, because a child runs while training goes on:
- nothing runs from a place another user could write: ``-I`` keeps the current folder,
  PYTHONPATH and user site-packages off the child's path, which is set to the parent's own
  ``sys.path`` (what the parent already imports from), sent over a pipe with the job;
- the parent polls and reaps every child (no zombies); `cancelled` (training ended before
  the compile did) kills them; a child also dies with its parent (Linux: PR_SET_PDEATHSIG)
  and exits when the pipe from its parent closes;
- a failing child is an error naming the function and what Numba said (its stderr tail).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time

from . import cache, compile_child
from .lower import CodegenError

#: the child's first statements: its path from the parent, then compile_child.py, loaded from
#: the file the parent has (not through the codegen package: the child needs no lowering)
BOOT = ("import importlib.util, pickle, sys\n"
        "head = pickle.load(sys.stdin.buffer)\n"
        "sys.path[:] = head['path']\n"
        "spec = importlib.util.spec_from_file_location('graphnn_compile_child', head['child'])\n"
        "child = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(child)\n"
        "child.main(head, sys.stdin.buffer)\n")


class Cancelled(Exception):
    """The compile was stopped because training ended first."""


def can_spawn() -> bool:
    """Whether child interpreters can be started here (an embedded Python may have none)."""
    return bool(sys.executable) and os.path.exists(sys.executable)


def worker_count(jobs: int, reserve: int = 1) -> int:
    """Children to start: one per core beyond ``reserve`` (the training process's), at most one
    per job, at least one."""
    free = (os.cpu_count() or 1) - reserve
    return max(1, min(jobs, free))


class CompilerPool:
    """Compiler processes, started early (their start-up, importing Numba, overlaps the
    parent's lowering) and given their jobs once the signatures are known.

    `run` compiles; `close` kills and reaps whatever still runs (always call it: a ``with``
    block does).
    """

    def __init__(self, start: int = 1, reserve: int = 1):
        self.reserve = reserve   # cores left to the parent (it trains meanwhile)
        self.children: list[_Child] = []
        self._busy: list[_Child] = []   # those `run` gave a job
        for _ in range(start):
            self.children.append(_Child())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, source: str, key: dict, signatures: list, cancelled: threading.Event, *,
            report=None, meanwhile=None, helps=(), poll: float = 0.02) -> dict:
        """Compile ``signatures`` ([(function name, Numba signature)]) of the module generated as
        ``source`` (cache key parts ``key``); {function: seconds} on success. ``meanwhile()``
        runs here while the children compile; ``helps``: the [(function, signature)] it
        compiles, whose helpers the first child compiles from the end first
        (codegen/split_compile.py).

        Raises `Cancelled` once ``cancelled`` is set (the children are killed and reaped) and
        `CodegenError` if a child fails.
        """
        n = worker_count(len(signatures), self.reserve)
        if cancelled.is_set():
            raise Cancelled
        while len(self.children) < n:
            self.children.append(_Child())
        busy = self._busy = self.children[:n]
        for i, child in enumerate(busy):
            child.send({"source": source, "key": key, "signatures": signatures[i::n],
                        "helps": list(helps) if i == 0 else []})
        if report:
            names = ", ".join(fn for fn, _ in signatures)
            report(f"compiling {names} in {len(busy)} compiler process{'es' * (len(busy) > 1)} "
                   f"(pid {', '.join(str(c.proc.pid) for c in busy)})")
        if meanwhile is not None:
            meanwhile()
        while any(c.proc.poll() is None for c in busy):
            if cancelled.is_set():
                raise Cancelled
            time.sleep(poll)
        timings = {}
        for child in busy:
            timings.update(child.result())
        return timings

    def working(self) -> bool:
        """Whether a child given a job by `run` is still at it (for ``meanwhile`` to ask)."""
        return any(c.proc.poll() is None for c in self._busy)

    def helping(self) -> bool:
        """Whether a child still at work has not yet begun its own functions: it is starting, or
        compiling the helpers of this process's functions (``helps``) — which this process then
        holds, so it had better compile the child's functions itself than wait."""
        return any(c.proc.poll() is None and not c.on_its_own() for c in self._busy)

    def close(self) -> None:
        for child in self.children:
            child.close()
        self.children = []


_CHILDREN: set = set()


def running() -> list:
    """Process ids of the compiler processes this process has started and not yet reaped."""
    return [c.proc.pid for c in list(_CHILDREN)]


class _Child:
    """One compiler process. Its path comes first on stdin, then its job; stdin stays open
    (EOF tells it the parent is gone or has no job for it)."""

    def __init__(self):
        path = [os.getcwd() if p == "" else p for p in sys.path]
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.functions = []
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", BOOT], stdin=subprocess.PIPE,
                                     stdout=self.out, stderr=self.err, close_fds=True)
        _CHILDREN.add(self)
        self._write({"path": path, "parent": os.getpid(), "child": compile_child.__file__,
                     "cache": cache.__file__})

    def send(self, job: dict) -> None:
        """Give the child its job from a thread: the job holds the module's source, tens of KB,
        more than a pipe buffers, and the child reads it only after its own start-up (Numba's
        import, ~0.5 s) — which this process would otherwise wait out before compiling its share."""
        self.functions = [fn for fn, _ in job["signatures"]]
        threading.Thread(target=self._write, args=(job,), name="graphnn-compile-job", daemon=True).start()

    def on_its_own(self) -> bool:
        """Whether the child has said it is compiling its own functions (``compiling …``). Read at
        offset 0 without moving the file's position, which the child's writes share."""
        try:
            said = os.pread(self.out.fileno(), 1 << 16, 0)
        except (OSError, ValueError):
            return False
        return said.startswith(b"compiling ") or b"\ncompiling " in said

    def _write(self, obj) -> None:
        try:
            pickle.dump(obj, self.proc.stdin)
            self.proc.stdin.flush()
        except (OSError, ValueError):   # it died (result() reports what it said), or was closed
            pass

    def result(self) -> dict:
        code = self.proc.wait()
        out, err = (_read(f) for f in (self.out, self.err))
        if code != 0:
            said = [ln for ln in err.splitlines() if ln.strip()][-6:] or [f"exit code {code}"]
            raise CodegenError(f"codegen: the background compile of {', '.join(self.functions)} failed:\n  "
                               + "\n  ".join(said))
        timings = {}
        for line in out.splitlines():
            if line.startswith("compiled "):
                _, fn, seconds = line.split()
                timings[fn] = float(seconds)
            elif line.startswith("helped "):   # "helped <count> <seconds> <functions>" (split_compile.py)
                _, count, seconds, names = line.split()[:4]
                timings[f"{count} of {names.replace(',', ', ')}'s helpers"] = float(seconds)
        return timings

    def close(self):
        """Kill the child if it still runs, and reap it (no zombie)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        _CHILDREN.discard(self)
        for f in (self.proc.stdin, self.out, self.err):
            try:
                f.close()
            except OSError:
                pass


def _read(f) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")
