"""The lecture page and the unrolled drawing of hypothesis-built user nets.

A page is made, or refused with its one-line `LectureError`; never a crash. Found by this
fuzzing, each an explicit example: a recurrent page of unnamed nodes (AttributeError: the
step's node has no name), a last layer's weight under a plain mean (StopIteration: its
derivation has no delta form), a recurrence whose output does not read the first input and
a 0-d output (the training picture plotted 100 inputs against one value / indexed a 0-d
shape), a loss reading several states (dot crashed on the unrolled drawing's labelled
edges within one rank: "routesplines, illegal values").
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings

import graphnn as gn
import fuzz_graphs
import fuzz_scans
from graphnn.lecture import LectureError

UNNAMED_SCALAR_RNN = ("scalar", "identity", 2, 2, 2, False, "input", "state", None, True, 857)
NO_PICTURE_OVER_X = ("scalar", "softplus", 2, 2, 1, False, "zeros", "state", 1, False, 15539)
LOSS_OVER_STATES = ("scalar", "relu", 3, 2, 3, False, "zeros", "state", None, True, 484)
LINEAR_CHAIN_MEAN = ([((("linear", (1, False)), ("linear", (1, False)), ("linear", (1, False))), "mean")],
                     8566, "first term")
ZERO_D_OUTPUT = ([((("linear", (4, False)), ("linear", (3, False))), "weighted")], 140, "loss")


def fuzz(examples):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _page_or_refusal(model):
    try:
        page = gn.lecture(model, train_steps=3)
    except LectureError as e:
        assert "\n" not in str(e) and str(e).startswith(model.name), e
        return None
    assert page.html.startswith("<!DOCTYPE html>") and page.lesson.steps
    return page


@fuzz(20)
@given(fuzz_graphs.graphs(max_terms=2, max_steps=4))
@example(LINEAR_CHAIN_MEAN)
@example(ZERO_D_OUTPUT)
def test_a_page_for_a_users_graph_or_one_line(recipe):
    _page_or_refusal(fuzz_graphs.build(recipe).model)


@fuzz(10)
@given(fuzz_scans.scans())
@example(UNNAMED_SCALAR_RNN)
@example(NO_PICTURE_OVER_X)
@example(LOSS_OVER_STATES)
def test_a_page_for_a_users_recurrence_or_one_line(recipe):
    for mode in ("looped", "unrolled"):
        _page_or_refusal(fuzz_scans.build(recipe, mode).model)


@pytest.mark.parametrize("recipe", [UNNAMED_SCALAR_RNN, LOSS_OVER_STATES, NO_PICTURE_OVER_X])
def test_the_small_user_recurrences_get_their_page(recipe):
    assert _page_or_refusal(fuzz_scans.build(recipe, "unrolled").model) is not None


@fuzz(15)
@given(fuzz_scans.scans())
@example(LOSS_OVER_STATES)
def test_the_unrolled_drawing_of_a_users_recurrence_renders(recipe):
    g = fuzz_scans.build(recipe, "unrolled")
    svg = gn.draw(g.model, "unrolled", values=g.feeds).pipe(format="svg").decode()
    assert svg.lstrip().startswith(("<?xml", "<svg"))
