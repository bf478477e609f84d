"""A user's training arrays, checked the same way on every backend and schedule (bug hunt s5b)."""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn


def _mlp():
    x, t = gn.input("x", (None, 3)), gn.input("y", (None, 1))
    p = gn.dense(gn.dense(x, 4, "tanh", name="h"), 1, name="out")
    return gn.Model("mlp", gn.losses.mse(p, t, name="L"), p, (x, t), task="regression")


@pytest.mark.parametrize("backend, background", [("numpy", None), ("cpu", True), ("cpu", False)])
@pytest.mark.parametrize("schedule", [{"epochs": 2}, {"steps": 3}])
def test_nan_in_mini_batched_data_is_named_by_its_row_in_the_data(backend, background, schedule):
    """inf at row 3 of y was reported at 'index (0, 0)' (its row inside a shuffled batch) by
    the cpu backend while it compiled in the background, and by steps without it."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.normal(size=10)
    y[3] = np.inf
    X[7, 2] = np.nan
    trainer = gn.Trainer(_mlp(), backend=backend, background_compile=background, batch_size=4)
    with pytest.raises(gn.NonFiniteError, match=r"^input 'x' holds nan at index \(7, 2\): data must be finite"):
        trainer.fit(X, y, progress=False, **schedule)
    X[7, 2] = 0.5
    with pytest.raises(gn.NonFiniteError, match=r"^input 'y' holds inf at index \(3, 0\): data must be finite"):
        trainer.fit(X, y, progress=False, **schedule)
    assert trainer.step == 0                     # refused before any update


def test_a_wrong_shape_is_named_with_the_datas_shape_before_training():
    """(10, 2) for x (None, 3) with batches of 4 was reported as 'got (4, 2)', a batch's shape,
    once the first step ran; now the whole array's, before the first update."""
    rng = np.random.default_rng(0)
    trainer = gn.Trainer(_mlp(), batch_size=4)
    with pytest.raises(gn.FeedError, match=r"^input 'x' expects shape \(B, 3\), got \(10, 2\)$"):
        trainer.fit(rng.normal(size=(10, 2)), rng.normal(size=10), epochs=1, progress=False)
    with pytest.raises(gn.FeedError, match=r"^input 'y' expects shape \(B, 1\), got \(10, 2\)$"):
        trainer.fit(rng.normal(size=(10, 3)), rng.normal(size=(10, 2)), epochs=1, progress=False)
    with pytest.raises(gn.FeedError, match=r"^input 'x' expects shape \(B, 3\), got \(5, 2\)$"):
        trainer.fit(rng.normal(size=(10, 3)), rng.normal(size=10), epochs=1, progress=False,
                    validation_data=(rng.normal(size=(5, 2)), rng.normal(size=5)))
    assert trainer.step == 0


def _classifier():
    x, t = gn.input("x", (None, 3), names=("a", "b", "c")), gn.input("label", (None, 3))
    z = gn.dense(gn.dense(x, 4, "tanh", name="h"), 3, name="out")
    return gn.Model("cls", gn.losses.softmax_cross_entropy(z, t), z, (x, t), task="classification",
                    defaults={"lr": 0.1, "epochs": 2, "batch_size": 4})


def test_class_indices_as_a_column_train_like_one_hot_and_a_fraction_is_named():
    """A (N, 1) column of class indices (a one-column frame) was refused as 'row 0 sums to 2,
    not 1'; a label 1.5 was reported as 'must be class indices 0..2, got 0..2'."""
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(12, 3)), np.arange(12) % 3
    ref = gn.fit(_classifier(), X, np.eye(3)[labels], epochs=2, progress=False).history.losses
    got = gn.fit(_classifier(), X, labels[:, None], epochs=2, progress=False).history.losses
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    fraction = labels.astype(float)
    fraction[5] = 1.5
    with pytest.raises(gn.FeedError, match=r"^input 'label' takes one-hot rows of 3 classes; .* got 1\.5 at row 5$"):
        gn.fit(_classifier(), X, fraction, epochs=1, progress=False)


