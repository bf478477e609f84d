"""Training starts at once: the NumPy reference trains while a compiled backend is prepared in
the background, and the compiled backend takes over at a batch boundary.

A backend whose registry entry names a background preparer ('cpu': codegen/background.py) is
wrapped in a `SwitchingBackend` when the Trainer is built (``Trainer(background_compile=)``,
default on; ``GRAPHNN_BACKGROUND_COMPILE=0`` turns the default off). The first batch trains
on the reference at once. After it, a thread builds the compiled backend for the calls
training makes (lowering, the module cache, child processes compiling what the cache lacks);
at the first batch boundary after it is ready, the parameters, optimizer state and update
count move to it (`resume.copy_state`, exact resume's mechanism) and it trains the rest.
Both backends compute the same updates (the tests check a switched run against unswitched
ones to 1e-10 in float64).

- a compile that fails is reported on stderr and training continues on the reference; a
  backend that cannot load at all (Numba missing) stays an error, as it is without this;
- when training ends first (``fit`` returns, raises or is interrupted), the compile stops and
  its child processes are killed; the run has used the reference. At exit nothing is left;
- data-parallel training switches on every rank at the same step, once all are ready
  (`agree_to_switch`, called by distributed.py);
- ``verbose`` (the backend option; ``graphnn train --verbose``) reports the start, the
  background compile and the switch.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time

import numpy as np

from ..ops.dropout import STEP
from .backends import BACKENDS, BackendUnavailableError, LazyBackend, NumpyBackend, make_backend
from .resume import chain, copy_state

ENV_VAR = "GRAPHNN_BACKGROUND_COMPILE"
#: attributes only the compiled backend has: asking for one compiles it now
COMPILED_ONLY = frozenset({"source", "schedule", "module", "cache_key"})
#: seconds the end of training or the interpreter's exit waits for a preparation to stop
STOP_WAIT = 60.0


def background_supported(name: str) -> bool:
    entry = BACKENDS.get(name)
    return isinstance(entry, LazyBackend) and bool(entry.background)


def wants_background(name: str, asked) -> bool:
    """Whether backend ``name`` starts on the reference (``asked``: True, False, or None for
    the default: on where supported, unless $GRAPHNN_BACKGROUND_COMPILE is 0)."""
    if asked is None:
        return background_supported(name) and os.environ.get(ENV_VAR, "1").strip().lower() not in (
            "0", "false", "no", "off")
    if asked and not background_supported(name) and name != "numpy" and name in BACKENDS:
        able = sorted(n for n in BACKENDS if background_supported(n))
        raise ValueError(f"backend {name!r} cannot compile in the background (only {', '.join(able)} can): "
                         "it compiles before the first batch; leave background_compile unset or False")
    return bool(asked) and background_supported(name)


class Preparation:
    """The compiled backend, built by the registry's preparer on a daemon thread.

    ``loaded`` is set once the backend's code is imported (or failed to import); ``result``
    or ``error`` once it is done; `cancel` stops it (the preparer kills its processes).
    """

    def __init__(self, name: str, kwargs: dict, report=None):
        self.name = name
        self.cancelled, self.loaded, self._done = threading.Event(), threading.Event(), threading.Event()
        self.result = self.error = None
        self.started, self.seconds = time.perf_counter(), None
        self._thread = threading.Thread(target=self._run, args=(kwargs, report), daemon=True,
                                        name=f"graphnn-{name}-compile")
        _LIVE.add(self)
        self._thread.start()

    def _run(self, kwargs, report):
        entry = BACKENDS[self.name]

        def load_backend():   # the backend's own module: a missing library is named (and raised)
            try:
                return entry.load(self.name)
            except BaseException as e:
                self.error = e
                raise
            finally:
                self.loaded.set()

        try:
            prepare = LazyBackend(entry.background, entry.needs).load(self.name)
            self.result = prepare(**kwargs, cancelled=self.cancelled, report=report, load_backend=load_backend)
        except BaseException as e:  # noqa: BLE001  (reported by the training thread)
            if not isinstance(self.error, BackendUnavailableError):
                self.error = e
        finally:
            self.loaded.set()
            self.seconds = time.perf_counter() - self.started
            self._done.set()
            _LIVE.discard(self)

    def done(self) -> bool:
        return self._done.is_set()

    def ok(self) -> bool:
        return self.done() and self.error is None and not self.cancelled.is_set()

    def join(self, timeout=None) -> bool:
        return self._done.wait(timeout)

    def cancel(self) -> None:
        self.cancelled.set()


_LIVE: set = set()


@atexit.register
def _stop_all():
    """At exit: stop every preparation and let its thread end (its processes killed) before
    the interpreter tears down what the thread may be using."""
    for prep in list(_LIVE):
        prep.cancel()
    for prep in list(_LIVE):
        prep.join(STOP_WAIT)


class SwitchingBackend:
    """Backend ``name`` started on the NumPy reference while it is compiled in the background;
    it takes over at a batch boundary (see the module docstring). ``inner`` is the backend
    running now; ``switched_at`` the update count at the switch (None before it);
    ``failure`` why the compiled backend is not used (None: not failed)."""

    #: numbers the steps of an epoch itself (TrainingFeeds hands it whole epochs)
    epoch_feeds_steps = True

    def __init__(self, name, model, optimizer, dtype="float64", params=None, *, options=None):
        self.inner = NumpyBackend(model, optimizer, dtype, params)
        self.name, self.model, self.optimizer = name, model, optimizer
        self.dtype, self.trainable = self.inner.dtype, self.inner.trainable
        self.options = dict(options or {})
        self.verbose = bool(self.options.get("verbose"))
        self.collective = False   # data-parallel: the ranks decide together (agree_to_switch)
        self.decided = False      # … and have decided (switched, or all stay on the reference)
        self.evaluates = True     # training measures loss/metrics (the Trainer says: start_of_training)
        self.switched_at = None
        self.failure = None
        self._prep = None
        self._feeds = None        # the last gradients() feeds: what apply_gradients trained on
        self._starts = 0

    def __getattr__(self, name):   # state, … of the backend running now
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        if name in COMPILED_ONLY:
            self.compile_now()
        return getattr(self.inner, name)

    @property
    def params(self):
        return self.inner.params

    @property
    def steps(self):
        return self.inner.steps

    @steps.setter
    def steps(self, value):
        self.inner.steps = value

    @property
    def compiled(self) -> bool:
        return self.switched_at is not None

    @property
    def pending(self) -> bool:
        """A compile is under way (started, not yet taken over or given up)."""
        return self._prep is not None

    # -- training -------------------------------------------------------------------------
    def train_step(self, feeds) -> float:
        self._boundary()
        loss = self.inner.train_step(feeds)
        self._start("step", feeds)
        return loss

    def gradients(self, feeds):
        self._boundary()
        self._feeds = feeds
        return self.inner.gradients(feeds)

    def apply_gradients(self, flat_grad) -> None:
        self.inner.apply_gradients(flat_grad)
        if self._feeds is not None:
            self._start("gradients", self._feeds)

    def train_epoch(self, feeds, batches) -> float:
        """One epoch: batch by batch on the reference until the compiled backend takes over,
        which then runs the rest of the epoch in one call. Training-mode scalars (dropout's
        ``step``) are the first batch's; later batches get the next numbers."""
        self._boundary()
        if self._whole_epochs():
            return self.inner.train_epoch(feeds, batches)
        batched = {k: v for k, v in feeds.items() if np.ndim(v) > 0}
        fixed = {k: v for k, v in feeds.items() if np.ndim(v) == 0}
        first = fixed.get(STEP.name)
        total, count = 0.0, 0
        for i, idx in enumerate(batches):
            if i:
                self._boundary()
            now = dict(fixed) if first is None else {**fixed, STEP.name: float(first) + i}
            if self._whole_epochs():
                rest = batches[i:]
                n = sum(len(b) for b in rest)
                return (total + self.inner.train_epoch({**batched, **now}, rest) * n) / (count + n)
            total += self.inner.train_step({**{k: v[idx] for k, v in batched.items()}, **now}) * len(idx)
            count += len(idx)
            self._start("epoch", feeds, batches)
        return total / count

    def _whole_epochs(self) -> bool:
        """The compiled backend runs (the rest of) an epoch in one call, numbering its steps."""
        return self.compiled and getattr(self.inner, "epoch_feeds_steps", False)

    def loss(self, feeds) -> float:
        return self.inner.loss(feeds)

    def predict(self, feeds):
        return self.inner.predict(feeds)

    def evaluate(self, feeds):
        return self.inner.evaluate(feeds)

    # -- the switch -----------------------------------------------------------------------
    def _start(self, kind, feeds, batches=None) -> None:
        """After a batch on the reference: start preparing the compiled backend (once) for the
        calls training makes: ``kind`` 'epoch', 'step' or 'gradients', and evaluate if it does."""
        if self._prep is not None or self.compiled or self.failure is not None:
            return
        self._starts += 1
        if self._starts == 1:
            self._say(f"training starts on the numpy reference; the {self.name} backend compiles in the background")
        params = {p: np.array(v, copy=True) for p, v in self.inner.params.items()}
        kwargs = dict(model=self.model, optimizer=self.optimizer, dtype=self.dtype, params=params,
                      options=self.options, plan=(kind, feeds, batches, self.evaluates))
        self._prep = Preparation(self.name, kwargs, self._say if self.verbose else None)

    def _boundary(self) -> None:
        if self._prep is not None and not self.collective and self._prep.done():
            self.take()

    def ready(self) -> bool:
        """The background preparation has finished (compiled, or failed)."""
        return self._prep is not None and self._prep.done()

    def take(self, switch: bool = True) -> None:
        """Finish a done preparation: switch to its backend (``switch``), or report its failure."""
        prep, self._prep = self._prep, None
        if prep.error is not None:
            return self._failed(prep.error)
        if switch:
            self._switch(prep.result, f"ready {prep.seconds:.1f} s after the first batch")

    def _switch(self, compiled, when: str) -> None:
        copy_state(self.inner, compiled)
        self.inner = compiled
        self.switched_at = compiled.steps
        self._say(f"update {compiled.steps}: switched to the compiled {self.name} backend ({when})")

    def _failed(self, error) -> None:
        if isinstance(error, BackendUnavailableError):
            raise error
        text = str(error).strip().replace("\n", " ") or type(error).__name__
        self.failure = text if len(text) < 600 else text[:600] + "…"
        print(f"graphnn: the {self.name} backend could not be compiled in the background ({self.failure}); "
              "training continues on the numpy reference", file=sys.stderr, flush=True)

    def finish(self, quiet: bool = False) -> None:
        """Training has ended: take a finished preparation, stop one still running (its
        processes killed). A backend that could not load is raised unless ``quiet``."""
        prep = self._prep
        if prep is None:
            return
        if prep.done() and not self.collective:
            return self.take()
        self._prep = None
        prep.cancel()
        prep.loaded.wait(STOP_WAIT)
        if isinstance(prep.error, BackendUnavailableError) and not quiet:
            raise prep.error
        self._say(f"training ended at update {self.steps}, before the {self.name} backend was compiled: "
                  "its compile was stopped (the run used the numpy reference)")

    def wait(self, timeout=None) -> bool:
        """Block until the background compile is done, and switch (not under data-parallel
        training, where the ranks switch together); True once compiled."""
        if self._prep is not None and self._prep.join(timeout) and not self.collective:
            self.take()
        return self.compiled

    def compile_now(self) -> None:
        """Switch to the compiled backend now: wait for the background compile, or compile in
        the foreground if none runs (what asking for ``source`` or ``module`` does)."""
        if self.compiled:
            return
        if self._prep is not None:
            self._prep.join()
            self.take()
            if self.compiled:
                return
        params = {p: np.array(v, copy=True) for p, v in self.inner.params.items()}
        compiled = make_backend(self.name, self.model, self.optimizer, self.dtype, params, **self.options)
        self._switch(compiled, "compiled in the foreground")

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"graphnn: {text}", flush=True)


