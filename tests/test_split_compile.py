"""A compiler process compiles a function's helpers from the end while this process compiles the
function (codegen/split_compile.py): the helpers found by typing alone are the ones the compile
calls, in its order; the helper process stops where the other one got to; and what it leaves
in the cache is loaded, not compiled again."""
from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from numba.core import event

import graphnn as gn
from codegen import split_compile
from codegen.split_compile import compile_from_the_end, helper_calls
from fuzz_graphs import build, graphs
from graphnn.models import available, get_model


def _gradient_models():
    return sorted(name for name, build in available().items()
                  if (m := build()).task != "perceptron" and m.params and m.data is not None)


def _train_epoch(model, dtype="float64", feeds=None, batches=None):
    from codegen.backend import CpuBackend
    from codegen.background import signatures

    trainer = gn.Trainer(model, backend="numpy", dtype=dtype)
    backend = CpuBackend(model, trainer.optimizer, dtype)
    if feeds is None:
        feeds, batches = trainer.data.train, trainer._batches()
    calls = signatures(backend, ("epoch", feeds, batches, True))
    sig = next(sig for fn, sig in calls if fn == "train_epoch")
    return backend, backend.module.train_epoch, sig


def _called_helpers(source, module, function="train_epoch") -> set:
    """The module's helpers (no Python wrapper, not inlined) whose names the function's text calls."""
    text = re.search(rf"\ndef {function}\(.*?(?=\n@njit|\nfrom |\Z)", source, re.S).group(0)
    names = set(re.findall(r"(?<![\w.])(\w+)\(", text))
    return {n for n in names if split_compile._is_helper(getattr(module, n, None), module.__name__)}


class _Compiles(event.Listener):
    """The generated functions Numba compiles (not loads), in order; ``outer``: those whose
    compile starts while only one other is in progress (the callees a function's own typing
    compiles, not their callees')."""

    def __init__(self, module):
        self.module, self.names, self.outer, self.depth = module.__name__, [], [], 0

    def on_start(self, ev):
        py_func = ev.data["dispatcher"].py_func
        if py_func.__module__ == self.module:
            self.names.append(py_func.__name__)
            if self.depth == 1:
                self.outer.append(py_func.__name__)
        self.depth += 1

    def on_end(self, ev):
        self.depth -= 1


def _found_alone(backend, train_epoch, sig, what):
    """helper_calls compiles nothing (but what Numba's pipeline inlines) and finds exactly the
    helpers train_epoch's text calls."""
    compiles = _Compiles(backend.module)
    with event.install_listener("numba:compile", compiles):
        found = helper_calls(train_epoch, sig)
    # nothing compiles but what Numba's pipeline inlines at its IR level (dropout's mix64), which
    # typing alone meets as a call
    assert [n for n in compiles.names if getattr(backend.module, n).targetoptions.get("inline") != "always"] == []
    assert len(found) == len(set(found))
    assert {d.py_func.__name__ for d, _ in found} == _called_helpers(backend.source, backend.module), what


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", _gradient_models())
def test_typing_alone_finds_every_helper_train_epoch_calls_and_compiles_none(name, dtype, isolated_cache):
    _found_alone(*_train_epoch(get_model(name), dtype), f"{name} {dtype}")


