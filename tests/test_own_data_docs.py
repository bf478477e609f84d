"""docs/own-data.md runs as written: its python blocks in order (one namespace, a scratch
folder), its `# file:` blocks written to disk, its `$ graphnn …` lines through the CLI.

The Fashion-MNIST lines need Kaggle's CSV files; the test writes small files of the same
layout (label, pixel1..pixel784; random pixels), so what runs is the reader and the model
file, not the accuracy on the real set."""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from graphnn.cli import main

pytest.importorskip("sklearn")     # the dev extra installs it; the page is about it
pytestmark = pytest.mark.usefixtures("private_cache_dir")

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"


def _blocks(text):
    return re.findall(r"```(python|console)\n(.*?)```", text, flags=re.S)


def _fashion_csv(path, rows, seed):
    rng = np.random.default_rng(seed)
    table = np.column_stack([rng.integers(0, 10, rows), rng.integers(0, 256, (rows, 784))])
    header = ",".join(["label"] + [f"pixel{i}" for i in range(1, 785)])
    np.savetxt(path, table, fmt="%d", delimiter=",", header=header, comments="")


def test_the_own_data_page_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))      # the page imports its own model file
    _fashion_csv("fashion-mnist_train.csv", 48, 0)
    _fashion_csv("fashion-mnist_test.csv", 16, 1)
    namespace = {"__name__": "own_data_doc"}
    blocks = _blocks(DOC.read_text(encoding="utf-8"))
    assert [kind for kind, _ in blocks].count("console") == 2
    outputs = []
    for kind, body in blocks:
        first = body.splitlines()[0]
        if kind == "python" and first.startswith("# file: "):
            Path(first[len("# file: "):].strip()).write_text(body, encoding="utf-8")
        elif kind == "python":
            exec(compile(body, str(DOC), "exec"), namespace)
        else:
            for line in body.splitlines():
                if line.startswith("$ graphnn "):
                    assert main(shlex.split(line[len("$ graphnn "):])) == 0, line
                    outputs.append(capsys.readouterr().out)
    assert Path("bc-curves.png").read_bytes()[:4] == b"\x89PNG" and Path("bc.png").exists()
    assert Path("bc.npz").exists() and Path("bc-best.npz").exists()
    cli = outputs[0]
    assert "early stopping" in cli or "epoch  200" in cli
    assert float(cli.split("test accuracy:")[1].split()[0]) > 0.9
    assert "test accuracy:" in outputs[1]          # the Fashion-MNIST layout was read and trained
