"""``graphnn train``'s options, each a regression test of bug hunt A: a learning-rate schedule
is checked like ``--lr`` (sign, real numbers, parse errors as one line), and the log rows
carry the right step labels.

Every CLI error is one line on stderr and exit code 2, naming the flag and what was given.
Runs are kept cheap: the NumPy reference, one to three steps.
"""
from __future__ import annotations

import pytest
import sympy

from graphnn.cli import main
from graphnn.models import get_model
from graphnn.schedules import schedule, t as T
from graphnn.training import Trainer


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
