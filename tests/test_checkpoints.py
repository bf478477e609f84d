"""Checkpoints that lose nothing and load nothing wrong (issue 17).

Atomic writes under kill -9, symlinks replaced and never followed, one key per parameter
(not per display name), every array and metadata field validated, crafted files refused
within bounded memory, and resume exact mid-epoch on every backend and task runner.
"""
from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile

import numpy as np
import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.models import available, get_model
from graphnn.training import Trainer
from graphnn.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _tiny():
    return get_model("xor")


# -- atomic writes ---------------------------------------------------------------------------------

def test_kill_9_while_writing_never_loses_the_checkpoint(tmp_path):
    """100 writer processes killed at random moments: the file always loads, whole and consistent."""
    model = _tiny()
    start = model.initial_params()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, start)
    rng = np.random.default_rng(0)
    lost = []
    for attempt in range(100):
        pid = os.fork()
        if pid == 0:   # the writer: checkpoint k holds the initial values + k, as fast as it can
            try:
                k = 1
                while True:
                    save_checkpoint(path, model, {p: v + k for p, v in start.items()}, epoch=k)
                    k += 1
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.001, 0.012))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            ck = load_checkpoint(path, model)
            for p, v in start.items():
                np.testing.assert_array_equal(ck.params[p], v + ck.epoch)
        except Exception as e:  # noqa: BLE001  (any failure to load is a lost checkpoint)
            lost.append(f"try {attempt}: {type(e).__name__}: {e}")
    assert not lost, f"{len(lost)} of 100 checkpoints lost: {lost[:3]}"
    # the kills did land in the middle of writes: their temporary files are what is left
    assert list(tmp_path.glob(".ck.npz.*.tmp")), "no kill hit a write: the test proved nothing"


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    model = _tiny()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    link = tmp_path / "ck.npz"
    link.symlink_to(victim)
    save_checkpoint(link, model, model.initial_params())
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and load_checkpoint(link, model).epoch == 0


def test_non_finite_values_are_never_written(tmp_path):
    model = _tiny()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, model.initial_params(), epoch=3)
    bad = {p: v * np.nan for p, v in model.initial_params().items()}
    with pytest.raises(gn.NonFiniteError, match="not writing checkpoint"):
        save_checkpoint(path, model, bad, epoch=4)
    assert load_checkpoint(path, model).epoch == 3


# -- keys and validation -----------------------------------------------------------------------------

def test_two_parameters_with_one_name_keep_their_own_values(tmp_path):
    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 2))
    W1 = gn.parameter("W", np.full((3, 4), 0.1))
    W2 = gn.parameter("W", np.full((4, 2), -0.2))
    y = gn.tanh(x @ W1) @ W2
    model = gn.Model("twins", gn.losses.mse(y, t), y, (x, t),
                     gn.Dataset({"x": np.ones((5, 3)), "t": np.zeros((5, 2))}))
    trainer = Trainer(model, lr=0.1)
    trainer.fit(steps=3, progress=False)
    before = trainer.loss()
    path = trainer.save(tmp_path / "twins")
    again = Trainer(model, lr=0.1).load(path)
    assert again.loss() == before
    np.testing.assert_array_equal(again.params[W1], trainer.params[W1])
    np.testing.assert_array_equal(again.params[W2], trainer.params[W2])


def _rewrite(path, **arrays):
    """Replace entries of a checkpoint (tests craft bad files from good ones)."""
    with zipfile.ZipFile(path) as zf:
        entries = {n[:-4]: np.lib.format.read_array(zf.open(n)) for n in zf.namelist()}
    entries.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **{k: v for k, v in entries.items() if v is not None})


def _meta(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(str(np.lib.format.read_array(zf.open("__meta__.npy"))))


@pytest.mark.parametrize("entry,value,message", [
    ("param/0", np.array(0.5), r"shape \(\), but the model's has shape \(2, 2\)"),       # a scalar broadcast
    ("param/0", np.ones((2, 2), complex), "dtype complex128"),
    ("param/0", np.array([["a", "b"], ["c", "d"]]), "dtype <U1"),
    ("param/0", np.full((2, 2), np.nan), "NaN or inf"),
    ("param/1", None, r"no values for parameter 'b1' \(#1\)"),
    ("__meta__", np.array("not json"), "not valid JSON"),
    ("__meta__", np.arange(3), "not one text value"),
])
def test_bad_arrays_are_one_checkpoint_error(tmp_path, entry, value, message):
    model = _tiny()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, model.initial_params())
    _rewrite(path, **{entry: value})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, model)


@pytest.mark.parametrize("field,value", [("steps", -1), ("epoch", "3"), ("batch_in_epoch", 1.5),
                                          ("rng", {"bit_generator": "PCG64"}), ("params", "W"),
                                          ("counters", {"training_step": -4}), ("format", "other")])
