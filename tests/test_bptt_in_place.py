"""BPTT writes each weight's gradient, summed over time, straight into the gradient buffer
(codegen/lower_loop.py `_totals_written_in_place`), not into the packed row and then a copy.

Each copy cost ~40 ms of compile: the LSTM's eight came to 0.6 s of its 6.5 s. Where the
total is not the whole gradient (a weight also used outside the recurrence), the copy stays.
"""
import numpy as np
import pytest
from test_recurrent_codegen import RECURRENT, _compare

import graphnn as gn
from graphnn.model import Model
from graphnn.optim import make_optimizer

codegen = pytest.importorskip("codegen")
from codegen.lower_loop import Recurrence  # noqa: E402


def _bptt(sched):
    (step,) = [s for s in sched.grad_step.steps if isinstance(s, Recurrence) and s.kind == "grad"]
    return step


@pytest.mark.parametrize("name,model", RECURRENT, ids=[n for n, _ in RECURRENT])
def test_every_built_in_recurrences_weight_gradients_are_written_in_place(name, model):
    sched = codegen.lower(model, make_optimizer("sgd", lr=0.1), "float64")
    bptt = _bptt(sched)
    arrays = [k for k, shape in enumerate(bptt.free_shapes) if shape]   # a 0-d leaf keeps its buffer
    assert sorted(bptt.free_in_place) == arrays
    through_the_row = {k: where for k, where in bptt.free_in_place.items() if where[1] is not None}
    assert not through_the_row, f"{name}: summed into the packed row, then copied: {through_the_row}"
    source = "\n".join(codegen.emit_cpu.program_lines(sched.grad_step, "float64"))
    copied = source.count("= BPTT total(")
    assert copied == len(bptt.free_shapes) - len(arrays)


def _rnn(shared_outside: bool, truncate=None):
    xs, t = gn.input("xs", (None, 5, 3)), gn.input("t", (None, 4))
    W, U = gn.parameter("W", shape=(4, 4)), gn.parameter("U", shape=(3, 4))
    b = gn.parameter("b", shape=(4,), init="normal")

    def step(h, x_t):
        h2 = gn.tanh(gn.linear(h, W, b) + x_t @ U)
        return h2, h2

    rec = gn.scan(step, np.zeros(4), xs, truncate=truncate)
    loss = gn.losses.mse(rec.carry, t)
    if shared_outside:   # W's gradient: the BPTT total plus the penalty's
        loss = loss + gn.sum(W * W) * 0.01
    return Model("user-rnn", loss, rec.carry, (xs, t))


@pytest.mark.parametrize("shared_outside,truncate", [(False, None), (True, None), (False, 2)],
                         ids=["whole", "weight-also-outside", "truncated"])
def test_a_users_recurrence_trains_as_the_reference(shared_outside, truncate):
    model = _rnn(shared_outside, truncate)
    rng = np.random.default_rng(3)
    feeds = {"xs": rng.normal(size=(6, 5, 3)), "t": rng.normal(size=(6, 4))}
    cpu = _compare(model, feeds)   # loss, outputs, three steps and the weights: 1e-10
    bptt = _bptt(codegen.lower(model, make_optimizer("sgd", lr=0.05), "float64"))
    direct = {where[0] for where in bptt.free_in_place.values() if where[1] is None}
    assert direct == ({"d_U", "d_b"} if shared_outside else {"d_W", "d_U", "d_b"})
    assert ("= view(loop_grad[" in cpu.source) == shared_outside   # W's total read from the row, then added
