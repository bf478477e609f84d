"""The model zoo: each model builds, its gradient passes check_grad (tiny sizes), the tied
autoencoder's W gets both terms, and short trainings through the API and the CLI learn."""
import numpy as np
import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.models import available, get_model
from graphnn.models.zoo import attention, autoencoder, cnn, denoising_autoencoder, stacked_autoencoder
from graphnn.training.pretraining import compare_pretraining, make_trainer, reconstruction_errors
from graphnn.training import Trainer

ZOO = ["cnn", "autoencoder", "denoising-autoencoder", "stacked-autoencoder", "attention"]


def test_models_are_registered():
    assert set(ZOO) <= set(available())
    for name in ZOO:
        model = get_model(name)
        assert model.loss.shape == () and model.params


def _small_feeds(model, n=2, **extra):
    return {k: v[:n] for k, v in model.data.train.items()} | extra


def _off_kinks(model, n=2, seed=0):
    """Random images and biases: the digits' blank borders would put ReLU/max-pool exactly on a kink."""
    rng = np.random.default_rng(seed)
    feeds = _small_feeds(model, n)
    feeds["x"] = rng.uniform(0.1, 1.0, feeds["x"].shape)
    params = {p: rng.normal(0.0, 0.5, p.shape) for p in model.params}
    return feeds, params


def test_cnn_gradient_small():
    model = cnn(filters=(2, 3), hidden=4)
    feeds, params = _off_kinks(model)
    gn.check_grad(model.loss, model.params, feeds, params)


def test_cnn_with_dropout_gradient_in_training_mode():
    model = cnn(filters=(2, 2), hidden=4, dropout_rate=0.5)
    assert any(n.op.name == "dropout" for n in model.graph.nodes)
    feeds, params = _off_kinks(model, seed=1)
    gn.check_grad(model.loss, model.params, feeds | {"training": 1.0, "step": 2}, params)


def test_attention_model_gradient():
    model = attention(d_model=4, heads=2)
    gn.check_grad(model.loss, model.params, _small_feeds(model))


def test_tied_autoencoder_gradient_sums_both_uses_of_W():
    model = autoencoder(hidden=3)
    W = model.find("W")
    grads = gn.grad(model.loss, model.params)
    terms = grads.record.terms_into(W)
    assert len(terms) == 2
    consumers = sorted(t.consumer.op.name for t in terms)
    assert consumers == ["linear", "transpose"]  # the encoder's x W and the decoder's Wᵀ
    feeds = _small_feeds(model, 3)
    values = gn.evaluate([grads[W]] + [t.contribution for t in terms], feeds)
    np.testing.assert_allclose(values[0], values[1] + values[2])
    assert np.abs(values[1]).max() > 0 and np.abs(values[2]).max() > 0
    gn.check_grad(model.loss, model.params, feeds)


@pytest.mark.parametrize("noise", ["masking", "gaussian"])
def test_denoising_autoencoder_corrupts_in_training_only_and_compares_with_clean_x(noise):
    model = denoising_autoencoder(noise=noise, hidden=3)
    x = model.inputs[0]
    x_tilde = model.find("x̃")
    xv = model.data.train["x"][:4]
    np.testing.assert_array_equal(gn.evaluate(x_tilde, {"x": xv}), xv)
    corrupted = gn.evaluate(x_tilde, {"x": xv, "training": 1, "step": 1})
    assert not np.array_equal(corrupted, xv)
    # the loss's target is the clean input node itself, not the corrupted one
    loss_elements = model.find("L_elements")
    assert x in loss_elements.inputs and x_tilde not in loss_elements.inputs
    gn.check_grad(model.loss, model.params, {"x": xv, "training": 1.0, "step": 3})


def test_cnn_learns_quickly():
    trainer = Trainer(cnn())
    trainer.fit(epochs=2)
    assert trainer.accuracy("test") > 0.9


def test_autoencoder_reconstructs_far_better_than_the_mean_image():
    model = autoencoder()
    trainer = make_trainer(model)
    trainer.fit(epochs=8)
    errs = reconstruction_errors(model, trainer.params)
    assert errs["reconstruction"] < 0.4 * errs["mean image"]


def test_denoising_reduces_the_corruption():
    model = denoising_autoencoder()
    trainer = make_trainer(model)
    trainer.fit(epochs=8)
    errs = reconstruction_errors(model, trainer.params, corrupted=True)
    assert errs["reconstruction"] < 0.8 * errs["corrupted input"]


def test_stacked_pretraining_runs_and_classifies():
    model = stacked_autoencoder()
    results, errors = compare_pretraining(model, epochs=4, pretrain_epochs=4)
    assert len(errors) == 2 and all(rec < mean for rec, mean in errors)
    assert results["pretrained"] > 0.7
    assert set(results) == {"pretrained", "no pretraining"}


def test_attention_learns():
    trainer = Trainer(attention())
    trainer.fit(epochs=4)
    assert trainer.accuracy("test") > 0.7


def test_cli_trains_the_autoencoders(capsys):
    assert main(["train", "autoencoder", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "test reconstruction error (MSE per pixel)" in out and "predicting the mean image" in out
    assert main(["train", "denoising-autoencoder", "--epochs", "1"]) == 0
    assert "denoising (masking 0.3)" in capsys.readouterr().out
    assert main(["train", "stacked-autoencoder", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "without pretraining: test accuracy" in out


def test_cli_trains_and_shows_the_cnn(capsys):
    assert main(["show", "cnn"]) == 0
    out = capsys.readouterr().out
    assert "conv2d 3×3×16, same" in out and "max-pool 2×2" in out
    assert main(["train", "cnn", "--epochs", "1"]) == 0
    assert "test accuracy:" in capsys.readouterr().out


def test_tied_weights_derivation_shows_both_terms():
    from graphnn import losses
    from graphnn.derive import derive
    from graphnn.models.zoo import tied_layer

    rng = np.random.default_rng(0)
    x = gn.input("x", (None, 3))
    _, x_hat, _ = tied_layer(x, 3, 2, rng)
    loss = losses.quadratic(x_hat, x, name="E")
    text = derive(loss, ["W"], values={"x": rng.uniform(size=(1, 3))}, view="matrix").to_text()
    # the decoder's use (through Wᵀ, transposed back: (hᵀ δ⁽²⁾)ᵀ) + the encoder's, never Wᵀᵀ
    assert "∂E/∂W = δ⁽²⁾ᵀ h + xᵀ δ⁽¹⁾" in text and "ᵀᵀ" not in text


def test_ops_view_of_the_cnn_is_readable(capsys):
    assert main(["draw", "cnn"]) == 0
    dot = capsys.readouterr().out
    for label in ("conv2d 3×3×16, same", "conv2d 3×3×32, same", "max-pool 2×2", "layer 1: conv2d 3×3×16, same"):
        assert label in dot
