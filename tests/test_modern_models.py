"""The modern half of the course as built-in models: transformer, gan, diffusion, contrastive.

Each is listed by ``graphnn models`` and goes through ``show``, ``derive``, ``draw`` and
``codegen`` from the CLI; its matrix derivation speaks the course's notation (layer norm's
compact gradient, stop_gradient in the GAN, softmax − I for InfoNCE). One compiled module
per model (float64, the optimizer it trains with) is checked against the reference
evaluator over an epoch to 1e-10 and then trained on the cpu backend, short runs that must
learn: the transformer below its bigram baseline, the GAN on every mode, the diffusion
model's samples near the data by the energy distance, zero-shot accuracy far above chance.
(These four are left out of test_codegen_models.py's loops, which would compile each twice
more with SGD: this module holds their compiled == reference checks.)
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import codegen
from graphnn.cli import main
from graphnn.derive import derive
from graphnn.draw import draw
from graphnn.models import available, get_model
from graphnn.models.transformer import transformer
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend, Trainer
from graphnn.training.generative import gan_epoch, gan_players
from graphnn.training.language import sample_from_checkpoint
from graphnn.training.tasks import TrainOptions, run

pytestmark = pytest.mark.usefixtures("private_cache_dir")

MODERN = ["transformer", "gan", "diffusion", "contrastive"]
#: short runs that still must learn (the GAN reaches its 8th mode after ~100 epochs)
GAN_EPOCHS, DIFFUSION_EPOCHS, CONTRASTIVE_EPOCHS = 150, 40, 2


def _small_transformer():
    """One pre-norm block, two heads: every op of the default stack, half its compile."""
    return transformer(block=16, d_model=16, heads=2, layers=1, d_ff=32)


def test_listed_by_graphnn_models(capsys):
    assert main(["models"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(MODERN) <= listed and set(MODERN) <= set(available())


@pytest.mark.parametrize("name", MODERN)
def test_show_derive_draw_codegen_from_the_cli(name, capsys, tmp_path):
    last = get_model(name).params[-1].name     # the shortest derivation (the deep ones are below)
    assert main(["show", name]) == 0
    assert main(["derive", name, "--wrt", last, "--view", "matrix", "--values"]) == 0
    assert main(["draw", name, "--collapse", "-o", str(tmp_path / f"{name}.dot")]) == 0
    assert main(["draw", name, "--view", "backward", "--collapse", "-o", str(tmp_path / "b.dot")]) == 0
    assert main(["codegen", name]) == 0
    assert main(["codegen", name, "--cuda"]) == 0
    out = capsys.readouterr().out
    assert f"∂" in out and "@njit" in out and "cuda.jit" in out
    assert "digraph" in (tmp_path / f"{name}.dot").read_text()


def test_collapsed_drawing_has_one_box_per_decoder_block():
    source = draw(transformer(layers=3), collapse=True, modules=True).source
    assert [int(k) for k in re.findall(r"<B>block<SUB>(\d)</SUB></B>", source)] == [1, 2, 3]
    # the boxes are counted as drawn: embedding, three blocks, the final norm, then the head
    # (it read "layer 18: linear", numbered by the layers merged away)
    assert re.findall(r"layer (\d+): ", source) == ["1", "6"]


def test_layer_norm_derivation_shows_the_compact_gradient():
    d = derive(_small_transformer(), ["E"], view="matrix")
    tex = d.to_latex()
    # ∂L/∂x = (1/σ)(g − mean g − x̂ ⊙ mean(g ⊙ x̂)) as a row of the derivation, not only its note
    assert re.search(r"&= .*\\frac\{1\}\{\\sigma\}\\left\(.*\\overline\{.*\\odot", tex)
    assert "Jacobian" in d.to_text()            # the note says why no n × n matrix appears
    assert r"\sum_{p \,:\," in tex              # the embedding's scatter-add


def test_gan_derivation_shows_stop_gradient():
    tex = derive(get_model("gan"), ["G.W1", "D.W1"], view="matrix").to_latex()
    assert r"\tilde{x} &= \operatorname{sg}\left[G\left(z\right)\right]" in tex   # D's step: fakes are data
    assert r"\bar{W}_{1} &= \operatorname{sg}\left[\mathrm{D}.W_{1}\right]" in tex   # G's step: D's weights held


def test_contrastive_derivation_shows_softmax_minus_identity():
    text = derive(get_model("contrastive"), ["s"], view="matrix").to_text()
    row = next(line for line in text.splitlines() if line.strip().startswith("∂L/∂z ="))
    assert "softmax(z) - I" in row and "softmax(zᵀ) - I" in row


def _same_epoch(model, feeds, batches, optimizer, lr):
    cpu = codegen.CpuBackend(model, make_optimizer(optimizer, lr=lr), "float64")
    ref = NumpyBackend(model, make_optimizer(optimizer, lr=lr), "float64")
    assert cpu.train_epoch(feeds, batches) == pytest.approx(ref.train_epoch(feeds, batches), rel=1e-10, abs=1e-12)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=0, atol=1e-10, err_msg=p.name)


def _epoch_of(model, n, batch, seed=0):
    feeds = {k: v[:n] for k, v in model.data.train.items()}
    order = np.random.default_rng(seed).permutation(n)
    return feeds, [order[i:i + batch] for i in range(0, n, batch)]


def _trained(model, **kw):
    """The report lines of a cpu-backend training run (the CLI's own runner)."""
    lines = []
    run(model, TrainOptions(backend="cpu", report=lines.append, **kw))
    return "\n".join(lines)


def _cli_trained(capsys, name, epochs, *extra):
    """``graphnn train NAME --backend cpu --epochs N …``: its output."""
    capsys.readouterr()
    assert main(["train", name, "--backend", "cpu", "--epochs", str(epochs), "--no-progress", *extra]) == 0
    return capsys.readouterr().out


def test_transformer_compiled_epoch_and_it_beats_the_bigram_baseline(tmp_path):
    model = _small_transformer()
    _same_epoch(model, *_epoch_of(model, 80, 32), "adam", 1e-2)
    ck = tmp_path / "tf.npz"
    out = _trained(model, epochs=3, lr=1e-2, checkpoint=str(ck), plot=str(tmp_path / "c.png"))
    val, bigram = map(float, re.search(r"validation loss ([\d.]+) nats/character: below the bigram baseline "
                                       r"([\d.]+)", out).groups())
    assert val < bigram - 0.05, out
    text = sample_from_checkpoint(model, ck, prompt="MENENIUS:", length=40, seed=1)
    assert text.startswith("MENENIUS:") and len(text) == len("MENENIUS:") + 40
    assert set(text) <= set(model.extras["vocab"].chars)


def test_graphnn_sample_continues_a_prompt_from_a_checkpoint(tmp_path, capsys):
    path = Trainer(get_model("transformer")).save(tmp_path / "t.npz")     # untrained weights: any text
    assert main(["sample", "transformer", "--checkpoint", str(path), "--prompt", "CORIOLANUS:", "--length", "12"]) == 0
    out = capsys.readouterr().out[:-1]      # print's newline (the text may end in one of its own)
    assert out.startswith("CORIOLANUS:") and len(out) == len("CORIOLANUS:") + 12


def test_sample_refuses_a_model_that_is_not_a_language_model(capsys):
    assert main(["sample", "gan", "--prompt", "x"]) != 0
    assert "not a language model" in capsys.readouterr().err


def test_gan_players_compiled_epoch_and_every_mode_covered(tmp_path, capsys):
    model = get_model("gan")
    real = model.data.train["x"][:192]
    (dc, gc), (dr, gr) = gan_players(model, "cpu"), gan_players(model, "numpy")
    lc = gan_epoch(model, dc, gc, real, 64, np.random.default_rng(3))
    lr_ = gan_epoch(model, dr, gr, real, 64, np.random.default_rng(3))
    np.testing.assert_allclose(lc, lr_, rtol=1e-10)
    for compiled, reference, player in ((dc, dr, "discriminator"), (gc, gr, "generator")):
        for p in model.extras[player].params:
            np.testing.assert_allclose(compiled.params[p], reference.params[p], atol=1e-10, err_msg=p.name)
    out = _cli_trained(capsys, "gan", GAN_EPOCHS, "--plot", str(tmp_path / "gan.png"))
    assert re.search(r"final: 8 of 8 modes covered", out), out
    assert (tmp_path / "gan.png").stat().st_size > 10_000


def test_diffusion_compiled_epoch_and_samples_near_the_data(tmp_path, capsys):
    model = get_model("diffusion")
    _same_epoch(model, *_epoch_of(model, 96, 32), "adam", model.defaults["lr"])
    out = _cli_trained(capsys, "diffusion", DIFFUSION_EPOCHS, "--plot", str(tmp_path / "ddpm.png"))
    ed, prior = map(float, re.search(r"energy distance ([\d.]+) \(the prior N\(0, I\): ([\d.]+)\)", out).groups())
    assert ed < prior / 4, out
    assert (tmp_path / "ddpm.png").stat().st_size > 10_000


def test_contrastive_compiled_epoch_and_zero_shot_far_above_chance(capsys):
    model = get_model("contrastive")
    _same_epoch(model, *_epoch_of(model, 8, 2), "adam", model.defaults["lr"])
    out = _cli_trained(capsys, "contrastive", CONTRASTIVE_EPOCHS)
    acc = float(re.search(r"zero-shot accuracy on the \d+ test digits: ([\d.]+) \(chance 0.1000\)", out).group(1))
    assert acc > 0.5, out

