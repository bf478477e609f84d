"""What the Trainer does with the arrays and values a user gives it: feature arrays are never
reinterpreted, parameters are set with the evaluator's checks, fit's keywords are checked,
and bad training data is named on every backend (bug hunt A, items 1, 9, 10 and 12)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.data import as_feeds
from graphnn.models import available, get_model
from graphnn.training import KeywordError


def _mlp(features=3):
    """A small regression MLP: x (None, features) → 4 tanh → 1, target y (None, 1)."""
    x, t = gn.input("x", (None, features)), gn.input("y", (None, 1))
    h = gn.dense(x, 4, "tanh", name="h")
    p = gn.dense(h, 1, name="out")
    return gn.Model("mlp", gn.losses.mse(p, t, name="L"), p, (x, t), task="regression")


def _data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=n)


# -- item 1: a 1-D array given to a feature input is not one-hot encoded ------------------------

def test_a_vector_given_to_a_feature_input_is_the_evaluators_shape_error():
    X, y = _data()
    trainer = gn.fit(_mlp(), X, y, epochs=1, progress=False)
    # one example without its batch axis: was one-hot encoded into 3 examples, 3 predictions
    with pytest.raises(gn.FeedError, match=r"^input 'x' expects shape \(B, 3\), got \(3,\)$"):
        trainer.predict(np.array([0, 1, 2]))
    with pytest.raises(gn.FeedError, match=r"^input 'x' expects shape \(B, 3\), got \(3,\)$"):
        trainer.predict({"x": np.array([0, 1, 2])})
    assert trainer.predict(np.array([[0, 1, 2]])).shape == (1, 1)
    # integer class-like features: were trained on as one-hot rows without a word
    with pytest.raises(gn.FeedError, match=r"^input 'x' expects shape \(B, 3\), got \(10,\)$"):
        gn.fit(_mlp(), np.random.default_rng(1).integers(0, 3, 10), y, epochs=1, progress=False)
    with pytest.raises(gn.FeedError, match=r"^input 'x' expects shape \(B, 3\), got \(10,\)$"):
        gn.fit(_mlp(), np.random.default_rng(1).integers(0, 3, 10), y, epochs=1, backend="cpu", progress=False)


def test_the_cli_does_not_one_hot_encode_a_feature_column(tmp_path, capsys):
    model_file = tmp_path / "mlp.py"
    model_file.write_text("import graphnn as gn\n\ndef build():\n"
                          "    x, t = gn.input('x', (None, 3)), gn.input('y', (None, 1))\n"
                          "    p = gn.dense(gn.dense(x, 4, 'tanh', name='h'), 1, name='out')\n"
                          "    return gn.Model('mlp', gn.losses.mse(p, t), p, (x, t), task='regression',\n"
                          "                    defaults={'lr': 0.05, 'epochs': 2, 'batch_size': 4})\n")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 3, 40), y=rng.normal(size=40))
    assert main(["train", str(model_file), "--data", str(tmp_path / "d.npz"), "--no-progress"]) == 2
    assert "input 'x' expects shape (B, 3), got (" in capsys.readouterr().err


def test_genuinely_one_dimensional_and_one_column_feature_inputs_take_vectors():
    x, t = gn.input("x", (None,)), gn.input("y", (None, 1))
    p = gn.dense(gn.dense(gn.reshape(x, (None, 1)), 4, "tanh", name="h"), 1, name="out")
    scalar_in = gn.Model("scalar-in", gn.losses.mse(p, t), p, (x, t), task="regression")
    rng = np.random.default_rng(0)
    trainer = gn.fit(scalar_in, rng.integers(0, 3, 12), rng.normal(size=12), epochs=2, progress=False)
    assert trainer.predict(np.array([0, 1, 2])).shape == (3, 1)       # three examples of one number
    # a one-column input: a vector is its column (N examples of one feature, never one example)
    line = get_model("linear-regression")
    trainer = gn.fit(line, np.array([2.0, 3, 4, 5, 6]), np.array([3.0, 4, 5, 6, 7]), epochs=1, progress=False)
    np.testing.assert_array_equal(trainer.predict(np.array([2.0, 3])), trainer.predict(np.array([[2.0], [3]])))


@pytest.mark.parametrize("name", available())
def test_no_builtin_model_reinterprets_a_feature_vector(name):
    """Every input but the target (``model.inputs[1]``): one example given without its batch
    axis is the evaluator's shape error (a one-column input reads a vector as its column)."""
    model = get_model(name)
    example = model.example_feeds()
    if example is None:
        pytest.skip(f"{name} has no example feeds")
    feeds = {k: np.asarray(v)[:1] for k, v in example[0].items()}     # one example of each input
    target = model.inputs[1] if len(model.inputs) > 1 else None
    for node in model.inputs:
        if node is target or node.name not in feeds or node.shape[:1] != (None,) or len(node.shape) < 2:
            continue
        row = feeds[node.name][0]                              # that example, its batch axis dropped
        given = as_feeds(model.inputs, {**feeds, node.name: row})
        if tuple(node.shape[1:]) == (1,):
            assert given[node.name].shape == (1, 1)
            continue
        with pytest.raises(gn.FeedError, match=rf"^input {node.name!r} expects shape"):
            gn.evaluate(model.loss, given)


def test_an_integer_target_input_is_never_one_hot_encoded():
    """Token ids (the transformer's ``next``, int (None, 32)) are ids, not one-hot rows."""
    model = get_model("transformer")
    target = model.inputs[1]
    assert target.dtype == "int" and target.shape == (None, 32)
    given = as_feeds(model.inputs, {"tokens": np.zeros((3, 32), int), "next": np.array([1, 2, 3])})
    assert given["next"].shape == (3,)