def switching_backend(backend):
    """The `SwitchingBackend` in ``backend``'s wrapper chain, or None."""
    return next((b for b in chain(backend) if isinstance(b, SwitchingBackend)), None)


def start_of_training(backend, evaluates: bool) -> None:
    """The Trainer says whether this run measures losses or metrics (compile evaluate too)."""
    s = switching_backend(backend)
    if s is not None:
        s.evaluates = evaluates


def end_of_training(backend, quiet: bool = False) -> None:
    """`SwitchingBackend.finish` for the one in ``backend``'s chain (the Trainer calls it)."""
    s = switching_backend(backend)
    if s is not None:
        s.finish(quiet)


def agree_to_switch(switcher: SwitchingBackend, comm) -> None:
    """Data-parallel: switch on every rank at this step if every rank is ready; if any rank's
    compile failed, every rank stays on the reference (the ranks keep identical parameters).

    Every rank takes part in the vote at every step until the ranks have decided, whatever its
    own state: a rank that has had no rows yet (more ranks than rows in a batch) has started no
    compile, and a vote only where a compile runs would pair this all-reduce with another's
    gradient all-reduce."""
    if switcher.compiled or switcher.decided:
        return
    prep = switcher._prep
    gave_up = prep is None and switcher.failure is not None   # this rank's compile could not start
    done = gave_up or (prep is not None and prep.done())
    status = np.array([float(done), float(prep is not None and prep.done() and prep.ok())])
    comm.allreduce_sum_inplace(status)
    if status[0] < comm.size:
        return
    switcher.decided = True
    if status[1] == comm.size:
        switcher.take(switch=True)
    elif prep is not None and prep.ok():
        switcher.failure = "the compile failed on another rank"
        switcher._prep = None
        switcher._say("another rank could not compile: every rank stays on the numpy reference")
    elif prep is not None:
        switcher.take(switch=False)   # this rank's own failure, reported
