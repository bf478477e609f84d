"""The reference evaluator's feeds and parameter values by name, and what it says about bad
data: unknown and ambiguous names (bug hunt A, item 5)."""
from __future__ import annotations

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


def test_an_unknown_feed_name_is_an_error_naming_it():
    m = _mlp()
    with pytest.raises(gn.FeedError, match=r"^feed 'bogus' names no input of this graph; its inputs: 'x'"):
        gn.evaluate(m.output, {"x": X, "bogus": 1.0})
    with pytest.raises(gn.FeedError, match=r"^feed 'h\.W' names a parameter, not an input"):
        gn.evaluate(m.output, {"x": X, "h.W": np.zeros((3, 4))})
    with pytest.raises(gn.FeedError, match=r"^feed 'h\.W' names a parameter, not an input"):
        gn.evaluate(m.output, {"x": X, m.find("h.W"): np.zeros((3, 4))})
    # the target belongs to the model, not to the output's graph: an error unless the model is the scope
    with pytest.raises(gn.FeedError, match=r"^feed 'y' names no input of this graph; its inputs: 'x' "
                                           r"\(evaluating part of a model\? pass scope=model\)$"):
        gn.evaluate(m.output, {"x": X, "y": Y})
    np.testing.assert_array_equal(gn.evaluate(m.output, {"x": X, "y": Y}, scope=m), gn.evaluate(m.output, {"x": X}))
    np.testing.assert_array_equal(gn.evaluate(m.output, {"x": X, "y": Y}, scope=m.loss),
                                  gn.evaluate(m.output, {"x": X}))
    with pytest.raises(gn.FeedError, match=r"^feed 'bogus' names no input of this graph"):
        gn.evaluate(m.output, {"x": X, "bogus": 1.0}, scope=m)
    # a node outside the graph is not a typo: a model's whole parameter dict may be given to part of it
    params = m.initial_params()
    np.testing.assert_array_equal(gn.evaluate(m.find("h"), {"x": X}, params), gn.evaluate(m.find("h"), {"x": X}))


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


@pytest.mark.parametrize("name", available())
def test_every_builtin_model_names_a_misspelt_parameter(name):
    model = get_model(name)
    example = model.example_feeds()
    if example is None:
        pytest.skip(f"{name} has no example feeds")
    feeds = {k: np.asarray(v)[:2] for k, v in example[0].items()}
    first = model.params[0] if model.params else model.parameters[0]
    wrong = first.name.swapcase() if first.name.swapcase() != first.name else first.name + "_"
    with pytest.raises(gn.FeedError, match=rf"^parameter value {wrong!r} names no parameter of this graph"):
        gn.evaluate(model.loss, feeds, {wrong: first.value})
    with pytest.raises(gn.FeedError, match=r"^feed 'bogus' names no input of this graph"):
        gn.evaluate(model.loss, {**feeds, "bogus": 0.0})
    gn.evaluate([model.loss, model.output], feeds, model.initial_params())     # the model's own feeds pass
    gn.evaluate(model.output, feeds, scope=model)

