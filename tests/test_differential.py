"""Differential fuzzing: hypothesis-built graphs (tests/fuzz_graphs.py) computed four ways.

The NumPy reference against central differences and against PyTorch's autograd in float64
(an oracle that shares no code with graphnn: the ``oracle`` extra), and the compiled CPU
backend against the reference: loss, every gradient, and the model's output with its
exact shape. Examples are derandomized, so CI runs the same bounded set every time; each
compiled example packs several random terms into one model, so one compile covers many.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings

from graphnn import check_grad
from graphnn.evaluate import Evaluator
from graphnn.optim import make_optimizer
from graphnn.training.backends import NumpyBackend
from fuzz_graphs import build, graphs



def _torch():
    """PyTorch, the independent oracle (the 'oracle' extra): skipped locally if missing, a failure on CI."""
    try:
        import torch
    except ImportError:
        msg = "the PyTorch oracle needs the 'oracle' extra (scripts/test.sh installs its CPU build)"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set, so this is an error)")
        pytest.skip(msg)
    return torch

def fuzz(examples):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _reference(g):
    loss, *grads = Evaluator([g.model.loss] + [gn_grad for gn_grad in _grads(g)])(g.feeds)
    return float(loss), grads


def _grads(g):
    from graphnn import grad

    record = grad(g.model.loss, [p for p, _ in g.params])
    return [record[p] for p, _ in g.params]


@fuzz(60)
@given(graphs(max_terms=2, max_steps=4))
def test_reference_agrees_with_finite_differences_and_pytorch(recipe):
    torch = _torch()
    g = build(recipe)
    loss, grads = _reference(g)
    check_grad(g.model.loss, [p for p, _ in g.params], g.feeds, rtol=1e-5, atol=1e-7)
    P = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for _, v in g.params]
    tl = g.torch_loss(P, torch.tensor(g.feeds["x"], dtype=torch.float64))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-10, abs=1e-12)
    for (p, _), ours, t in zip(g.params, grads, P):
        theirs = np.zeros(p.shape) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12, err_msg=f"gradient of {p.name}")


#: every construct the compiler refused in issue 17, in one model: x @ Wᵀ, a (1, n) bias,
#: |exp(tanh z)|, an (n, 1) column, a reshaped vector, slices running through index 0, a
#: reshaped scalar concatenated, work on a (n, B) layout, hᵀh, and a 0-d output
ISSUE_17 = ([((("matmul_T", 3), ("bias_row", None), ("act", "abs_exp_tanh")), "sumsq"),
             ((("column", None),), "mean"),
             ((("bias_reshaped", None), ("slice", (None, None, -1)), ("concat_scalar", None)), "weighted"),
             ((("batch_second", None), ("slice", (2, None, -1))), "gram")], 17, "loss")
#: what must train compiled: x @ Wᵀ, a (1, n) bias, |exp(tanh z)|, a 0-d output
#: an activation transposed (batch axis second) and a short last batch in the epoch (train_epoch
#: gave that batch the buffers' leading rows: IndexError as plain Python, wrong or a shape error compiled)
BATCH_SECOND = ([((("bias_row", None), ("matmul", 1), ("batch_second", None)), "sumsq")], 0, "loss")

MUST_TRAIN = ([((("matmul_T", 3), ("bias_row", None), ("act", "abs_exp_tanh")), "sumsq")], 3, "loss")


def _against_the_reference(recipe, train_steps=0):
    from codegen.backend import CpuBackend

    g = build(recipe)
    opt = make_optimizer("sgd", lr=0.1)
    ref, cpu = NumpyBackend(g.model, opt), CpuBackend(g.model, opt)
    l_ref, g_ref = ref.gradients(g.feeds)
    l_cpu, g_cpu = cpu.gradients(g.feeds)
    assert l_cpu == pytest.approx(l_ref, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(g_cpu, g_ref, rtol=1e-8, atol=1e-11)
    out_ref, out_cpu = ref.predict(g.feeds), cpu.predict(g.feeds)
    assert np.shape(out_cpu) == np.shape(out_ref)
    np.testing.assert_allclose(out_cpu, out_ref, rtol=1e-9, atol=1e-12)
    for _ in range(train_steps):   # and it trains: compiled steps are reference steps
        ref.train_step(g.feeds), cpu.train_step(g.feeds)
    for p, _ in g.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-9, atol=1e-12, err_msg=p.name)
    if train_steps:   # and an epoch (its own code: gathered batches, SGD folded into products)
        n = len(next(v for v in g.feeds.values() if np.ndim(v) > 0))
        order = np.arange(n)[::-1]
        batches = [b for b in (order[:(n + 1) // 2], order[(n + 1) // 2:]) if len(b)]
        total_ref, total_cpu = ref.train_epoch(g.feeds, batches), cpu.train_epoch(g.feeds, batches)
        assert total_cpu == pytest.approx(total_ref, rel=1e-9, abs=1e-12)
        for p, _ in g.params:
            np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-9, atol=1e-12, err_msg=p.name)


@fuzz(40)
@given(graphs(max_terms=3, max_steps=4))
@example(ISSUE_17)
@example(BATCH_SECOND)
def test_generated_code_agrees_with_the_reference(interpreted, recipe):
    """The whole pipeline (lower, schedule, fuse, emit) on many graphs, the emitted module run by
    Python itself: compiling each would cost seconds (Numba types and lowers every helper)."""
    _against_the_reference(recipe, train_steps=2)


@fuzz(1)
@given(graphs(max_terms=1, max_steps=3))
@example(MUST_TRAIN)
def test_compiled_cpu_agrees_with_the_reference(recipe):
    """The same, compiled by Numba: x @ Wᵀ and a (1, n) bias train on the cpu backend."""
    _against_the_reference(recipe, train_steps=2)
