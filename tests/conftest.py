"""Test-wide settings: headless plotting, and a private compiled-code cache on request."""
import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def private_cache_dir(tmp_path_factory):
    """GRAPHNN_CACHE_DIR in a fresh folder for one test module (cold compiles, no stale code)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHNN_CACHE_DIR", str(tmp_path_factory.mktemp("gen")))
    yield
    mp.undo()