MODEL_FILE = '''import graphnn as gn
def build():
    x, t = gn.input("x", (None, 3), names=("a", "b", "c")), gn.input("y", (None, 1))
    p = gn.dense(gn.dense(x, 4, "tanh", name="h"), 1, name="out")
    return gn.Model("mlp", gn.losses.mse(p, t, name="L"), p, (x, t), task="regression",
                    defaults={"lr": 0.05, "epochs": 1, "batch_size": 4})
'''


def _csv_text(header, rows):
    return header + "\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n"


@pytest.mark.parametrize("case, expected", [
    ("wrong shape", "shape.npz: input 'x' expects shape (B, 3), got (10, 2)"),
    ("no rows", "empty.npz: array 'x' has no rows (shape (0, 3)): expected one row per example"),
    ("latin-1", "latin.csv is not UTF-8 text (byte 0xe9 at offset 6); save it as UTF-8 CSV"),
    ("a column twice", "twice.csv: input 'x' reads column 'c', which the header names 2 times (columns 3, 4)"),
    ("byte-order mark", None),
])
def test_data_file_mistakes_are_one_line_naming_the_file(case, expected, tmp_path, capsys):
    from graphnn.cli import main

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)).round(6), rng.normal(size=10).round(6)
    (tmp_path / "m.py").write_text(MODEL_FILE)
    name = {"wrong shape": "shape.npz", "no rows": "empty.npz", "latin-1": "latin.csv",
            "a column twice": "twice.csv", "byte-order mark": "bom.csv"}[case]
    path = tmp_path / name
    if case == "wrong shape":          # was 'got (4, 2)': a batch's shape, and no file named
        np.savez(path, x=X[:, :2], y=y)
    elif case == "no rows":            # was 'the training split is empty (a test fraction too large…?)'
        np.savez(path, x=X[:0], y=y[:0])
    elif case == "latin-1":            # was the codec's message alone, naming no file
        path.write_bytes(_csv_text("a,b,c,é", np.column_stack([X, y])).encode("latin-1"))
    elif case == "a column twice":     # was read from the last 'c' without a word
        path.write_text(_csv_text("a,b,c,c,y", np.column_stack([X, X[:, 2] + 1, y])))
    else:                              # Excel's UTF-8 CSV: its first column was named '\ufeffa'
        path.write_text(_csv_text("a,b,c,y", np.column_stack([X, y])), encoding="utf-8-sig")
    rc = main(["train", str(tmp_path / "m.py"), "--data", str(path), "--no-progress"])
    captured = capsys.readouterr()
    if expected is None:
        assert rc == 0, captured.err
        np.savez(tmp_path / "same.npz", x=X, y=y)
        assert main(["train", str(tmp_path / "m.py"), "--data", str(tmp_path / "same.npz"), "--no-progress"]) == 0
        final = [line for line in captured.out.splitlines() if line.startswith("final loss")]
        assert final == [line for line in capsys.readouterr().out.splitlines() if line.startswith("final loss")]
        return
    err = captured.err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.endswith(expected) or expected in err, err


# -- the Python API with unusual values -----------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda t, X, y: t.fit(X, y, epochs=1.5), r"^epochs must be a whole number, got float 1\.5$"),
    (lambda t, X, y: t.fit(X, y, epochs=True), r"^epochs must be a whole number, got bool True$"),
    (lambda t, X, y: t.fit(X, y, steps="3"), r"^steps must be a whole number, got str '3'$"),
    (lambda t, X, y: t.fit(X, y, epochs=-1), r"^epochs must be at least 0, not -1$"),
    (lambda t, X, y: gn.Trainer(t.model, batch_size=2.5), r"^batch_size must be a whole number, got float 2\.5$"),
    (lambda t, X, y: gn.Trainer(t.model, lr="0.1"),
     r"^lr must be a positive number or a schedule \(graphnn\.schedules\), got str '0\.1'$"),
])
def test_counts_and_rates_of_the_wrong_kind_are_named(call, message):
    """Were numpy's or Python's TypeError naming no argument ('float' object cannot be
    interpreted as an integer; ufunc 'isfinite' not supported), or ran (epochs=True: 1 epoch)."""
    rng = np.random.default_rng(0)
    trainer = gn.Trainer(_mlp())
    with pytest.raises(ValueError, match=message):
        call(trainer, rng.normal(size=(6, 3)), rng.normal(size=6))
    assert trainer.step == 0


