"""Data-parallel training over MPI ranks, the Horovod pattern.

Every rank builds the same model with the same seed, so it holds the same parameters and
draws the same global batch order. Each rank computes the gradient of its shard of every
global batch, ONE in-place all-reduce sums the flat gradient buffers (each pre-scaled by its
shard's weight, so the sum is the gradient of the whole batch), and every rank applies the
same update. Rank 0 alone prints.

The `Trainer` sees only a communicator (`Trainer(model, comm=world())`): `LocalComm` (one
process, no MPI) or `MPIComm` (mpi4py, imported only when one is made). Launch with
``mpiexec -n 2 graphnn train MODEL --backend cpu --distributed``.

Faults end the run on every rank instead of hanging: collectives are non-blocking and
polled, so a rank that raises tells the others (each prints why and aborts) and a rank that
stops answering trips a timeout (`GRAPHNN_MPI_TIMEOUT`, seconds). Ranks that disagree on the
graph's structural hash or the training settings stop at the start with the same message.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
import time
from typing import Protocol

import numpy as np

from ..errors import GraphnnError
from ..graph import Graph
from ..ops.dropout import FIRST_ROW, check_shardable
from .backends import TrainingFeeds
from .switching import agree_to_switch, switching_backend

#: seconds a rank waits in one collective before it calls the run hung
DEFAULT_TIMEOUT = 300.0


class DistributedError(GraphnnError, RuntimeError):
    """Ranks disagree, a rank failed, or the others stopped answering."""


class RankFailedError(DistributedError):
    """Another rank raised; ``rank`` is the one that did."""

    def __init__(self, rank, message):
        super().__init__(f"rank {rank} failed: {message}")
        self.rank = rank


class Communicator(Protocol):
    """What data-parallel training needs from a process group."""

    rank: int
    size: int

    def allreduce_sum_inplace(self, buf: np.ndarray) -> None: ...
    def allreduce_mean_inplace(self, buf: np.ndarray) -> None: ...
    def allreduce_sum(self, value: float) -> float: ...
    def bcast(self, obj, root: int = 0): ...
    def bcast_inplace(self, buf: np.ndarray, root: int = 0) -> None: ...
    def allgather(self, obj) -> list: ...
    def barrier(self) -> None: ...
    def abort(self, message: str = "", code: int = 1): ...


class LocalComm:
    """One process: every collective is the identity. No MPI anywhere."""

    rank, size = 0, 1

    def allreduce_sum_inplace(self, buf):
        pass

    def allreduce_mean_inplace(self, buf):
        pass

    def allreduce_sum(self, value):
        return value

    def bcast(self, obj, root=0):
        return obj

    def bcast_inplace(self, buf, root=0):
        pass

    def allgather(self, obj):
        return [obj]

    def barrier(self):
        pass

    def abort(self, message="", code=1):
        raise SystemExit(message or code)

    @contextlib.contextmanager
    def guard(self, prefix="graphnn"):
        yield self

    def __repr__(self):
        return "LocalComm()"


_FAIL_TAG, _ACK_TAG = 7301, 7302
_yield = getattr(os, "sched_yield", lambda: None)  # let a co-located rank run (not on Windows)


class MPIComm:
    """MPI (mpi4py) with polled collectives: a failed or silent peer ends the run, never hangs.

    ``timeout`` (seconds, default $GRAPHNN_MPI_TIMEOUT or 300) bounds each wait for the
    other ranks; ``grace`` bounds how long a failing rank waits for the others to read its
    message before it aborts the job; ``drain`` is the pause before the abort that lets the
    launcher forward what every rank printed.
    """

    def __init__(self, comm=None, *, timeout=None, grace=5.0, drain=0.5):
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise DistributedError("distributed training needs mpi4py and an MPI library: "
                                   "pip install 'graphnn[mpi]'  (mpi4py + the mpich wheel)") from e
        self.MPI = MPI
        # our own context: failure notes never mix with a user's messages
        self.comm = (comm if comm is not None else MPI.COMM_WORLD).Dup()
        self.comm.Set_errhandler(MPI.ERRORS_RETURN)  # MPI errors raise, they don't exit
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        env = os.environ.get("GRAPHNN_MPI_TIMEOUT")
        self.timeout = float(timeout if timeout is not None else env if env else DEFAULT_TIMEOUT)
        self.grace, self.drain = grace, drain
        self.failed_peer = None
        if self.size > 1:
            self._install_excepthook()

    def __repr__(self):
        return f"MPIComm(rank={self.rank}, size={self.size})"

    # -- collectives, all non-blocking and polled --------------------------------------
    def allreduce_sum_inplace(self, buf):
        if self.size > 1:
            self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, self.MPI.SUM), "all-reduce")

    def allreduce_mean_inplace(self, buf):
        self.allreduce_sum_inplace(buf)
        buf /= self.size

    def allreduce_sum(self, value):
        buf = np.array([value], dtype=np.float64)
        self.allreduce_sum_inplace(buf)
        return float(buf[0])

    def bcast_inplace(self, buf, root=0):
        if self.size > 1:
            self._wait(self.comm.Ibcast(buf, root=root), "broadcast")

    def bcast(self, obj, root=0):
        data = np.frombuffer(pickle.dumps(obj), np.uint8) if self.rank == root else None
        n = np.array([0 if data is None else data.size], np.int64)
        self.bcast_inplace(n, root)
        buf = data.copy() if data is not None else np.empty(int(n[0]), np.uint8)
        self.bcast_inplace(buf, root)
        return pickle.loads(buf.tobytes())

    def allgather(self, obj):
        data = np.frombuffer(pickle.dumps(obj), np.uint8)
        sizes = np.empty(self.size, np.int64)
        self._wait(self.comm.Iallgather(np.array([data.size], np.int64), sizes), "all-gather")
        padded = np.zeros(int(sizes.max()), np.uint8)
        padded[:data.size] = data
        out = np.empty((self.size, padded.size), np.uint8)
        self._wait(self.comm.Iallgather(padded, out), "all-gather")
        return [pickle.loads(out[r, :sizes[r]].tobytes()) for r in range(self.size)]

    def barrier(self):
        if self.size > 1:
            self._wait(self.comm.Ibarrier(), "barrier")

    def _wait(self, request, what):
        """Poll ``request`` to completion, watching for failure notes and the timeout.

        Spins (MPI progresses only inside MPI calls), yielding the core to any other runnable
        process; after a second of waiting (a peer compiling, or gone) it sleeps between polls.
        """
        start = time.perf_counter()
        polls = 0
        while not request.Test():
            polls += 1
            if polls % 64:
                _yield()
                continue
            self._check_failures()
            waited = time.perf_counter() - start
            if waited > 1.0:
                if waited > self.timeout:
                    raise DistributedError(
                        f"no answer from the other ranks for {self.timeout:g} s "
                        f"in {what}; a rank hung or died (raise GRAPHNN_MPI_TIMEOUT if it was "
                        f"only slow)")
                time.sleep(0.001)

    # -- faults ------------------------------------------------------------------------
    def _check_failures(self):
        status = self.MPI.Status()
        if self.comm.Iprobe(self.MPI.ANY_SOURCE, _FAIL_TAG, status):
            source = status.Get_source()
            message = self.comm.recv(source=source, tag=_FAIL_TAG)
            self.failed_peer = source
            raise RankFailedError(source, message)

    def fail(self, message, code=1):
        """End the job from this rank: tell the others why, give them a moment, abort."""
        MPI = self.MPI
        if self.size > 1:
            peers = [r for r in range(self.size) if r != self.rank]
            if self.failed_peer is not None:  # the others already know: acknowledge
                pending = [self.comm.isend(None, dest=self.failed_peer, tag=_ACK_TAG)]
                waiting_for = set()
            else:
                pending = [self.comm.isend(message, dest=r, tag=_FAIL_TAG) for r in peers]
                waiting_for = set(peers)
            deadline = time.monotonic() + self.grace
            status = MPI.Status()
            while (waiting_for or not MPI.Request.Testall(pending)) and time.monotonic() < deadline:
                if self.comm.Iprobe(MPI.ANY_SOURCE, _ACK_TAG, status):
                    self.comm.recv(source=status.Get_source(), tag=_ACK_TAG)
                    waiting_for.discard(status.Get_source())
                elif self.comm.Iprobe(MPI.ANY_SOURCE, _FAIL_TAG, status):  # failed at the same time
                    source = status.Get_source()
                    self.comm.recv(source=source, tag=_FAIL_TAG)
                    pending.append(self.comm.isend(None, dest=source, tag=_ACK_TAG))
                else:
                    time.sleep(0.001)
        self.abort(message, code)

    def abort(self, message="", code=1):
        sys.stdout.flush()
        sys.stderr.flush()
        if self.size > 1:
            # The launcher forwards each rank's output and handles an abort on separate
            # channels; an abort at once can kill a peer's proxy before the line it just
            # printed ("rank 0 of 2: rank 1 failed: ...") is forwarded. Give it a moment.
            time.sleep(self.drain)
        self.MPI.COMM_WORLD.Abort(code)
        os._exit(code)   # Abort may return before the launcher's kill arrives: never run on

    @contextlib.contextmanager
    def guard(self, prefix="graphnn"):
        """Run a block; if it raises on any rank, every rank prints why and the job ends."""
        try:
            yield self
        except BaseException as e:  # noqa: BLE001  (KeyboardInterrupt must end the job too)
            if self.size == 1 or isinstance(e, SystemExit) and not e.code:  # a clean exit stays one
                raise
            if os.environ.get("GRAPHNN_DEBUG"):
                import traceback
                traceback.print_exc()
            self._stop_everyone(e, prefix)

    def _stop_everyone(self, error, prefix):
        text = str(error) if isinstance(error, GraphnnError) else f"{type(error).__name__}: {error}"
        print(f"{prefix}: error: rank {self.rank} of {self.size}: {text}"
              + (" (stopping every rank)" if self.failed_peer is None else ""),
              file=sys.stderr, flush=True)
        self.fail(text)

    def _install_excepthook(self):
        """An exception no `guard` caught would leave the others waiting forever: abort."""
        previous = sys.excepthook

        def hook(kind, value, tb):
            if not isinstance(value, RankFailedError):  # the peer's own traceback says it all
                previous(kind, value, tb)
            self._stop_everyone(value, "graphnn")

        sys.excepthook = hook


_WORLD = None


def world(timeout=None) -> MPIComm:
    """The communicator of every process ``mpiexec`` started (made once; imports mpi4py)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = MPIComm(timeout=timeout)
    return _WORLD


