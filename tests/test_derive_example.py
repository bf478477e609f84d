"""``derive(..., example=K)`` and ``graphnn derive --example K``: the row a one-example view shows.

Before, every one-example view (scalar, forward, time) showed row 1 of the values and a
user had no way to ask for another; ``draw`` had ``--example`` and ``derive`` did not.
Checked over every built-in model: the derivation of row K equals the derivation fed that
row alone, and a K beyond the rows is one line that names the range.
"""
from __future__ import annotations

import numpy as np
import pytest

from graphnn.derive import derive
from graphnn.errors import FeedError
from graphnn.models import available, get_model
from graphnn.cli import main


def _lines(d):
    """The derivation's text without the line that says where its numbers come from."""
    return [line for line in d.to_text().splitlines()
            if line.strip() and not line.startswith(("Numbers:", "Values are those"))]


def _rows(model):
    """The candidate rows values=True picks from: the worked example's, else the training data's."""
    feeds = dict(model.example) if model.example else dict(model.data.train) if model.data is not None else {}
    batched = [np.shape(v)[0] for k, v in feeds.items()
               if any(n.name == k and n.shape and n.shape[0] is None for n in model.inputs)]
    return feeds, (max(batched) if batched else 1)


@pytest.mark.parametrize("name", available())
def test_the_forward_pass_of_example_k_is_that_row_alone(name):
    model = get_model(name)
    feeds, rows = _rows(model)
    if rows < 2:
        with pytest.raises(FeedError, match=r"--example \(example=\) 2 is out of range: .*\(1\)$"):
            derive(model, values=True, view="forward", example=2)
        return
    k = min(rows, 3)
    names = {n.name for n in model.inputs if n.shape and n.shape[0] is None}
    row = {key: (np.asarray(v)[k - 1:k] if key in names else v) for key, v in feeds.items()}
    picked = derive(model, values=True, view="forward", example=k)
    alone = derive(model, values=row, view="forward")
    assert _lines(picked) == _lines(alone)
    first = derive(model, values=True, view="forward")
    assert _lines(first) != _lines(picked)          # another row: other numbers
    which = f"training example {k}" if not model.example else f"example {k} of the feeds"
    assert which in picked.to_text()


def test_the_scalar_view_of_example_k_agrees_with_autodiff():
    from test_derive import check_every_number

    model = get_model("digits-mlp")
    d = derive(model, (model.params[-1], (4,)), values=True, view="scalar", example=7)
    check_every_number(d, model, {k: np.asarray(v)[6:7] for k, v in model.data.train.items()})


@pytest.mark.parametrize("example, message", [
    (0, "a whole number ≥ 1, got 0"), (-1, "got -1"), (1.5, "got 1.5"), (True, "got True")])
def test_a_bad_example_number_is_refused(example, message):
    with pytest.raises(ValueError, match=message):
        derive(get_model("mazur"), "w5", values=True, example=example)


def test_views_of_the_whole_batch_and_symbols_take_no_example():
    model = get_model("digits-mlp")
    with pytest.raises(ValueError, match="the matrix view shows the whole batch.*forward, scalar, time views"):
        derive(model, "b2", values=True, view="matrix", example=2)
    with pytest.raises(ValueError, match="has none \\(symbols only\\)"):
        derive(model, "b2", view="scalar", example=2)


def test_the_command_line_picks_the_row_and_names_a_bad_one(capsys):
    assert main(["derive", "digits-mlp", "--wrt", "b2", "--values", "--example", "3"]) == 0
    assert "training example 3 of the model's data" in capsys.readouterr().out
    assert main(["derive", "mazur", "--wrt", "w5", "--values", "--example", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [
        "graphnn derive: error: --example (example=) 2 is out of range: the feeds have 1 example, counted from 1 (1)"]
