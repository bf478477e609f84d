"""Training from Python on one's own arrays (issue 16): metrics right for every task, `fit` and
`Trainer` with arrays and a validation set apart from the test set, class-index labels,
predict/evaluate/gradients, keyword errors per component, learning-rate schedules as
run-time inputs of the compiled update, callbacks, dropout in the compiled epoch, layers
that own and seed their parameters, initialisers by name, `graphnn train MODEL --data FILE`.

Oracles: scikit-learn's metrics, the NumPy reference backend (float64, 1e-10) and central
differences. Compiled models are few and small: each compile costs seconds."""
import numpy as np
import pytest
import sympy

import graphnn as gn
from graphnn.cli import main
from graphnn.data import Dataset
from graphnn.models import available, get_model
from graphnn.schedules import cosine, exponential, schedule, step_decay, t as T, warmup
from graphnn.training import LambdaCallback, ModelCheckpoint, Trainer, metrics

sk = pytest.importorskip("sklearn.metrics")
pytestmark = pytest.mark.usefixtures("private_cache_dir")


def _blobs(n=120, seed=0, features=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    y = (X @ np.linspace(1.0, -1.0, features) + 0.7 * rng.normal(size=n) > 0).astype(float)
    return X, y


def _logistic(output="sigmoid", features=3):
    """One-unit classifier: a sigmoid probability (BCE) or a logit (BCE on logits)."""
    x, t = gn.input("x", (None, features)), gn.input("t", (None, 1))
    w = np.random.default_rng(5).uniform(-1, 1, (features, 1)) / np.sqrt(features)
    z = gn.linear(x, gn.parameter("w", w), gn.parameter("b", [0.0]))
    if output == "sigmoid":
        out, loss = gn.sigmoid(z), gn.losses.binary_cross_entropy(gn.sigmoid(z), t)
    else:
        out, loss = z, gn.losses.binary_cross_entropy_with_logits(z, t)
    return gn.Model("logistic", loss, out, (x, t), task="classification")


# -- metrics ------------------------------------------------------------------------------------

def test_one_unit_accuracy_is_the_thresholded_count():
    """Was 1.0 always (argmax over one column), in the history, the CLI and early stopping."""
    X, y = _blobs()
    for output, threshold in (("sigmoid", 0.5), ("logit", 0.0)):
        data = Dataset({"x": X[:80], "t": y[:80, None]}, {"x": X[80:], "t": y[80:, None]})
        trainer = Trainer(_logistic(output), data=data, lr=0.5, batch_size=16)
        trainer.fit(epochs=2, progress=False)
        expected = sk.accuracy_score(y[80:], trainer.backend.predict({"x": X[80:]})[:, 0] > threshold)
        assert 0.5 < expected < 1.0
        assert trainer.accuracy("test") == expected == trainer.history.last("test_accuracy")
        assert trainer.evaluate(X[80:], y[80:])["accuracy"] == expected      # labels as a vector
    # sign/tanh outputs against ±1 targets split at 0; several units take the top class
    z = np.array([[-0.3], [0.2], [0.9], [-0.8]])
    assert metrics.accuracy(np.tanh(z), np.array([[-1], [-1], [1], [-1]]), 0.0) == 0.75
    scores = np.random.default_rng(1).normal(size=(50, 4))
    labels = np.random.default_rng(2).integers(0, 4, 50)
    top1 = sk.accuracy_score(labels, scores.argmax(1))
    assert metrics.accuracy(scores, labels) == metrics.accuracy(scores, np.eye(4)[labels]) == top1


def test_metrics_of_every_builtin_model_match_scikit_learn():
    for name in available():
        model = get_model(name)
        if model.task not in ("classification", "regression") or model.data is None:
            assert metrics.metric_names(model) == ()
            continue
        trainer = Trainer(model)
        split = "test" if model.data.test is not None else "train"
        feeds = trainer._split(split)
        target = np.asarray(feeds[model.inputs[1].name])
        out = trainer.predict({k: v for k, v in feeds.items() if k != model.inputs[1].name})
        got = trainer.evaluate(split=split)
        n = len(out)
        if model.task == "classification":
            assert set(got) == {"loss", "accuracy"}, name
            expected = sk.accuracy_score(target.argmax(-1).ravel(), out.argmax(-1).ravel())
            assert got["accuracy"] == pytest.approx(expected, abs=1e-15), name
        else:
            o, t = out.reshape(n, -1), target.reshape(n, -1)
            assert got["mse"] == pytest.approx(sk.mean_squared_error(t, o), rel=1e-12), name
            assert got["mae"] == pytest.approx(sk.mean_absolute_error(t, o), rel=1e-12), name
            if n > 1 and np.all(t.std(axis=0) > 0):
                assert got["r2"] == pytest.approx(sk.r2_score(t, o), rel=1e-12), name


# -- the CLI on a user's model file and data file ------------------------------------------------

MODEL_FILE = '''
import graphnn as gn
from blob_settings import HIDDEN          # a module beside this file


def build():
    x = gn.input("x", (None, 2), names=("x1", "x2"))
    t = gn.input("label", (None, 1))
    h = gn.dense(x, HIDDEN, "tanh", name="hidden")
    p = gn.dense(h, 1, "sigmoid", name="out")
    return gn.Model("blobs", gn.losses.binary_cross_entropy(p, t), p, (x, t), task="classification",
                    defaults={"lr": 3.0, "batch_size": 8, "epochs": 40})
'''


def test_cli_trains_a_model_file_on_a_data_file_and_reports_the_kept_model(tmp_path, monkeypatch, capsys):
    """--data (.csv by column names, .npz by input names); after early stopping the final loss
    and the test accuracy are the kept (best) epoch's, not the last epoch's."""
    import graphnn.training.tasks as tasks

    (tmp_path / "blob_settings.py").write_text("HIDDEN = 8\n")
    (tmp_path / "blobs.py").write_text(MODEL_FILE)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    X = rng.normal(size=(200, 2)) + np.where(y[:, None] == 1, 0.8, -0.8)
    np.savetxt(tmp_path / "blobs.csv", np.c_[y, X], delimiter=",", header="label,x1,x2", comments="",
               fmt="%.17g")
    np.savez(tmp_path / "blobs.npz", x=X, label=y)
    trainers = []

    class Spy(tasks.Trainer):
        def __init__(self, model, **kw):
            super().__init__(model, **kw)
            trainers.append(self)

    monkeypatch.setattr(tasks, "Trainer", Spy)
    # a built-in model whose loss wanders at this rate: the kept epoch is not the last
    assert main(["train", "digits-mlp", "--lr", "1.5", "--batch-size", "16", "--patience", "2", "--epochs", "30",
                 "--no-progress"]) == 0
    digits = trainers.pop()
    best = digits.early_stopping.best_row
    assert digits.stopped_early and best["epoch"] < digits.history.last("epoch")
    final = float(capsys.readouterr().out.split("final loss:")[1].split()[0])
    assert final == pytest.approx(best["loss"], rel=1e-9) and final != pytest.approx(digits.history.last(), rel=1e-6)
    outs = []
    for data in ("blobs.csv", "blobs.npz"):
        assert main(["train", str(tmp_path / "blobs.py"), "--data", str(tmp_path / data), "--patience", "3",
                     "--test-fraction", "0.25", "--no-progress"]) == 0
        outs.append(capsys.readouterr().out)
    a, b = trainers
    assert a.stopped_early and a.kept_row is not a.history.records[-1]
    final = float(outs[0].split("final loss:")[1].split()[0])
    assert final == pytest.approx(a.kept_row["loss"], rel=1e-9)
    assert final != pytest.approx(a.history.last(), rel=1e-6)
    test_acc = float(outs[0].split("test accuracy:")[1].split()[0])
    kept_acc = sk.accuracy_score(a.data.test["label"][:, 0], a.predict(a.data.test["x"])[:, 0] > 0.5)
    assert test_acc == pytest.approx(kept_acc, abs=5e-5) and kept_acc == a.kept_row["test_accuracy"]
    assert outs[0].split("final loss")[1] == outs[1].split("final loss")[1]      # .npz: the same run
    # a regression model reports its metrics by name; a schedule from the command line
    assert main(["train", "linear-regression", "--steps", "5", "--test-fraction", "0.4",
                 "--lr-schedule", "0.02*0.5**t"]) == 0
    out = capsys.readouterr().out
    assert "test mse:" in out and "test mae:" in out and "test r2:" in out
    assert "SGD(lr=schedule(0.02*0.5**t))" in out.replace(" ", "")
    assert main(["train", "linear-regression", "--lr-schedule", "0.1*epoch"]) == 2
    assert "in the step count t only" in capsys.readouterr().err
    assert main(["train", "blobs-missing.py", "--data", str(tmp_path / "blobs.csv")]) == 2
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["train", str(tmp_path / "blobs.py"), "--data", str(tmp_path / "bad.csv")]) == 2
    assert "no columns for input 'x'" in capsys.readouterr().err


