"""The IR, the reference evaluator's feed checks, and the autodiff record."""
import numpy as np
import pytest

import graphnn as gn
from graphnn.models import get_model


def test_nodes_are_immutable_and_have_no_truth_value():
    x = gn.input("x", (None, 2))
    with pytest.raises(AttributeError, match="immutable"):
        x.name = "y"
    with pytest.raises(TypeError, match="truth value"):
        bool(x)


def test_shape_mismatch_names_op_operands_and_shapes():
    x = gn.input("x", (None, 3))
    w = gn.parameter("W", np.ones((2, 4)))
    with pytest.raises(gn.ShapeError) as e:
        gn.linear(x, w, gn.parameter("b", np.zeros(4)), name="net")
    msg = str(e.value)
    assert "linear" in msg and "'net'" in msg and "'x' (B, 3)" in msg and "'W' (2, 4)" in msg


@pytest.mark.parametrize("build,match", [
    (lambda x: x.reshape((None, 5)), "cannot reshape"),
    (lambda x: x[:, 7], "out of range"),
    (lambda x: gn.concat([x, gn.parameter("p", np.ones((2, 3)))], axis=0), "batch axis|agree"),
    (lambda x: x.sum(axis=4), "out of range"),
])
def test_other_shape_errors(build, match):
    with pytest.raises(gn.ShapeError, match=match):
        build(gn.input("x", (None, 3)))


def test_element_names_must_fit_the_shape():
    with pytest.raises(ValueError, match="element names"):
        gn.parameter("W", np.ones((2, 2)), names=["a", "b"])


def test_structural_hash_is_stable_and_structural():
    h1 = get_model("mazur").structural_hash()
    h2 = get_model("mazur").structural_hash()
    assert h1 == h2
    assert get_model("xor").structural_hash() != h1
    # parameter values are not structure; an activation is
    x = gn.input("x", (None, 2))
    a = gn.sigmoid(x @ gn.parameter("W", np.ones((2, 2)))).sum()
    b = gn.sigmoid(x @ gn.parameter("W", np.zeros((2, 2)))).sum()
    c = gn.tanh(x @ gn.parameter("W", np.ones((2, 2)))).sum()
    assert gn.Graph(a).structural_hash() == gn.Graph(b).structural_hash() != gn.Graph(c).structural_hash()


def test_networkx_view_and_topological_order():
    model = get_model("mazur")
    graph = model.graph
    g = graph.nx
    assert g.number_of_nodes() == len(graph)
    import networkx as nx
    order = list(nx.topological_sort(g))
    pos = {n: i for i, n in enumerate(order)}
    for u, v in g.edges():
        assert pos[u] < pos[v]
    assert [p.name for p in graph.trainable] == ["W1", "W2"]
    assert graph.find("w5").name == "W2"
    with pytest.raises(gn.UnknownNameError, match="net_h"):
        graph.find("nothing")


# -- evaluation ------------------------------------------------------------------------

def _mlp():
    x = gn.input("x", (None, 3))
    t = gn.input("t", (None, 2))
    y = gn.sigmoid(gn.linear(x, gn.parameter("W", np.full((3, 2), 0.1)), gn.parameter("b", np.zeros(2))))
    return x, t, gn.losses.mse(y, t)


def test_feed_errors_name_the_input():
    x, t, loss = _mlp()
    with pytest.raises(gn.FeedError, match=r"missing feed for input 't' of shape \(B, 2\)"):
        gn.evaluate(loss, {"x": np.ones((4, 3))})
    with pytest.raises(gn.FeedError, match=r"'x' expects shape \(B, 3\), got \(4, 2\)"):
        gn.evaluate(loss, {"x": np.ones((4, 2)), "t": np.ones((4, 2))})
    with pytest.raises(gn.FeedError, match="real numbers.*<U1"):
        gn.evaluate(loss, {"x": np.full((4, 3), "a"), "t": np.ones((4, 2))})
    with pytest.raises(gn.FeedError, match="batch sizes differ"):
        gn.evaluate(loss, {"x": np.ones((4, 3)), "t": np.ones((3, 2))})
    with pytest.raises(gn.FeedError, match=r"parameter 'W' expects shape \(3, 2\)"):
        gn.evaluate(loss, {"x": np.ones((4, 3)), "t": np.ones((4, 2))}, params={"W": np.ones((2, 2))})


