"""Two processes saving two signatures of one function into Numba's cache at once (a compiler
process compiling train_epoch's helpers beside this one: codegen/split_compile.py) keep both
entries, each naming its own code (codegen/cache_index_lock.py)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MODULE = textwrap.dedent("""
    from codegen.linking import njit   # the generated and stored kernel modules' decorator

    @njit(cache=True)
    def plus_one(x):
        return x + 1
""")

# Imports the module; with "race" it widens Numba's window between reading the index and writing it back: each
# process, having read it, waits (up to 3 s) until the other has read it too.
PROCESS = textwrap.dedent("""
    import glob, importlib.util, os, sys, time
    folder, mode, kind = sys.argv[1:4]
    from numba.core import caching, types
    if mode == "race":
        save_index = caching.IndexDataCacheFile._save_index
        def slow(self, overloads):
            open(os.path.join(folder, f"read_{os.getpid()}"), "w").close()
            deadline = time.time() + 3
            while len(glob.glob(os.path.join(folder, "read_*"))) < 2 and time.time() < deadline:
                time.sleep(0.01)
            return save_index(self, overloads)
        caching.IndexDataCacheFile._save_index = slow
    spec = importlib.util.spec_from_file_location("locked_module", os.path.join(folder, "locked_module.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["locked_module"] = module
    spec.loader.exec_module(module)
    f = module.plus_one
    if mode == "race":
        f.compile((types.float64 if kind == "float" else types.int64,))
    else:
        f.compile((types.float64,)); f.compile((types.int64,))
        print(sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()), f(1.5), f(1))
""")


def _run(folder, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", PROCESS, str(folder), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_saving_two_signatures_at_once_keep_both(tmp_path):
    (tmp_path / "locked_module.py").write_text(MODULE)
    racers = [_run(tmp_path, "race", kind) for kind in ("float", "int")]
    for p in racers:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    check = _run(tmp_path, "check", "")
    out, err = check.communicate(timeout=300)
    assert check.returncode == 0, err[-2000:]
    hits, misses, at_float, at_int = out.split()
    # both entries are in the index (no recompile), and each names its own code
    assert (hits, misses) == ("2", "0"), out
    assert (at_float, at_int) == ("2.5", "2"), out
    assert list(tmp_path.glob("__pycache__/locked_module.plus_one-*.nbi.lock"))


def test_every_function_the_kernel_modules_decorate_reads_its_index_under_the_lock():
    """The stored kernels (compiled once per install, by whichever process first needs one) and
    a generated module's functions alike: codegen/linking.py's njit applies the lock."""
    import graphnn as gn
    from codegen import generic_kernels, scalar_math
    from codegen.backend import CpuBackend
    from graphnn.models import get_model

    model = get_model("xor")
    module = CpuBackend(model, gn.Trainer(model, backend="numpy").optimizer, "float64").module
    for fn in (generic_kernels.copy_2d, scalar_math.tanh_f64, module.train_epoch, module.evaluate):
        assert fn._cache._cache_file._graphnn_locked, fn