# -- fit, keywords, validation, predict/evaluate --------------------------------------------------

def test_fit_routes_keywords_and_names_a_typo_with_what_each_component_takes():
    model = get_model("linear-regression")
    trainer = gn.fit(model, epochs=2, backend="numpy", progress=False)   # was: "sgd takes ['lr'], not ['progress']"
    assert len(trainer.history) == 2
    assert gn.fit(model, optimizer="momentum", mu=0.5, steps=2).optimizer.hyper["mu"] == 0.5
    with pytest.raises(TypeError, match=r"'batchsize' \(did you mean 'batch_size'\?\)") as err:
        gn.fit(model, epochs=1, batchsize=32)
    msg = str(err.value)
    assert "Trainer() takes" in msg and "validation_split" in msg and "fit() takes" in msg and "epochs" in msg
    assert "optimizer 'sgd' takes lr" in msg
    with pytest.raises(TypeError, match=r"optimizer 'adam' takes beta1, beta2, eps, lr"):
        Trainer(model, optimizer="adam", mu=0.9)
    with pytest.raises(TypeError, match=r"'verbos' \(did you mean 'verbose'\?\); backend 'cpu' takes "
                                        r"blas_threads, verbose"):
        Trainer(model, backend="cpu", backend_options={"verbos": True})