def test_float32_and_float64():
    x, t, loss = _mlp()
    feeds = {"x": np.random.default_rng(0).normal(size=(5, 3)), "t": np.ones((5, 2))}
    v64 = gn.evaluate(loss, feeds)
    v32 = gn.evaluate(loss, feeds, dtype="float32")
    assert v64.dtype == np.float64 and v32.dtype == np.float32
    assert v32 == pytest.approx(v64, rel=1e-6)


def test_nonfinite_names_the_first_node():
    x = gn.input("x", (None, 2))
    h = gn.log(x, name="log_x")
    y = (h * 2).sum()
    with pytest.raises(gn.NonFiniteError, match="'log_x' is the first to produce") as e:
        gn.evaluate(y, {"x": np.array([[1.0, -1.0]])})
    assert e.value.node is h


# -- autodiff and its record -------------------------------------------------------------

def test_record_chains_for_mazur_w5_and_w1():
    m = get_model("mazur")
    W1, W2 = m.find("W1"), m.find("W2")
    grads = gn.grad(m.loss, [W1, W2])
    record = grads.record
    _, values = gn.evaluate([m.loss, grads[W1], grads[W2]], m.example, return_values=True)

    # every symbol in a partial names an element of the forward graph
    env = {record.symbol(n, idx): float(values[n][idx]) for n in m.graph for idx in np.ndindex(*values[n].shape)}

    def numeric(path):
        return float(np.prod([float(link.partial.subs(env)) for link in path]))

    w5 = record.chains(W2, (0, 0))
    assert len(w5) == 1
    assert [str(l.input_symbol) for l in w5[0]] == ["E_o1", "out_o1", "net_o1", "w5"]
    assert [str(l.partial) for l in w5[0]][1:] == ["out_o1 - target_o1", "out_o1*(1 - out_o1)", "out_h1"]
    assert numeric(w5[0]) == pytest.approx(values[grads[W2]][0, 0], rel=1e-12)

    w1 = record.chains(W1, (0, 0))
    assert len(w1) == 2
    assert {str(p[1].input_symbol) for p in w1} == {"out_o1", "out_o2"}
    assert sum(numeric(p) for p in w1) == pytest.approx(values[grads[W1]][0, 0], rel=1e-12)


def test_record_terms_show_fan_out_of_tied_weights():
    x = gn.input("x", (None, 3))
    W = gn.parameter("W", np.random.default_rng(0).normal(size=(3, 2)))
    h = gn.sigmoid(x @ W, name="h")
    r = h @ W.T                      # tied: decoder uses Wᵀ
    loss = gn.losses.mse(r, x)
    grads = gn.grad(loss, W)
    terms = grads.record.terms_into(W)
    assert len(terms) == 2 and {t.consumer.op.name for t in terms} == {"matmul", "transpose"}
    gn.check_grad(loss, [W], {"x": np.random.default_rng(1).normal(size=(4, 3))})


def test_disconnected_wrt():
    x = gn.input("x", (None, 2))
    used, unused = gn.parameter("a", np.ones((2, 1))), gn.parameter("b", np.ones((2, 1)))
    loss = (x @ used).sum()
    with pytest.raises(gn.GradientError, match="'b' does not influence"):
        gn.grad(loss, [used, unused])
    g = gn.grad(loss, [used, unused], disconnected="zero")
    np.testing.assert_array_equal(gn.evaluate(g[unused], {"x": np.ones((3, 2))}), np.zeros((2, 1)))


def test_loss_must_be_scalar_and_grad_is_idempotent():
    x = gn.input("x", (None, 2))
    w = gn.parameter("w", np.ones((2, 1)))
    with pytest.raises(gn.GradientError, match="must be a scalar"):
        gn.grad(x @ w, w)
    loss = ((x @ w) ** 2).sum()
    feeds = {"x": np.array([[1.0, 2.0]])}
    first = gn.evaluate(gn.grad(loss, w)[w], feeds)
    second = gn.evaluate(gn.grad(loss, w)[w], feeds)
    np.testing.assert_array_equal(first, second)   # no accumulation between calls


def test_gradients_are_graphs_second_derivative():
    x = gn.input("x", (None, 1))
    w = gn.parameter("w", [[0.7]])
    loss = gn.tanh(x @ w).sum()
    dw = gn.grad(loss, w)[w].sum()
    d2 = gn.grad(dw, w)[w]
    xv = np.array([[0.3], [-1.2]])
    gn.check_grad(dw, [w], {"x": xv})
    assert gn.evaluate(d2, {"x": xv}).shape == (1, 1)
