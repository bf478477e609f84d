"""The probes of issue 17, each a regression test: the oracle's slices and self-check, input
validation, and every CLI error path as one line and exit code 2."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphnn as gn
from graphnn.cli import main
from graphnn.errors import ShapeError
from graphnn.models import get_model
from graphnn.ops.base import Op, apply
from graphnn.training import Trainer

# -- the oracle ----------------------------------------------------------------------------------------

index_bounds = st.one_of(st.none(), st.integers(-7, 7))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(1, 6), index_bounds, index_bounds, st.sampled_from([1, 2, 3, -1, -2, -3]))
def test_slices_of_every_step_sign_equal_numpy(n, start, stop, step):
    v = np.arange(2.0 * n).reshape(2, n) + 1
    x = gn.input("x", (None, n))
    sl = slice(start, stop, step)
    node = x[:, sl]
    out = gn.evaluate(node, {"x": v})
    np.testing.assert_array_equal(out, v[:, sl])
    assert out.shape == (2, node.shape[1])
    if out.size:   # the gradient scatters back to exactly the elements read
        g = gn.evaluate(gn.grad(gn.sum(node * node), [x])[x], {"x": v})
        want = np.zeros_like(v)
        want[:, sl] = 2 * v[:, sl]
        np.testing.assert_array_equal(g, want)


class _Liar(Op):
    """An op whose reference disagrees with its own shape rule."""
    name = "liar_for_tests"

    def infer_shape(self, shapes, attrs):
        return shapes[0]

    def reference(self, node, x):
        return x[:, :-1]


def test_the_oracle_checks_every_output_against_its_declared_shape(monkeypatch):
    x = gn.input("x", (None, 3))
    liar = apply(_Liar.instance(), [x], name="liar")
    monkeypatch.setenv("GRAPHNN_CHECK_SHAPES", "1")
    with pytest.raises(ShapeError, match=r"'liar': its NumPy reference returned shape \(2, 2\).*declares shape \(B, 3\)"):
        gn.evaluate(liar, {"x": np.ones((2, 3))})
    monkeypatch.setenv("GRAPHNN_CHECK_SHAPES", "0")   # off: the run-time default costs nothing
    assert gn.evaluate(liar, {"x": np.ones((2, 3))}).shape == (2, 2)


# -- graphs the reference must refuse at build time --------------------------------------------------------

@pytest.mark.parametrize("build,message", [
    (lambda x: gn.concat([]), "at least one operand"),
    (lambda x: gn.concat([gn.sum(x), gn.sum(x)]), "0-d"),
    (lambda x: gn.concat([x, x], axis=5), "axis 5 is out of range for a 2-d operand"),
    (lambda x: gn.softmax(x[:, 0:0]), "of size 0"),
    (lambda x: gn.log_softmax(x[:, 3:1]), "of size 0"),
    (lambda x: gn.max(x[:, 0:0], axis=1), "empty axis"),
    (lambda x: gn.conv2d(gn.transpose(gn.reshape(x, (None, 2, 2, 1)), (1, 2, 0, 3)),
                         gn.parameter("w", np.zeros((1, 1, 3, 3))), padding="same"), "must be 4-d"),
])
def test_bad_graphs_are_shape_errors_naming_the_op(build, message):
    x = gn.input("x", (None, 4))
    with pytest.raises(ShapeError, match=message):
        build(x)


def test_multiplying_by_zero_keeps_the_operand_and_its_shape():
    x = gn.input("x", (None, 3))
    zero = gn.mul(x, 0.0)
    assert zero.shape == (None, 3)
    np.testing.assert_array_equal(gn.evaluate(zero + x, {"x": np.ones((2, 3))}), np.ones((2, 3)))
    W = gn.parameter("W", np.ones(3))
    gn.check_grad(gn.sum(gn.mul(W, 0) + W * W), [W])


# -- training input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("change,message", [
    (lambda t: -t, "must be non-negative"),
    (lambda t: 2 * t, "sums to 2, not 1"),
])
def test_cross_entropy_targets_must_be_probability_rows(change, message):
    model = get_model("digits-mlp", hidden=4)
    data = model.data
    bad = gn.Dataset({"x": data.train["x"], "t": change(data.train["t"])}, data.test)
    with pytest.raises(ValueError, match=message):
        Trainer(model, data=bad)


def test_dataset_columns_must_have_one_row_count():
    with pytest.raises(ValueError, match="different row counts: 'x' 5, 't' 4"):
        gn.Dataset({"x": np.ones((5, 2)), "t": np.ones((4, 1))})


@pytest.mark.parametrize("kw,message", [({"lr": -1}, "positive finite"), ({"lr": float("inf")}, "positive finite"),
                                        ({"test_fraction": 0.99}, "training split is empty")])
def test_bad_trainer_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        Trainer(get_model("xor"), **kw)


# -- the CLI: every error is one line and exit code 2 --------------------------------------------------------

def _model_file(tmp_path, body):
    path = tmp_path / "mine.py"
    path.write_text("import graphnn as gn\n\ndef helper():\n    " + body + "\n\ndef build():\n    return helper()\n")
    return str(path)


@pytest.mark.parametrize("args,message", [
    (["train", "xor", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["train", "xor", "--steps", "0"], "--steps must be at least 1, got 0"),
    (["train", "xor", "--lr", "-1"], "--lr must be a positive finite number"),
    (["train", "xor", "--test-fraction", "0.99"], "the training split is empty"),
    (["train", "xor", "--resume", "{tmp}/broken.npz"], "not a readable graphnn checkpoint"),
    (["train", "xor", "--resume", "{tmp}/missing.npz"], "does not exist"),
    (["train", "{file:raise ValueError('width 7 is odd')}"],
     "your model file {tmp}/mine.py raised ValueError: width 7 is odd (at {tmp}/mine.py line 4"),
    (["train", "{file:return 1 / 0}"], "your model file {tmp}/mine.py raised ZeroDivisionError"),
])
def test_every_cli_error_is_one_line_and_exit_code_2(args, message, tmp_path, capsys):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    args = [_model_file(tmp_path, a[6:-1]) if a.startswith("{file:") else a.format(tmp=tmp_path) for a in args]
    assert main(args + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("graphnn train: error: "), err
    assert message.format(tmp=tmp_path) in err[0]


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = _model_file(tmp_path, "raise RuntimeError('boom')")
    assert main(["train", path, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    assert err.strip().splitlines()[-1].startswith("graphnn train: error: your model file")
