"""The generated modules' trimmed Numba pipeline (codegen/pipeline.py).

Without SSA reconstruction a variable has one type, the unification of all its definitions';
`SameTypesAsSSA` must send a function whose definitions SSA would type apart to Numba's full
pipeline, so the trimmed pipeline never changes what a function computes. Checked here on
functions built to need SSA, and, by typing alone, on every function each built-in model's
training and evaluation call (both dtypes) and on hypothesis-drawn graphs: none of them may
fall back, or the compile time the pipeline saves is lost. The existing suite runs every
built-in model and drawn graph through the trimmed pipeline against the reference.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from numba.core import compiler
from numba.core.compiler_machinery import AnalysisPass, register_pass

import graphnn as gn
from codegen import pipeline
from graphnn.models import available, get_model
from codegen.linking import njit
from codegen.pipeline import FELL_BACK, GeneratedCompiler, SameTypesAsSSA, trimmed_pipeline, typed_apart

from fuzz_graphs import build, graphs

JIT = dict(pipeline_class=GeneratedCompiler)


@register_pass(mutates_CFG=False, analysis_only=True)
class _StopAfterTyping(AnalysisPass):
    _name = "test_stop_after_typing"

    def __init__(self):
        AnalysisPass.__init__(self)

    def run_pass(self, state):
        raise compiler._EarlyPipelineCompletion(typed_apart(state))


class _TypingOnly(GeneratedCompiler):
    """The trimmed pipeline up to its check; returns `typed_apart`'s list instead of code."""

    def define_pipelines(self):
        pm = trimmed_pipeline(self.state)
        cut = next(i for i, (p, _) in enumerate(pm.passes) if p is SameTypesAsSSA)
        pm.passes = pm.passes[:cut] + [(_StopAfterTyping, "the check's findings")]
        pm.finalize()
        return [pm]


def typed_apart_in(dispatcher, argtypes) -> list:
    """What SSA would type apart in ``dispatcher``'s function for ``argtypes`` (nothing compiled
    but the callees typing needs)."""
    flags = compiler.Flags()
    dispatcher.targetdescr.options.parse_as_flags(flags, dispatcher.targetoptions)
    return compiler.compile_extra(dispatcher.targetdescr.typing_context, dispatcher.targetdescr.target_context,
                                  dispatcher.py_func, args=argtypes, return_type=None, flags=flags,
                                  locals={}, pipeline_class=_TypingOnly)


def _fell_back(fn) -> bool:
    return any(name.endswith("." + fn.__name__) for name in FELL_BACK)


# -- functions that need SSA: the check sends them to the full pipeline -------------------------

def int_then_float(x):
    b = 0
    for i in range(x.shape[0]):   # (Numba versions a name redefined outside loops and branches itself)
        a = 0            # an int64 here ...
        b = a + 1        # ... so b is int64 under SSA
        a = x[i] * 0.5   # a float64 here: one type for `a` would make b a float64
    return b


def view_layouts(x):
    s = 0.0
    for i in range(2):
        v = x.T          # an F-ordered view ...
        s += v[0, 1]
        v = x[i:]        # ... then a C one: one type for `v` would be layout A
        s += v[0, 0]
    return s


def accumulator_from_int(x):
    acc = 0
    for i in range(x.shape[0]):
        acc += x[i]
    return acc


def one_type_each(x):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i]
    zmax = x[0]
    for i in range(1, x.shape[0]):
        zmax = max(zmax, x[i])
    return acc, zmax


@pytest.mark.parametrize("fn, arg", [(int_then_float, np.arange(3.0)), (view_layouts, np.arange(4.0).reshape(2, 2)),
                                     (accumulator_from_int, np.arange(3.0))])
def test_what_ssa_would_type_apart_compiles_as_numba_does(fn, arg):
    ours, numbas = njit(**JIT)(fn), njit(fn)
    assert ours(arg) == numbas(arg)
    (sig,) = ours.signatures
    assert ours.overloads[sig].signature.return_type == numbas.overloads[sig].signature.return_type
    assert _fell_back(fn), f"{fn.__name__} compiled without SSA"


def test_int_then_float_keeps_the_int_type_ssa_gives():
    b = njit(**JIT)(int_then_float)(np.arange(3.0))
    assert isinstance(b, int) and b == 1


def test_one_type_per_variable_needs_no_fallback():
    f = njit(**JIT)(one_type_each)
    x = np.array([3.0, -1.0, 7.5, 2.0])
    assert f(x) == (11.5, 7.5)
    assert not _fell_back(one_type_each)
    assert typed_apart_in(njit(**JIT)(one_type_each), f.signatures[0]) == []


VERBOSE = False


def pruned(x):
    if VERBOSE:          # a global constant: only Numba's dead-branch pruning makes this typable
        return "a string"
    return x[0]


def test_a_function_the_trimmed_pipeline_cannot_type_compiles_by_the_full_one():
    assert njit(**JIT)(pruned)(np.array([1.5])) == 1.5
    assert _fell_back(pruned)


# -- every built-in model's and drawn graph's functions: typed alike without SSA ---------------

def _calls(model, dtype, feeds=None, batches=None):
    from codegen.backend import CpuBackend
    from codegen.background import signatures

    trainer = gn.Trainer(model, backend="numpy", dtype=dtype)
    backend = CpuBackend(model, trainer.optimizer, dtype)
    if feeds is None:
        feeds, batches = trainer.data.train, trainer._batches()
    return backend.module, signatures(backend, ("epoch", feeds, batches, True))


def _gradient_models():
    """Every built-in model trained by gradients (a perceptron's rule and Hopfield storage compile nothing)."""
    return sorted(name for name, build in available().items()
                  if (m := build()).task != "perceptron" and m.params and m.data is not None)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", _gradient_models())
def test_every_built_in_models_functions_type_alike_without_ssa(name, dtype):
    model = get_model(name)
    module, calls = _calls(model, dtype)
    assert {fn for fn, _ in calls} >= {"train_epoch", "evaluate"}
    assert module.JIT["pipeline_class"] is GeneratedCompiler
    for fn, argtypes in calls:
        assert typed_apart_in(getattr(module, fn), argtypes) == [], f"{name} {dtype}: {fn}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@settings(max_examples=6, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(recipe=graphs(max_terms=3, max_steps=4))
def test_drawn_graphs_functions_type_alike_without_ssa(dtype, recipe):
    g = build(recipe)
    n = len(g.feeds["x"])
    order = np.arange(n)[::-1]
    batches = [b for b in (order[:(n + 1) // 2], order[(n + 1) // 2:]) if len(b)]
    module, calls = _calls(g.model, dtype, g.feeds, batches)
    for fn, argtypes in calls:
        assert typed_apart_in(getattr(module, fn), argtypes) == [], fn


def test_the_check_runs_right_after_typing_and_the_dropped_passes_are_gone():
    class State:
        flags = compiler.Flags()
        func_ir = None

    names = [p for p, _ in trimmed_pipeline(State).passes]
    assert names[names.index(pipeline.NopythonTypeInference) + 1] is SameTypesAsSSA
    assert not set(pipeline.DROPPED) & set(names)
