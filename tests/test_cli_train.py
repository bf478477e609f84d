"""``graphnn train``'s options, each a regression test of bug hunt A: a learning-rate schedule
is checked like ``--lr`` (sign, real numbers, parse errors as one line), and the log rows
carry the right step labels.

Every CLI error is one line on stderr and exit code 2, naming the flag and what was given.
Runs are kept cheap: the NumPy reference, one to three steps.
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings

import numpy as np
import pytest
import sympy

import graphnn as gn
from graphnn.cli import main
from graphnn.files import write_text
from graphnn.models import available, get_model
from graphnn.models.transformer import transformer
from graphnn.schedules import schedule, t as T
from graphnn.training import Trainer, TrainOptions, options, pretraining, tasks
from graphnn.training.generative import gan_players


def one_error_line(capsys, args) -> str:
    """Run ``graphnn train ARGS``: it must fail with exit code 2 and one line on stderr."""
    assert main(["train", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("graphnn train: error: "), err
    assert "unexpected" not in err[0] and "Traceback" not in err[0], err
    return err[0]


# -- learning-rate schedules (items 3 and 8) ------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("-0.5", "--lr-schedule '-0.5' is -0.5 at step t = 1"),          # was: gradient ascent, exit 0
    ("2-t", "--lr-schedule '2-t' is -1 at step t = 3"),              # negative only later on
    ("I", "--lr-schedule 'I' is not a real number at step t = 1"),   # was: unexpected TypeError
    ("0.1*I*t", "--lr-schedule '0.1*I*t' is not a real number at step t = 1"),   # was: silently 0
    ("foo(", "--lr-schedule 'foo(' is not an expression in the step count t ("),  # was: sympy internals
    ("0.1*epoch", "in the step count t only"),
])
def test_a_bad_lr_schedule_is_one_line_naming_the_flag_and_the_text(text, message, capsys):
    line = one_error_line(capsys, ["mazur", "--steps", "3", "--lr-schedule", text])
    assert message in line
    if text.startswith(("-", "2")):
        assert "negative" in line


def test_lr_and_lr_schedule_together_are_an_error_naming_both(capsys):
    line = one_error_line(capsys, ["mazur", "--steps", "1", "--lr", "0.1", "--lr-schedule", "0.5"])
    assert "--lr" in line and "--lr-schedule" in line


def test_a_schedule_that_decays_to_zero_still_trains(capsys):
    # cosine's documented end value is 0: a zero rate is a step that changes nothing, not an error
    assert main(["train", "mazur", "--steps", "3", "--lr-schedule", "0.5*(3-t)/2", "--no-progress"]) == 0


def test_the_python_api_refuses_a_negative_scheduled_rate_too():
    trainer = Trainer(get_model("xor"), lr=schedule(0.5 - 0.25 * T))   # 0.25, 0, -0.25, …
    with pytest.raises(ValueError, match=r"is -0.25 at step t = 3.*negative"):
        trainer.fit(steps=5, progress=False)
    with pytest.raises(ValueError, match="not a real number"):
        schedule(sympy.I * T).values([1, 2])


# -- every runner declares the options it honours; the others are refused (item 4) ------------------

#: a valid value, unlike TrainOptions' default, for every option a runner may or may not honour
GIVEN = {"backend": "cpu", "optimizer": "momentum", "lr": 0.05, "batch_size": 3, "dtype": "float32", "seed": 7,
         "epochs": 2, "steps": 2, "test_fraction": 0.3, "validation_split": 0.2, "data": "mine.csv",
         "test_data": "mine-test.csv", "lr_schedule": "0.1", "patience": 2, "checkpoint": "{tmp}/ck.npz",
         "resume": "{tmp}/ck.npz", "plot": "{tmp}/curves.png", "verbose": True, "background_compile": False,
         "comm": object()}


def test_given_covers_every_option():
    assert set(GIVEN) == set(options.OPTIONS), "a new TrainOptions field: give it a test value here"


@pytest.fixture
def stub_runners(monkeypatch):
    """Every runner replaced by one that trains nothing: what is left is the shared check."""
    for task, runner in list(tasks.TASKS.items()):
        monkeypatch.setitem(tasks.TASKS, task, dataclasses.replace(runner, train=lambda model, opts: "trained"))
    monkeypatch.setattr(tasks, "GRADIENT_DESCENT",
                        dataclasses.replace(tasks.GRADIENT_DESCENT, train=lambda model, opts: "trained"))


@pytest.mark.parametrize("name", list(available()))
def test_every_model_takes_exactly_the_options_its_runner_declares(name, stub_runners, tmp_path):
    model = get_model(name)
    runner = tasks.runner_of(model)
    assert runner.honours <= set(options.OPTIONS)
    for option, value in GIVEN.items():
        value = value.format(tmp=tmp_path) if isinstance(value, str) else value
        opts = TrainOptions(**{option: value}, report=lambda line: None)
        if option in runner.honours:
            assert tasks.run(model, opts) == "trained", option
            continue
        with pytest.raises(ValueError) as caught:
            tasks.run(model, opts)
        message = str(caught.value)
        assert message.startswith(options.flag(option, value)), message
        assert repr(name) in message and runner.rule in message, message
        assert "\n" not in message


@pytest.mark.parametrize("args,message", [
    (["perceptron-and", "--steps", "1"], "--steps 1: 'perceptron-and' is trained by the perceptron rule"),
    (["perceptron-or", "--backend", "cuda"], "--backend cuda: 'perceptron-or' is trained by the perceptron rule"),
    (["perceptron-and", "--optimizer", "adam"], "--optimizer adam: 'perceptron-and'"),
    (["perceptron-and", "--dtype", "float32"], "--dtype float32: 'perceptron-and'"),
    (["perceptron-and", "--batch-size", "2"], "--batch-size 2: 'perceptron-and'"),
    (["perceptron-and", "--lr-schedule", "0.1"], "--lr-schedule 0.1: 'perceptron-and'"),
    (["perceptron-and", "--patience", "2"], "--patience 2: 'perceptron-and'"),
    (["hopfield", "--backend", "foo"], "unknown backend 'foo'"),
    (["xor", "--backend", "foo"], "unknown backend 'foo'"),
    (["hopfield", "--dtype", "float32"], "--dtype float32: 'hopfield' is trained by"),
    (["stacked-autoencoder", "--steps", "3"], "--steps 3: 'stacked-autoencoder' is trained by"),
    (["gan", "--patience", "2"], "--patience 2: 'gan'"),
    (["gan", "--test-fraction", "0.2"], "--test-fraction 0.2: 'gan'"),
    (["diffusion", "--patience", "2"], "--patience 2: 'diffusion'"),
])
def test_an_option_the_runner_would_ignore_is_one_line_naming_flag_and_model(args, message, capsys):
    assert message in one_error_line(capsys, args)


def test_stacked_autoencoder_passes_its_run_settings_on(monkeypatch, capsys):
    made = []

    class Spy(pretraining.Trainer):
        def __init__(self, model, **kw):
            made.append(kw)
            super().__init__(model, **kw)

    monkeypatch.setattr(pretraining, "Trainer", Spy)
    assert main(["train", "stacked-autoencoder", "--epochs", "1", "--no-progress", "--dtype", "float32",
                 "--optimizer", "momentum", "--batch-size", "64", "--seed", "3"]) == 0
    out, err = capsys.readouterr()
    assert err == "", err                                  # --no-progress: no tqdm bars (there were four)
    assert made and all(kw["dtype"] == "float32" and kw["seed"] == 3 for kw in made)
    tuned = made[-2:]                                      # the two classifiers, fine-tuned
    assert all(kw["optimizer"] == "momentum" and kw["batch_size"] == 64 for kw in tuned)


def test_gan_trains_with_the_optimizer_asked_for(tmp_path, capsys):
    disc, gen = gan_players(get_model("gan"), optimizer="sgd", lr=0.01)
    assert type(disc.optimizer).__name__ == type(gen.optimizer).__name__ == "SGD"
    assert main(["train", "gan", "--epochs", "1", "--optimizer", "sgd", "--plot", str(tmp_path / "g.png")]) == 0
    assert "SGD each" in capsys.readouterr().out


# -- --data files that cannot be read (items 6 and 7) --------------------------------------------

MLP = '''import graphnn as gn
def build():
    x = gn.input("x", (None, 3), names=("x1", "x2", "x3"))
    t = gn.input("y", (None, 1))
    p = gn.dense(gn.dense(x, 4, "tanh", name="h"), 1, name="out")
    return gn.Model("u-mlp", gn.losses.quadratic(p, t, name="L"), p, (x, t), task="regression")
'''


@pytest.mark.parametrize("name,content,message", [
    ("h.csv", b"x1,x2,x3,y\n", "h.csv has a header but no rows"),            # was: unexpected IndexError
    ("h2.csv", b"x1,x2,x3,y\n\n  \n", "h2.csv has a header but no rows"),
    ("notnpz.npz", b"hello\n", "notnpz.npz is not a readable .npz file"),   # was: numpy's allow_pickle text
    ("trunc.npz", b"PK\x03\x04 not really a zip", "trunc.npz is not a readable .npz file"),
])
def test_an_unreadable_data_file_is_one_line_naming_it(name, content, message, tmp_path, capsys):
    (tmp_path / "mlp.py").write_text(MLP)
    (tmp_path / name).write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # and no numpy warning on the way
        line = one_error_line(capsys, [str(tmp_path / "mlp.py"), "--data", str(tmp_path / name)])
    assert message in line
    assert "pickle" not in line


def test_an_npz_holding_objects_is_refused_naming_the_file(tmp_path, capsys):
    (tmp_path / "mlp.py").write_text(MLP)
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros((4, 1)))
    line = one_error_line(capsys, [str(tmp_path / "mlp.py"), "--data", str(tmp_path / "objects.npz")])
    assert "objects.npz is not a readable .npz file" in line


# -- the log rows' labels (item 11) ----------------------------------------------------------------

def _rows(out) -> dict:
    """{step number: the rest of its log line}."""
    return {int(m[0]): m[1] for m in re.findall(r"^step\s+(\d+)\s+(.*)$", out, re.M)}


def test_after_resume_the_step_rows_continue_the_count(tmp_path, capsys):
    ck = str(tmp_path / "a.npz")
    assert main(["train", "xor", "--steps", "10", "--checkpoint", ck, "--no-progress"]) == 0
    assert main(["train", "xor", "--steps", "20", "--no-progress"]) == 0
    straight = _rows(capsys.readouterr().out.split("final loss")[1])
    assert main(["train", "xor", "--steps", "10", "--resume", ck, "--no-progress"]) == 0
    resumed = _rows(capsys.readouterr().out)
    assert sorted(resumed) == list(range(11, 21))              # was: step 1 … 10 again
    assert all(resumed[k] == straight[k] for k in straight if k > 10)


def test_the_trainer_counts_steps_across_fits_and_resumes(tmp_path):
    trainer = Trainer(get_model("xor"))
    trainer.fit(steps=3, log_every=1, progress=False)
    trainer.fit(steps=2, log_every=1, progress=False)
    assert trainer.history.column("step") == [1, 2, 3, 4, 5]   # like epochs: the trainer's count
    again = Trainer(get_model("xor")).load(trainer.save(tmp_path / "x.npz"))
    again.fit(steps=2, log_every=1, progress=False)
    assert again.history.column("step") == [6, 7]


def test_a_language_model_labels_its_step_rows_step(tmp_path):
    small = transformer(block=16, d_model=16, heads=2, layers=1, d_ff=32)
    lines = []
    tasks.run(small, TrainOptions(steps=2, report=lines.append, checkpoint=str(tmp_path / "lm.npz")))
    rows = [line for line in lines if re.match(r"(step|epoch)\s+\d", line)]
    assert rows and all(line.startswith("step") for line in rows), rows   # was: "epoch 1", "epoch 2"


# -- minor ones (item 13) --------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--checkpoint", "--plot"])
def test_an_unwritable_output_fails_before_training_naming_the_path_given(flag, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (tmp_path / "folder.npz").mkdir()
    for path in (str(blocker / "x.npz"), str(tmp_path / "folder.npz")):      # under a file; a folder itself
        assert main(["train", "xor", "--steps", "1", flag, path, "--no-progress"]) == 2
        out, err = capsys.readouterr()
        assert out == "", out                                     # nothing trained first
        assert err.count("\n") == 1 and f"{flag} {path}: cannot write" in err, err
        assert ".tmp" not in err                                  # was: the temporary file's name


def test_a_write_that_fails_anyway_names_the_path_not_the_temporary(tmp_path):
    (tmp_path / "sealed").mkdir(mode=0o500)
    if os.access(tmp_path / "sealed", os.W_OK):   # root writes anywhere: fail mkstemp another way
        os.rmdir(tmp_path / "sealed")
        (tmp_path / "sealed").symlink_to("/proc")
    with pytest.raises(OSError) as caught:
        write_text(tmp_path / "sealed" / "x.npz", "x")
    assert "x.npz" in str(caught.value) and ".tmp" not in str(caught.value)


def test_the_language_models_default_checkpoint_is_checked_before_training(monkeypatch, capsys):
    """Without --checkpoint the transformer saves transformer.npz in the working directory; a
    folder that takes no file failed only after the training."""
    monkeypatch.chdir("/proc")                   # no file can be made here, not even by root
    assert main(["train", "transformer", "--steps", "1"]) != 0
    out, err = capsys.readouterr()
    assert "training transformer" not in out, out
    assert err.count("\n") == 1 and "the checkpoint transformer.npz (the default, in the working directory)" in err
    assert "pass --checkpoint PATH" in err


@pytest.mark.parametrize("build,message", [
    (lambda: gn.constant("c", np.ones(2)), "constant: its value must be numbers"),   # name and value swapped
    (lambda: gn.parameter("q", ["a"]), "parameter 'q': its value must be numbers"),
    (lambda: gn.constant([1.0, "x"], "k"), "constant 'k': its value must be numbers"),
])
def test_a_leaf_given_something_that_is_not_numbers_names_the_node(build, message):
    with pytest.raises(ValueError) as caught:   # was: "could not convert string to float: 'c'"
        build()
    assert message in str(caught.value) and "comes first)" in str(caught.value)


def test_a_model_file_that_calls_sys_exit_is_an_error_naming_it(tmp_path, capsys):
    path = tmp_path / "quits.py"
    path.write_text("import sys\n\ndef build():\n    sys.exit(3)\n")
    line = one_error_line(capsys, [str(path)])                 # was: exit code 3, nothing said
    assert f"your model file {path} called sys.exit(3)" in line and "line 4" in line


def test_a_resumed_diffusion_run_reports_its_epochs_to_the_end(tmp_path, capsys, monkeypatch):
    """The epoch runners printed a line when the trainer's epoch hit a multiple of epochs/10 or
    equalled this run's epoch count: resumed at epoch 3, 20 more printed 4, 6, …, 22 and never 23."""
    monkeypatch.chdir(tmp_path)                  # the runner writes diffusion.png here
    ck = str(tmp_path / "d.npz")
    assert main(["train", "diffusion", "--epochs", "3", "--checkpoint", ck]) == 0
    capsys.readouterr()
    assert main(["train", "diffusion", "--epochs", "20", "--resume", ck]) == 0
    shown = [int(n) for n in re.findall(r"^epoch\s+(\d+)\s", capsys.readouterr().out, re.M)]
    assert shown == list(range(5, 24, 2)), shown


