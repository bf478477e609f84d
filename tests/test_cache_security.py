"""The compiled-code cache cannot be planted, repairs itself, and never stops a run (issue 17).

A generated module is code that runs, and Numba's cache files are pickles: nothing in the
cache folder is executed unless only this user could have written it and it is exactly
the source being loaded. Corrupted entries are rebuilt with a one-line notice; a folder
that cannot be written (read-only, disk full) compiles in memory with a notice.
"""
from __future__ import annotations

import errno
import os
import sys
import textwrap
from pathlib import Path

import pytest

from codegen import cache
from codegen.cache import cache_info, load_generated_module

SOURCE = textwrap.dedent('''
    from numba import njit

    @njit(cache=True)
    def triple(x):
        return 3.0 * x
''')
KEY = {"graph": "security"}


@pytest.fixture(autouse=True)
def fresh_modules():
    yield
    for name in [n for n in sys.modules if n.startswith(cache.PREFIX)]:
        del sys.modules[name]


def _plant(folder: Path, marker: Path) -> Path:
    """A module under the name the real one will have, which leaves a marker if it ever runs."""
    name = cache.PREFIX + cache.cache_key(SOURCE, KEY)[:16]
    path = folder / f"{name}.py"
    path.write_text(f"open({str(marker)!r}, 'w').write('planted code ran')\n"
                    "def triple(x):\n    return -1.0\n")
    return path


def _use(folder, monkeypatch):
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder.parent / "private"))
    return load_generated_module(SOURCE, KEY)


def test_a_folder_others_can_write_is_not_used(tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    marker = tmp_path / "pwned"
    _plant(shared, marker)
    mod = _use(shared, monkeypatch)
    assert mod.triple(2.0) == 6.0 and not marker.exists()
    assert Path(mod.__file__).parent == tmp_path / "private" / "graphnn"   # the private fallback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "writable by group and others" in err[0] and str(shared) in err[0]


def test_a_file_in_place_of_the_folder_is_named_as_such(tmp_path, monkeypatch, capsys):
    """GRAPHNN_CACHE_DIR naming a file said 'is not a folder; another user could plant code
    there': the notice now says what is wrong and nothing about other users."""
    plain = tmp_path / "f"
    plain.write_text("")
    mod = _use(plain, monkeypatch)
    assert mod.triple(2.0) == 6.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{plain} is not a folder" in err[0], err
    assert "another user" not in err[0]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_a_folder_owned_by_another_user_is_not_used(tmp_path, monkeypatch, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    marker = tmp_path / "pwned"
    planted = _plant(theirs, marker)
    os.chown(theirs, 54321, 54321)
    os.chown(planted, 54321, 54321)
    mod = _use(theirs, monkeypatch)
    assert mod.triple(1.0) == 3.0 and not marker.exists()
    assert "owned by user id 54321" in capsys.readouterr().err


def test_a_planted_module_in_our_own_folder_is_discarded_unrun(tmp_path, monkeypatch, capsys):
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    marker = tmp_path / "pwned"
    planted = _plant(ours, marker)
    mod = _use(ours, monkeypatch)
    assert mod.triple(2.0) == 6.0 and not marker.exists()
    assert planted.read_text() == SOURCE                  # rebuilt with the real source
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match its content hash" in err[0]


def test_a_symlink_in_place_of_a_module_is_not_followed(tmp_path, monkeypatch, capsys):
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    marker = tmp_path / "pwned"
    elsewhere = _plant(tmp_path, marker)
    (ours / elsewhere.name).symlink_to(elsewhere)
    mod = _use(ours, monkeypatch)
    assert mod.triple(2.0) == 6.0 and not marker.exists()
    assert not (ours / elsewhere.name).is_symlink()
    assert "plain file" in capsys.readouterr().err


def test_corrupted_numba_files_are_rebuilt_with_one_notice(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cache"
    mod = _use(folder, monkeypatch)
    assert mod.triple(1.0) == 3.0                       # compiles, Numba writes its files
    files = sorted((folder / "__pycache__").glob(f"{mod.__name__}.*"))
    assert any(f.suffix == ".nbi" for f in files) and any(f.suffix == ".nbc" for f in files)
    for f in files:
        f.write_bytes(b"corrupted \x00\xff" * 3)
    del sys.modules[mod.__name__]                       # as a fresh process would
    capsys.readouterr()
    again = load_generated_module(SOURCE, KEY)
    assert again.triple(2.0) == 6.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupted: discarded, recompiling" in err[0]
    del sys.modules[mod.__name__]
    third = load_generated_module(SOURCE, KEY)           # repaired: loads cleanly from the cache
    assert third.triple(3.0) == 9.0 and cache_info()["events"][-1].numba_index_present
    assert capsys.readouterr().err == ""


def test_a_full_disk_compiles_in_memory_with_a_notice(tmp_path, monkeypatch, capsys):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache.tempfile, "mkstemp", full)
    mod = load_generated_module(SOURCE, KEY)
    assert mod.triple(2.0) == 6.0 and cache_info()["events"][-1].in_memory
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "compiling in memory" in err[0]


def test_numba_failing_to_save_its_cache_does_not_stop_the_run(tmp_path, monkeypatch, capsys):
    from numba.core import caching

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(caching.IndexDataCacheFile, "save", full)
    mod = _use(tmp_path / "cache", monkeypatch)
    assert mod.triple(2.0) == 6.0
    assert "cannot save compiled code (No space left on device)" in capsys.readouterr().err