def test_bad_metadata_is_one_checkpoint_error(tmp_path, field, value):
    model = _tiny()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, model.initial_params(), rng_state=np.random.default_rng().bit_generator.state)
    meta = _meta(path)
    meta[field] = value
    _rewrite(path, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(CheckpointError):
        load_checkpoint(path, model)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "npy"])
def test_damaged_files_are_one_checkpoint_error(tmp_path, damage):
    model = _tiny()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, model.initial_params())
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:len(data) // 2], "garbage": b"\x00junk" * 100, "empty": b"",
                      "npy": _npy_bytes(np.arange(4.0))}[damage])
    with pytest.raises(CheckpointError, match="not a readable graphnn checkpoint"):
        load_checkpoint(path, model)


def _npy_bytes(a):
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def test_a_crafted_file_cannot_make_the_loader_allocate_much(tmp_path):
    """A 64 MB entry compressed into a few hundred KB, and a header that claims a 8 TB shape."""
    import tracemalloc

    model = _tiny()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, model.initial_params())
    meta = _meta(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("__meta__.npy", _npy_bytes(np.array(json.dumps(meta))))
        with zf.open("param/0.npy", "w") as f:   # 64 MB of zeros
            f.write(np.lib.format.magic(1, 0))
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (2, 2)})
            chunk = bytes(1 << 24)
            for _ in range(4):
                f.write(chunk)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (1 << 40,)})
        zf.writestr("param/1.npy", np.lib.format.magic(1, 0) + header.getvalue())
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="more than a"):
        load_checkpoint(path, model)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20, f"loading a crafted file allocated {peak / 1e6:.0f} MB"


# -- exact resume ---------------------------------------------------------------------------------------

TRAINED = [n for n, b in available().items() if n not in ("perceptron-and", "perceptron-or", "hopfield",
                                                                  "stacked-autoencoder")]
SMALL = {"digits-mlp": {"hidden": 8}, "rnn": {"steps": 2, "hidden": 3}, "lstm": {"steps": 2, "hidden": 2},
         "cnn": {"filters": (2, 3), "hidden": 4, "dropout_rate": 0.5}, "autoencoder": {"hidden": 4},
         "denoising-autoencoder": {"hidden": 4}, "attention": {"d_model": 4, "heads": 2},
         "transformer": {"block": 8, "d_model": 8, "heads": 2, "layers": 1, "d_ff": 8, "stride": 256},
         "gan": {"hidden": 4, "n": 64}, "diffusion": {"hidden": 4, "n": 64}, "contrastive": {"d_embed": 4, "hidden": 4}}


def noisy_net(seed=0):
    """A small net with input noise and dropout (both read the training step), 9 rows."""
    rng = np.random.default_rng(seed)
    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 2))
    W1, b1 = gn.parameter("W1", rng.normal(0, 0.5, (3, 5))), gn.parameter("b1", np.zeros(5))
    W2, b2 = gn.parameter("W2", rng.normal(0, 0.5, (5, 2))), gn.parameter("b2", np.zeros(2))
    h = gn.dropout(gn.tanh(gn.linear(gn.gaussian_noise(x, 0.3, name="x~"), W1, b1)), 0.4, name="drop")
    y = gn.linear(h, W2, b2)
    data = gn.Dataset({"x": rng.normal(size=(9, 3)), "t": rng.normal(size=(9, 2))})
    return gn.Model("noisy", gn.losses.mse(y, t), y, (x, t), data)


def _resume_matches(build, backend, tmp_path, first=3, then=4, optimizer="adam"):
    from graphnn.training import with_training_feeds

    def trainer():
        return with_training_feeds(Trainer(build(), backend=backend, optimizer=optimizer, lr=0.01, batch_size=2,
                                           seed=4))
    whole = trainer()
    whole.fit(steps=first + then, progress=False)
    part = trainer()
    part.fit(steps=first, progress=False)
    path = part.save(tmp_path / f"ck-{backend}")
    resumed = trainer().load(path)
    resumed.fit(steps=then, progress=False)
    assert resumed.epoch == whole.epoch
    assert resumed.backend.steps == whole.backend.steps
    for p, q in zip(whole.model.parameters, resumed.model.parameters):
        np.testing.assert_array_equal(resumed.params[q], whole.params[p], err_msg=p.name)


@pytest.mark.parametrize("name", TRAINED)
def test_resume_mid_epoch_is_exact_for_every_model(name, tmp_path):
    """Mid-epoch (batch 2 of a shuffled epoch), Adam, training mode on: the same as never stopping."""
    _resume_matches(lambda: get_model(name, **SMALL.get(name, {})), "numpy", tmp_path)


def test_resume_mid_epoch_is_exact_on_the_cpu_backend(tmp_path):
    """Batch order, Adam's moments (views of the flat state) and step continue, compiled.

    (The dropout/noise step is restored the same way on every backend: the numpy test above
    covers the models that use them, tests/test_cuda_integrity.py the cuda backend.)"""
    _resume_matches(lambda: get_model("linear-regression"), "cpu", tmp_path)


