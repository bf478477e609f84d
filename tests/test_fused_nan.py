"""A NaN the reference raises on is never hidden by the compiled code's fused loops.

The reference evaluates node by node and stops at the first node that makes a NaN, naming
it. The compiled code fuses chains of elementwise nodes into one expression, which hid NaNs
three ways (each a regression test below, seen failing before the fix):
- sympy simplified as it built the fused expression: exp(log z) → z, (√z)² → z;
- ``max(0, x)`` (relu) returned 0 for x = NaN: Numba's max keeps only a NaN first argument;
- a max-reduction skipped a NaN element the same way.
The property test draws chains of elementwise ops and inputs with negatives and zeros: where
the reference stops on a NaN, the compiled backend stops with the same message; where it
computes, the compiled backend computes the same values.

Left as it is (and allowed below): an *infinite* intermediate that a later node maps back to a
number — 1/(1/0) = 0, exp(−1/0²) = 0 — stops the reference, while the fused loop, which never
stores the intermediate, computes the limit.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import graphnn as gn
from codegen import CpuBackend
from graphnn.model import Model
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend

pytestmark = pytest.mark.usefixtures("private_cache_dir")

X = np.array([[-1.0, 2.0, 0.5], [0.0, 3.0, -0.25]])


def _model(build):
    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 3))
    z = x * gn.parameter("w", np.ones(3))   # a node, so nothing folds into the input itself
    y = build(z)
    t = t if y.shape == x.shape else gn.input("t", (None,) + y.shape[1:])
    return Model("chain", gn.losses.mse(y, t), y, (x, t))


def _outcome(backend, feeds):
    try:
        return "value", backend.predict(feeds)
    except gn.NonFiniteError as e:
        return "error", str(e)


def _both(build, x=X, dtype="float64"):
    model = _model(build)
    feeds = {"x": x, "t": np.zeros((len(x),) + model.output.shape[1:])}
    sgd = make_optimizer("sgd", lr=0.1)
    return _outcome(NumpyBackend(model, sgd, dtype), feeds), _outcome(CpuBackend(model, sgd, dtype), feeds)


@pytest.mark.parametrize("build", [
    pytest.param(lambda z: gn.exp(gn.log(z)), id="exp(log z) folded to z"),
    pytest.param(lambda z: gn.sqrt(z) ** 2, id="sqrt(z)^2 folded to z"),
    pytest.param(lambda z: gn.relu(gn.log(z)), id="relu(NaN) was 0"),
    pytest.param(lambda z: gn.leaky_relu(gn.sqrt(z)), id="leaky relu of NaN"),
    pytest.param(lambda z: gn.max(gn.log(z), axis=1), id="a max-reduction skipped a NaN"),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_nan_inside_a_fused_chain_stops_the_compiled_code_as_it_stops_the_reference(build, dtype):
    (ref_kind, ref), (cpu_kind, cpu) = _both(build, dtype=dtype)
    assert ref_kind == "error" and "first to produce NaN" in ref
    assert (cpu_kind, cpu) == (ref_kind, ref)


def test_finite_chains_are_still_simplified_alike():
    (ref_kind, ref), (cpu_kind, cpu) = _both(lambda z: gn.exp(gn.log(z)), np.abs(X) + 0.5)
    assert ref_kind == cpu_kind == "value"
    np.testing.assert_allclose(cpu, ref, rtol=1e-12)


UNARY = {
    "log": gn.log, "sqrt": gn.sqrt, "exp": gn.exp, "tanh": gn.tanh, "relu": gn.relu,
    "sigmoid": gn.sigmoid, "square": lambda a: a * a, "neg": lambda a: -a, "recip": lambda a: 1.0 / a,
    "affine": lambda a: 2.0 * a - 1.0, "abs": gn.absolute,
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.lists(st.sampled_from(sorted(UNARY)), min_size=2, max_size=4),
       x=st.lists(st.sampled_from([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0]), min_size=6, max_size=6))
def test_compiled_chains_stop_where_the_reference_stops_and_agree_elsewhere(chain, x):
    def build(z):
        for op in chain:
            z = UNARY[op](z)
        return z

    (ref_kind, ref), (cpu_kind, cpu) = _both(build, np.array(x).reshape(2, 3))
    if ref_kind == "value":
        assert cpu_kind == "value", f"{chain}: {cpu}"
        np.testing.assert_allclose(cpu, ref, rtol=1e-9, atol=1e-300, err_msg=str(chain))
    elif "first to produce NaN" in ref:
        assert (cpu_kind, cpu) == (ref_kind, ref), chain
    else:   # an infinite intermediate: the same stop, or its limit (see the module docstring)
        assert cpu_kind == "value" or cpu == ref, chain


def _pooled(build, x):
    xin, t = gn.input("x", (None, 1, 2, 2)), gn.input("t", (None, 1, 1, 1))
    y = gn.max_pool2d(build(xin * gn.parameter("w", np.ones((1, 2, 2)))), 2)
    model = Model("pool", gn.losses.mse(y, t), y, (xin, t))
    feeds = {"x": x, "t": np.zeros((len(x), 1, 1, 1))}
    sgd = make_optimizer("sgd", lr=0.1)
    return _outcome(NumpyBackend(model, sgd, "float64"), feeds), _outcome(CpuBackend(model, sgd, "float64"), feeds)


@pytest.mark.parametrize("build", [
    pytest.param(gn.sqrt, id="pool of a NaN"),
    pytest.param(lambda z: gn.conv2d(gn.log(z), gn.parameter("K", np.ones((1, 1, 1, 1)))), id="conv then pool"),
    pytest.param(lambda z: gn.relu(gn.conv2d(gn.log(z), gn.parameter("K", np.ones((1, 1, 1, 1))))),
                 id="conv, relu and pool fused"),
])
def test_a_max_pool_passes_a_nan_on_as_the_references_argmax_does(build):
    # the NaN is not a window's first element: the strict > skipped it, and the window gave 2
    (ref_kind, ref), (cpu_kind, cpu) = _pooled(build, np.array([[[[4.0, -1.0], [1.0, 2.0]]]]))
    assert ref_kind == "error" and "first to produce NaN" in ref
    assert (cpu_kind, cpu) == (ref_kind, ref)


def test_the_fused_conv_relu_pool_block_passes_a_nan_on():
    """W4's block (codegen/fuse_conv.py) clamped by max(0, v): relu(NaN) was 0 there too."""
    xin, t = gn.input("x", (None, 1, 4, 4)), gn.input("t", (None, 1))
    z = gn.log(xin * gn.parameter("w", np.ones((1, 4, 4))))
    pooled = gn.max_pool2d(gn.relu(gn.conv2d(z, gn.parameter("K", np.full((2, 1, 3, 3), 0.1)))), 2)
    y = gn.reshape(pooled, (None, 2)) @ gn.parameter("V", np.ones((2, 1)))
    model = Model("block", gn.losses.mse(y, t), y, (xin, t))
    import codegen
    assert "_pos_" in codegen.source(model), "the block is no longer fused: this test lost its subject"
    x = np.ones((1, 1, 4, 4))
    x[0, 0, 3, 3] = -1.0   # NaN in the last conv output of the window only
    feeds, sgd = {"x": x, "t": np.zeros((1, 1))}, make_optimizer("sgd", lr=0.1)
    ref = _outcome(NumpyBackend(model, sgd, "float64"), feeds)
    assert ref[0] == "error" and "first to produce NaN" in ref[1]
    assert _outcome(CpuBackend(model, sgd, "float64"), feeds) == ref


@pytest.mark.parametrize("x", [-2.0, 0.0])
def test_the_root_of_a_known_negative_is_computed_not_made_imaginary(x):
    """sympy writes √(−|x|) as i·√|x| (hypothesis found the chain abs → neg → sqrt): the compiled
    chain stops at the sqrt where the reference does, and agrees where it is defined (x = 0)."""
    (ref_kind, ref), (cpu_kind, cpu) = _both(lambda z: gn.sqrt(-gn.absolute(z)), np.full((2, 3), x))
    assert (cpu_kind, ref_kind) == (("error", "error") if x else ("value", "value"))
    if x:
        assert "sqrt node" in ref and "first to produce NaN" in ref and cpu == ref
    else:
        np.testing.assert_array_equal(cpu, ref)