@pytest.mark.parametrize("text,message", [
    ('__import__("os").system("touch PWNED")', "not the call"),   # was: run by sympify, then refused
    ('().__class__.__bases__[0]', "not a "),
    ("zoo", "not in 'zoo'"), ("1/0", "is not a finite number (it simplifies to zoo)"),   # was: KeyError
    ("lambda: 1", "not a lambda"), ("besselj(0, t)", "not the call"),                   # was: NameError
    ("Integral(t, t)", "not the call"),            # was: a multi-line sympy printer error
])
def test_a_schedule_is_never_run_as_python_and_any_other_text_is_one_line(text, message, capsys, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(capsys, ["xor", "--steps", "1", "--lr-schedule", text])
    assert message in line and line.startswith(f"graphnn train: error: --lr-schedule {text!r}")
    assert list(tmp_path.iterdir()) == []
    assert main(["train", "xor", "--steps", "1", "--no-progress",
                 "--lr-schedule", "max(0.01, 0.5*exp(-t/100))/sqrt(floor(t/10) + 1)"]) == 0


@pytest.mark.parametrize("argv, flag", [
    (["train", "xor", "--steps", "1", "--resume", ""], "--resume"),        # was: trained from scratch, exit 0
    (["train", "xor", "--steps", "1", "--checkpoint", ""], "--checkpoint"),  # was: saved nothing
    (["train", "xor", "--steps", "1", "--lr-schedule", ""], "--lr-schedule"),  # was: the default rate
    (["derive", "mazur", "--wrt", "w5", "-o", ""], "--output"),           # was: printed to stdout
    (["draw", "mazur", "-o", ""], "--output"),
    (["derive", "mazur", "--wrt", "w5", "--feed", ""], "--feed"),
])
def test_an_empty_value_is_an_error_naming_the_option(argv, flag, capsys, tmp_path, monkeypatch):
    """``--resume "$CKPT"`` with CKPT unset must not start over without a word."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [f"graphnn {argv[0]}: error: {flag}: an empty value (a path, a name or "
                                        "an expression was expected)"]
    assert out == "" and list(tmp_path.iterdir()) == []


def test_a_bad_value_is_one_line_and_an_unknown_option_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "xor", "--lr", "abc"])
    assert capsys.readouterr().err.strip().splitlines() == ["graphnn train: error: argument --lr: invalid float "
                                                            "value: 'abc'"]
    with pytest.raises(SystemExit):
        main(["train", "xor", "--lrr", "0.1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unrecognized arguments: --lrr" in err[0] and "--lr-schedule" in err[1]


def test_a_folder_or_a_file_without_py_is_named_for_what_it_is(tmp_path, capsys, monkeypatch):
    """A folder named net.py or data was 'does not exist'; a model file without .py 'unknown model'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "net").write_text("def build():\n    pass\n")
    for argv, message in ((["net.py"], "model file 'net.py' is a folder, not a file"),
                          (["xor", "--data", "data"], "data file 'data' is a folder, not a file"),
                          (["net"], "'net' is a file but not a model file: a model file's name ends in .py")):
        assert message in one_error_line(capsys, [*argv, "--epochs", "1"])


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed must be a whole number ≥ 0, got -1"),          # was: numpy's words, no flag
    (["--validation-split", "0"], "--validation-split must lie strictly between 0 and 1, got 0.0")])  # was: validation_split
