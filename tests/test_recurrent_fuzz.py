"""A user's own recurrences (tests/fuzz_scans.py: hypothesis-drawn `gn.scan` cells).

The looped view against the unrolled one (whose ordinary autodiff is BPTT) and against
central differences, in float64; the generated code against the reference (gradients,
steps, an epoch). What the fuzzing found, each now an explicit example below:

- a cell reading a batched input (a conditioning vector c, not a sequence) beside an
  unbatched initial carry: "batch sizes differ" from the reference (the loop took its batch
  from the carry alone);
- a recurrence fed nothing batched beside a batched target: a raw NumPy ValueError in the
  gradient (the loop declared a batch axis its one row of states did not have), and a
  ShapeError from the unrolled view's stacking; it is now one sequence of states, (1, …),
  in both views, and the compiled backends refuse it in one line (compiled, it wrote past
  its buffers);
- a scalar parameter as the initial state: the generated code assigned the one-element
  array to a number (compiled: Numba could not compile grad_step); a graph with no batched
  input at all: the generated code used an undefined B;
- the BPTT terms of a conditioned cell: "batch sizes differ" (the per-example Jacobians
  took every row of c); the time view of a user's scan without ``Model.extras['scan']``:
  "the time view needs the model's recurrence", though the graph holds it.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings

import graphnn as gn
from codegen.lower import CodegenError
from fuzz_scans import build, scans
from graphnn.optim import make_optimizer
from graphnn.training.backends import NumpyBackend

CONDITIONED = ("lstm", "tanh", 2, 2, 3, False, "zeros", "proj", None, True, 5)
UNBATCHED_WITH_TARGET = ("elman", "softplus", 2, 1, 2, False, "zeros", "proj", None, False, 1)
SCALAR_PARAMETER_INIT = ("scalar", "sigmoid", 1, 1, 2, True, "param", "state", None, False, 53667)
NOTHING_BATCHED = ("gated", "tanh", 2, 1, 3, False, "param", "none", None, False, 0)
TRUNCATED = ("elman", "tanh", 3, 2, 4, True, "input", "proj", 2, True, 11)


def fuzz(examples):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _loss_and_grads(g):
    nodes = [p for p, _ in g.params]
    record = gn.grad(g.model.loss, nodes)
    loss, *grads = gn.evaluate([g.model.loss] + [record[p] for p in nodes], g.feeds)
    return float(loss), grads


@fuzz(60)
@given(scans())
@example(CONDITIONED)
@example(UNBATCHED_WITH_TARGET)
@example(NOTHING_BATCHED)
def test_looped_equals_unrolled_and_finite_differences(recipe):
    looped = build(recipe, "looped")
    loss, grads = _loss_and_grads(looped)
    if looped.truncated:     # truncated BPTT is not the gradient: only the compiled check applies
        return
    unrolled = build(recipe, "unrolled")
    loss_u, grads_u = _loss_and_grads(unrolled)
    assert loss == pytest.approx(loss_u, rel=1e-12, abs=1e-14)
    for (p, _), a, b in zip(looped.params, grads, grads_u):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=p.name)
    gn.check_grad(looped.model.loss, [p for p, _ in looped.params], looped.feeds, rtol=1e-5, atol=1e-7)


def _fed_nothing_batched(recipe) -> bool:
    cell, _, _, _, _, reads_x, init, _, _, conditioned, _ = recipe
    return not reads_x and not conditioned and (init != "input" or cell == "scalar")


def _compiled_against_the_reference(recipe):
    from codegen.backend import CpuBackend

    g = build(recipe, "looped")
    opt = make_optimizer("sgd", lr=0.1)
    ref = NumpyBackend(g.model, opt)
    if _fed_nothing_batched(recipe):
        with pytest.raises(CodegenError, match=r"^the recurrence 'rec' is fed nothing batched .* backend='numpy'$"):
            CpuBackend(g.model, opt)
        return
    cpu = CpuBackend(g.model, opt)
    l_ref, g_ref = ref.gradients(g.feeds)
    l_cpu, g_cpu = cpu.gradients(g.feeds)
    assert l_cpu == pytest.approx(l_ref, rel=1e-10, abs=1e-13)
    np.testing.assert_allclose(g_cpu, g_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cpu.predict(g.feeds), ref.predict(g.feeds), rtol=1e-10, atol=1e-13)
    for _ in range(2):
        ref.train_step(g.feeds), cpu.train_step(g.feeds)
    order = np.array([2, 0, 1])
    batches = [order[:2], order[2:]]
    assert cpu.train_epoch(g.feeds, batches) == pytest.approx(ref.train_epoch(g.feeds, batches), rel=1e-10)
    for p, _ in g.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-9, atol=1e-12, err_msg=p.name)


@fuzz(40)
@given(scans())
@example(CONDITIONED)
@example(UNBATCHED_WITH_TARGET)
@example(SCALAR_PARAMETER_INIT)
@example(NOTHING_BATCHED)
@example(TRUNCATED)
def test_generated_recurrences_agree_with_the_reference(interpreted, recipe):
    """The generated module run as plain Python (the whole pipeline, no compile per graph)."""
    _compiled_against_the_reference(recipe)


@pytest.mark.parametrize("recipe", [CONDITIONED, SCALAR_PARAMETER_INIT], ids=["conditioned-lstm", "scalar-init"])
def test_compiled_recurrences_agree_with_the_reference(recipe):
    """The same, compiled by Numba."""
    _compiled_against_the_reference(recipe)


def test_a_recurrence_fed_nothing_batched_is_one_row_of_states():
    g = build(UNBATCHED_WITH_TARGET, "looped")
    rec_ys = g.model.output
    assert rec_ys.shape == (1, 2, 2)              # (1, T, O): one sequence, not (B, T, O)
    values = gn.evaluate(rec_ys, g.feeds)
    assert values.shape == (1, 2, 2)


@fuzz(12)   # each example runs both views' per-example Jacobians: the slowest fuzz here
@given(scans())
@example(CONDITIONED)
@example(UNBATCHED_WITH_TARGET)
def test_bptt_terms_time_view_and_unrolled_drawing_of_user_recurrences(recipe):
    """Σ explicit + implicit terms = the autodiff gradient; the time view's numbers are the
    autodiff's; the unrolled drawing draws. Both views of the scan, every weight of the cell."""
    for mode in ("looped", "unrolled"):
        g = build(recipe, mode)
        weights = [p for p, _ in g.params if p.name != "h0"]   # h0 starts the recurrence: no term of its own
        for w in weights:
            terms = gn.bptt_terms(g.model.loss, w, g.feeds)
            if not g.truncated:
                np.testing.assert_allclose(terms.total, terms.autodiff, rtol=1e-9, atol=1e-12, err_msg=w.name)
        first = {k: np.asarray(v)[:1] for k, v in g.feeds.items()}
        d = gn.derive(g.model, weights[0].name, values=first, view="time")
        assert d.to_html()
        claims = [(c, v) for step in d.steps for c, v in step.checks if c[0] == "gradient"]
        assert claims
        want = gn.evaluate(gn.grad(g.model.loss, [weights[0]])[weights[0]], first)
        for (_, node, index), value in claims:
            if not g.truncated:
                assert value == pytest.approx(float(np.asarray(want)[index]), rel=1e-9, abs=1e-12)
        assert gn.draw(g.model, "unrolled", values=g.feeds).source
