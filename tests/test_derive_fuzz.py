"""Derivations and drawings of hypothesis-built user graphs (tests/fuzz_graphs.py).

Every number a derivation prints is checked against a fresh autodiff (test_derive's
oracle); a view may refuse a graph only with its own one-line error. The fuzzing of this
file found the scalar view crashing (IndexError) on an element the loss never reads.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings

import graphnn as gn
from graphnn.derive import DerivationError
from graphnn.draw import DrawError
from fuzz_graphs import build, graphs
from test_derive import check_every_number

SLICED_AWAY = ([((("bias_row", None), ("slice", (None, 0, -3)), ("act", "sigmoid")), "gram")], 288, "loss")


def _first_row(feeds):
    return {k: np.asarray(v)[:1] for k, v in feeds.items()}


def _fuzz(examples):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("update", [False, True])
def test_an_element_the_loss_never_reads_has_gradient_zero(update):
    g = build(SLICED_AWAY)
    p0 = g.params[0][0]
    feeds = _first_row(g.feeds)
    d = gn.derive(g.model, p0.name, values=feeds, view="scalar", update=update)
    grads = {c[2]: v for s in d.steps for c, v in s.checks if c[0] == "gradient"}
    assert [grads[(0, k)] for k in range(3)] == [0.0, 0.0, 0.0]     # elements 1–3 are sliced away
    assert grads[(0, 3)] != 0.0
    assert "does not depend on" in d.to_text()
    check_every_number(d, g.model, feeds)
    symbolic = gn.derive(g.model, p0.name, values=None, view="scalar").to_latex()
    assert symbolic.count("= 0") >= 3


@_fuzz(25)
@given(graphs(max_terms=2, max_steps=4))
@example(SLICED_AWAY)
def test_derivations_of_user_graphs_print_the_autodiff_numbers(recipe):
    g = build(recipe)
    feeds = _first_row(g.feeds)
    for p, _ in g.params:
        for view in ("scalar", "matrix"):
            try:
                d = gn.derive(g.model, p.name, values=feeds, view=view)
            except DerivationError as e:   # the scalar view refuses too many paths, in one line
                assert view == "scalar" and "\n" not in str(e) and "view='matrix'" in str(e)
                continue
            for render in (d.to_text, d.to_latex, d.to_markdown, d.to_html):
                assert render()
            check_every_number(d, g.model, feeds)


@_fuzz(15)
@given(graphs(max_terms=2, max_steps=4))
def test_drawings_of_user_graphs_show_every_parameter(recipe):
    g = build(recipe)
    for view in ("ops", "backward"):
        for grads in (False, True):
            source = gn.draw(g.model, view, values=g.feeds, grads=grads).source
            if view == "ops":
                assert source.count(">parameter<") == len(g.params), grads
    try:
        gn.draw(g.model, "neurons", values=g.feeds)
    except DrawError as e:   # only nets built as input → linear → activation → …
        assert "\n" not in str(e)
