"""Every file graphnn writes goes through the one atomic writer (graphnn/files.py): a failure
at the last moment (the rename) keeps the old file and leaves no temporary file behind.

Before, a drawing left `.NAME.tmp` and a derivation its NamedTemporaryFile when the write
failed, and a concurrent drawing of the same name shared one temporary file."""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphnn as gn
from graphnn import files
from graphnn.draw import save
from graphnn.models import get_model
from graphnn.training import save_checkpoint


def _writers(tmp_path):
    model = get_model("mazur")
    return {
        "derivation.md": lambda p: gn.derive(model, "w5", values=True).save(p),
        "drawing.dot": lambda p: save(gn.draw(model, view="neurons"), p),
        "checkpoint.npz": lambda p: save_checkpoint(p, model, {n: n.value for n in model.parameters}),
        "text.txt": lambda p: files.write_text(p, "new"),
    }


@pytest.mark.parametrize("name", ["derivation.md", "drawing.dot", "checkpoint.npz", "text.txt"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, name):
    write = _writers(tmp_path)[name]
    target = tmp_path / name
    target.write_bytes(b"old")

    def crash(src, dst):
        raise OSError("disk full at the rename")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write(target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    monkeypatch.undo()
    write(target)                                   # and then it writes
    assert target.read_bytes() != b"old"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_symlink_is_replaced_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep")
    link = tmp_path / "out.txt"
    link.symlink_to(elsewhere)
    files.write_text(link, "new")
    assert elsewhere.read_text() == "keep" and link.read_text() == "new" and not link.is_symlink()
    assert np.array_equal(np.frombuffer(files.write_bytes(tmp_path / "b", b"\x01").read_bytes(), np.uint8), [1])


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """A write killed between mkstemp and the rename left `.NAME.*.tmp` for ever; an old one is
    now removed by the next write of the same file (a fresh one may be a live writer's)."""
    target = tmp_path / "model.npz"
    old, fresh = tmp_path / ".model.npz.abc123.tmp", tmp_path / ".model.npz.def456.tmp"
    other = tmp_path / ".other.npz.abc123.tmp"
    for p in (old, fresh, other):
        p.write_bytes(b"half")
    hours_ago = os.path.getmtime(old) - 2 * files.STALE_AFTER
    os.utime(old, (hours_ago, hours_ago))
    os.utime(other, (hours_ago, hours_ago))
    files.write_bytes(target, b"whole")
    assert not old.exists() and fresh.exists() and other.exists() and target.read_bytes() == b"whole"