@settings(max_examples=6, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(recipe=graphs(max_terms=3, max_steps=4))
def test_typing_alone_finds_the_helpers_of_a_drawn_graphs_train_epoch(recipe):
    g = build(recipe)
    n = len(g.feeds["x"])
    order = np.arange(n)[::-1]
    batches = [b for b in (order[:(n + 1) // 2], order[(n + 1) // 2:]) if len(b)]
    _found_alone(*_train_epoch(g.model, "float64", g.feeds, batches), repr(recipe))


@pytest.mark.parametrize("name", ["lstm", "attention", "gan", "transformer"])
def test_the_order_and_types_found_are_those_of_the_real_compile(name, isolated_cache):
    backend, train_epoch, sig = _train_epoch(get_model(name))
    found = helper_calls(train_epoch, sig)
    assert found, name
    compiles = _Compiles(backend.module)
    with event.install_listener("numba:compile", compiles):
        train_epoch.compile(sig)
    # in the order typing meets the calls, but those a segment's compile compiled first (its
    # own callees, which train_epoch also calls: codegen/outline.py)
    names = [d.py_func.__name__ for d, _ in found]
    assert compiles.outer == [n for n in names if n in compiles.outer]
    assert set(names) - set(compiles.outer) <= set(compiles.names)
    for dispatcher, args in found:
        assert tuple(args) in dispatcher.overloads, dispatcher.py_func.__name__


class _Fake:
    """A dispatcher stand-in: ``compile`` records, ``overloads`` holds what this process has."""

    def __init__(self, name, log, held=False):
        self.name, self.log = name, log
        self.overloads = {("a",): object()} if held else {}

    def compile(self, args):
        self.log.append(self.name)


def test_compiles_from_the_end_and_stops_at_the_first_one_in_the_cache():
    log = []
    calls = [(_Fake(n, log), ("a",)) for n in "abcdef"]
    cached = {"a", "b", "c"}   # the other process got as far as c
    done = compile_from_the_end(calls, lambda d, args: d.name in cached)
    assert log == ["f", "e", "d"] and done == 3


def test_a_helper_this_process_already_holds_is_passed_over_not_taken_for_the_meeting_point():
    log = []
    calls = [(_Fake("a", log), ("a",)), (_Fake("b", log), ("a",)), (_Fake("c", log, held=True), ("a",))]
    done = compile_from_the_end(calls, lambda d, args: d.name == "a")
    assert log == ["b"] and done == 1


def test_only_functions_that_return_nothing_are_typed_as_helpers():
    def writes(a):
        a[0] = 1.0

    def returns_early(a):
        if a[0] > 0:
            return
        a[0] = 1.0

    def returns_a_value(a):
        return a[0]

    assert split_compile._returns_none(writes) and split_compile._returns_none(returns_early)
    assert not split_compile._returns_none(returns_a_value)


def test_what_a_helper_process_leaves_in_the_cache_this_process_loads(isolated_cache):
    """A compiler process given only ``helps`` compiles every helper of train_epoch into the
    cache; this process's compile of train_epoch then loads each of them (Numba's cache hits)
    and compiles none, and trains as the reference does."""
    from codegen.worker import CompilerPool

    model = get_model("lstm")
    backend, train_epoch, sig = _train_epoch(model)
    with CompilerPool(1) as pool:
        timings = pool.run(backend.source, backend.cache_key, [], threading.Event(), helps=[("train_epoch", sig)])
    helped = [k for k in timings if k.endswith("'s helpers")]
    found = helper_calls(train_epoch, sig)
    assert helped == [f"{len(found)} of train_epoch's helpers"], timings
    compiles = _Compiles(backend.module)
    with event.install_listener("numba:compile", compiles):
        train_epoch.compile(sig)
    assert compiles.names == ["train_epoch"]
    for dispatcher, args in found:
        assert sum(dispatcher.stats.cache_hits.values()) >= 1, dispatcher.py_func.__name__
    compiled = gn.Trainer(model, backend="cpu", background_compile=False).fit(epochs=1, progress=False)
    reference = gn.Trainer(model, backend="numpy").fit(epochs=1, progress=False)
    np.testing.assert_allclose(compiled.losses, reference.losses, rtol=1e-10)


def test_a_child_is_given_its_job_without_this_process_waiting_for_it_to_read(monkeypatch):
    """The job holds the module's source (more than a pipe buffers) and a child reads it only after
    its start-up: `send` returns at once, so this process compiles its share meanwhile."""
    from codegen import worker

    writing, release, written = threading.Event(), threading.Event(), threading.Event()

    def blocked_write(self, obj):   # a pipe nobody reads yet
        writing.set()
        release.wait(3)
        written.set()

    monkeypatch.setattr(worker._Child, "_write", blocked_write)
    child = worker._Child.__new__(worker._Child)   # no process: only send's own behaviour
    child.send({"signatures": [("evaluate", ())], "source": "x" * 200_000})
    assert writing.wait(5) and not written.is_set()   # send returned while the write still blocks
    assert child.functions == ["evaluate"]
    release.set()