def test_arrays_validation_set_predict_evaluate_and_callbacks(tmp_path):
    X, y = _blobs(160, seed=3)
    model = _logistic()
    test = {"x": X[140:], "t": y[140:]}
    trainer = Trainer(model, lr=0.3, batch_size=16, data=Dataset({"x": X[120:140], "t": y[120:140]}, test))
    seen = []
    every = ModelCheckpoint(tmp_path / "ck-{epoch}.npz")
    best = ModelCheckpoint(tmp_path / "best.npz", monitor="val_accuracy", best_only=True)
    trainer.fit(X[:120], y[:120], epochs=12, validation_split=0.25, early_stopping=2, monitor="val_accuracy",
                callbacks=[every, best, LambdaCallback(on_epoch_end=lambda tr, row: seen.append(row["epoch"]))],
                progress=False)
    data = trainer.data
    assert data.n_train == 90 and len(data.validation["x"]) == 30 and data.test["x"] is test["x"]
    rows = trainer.history.records
    assert {"loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= set(rows[0])
    assert seen == [r["epoch"] for r in rows] and len(every.saved) == len(rows)
    stop = trainer.early_stopping
    assert stop.maximize and stop.best == max(r["val_accuracy"] for r in rows)
    assert trainer.evaluate(split="validation")["accuracy"] == stop.best          # best parameters back
    reloaded = Trainer(_logistic()).load(best.saved[-1])
    np.testing.assert_allclose(reloaded.predict(X), trainer.predict(X), rtol=0, atol=0)
    scores = trainer.evaluate(X[:40], y[:40])
    assert scores["accuracy"] == sk.accuracy_score(y[:40], trainer.predict(X[:40])[:, 0] > 0.5)
    with pytest.raises(ValueError, match="validation_split"):
        Trainer(model).fit(X, y, epochs=1, early_stopping=1, monitor="val_loss")
    with pytest.raises(ValueError, match="no data"):
        Trainer(model).fit(epochs=1)
    stopper = LambdaCallback(on_epoch_end=lambda tr, row: row["step"] >= 4)
    assert len(Trainer(model, data=Dataset({"x": X, "t": y})).fit(steps=20, log_every=2, callbacks=[stopper])) == 2


def test_a_parameter_outside_the_loss_is_an_error_with_advice_the_user_can_take():
    x, t = gn.input("x", (None, 2)), gn.input("t", (None, 1))
    net = gn.linear(x, gn.parameter("W", np.ones((2, 1))), gn.parameter("b", [0.0]))
    for trainable in (True, False):
        aux = gn.parameter("aux", [0.5], trainable=trainable)
        model = gn.Model("aux", gn.losses.mse(net, t), net * aux, (x, t),
                         Dataset({"x": np.ones((4, 2)), "t": np.ones((4, 1))}))
        if trainable:
            with pytest.raises(gn.GradientError, match="'aux' reach the output but not the loss") as err:
                Trainer(model)
            assert "trainable=False" in str(err.value) and "disconnected" not in str(err.value)
        else:
            Trainer(model).fit(steps=1)


# -- class-index labels ---------------------------------------------------------------------------

def _three_class(labels_as_indices):
    rng = np.random.default_rng(7)
    x = gn.input("x", (None, 4))
    t = gn.input("t", (None,) if labels_as_indices else (None, 3))
    W = gn.parameter("W", rng.normal(size=(4, 3)) * 0.5)
    z = gn.linear(x, W, gn.parameter("b", np.zeros(3)), name="z")
    return gn.Model("three", gn.losses.softmax_cross_entropy(z, t), z, (x, t), task="classification"), W


def test_class_index_labels_train_to_the_same_weights_as_one_hot():
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(40, 4)), rng.integers(0, 3, 40).astype(float)
    onehot, W1 = _three_class(False)
    indexed, W2 = _three_class(True)
    feeds = {"x": X[:6], "t": labels[:6]}
    gn.check_grad(indexed.loss, [W2], feeds)                                   # central differences
    p = gn.softmax(indexed.output)
    gn.check_grad(gn.losses.cross_entropy(p, indexed.inputs[1]), [W2], feeds)
    kw = dict(lr=0.5, batch_size=8, seed=2, progress=False)
    runs = {"one-hot": gn.fit(onehot, X, np.eye(3)[labels.astype(int)], epochs=3, **kw),
            "labels to a one-hot model": gn.fit(onehot, X, labels, epochs=3, **kw),
            "labels in the graph": gn.fit(indexed, X, labels, epochs=3, **kw),
            "labels in the graph, compiled": gn.fit(indexed, X, labels, epochs=3, backend="cpu", **kw)}
    ref = runs.pop("one-hot")
    for what, run in runs.items():
        W = W1 if run.model is onehot else W2
        np.testing.assert_allclose(run.params[W], ref.params[W1], rtol=1e-10, atol=1e-12, err_msg=what)
        assert run.evaluate(X, labels)["accuracy"] == ref.evaluate(X, labels)["accuracy"]
    with pytest.raises(gn.FeedError, match=r"input 't' takes one-hot rows of 3 classes.*0\.\.2, got 1\.\.3"):
        gn.fit(onehot, X, labels + 1, epochs=1)


