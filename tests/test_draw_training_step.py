"""Drawings with values show the training step `derive` shows (`graphnn.noise.training_step`,
one mechanism): `draw denoising-autoencoder --values` showed evaluation (x̃ = x, no
corruption) while `derive denoising-autoencoder` showed step 0's masking noise."""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn
from graphnn.noise import training_step
from graphnn.draw.context import example_feeds, make_context
from graphnn.models import available, get_model
from graphnn.ops import Dropout, GaussianNoise


def _dropout_mlp():
    x, t = gn.input("x", (None, 6)), gn.input("t", (None, 1))
    W = gn.parameter("W", np.linspace(-1, 1, 36).reshape(6, 6))
    h = gn.dropout(gn.tanh(gn.linear(x, W, gn.parameter("b", np.zeros(6)), name="net"), name="h"), 0.5, name="h_drop")
    y = gn.linear(h, gn.parameter("V", np.ones((6, 1))), gn.parameter("c", [0.0]), name="y")
    return gn.Model(name="dropout-mlp", loss=gn.losses.mse(y, t), output=y, inputs=(x, t),
                    example={"x": np.arange(1.0, 7.0)[None, :], "t": [[1.0]]})


def _noisy(model):
    return [n for n in model.graph.nodes if n.kind == "op" and isinstance(n.op, (Dropout, GaussianNoise))]


NOISY_MODELS = [name for name in sorted(available()) if _noisy(get_model(name))] + ["dropout-mlp"]


def _model(name):
    return _dropout_mlp() if name == "dropout-mlp" else get_model(name)


def test_some_built_in_model_has_training_noise():
    assert "denoising-autoencoder" in NOISY_MODELS


@pytest.mark.parametrize("name", NOISY_MODELS)
def test_drawn_values_are_derives_training_step(name):
    model = _model(name)
    feeds = example_feeds(model)
    train_feeds, _ = training_step(model.graph, feeds)
    ctx = make_context(model, "example", grads=True)
    for node in _noisy(model) + [model.loss]:
        want = gn.evaluate(node, train_feeds)
        assert np.allclose(ctx.values[node], want), node.name
        assert not np.allclose(want, gn.evaluate(node, feeds)), f"{node.name}: no noise acted"
    for view in ("ops", "backward"):
        src = gn.draw(model, view=view, grads=True).source
        assert "training step 0: its seeded noise acts" in src, view


@pytest.mark.parametrize("name", NOISY_MODELS)
def test_training_zero_still_draws_evaluation(name):
    model = _model(name)
    feeds = {**example_feeds(model), "training": 0.0}
    ctx = make_context(model, feeds)
    for node in _noisy(model):
        assert np.allclose(ctx.values[node], gn.evaluate(node.inputs[0], feeds)), node.name
    assert "evaluation (training = 0)" in gn.draw(model, view="ops", values=feeds).source
