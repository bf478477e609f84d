"""A user's training arrays, checked the same way on every backend and schedule (bug hunt s5b)."""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn


def _mlp():
    x, t = gn.input("x", (None, 3)), gn.input("y", (None, 1))
    p = gn.dense(gn.dense(x, 4, "tanh", name="h"), 1, name="out")
    return gn.Model("mlp", gn.losses.mse(p, t, name="L"), p, (x, t), task="regression")


@pytest.mark.parametrize("backend, background", [("numpy", None), ("cpu", True), ("cpu", False)])
@pytest.mark.parametrize("schedule", [{"epochs": 2}, {"steps": 3}])
def test_nan_in_mini_batched_data_is_named_by_its_row_in_the_data(backend, background, schedule):
    """inf at row 3 of y was reported at 'index (0, 0)' (its row inside a shuffled batch) by
    the cpu backend while it compiled in the background, and by steps without it."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.normal(size=10)
    y[3] = np.inf
    X[7, 2] = np.nan
    trainer = gn.Trainer(_mlp(), backend=backend, background_compile=background, batch_size=4)
    with pytest.raises(gn.NonFiniteError, match=r"^input 'x' holds nan at index \(7, 2\): data must be finite"):
        trainer.fit(X, y, progress=False, **schedule)
    X[7, 2] = 0.5
    with pytest.raises(gn.NonFiniteError, match=r"^input 'y' holds inf at index \(3, 0\): data must be finite"):
        trainer.fit(X, y, progress=False, **schedule)
    assert trainer.step == 0                     # refused before any update
