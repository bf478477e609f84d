"""What the drawings say, model by model: names with real subscripts (the derivations'
notation), no gradient clutter without --grads, groups that follow the model's structure,
each edge's own gradient share, the loss in the model's names, constants kept in `show`
and the ops view, the unrolled view's --wrt and elided steps, and the new views (LSTM cell,
attention block, CNN feature maps) checked against the reference evaluator."""
import re

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st
from sympy.parsing.sympy_parser import implicit_multiplication, parse_expr, standard_transformations

import graphnn as gn
from graphnn.cli import main
from graphnn.cli.core import graph_text
from graphnn.draw import DrawError, example_feeds
from graphnn.models import available, get_model
from graphnn.notation import expr_text, html_name, number_html

GRAPH_VIEWS = ("ops", "neurons", "backward", "unrolled", "cell", "block")


def labels(source: str) -> list[str]:
    """Every label of a DOT source (HTML-like or quoted)."""
    return re.findall(r"label=<(.*?)>(?=[ \]])", source) + re.findall(r'label="((?:[^"\\]|\\.)*)"', source)


def html_number(text: str) -> float:
    """A number as `notation.number_html` writes it (−0.0226, 1.01×10<SUP>−5</SUP>) read back."""
    text = text.replace("−", "-")
    m = re.fullmatch(r"(-?[\d.]+)(?:×10<SUP>(-?\d+)</SUP>)?", text)
    return float(m.group(1)) * 10.0 ** int(m.group(2) or 0)


def names_with_underscores(model) -> set:
    out = set()
    for n in model.graph.nodes:
        out.update(x for x in [n.name] + list(n.names[0] if n.names else []) if x and "_" in x)
    return out


def drawings(model, values):
    """(view, DOT source) for every graph view that applies to ``model``."""
    for view in GRAPH_VIEWS:
        try:
            yield view, gn.draw(model, view=view, values=values if view != "unrolled" else None).source
        except DrawError:
            continue


@pytest.mark.parametrize("name", list(available()))
def test_names_are_real_subscripts_and_values_come_without_gradient_clutter(name):
    model = get_model(name)
    values = "example" if (model.example or model.data) else None
    underscored = names_with_underscores(model)
    for view, source in drawings(model, values):
        text = "\n".join(labels(source))
        for raw in underscored:      # out_h1 is drawn out<SUB>h1</SUB>, never with its underscore
            assert not re.search(rf"(?<![\w.]){re.escape(raw)}(?![\w<])", text), (view, raw)
        assert "not computed" not in text and "δ ?" not in text, view
        if view in ("ops", "neurons"):   # a values-only picture shows no gradient at all
            assert "∂" not in text and "δ" not in text, view
    if name == "mazur":
        assert html_name("out_h1") == "out<SUB>h1</SUB>"
        assert "out<SUB>h1</SUB>" in gn.draw(model, view="neurons").source


def test_rnn_scalar_ops_view_groups_time_steps_in_order():
    src = gn.draw(get_model("rnn-scalar"), values="example").source
    titles = re.findall(r"subgraph cluster_\w+ \{\n[^\n]*label=<(.*?)> style", src)
    assert [t for t in titles if t.startswith("time step")] == [f"time step {t}" for t in range(1, 5)]
    assert not any(t.startswith("layer") for t in titles)    # no "layer 8: ×" beside the steps
    for t in range(1, 5):    # each step's cluster holds its own input x_t
        body = src.split(f"subgraph cluster_step{t} {{")[1].split("}")[0]
        assert f"x<SUB>{t}</SUB>" in body


def test_attention_projections_are_one_block_and_layers_never_empty():
    src = gn.draw(get_model("attention")).source
    body = src.split("subgraph cluster_proj1 {")[1].split("}")[0]
    for w in ("attn.W_Q", "attn.W_K", "attn.W_V"):
        assert html_name(w) in body
    assert "cluster_attn1" in src and "softmax" in src.split("subgraph cluster_attn1 {")[1].split("}")[0]
    for name in available():
        for title in re.findall(r"label=<layer \d+:([^>]*)>", gn.draw(get_model(name)).source):
            assert title.strip(), name        # the tied autoencoder's Wᵀ no longer makes "layer 2:"


