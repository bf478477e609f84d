"""The Trainer (numpy and cpu backends): schedules, optimizers, history, progress, early
stopping, checkpoints, plots — through the Python API and the `graphnn` CLI."""
import subprocess
import sys

import numpy as np
import pytest

from graphnn.training.checkpoint import CheckpointError, load_checkpoint
from graphnn.cli import main
from graphnn.models import get_model
from graphnn.training import Trainer, fit


pytestmark = pytest.mark.usefixtures("private_cache_dir")


def test_cpu_and_numpy_trainers_agree_for_every_schedule():
    """Full batch, mini-batch and stochastic descent, with momentum: same history on both."""
    model = get_model("xor")
    for batch_size, optimizer in ((None, "sgd"), (2, "momentum"), (1, "adam")):
        runs = [Trainer(model, backend=b, batch_size=batch_size, optimizer=optimizer, lr=0.5, seed=3)
                for b in ("numpy", "cpu")]
        hist = [t.fit(epochs=5, progress=False) for t in runs]
        np.testing.assert_allclose(hist[0].losses, hist[1].losses, rtol=1e-10)
        for p in model.params:
            np.testing.assert_allclose(runs[0].params[p], runs[1].params[p], atol=1e-10)


def test_steps_mode_matches_reference_on_mazur():
    t = Trainer(get_model("mazur"), backend="cpu")
    h = t.fit(steps=1, progress=False)
    t_np = Trainer(get_model("mazur"), backend="numpy")
    h_np = t_np.fit(steps=1, progress=False)
    assert h.last() == pytest.approx(h_np.last(), rel=1e-12)
    w5 = t.params[t.model.find("W2")][0, 0]
    assert w5 == pytest.approx(t_np.params[t_np.model.find("W2")][0, 0], rel=1e-12)


def test_digits_cpu_reaches_95_percent_with_history():
    trainer = fit(get_model("digits-mlp"), epochs=20, backend="cpu", dtype="float32")
    hist = trainer.history
    assert len(hist) == 20 and [r["epoch"] for r in hist.records] == list(range(1, 21))
    assert hist.losses[-1] < hist.losses[0]
    assert set(hist.records[-1]) >= {"loss", "test_loss", "test_accuracy"}
    assert trainer.accuracy("test") >= 0.95


def test_early_stopping_restores_the_best_parameters():
    model = get_model("digits-mlp")
    trainer = Trainer(model, backend="cpu", lr=3.0, batch_size=16,   # too large: the loss wanders
                      validation_split=0.2)
    trainer.fit(epochs=30, early_stopping=2, progress=False)
    stop = trainer.early_stopping
    assert trainer.stopped_early and len(trainer.history) < 30
    assert stop.monitor == "val_loss"         # model selection on the validation set, never the test set
    assert trainer.loss("validation") == pytest.approx(stop.best, rel=1e-9)   # best parameters put back
    assert trainer.kept_row == stop.best_row
    with pytest.raises(ValueError, match="patience"):
        Trainer(model, backend="numpy").fit(epochs=1, early_stopping=-1)


def test_test_fraction_split_and_errors():
    model = get_model("xor")
    t = Trainer(model, backend="numpy", test_fraction=0.25)
    assert t.data.n_train == 3 and len(t.data.test["x"]) == 1
    with pytest.raises(ValueError, match="already has a test set"):
        Trainer(get_model("digits-mlp"), test_fraction=0.2)
    with pytest.raises(ValueError, match="exactly one of"):
        Trainer(model).fit(epochs=1, steps=1)


def test_checkpoint_round_trip_and_wrong_graph(tmp_path):
    model = get_model("digits-mlp")
    a = Trainer(model, backend="cpu", optimizer="adam", lr=0.01)
    a.fit(epochs=2, progress=False)
    path = a.save(tmp_path / "digits")
    assert path.endswith(".npz")
    b = Trainer(get_model("digits-mlp"), backend="numpy", optimizer="adam", lr=0.01).load(path)
    for p, q in zip(a.model.parameters, b.model.parameters):
        np.testing.assert_array_equal(a.params[p], b.params[q])
    assert b.epoch == 2 and b.backend.steps == a.backend.steps
    # continuing from the checkpoint on either backend gives the same next epoch (Adam state restored)
    a2 = Trainer(get_model("digits-mlp"), backend="cpu", optimizer="adam", lr=0.01).load(path)
    a2.rng, b.rng = [np.random.default_rng(5) for _ in range(2)]
    a2.fit(epochs=1, progress=False)
    b.fit(epochs=1, progress=False)
    assert a2.history.last() == pytest.approx(b.history.last(), rel=1e-9)
    with pytest.raises(CheckpointError, match="different graph"):
        load_checkpoint(path, get_model("digits-mlp", hidden=64))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz", model)


def test_plot_writes_a_png(tmp_path):
    t = Trainer(get_model("xor"), backend="numpy")
    with pytest.raises(ValueError, match="empty"):
        t.plot(tmp_path / "none.png")
    t.fit(steps=200, progress=False)
    out = t.plot(tmp_path / "curves.png")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_progress_bar_and_log_lines(capsys):
    rows = []
    Trainer(get_model("xor"), backend="numpy").fit(epochs=3, log=rows.append, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and len(rows) == 3


def test_cli_train_cpu_with_plot_checkpoint_and_cache(tmp_path, capsys):
    png, ck = tmp_path / "c.png", tmp_path / "ck.npz"
    assert main(["train", "digits-mlp", "--backend", "cpu", "--epochs", "20", "--dtype", "float32",
                 "--plot", str(png), "--checkpoint", str(ck), "--verbose"]) == 0
    out = capsys.readouterr()
    acc = float(out.out.split("test accuracy:")[1].split()[0])
    assert acc >= 0.95
    assert "20/20" in out.err                       # the progress bar (on stderr)
    assert png.exists() and ck.exists()
    assert "graphnn cache:" in out.out
    assert main(["train", "digits-mlp", "--backend", "cpu", "--epochs", "1", "--dtype", "float32",
                 "--resume", str(ck), "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert main(["train", "xor", "--backend", "cpu", "--resume", str(ck), "--steps", "1"]) == 2
    assert "different graph" in capsys.readouterr().err


def test_second_process_starts_from_the_cache(tmp_path):
    env_cache = {"GRAPHNN_CACHE_DIR": str(tmp_path / "cache")}
    import os
    cmd = [sys.executable, "-m", "graphnn", "train", "mazur", "--backend", "cpu", "--steps", "10",
           "--verbose", "--no-progress"]
    first = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env_cache})
    second = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env_cache})
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "graphnn cache: miss" in first.stdout
    assert "graphnn cache: hit" in second.stdout and "compiled code cached" in second.stdout
    assert first.stdout.split("final loss:")[1] == second.stdout.split("final loss:")[1]


def test_cli_codegen_prints_the_module(capsys):
    assert main(["codegen", "mazur"]) == 0
    src = capsys.readouterr().out
    assert "def train_epoch(" in src and "@njit(**JIT)" in src
    assert main(["codegen", "digits-mlp", "--schedule"]) == 0
    assert "MatMul(" in capsys.readouterr().out
    assert main(["codegen", "perceptron-and"]) == 2
    assert "perceptron rule" in capsys.readouterr().err
    assert main(["codegen", "--cache-info"]) == 0
    out = capsys.readouterr().out
    assert "cache directory" in out and " modules, " in out and " plans, " in out
