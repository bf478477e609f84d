"""codegen/linking.py: a compiled caller calls our array functions by declaration — its code
holds no copy of theirs — and its cache entry loads them first in a later process.

Checked: every built-in model's train_epoch and evaluate hold no helper's code (fails before:
Numba linked every helper into each, the transformer's train_epoch held 33 of them); a function
of scalars stays inlined; a module that does not decorate with linking.njit keeps Numba's
linking; a cached caller loads in fresh processes after two processes compiled its helpers
under different names (``graphnn codegen --compile``) and trains as the reference; a cache
entry with callees is refused whole by an unpatched Numba; a callee that is not loaded is an
error that names it. The suite trains every model compiled against the reference."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numba.core import codegen as numba_codegen
from numba.core.registry import CPUDispatcher

import codegen.linking as linking
import graphnn as gn
from codegen import load_generated_module
from codegen.background import signatures
from graphnn.models import available, get_model

REPO = Path(__file__).resolve().parents[1]
MODELS = [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")]


def _defined(library) -> set:
    return {fn.name for fn in library._get_module_for_linking().functions if not fn.is_declaration}


def _array_helpers(module) -> dict:
    """{mangled name: qualname} of the module's compiled overloads that take an array and are
    not short enough to be linked in (`linking.SMALL_LINES`)."""
    out = {}
    for value in vars(module).values():
        if isinstance(value, CPUDispatcher):
            for cres in value.overloads.values():
                if any(hasattr(t, "layout") for t in cres.signature.args) and cres.fndesc.qualname not in (
                        "train_epoch", "evaluate") and not linking._small(cres.library, cres.fndesc):
                    out[cres.fndesc.mangled_name] = cres.fndesc.qualname
    return out


@pytest.mark.parametrize("name", MODELS)
def test_train_epoch_and_evaluate_hold_no_helpers_code(name):
    trainer = gn.Trainer(get_model(name), backend="cpu", background_compile=False)
    backend = trainer.backend
    module = backend.module
    for fn, sig in signatures(backend, ("epoch", trainer.data.train, trainer._batches(), True)):
        getattr(module, fn).compile(sig)
    helpers = _array_helpers(module)
    for fn in ("train_epoch", "evaluate"):
        for cres in getattr(module, fn).overloads.values():
            held = [helpers[s] for s in _defined(cres.library) if s in helpers]
            assert not held, f"{name}: {fn} holds a copy of {held}"
    for fn in ("train_epoch", "evaluate"):   # what a later process binds is all the code needs
        for cres in getattr(module, fn).overloads.values():
            assert _unrecorded(cres.library) == set(), f"{name}: {fn}"
    declared = set()   # each of the module's helpers was called: by declaration, from whichever caller
    for value in vars(module).values():
        if isinstance(value, CPUDispatcher):
            for cres in value.overloads.values():
                declared |= {f.name for f in cres.library._get_module_for_linking().functions if f.is_declaration}
    own = {s for s in helpers if s.startswith(f"_ZN{len(module.__name__)}{module.__name__}")}
    assert own <= declared, f"{name}: linked in: {sorted(helpers[s] for s in own - declared)}"


def _unrecorded(library) -> set:
    """Symbols of compiled functions the library calls by declaration without listing them in
    its cache entry (a later process would not bind them)."""
    recorded = set(library.__dict__.get("_graphnn_declared", {}))
    declared = {fn.name for fn in library._get_module_for_linking().functions
                if fn.is_declaration and fn.name.startswith("_ZN") and not fn.name.startswith("_ZN5numba")}
    return declared - recorded


SCALAR_AND_ARRAY = textwrap.dedent('''
    import numpy as np
    from codegen.linking import njit

    @njit(cache=False, no_cpython_wrapper=True)
    def twice(x):
        return 2.0 * x

    @njit(cache=False, no_cpython_wrapper=True)
    def fill(out, v):
        for i in range(out.shape[0]):
            out[i] = twice(v)

    @njit(cache=False)
    def caller(out, v):
        fill(out, v)
        return twice(v)
''')


def test_a_function_of_scalars_is_linked_in_and_one_of_arrays_declared(isolated_cache, monkeypatch):
    monkeypatch.setattr(linking, "SMALL_LINES", 0)   # `fill` is short: declared whatever its length
    module = load_generated_module(SCALAR_AND_ARRAY, {"test": "linking"})
    out = np.zeros(3)
    assert module.caller(out, 1.5) == 3.0 and (out == 3.0).all()
    caller = next(iter(module.caller.overloads.values()))
    fill = next(iter(module.fill.overloads.values())).fndesc.mangled_name
    twice = next(iter(module.twice.overloads.values())).fndesc.mangled_name
    declared = {fn.name for fn in caller.library._get_module_for_linking().functions if fn.is_declaration}
    assert fill in declared and fill not in _defined(caller.library)
    assert twice not in declared   # linked in and inlined, as Numba does


def test_a_module_on_numbas_own_njit_keeps_numbas_linking(isolated_cache, monkeypatch):
    monkeypatch.setattr(linking, "SMALL_LINES", 0)
    module = load_generated_module(SCALAR_AND_ARRAY.replace("from codegen.linking import njit",
                                                            "from numba import njit"), {"test": "linking"})
    module.caller(np.zeros(2), 1.0)
    caller = next(iter(module.caller.overloads.values()))
    fill = next(iter(module.fill.overloads.values())).fndesc.mangled_name
    declared = {fn.name for fn in caller.library._get_module_for_linking().functions if fn.is_declaration}
    assert fill not in declared   # linked in (here inlined), as Numba does


LATER_RUN = textwrap.dedent("""
    import sys
    import numpy as np
    import graphnn as gn
    from graphnn.models import get_model
    name = sys.argv[1]
    model = get_model(name)
    compiled = gn.Trainer(model, backend='cpu', background_compile=False, seed=3)
    reference = gn.Trainer(model, backend='numpy', seed=3)
    a = compiled.fit(epochs=1)
    b = reference.fit(epochs=1)
    stats = compiled.backend.module.train_epoch.stats
    print('misses', sum(stats.cache_misses.values()), 'hits', sum(stats.cache_hits.values()))
    for key in compiled.params:
        np.testing.assert_allclose(compiled.params[key], reference.params[key], rtol=1e-10, atol=1e-10)
    print('equal')