# -- item 9: set_params checks what evaluate checks ---------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_set_params_takes_nodes_or_names_and_checks_them_like_evaluate(backend):
    model = _mlp()
    trainer = gn.Trainer(model, backend=backend)
    W, b = model.find("h.W"), model.find("h.b")
    before = {p: v.copy() for p, v in trainer.params.items()}
    with pytest.raises(gn.FeedError, match=r"^parameter 'h\.W' expects shape \(3, 4\), got \(2, 2\)$"):
        trainer.set_params({W: np.zeros((2, 2))})        # was numpy's broadcast error, no name
    with pytest.raises(gn.FeedError, match=r"^parameter 'h\.W' expects shape \(3, 4\), got \(\)$"):
        trainer.set_params({W: 0.5})                     # was: the whole matrix filled with 0.5
    with pytest.raises(gn.FeedError, match=r"^parameter value 'h\.w' names no parameter of this graph "
                                           r"\(did you mean 'h\.W'\?\)"):
        trainer.set_params({"h.w": np.zeros((3, 4))})
    with pytest.raises(gn.FeedError, match=r"^parameter 'W' is not a parameter of model 'mlp'$"):
        trainer.set_params({gn.parameter("W", np.zeros((3, 4))): np.zeros((3, 4))})
    with pytest.raises(gn.FeedError, match=r"^parameter 'h\.W' expects shape"):
        trainer.set_params({b: np.ones(4), W: np.zeros((4, 3))})   # all checked before any is set
    for p, v in trainer.params.items():
        np.testing.assert_array_equal(v, before[p], err_msg=p.name)
    trainer.set_params({"h.W": np.ones((3, 4)), b: np.full(4, 0.5)})  # was KeyError: 'h.W'
    np.testing.assert_array_equal(trainer.params[W], np.ones((3, 4)))
    np.testing.assert_array_equal(trainer.params[b], np.full(4, 0.5))
    X, _ = _data()
    np.testing.assert_allclose(trainer.predict(X), gn.evaluate(model.output, {"x": X}, trainer.params), rtol=1e-12)


# -- item 10: Trainer.fit's keywords are checked like gn.fit's ------------------------------------

def test_trainer_fit_names_a_misspelt_or_misplaced_keyword():
    X, y = _data()
    trainer = gn.Trainer(_mlp())
    with pytest.raises(KeywordError, match=r"^Trainer\.fit\(\) got unknown keyword argument 'epoch' \(did you "
                                           r"mean 'epochs'\?\); Trainer\.fit\(\) takes .*early_stopping, epochs,"):
        trainer.fit(X, y, epoch=2)                          # was a bare TypeError
    with pytest.raises(KeywordError, match=r"^Trainer\.fit\(\) got unknown keyword argument 'batchsize' \(did you "
                                           r"mean 'batch_size'\?\); Trainer\.fit\(\) takes .*; Trainer\(\) takes "
                                           r".*batch_size"):
        trainer.fit(X, y, batchsize=2)
    # a Trainer() keyword given to fit: where it belongs (docs/own-data.md: Trainer(..., batch_size=32))
    with pytest.raises(KeywordError, match=r"^Trainer\.fit\(\) takes no 'batch_size': it is a Trainer\(\) keyword; "
                                           r"give it as Trainer\(model, batch_size=\.\.\.\), or use "
                                           r"gn\.fit\(model, x, y, batch_size=\.\.\.\)$"):
        trainer.fit(X, y, batch_size=2)
    assert len(trainer.history) == 0 and trainer.backend.steps == 0   # nothing trained
    assert len(trainer.fit(X, y, epochs=2, progress=False)) == 2


# -- item 12: NaN in the training data is named alike on every backend ---------------------------

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("schedule", [{"epochs": 1, "batch_size": 4}, {"epochs": 1}, {"steps": 2}])
def test_nan_in_the_training_data_is_named_alike_on_every_backend(backend, schedule):
    X, y = _data()
    X[3, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # was a numpy RuntimeWarning on the way
        with pytest.raises(gn.NonFiniteError, match=r"^input 'x' holds nan at index \(3, 1\): "
                                                    r"data must be finite numbers$") as err:
            gn.fit(_mlp(), X, y, backend=backend, progress=False, **schedule)
    assert err.value.node.name == "x"                     # was: linear node 'h.net', lower the learning rate


def test_the_reference_checks_each_training_array_once_not_each_batch(monkeypatch):
    from graphnn.training import backends

    calls = []
    monkeypatch.setattr(backends, "check_finite_feeds", lambda values: calls.append(list(values)))
    X, y = _data(40)
    trainer = gn.Trainer(_mlp(), batch_size=4)
    trainer.fit(X, y, epochs=3, progress=False)
    assert sorted(node.name for [node] in calls) == ["x", "y"]   # 10 batches × 3 epochs: checked once


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_evaluating_an_empty_batch_is_one_line_naming_it(backend, isolated_cache):
    """Trainer.evaluate on 0 rows ended in numpy's 'cannot reshape array of size 0'."""
    extra = {"background_compile": False} if backend == "cpu" else {}
    trainer = gn.Trainer(get_model("xor"), backend=backend, **extra)
    with pytest.raises(gn.FeedError, match=r"^input 'x' is an empty batch, shape \(0, 2\): there is no example"):
        trainer.evaluate(np.zeros((0, 2)), np.zeros((0, 1)))
    assert trainer.predict(np.zeros((0, 2))).shape == (0, 1)   # an empty prediction is still fine