def test_mazur_bias_edges_show_their_own_share_and_the_loss_its_names():
    model = get_model("mazur")
    net_h, net_o = model.find("net_h"), model.find("net_o")
    grads = gn.grad(model.loss, [net_h, net_o, model.find("b1")])
    delta_h = gn.evaluate(grads[net_h], model.example)[0]       # δ of each hidden unit
    total_b1 = float(np.ravel(gn.evaluate(grads[model.find("b1")], model.example))[0])
    src = gn.draw(model, view="neurons", grads=True).source
    d_b1 = f"∂{html_name('E_total')}/∂{html_name('b1')}"
    for j in (0, 1):
        edge = re.search(rf"L0bias -> L1u{j} \[label=<(.*)>", src).group(1)
        assert f"{d_b1} via {html_name(f'net_h{j + 1}')} = {number_html(delta_h[j], 3)}" in edge
        assert number_html(total_b1, 3) not in edge          # not the total, 0.0187, on every edge
    assert f"{d_b1} = {number_html(total_b1, 3)} (sum of its edges)" in src
    loss = re.search(r"\tloss \[label=<(.*)>", src).group(1)
    assert f"= Σ ½(target − {html_name('out_o')})<SUP>2</SUP>" in loss and "t−y" not in loss


def test_tied_weights_edges_show_each_uses_term():
    x = gn.input("x", (None, 3))
    W = gn.parameter("W", np.arange(6.0).reshape(3, 2) / 10 - 0.2)
    b, c = gn.parameter("b", [0.1, 0.2]), gn.parameter("c", [0.0, 0.1, 0.0])
    h = gn.sigmoid(gn.linear(x, W, b, name="net_h"), name="h")
    y = gn.sigmoid(gn.linear(h, W.T, c, name="net_y"), name="y")
    loss = gn.losses.quadratic(y, x, name="E")
    feeds = {"x": np.array([[0.2, 0.5, 0.9]])}
    total = gn.evaluate(gn.grad(loss, [W])[W], feeds)
    src = gn.draw(gn.Graph([loss, y]), view="neurons", values=feeds, grads=True, output=y, precision=6).source
    encoder = re.search(r"L0u0 -> L1u0 \[label=<(.*)>", src).group(1)
    share = html_number(re.search(r"∂E/∂W\[1,1\] = (\S+)</FONT>", encoder).group(1))
    # the encoder edge shows x_0 δ_h0, the encoder's term: not the total (which adds the decoder's)
    assert share != pytest.approx(total[0, 0], rel=1e-2)
    net_h = h.inputs[0]
    delta = gn.evaluate(gn.grad(loss, [net_h])[net_h], feeds)
    assert share == pytest.approx(0.2 * delta[0, 0], rel=1e-5)


def test_show_and_ops_view_keep_constants(capsys):
    y = gn.input("y", (None, 2))
    out = 1 - 3 * y
    text = graph_text(gn.Graph([out]))
    assert re.search(r"%1 = 3·%0", text) and re.search(r"%2 = 1 − %1", text), text
    src = gn.draw(out).source
    assert "3·y" in src and "1 − v" in src
    assert main(["show", "rnn-scalar"]) == 0
    assert "np.float64" not in capsys.readouterr().out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["+", "-", "*", "/"]), st.integers(1, 9)), min_size=1, max_size=4))