def test_whole_counts_of_any_number_type_are_taken():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=6)
    ref = gn.Trainer(_mlp(), batch_size=4).fit(X, y, epochs=2, progress=False).losses
    got = gn.Trainer(_mlp(), batch_size=np.int64(4)).fit(X, y, epochs=2.0, progress=False).losses
    assert got == ref


def test_fit_without_y_is_named_and_keeps_the_data_it_had():
    """fit(x) for a model with a target replaced the trainer's data with x alone, then failed
    at the first step ('missing feed'); evaluate/accuracy failed the same way afterwards."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=6)
    trainer = gn.fit(_mlp(), X, y, epochs=1, progress=False)
    before = trainer.evaluate(split="train")
    with pytest.raises(gn.FeedError, match=r"^model 'mlp': the training data has no values for input\(s\) 'y', "
                                           r"its target: give fit\(x, y\)$"):
        trainer.fit(X, epochs=1)
    assert trainer.evaluate(split="train") == before and trainer.step == 1


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_set_params_refuses_nan_naming_the_parameter(backend):
    """NaN set by set_params was taken; training then blamed the first node and the learning rate."""
    model = _mlp()
    trainer = gn.Trainer(model, backend=backend)
    W = np.ones((3, 4))
    W[1, 2] = np.nan
    with pytest.raises(gn.NonFiniteError, match=r"^parameter 'h\.W' holds nan at index \(1, 2\): parameters must be finite numbers$"):
        trainer.set_params({"h.W": W, "out.b": np.ones(1)})
    np.testing.assert_array_equal(trainer.params[model.find("out.b")], model.find("out.b").value)  # none set


def test_an_overflow_on_the_reference_is_one_error_and_no_numpy_warning():
    """The evaluator names the first node to produce inf; numpy's 'RuntimeWarning: overflow
    encountered in matmul' (two more lines on stderr, pointing into graphnn's source: `graphnn
    train diffusion --lr 1e12`) came first."""
    import warnings

    trainer = gn.Trainer(_mlp())
    trainer.set_params({"h.W": np.full((3, 4), 1e200)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(gn.NonFiniteError, match=r"^training step 1: linear node 'h\.net' is the first to produce inf"):
            trainer.fit(np.full((4, 3), 1e200), np.zeros(4), epochs=1, progress=False)
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


# -- a user's model file with mistakes --------------------------------------------------------------

@pytest.mark.parametrize("loss", ["mse", "mae", "quadratic", "binary_cross_entropy", "cross_entropy",
                                  "binary_cross_entropy_with_logits", "kl_divergence"])
def test_a_loss_of_an_output_and_a_target_of_other_widths_is_refused(loss):
    """A 2-unit output against a 1-column target broadcast into a loss over made-up pairs and
    trained without a word (graphnn train on such a model file printed a falling loss)."""
    x, t = gn.input("x", (None, 3)), gn.input("y", (None, 1))
    p = gn.dense(x, 2, "sigmoid", name="out")
    with pytest.raises(gn.ShapeError, match=r"the output 'out' has shape \(B, 2\) but the target 'y' has shape "
                                            r"\(B, 1\); .* must match \(is the output layer's width right\?\)$"):
        getattr(gn.losses, loss)(p, t)
    assert getattr(gn.losses, loss)(p, gn.input("y2", (None, 2))).shape == ()   # matching: fine
    assert gn.losses.mse(p, gn.constant(0.0)).shape == ()                       # a scalar target: fine


def test_a_graph_input_left_out_of_the_models_inputs_is_named(tmp_path, capsys):
    from graphnn.cli import main

    (tmp_path / "m.py").write_text(MODEL_FILE.replace("(x, t), task=", "(x,), task="))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(10, 3)), y=rng.normal(size=10))
    assert main(["train", str(tmp_path / "m.py"), "--data", str(tmp_path / "d.npz"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()   # was: "missing feed for input 'y' of shape (B, 1)" after training began
    assert err == ("graphnn train: error: model 'mlp': its graph reads input(s) 'y', which are not among the "
                   "model's inputs ('x') and get no data; list them in gn.Model(..., inputs=...)")


@pytest.mark.parametrize("loss", [gn.losses.binary_cross_entropy, gn.losses.binary_cross_entropy_with_logits])
@pytest.mark.parametrize("bad", [7.0, -1.0, 1.5])
def test_binary_cross_entropy_targets_outside_0_1_are_refused(loss, bad, tmp_path, capsys):
    """A label 7 in a BCE classifier's data trained on with a negative, falling loss and exit 0."""
    x, t = gn.input("x", (None, 2)), gn.input("label", (None, 1))
    z = gn.dense(x, 1, None if "logits" in loss.__name__ else "sigmoid", name="o")
    model = gn.Model("bce", loss(z, t), z, (x, t), task="classification")
    X, y = np.ones((4, 2)), np.array([0.0, 1.0, bad, 0.5])
    with pytest.raises(ValueError, match=rf"target 'label' \(training row 3\) holds {bad:g}; binary cross-entropy "
                                         r"targets are 0/1 labels or probabilities in \[0, 1\]"):
        gn.Trainer(model).fit(X, y, epochs=1, progress=False)
    gn.Trainer(model).fit(X, np.array([0.0, 1.0, 1.0, 0.5]), epochs=1, progress=False)   # probabilities are fine


