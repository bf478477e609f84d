"""``graphnn demo`` (the README's first command): the tour runs, writes its three files, and
refuses a bad option before it writes anything (it ran section 1 first; -o onto a file was
"[Errno 17] File exists")."""
from __future__ import annotations

import pytest

from graphnn.cli import main


def test_the_demo_runs_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "tour"
    assert main(["demo", "--backend", "numpy", "--epochs", "1", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "∂E_total/∂w_5" in text and "test accuracy" in text
    assert sorted(p.name for p in out.iterdir()) == ["mazur_neurons.svg", "mazur_w5.html", "mazur_w5.tex"]


@pytest.mark.parametrize("argv, message", [
    (["--backend", "bogus"], "--backend bogus: unknown backend; available: cpu, cuda, numpy"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["-o", "{file}"], "cannot make the folder for the demo's files (File exists")])
def test_a_bad_demo_option_is_one_line_before_anything_is_written(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("mine")
    argv = [a.replace("{file}", "a-file") for a in argv]
    assert main(["demo", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
