"""NaN and inf on the compiled CPU backend: caught, the node named, no checkpoint overwritten (issue 17)."""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.models import get_model
from graphnn.training import Trainer
from graphnn.training.checkpoint import load_checkpoint

DIVERGES = ["linear-regression", "--lr", "100", "--backend", "cpu", "--no-progress"]


def _reference_error(steps):
    t = Trainer(get_model("linear-regression"), lr=100)
    with pytest.raises(gn.NonFiniteError) as err:
        t.fit(steps=steps, progress=False)
    return str(err.value)


@pytest.mark.parametrize("schedule", [["--epochs", "400"], ["--steps", "400"]])
def test_a_diverging_compiled_run_stops_names_the_node_and_keeps_the_checkpoint(schedule, tmp_path, capsys):
    ck = tmp_path / "x.npz"
    assert main(["train", *DIVERGES, "--epochs", "10", "--checkpoint", str(ck)]) == 0
    good = load_checkpoint(ck, get_model("linear-regression"))
    assert main(["train", *DIVERGES, *schedule, "--checkpoint", str(ck)]) == 2
    err = capsys.readouterr().err
    assert "training step 44" in err and "'L_elements' is the first to produce inf" in err
    assert "Traceback" not in err
    after = load_checkpoint(ck, get_model("linear-regression"))   # whole and finite
    assert all(np.isfinite(v).all() for v in after.params.values())
    if schedule[0] == "--steps":   # steps runs save at the end only: the old file is untouched
        assert after.epoch == good.epoch and after.steps == good.steps
    else:                          # epoch runs save each good epoch, never the bad one
        assert after.epoch == 43


def test_the_compiled_backend_names_the_node_the_reference_names():
    reference = _reference_error(400)
    t = Trainer(get_model("linear-regression"), lr=100, backend="cpu")
    with pytest.raises(gn.NonFiniteError) as err:
        t.fit(epochs=400, progress=False)
    assert str(err.value).endswith(reference)
    # the parameters are those from before the bad step: finite, as the last good epoch left them
    assert all(np.isfinite(v).all() for v in t.params.values()) and t.backend.steps == 43


@pytest.mark.parametrize("schedule", [{"epochs": 1}, {"steps": 1}])
def test_nan_in_the_training_data_is_named(schedule):
    model = get_model("linear-regression")
    data = {k: np.array(v, dtype=float) for k, v in model.data.train.items()}
    data["x"][2, 0] = np.nan
    t = Trainer(model, backend="cpu", data=gn.Dataset(data))
    with pytest.raises(gn.NonFiniteError, match=r"input 'x' holds nan at index \(2, 0\)"):
        t.fit(progress=False, **schedule)


@pytest.mark.parametrize("backend,background", [("numpy", None), ("cpu", True)], ids=["numpy", "cpu-while-compiling"])
def test_every_backend_names_the_step_of_a_divergence(backend, background, monkeypatch):
    """The reference (and the cpu backend while it still trains on the reference, compiling in
    the background) said which node overflowed but not at which step; the compiled backends
    did: every backend now says 'training step 44: …'."""
    if background:   # keep the compile from finishing first: the reference trains throughout
        import codegen.background as bg

        def never_ready(*args, cancelled, **kwargs):
            cancelled.wait(600)
            raise bg.Cancelled

        monkeypatch.setattr(bg, "prepare", never_ready)
    t = Trainer(get_model("linear-regression"), lr=100, backend=backend, background_compile=background)
    with pytest.raises(gn.NonFiniteError) as err:
        t.fit(epochs=400, progress=False)
    assert str(err.value).startswith("training step 44: "), str(err.value)
    assert "'L_elements' is the first to produce inf" in str(err.value)
    assert str(err.value).count("training step") == 1


def _sqrt_of_negatives():
    from graphnn.data import Dataset
    from graphnn.model import Model

    rng = np.random.default_rng(0)
    x = gn.input("x", (None, 3))
    y = gn.tanh(gn.sqrt(x @ gn.parameter("W", rng.normal(size=(3, 4))), name="roots"), name="y")
    X = rng.normal(size=(6, 3))
    return Model("nan-inside", gn.sum(y), y, (x,), Dataset({"x": X})), {"x": X}


@pytest.mark.parametrize("what", ["predict", "evaluate", "loss"])
def test_compiled_predict_and_evaluate_name_the_node_that_made_a_nan(what):
    """The reference's predict, evaluate and loss raise NonFiniteError naming the node; the
    compiled backend returned the NaNs (training stopped, a prediction did not)."""
    from codegen import CpuBackend
    from graphnn.optim import make_optimizer
    from graphnn.training import NumpyBackend

    model, feeds = _sqrt_of_negatives()
    with pytest.raises(gn.NonFiniteError, match="node 'roots' is the first to produce NaN") as want:
        getattr(NumpyBackend(model, make_optimizer("sgd", lr=0.1)), what)(feeds)
    with pytest.raises(gn.NonFiniteError) as got:
        getattr(CpuBackend(model, make_optimizer("sgd", lr=0.1)), what)(feeds)
    assert str(got.value) == str(want.value)
    trainer = Trainer(model, backend="cpu", background_compile=False)
    with pytest.raises(gn.NonFiniteError, match="'roots'"):
        trainer.predict(feeds["x"])


def test_a_nan_only_the_compiled_predict_makes_is_reported_as_a_codegen_bug(monkeypatch):
    from codegen import CpuBackend
    from graphnn.optim import make_optimizer

    model = get_model("xor")
    cpu = CpuBackend(model, make_optimizer("sgd", lr=0.1))
    real = CpuBackend._output
    monkeypatch.setattr(CpuBackend, "_output", lambda self, batch: real(self, batch) * np.nan)
    with pytest.raises(gn.NonFiniteError, match=r"predict: the compiled 'cpu' backend computed NaN/inf, but the "
                                                r"NumPy reference \(float64\) computes it finite: please report it"):
        cpu.predict(model.data.train)