@pytest.mark.parametrize("defaults, message", [
    ({"lrr": 0.1}, r"defaults has 'lrr', which no training reads \(did you mean 'lr'\?\)"),
    ({"epochs": 0}, r"defaults\['epochs'\] must be a whole number ≥ 1, got 0"),   # was: trained nothing, exit 0
    ({"steps": 0}, r"defaults\['steps'\] must be a whole number ≥ 1, got 0"),
    ({"batch_size": 2.5}, r"defaults\['batch_size'\] must be a whole number ≥ 1, got 2.5")])
def test_a_models_defaults_are_checked_when_it_is_made(defaults, message):
    x, t = gn.input("x", (None, 2)), gn.input("t", (None, 1))
    y = gn.dense(x, 1, name="o")
    with pytest.raises(ValueError, match=rf"model 'm': {message}"):
        gn.Model("m", gn.losses.mse(y, t), y, (x, t), defaults=defaults)
    gn.Model("m", gn.losses.mse(y, t), y, (x, t), defaults={"optimizer": "adam", "beta1": 0.5, "epochs": 2})


def test_a_task_training_does_not_know_is_named_on_the_command_line(tmp_path, capsys):
    """task='bogus' trained as a regression without a word."""
    from graphnn.cli import main

    path = tmp_path / "m.py"
    path.write_text("import numpy as np, graphnn as gn\n\ndef build():\n    x = gn.input('x', (None, 2))\n"
                    "    t = gn.input('t', (None, 1))\n    y = gn.dense(x, 1, name='o')\n"
                    "    data = gn.Dataset({'x': np.ones((4, 2)), 't': np.ones((4, 1))})\n"
                    "    return gn.Model('m', gn.losses.mse(y, t), y, (x, t), data, task='clasification')\n")
    assert main(["train", str(path), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "task 'clasification' is none that training knows; tasks: classification," in err


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf"])
def test_nan_in_a_csv_is_named_by_its_file_line_and_column(cell, tmp_path, capsys):
    """It was named by the input and row only ('input 'x' holds nan at row 1'), not by the file."""
    from graphnn.cli import main

    (tmp_path / "m.py").write_text(MODEL_FILE)
    (tmp_path / "d.csv").write_text(f"a,b,c,y\n1,2,3,0.5\n1,{cell},3,1\n2,2,2,0\n")
    assert main(["train", str(tmp_path / "m.py"), "--data", str(tmp_path / "d.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"graphnn train: error: {tmp_path / 'd.csv'}, line 3, column 'b': {float(cell):g} is not a "
                   "finite number (data must be finite)"]
