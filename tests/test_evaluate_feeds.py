"""The reference evaluator's feeds and parameter values by name, and what it says about bad
data: unknown and ambiguous names, empty batches, NaN in the data (bug hunt A, items 5, 12)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphnn as gn
from graphnn.models import available, get_model


def _mlp():
    x, t = gn.input("x", (None, 3)), gn.input("y", (None, 1))
    h = gn.dense(x, 4, "tanh", name="h")
    p = gn.dense(h, 1, name="out")
    return gn.Model("mlp", gn.losses.mse(p, t, name="L"), p, (x, t), task="regression")


X = np.random.default_rng(0).normal(size=(4, 3))
Y = np.random.default_rng(1).normal(size=(4, 1))


# -- item 5: names that match no node, or several -------------------------------------------------

def test_an_unknown_parameter_name_is_an_error_naming_it_and_the_known_ones():
    m = _mlp()
    zeros = np.zeros((3, 4))
    assert not np.allclose(gn.evaluate(m.output, {"x": X}, {"h.W": zeros}), gn.evaluate(m.output, {"x": X}))
    with pytest.raises(gn.FeedError, match=r"^parameter value 'h\.w' names no parameter of this graph "
                                           r"\(did you mean 'h\.W'\?\); its parameters: 'h\.W', 'h\.b', "
                                           r"'out\.W', 'out\.b'$"):
        gn.evaluate(m.output, {"x": X}, {"h.w": zeros})          # was: the initial weights, silently
    with pytest.raises(gn.FeedError, match=r"^parameter value 'x' names an input, not a parameter"):
        gn.evaluate(m.output, {"x": X}, {"x": X})
    with pytest.raises(gn.FeedError, match=r"^parameter value 'x' names an input, not a parameter"):
        gn.evaluate(m.output, {"x": X}, {m.inputs[0]: X})


def test_a_part_of_a_model_takes_the_models_parameter_names_with_scope():
    m = _mlp()
    hidden, values = m.find("h"), {"h.W": np.zeros((3, 4)), "out.W": np.zeros((4, 1))}
    with pytest.raises(gn.FeedError, match=r"^parameter value 'out\.W' names no parameter of this graph; its "
                                           r"parameters: 'h\.W', 'h\.b' \(evaluating part of a model\? pass "
                                           r"scope=model\)$"):
        gn.evaluate(hidden, {"x": X}, values)
    np.testing.assert_array_equal(gn.evaluate(hidden, {"x": X}, values, scope=m),
                                  gn.evaluate(hidden, {"x": X}, {"h.W": values["h.W"]}))
    with pytest.raises(gn.FeedError, match=r"^parameter value 'h\.w' names no parameter"):
        gn.evaluate(hidden, {"x": X}, {"h.w": values["h.W"]}, scope=m)
    # a node outside the graph is not a typo: a model's whole parameter dict may be given to part of it
    np.testing.assert_array_equal(gn.evaluate(hidden, {"x": X}, m.initial_params()), gn.evaluate(hidden, {"x": X}))


def test_feeds_are_a_bag_but_a_feed_that_would_go_unnoticed_is_an_error():
    m = _mlp()
    # one feed dict serves the loss and the output (the target is not read): intended, kept
    np.testing.assert_array_equal(gn.evaluate(m.output, {"x": X, "y": Y, "bogus": 1.0}), gn.evaluate(m.output, {"x": X}))
    with pytest.raises(gn.FeedError, match=r"^feed 'h\.W' names a parameter, not an input: give its value in params$"):
        gn.evaluate(m.output, {"x": X, "h.W": np.zeros((3, 4))})
    with pytest.raises(gn.FeedError, match=r"^feed 'h\.W' names a parameter, not an input"):
        gn.evaluate(m.output, {"x": X, m.find("h.W"): np.zeros((3, 4))})
    with pytest.raises(gn.FeedError, match=r"^missing feed for input 'x' of shape \(B, 3\); the feeds also hold "
                                           r"'X', 'bogus', which no input of this graph is called$"):
        gn.evaluate(m.output, {"X": X, "bogus": 1.0})
    # an input with a default (dropout's training flag) would fall back to it without a word
    x = gn.input("x", (None, 3))
    y = gn.dropout(x, 0.5, seed=1)
    assert not np.array_equal(gn.evaluate(y, {"x": np.ones((4, 3)), "training": 1.0}), np.ones((4, 3)))
    with pytest.raises(gn.FeedError, match=r"^feed 'trainig' names no input of this graph \(did you mean "
                                           r"'training'\? it is not fed, so its default would be used\)$"):
        gn.evaluate(y, {"x": np.ones((4, 3)), "trainig": 1.0})


def test_a_name_that_several_nodes_share_is_ambiguous():
    p1, p2 = gn.parameter("pp", [1.0, 2.0]), gn.parameter("pp", [3.0, 4.0])
    s = gn.add(p1, gn.mul(p2, gn.constant(np.array([10.0, 10.0]))))
    with pytest.raises(gn.FeedError, match=r"^parameter value 'pp' is ambiguous: 2 parameters of this graph "
                                           r"are called 'pp'; key the values by node$"):
        gn.evaluate(s, None, {"pp": np.zeros(2)})                  # was: set one of them, silently
    np.testing.assert_array_equal(gn.evaluate(s, None, {p1: np.zeros(2), p2: np.zeros(2)}), [0.0, 0.0])
    x1, x2 = gn.input("x", (None, 2)), gn.input("x", (None, 2))
    with pytest.raises(gn.FeedError, match=r"^feed 'x' is ambiguous: 2 inputs of this graph are called 'x'"):
        gn.evaluate(gn.add(x1, x2), {"x": np.ones((1, 2))})


def _model_and_example(name):
    """A built-in model and its example feeds (skipped for a model without any)."""
    model = get_model(name)
    example = model.example_feeds()
    if example is None:
        pytest.skip(f"{name} has no example feeds")
    return model, example


@pytest.mark.parametrize("name", available())
def test_every_builtin_model_names_a_misspelt_parameter(name):
    model, example = _model_and_example(name)
    feeds = {k: np.asarray(v)[:2] for k, v in example[0].items()}
    first = model.params[0] if model.params else model.parameters[0]
    wrong = first.name.swapcase() if first.name.swapcase() != first.name else first.name + "_"
    with pytest.raises(gn.FeedError, match=rf"^parameter value {wrong!r} names no parameter of this graph"):
        gn.evaluate(model.loss, feeds, {wrong: first.value})
    with pytest.raises(gn.FeedError, match=rf"^feed {first.name!r} names a parameter, not an input"):
        gn.evaluate(model.loss, {**feeds, first.name: first.value})
    gn.evaluate([model.loss, model.output], feeds, model.initial_params())     # the model's own feeds pass
    gn.evaluate(model.output, {**feeds, "bogus": 0.0})                         # a bag: the target unread
    gn.evaluate(model.output, feeds, {p.name: p.value for p in model.parameters
                                      if [q.name for q in model.parameters].count(p.name) == 1}, scope=model)


# -- item 12: bad data is named as bad data, not as a learning rate to lower ---------------------

def test_an_empty_batch_is_named_not_blamed_on_the_learning_rate():
    m = _mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no numpy RuntimeWarning on the way
        with pytest.raises(gn.FeedError, match=r"^input 'x' is an empty batch, shape \(0, 3\): ÷ node 'L' "
                                               r"is NaN over 0 examples; feed at least one example$"):
            gn.evaluate(m.loss, {"x": X[:0], "y": Y[:0]})   # was: NaN from 'L', lower the learning rate
        assert gn.evaluate(m.output, {"x": X[:0]}).shape == (0, 1)   # no mean, no NaN: nothing to say


@pytest.mark.parametrize("name", available())
def test_every_builtin_model_names_an_empty_batch_or_evaluates_it(name):
    model, example = _model_and_example(name)
    empty = {k: np.asarray(v)[:0] for k, v in example[0].items()}
    if not any(np.asarray(v).ndim for v in empty.values()):
        pytest.skip(f"{name} has no batched inputs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = gn.evaluate([model.loss, model.output], empty)
        except gn.FeedError as e:
            assert "is an empty batch, shape (0" in str(e) and "\n" not in str(e)
        else:
            assert all(np.isfinite(v).all() for v in values)


def test_nan_in_the_data_names_the_input_and_where():
    m = _mlp()
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(gn.NonFiniteError, match=r"^input 'x' holds nan at index \(3, 1\): "
                                                r"data must be finite numbers$") as err:
        gn.evaluate(m.loss, {"x": bad, "y": Y})             # was: linear node 'h.net', lower the learning rate
    assert err.value.node is m.inputs[0]
    with pytest.raises(gn.NonFiniteError, match=r"^input 'y' holds inf at index \(2, 0\)"):
        gn.evaluate(m.loss, {"x": X, "y": np.where(np.arange(4)[:, None] == 2, np.inf, Y)})
    # a NaN the net makes itself is still the first node's, with the advice
    with np.errstate(over="ignore"), pytest.raises(gn.NonFiniteError, match=r"'h\.net' is the first to "
                                                                           r"produce inf.*Lower the learning rate"):
        gn.evaluate(m.loss, {"x": X, "y": Y}, {"h.W": np.full((3, 4), 1e308)})


@pytest.mark.parametrize("name", available())
def test_every_builtin_model_names_nan_in_its_data(name):
    model, example = _model_and_example(name)
    feeds = {k: np.array(v, dtype=float) for k, v in example[0].items()}
    node = next((n for n in model.inputs if n.dtype != "int" and n.name in feeds and feeds[n.name].size), None)
    if node is None:
        pytest.skip(f"{name} has no float input")
    feeds[node.name].flat[-1] = np.nan
    where = np.unravel_index(feeds[node.name].size - 1, feeds[node.name].shape)
    with pytest.raises(gn.NonFiniteError, match=rf"^input {node.name!r} holds nan at index "
                                                rf"\({', '.join(map(str, where))},?\): data must be finite"):
        gn.evaluate(model.loss, feeds)
