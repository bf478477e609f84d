"""Generated code compiles at LLVM's O2, not Numba's default O3 (codegen/cache.py).

At O3 LLVM fully unrolls loops up to twice the size and unswitches non-trivial loops: the
shared loop nests (B × 10 × 32 …) grew tenfold, and contrastive's cold compile took 8.8 s
against 6.2 s at O2, with the same epoch time. The level is set for each compile of a
generated function only (a user's own Numba code keeps its level), and an explicit
``NUMBA_OPT`` wins. Python's cyclic garbage collector is paused for the compile (it ran
hundreds of times in a large model's, 10–15 % of it) and running again after.
"""
import numpy as np
import pytest
from numba.core import codegen as numba_codegen, config as numba_config

import graphnn as gn
from codegen import CpuBackend
from codegen.cache import GENERATED_OPT_LEVEL, _GeneratedCompile
from codegen.compile_child import warm_up
from graphnn.models import available, get_model
from graphnn.optim import make_optimizer

TRAINED = [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")]


def _own_functions(module):
    for name, obj in vars(module).items():
        if getattr(getattr(obj, "py_func", None), "__module__", None) == module.__name__:
            yield name, obj


@pytest.mark.usefixtures("private_cache_dir")
@pytest.mark.parametrize("name", TRAINED)
def test_every_function_of_every_built_in_models_module_compiles_at_the_generated_level(name):
    backend = CpuBackend(get_model(name), make_optimizer("adam", lr=0.01), "float32")   # lowers; compiles nothing
    functions = dict(_own_functions(backend.module))
    assert {"train_epoch", "evaluate"} <= set(functions)
    plain = [fn for fn, d in functions.items()
             if not isinstance(d._compiler, _GeneratedCompile) or d._compiler.opt_level != GENERATED_OPT_LEVEL]
    assert not plain, f"{name}: compiled at Numba's default level: {plain}"


def _user_model():
    rng = np.random.default_rng(1)
    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 1))
    h = gn.tanh(gn.linear(x, gn.parameter("W1", rng.normal(size=(3, 5))), gn.parameter("b1", np.zeros(5))))
    y = gn.linear(h, gn.parameter("W2", rng.normal(size=(5, 1))), gn.parameter("b2", np.zeros(1)))
    return gn.Model("user", gn.losses.mse(y, t), y, (x, t))


@pytest.fixture
def recorded_levels(monkeypatch):
    """The LLVM level of every pass pipeline Numba builds without an explicit one (the
    function and full module pipelines: Numba's cheap pre-pass asks for O0 itself), after
    Numba's own one-time start-up (its runtime's functions, compiled at its level)."""
    warm_up()
    levels, build = [], numba_codegen.CPUCodegen._pass_builder

    def recording(self, **kwargs):
        if "opt" not in kwargs:
            levels.append(int(numba_config.OPT))
        return build(self, **kwargs)

    monkeypatch.setattr(numba_codegen.CPUCodegen, "_pass_builder", recording)
    return levels


@pytest.mark.parametrize("cache", ["isolated_cache", "no_cache_folder"])
def test_a_users_graph_compiles_at_o2_and_numba_keeps_its_own_level(cache, recorded_levels, isolated_cache,
                                                                    monkeypatch, tmp_path):
    if cache == "no_cache_folder":   # a cache folder that cannot be made: the module is compiled in memory
        blocked = tmp_path / "file"
        blocked.write_text("")
        monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(blocked / "cache"))
    before = numba_config.OPT
    backend = CpuBackend(_user_model(), make_optimizer("sgd", lr=0.1), "float64")
    if cache == "no_cache_folder":
        assert backend.module._graphnn_path is None
    rng = np.random.default_rng(0)
    loss = backend.train_step({"x": rng.normal(size=(4, 3)), "t": rng.normal(size=(4, 1))})
    assert np.isfinite(loss)
    assert recorded_levels and set(recorded_levels) == {GENERATED_OPT_LEVEL}
    assert numba_config.OPT == before   # restored: a user's own Numba code compiles as before


def test_an_explicit_numba_opt_in_the_environment_wins(isolated_cache, monkeypatch):
    monkeypatch.setenv("NUMBA_OPT", "3")   # read at load time; nothing compiles while it is set
    backend = CpuBackend(_user_model(), make_optimizer("sgd", lr=0.1), "float64")
    assert all(d._compiler.opt_level is None for _, d in _own_functions(backend.module))


def test_no_garbage_collection_runs_while_generated_code_compiles(isolated_cache, monkeypatch):
    """Python's cyclic collector is paused while a generated function (and its callees) is
    typed, lowered and optimised (10–15 % of a large model's compile), and running after."""
    import gc

    from numba.core.typed_passes import NopythonTypeInference

    typing, seen = NopythonTypeInference.run_pass, []

    def recording(self, state):
        seen.append((state.func_id.func_qualname, gc.isenabled()))
        return typing(self, state)

    monkeypatch.setattr(NopythonTypeInference, "run_pass", recording)
    backend = CpuBackend(_user_model(), make_optimizer("sgd", lr=0.1), "float64")
    rng = np.random.default_rng(0)
    assert gc.isenabled()
    backend.train_step({"x": rng.normal(size=(4, 3)), "t": rng.normal(size=(4, 1))})   # compiles grad_step
    assert "grad_step" in {fn for fn, _ in seen} and len(seen) > 1   # and its callees inside it
    assert not any(on for _, on in seen), seen
    assert gc.isenabled()


class _Recording:
    def __init__(self, fail=False):
        self.seen, self.fail = [], fail

    def compile(self, args, return_type):
        import gc

        self.seen.append(gc.isenabled())
        if self.fail:
            raise RuntimeError("compile failed")
        return "compiled"


def test_the_collector_is_back_after_a_failed_compile_and_stays_off_if_it_was_off():
    import gc

    inner = _Recording(fail=True)
    with pytest.raises(RuntimeError):
        _GeneratedCompile(inner, None).compile((), None)
    assert inner.seen == [False] and gc.isenabled()
    gc.disable()
    try:
        inner = _Recording()
        assert _GeneratedCompile(inner, GENERATED_OPT_LEVEL).compile((), None) == "compiled"
        assert not gc.isenabled()   # the caller's choice is kept
    finally:
        gc.enable()
