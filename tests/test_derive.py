"""Derivations (graphnn.derive): the numbers they print are the autodiff's, the forms are
the course's. Reference numbers come from /work/shared/reference (read here, never
copied into the library); autodiff values from evaluating fresh gradient graphs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import sympy

import graphnn as gn
from graphnn.derive import VIEWS, Derivation, Step, derive, register_view
from graphnn.derive.course import boley_net, hmkcode, single_neuron
from graphnn.derive.printing import number
from graphnn.errors import FeedError, UnknownNameError
from graphnn.models import get_model
from graphnn.optim import make_optimizer

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "mazur_2_2_2.json"


@pytest.fixture(scope="module")
def ref():
    path = REFERENCE if REFERENCE.exists() else Path("/work/shared/reference/mazur_2_2_2.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def mazur():
    return get_model("mazur")


# -- an independent oracle: evaluate fresh gradient graphs ---------------------------------------


def autodiff_values(model_or_loss, feeds, wrt_nodes):
    """{('gradient'|'adjoint', node): array} from a fresh grad() evaluated by `evaluate`."""
    loss = getattr(model_or_loss, "loss", model_or_loss)
    grads = gn.grad(loss, list(wrt_nodes))
    totals = {n: a.total for n, a in grads.record.adjoints.items() if a.total is not None}
    _, values = gn.evaluate([loss] + list(totals.values()), feeds, return_values=True)
    out = {("gradient", w): values[grads[w]] for w in wrt_nodes}
    out.update({("adjoint", n): values[t] for n, t in totals.items()})
    return out


def check_every_number(d: Derivation, model_or_loss, feeds, lr=None, optimizer="sgd"):
    """Every claim a derivation makes equals the autodiff value; terms multiply and sum."""
    wrt = {c[0][1] for s in d.steps for c in s.checks if c[0][0] in ("gradient", "update")}
    oracle = autodiff_values(model_or_loss, feeds, wrt)
    seen = 0
    for step in d.steps:
        for claim, value in step.checks:
            kind = claim[0]
            if kind in ("gradient", "adjoint"):
                want = oracle[(kind, claim[1])]
                want = want if claim[2] is None else np.asarray(want)[claim[2]]
                np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-15, err_msg=str(claim))
                seen += 1
            elif kind == "update":
                node, index = claim[1], claim[2]
                opt = make_optimizer(optimizer, lr=lr)
                params = {node: np.array(node.value, dtype=float)}
                state = opt.init_state(params)
                opt.update(params, {node: np.asarray(oracle[("gradient", node)])}, state, 1)
                want = params[node] if index is None else params[node][index]
                np.testing.assert_allclose(value, want, rtol=1e-12)
                seen += 1
        if step.kind == "path":  # the path's printed factors multiply to its term
            factors = [v for c, v in step.checks if c[0] == "local"]
            term = [v for c, v in step.checks if c[0] == "term"][0]
            assert np.isclose(np.prod(factors), term, rtol=1e-12)
    return seen


# -- Mazur, scalar view ------------------------------------------------------------------------------


def test_mazur_w5_chain_symbols_and_numbers(mazur, ref):
    d = derive(mazur, "w5", values=True)
    text = d.to_text()
    assert "∂E_total/∂w_5 = ∂E_total/∂out_o1 · ∂out_o1/∂net_o1 · ∂net_o1/∂w_5" in text
    assert "= -(target_o1 - out_o1) · out_o1 (1 - out_o1) · out_h1" in text
    f = ref["chain_rule_factors"]
    numbers_line = " · ".join(number(f[k]) for k in ("dE_dout_o1", "dout_o1_dnet_o1", "dnet_o1_dw5"))
    assert numbers_line == "0.741365 · 0.186816 · 0.593270"
    assert f"= {numbers_line}" in text
    assert f"= {number(ref['gradients']['dE_dw5'])}" in text
    # the chain step's factors are the reference's factors and the autodiff's gradient
    chain = d.steps[0]
    assert chain.kind == "chain"
    locals_ = [v for c, v in chain.checks if c[0] == "local"]
    np.testing.assert_allclose(locals_, [f["dE_dout_o1"], f["dout_o1_dnet_o1"], f["dnet_o1_dw5"]],
                               rtol=1e-9)
    assert check_every_number(d, mazur, mazur.example) >= 2
    # the delta form names δ_o1 = ∂E/∂net_o1
    delta = [s for s in d.steps if s.kind == "delta"][0]
    assert delta.lhs == sympy.Symbol("delta_o1")
    assert np.isclose(delta.value, f["delta_o1"], rtol=1e-9)


def test_mazur_w1_two_paths_and_their_sum(mazur, ref):
    d = derive(mazur, "w1", values=True)
    paths = [s for s in d.steps if s.kind == "path"]
    assert len(paths) == 2
    text = d.to_text()
    assert "term_1 = ∂E_total/∂out_o1 · ∂out_o1/∂net_o1 · ∂net_o1/∂out_h1 · ∂out_h1/∂net_h1 · ∂net_h1/∂w_1" in text
    assert "-(target_o2 - out_o2) · out_o2 (1 - out_o2) · w_7 · out_h1 (1 - out_h1) · i_1" in text
    total = [s for s in d.steps if s.kind == "sum"][0]
    assert np.isclose(total.value, sum(p.value for p in paths), rtol=1e-14)
    assert np.isclose(total.value, ref["gradients"]["dE_dw1"], rtol=1e-9)
    deltas = {str(s.lhs): s.value for s in d.steps if s.kind == "delta"}
    for name in ("delta_o1", "delta_o2", "delta_h1"):
        assert np.isclose(deltas[name], ref["chain_rule_factors"][name], rtol=1e-9)
    assert "(δ_o1 · w_5 + δ_o2 · w_7) · out_h1 (1 - out_h1)" in text
    assert check_every_number(d, mazur, mazur.example) >= 5


@pytest.mark.parametrize("name", ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"])
def test_every_mazur_weight_matches_reference(mazur, ref, name):
    d = derive(mazur, name, values=True)
    grads = [s.value for s in d.steps if s.kind == "gradient"]
    assert np.isclose(grads[-1], ref["gradients"][f"dE_d{name}"], rtol=1e-9)
    assert check_every_number(d, mazur, mazur.example) >= 1


def test_printed_numbers_all_come_from_the_graph(mazur):
    """Every decimal number in the text is a formatted value the derivation computed
    from the graph (forward values, adjoints, local partials, their products)."""
    d = derive(mazur, "w1", values=True, update=True)
    allowed = set()
    grads = gn.grad(mazur.loss, mazur.params)
    totals = [a.total for a in grads.record.adjoints.values() if a.total is not None]
    _, values = gn.evaluate([mazur.loss] + totals, mazur.example, return_values=True)
    for arr in values.values():
        allowed |= {number(v) for v in np.ravel(arr)}
    for step in d.steps:
        allowed |= {number(v) for _, v in step.checks}
    allowed |= {number(mazur.defaults["lr"]), f"{mazur.defaults['lr']:g}"}  # η in prose too
    printed = set(re.findall(r"-?\d+\.\d+", d.to_text()))
    assert printed, "no numbers printed"
    assert printed <= allowed | {n.lstrip("-") for n in allowed}, printed - allowed


def test_update_step_uses_optimizer_rule_and_reference(mazur, ref):
    d = derive(mazur, "w5", values=True, update=True)
    upd = [s for s in d.steps if s.kind == "update"][0]
    assert np.isclose(upd.value, ref["updated_weights_after_one_step"]["w5"], rtol=1e-9)
    text = d.to_text()
    assert "w_5⁺ = w_5 - η · ∂E_total/∂w_5" in text and "= 0.4 - 0.5 · 0.0821670" in text
    assert check_every_number(d, mazur, mazur.example, lr=0.5) >= 3
    # lr and optimizer can be chosen; momentum shows its velocity rule
    d = derive(mazur, "w5", values=True, update=True, lr=0.1, optimizer="momentum")
    rows = [s for s in d.steps if s.kind == "update"]
    assert len(rows) == 2 and rows[0].lhs == "v_{w5}^{+}" and rows[1].lhs == "w_{5}^{+}"
    assert "= 0.9 · 0 - 0.1 · 0.0821670" in d.to_text()
    assert check_every_number(d, mazur, mazur.example, lr=0.1, optimizer="momentum") >= 1


def test_whole_parameter_in_scalar_view_covers_every_element(mazur, ref):
    d = derive(mazur, "W2", values=True)
    grads = {str(s.lhs.args[1]): s.value for s in d.steps if s.kind == "chain"}
    assert set(grads) == {"w5", "w6", "w7", "w8"}
    for k, v in grads.items():
        assert np.isclose(v, ref["gradients"][f"dE_d{k}"], rtol=1e-9)


# -- matrix view -----------------------------------------------------------------------------------


def test_matrix_view_on_mazur(mazur, ref):
    d = derive(mazur, ["W2", "W1"], values=True, view="matrix", update=True)
    grads = {s.checks[0][0][1].name: s.value for s in d.steps if s.kind == "gradient"}
    g = ref["gradients"]
    np.testing.assert_allclose(grads["W2"], [[g["dE_dw5"], g["dE_dw7"]], [g["dE_dw6"], g["dE_dw8"]]], rtol=1e-9)
    np.testing.assert_allclose(grads["W1"], [[g["dE_dw1"], g["dE_dw3"]], [g["dE_dw2"], g["dE_dw4"]]], rtol=1e-9)
    latex = d.to_latex()
    for piece in [r"\delta^{(2)} &= \frac{\partial E_{\mathrm{total}}}{\partial \mathrm{net}_{o}}",
                  r"\sigma'\left(\mathrm{net}_{o}\right)",
                  r"\mathrm{out}_{h}^{\top} \, \delta^{(2)}",          # ∂E/∂W2 = out_hᵀ δ
                  # the row δ² W2ᵀ = ∂E/∂out_h, then δ¹ = ∂E/∂out_h ⊙ f′
                  r"\frac{\partial E_{\mathrm{total}}}{\partial \mathrm{out}_{h}} &= \delta^{(2)} \, W_{2}^{\top}",
                  r"\frac{\partial E_{\mathrm{total}}}{\partial \mathrm{out}_{h}} \odot \sigma'",
                  r"[2 \times 2]", r"\begin{bmatrix} 0.0821670 & -0.0226025"]:
        assert piece in latex, piece
    assert "Row-vector convention" in d.to_text()
    assert check_every_number(d, mazur, mazur.example, lr=0.5) >= 6
    upd = {s.lhs: s.value for s in d.steps if s.kind == "update"}
    new = ref["updated_weights_after_one_step"]
    np.testing.assert_allclose(upd[r"W_{2}^{+}"], [[new["w5"], new["w7"]], [new["w6"], new["w8"]]], rtol=1e-9)


def test_matrix_view_reproduces_boley_deltann():
    model = boley_net()
    d = derive(model, ["W", "V"], values=True, view="matrix")
    text = d.to_text().replace("z\u0302", "ẑ")  # combining hat → one character
    # dE_dz = z − t; dz_dzhat = 1 − z²; dE_dzhat = dE_dz .* dz_dzhat
    assert "δ⁽²⁾ = ∂E/∂ẑ" in text and "∂E/∂z = z - t" in text
    assert "= ∂E/∂z ⊙ tanh'(ẑ)" in text and "= ∂E/∂z ⊙ (1 - z²)" in text
    # dE_dW = dE_dzhat * [1, yᵀ]  (row form: [1, y]ᵀ δ)
    assert "∂E/∂W = y_bᵀ δ⁽²⁾ (3 × 1)(1 × 2)" in text  # with the operands' shapes
    # dE_dy = W' * dE_dzhat, dE_dyhat = dE_dy(2:end) .* (1 − y²), dE_dV = dE_dyhat * [1, xᵀ]
    # the bias column dropped: columns 2 to 3 (1-based, as MATLAB's dE_dy(2:end))
    assert "∂E/∂y_b = δ⁽²⁾ Wᵀ" in text and "∂E/∂y = ∂E/∂y_b_([:, 2:3])" in text
    assert "= ∂E/∂y ⊙ (1 - y²)" in text
    assert "∂E/∂V = x_bᵀ δ⁽¹⁾" in text
    assert check_every_number(d, model, model.example) >= 4
    # and the same numbers as Boley's MATLAB, written with column vectors
    x, t = model.example["x"].ravel(), model.example["t"].ravel()
    V, W = model.find("V").value.T, model.find("W").value.T      # his V, W: out × (1 + in)
    y = np.tanh(V @ np.r_[1, x]); z = np.tanh(W @ np.r_[1, y])
    dE_dzhat = (z - t) * (1 - z ** 2)
    dE_dW = np.outer(dE_dzhat, np.r_[1, y])
    dE_dyhat = (W.T @ dE_dzhat)[1:] * (1 - y ** 2)
    dE_dV = np.outer(dE_dyhat, np.r_[1, x])
    grads = {s.checks[0][0][1].name: s.value for s in d.steps if s.kind == "gradient"}
    np.testing.assert_allclose(grads["W"], dE_dW.T, rtol=1e-12)
    np.testing.assert_allclose(grads["V"], dE_dV.T, rtol=1e-12)


def test_single_neuron_rule():
    model = single_neuron()
    d = derive(model, "w2", values=True)
    chain = d.steps[0]
    assert chain.rows()[0].startswith(r"\frac{\partial E}{\partial w_{2}}")
    # dE/dw_p = 2 x_p (y − t) y (1 − y), as sympy proves from the printed factors
    shown = chain.forms[1].sympy.doit()
    x2, y, t = sympy.symbols("x2 y t")
    assert sympy.simplify(shown - 2 * x2 * (y - t) * y * (1 - y)) == 0
    assert r"2 \left(y - t\right) \cdot y \left(1 - y\right) \cdot x_{2}" in d.to_latex()
    assert check_every_number(d, model, model.example) >= 1


def test_hmkcode_linear_example():
    model = hmkcode()
    d = derive(model, ["w6", "w1"], values=True)
    text = d.to_text()
    assert "= (prediction - actual) · h_2" in text
    assert "= (prediction - actual) · w_5 · i_1" in text
    # the lecture's numbers: prediction 0.191, Δ = prediction − actual = −0.809
    assert "prediction - actual\n" in text and "-0.809\n" in text
    assert check_every_number(d, model, model.example) >= 2


def test_softmax_cross_entropy_shows_p_minus_t():
    x = gn.input("x", (None, 2), names=("x1", "x2"))
    t = gn.input("t", (None, 3), names=("t1", "t2", "t3"))
    W = gn.parameter("W", [[0.1, 0.2, 0.3], [-0.2, 0.1, 0.4]],
                     names=[["w11", "w12", "w13"], ["w21", "w22", "w23"]])
    b = gn.parameter("b", [0.0, 0.1, 0.0], names=("b1", "b2", "b3"))
    z = gn.linear(x, W, b, name="z", names=("z1", "z2", "z3"))
    L = gn.losses.softmax_cross_entropy(z, t, name="L")
    feeds = {"x": np.array([[1.0, 2.0]]), "t": np.array([[0.0, 1.0, 0.0]])}
    d = derive(L, "w12", values=feeds)
    text = d.to_text()
    assert "(p_z2 - t_2)/n · x_1" in text and "exp" not in text
    assert check_every_number(d, L, feeds) >= 2
    m = derive(L, "W", values=feeds, view="matrix")
    assert "(p - t)" in m.to_text() and "exp" not in m.to_text()
    assert check_every_number(m, L, feeds) >= 1


def test_symbolic_only_user_graph():
    """No values: symbols only, for any graph (here tanh, a product and a user expression)."""
    x = gn.input("x", (None, 2), names=("x1", "x2"))
    W = gn.parameter("W", [[1.0, 2.0], [3.0, 4.0]], names=[["a", "b"], ["c", "d"]])
    h = gn.tanh(gn.matmul(x, W, name="s", names=("s1", "s2")), name="h", names=("h1", "h2"))
    u, v = sympy.symbols("u v")
    q = gn.ops.fmap(u ** 3 * v, {u: h, v: x}, name="q", names=("q1", "q2"))
    loss = gn.sum(q, name="L")
    d = derive(loss, "b")
    text = d.to_text()
    assert re.search(r"\d\.\d", text) is None  # no numbers at all
    assert "∂L/∂b = ∂L/∂h_2 · ∂h_2/∂s_2 · ∂s_2/∂b" in text  # L ← q2 (partial 1) merged
    assert "= 3 h_2² x_2 · (1 - h_2²) · x_1" in text
    assert all(s.value is None for s in d.steps)
    m = derive(loss, "W", view="matrix")
    assert r"\delta^{(1)}" in m.to_latex() and "tanh'" in m.to_text()


# -- API surface ------------------------------------------------------------------------------


def test_derivation_object_and_formats(mazur):
    d = derive(mazur, "w5", values=True)
    assert isinstance(d, Derivation) and len(d) == len(d.steps) and all(isinstance(s, Step) for s in d)
    eqs = d.steps[0].equations
    assert eqs and all(isinstance(e, sympy.Equality) for e in eqs)
    assert d.render("latex").startswith("%") and r"\begin{align*}" in d.render("latex")
    assert d.render("latex-document").startswith(r"\documentclass")
    assert "$$\n\\begin{aligned}" in d.render("markdown")
    assert "<math" in d.render("html")
    with pytest.raises(ValueError, match="unknown format"):
        d.render("docx")
    # Jupyter
    assert "<math" in d._repr_html_() and "<html" not in d._repr_html_()
    assert "$$\\begin{aligned}" in d._repr_latex_() and "0.082167" in d._repr_latex_()
    assert "0.082167" in d._repr_markdown_()


def test_model_loss_and_node_targets(mazur):
    W2 = mazur.find("W2")
    a = derive(mazur.loss, (W2, (0, 0)), values=mazur.example, model=mazur)
    b = derive(mazur, "w5", values=True)
    assert a.to_text().split("\n", 2)[2] == b.to_text().split("\n", 2)[2]


def test_views_registry_is_open():
    assert {"scalar", "matrix"} <= set(VIEWS)

    @register_view("count-paths")
    def count_paths(req):
        t = req.targets[0]
        n = len(req.record.chains(t.node, t.index))
        return [f"{n} paths"]

    try:
        d = derive(get_model("mazur"), "w1", view="count-paths")
        assert "2 paths" in d.to_text()
    finally:
        VIEWS.pop("count-paths")


def test_errors(mazur):
    with pytest.raises(UnknownNameError) as e:
        derive(mazur, "w9")
    assert "W1 (2, 2): w1, w3, w2, w4" in str(e.value) and "W2" in str(e.value)
    with pytest.raises(FeedError, match=r"'target'"):
        derive(mazur, "w5", values={"i": np.array([[0.05, 0.1]])})
    with pytest.raises(FeedError, match="no example feeds.*'x'.*'t'"):
        derive(get_model("digits-mlp").loss, "W2", values=True)   # a loss node: no model, no data
    with pytest.raises(ValueError, match="unknown view 'nope'.*scalar"):
        derive(mazur, "w5", view="nope")
    with pytest.raises(TypeError):
        derive("E", "w5")


def test_scalar_view_refuses_big_nets_and_unwritable_graphs():
    from graphnn.derive import DerivationError
    with pytest.raises(DerivationError, match="view='matrix'"):
        derive(get_model("digits-mlp"), "W1")
    m = derive(get_model("digits-mlp"), "W1", view="matrix")  # the matrix view is fine
    assert r"\delta^{(1)}" in m.to_latex()

    @register_view("needs-formula")
    def needs_formula(req):
        raise NotImplementedError("op 'x' has no element formula")

    try:
        with pytest.raises(DerivationError, match="needs-formula view cannot be written.*no element formula"):
            derive(get_model("mazur"), "w1", view="needs-formula")
    finally:
        VIEWS.pop("needs-formula")


def test_matrix_view_of_a_real_sized_net_abbreviates_matrices():
    model = get_model("digits-mlp")
    feeds = {"x": model.data.train["x"][:1], "t": model.data.train["t"][:1]}
    d = derive(model, ["W2", "W1"], values=feeds, view="matrix")
    text = d.to_text()
    assert "⋱" in text and "(128 × 1)(1 × 10)" in text and "p - t" in text
    assert r"\ddots" in d.to_latex()
    assert check_every_number(d, model, feeds) >= 3  # full arrays are checked, not the summary


def test_unnamed_nodes_and_max_pool_read_well_in_text():
    """Unnamed nodes get course names (x ⊙ w is net⁽¹⁾, the unit's output out⁽¹⁾; never
    'map#3882' or 'sigmoid'), elements 1-based; a path does not collapse into one factor
    ∂E/∂w; max-pool's one-winner partial prints as '{1 if …; 0 otherwise}', not raw LaTeX."""
    x = gn.input("x", (1, 1, 2, 2))
    w = gn.parameter("w", 2.0)
    E = gn.sum(gn.max_pool2d(gn.sigmoid(x * w), 2), name="E")
    feeds = {"x": np.array([[[[0.1, 0.5], [0.3, 0.2]]]])}
    text = gn.derive(E, wrt=[w], values=feeds).to_text()
    assert "#" not in text and "begin" not in text and "cases" not in text and "sigmoid" not in text
    assert "Path 2 of 4 (through out⁽¹⁾_(1,1,1,2), net⁽¹⁾_(1,1,1,2)):\n" in text
    assert "∂E/∂w = ∂E/∂w" not in text
    assert ("{1 if out⁽¹⁾_(1,1,1,2) ≥ out⁽¹⁾_(1,1,2,1) ∧ out⁽¹⁾_(1,1,1,2) ≥ out⁽¹⁾_(1,1,2,2) ∧ "
            "out⁽¹⁾_(1,1,1,1) < out⁽¹⁾_(1,1,1,2); 0 otherwise}") in text
    total = float(text.rsplit("= ", 1)[1])
    autodiff = float(gn.evaluate(gn.grad(E, [w])[w], feeds))
    assert total == pytest.approx(autodiff, rel=1e-5)
