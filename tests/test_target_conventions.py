"""Targets as users give them (bug hunt s5b): class indices are one-hot encoded for a
classifier's target only; any other target given one value per example is one clear error
naming it (a GAN's noise ``z`` and a two-output regression were one-hot encoded in silence)."""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.data import as_feeds, load_file
from graphnn.models import available, get_model
from graphnn.training.validation import class_targets


@pytest.mark.parametrize("name", available())
def test_one_value_per_example_as_y_for_every_builtin_model(name):
    """What a vector ``y`` becomes, model by model: one-hot rows for a classifier's target, a
    column for a one-column target, itself for a target of one number or of ids, and an error
    naming the input for any other target (and for a model without one)."""
    model = get_model(name)
    x = np.asarray(model.data.train[model.inputs[0].name])[:6]
    n = len(x)
    labels = np.arange(n) % 2
    if len(model.inputs) < 2:                     # hopfield, the autoencoders
        with pytest.raises(gn.FeedError, match=r"it takes no targets y"):
            gn.Trainer(model)._feeds(x, labels)
        return
    target, classes = model.inputs[1], class_targets(model)
    shape = tuple(target.shape)
    several = len(shape) == 2 and shape[1] != 1 and target.dtype != "int"
    given = None if several and target.name not in classes else \
        as_feeds(model.inputs, x, labels, class_inputs=classes)
    if target.name in classes:                    # digits-mlp, rnn, lstm, cnn, attention, stacked-autoencoder
        assert model.task in ("classification", "stacked-autoencoder")
        np.testing.assert_array_equal(given[target.name], np.eye(shape[1])[labels])
    elif shape == (None, 1) or shape == (None,):   # xor, the perceptrons, linear-regression, diffusion, rnn-scalar
        assert given[target.name].shape == (n,) + shape[1:]
    elif target.dtype == "int":                    # transformer, contrastive: ids, left for the shape check
        np.testing.assert_array_equal(given[target.name], labels)
        with pytest.raises(gn.FeedError, match=rf"^input {target.name!r} expects shape"):
            gn.evaluate(model.loss, given)
    else:                                          # gan (its noise z), mazur (two regression outputs)
        assert name in ("gan", "mazur")
        width = shape[1]
        for call in (lambda: as_feeds(model.inputs, x, labels),
                     lambda: as_feeds(model.inputs, x, labels, class_inputs=classes),
                     lambda: gn.Trainer(model).evaluate(x, labels),
                     lambda: gn.fit(model, x, labels, epochs=1, progress=False)):
            with pytest.raises(gn.FeedError, match=rf"^input {target.name!r} expects shape \(B, {width}\), "
                                                   rf"got \({n},\): one value per example is read as a class index"):
                call()


def _user_model(task, loss):
    x, t = gn.input("x", (None, 3)), gn.input("y", (None, 2))
    z = gn.dense(gn.dense(x, 4, "tanh", name="h"), 2, name="out")
    loss = {"mse": lambda: gn.losses.mse(z, t), "sce": lambda: gn.losses.softmax_cross_entropy(z, t)}[loss]()
    return gn.Model("user", loss, z, (x, t), task=task, defaults={"lr": 0.1, "epochs": 1})


@pytest.mark.parametrize("task, loss, one_hot", [("regression", "mse", False), ("regression", "sce", True),
                                                 ("classification", "mse", True),
                                                 ("classification", "sce", True)])
def test_a_users_model_one_hot_encodes_labels_only_as_a_classifier(task, loss, one_hot):
    model = _user_model(task, loss)
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(8, 3)), rng.integers(0, 2, 8)
    if one_hot:
        ref = gn.fit(_user_model(task, loss), X, np.eye(2)[labels], epochs=2, progress=False)
        got = gn.fit(model, X, labels, epochs=2, progress=False)
        np.testing.assert_allclose(got.history.losses, ref.history.losses, rtol=1e-12)
    else:
        with pytest.raises(gn.FeedError, match=r"^input 'y' expects shape \(B, 2\), got \(8,\): "):
            gn.fit(model, X, labels, epochs=1, progress=False)


def test_the_cli_refuses_a_label_column_for_a_regression_target_of_two_columns(tmp_path, capsys):
    (tmp_path / "reg.py").write_text(
        "import graphnn as gn\n\ndef build():\n"
        "    x, t = gn.input('x', (None, 3)), gn.input('y', (None, 2))\n"
        "    z = gn.dense(gn.dense(x, 4, 'tanh', name='h'), 2, name='out')\n"
        "    return gn.Model('reg', gn.losses.mse(z, t), z, (x, t), defaults={'lr': 0.1, 'epochs': 1})\n")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(10, 3)), y=rng.integers(0, 2, 10))
    assert main(["train", str(tmp_path / "reg.py"), "--data", str(tmp_path / "d.npz"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "input 'y' expects shape (B, 2), got (10,): one value per example is read as a class index" in err


def test_load_file_takes_the_model_and_one_hot_encodes_its_class_target(tmp_path):
    model = get_model("digits-mlp")
    x = np.random.default_rng(0).random((4, 64))
    np.savez(tmp_path / "d.npz", x=x, t=np.array([0, 3, 9, 3]))
    feeds = load_file(tmp_path / "d.npz", model)
    np.testing.assert_array_equal(feeds["t"], np.eye(10)[[0, 3, 9, 3]])
    gan = get_model("gan")
    np.savez(tmp_path / "g.npz", x=x[:, :2], z=np.array([0, 3, 1, 3]))
    with pytest.raises(gn.FeedError, match=r"^input 'z' expects shape \(B, 4\), got \(4,\)"):
        load_file(tmp_path / "g.npz", gan)