# -- schedules, dropout in the compiled epoch, public gradients -----------------------------------

def test_schedules_are_expressions_in_the_step_count():
    steps = np.arange(1, 30)
    np.testing.assert_allclose(step_decay(0.4, every=10, factor=0.5).values(steps), 0.4 * 0.5 ** ((steps - 1) // 10))
    np.testing.assert_allclose(exponential(0.1, 0.9, every=2).values(steps), 0.1 * 0.9 ** ((steps - 1) / 2))
    np.testing.assert_allclose(cosine(0.1, 20, final=0.01).values(steps),
                               0.01 + 0.09 * (1 + np.cos(np.pi * np.minimum(steps - 1, 20) / 20)) / 2)
    np.testing.assert_allclose(warmup(0.1, 5).values(steps), 0.1 * np.minimum(1, steps / 5))
    assert schedule(0.5 / sympy.sqrt(T))(4) == 0.25
    with pytest.raises(ValueError, match="step count t only"):
        schedule(sympy.Symbol("epoch"))
    with pytest.raises(ValueError, match="at step t = 1"):
        schedule(1 / (T - 1)).values([1])
    opt = gn.optim.make_optimizer("sgd", lr=exponential(1.0, 0.5))   # the NumPy reference, step by step
    w = {"w": np.array([1.0])}
    for step in (1, 2, 3):
        opt.update(w, {"w": np.array([1.0])}, {"w": {}}, step)
    assert w["w"][0] == 1.0 - (1.0 + 0.5 + 0.25)


def _dropout_net():
    rng = np.random.default_rng(3)
    x, t = gn.input("x", (None, 6)), gn.input("t", (None, 3))
    W1, W2 = gn.parameter("W1", rng.normal(size=(6, 8)) * 0.5), gn.parameter("W2", rng.normal(size=(8, 3)) * 0.5)
    h = gn.gaussian_noise(gn.dropout(gn.relu(x @ W1), 0.5, name="h_drop"), 0.1, name="h_noise")
    z = gn.matmul(h, W2, name="z")
    data = Dataset({"x": rng.normal(size=(18, 6)), "t": np.eye(3)[rng.integers(0, 3, 18)]})
    return gn.Model("dropout-net", gn.losses.softmax_cross_entropy(z, t), z, (x, t), data,
                    defaults={"batch_size": 4})


def test_dropout_trains_in_the_compiled_epoch_and_schedules_never_recompile(monkeypatch):
    from codegen import cache_info
    from codegen.backend import CpuBackend

    model = _dropout_net()
    first = Trainer(model, backend="cpu", lr=0.1)
    misses = cache_info()["misses"]

    def no_python_steps(self, feeds):
        raise AssertionError("a dropout model's epoch stepped batch by batch from Python")

    monkeypatch.setattr(CpuBackend, "train_step", no_python_steps)
    for make_lr in (lambda: 0.1, lambda: cosine(0.2, 12, final=0.02),
                    lambda: warmup(step_decay(0.3, every=4, factor=0.5), 3), lambda: schedule(0.3 / sympy.sqrt(T))):
        lr = make_lr()
        cpu, ref = Trainer(model, backend="cpu", lr=lr, seed=1), Trainer(model, backend="numpy", lr=lr, seed=1)
        hist = [tr.fit(epochs=2, progress=False).losses for tr in (cpu, ref)]
        np.testing.assert_allclose(hist[0], hist[1], rtol=1e-10)
        for p in model.params:
            np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-10, atol=1e-12)
    assert cache_info()["misses"] == misses                       # no new module for any schedule
    assert len(first.backend.inner.module.train_epoch.signatures) == 1   # nor a new specialisation
    feeds = model.data.train
    grads = ref.gradients(feeds)        # public; evaluation mode (no mask), the step count untouched
    exact = gn.grad(model.loss, model.params)
    for p in model.params:
        expected = gn.evaluate(exact[p], feeds, {q: ref.params[q] for q in model.parameters})
        np.testing.assert_allclose(grads[p], expected, rtol=1e-12, atol=1e-14)
    assert ref.backend.count == ref.backend.steps


# -- layers and initialisers ----------------------------------------------------------------------

def test_layers_return_their_parameters_and_start_apart():
    x = gn.input("x", (None, 4, 6))
    out_a, a = gn.multi_head_attention(x, 2, 3, name="a", return_params=True)
    _, b = gn.multi_head_attention(x, 2, 3, name="b", return_params=True)
    _, again = gn.multi_head_attention(x, 2, 3, name="a", return_params=True)
    assert set(a) == {"W_Q", "W_K", "W_V", "W_O"} and set(a.values()) <= set(gn.Graph([out_a]).parameters)
    for key in a:
        assert not np.array_equal(a[key].value, b[key].value), key      # was: default_rng(0) for every layer
        np.testing.assert_array_equal(a[key].value, again[key].value)   # rebuilt: the same weights
    v = gn.input("v", (None, 5))
    h, p = gn.dense(v, 3, "tanh", name="d1", return_params=True)
    _, q = gn.dense(v, 3, "tanh", name="d2", return_params=True)
    assert p["W"].shape == (5, 3) and not np.array_equal(p["W"].value, q["W"].value)
    xv = np.random.default_rng(0).normal(size=(2, 5))
    np.testing.assert_allclose(gn.evaluate(h, {"v": xv}), np.tanh(xv @ p["W"].value + p["b"].value))
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        gn.dense(v, 3, "tanhh")


def test_initialisers_by_name_have_their_variance():
    fan_in, fan_out = 400, 300
    cases = {"glorot": ("uniform", np.sqrt(6 / (fan_in + fan_out))), "xavier_normal": ("normal", np.sqrt(2 / 700)),
             "he": ("normal", np.sqrt(2 / fan_in)), "he_uniform": ("uniform", np.sqrt(6 / fan_in)),
             "uniform_fan_in": ("uniform", 1 / np.sqrt(fan_in))}
    for init, (kind, scale) in cases.items():
        w = gn.parameter("w", shape=(fan_in, fan_out), init=init).value
        std = scale / np.sqrt(3) if kind == "uniform" else scale
        assert w.std() == pytest.approx(std, rel=0.02), init
        if kind == "uniform":
            assert np.abs(w).max() <= scale
    np.testing.assert_array_equal(gn.parameter("w", shape=(5, 4), init="xavier").value,
                                  gn.parameter("w", shape=(5, 4), init="glorot").value)
    conv = gn.parameter("K", shape=(64, 16, 3, 3), init="he").value     # fan_in = 16·3·3
    assert conv.std() == pytest.approx(np.sqrt(2 / 144), rel=0.03)
    assert gn.parameter("c", shape=(2, 2), init=lambda rng, shape: np.full(shape, 7.0)).value[1, 1] == 7.0
    with pytest.raises(ValueError, match="unknown init 'glorrot'; choose from .*uniform_fan_in"):
        gn.parameter("w", shape=(2, 2), init="glorrot")
