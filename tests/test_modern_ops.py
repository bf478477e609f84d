"""The Transformer-era ops (issue 20): layer norm, embedding, positional encoding, GELU, residual
+, softmax cross-entropy on class indices over a sequence / a similarity matrix, row numbers.

Each: check_grad over hypothesis-drawn shapes (float64 central differences), its element
formula equal to its NumPy reference (what derivations print), and — in one tiny model that
uses them all — the CUDA printers (Numba's simulator) against the reference evaluator. Their
CPU kernels are checked through the built-in models that use them (transformer: embedding,
positional encoding, layer norm, GELU, residual +, index cross-entropy over a sequence;
contrastive: row numbers, the cross-entropy of a transposed similarity matrix) in
test_codegen_models.py, float64 and float32, and test_modern_models.py (whole epochs).
"""
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphnn as gn
from graphnn.data import Dataset
from graphnn.evaluate import evaluate
from graphnn.model import Model
from graphnn.ops import EmbeddingGrad, SparseSoftmaxCEGrad, StandardizeGrad
from graphnn.ops.base import all_indices

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
dims = st.integers(1, 3)


def floats(rng, shape, scale=1.0):
    return rng.normal(0.0, scale, shape)


@SETTINGS
@given(b=dims, t=dims, d=st.integers(2, 5), seed=st.integers(0, 99))
def test_layer_norm_gradients_gain_bias_and_input(b, t, d, seed):
    rng = np.random.default_rng(seed)
    x = gn.input("x", (None, t, d))
    gain, bias = gn.parameter("γ", floats(rng, d) + 1), gn.parameter("β", floats(rng, d))
    y = gn.layer_norm(x, gain, bias)
    gn.check_grad(y, [x, gain, bias], {"x": floats(rng, (b, t, d), 2.0)})
    out = gn.evaluate(gn.ops.standardize(x), {"x": floats(rng, (b, t, d), 3.0) + 5})
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-12)          # standardised rows
    assert np.all(out.var(-1) <= 1.0)


@SETTINGS
@given(b=dims, t=dims, vocab=st.integers(1, 6), d=dims, seed=st.integers(0, 99))
def test_embedding_gathers_rows_and_its_gradient_is_a_scatter_add(b, t, vocab, d, seed):
    rng = np.random.default_rng(seed)
    ids = gn.input("ids", (None, t), dtype="int")
    E = gn.parameter("E", floats(rng, (vocab, d)))
    feed = {"ids": rng.integers(0, vocab, (b, t))}
    out = gn.embedding(ids, E)
    np.testing.assert_array_equal(gn.evaluate(out, feed), E.value[feed["ids"]])
    gn.check_grad(gn.positional_encoding(out) * out, [E], feed)
    grads = gn.grad(gn.sum(out), [E])
    ops = {type(n.op) for n in grads.record.gradient_nodes()}
    assert EmbeddingGrad in ops and gn.ops.MatMul not in ops      # a scatter-add, no one-hot matmul
    counts = np.bincount(feed["ids"].ravel(), minlength=vocab)
    np.testing.assert_array_equal(gn.evaluate(grads[E], feed), np.repeat(counts[:, None], d, axis=1))


def test_embedding_rejects_ids_outside_the_vocabulary():
    ids = gn.input("ids", (None, 2), dtype="int")
    out = gn.embedding(ids, gn.parameter("E", np.zeros((3, 2))), name="emb")
    with pytest.raises(gn.FeedError, match=r"'emb'.*0\.\.2, got 0\.\.3"):
        gn.evaluate(out, {"ids": np.array([[0, 3]])})
    with pytest.raises(gn.FeedError, match="fractions"):
        gn.evaluate(out, {"ids": np.array([[0.5, 1.0]])})


def test_positional_encoding_is_the_papers_sinusoid():
    x = gn.input("x", (None, 5, 6))
    pe = gn.evaluate(gn.positional_encoding(x), {"x": np.zeros((1, 5, 6))})[0]
    pos, i = 3, 1      # PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(…)
    assert pe[pos, 2 * i] == pytest.approx(np.sin(pos / 10000 ** (2 * i / 6)), abs=1e-15)
    assert pe[pos, 2 * i + 1] == pytest.approx(np.cos(pos / 10000 ** (2 * i / 6)), abs=1e-15)


@SETTINGS
@given(b=dims, t=dims, classes=st.integers(1, 5), seed=st.integers(0, 99))
def test_index_cross_entropy_over_a_sequence(b, t, classes, seed):
    rng = np.random.default_rng(seed)
    z, labels = gn.input("z", (None, t, classes)), gn.input("y", (None, t), dtype="int")
    feed = {"z": floats(rng, (b, t, classes), 3.0), "y": rng.integers(0, classes, (b, t))}
    ce = gn.sparse_softmax_cross_entropy(z, labels)
    gn.check_grad(ce, [z], feed)
    onehot = gn.input("onehot", (None, t, classes))
    expected = gn.evaluate(gn.ops.softmax_cross_entropy(z, onehot), {**feed, "onehot": np.eye(classes)[feed["y"]]})
    np.testing.assert_allclose(gn.evaluate(ce, feed), expected, rtol=1e-12, atol=1e-12)
    # the loss on class-index labels goes through the fused op, with no one-hot in its graph
    loss = gn.losses.softmax_cross_entropy(z, labels, reduction="mean")
    assert not any(n.op.label(n) == "one-hot" for n in gn.Graph([loss]).nodes)


