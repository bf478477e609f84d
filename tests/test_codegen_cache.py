"""The on-disk cache of generated Numba modules: hits, misses, and cache=True across processes."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from codegen import cache
from codegen import cache_info, clear_cache, load_generated_module

REPO = Path(__file__).resolve().parents[1]

# Enough loop code that compiling it takes a noticeable fraction of a second, so the
# cached second process is measurably faster.
SOURCE = textwrap.dedent('''
    import numpy as np
    from numba import njit

    @njit(cache=True)
    def affine_tanh(x, w, b, out):
        n, k = x.shape
        m = w.shape[1]
        for i in range(n):
            for j in range(m):
                acc = b[j]
                for p in range(k):
                    acc += x[i, p] * w[p, j]
                out[i, j] = np.tanh(acc)
        return out

    @njit(cache=True)
    def softmax_rows(z):
        out = np.empty_like(z)
        for i in range(z.shape[0]):
            m = z[i].max()
            s = 0.0
            for j in range(z.shape[1]):
                out[i, j] = np.exp(z[i, j] - m)
                s += out[i, j]
            out[i] /= s
        return out

    @njit(cache=True)
    def forward(x, w, b):
        h = affine_tanh(x, w, b, np.empty((x.shape[0], w.shape[1])))
        return softmax_rows(h).sum()
''')


pytestmark = pytest.mark.usefixtures("isolated_cache")   # (tests/conftest.py)


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)


def test_load_runs_and_second_load_is_hit(isolated_cache, capsys):
    before = cache_info()
    mod = load_generated_module(SOURCE, {"graph": "g1", "dtype": "float64"}, verbose=True)
    assert mod.__name__.startswith("graphnn_gen_") and len(mod.__name__) == len("graphnn_gen_") + 16
    assert sys.modules[mod.__name__] is mod
    assert Path(mod.__file__).parent == isolated_cache
    x, w, b = _inputs()
    # softmax rows sum to one each
    assert mod.forward(x, w, b) == pytest.approx(x.shape[0])
    assert "miss" in capsys.readouterr().out

    again = load_generated_module(SOURCE, {"dtype": "float64", "graph": "g1"}, verbose=True)
    assert again is mod                      # key parts are order-independent
    out = capsys.readouterr().out
    assert out.startswith("graphnn cache: hit ") and "compiled code cached" in out
    info = cache_info()
    assert info["hits"] == before["hits"] + 1 and info["misses"] == before["misses"] + 1
    assert info["modules"] == 1 and info["numba_indexes"] >= 1
    first, second = info["events"][-2:]
    assert (first.source_hit, second.source_hit) == (False, True)
    assert second.numba_index_present and second.key == first.key


def test_different_source_or_key_parts_gives_different_module():
    a = load_generated_module(SOURCE, {"graph": "g"})
    b = load_generated_module(SOURCE + "\nEXTRA = 1\n", {"graph": "g"})
    c = load_generated_module(SOURCE, {"graph": "g", "dtype": "float32"})
    assert len({a.__name__, b.__name__, c.__name__}) == 3
    assert cache.cache_key(SOURCE, {"graph": "g"}) != cache.cache_key(SOURCE + " ", {"graph": "g"})
    assert cache_info()["modules"] == 3


def test_source_on_disk_is_a_hit_and_not_rewritten(isolated_cache):
    mod = load_generated_module(SOURCE, {"graph": "disk"})
    path = Path(mod.__file__)
    stat = path.stat()
    del sys.modules[mod.__name__]            # as if in a fresh process
    again = load_generated_module(SOURCE, {"graph": "disk"})
    assert again is not mod and cache_info()["events"][-1].source_hit
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert not list(isolated_cache.glob(".*.tmp"))


def test_clear_cache_removes_files_and_modules(isolated_cache):
    mod = load_generated_module(SOURCE, {"graph": "clear"})
    mod.forward(*_inputs())                  # compile, so Numba writes its index
    assert list((isolated_cache / "__pycache__").glob("graphnn_gen_*.nbi"))
    assert clear_cache() >= 3                # .py, .nbi, .nbc
    assert mod.__name__ not in sys.modules
    info = cache_info()
    assert info["modules"] == 0 and info["numba_indexes"] == 0 and info["bytes"] == 0
    assert clear_cache() == 0


def test_unwritable_dir_compiles_in_memory_with_a_notice(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    # A path under a regular file cannot be created, even by root (chmod would not stop root).
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(blocker / "cache"))
    mod = load_generated_module(SOURCE, {"graph": "unwritable"})
    assert mod.forward(*_inputs()) == pytest.approx(8)
    assert cache_info()["events"][-1].in_memory
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blocker / "cache") in err[0] and "compiling in memory" in err[0]


def test_default_dir_respects_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "graphnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path.home() / ".cache" / "graphnn"


CHILD = textwrap.dedent('''
    import json, sys, time
    import numpy as np, numba
    from codegen import cache
    source = open(sys.argv[1]).read()
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((8, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    t0 = time.perf_counter()
    mod = cache.load_generated_module(source, {"graph": "subprocess"})
    value = mod.forward(x, w, b)
    elapsed = time.perf_counter() - t0
    ev = cache.cache_info()["events"][-1]
    print(json.dumps({"elapsed": elapsed, "value": value, "source_hit": ev.source_hit,
                      "index": ev.numba_index_present, "name": mod.__name__}))
''')


def test_second_process_uses_numba_cache(isolated_cache, tmp_path):
    src_file = tmp_path / "model_src.py.txt"
    src_file.write_text(SOURCE)
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(isolated_cache), PYTHONPATH=str(REPO))

    def child():
        proc = subprocess.run([sys.executable, "-c", CHILD, str(src_file)], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first = child()
    assert not first["source_hit"] and not first["index"]
    # Numba wrote its compiled index next to the generated module.
    assert list((isolated_cache / "__pycache__").glob(first["name"] + ".*.nbi"))
    second = child()
    assert second["source_hit"] and second["index"]
    assert second["value"] == pytest.approx(first["value"])
    # Load + first call: compiled vs. loaded from Numba's cache (timed after imports).
    assert second["elapsed"] < 0.5 or second["elapsed"] * 2 < first["elapsed"], (first, second)