def launched_by_mpiexec() -> bool:
    """True inside a process started by mpiexec/mpirun/srun (without importing MPI)."""
    return any(k in os.environ for k in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                                           "MPI_LOCALNRANKS", "HYDI_CONTROL_FD"))


# -- the data-parallel backend -------------------------------------------------------------
def shard_bounds(n, rank, size):
    """Rows [lo, hi) of a batch of ``n`` that ``rank`` computes (np.array_split's split)."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class DataParallel:
    """A backend wrapper: shards every global batch over ``comm``; one all-reduce per step.

    ``inner`` must provide ``gradients(feeds) -> (loss, flat_grad)`` and
    ``apply_gradients(flat_grad)``. ``train`` are the training feeds (to check that the
    ranks hold the same data and to find how the loss scales with the batch); ``settings``
    are what else the ranks must agree on (batch size, seed).
    """

    def __init__(self, inner, comm, train, settings=None):
        missing = [m for m in ("gradients", "apply_gradients") if not hasattr(inner, m)]
        if missing:
            raise DistributedError(f"backend {inner.name!r} cannot train data-parallel: it lacks "
                                   f"{', '.join(missing)}")
        self.inner, self.comm = inner, comm
        self.name, self.model = inner.name, inner.model
        # a backend compiling in the background switches on every rank at the same step
        self._switcher = switching_backend(inner)
        if self._switcher is not None:
            self._switcher.collective = True
        self.trainable = inner.trainable
        self.allreduce_seconds = 0.0
        self.allreduce_calls = 0
        check_agreement(comm, self._fingerprint(train, settings or {}))
        # Horovod's rule: rank 0's values win, even if a model's init drew unseeded randoms
        for p in self.model.parameters:
            comm.bcast_inplace(inner.params[p])
        self.reduction = comm.bcast(batch_reduction(inner, train) if comm.rank == 0 else None)
        size = sum(inner.params[p].size for p in self.trainable)
        self._buf = np.zeros(size, dtype=inner.dtype)
        graph = Graph(self.model.loss)   # noise hashes an element's batch index: a shard says
        check_shardable(graph)           # where its rows start (ops.dropout.FIRST_ROW)
        self._noisy = any(n is FIRST_ROW for n in graph.nodes)

    def _fingerprint(self, train, settings):
        return {"graph": self.model.structural_hash(), "backend": self.inner.name,
                "dtype": str(np.dtype(self.inner.dtype)),
                "optimizer": self.inner.optimizer.structural_key(),
                "data": data_fingerprint(train), **settings}

    def agree_on_data(self, train) -> None:
        """New training data (``fit(x, y)`` on every rank, e.g. each epoch's fresh draw): the
        ranks must hold the same, or all stop saying so (as at the start)."""
        check_agreement(self.comm, {"data": data_fingerprint(train)})

    def __getattr__(self, name):  # params, state, dtype, optimizer, ... of the inner backend
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def params(self):
        return self.inner.params

    @property
    def steps(self):  # the inner backend's count drives Adam's bias correction: one counter
        return self.inner.steps

    @steps.setter
    def steps(self, value):
        self.inner.steps = value

    def _step(self, shard, n_global) -> float:
        """This rank's share of one global step; returns its weighted loss contribution."""
        if self._switcher is not None:
            agree_to_switch(self._switcher, self.comm)
        n = len(next((v for v in shard.values() if np.ndim(v)), ()))   # (first_row is a scalar)
        weight = n / n_global if self.reduction == "mean" else 1.0
        if n:  # scaled in place: the backend's buffer is rewritten by its next call anyway
            loss, g = self.inner.gradients(shard)
            if weight != 1.0:
                g *= weight
        else:  # more ranks than rows in this batch: contribute nothing (the step still counts)
            loss, g = 0.0, self._buf
            g.fill(0)
            skip = getattr(self.inner, "skip_step", None)
            if skip is not None:
                skip()
        start = time.perf_counter()
        self.comm.allreduce_sum_inplace(g)
        self.allreduce_seconds += time.perf_counter() - start
        self.allreduce_calls += 1
        self.inner.apply_gradients(g)
        return weight * loss

    def _shard(self, feeds, rows, first) -> dict:
        """This rank's feeds: ``rows`` of every batched feed, and where they start in the batch."""
        out = {k: v[rows] for k, v in feeds.items()}
        return {**out, FIRST_ROW.name: float(first)} if self._noisy else out

    def train_step(self, feeds) -> float:
        """One update from the global batch ``feeds``; the loss of that batch."""
        n = len(next(iter(feeds.values())))
        lo, hi = shard_bounds(n, self.comm.rank, self.comm.size)
        return self.comm.allreduce_sum(self._step(self._shard(feeds, slice(lo, hi), lo), n))

    def train_epoch(self, feeds, batches) -> float:
        """One epoch over the global ``batches``; the mean loss per example (all ranks)."""
        total, count = 0.0, 0
        for idx in batches:
            lo, hi = shard_bounds(len(idx), self.comm.rank, self.comm.size)
            total += self._step(self._shard(feeds, idx[lo:hi], lo), len(idx)) * len(idx)
            count += len(idx)
        return self.comm.allreduce_sum(total) / count

    def loss(self, feeds) -> float:
        return self.inner.loss(feeds)

    def predict(self, feeds):
        return self.inner.predict(feeds)


def check_agreement(comm, fingerprint: dict) -> None:
    """Every rank must build the same graph and train it the same way; else all stop."""
    everyone = comm.allgather(fingerprint)
    differ = [k for k in fingerprint if any(f.get(k) != fingerprint[k] for f in everyone)]
    if differ:
        lines = [f"{k}: " + ", ".join(f"rank {r} has {_short(f.get(k))}" for r, f in enumerate(everyone))
                 for k in differ]
        what = "graph structure (structural hash)" if "graph" in differ else "training setup"
        raise DistributedError(f"the ranks disagree on the {what}; every rank must build the same "
                               f"model with the same settings:\n  " + "\n  ".join(lines))


def _short(value):
    text = str(value)
    return text[:12] + "…" if len(text) == 64 else text  # hashes: a prefix is enough to tell


def data_fingerprint(feeds, sample_bytes=1 << 20) -> str:
    """Shapes, dtypes and a hash of evenly spaced rows (different data → different print)."""
    h = hashlib.sha256()
    for name in sorted(feeds):
        v = np.ascontiguousarray(feeds[name])
        h.update(repr((name, v.shape, str(v.dtype))).encode())
        if v.ndim and len(v):
            rows = max(1, min(len(v), sample_bytes // max(1, v[0].nbytes)))
            h.update(np.ascontiguousarray(v[np.linspace(0, len(v) - 1, rows).astype(int)]).tobytes())
    return h.hexdigest()


def batch_reduction(backend, train, rows=8) -> str:
    """'mean' if the loss averages over the batch, 'sum' if it adds; found by doubling a batch.

    The shard weights depend on it: a mean loss weights rank r's gradient by n_r / n, a
    summed loss (the course's ½Σ(t−y)²) adds the shards' gradients.
    """
    # in evaluation mode, on the backend itself: a training step's noise differs between the
    # halves of the doubled batch, and TrainingFeeds would count these calls as steps (on rank 0)
    backend = backend.inner if isinstance(backend, TrainingFeeds) else backend
    some = {k: np.asarray(v)[:rows] for k, v in train.items()}
    twice = {k: np.concatenate([v, v]) for k, v in some.items()}
    loss1, g1 = backend.gradients(some)
    one = np.concatenate([[loss1], g1])  # copy: the backend may reuse its buffer
    loss2, g2 = backend.gradients(twice)
    two = np.concatenate([[loss2], g2])
    tol = 1e-9 if np.dtype(backend.dtype) == np.float64 else 1e-4
    scale = max(np.abs(one).max(), 1e-300)
    if np.abs(two - one).max() <= tol * scale:
        return "mean"
    if np.abs(two - 2 * one).max() <= tol * scale:
        return "sum"
    raise DistributedError(f"model {backend.model.name!r}: its loss is neither a sum nor a mean over "
                           f"the batch (doubling a batch changed it by {loss2 / loss1 if loss1 else 'inf'}×), "
                           "so shard gradients cannot be combined into the batch gradient")


def run_cli(command, args):
    """Run a CLI command on every rank under mpiexec: rank 0 prints, a failure stops all.

    Every rank's command-line options are compared first: ranks given different options
    (``--epochs``, a ``--resume`` on one rank only) stop at once, every one saying which.
    """
    comm = world()
    result = None
    with comm.guard(prefix=f"graphnn {args.command}"):
        if comm.rank != 0:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (rank 0 alone prints)
            os.environ["TQDM_DISABLE"] = "1"  # progress bars go to stderr: rank 0's alone
        elif comm.size == 1 and not launched_by_mpiexec():
            print("note: --distributed without mpiexec runs on 1 rank; "
                  "launch with: mpiexec -n N graphnn train ... --distributed")
        else:
            print(f"data-parallel over {comm.size} MPI ranks: each computes 1/{comm.size} "
                  f"of every batch, one all-reduce per step")
        check_agreement(comm, command_options(args))
        args.comm = comm
        result = command(args)
        comm.barrier()  # a rank that failed after the others finished still ends the run
    return result


def command_options(args) -> dict:
    """The options a command was given (what every rank must agree on), as plain values."""
    return {f"--{k.replace('_', '-')}": v for k, v in sorted(vars(args).items())
            if not k.startswith("_") and k not in ("func", "comm", "debug") and not callable(v)}