@SETTINGS
@given(b=dims, n=st.integers(1, 4), seed=st.integers(0, 99))
def test_infonce_gradient_is_softmax_minus_identity(b, n, seed):
    rng = np.random.default_rng(seed)
    z = gn.input("z", (None, n, n))
    feed = {"z": floats(rng, (b, n, n), 2.0)}
    diag = gn.row_numbers(z, axis=1)
    ce = gn.sum(gn.sparse_softmax_cross_entropy(z, diag)) + gn.sum(gn.sparse_softmax_cross_entropy(gn.transpose(z),
                                                                                                  diag))
    gn.check_grad(ce, [z], feed)
    rows = gn.grad(gn.sum(gn.sparse_softmax_cross_entropy(z, diag)), [z])[z]
    p = np.exp(feed["z"]) / np.exp(feed["z"]).sum(-1, keepdims=True)
    np.testing.assert_allclose(gn.evaluate(rows, feed), p - np.eye(n), atol=1e-12)
    np.testing.assert_array_equal(gn.evaluate(diag, feed), np.tile(np.arange(n), (b, 1)))


@SETTINGS
@given(shape=st.tuples(dims, st.integers(1, 4)), seed=st.integers(0, 99))
def test_gelu_and_the_residual_plus(shape, seed):
    rng = np.random.default_rng(seed)
    x = gn.input("x", (None, shape[1]))
    W = gn.parameter("W", floats(rng, (shape[1], shape[1])))
    gn.check_grad(x + gn.gelu(x @ W), [x, W], {"x": floats(rng, shape, 2.0)})
    v = np.array([[-3.0, -0.5, 0.0, 0.7, 3.0]])
    exact = v / 2 * (1 + np.vectorize(__import__("math").erf)(v / np.sqrt(2)))
    np.testing.assert_allclose(gn.evaluate(gn.gelu(gn.input("v", (None, 5))), {"v": v}), exact, atol=1e-3)


# -- element formulas (what the scalar derivations print) -------------------------------------------

def _element_matches_reference(node, feeds, batch):
    _, values = evaluate(node, feeds, return_values=True)
    for idx in all_indices(values[node].shape):
        expr = node.op.element_expr(node, idx, lambda pos, i: sympy.Float(float(values[node.inputs[pos]][i])), batch)
        assert float(expr) == pytest.approx(float(values[node][idx]), rel=1e-9, abs=1e-12), (node.op.name, idx)


def test_element_formulas_equal_the_references():
    rng = np.random.default_rng(3)
    ids, x = gn.input("ids", (None, 3), dtype="int"), gn.input("x", (None, 3, 4))
    E = gn.parameter("E", floats(rng, (5, 4)))
    feeds = {"ids": rng.integers(0, 5, (2, 3)), "x": floats(rng, (2, 3, 4))}
    h = gn.positional_encoding(gn.embedding(ids, E)) + gn.layer_norm(x)
    ce = gn.sparse_softmax_cross_entropy(h, gn.row_numbers(h, axis=1)[:, :3])
    loss = gn.sum(ce * ce)
    grads = gn.grad(loss, [E, x])
    nodes = list(gn.Graph([loss]).nodes) + grads.record.gradient_nodes()
    wanted = (gn.ops.Embedding, gn.ops.PositionalEncoding, gn.ops.Standardize, gn.ops.SparseSoftmaxCrossEntropy,
              gn.ops.RowNumbers, EmbeddingGrad, StandardizeGrad, SparseSoftmaxCEGrad)
    seen = set()
    for node in nodes:
        if isinstance(node.op, wanted):
            _element_matches_reference(node, feeds, 2)
            seen.add(type(node.op))
    assert seen == set(wanted)


# -- compiled: one tiny model that uses every new op --------------------------------------------------

def tiny_model():
    """embedding + PE → layer norm → GELU dense + residual → index CE over the sequence, plus an
    InfoNCE term over a (transposed) similarity matrix with row numbers."""
    rng = np.random.default_rng(0)
    ids, nxt = gn.input("ids", (None, 3), dtype="int"), gn.input("next", (None, 3), dtype="int")
    E = gn.parameter("E", floats(rng, (5, 4)))
    x = gn.positional_encoding(gn.embedding(ids, E, name="emb"), name="x0")
    h = x + gn.dense(gn.layer_norm(x, name="ln"), 4, "gelu", name="ffn", rng=rng)
    logits = gn.dense(h, 5, name="logits", rng=rng)
    sim = gn.matmul(h, gn.transpose(h), name="sim")
    diag = gn.row_numbers(sim, axis=1)
    loss = (gn.losses.softmax_cross_entropy(logits, nxt, reduction="mean")
            + gn.mean(gn.sparse_softmax_cross_entropy(gn.transpose(sim), diag)))
    data = {"ids": rng.integers(0, 5, (6, 3)), "next": rng.integers(0, 5, (6, 3))}
    return Model("tiny-modern", loss, logits, (ids, nxt), Dataset(data))


def test_cuda_printers_match_the_reference_in_the_simulator():
    from codegen.cuda.device import enable_simulator

    enable_simulator()
    from codegen.cuda.backend import CudaBackend
    from graphnn.optim import make_optimizer
    from graphnn.training import NumpyBackend

    model = tiny_model()
    dev = CudaBackend(model, make_optimizer("sgd", lr=0.1), "float64")
    ref = NumpyBackend(model, make_optimizer("sgd", lr=0.1), "float64")
    feeds = {k: v[:4] for k, v in model.data.train.items()}
    for _ in range(2):
        assert dev.train_step(feeds) == pytest.approx(ref.train_step(feeds), rel=1e-10)
    for p in model.params:
        np.testing.assert_allclose(dev.params[p], ref.params[p], rtol=1e-10, atol=1e-12, err_msg=p.name)
