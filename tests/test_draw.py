"""graphnn.draw from Python: the three views, the registry, layer detection, errors."""
import re

import graphviz
import numpy as np
import pytest

import graphnn as gn
from graphnn.draw import VIEWS, DrawError, register_view
from graphnn.draw.layers import dense_chain, find_layers
from graphnn.draw.neurons_view import shown_units
from graphnn.draw.style import fmt_number
from graphnn.notation import html_name, number_html
from graphnn.errors import UnknownNameError
from graphnn.models import get_model

CLASSIC = ["mazur", "xor", "digits-mlp", "perceptron-and", "perceptron-or", "linear-regression"]


def node_ids(source, prefix):
    return sorted(set(re.findall(rf"^\s*({prefix}\d+) \[", source, flags=re.M)))


def test_draw_returns_a_digraph_for_model_graph_and_node():
    model = get_model("mazur")
    for subject in (model, model.graph, model.loss):
        d = gn.draw(subject)
        assert isinstance(d, graphviz.Digraph)
        assert html_name("W1") in d.source and "(B, 2)" in d.source
    assert hasattr(d, "_repr_mimebundle_")   # Jupyter shows it


def test_unknown_view_lists_the_views():
    with pytest.raises(UnknownNameError, match="backward, block, cell, maps, neurons, ops, unrolled"):
        gn.draw(get_model("xor"), view="sideways")


def test_registered_view_is_reachable_from_draw_and_cli(capsys):
    def tiny(ctx):
        d = graphviz.Digraph(ctx.name)
        d.node("only", f"{len(ctx.graph)} nodes")
        return d

    register_view("tiny-test", tiny, "a test view")
    try:
        assert "12 nodes" in gn.draw(get_model("mazur"), view="tiny-test").source
        from graphnn.cli import main
        assert main(["draw", "mazur", "--view", "tiny-test"]) == 0
        assert "12 nodes" in capsys.readouterr().out
    finally:
        VIEWS.pop("tiny-test")


def test_ops_view_clusters_layers_and_styles_kinds():
    src = gn.draw(get_model("mazur")).source
    assert src.count("subgraph cluster_layer") == 2
    assert "label=<layer 1: linear → sigmoid>" in src
    assert "cluster_loss" in src and "½(t−y)²" in src and "Σ" in src
    # trainable parameters, fixed parameters (Mazur's biases) and inputs look different
    w1 = re.search(r"n1 \[label=.*", src).group(0)
    b1 = re.search(r"n2 \[label=.*", src).group(0)
    i = re.search(r"n0 \[label=.*", src).group(0)
    assert "fixed parameter" in b1 and "dashed" in b1 and "dashed" not in w1
    assert "ellipse" in i and "box" in w1
    assert ", ".join(map(html_name, ("w1", "w3"))) + "; " + ", ".join(map(html_name, ("w2", "w4"))) in w1


def test_ops_view_values_and_gradients_come_from_evaluate_and_grad():
    model = get_model("mazur")
    grads = gn.grad(model.loss, model.params)
    dW2 = gn.evaluate(grads["W2"], model.example)
    src = gn.draw(model, values="example", grads=True).source
    expected = "; ".join(", ".join(number_html(v, 3) for v in row) for row in dW2)
    assert f"∂{html_name('E_total')}/∂{html_name('W2')} = [{expected}]" in src
    plain = gn.draw(model, values="example").source
    # values only: a clean forward picture, no gradient text at all
    assert "not computed" not in plain and "∂" not in plain and "0.0822" not in plain


def test_ops_view_collapse_draws_one_box_per_layer():
    src = gn.draw(get_model("digits-mlp"), collapse=True).source
    assert node_ids(src, "layer") == ["layer1", "layer2"]
    assert "cluster_layer" not in src
    assert html_name("W1") + " (64, 128)" in src


@pytest.mark.parametrize("name", CLASSIC)
def test_neurons_view_draws_every_classic_model(name):
    model = get_model(name)
    grads = not name.startswith("perceptron")
    d = gn.draw(model, view="neurons", values="example", grads=grads)
    source, layers = dense_chain(model.graph, model.output)
    for k, layer in enumerate([source] + [l.out for l in layers]):
        width = layer.shape[-1]
        shown = re.findall(rf"^\s*L{k}u(\d+) \[", d.source, flags=re.M)
        assert len(shown) == min(width, 5 if width > 10 else width)
    assert ("δ " in d.source) == grads


def test_neurons_view_unit_names_and_tied_weights():
    x = gn.input("x", (None, 3), names=("x1", "x2", "x3"))
    W = gn.parameter("W", np.arange(6.0).reshape(3, 2) / 10, names=[["a", "b"], ["c", "d"], ["e", "f"]])
    b = gn.parameter("b", [0.1, 0.2])
    c = gn.parameter("c", [0.0, 0.0, 0.0])
    h = gn.sigmoid(gn.linear(x, W, b, name="net_h"), name="h", names=("h1", "h2"))
    y = gn.sigmoid(gn.linear(h, W.T, c, name="net_y"), name="y")
    d = gn.draw(y, view="neurons", values={"x": np.ones((1, 3))})
    # the decoder's weight Wᵀ[i, j] is W[j, i]: edge h1 → y[2] carries W's element (2, 0) = 'e'
    edge = re.search(r"L1u0 -> L2u2 \[label=<(.*)>", d.source).group(1)
    assert "e = 0.4" in edge
    assert html_name("h1") in d.source and html_name("x3") in d.source