def test_loading_a_checkpoint_of_another_optimizer_is_refused(tmp_path):
    a = Trainer(_tiny(), optimizer="adam", lr=0.1)
    a.fit(steps=2, progress=False)
    path = a.save(tmp_path / "adam")
    with pytest.raises(CheckpointError, match="optimizer state"):
        Trainer(_tiny(), optimizer="momentum", lr=0.1).load(path)


# -- the CLI: every task runner ---------------------------------------------------------------------------

def test_checkpoint_without_suffix_resumes_by_the_same_name(tmp_path, capsys):
    ck = str(tmp_path / "run")
    assert main(["train", "xor", "--steps", "5", "--checkpoint", ck, "--no-progress"]) == 0
    assert main(["train", "xor", "--steps", "5", "--resume", ck, "--no-progress"]) == 0
    assert f"resumed from {ck}" in capsys.readouterr().out


@pytest.mark.parametrize("name,extra", [
    ("perceptron-and", ["--epochs", "3"]), ("hopfield", []), ("autoencoder", ["--epochs", "1"]),
    ("denoising-autoencoder", ["--epochs", "1"]), ("stacked-autoencoder", ["--epochs", "1"]),
    ("xor", ["--steps", "20"]),
])
def test_every_task_runner_checkpoints_resumes_and_plots(name, extra, tmp_path, capsys):
    ck, png = tmp_path / "ck.npz", tmp_path / "curves.png"
    assert main(["train", name, *extra, "--checkpoint", str(ck), "--plot", str(png), "--no-progress"]) == 0
    assert ck.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    model = get_model(name)
    saved = load_checkpoint(ck, model)
    assert main(["train", name, *extra, "--resume", str(ck), "--no-progress"]) == 0
    assert f"from {ck}" in capsys.readouterr().out
    if name == "hopfield":   # the stored weights come back as they were saved
        np.testing.assert_array_equal(saved.params[model.extras["W"]], model.extras["W"].value)


def test_resume_mid_epoch_with_another_batch_size_starts_at_the_same_example(tmp_path):
    """9 rows in batches of 2, stopped after 2 batches (4 examples): resumed in batches of 4 the
    epoch goes on with examples 5–8 and 9 (two batches). It skipped 2 batches of the new size
    before, 8 examples, training 4 fewer without a word."""
    def trainer(batch_size):
        return Trainer(noisy_net(), optimizer="sgd", lr=0.01, batch_size=batch_size, seed=4)
    part = trainer(2)
    part.fit(steps=2, progress=False)
    path = part.save(tmp_path / "mid")
    resumed = trainer(4).load(path)
    resumed.fit(steps=1, progress=False)
    assert resumed.epoch == 0                # examples 5–8: the epoch is not over
    resumed.fit(steps=1, progress=False)
    assert resumed.epoch == 1                # example 9: now it is
    part.fit(steps=1, progress=False)        # 6 examples done: batches of 4 cannot start at the 7th
    odd = part.save(tmp_path / "odd")
    with pytest.raises(CheckpointError, match=r"odd.npz stopped mid-epoch, after 3 batches of 2 \(6 examples\); "
                                              r"batches of 4 cannot start at example 7 .*resume with batch size 2"):
        trainer(4).load(odd)
    same = trainer(2).load(odd)              # the same size: as before
    same.fit(steps=2, progress=False)
    assert same.epoch == 1


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_fit_in_pieces_goes_on_with_the_epoch_it_stopped_in(backend):
    """fit(steps=3) then fit(steps=4) is fit(steps=7): the second call finished the shuffled
    epoch the first stopped in (it drew a new order and started over, and the epoch count
    never moved while every call stopped mid-epoch)."""
    def trainer():
        return Trainer(noisy_net(), backend=backend, optimizer="adam", lr=0.01, batch_size=2, seed=4)
    whole, pieces = trainer(), trainer()
    whole.fit(steps=7, progress=False)
    pieces.fit(steps=3, progress=False)
    pieces.fit(steps=4, progress=False)
    assert (pieces.epoch, pieces.step) == (whole.epoch, whole.step) == (1, 7)
    for p, q in zip(whole.model.parameters, pieces.model.parameters):
        np.testing.assert_allclose(pieces.params[q], whole.params[p], rtol=1e-12, atol=1e-15, err_msg=p.name)


def test_a_resumed_gan_goes_on_counting_its_epochs(tmp_path, capsys):
    """The log restarted at epoch 1 after --resume (the other runners go on from the checkpoint's)."""
    ck = tmp_path / "gan.npz"
    plot = str(tmp_path / "gan.png")
    assert main(["train", "gan", "--epochs", "2", "--checkpoint", str(ck), "--plot", plot, "--no-progress"]) == 0
    assert "epoch    2" in capsys.readouterr().out
    assert main(["train", "gan", "--epochs", "2", "--resume", str(ck), "--checkpoint", str(ck), "--plot", plot,
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"resumed both players from {ck} (epoch 2)" in out and "epoch    4" in out and "epoch    1 " not in out
    assert load_checkpoint(ck, get_model("gan")).epoch == 4
