"""Test-wide settings: headless plotting, a private compiled-code cache on request (per module
or per test), and require_program (a system tool: skipped locally when missing, a failure on CI)."""
import os
import shutil
import sys

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def private_cache_dir(tmp_path_factory):
    """GRAPHNN_CACHE_DIR in a fresh folder for one test module (cold compiles, no stale code)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHNN_CACHE_DIR", str(tmp_path_factory.mktemp("gen")))
    yield
    mp.undo()


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """GRAPHNN_CACHE_DIR in a fresh folder for one test (yielded); the generated modules it
    imported are forgotten afterwards (their names depend only on the key, so the next test
    would get them back instead of loading from its own folder)."""
    from codegen import cache

    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    for name in [n for n in sys.modules if n.startswith(cache.PREFIX)]:
        del sys.modules[name]


@pytest.fixture
def interpreted(monkeypatch):
    """Generated modules run as plain Python (Numba's DISABLE_JIT at decoration), then forgotten:
    the whole generated pipeline checked without paying a compile per graph."""
    from numba.core import config

    from codegen import cache

    # the stored kernels too: imported first here, they would be plain functions to every
    # compiled module of this process after (Numba: "untyped global name 'matmul_nt'"); imported
    # (compiled) before, the interpreted module would call Numba's dispatchers, and one that had
    # to compile a new signature here would meet Numba's own overloads made plain functions by
    # DISABLE_JIT ("'function' object has no attribute 'get_call_template'"): the test gets
    # fresh plain copies, and the compiled ones come back after it
    stored = ("codegen.generic_kernels", "codegen.modern_kernels", "codegen.scalar_math")
    compiled = {n: sys.modules.pop(n) for n in stored if n in sys.modules}
    before = set(sys.modules)
    # the variable too: Numba reloads its config from the environment when that changes
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "1")
    monkeypatch.setattr(config, "DISABLE_JIT", True)
    yield
    for name in [n for n in sys.modules if (n.startswith(cache.PREFIX) or n in stored) and n not in before]:
        del sys.modules[name]
        package, _, attr = name.rpartition(".")
        if name in stored and hasattr(sys.modules.get(package), attr):
            delattr(sys.modules[package], attr)
    for name, module in compiled.items():
        sys.modules[name] = module
        package, _, attr = name.rpartition(".")
        setattr(sys.modules[package], attr, module)


def require_program(*names: str) -> str:
    """Path of the first program found; skip locally, fail on CI, when none is."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    msg = f"{names[0]} not found; scripts/install_system_deps.sh installs it"
    if os.environ.get("CI"):
        pytest.fail(msg + " (CI is set, so this is an error)")
    pytest.skip(msg)


# The tests of compiled kernels must run them: the suite compiles before the first batch unless
# a test asks for the background compile itself (background_compile=True; tests/test_background.py).
os.environ.setdefault("GRAPHNN_BACKGROUND_COMPILE", "0")

# The oracle checks itself in every test: each op's reference output against its node's
# declared shape and dtype (graphnn/evaluate.py).
os.environ.setdefault("GRAPHNN_CHECK_SHAPES", "1")