def test_formula_text_reads_back_as_the_same_expression(ops):
    v = sympy.Symbol("v", real=True)
    expr = v
    for op, k in ops:
        expr = {"+": expr + k, "-": k - expr, "*": expr * k, "/": expr / k}[op]
    text = expr_text(expr, {v: "v"})
    back = text.replace("·", "*").replace("−", "-")
    for glyph, frac in zip("½⅓⅔¼¾", ("1/2", "1/3", "2/3", "1/4", "3/4")):
        back = back.replace(glyph, f"({frac})")
    back = re.sub("[⁰¹²³⁴⁵⁶⁷⁸⁹]+", lambda m: "**" + m.group(0).translate(str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")),
                  back)
    parsed = parse_expr(back, {"v": v}, transformations=standard_transformations + (implicit_multiplication,))
    assert sympy.simplify(parsed - expr) == 0, text


def test_unrolled_wrt_and_elided_steps_from_the_cli(capsys):
    assert main(["draw", "rnn-scalar", "--view", "unrolled", "--wrt", "u"]) == 0
    dot = capsys.readouterr().out
    assert "∂⁺s<SUB>4</SUB>/∂u" in dot and "/∂w" not in dot
    assert main(["draw", "rnn-scalar", "--view", "unrolled", "--steps", "12", "--values", "--precision", "6"]) == 0
    dot = capsys.readouterr().out
    shown = sorted(set(int(t) for t in re.findall(r"<B>s<SUB>(\d+)</SUB></B>", dot)))
    assert shown == [0, 1, 2, 3, 10, 11, 12] and "⋯" in dot
    model = get_model("rnn-scalar", steps=12)
    w = model.find("w")
    dw = float(gn.evaluate(gn.grad(model.loss, [w])[w], model.example))
    terms = [html_number(m) for m in re.findall(r"(?:term \d+|Σ) = ([−-]?[\d.]+(?:×10<SUP>[−-]?\d+</SUP>)?)", dot)]
    assert len(terms) == 7 and sum(terms) == pytest.approx(dw, rel=1e-4)   # 6 shown + the elided sum
    assert main(["draw", "rnn", "--view", "unrolled", "--wrt", "nope"]) == 2
    assert "uses no parameter 'nope'" in capsys.readouterr().err


def test_lstm_cell_view_values_agree_with_the_unrolled_graph():
    looped = get_model("lstm", steps=3)
    unrolled = get_model("lstm", steps=3, mode="unrolled")
    src = gn.draw(looped, view="cell", values="example", precision=6).source
    for role, node in (("forget gate", "f_3"), ("input gate", "i_3"), ("output gate", "o_3"),
                       ("input unit", "g_3"), ("state", "c_3")):
        value = gn.evaluate(unrolled.find(node), unrolled.example)[0]
        box = re.search(rf"<B>{role} [^<]*<SUB>t</SUB></B>.*?mean ([^ ]+) ", src).group(1)
        assert html_number(box) == pytest.approx(value.mean(), rel=1e-5), role
    assert "fig. 10.16" in src and "self-loop" in src
    with pytest.raises(DrawError, match="LSTM"):
        gn.draw(get_model("rnn"), view="cell")


def test_attention_block_view_names_the_shapes():
    src = gn.draw(get_model("attention"), view="block").source
    for text in ("A = softmax(S)", "S = Q K<SUP>T</SUP> / √8", "B × h=2 × T=8 × d_k=8", "B × h=2 × T=8 × T=8",
                 "concatenate the heads", html_name("attn.W_O")):
        assert text in src, text
    with pytest.raises(DrawError, match="attention"):
        gn.draw(get_model("mazur"), view="block")


def test_cnn_maps_view_shows_the_evaluated_feature_maps(tmp_path):
    model = get_model("cnn")
    fig = gn.draw(model, view="maps", values="example")
    images = [np.ma.filled(a.get_images()[0].get_array().astype(float), np.nan) for a in fig.axes if a.get_images()]
    feeds = example_feeds(model)                                  # the first training digit
    a1 = gn.evaluate(model.find("a1"), feeds)[0]                  # (16, 8, 8)
    K1 = model.find("K1").value
    assert np.allclose(images[0], np.asarray(feeds["x"])[0, 0])
    filters, maps = images[1], images[2]          # 16 tiles each, 8 high, 2 wide, blank gaps
    k = ((maps.shape[0] + 1) // 8 - 1) // 8       # each value drawn as a k×k block
    tile = lambda img, j, size: img[(j % 8) * (size + 1):(j % 8) * (size + 1) + size,  # noqa: E731
                                    (j // 8) * (size + 1):(j // 8) * (size + 1) + size]
    for j in (0, 1, 8, 15):
        assert np.allclose(tile(maps, j, 8 * k)[::k, ::k], a1[j])
    drawn = np.sort(filters[~np.isnan(filters)])
    kf2 = drawn.size // K1[:, 0].size                # each weight drawn as a block of kf2 pixels
    assert np.allclose(drawn, np.sort(np.repeat(K1[:, 0].ravel(), kf2)))
    assert np.allclose(np.sort(maps[~np.isnan(maps)]), np.sort(np.repeat(a1.ravel(), k * k)))
    assert main(["draw", "cnn", "--view", "maps", "-o", str(tmp_path / "m.svg")]) == 0
    assert (tmp_path / "m.svg").read_text().count("<image") == 2        # the two filter banks: no values
    assert main(["draw", "cnn", "--view", "maps"]) == 2                 # no DOT text to print
    with pytest.raises(DrawError, match="conv2d"):
        gn.draw(get_model("mazur"), view="maps")


def _one_output_net(target):
    x, t = gn.input("x", (None, 2)), gn.input("t", (None, 1))
    y = gn.sigmoid(gn.linear(x, gn.parameter("W", [[.7], [-.8]]), gn.parameter("b", [.05])))
    return gn.Model(name="one-output", loss=gn.losses.quadratic(y, t, name="E"), output=y, inputs=(x, t),
                    example={"x": [[1.0, 2.0]], "t": [[target]]})


@pytest.mark.parametrize("target", [1.0, 0.0])
def test_a_single_output_target_is_its_number_not_one_hot(target):
    """A 0/1 target of one output read "t = one-hot, class 0" (any 0/1 row summing to 1 did)."""
    source = gn.draw(_one_output_net(target), view="neurons", values="example").source
    assert "one-hot" not in source
    assert f">t = {int(target)}<" in source, [lb for lb in labels(source) if "E = " in lb]


@pytest.mark.parametrize("name", sorted(available()))
def test_one_hot_only_for_targets_of_several_classes(name):
    model = get_model(name)
    try:
        source = gn.draw(model, view="neurons", values="example").source
    except DrawError as refused:   # not a layered net: refused in one line that says what to draw instead
        assert str(refused).startswith("the neurons view draws ") and "\n" not in str(refused)
        assert "view='ops'" in str(refused), str(refused)
        return
    if "one-hot" in source:     # only a target row of several classes is one-hot
        assert int(np.prod(model.output.shape[1:])) > 1, name


def test_cnn_scores_name_the_prediction_and_the_target_apart():
    """The one orange bar was argmax(z) while the only label said "target class 0": a viewer
    read the (untrained) prediction as the true class. Now a legend names both."""
    from matplotlib.colors import to_hex

    model = get_model("cnn")
    fig = gn.draw(model, view="maps", values="example")
    ax = fig.axes[-1]
    feeds = example_feeds(model)
    z = np.asarray(gn.evaluate(model.output, feeds))[0]
    target = next(np.asarray(v)[0] for k, v in feeds.items() if k != "x" and np.shape(v)[-1] == z.size)
    predicted, true = int(np.argmax(z)), int(np.argmax(target))
    assert predicted != true           # the untrained net: the case that misled
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == [f"predicted: {predicted}", f"target: {true}"]
    bars = ax.patches[:z.size]
    fills = [to_hex(b.get_facecolor()) for b in bars]
    assert [k for k, c in enumerate(fills) if c == fills[predicted]] == [predicted]
    assert bars[true].get_linewidth() == 3 and to_hex(bars[true].get_edgecolor()) != to_hex(bars[predicted].get_edgecolor())


def test_unnamed_elements_count_from_one_like_the_derivations():
    """Drawings wrote x[0], W[0,0] where the derivations (and the course's w_ij) write 1, 1."""
    found = " ".join(labels(gn.draw(_one_output_net(1.0), view="neurons", values="example").source))
    for label in ("x[1] = 1", "x[2] = 2", "W[1,1] = 0.7", "W[2,1] = −0.8", "b[1] = 0.05",
                  "out<SUP>(1)</SUP>[1] = "):     # the derivations' out⁽¹⁾ (was the op's label, "sigmoid[1]")
        assert label in found, label
    assert not re.search(r"\[0[,\]]", found)


def test_the_loss_box_shows_the_example_the_units_show():
    """With --example k the units showed row k but the loss box the whole batch's loss."""
    model = get_model("xor")
    feeds = {k: np.asarray(v) for k, v in model.example_feeds()[0].items()}
    batch = gn.evaluate(model.loss, feeds)
    for k in range(len(feeds["x"])):
        one = gn.evaluate(model.loss, {name: v[k:k + 1] for name, v in feeds.items()})
        source = gn.draw(model, view="neurons", values=feeds, example=k + 1, precision=6).source
        box = [lb for lb in labels(source) if f"over all {len(feeds['x'])})" in lb]
        assert len(box) == 1, labels(source)
        shown = re.search(r"E = (\S+) \(example (\d+); (\S+) over all", box[0].replace("</FONT>", ""))
        assert html_number(shown.group(1)) == pytest.approx(one, rel=1e-5) and shown.group(2) == str(k + 1)
        assert html_number(shown.group(3)) == pytest.approx(batch, rel=1e-5)


def test_delta_of_a_batch_says_it_is_of_the_batch_loss():
    """linear-regression --example 3 --grads: the loss box gave example 3's own L = 25 and the
    unit δ = −2, the batch mean's ∂L/∂net (example 3's own would be −10), while the title said
    only the weight gradients were of the batch: now it says δ is too, and δ is that number."""
    model = get_model("linear-regression")
    feeds = {k: np.asarray(v) for k, v in model.example_feeds()[0].items()}
    source = gn.draw(model, view="neurons", grads=True, example=3, precision=6).source
    assert "weight gradients and δ are of L over all 5" in source
    net = model.output
    delta = gn.evaluate(gn.grad(model.loss, [net])[net], feeds)[2, 0]
    assert f"δ = {number_html(delta, 6)}" in source, [lb for lb in labels(source) if "δ" in lb]


@pytest.mark.parametrize("name", sorted(available()))
def test_an_op_box_never_says_its_name_twice(name):
    """With the derivations' names in drawings, a batch count's box read "n" over "n"."""
    source = gn.draw(get_model(name), view="ops").source
    for lb in labels(source):
        lines = [re.sub("<[^>]+>", "", part) for part in lb.split("<BR/>")]
        assert len(lines) < 2 or lines[0] != lines[1], lb


_SCRIPT_RUN = re.compile(r'<text\b[^>]*>')


@pytest.mark.parametrize("name", sorted(available()))
def test_svg_indices_are_placed_for_a_browser(name, tmp_path):
    """Graphviz writes x<SUB>1</SUB> as a full-size <text baseline-shift="sub">, which
    Chromium (and Jupyter, which shows a drawing as SVG) dropped half a line, onto the label's
    next line: s₁'s index sat on its value. The saved .svg and the notebook's SVG place every
    index by its own y, smaller than its line, as the PNG and PDF draw it."""
    from conftest import require_program
    from graphnn.draw import draw, save
    require_program("dot")
    drawing = draw(get_model(name), values="example")
    saved = save(drawing, tmp_path / f"{name}.svg").read_text(encoding="utf-8")
    shown = drawing._repr_mimebundle_()["image/svg+xml"]
    for svg in (saved, shown):
        assert "baseline-shift" not in svg, name
    texts = _SCRIPT_RUN.findall(saved)
    sizes = {float(s) for t in texts for s in re.findall(r'font-size="([\d.]+)"', t)}
    assert any("<SUB>" in line or "<SUP>" in line for line in drawing.source.splitlines()) <= (len(sizes) > 1), name
