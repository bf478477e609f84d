"""A derivation of a net that corrupts its input (or drops units) in training shows a
training step's numbers: the seeded mask acts, the page says which, and dropout's
plumbing inputs (training, step) are not listed as the net's inputs.

Before, `derive denoising-autoencoder --values` evaluated with training = 0: x̃ = x ⊙ m
with m all ones, every number equal to the plain autoencoder's, and the forward view
listed "training (1), step (1)" among the inputs.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.derive import derive
from graphnn.derive.resolve import training_step
from graphnn.graph import Graph
from graphnn.models import available, get_model
from graphnn.ops.dropout import Dropout, GaussianNoise


def _gradient_claims(d):
    return {(c[1].name, c[2]): v for s in d.steps for c, v in s.checks if c[0] == "gradient"}


def test_denoising_numbers_are_a_training_steps_with_the_mask_shown():
    dae, ae = get_model("denoising-autoencoder"), get_model("autoencoder")
    d = derive(dae, "W", values=True, view="matrix")
    text = d.to_text()
    assert "training step 0" in text and "m = [" in text and "elements zeroed" in text
    # the corruption acts: W's gradient differs from the plain autoencoder's …
    mine = np.asarray(d.steps[-1].checks[-1][1])
    plain = derive(ae, "W", values=True, view="matrix").steps[-1].checks[-1][1]
    assert not np.allclose(mine, plain)
    # … and equals the autodiff's in training mode at step 0
    feeds, _ = dae.example_feeds()
    W = next(p for p in dae.parameters if p.name == "W")
    want = gn.evaluate(gn.grad(dae.loss, [W])[W], dict(feeds, training=1.0, step=0.0))
    for (name, index), value in _gradient_claims(d).items():
        assert name == "W"
        np.testing.assert_allclose(value, np.asarray(want)[index] if index is not None else want, rtol=1e-9)


def test_the_mask_shown_is_the_one_the_numbers_use():
    model = get_model("denoising-autoencoder")
    feeds, _ = model.example_feeds()
    fed, note = training_step(model.graph, feeds)
    x_tilde = next(n for n in model.graph.nodes if n.kind == "op" and isinstance(n.op, Dropout))
    ones = np.ones_like(np.asarray(fed["x"])[:1])          # x̃ of an all-ones x is the mask itself
    mask = np.asarray(gn.evaluate(x_tilde, dict(fed, x=ones))).ravel()
    shown = re.search(r"m = \[([^\]]*)\]", note).group(1).split(", ")
    np.testing.assert_array_equal([float(v) for v in shown[:6]], mask[:6])
    assert float(shown[-1]) == mask[-1]
    zeroed = int(re.search(r"\((\d+) of 64 elements zeroed\)", note).group(1))
    assert 0 < zeroed < 64


def test_evaluation_mode_fed_by_the_user_says_no_noise(capsys):
    code = main(["derive", "denoising-autoencoder", "--values", "--view", "forward", "--feed", "training=0"])
    out = capsys.readouterr().out
    assert code == 0 and "No noise" in out and "training = 0" in out


def test_gaussian_noise_is_named():
    d = derive(get_model("denoising-autoencoder", noise="gaussian"), "W", values=True, view="matrix")
    assert "Gaussian noise" in d.to_text() and r"\sigma = 0.2" in d.to_latex()


@pytest.mark.parametrize("name", [n for n in available()
                                  if any(isinstance(getattr(x, "op", None), (Dropout, GaussianNoise))
                                         for x in Graph([get_model(n).loss]).nodes)])
def test_no_plumbing_inputs_in_the_forward_view(name):
    text = derive(get_model(name), None, values=True, view="forward").to_text()
    listing = next(line for line in text.splitlines() if line.startswith("The inputs and weights"))
    assert "training" not in listing and "step" not in listing, listing
    assert "training step 0" in text


def test_nets_without_noise_are_unchanged():
    model = get_model("mazur")
    feeds, _ = model.example_feeds()
    assert training_step(model.graph, feeds) == (feeds, None)
    assert "noise" not in derive(model, "w5", values=True).to_text().lower()