def test_neurons_view_refuses_graphs_that_are_not_unit_chains():
    x = gn.input("x", (None, 2))
    W = gn.parameter("W", np.ones((2, 2)))
    no_linear = gn.sigmoid(x @ W)
    with pytest.raises(DrawError, match="view='ops'"):
        gn.draw(no_linear, view="neurons")
    b = gn.parameter("b", np.zeros(2))
    side = gn.tanh(x @ W)           # a branch the units cannot show
    joined = gn.linear(x, W, b) + side
    with pytest.raises(DrawError, match="also has"):
        gn.draw(gn.linear(joined, W, b), view="neurons", output=gn.linear(joined, W, b))


def test_neurons_view_example_index_and_param_override():
    model = get_model("xor")
    src = gn.draw(model, view="neurons", values="example", example=4).source
    assert f"L0u0 [label=<<B>{html_name('x1')} = 1</B>>" in src
    W2 = model.find("W2")
    src = gn.draw(model, view="neurons", values="example", params={W2: np.array([[0.25], [0.5]])}).source
    assert f"{html_name('w5')} = 0.25" in src and f"{html_name('w6')} = 0.5" in src


def test_backward_view_draws_the_recorded_gradient_graph():
    model = get_model("mazur")
    d = gn.draw(model, view="backward", grads=True)
    grads = gn.grad(model.loss, model.params)
    assert len(node_ids(d.source, "g")) == len(grads.record.gradient_nodes())
    assert "cluster_forward" in d.source and "cluster_backward" in d.source
    back = [l for l in d.source.splitlines() if "dir=back" in l]
    assert back and all('color="#c0392b"' in l and "dashed" in l for l in back)
    fwd = [l for l in d.source.splitlines() if re.match(r"\s*n\d+ -> n\d+", l)]
    assert fwd and not any("dashed" in l for l in fwd)
    for carried in ("out_o", "net_o", "out_h", "net_h"):
        assert f"label=<d{html_name('E_total')}/d{html_name(carried)}>" in d.source
    dW2 = gn.evaluate(grads["W2"], model.example)
    assert number_html(dW2[0, 0], 3) in d.source
    plain = gn.draw(model, view="backward", values="example").source
    assert "not computed" not in plain and number_html(dW2[0, 0], 3) not in plain


def test_backward_view_needs_a_loss():
    x = gn.input("x", (None, 2))
    with pytest.raises(DrawError, match="no scalar loss"):
        gn.draw(gn.sigmoid(x), view="backward")


def test_values_and_grads_argument_errors():
    model = get_model("mazur")
    with pytest.raises(DrawError, match="needs a Model"):
        gn.draw(model.loss, values="example")
    with pytest.raises(DrawError, match="'example'"):
        gn.draw(model, values="sample")
    with pytest.raises(DrawError, match="no scalar loss"):
        gn.draw(model.output, grads=True, values=model.example)
    with pytest.raises(TypeError, match="Model, Graph or Node"):
        gn.draw("mazur")
    with pytest.raises(DrawError, match="perceptron"):
        gn.draw(get_model("perceptron-and"), view="neurons", grads=True)


def test_same_graph_same_dot_text_in_one_process():
    for view in ("ops", "neurons", "backward"):
        a = gn.draw(get_model("mazur"), view=view, grads=True).source
        b = gn.draw(get_model("mazur"), view=view, grads=True).source
        assert a == b
        assert not re.search(r"\w#\d+", a)  # no id()-based names like map#1234


def test_find_layers_groups_parametric_op_with_what_follows():
    x = gn.input("x", (None, 4))
    W = gn.parameter("W", np.ones((4, 3)))
    V = gn.parameter("V", np.ones((3, 2)))
    y = gn.relu(gn.tanh(x @ W) @ V)
    layers = find_layers(gn.Graph([y]))
    assert [l.title() for l in layers] == ["layer 1: @ → tanh", "layer 2: @ → relu"]


def test_shown_units_and_number_format():
    assert shown_units(3, 10) == [0, 1, 2]
    assert shown_units(64, 10) == [0, 1, 2, 3, None, 63]
    assert shown_units(12, 4) == [0, 1, None, 11]
    assert fmt_number(0.0821670405642, 3) == "0.0822"
    assert fmt_number(-0.0226025404775, 3) == "−0.0226"      # a real minus sign, as derivations print
    assert fmt_number(0.0, 3) == "0"
    assert fmt_number(1.01134e-05, 3) == "1.01×10<SUP>−5</SUP>"


def test_example_out_of_range_is_an_error():
    with pytest.raises(DrawError, match=r"--example \(example=\) 7 is out of range: .* 4 examples, counted from 1 \(1 … 4\)"):
        gn.draw(get_model("xor"), view="neurons", values="example", example=7)
    with pytest.raises(DrawError, match=r"--example \(example=\) 0 is out of range"):
        gn.draw(get_model("xor"), view="neurons", values="example", example=0)
    with pytest.raises(DrawError, match="example_index= is gone: pass example=4"):
        gn.draw(get_model("xor"), view="neurons", values="example", example_index=3)


def test_inputs_with_defaults_need_no_feed():
    x = gn.input("x", (None, 2))
    flag = gn.input("training", (), default=0.0)
    W = gn.parameter("W", np.ones((2, 2)))
    b = gn.parameter("b", np.zeros(2))
    y = gn.linear(x, W, b) * (1 + flag)
    src = gn.draw(y, values={"x": np.ones((1, 2))}).source
    assert "= [2, 2]" in src