""")


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_a_cached_caller_loads_after_a_parallel_compile_and_trains_as_the_reference(tmp_path, name):
    """``graphnn codegen --compile`` compiles train_epoch and evaluate in two processes, each
    compiling the helpers under its own symbols; the later process binds both."""
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    cli = subprocess.run([sys.executable, "-m", "graphnn", "codegen", name, "--compile"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert cli.returncode == 0, cli.stderr[-2000:]
    for _ in range(2):   # twice: the second process binds what the first loaded, nothing new compiled
        later = subprocess.run([sys.executable, "-c", LATER_RUN, name], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=900)
        assert later.returncode == 0, later.stderr[-3000:]
        assert "corrupted" not in later.stderr, later.stderr[-2000:]
        assert later.stdout.split()[-5:] == ["misses", "0", "hits", "1", "equal"], later.stdout


ODD_CALLEES = textwrap.dedent('''
    import numpy as np
    from codegen.linking import njit

    @njit(cache=True)
    def rows_of(a):
        for i in range(a.shape[0]):
            yield a[i]

    def _make():
        @njit(cache=True)
        def scaled(a):
            return 2.0 * a.sum()
        return scaled

    scaled = _make()

    @njit(cache=True)
    def caller(a):
        s = scaled(a)
        for r in rows_of(a):
            s += r
        return s
''')


def test_a_generator_and_a_nested_function_are_linked_in(isolated_cache, monkeypatch):
    """A generator's caller also calls its ``next``; a nested function is not found by name in a
    later process: declared, either would leave a symbol no cache entry binds."""
    monkeypatch.setattr(linking, "SMALL_LINES", 0)
    module = load_generated_module(ODD_CALLEES, {"test": "linking-odd"})
    assert module.caller(np.arange(3.0)) == 9.0
    caller = next(iter(module.caller.overloads.values()))
    assert _unrecorded(caller.library) == set()
    assert not caller.library.__dict__.get("_graphnn_declared")


def test_loading_from_cache_never_compiles_a_missing_callee(isolated_cache, monkeypatch):
    """codegen/cache.py's load_from_cache (the Trainer's check for a compiled module) says
    'not cached' when a cached caller's callee has no entry, and keeps the caller's entry."""
    from codegen import cache

    monkeypatch.setattr(linking, "SMALL_LINES", 0)
    source = SCALAR_AND_ARRAY.replace("cache=False", "cache=True")
    module = load_generated_module(source, {"test": "linking-missing"})
    out = np.zeros(3)
    module.caller(out, 1.5)
    pycache = isolated_cache / "__pycache__"
    for f in pycache.glob(f"{module.__name__}.fill-*"):
        f.unlink()
    del sys.modules[module.__name__]
    again = load_generated_module(source, {"test": "linking-missing"})
    sig = next(iter(module.caller.overloads))
    assert cache.load_from_cache(again.caller, sig) is False
    assert not again.fill.overloads and not again.caller.overloads   # nothing compiled
    assert list(pycache.glob(f"{module.__name__}.caller-*.nbi"))    # the caller's entry kept
    assert again.caller(out, 2.0) == 4.0 and (out == 4.0).all()     # a plain call compiles the callee


def test_a_short_callee_is_linked_in_as_numba_does(isolated_cache):
    module = load_generated_module(SCALAR_AND_ARRAY, {"test": "linking-short"})
    module.caller(np.zeros(2), 1.0)
    caller = next(iter(module.caller.overloads.values()))
    fill = next(iter(module.fill.overloads.values()))
    assert linking._small(fill.library, fill.fndesc)
    declared = {fn.name for fn in caller.library._get_module_for_linking().functions if fn.is_declaration}
    assert fill.fndesc.mangled_name not in declared


def test_an_unpatched_numba_refuses_an_entry_with_callees_whole():
    linking.install()
    from numba.core.registry import cpu_target

    state = ("caller", "object", (b"", b"", [("_ZN3sym", ("m", "f", ()))]))
    with pytest.raises(ValueError):   # Numba's own reader: before it loads any code
        linking.NUMBA_UNSERIALIZE(numba_codegen.JITCodeLibrary, cpu_target.target_context.codegen(), state)


def test_a_callee_that_is_not_loaded_is_an_error_naming_it():
    with pytest.raises(RuntimeError, match="graphnn_gen_gone.helper"):
        linking._callee("graphnn_gen_gone", "helper", ())
