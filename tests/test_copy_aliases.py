"""A copy that is the array itself is bound to it, not copied (codegen/lowerings.py).

Three kinds, each a helper call (~40 ms of compile) that moved the same values before:
an index that selects everything (a recurrence's carry unpacked from its packed row), an
identity map of an array the program computes anyway, read as a whole array only (s_T =
copy(row), d_row = ∂copy/∂x(d_s_T)), and the scatter of a whole array into one of its shape.
rnn's train_epoch lost four such calls: cold compile 3.11 → 2.95 s.

Not bound (and still equal to the reference): a copy that is an output, a copy of a
parameter (the fused SGD update writes it in place), a copy of an elementwise value.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from test_recurrent_codegen import RECURRENT, _compare

import graphnn as gn
from graphnn.model import Model
from graphnn.ops.indexing import normalize_index
from graphnn.optim import make_optimizer

codegen = pytest.importorskip("codegen")
from codegen.lowerings import _whole  # noqa: E402


def _grad_step_source(model):
    sched = codegen.lower(model, make_optimizer("sgd", lr=0.1), "float64")
    return "\n".join(codegen.emit_cpu.program_lines(sched.grad_step, "float64"))


def _copy_calls(source) -> list:
    """The identity copies (and whole-array scatters) a program makes as helper calls: the
    line after a ``# x = copy(…)`` / ``∂copy/∂x`` comment, when it calls copy_…/fill_…."""
    lines = [ln.strip() for ln in source.splitlines()]
    return [nxt for ln, nxt in zip(lines, lines[1:])
            if ln.startswith("#") and ("= copy(" in ln or "∂copy/∂x(" in ln) and nxt.startswith(("copy_", "fill_"))]


def _user_rnn():
    xs, t = gn.input("xs", (None, 4, 3)), gn.input("t", (None, 2))
    W, U = gn.parameter("W", shape=(5, 5)), gn.parameter("U", shape=(3, 5))
    rec = gn.scan(lambda h, x_t: (gn.tanh(h @ W + x_t @ U), None), np.zeros(5), xs)   # the carry alone
    y = rec.carry @ gn.parameter("V", shape=(5, 2))
    return Model("user-rnn", gn.losses.mse(y, t), y, (xs, t))


@pytest.mark.parametrize("name", ["rnn", "user"])
def test_a_recurrences_one_carry_and_its_gradient_are_bound_not_copied(name):
    """The carry is the loop's whole packed row: s_T = copy(row[:, 0:H]) is the row itself,
    and so are d_row and the scatter of d_s_T into it (four helper calls before)."""
    model = dict(RECURRENT)["rnn"] if name == "rnn" else _user_rnn()
    source = _grad_step_source(model)
    assert not _copy_calls(source), _copy_calls(source)
    assert "fill_2d(d_" not in source
    if name == "user":
        rng = np.random.default_rng(2)
        _compare(model, {"xs": rng.normal(size=(5, 4, 3)), "t": rng.normal(size=(5, 2))})


def test_a_carry_that_is_part_of_the_row_is_still_copied():
    """The LSTM packs h and c in one row: h_T = copy(row[:, 0:H]) is a strided slice, which
    a matrix product does not take: it stays a copy."""
    assert _copy_calls(_grad_step_source(dict(RECURRENT)["lstm"])) == ["copy_2d(h_T, index)"]


_dims = st.integers(1, 5)   # an empty axis: any selection is all of nothing
_bound = st.one_of(st.none(), st.integers(-6, 6))
_entry = st.one_of(st.integers(-5, 5), st.builds(slice, _bound, _bound, st.sampled_from([None, 1, 2, -1])))


@settings(max_examples=300, deadline=None)
@given(shape=st.lists(_dims, min_size=1, max_size=3), data=st.data())
def test_selects_all_agrees_with_numpy(shape, data):
    """An index selects everything exactly when NumPy's result is the array itself: the same
    shape, strides and first element."""
    x = np.zeros(shape)
    index = tuple(data.draw(st.lists(_entry, min_size=1, max_size=len(shape))))
    try:
        spec = normalize_index(index, tuple(shape))
        y = x[index]
    except (IndexError, gn.errors.ShapeError):
        return
    same = y.shape == x.shape and y.strides == x.strides and (x.size == 0 or
                                                                y.ctypes.data == x.ctypes.data)
    assert _whole(spec, tuple(shape)) == same, (shape, index, spec)


def test_the_batch_axis_taken_whole_selects_all():
    assert _whole(normalize_index((slice(None), slice(0, 16)), (None, 16)), (None, 16))
    assert not _whole(normalize_index((slice(None), slice(0, 8)), (None, 16)), (None, 16))


def _feeds(rng, n=6):
    return {"x": rng.normal(size=(n, 3)), "t": rng.normal(size=(n, 2))}


def _mlp(copy_of):
    """x @ W1 → (a copy of something) @ W2, whose copy ``copy_of`` chooses."""
    rng = np.random.default_rng(5)
    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 2))
    W1, W2 = gn.parameter("W1", rng.normal(size=(3, 4))), gn.parameter("W2", rng.normal(size=(4, 2)))
    m = x @ W1
    if copy_of == "product":          # an array computed anyway: bound
        c = m * 1
        y = c @ W2 + gn.tanh(c @ gn.parameter("W3", rng.normal(size=(4, 2))))
    elif copy_of == "elementwise":    # tanh(m) would be fused away: the copy computes it
        c = gn.tanh(m) * 1
        y = c @ W2
    elif copy_of == "parameter":      # W2's memory, which the SGD update writes: copied
        y = gn.tanh(m) @ (W2 * 1)
    else:                             # the output itself: its own buffer
        y = (m @ W2) * 1
    return Model(f"copy-of-{copy_of}", gn.losses.mse(y, t), y, (x, t))


@pytest.mark.parametrize("copy_of,line", [("product", "e_ = matmul"), ("elementwise", "e_2[i, j] = e_2_ij"),
                                           ("parameter", "copy_2d(e_2, W2)"), ("output", "e_[i, j] = e__ij")])
def test_a_users_copies_train_as_the_reference(copy_of, line):
    model = _mlp(copy_of)
    _compare(model, _feeds(np.random.default_rng(0)))   # loss, outputs, three SGD steps, weights: 1e-10
    source = _grad_step_source(model)
    assert line in source.splitlines() or f"    {line}" in source   # bound (product) or stored
