"""A derivation of one example says which one, in every view that shows one: the forward
view of xor (four truth-table rows) showed row 1 without a word while the scalar view said
"Values are those of the first example of the feeds"."""
from __future__ import annotations

import numpy as np
import pytest

from graphnn.derive import derive
from graphnn.errors import GraphnnError
from graphnn.models import available, get_model


def _rows(model) -> int:
    found = model.example_feeds()
    feeds = found[0] if found else {}
    return max([int(np.shape(v)[0]) for n in model.graph.inputs if n.shape and n.shape[0] is None
                for k, v in feeds.items() if k == n.name and np.ndim(v) == len(n.shape)] or [1])


@pytest.mark.parametrize("name", sorted(available()))
def test_one_example_views_say_which_example(name):
    model = get_model(name)
    rows = _rows(model)
    wrt = [p.name for p in model.graph.parameters if p.trainable][:1] or None
    said = f"Values are those of the first example of the feeds (example 1 of {rows})."
    for view in ("forward", "scalar"):
        try:
            text = derive(model, None if view == "forward" else wrt, values=True, view=view).to_text()
        except (GraphnnError, ValueError):   # the scalar view refuses big nets (use --view matrix)
            continue
        if "(perceptron view)" in text:      # the perceptron rule goes through every example itself
            assert said not in text and f"Example {rows}:" in text
            continue
        assert (said in text) == (rows > 1), (view, text[:400])
