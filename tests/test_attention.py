"""Scaled dot-product and multi-head attention: values against NumPy, causal masking,
gradients against finite differences, named intermediates, shape errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphnn as gn
from graphnn.ops.attention import causal_mask, multi_head_attention, scaled_dot_product_attention

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def numpy_attention(q, k, v, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = s + mask
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    return a @ v


dims = st.fixed_dictionaries({"b": st.integers(1, 2), "t": st.integers(1, 4), "s": st.integers(1, 4),
                              "dk": st.integers(1, 3), "dv": st.integers(1, 3), "causal": st.booleans(),
                              "seed": st.integers(0, 2 ** 16)})


@SETTINGS
@given(d=dims)
def test_attention_value_and_gradient(d):
    if d["causal"]:
        d["s"] = d["t"]
    rng = np.random.default_rng(d["seed"])
    q = gn.input("q", (None, d["t"], d["dk"]))
    k = gn.input("k", (None, d["s"], d["dk"]))
    v = gn.input("v", (None, d["s"], d["dv"]))
    feeds = {"q": rng.normal(size=(d["b"], d["t"], d["dk"])), "k": rng.normal(size=(d["b"], d["s"], d["dk"])),
             "v": rng.normal(size=(d["b"], d["s"], d["dv"]))}
    out = scaled_dot_product_attention(q, k, v, causal=d["causal"])
    mask = causal_mask(d["t"]) if d["causal"] else None
    np.testing.assert_allclose(gn.evaluate(out, feeds), numpy_attention(feeds["q"], feeds["k"], feeds["v"], mask),
                               rtol=1e-12, atol=1e-12)
    gn.check_grad(out, [q, k, v], feeds)


def test_causal_weights_hide_the_future():
    x = gn.input("x", (None, 4, 3))
    out, weights = scaled_dot_product_attention(x, x, x, causal=True, return_weights=True)
    a = gn.evaluate(weights, {"x": np.random.default_rng(0).normal(size=(2, 4, 3))})
    assert np.all(a[:, np.triu_indices(4, 1)[0], np.triu_indices(4, 1)[1]] == 0.0)
    np.testing.assert_allclose(a.sum(-1), 1.0)


def test_multi_head_gradient_and_causality():
    x = gn.input("x", (None, 3, 4))
    y = multi_head_attention(x, heads=2, d_k=2, causal=True, name="mha")
    params = gn.Graph(y).parameters
    assert sorted(p.name for p in params) == ["mha.W_K", "mha.W_O", "mha.W_Q", "mha.W_V"]
    xv = np.random.default_rng(1).normal(size=(2, 3, 4))
    assert gn.evaluate(y, {"x": xv}).shape == (2, 3, 4)
    gn.check_grad(y, [x] + params, {"x": xv})
    later = xv.copy()
    later[:, 2] += 1.0  # changing the last token cannot change earlier outputs
    np.testing.assert_allclose(gn.evaluate(y, {"x": xv})[:, :2], gn.evaluate(y, {"x": later})[:, :2])


def test_multi_head_equals_per_head_attention():
    rng = np.random.default_rng(2)
    x = gn.input("x", (None, 3, 4))
    y = multi_head_attention(x, heads=2, d_k=2, d_v=3, d_out=5, name="m", rng=rng)
    xv = rng.normal(size=(2, 3, 4))
    p = {n.name: n.value for n in gn.Graph(y).parameters}
    heads = []
    for h in range(2):
        q = xv @ p["m.W_Q"][:, 2 * h:2 * h + 2]
        k = xv @ p["m.W_K"][:, 2 * h:2 * h + 2]
        v = xv @ p["m.W_V"][:, 3 * h:3 * h + 3]
        heads.append(numpy_attention(q, k, v))
    np.testing.assert_allclose(gn.evaluate(y, {"x": xv}), np.concatenate(heads, -1) @ p["m.W_O"], rtol=1e-12)


def test_intermediates_are_named():
    q = gn.input("Q", (None, 2, 3))
    out = scaled_dot_product_attention(q, q, q, name="att")
    names = {n.name for n in gn.Graph(out).nodes}
    assert {"att.scores", "att.S", "att.A", "att.out"} <= names
    grads = gn.grad(gn.sum(out), [q])
    assert len(grads.record.terms_into(q)) == 3  # Q, K and V are the same node: three terms


def test_shape_errors():
    q = gn.input("q", (None, 2, 3))
    with pytest.raises(gn.ShapeError, match="d_k = 3 features but K has 4"):
        scaled_dot_product_attention(q, gn.input("k", (None, 2, 4)), gn.input("v", (None, 2, 4)))
    with pytest.raises(gn.ShapeError, match="K has 2 positions but V has 5"):
        scaled_dot_product_attention(q, q, gn.input("v", (None, 5, 3)))
    with pytest.raises(gn.ShapeError, match="batch, tokens, features"):
        multi_head_attention(gn.input("x", (None, 6)), 2, 3)


def test_matrix_view_derives_attention_with_named_intermediates():
    from graphnn import losses
    from graphnn.derive import derive

    q, k, v, t = (gn.input(n, (None, 2, 2)) for n in "QKVT")
    out = scaled_dot_product_attention(q, k, v, name="att")
    loss = losses.quadratic(out, t, name="E")
    rng = np.random.default_rng(0)
    feeds = {n: rng.normal(size=(1, 2, 2)) for n in "QKVT"}
    g = gn.Graph(loss)
    d = derive(loss, [g.find("att.A"), g.find("att.S"), q, k, v], values=feeds, view="matrix")
    text = d.to_text()
    # the course's softmax(QKᵀ/√d_k)V, then back through both products, softmax and the
    # scaling, each intermediate by its (short) name
    for line in ["scores = Q Kᵀ", "S = 1/√2 scores", "A = softmax(S)", "out = A V",
                 "∂E/∂A = ∂E/∂out Vᵀ", "∂E/∂S = A ⊙ (∂E/∂A - Σ_cols ∂E/∂A ⊙ A)",
                 "∂E/∂scores = 1/√2 ∂E/∂S", "∂E/∂V = Aᵀ ∂E/∂out", "∂E/∂K = (∂E/∂scores)ᵀ Q",
                 "∂E/∂Q = ∂E/∂scores K"]:
        assert line in text, line
    assert "ᵀᵀ" not in text and "att." not in text
    # every number the derivation prints is claimed as an adjoint or gradient: compare with autodiff
    values = gn.evaluate([gn.grad(loss, [q, k, v])[n] for n in (q, k, v)], feeds)
    checked = {claim[1]: value for s in d.steps for claim, value in getattr(s, "checks", [])}
    for node, expected in zip((q, k, v), values):
        np.testing.assert_allclose(checked[node], expected, rtol=1e-12)
    adj = gn.grad(loss, [g.find("att.A"), g.find("att.S")])
    for name in ("att.A", "att.S"):
        np.testing.assert_allclose(checked[g.find(name)], gn.evaluate(adj[g.find(name)], feeds), rtol=1e-12)
