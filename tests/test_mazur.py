"""Mazur's 2-2-2 example: every number of one step, and 10,000 steps, against the
independently computed reference file (read here, never copied into the library)."""
import json
from pathlib import Path

import numpy as np
import pytest

import graphnn as gn
from graphnn.models import get_model
from graphnn.training import Trainer

REF_PATH = Path(__file__).resolve().parents[2] / "shared" / "reference" / "mazur_2_2_2.json"


@pytest.fixture(scope="module")
def ref():
    if not REF_PATH.exists():  # CI clones next to shared/; a bare checkout has no reference
        pytest.skip(f"reference file not found at {REF_PATH}")
    return json.loads(REF_PATH.read_text())


def element_values(model, values):
    """Every named element of the forward graph → its value."""
    out = {}
    for node in model.graph:
        if node.names is not None and node in values:
            flat, shape = node.names
            v = values[node].reshape(-1, int(np.prod(shape)) if shape else 1)[0]
            out.update({name: float(x) for name, x in zip(flat, v)})
    return out


def test_one_step_reproduces_every_number(ref):
    m = get_model("mazur")
    W1, W2 = m.find("W1"), m.find("W2")
    grads = gn.grad(m.loss, [W1, W2])
    (E, g1, g2), values = gn.evaluate([m.loss, grads[W1], grads[W2]], m.example, return_values=True)
    named = element_values(m, values)
    for key, expected in ref["forward"].items():
        assert named[key] == pytest.approx(expected, rel=1e-9), key
    assert named["E_o1"] == pytest.approx(ref["E_o1"], rel=1e-9)
    assert named["E_o2"] == pytest.approx(ref["E_o2"], rel=1e-9)
    assert float(E) == pytest.approx(ref["E_total"], rel=1e-9)
    grad_by_name = {n: float(v) for node, arr in ((W1, g1), (W2, g2)) for n, v in zip(node.names[0], arr.ravel())}
    for k in range(1, 9):
        assert grad_by_name[f"w{k}"] == pytest.approx(ref["gradients"][f"dE_dw{k}"], rel=1e-9), k

    trainer = Trainer(m, lr=ref["learning_rate"])
    trainer.fit(steps=1)
    updated = {n: float(v) for p in (W1, W2) for n, v in zip(p.names[0], trainer.params[p].ravel())}
    for name, expected in ref["updated_weights_after_one_step"].items():
        assert updated[name] == pytest.approx(expected, rel=1e-9), name
    assert trainer.history.last() == pytest.approx(ref["E_total_after_one_step"], rel=1e-9)
    # biases are fixed parameters: untouched
    assert trainer.params[m.find("b1")][0] == ref["b1"]


def test_bias_gradients_are_available_when_asked(ref):
    m = get_model("mazur")
    b1, b2 = m.find("b1"), m.find("b2")
    g = gn.grad(m.loss, [b1, b2])
    db1, db2 = gn.evaluate([g[b1], g[b2]], m.example)
    assert float(db1[0]) == pytest.approx(ref["bias_gradients_not_used_by_mazur"]["dE_db1"], rel=1e-9)
    assert float(db2[0]) == pytest.approx(ref["bias_gradients_not_used_by_mazur"]["dE_db2"], rel=1e-9)


def test_cli_ten_thousand_steps(ref, capsys):
    from graphnn.cli import main

    assert main(["train", "mazur", "--backend", "numpy", "--steps", "10000", "--lr", "0.5"]) == 0
    out = capsys.readouterr().out
    final = float(out.strip().splitlines()[-1].split(":")[1])
    expected = ref["training_runs"]["simultaneous_update_biases_fixed"]["10000"]["E_total"]
    assert final == pytest.approx(expected, rel=1e-9)
    step100 = next(line for line in out.splitlines() if line.startswith("step    1000 "))
    assert float(step100.split()[-1]) == pytest.approx(
        ref["training_runs"]["simultaneous_update_biases_fixed"]["1000"]["E_total"], rel=1e-9)