def test_a_bad_seed_or_split_is_named_by_its_flag(argv, message, capsys):
    assert one_error_line(capsys, ["xor", "--steps", "1", *argv]).endswith(message)


def test_a_model_file_without_data_asks_for_data_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "nodata.py"
    path.write_text("import graphnn as gn\n\ndef build():\n    x = gn.input('x', (None, 2))\n"
                    "    t = gn.input('t', (None, 1))\n    y = gn.dense(x, 1, name='o')\n"
                    "    return gn.Model('nodata', gn.losses.mse(y, t), y, (x, t))\n")
    line = one_error_line(capsys, [str(path), "--epochs", "1"])
    assert "model 'nodata' has no data of its own: give the training data with --data FILE" in line


@pytest.mark.parametrize("argv, message", [
    (["lecture", "xor", "-o", "x.html", "--train", "0"], "argument --train: must be at least 1, got 0"),
    (["lecture", "xor", "-o", "x.html", "--lr", "0"], "argument --lr: must be a positive finite number, got 0"),
    (["sample", "transformer", "--temperature", "0"], "argument --temperature: must be a positive finite number, got 0"),
    (["sample", "transformer", "--seed", "-1"], "argument --seed: must be at least 0, got -1")])
def test_lecture_and_sample_name_the_option_of_a_bad_number(argv, message, capsys, tmp_path, monkeypatch):
    """Were: 'train_steps must be at least 1', 'lr must …', 'temperature must be > 0' (Python's names)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(argv)
    assert capsys.readouterr().err.strip().splitlines() == [f"graphnn {argv[0]}: error: {message}"]


def test_a_schedule_that_turns_negative_later_stops_before_the_first_update(capsys):
    """--epochs 6 with 0.5 − 0.1t trained 5 epochs, then stopped at t = 6."""
    assert main(["train", "xor", "--epochs", "6", "--no-progress", "--lr-schedule", "0.5-0.1*t"]) == 2
    out, err = capsys.readouterr()
    assert "is -0.1 at step t = 6" in err and "epoch" not in out     # no epoch ran
