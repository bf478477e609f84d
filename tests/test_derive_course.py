"""The course's forms and numbers: Mazur's sum at the shared node, the forward pass, the loss
after the update, significant digits, ∂ throughout, the batch mean, --values/--feed, slides,
notebooks. Reference numbers are read from /work/shared/reference, never copied here."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_program

import graphnn as gn
from graphnn.cli import main
from graphnn.derive import DerivationError, derive
from graphnn.derive.documents import set_notebook_font
from graphnn.models import get_model
from graphnn.notation import number_text

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "mazur_2_2_2.json"


@pytest.fixture(scope="module")
def ref():
    path = REFERENCE if REFERENCE.exists() else Path("/work/shared/reference/mazur_2_2_2.json")
    return json.loads(path.read_text())


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mazur_sums_at_the_shared_node(capsys, ref):
    """∂E_total/∂out_h1 = ∂E_o1/∂out_h1 + ∂E_o2/∂out_h1 = 0.0553994 + (−0.0190491) = 0.0363503."""
    code, out, _ = run(capsys, "derive", "mazur", "--wrt", "w1", "--values")
    f, w = ref["chain_rule_factors"], ref["initial_weights"]
    piece_o1 = f["delta_o1"] * w["w5"]                 # ∂E_o1/∂out_h1 = δ_o1 · w5
    piece_o2 = f["delta_o2"] * w["w7"]
    assert "∂E_total/∂out_h1 = ∂E_o1/∂out_h1 + ∂E_o2/∂out_h1" in out
    assert f"∂E_o1/∂out_h1 = ∂E_o1/∂out_o1 · ∂out_o1/∂net_o1 · ∂net_o1/∂out_h1" in out
    assert f"= {number_text(piece_o1)}\n" in out and f"= {number_text(piece_o2)}\n" in out
    shared = f"∂E_total/∂out_h1 = {number_text(piece_o1)} + ({number_text(piece_o2)})"
    assert shared in out and f"= {number_text(f['dE_dout_h1'])}\n" in out
    assert f"∂E_total/∂w_1 = {number_text(f['dE_dout_h1'])} · {number_text(f['dout_h1_dnet_h1'])} · 0.05" in out
    model = get_model("mazur")
    step = next(s for s in derive(model, "w1", values=True).steps if s.kind == "shared")
    adjoint = gn.grad(model.loss, [model.find("W1")]).record.adjoints[model.find("out_h")].total
    assert step.value == pytest.approx(float(gn.evaluate(adjoint, model.example)[0, 0]), rel=1e-12)
    assert step.value == pytest.approx(f["dE_dout_h1"], rel=1e-9)


def test_forward_pass_with_numbers(capsys, ref):
    code, out, _ = run(capsys, "derive", "mazur", "--view", "forward", "--values")
    assert code == 0 and out.startswith("Forward pass: from the inputs to E_total")
    assert "net_h1 = w_1 · i_1 + w_2 · i_2 + b_1\n" in out and "= 0.15 · 0.05 + 0.2 · 0.1 + 0.35\n" in out
    for name, value in ref["forward"].items():
        assert re.search(rf"{name} = .*?\n(\s+= [^\n]*\n)*?\s+= {re.escape(number_text(value))}\n", out), name
    assert f"= {number_text(ref['E_total'])}\n" in out


def test_update_shows_the_loss_after_the_step(capsys, ref):
    code, out, _ = run(capsys, "derive", "mazur", "--wrt", "w5", "--values", "--update")
    assert f"E_total⁺ = {number_text(ref['E_total_after_one_step'])}" in out
    assert number_text(ref["E_total_after_one_step"]) == "0.291028"
    assert "w_5⁺ = w_5 - η · ∂E_total/∂w_5\n" in out and "(η = 0.5)" in out   # η exactly, ∂ not d


def test_precision_and_exact_inputs(capsys, ref):
    code, out, _ = run(capsys, "derive", "mazur", "--wrt", "w1", "--values", "--precision", "3")
    assert "= 0.741 · 0.187 · 0.4 · 0.241 · 0.05\n" in out      # inputs exactly, the rest 3 digits
    assert "= 0.000439\n" in out and "0.000438568" not in out
    code, out, _ = run(capsys, "derive", "mazur", "--wrt", "w1", "--values", "--precision", "9")
    assert f"= {number_text(ref['gradients']['dE_dw1'], 9)}\n" in out and "0.000438567734\n" in out
    # six digits by default: δ_h1 = 0.00877135 (not 0.008771 beside 0.000668396)
    code, out, _ = run(capsys, "derive", "mazur", "--wrt", "w1", "--values")
    for number in re.findall(r"(?<![\w.])-?\d+\.\d+(?![\d.])", out):
        digits = number.lstrip("-").lstrip("0.").replace(".", "")
        assert len(digits) == 6 or float(number) in (0.4, 0.5, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.45,
                                                     0.55, 0.6, 0.01, 0.99), number
    assert run(capsys, "derive", "mazur", "--wrt", "w1", "--precision", "0")[0] == 2


def test_small_numbers_as_powers_of_ten_in_every_format(capsys):
    d = derive(get_model("lstm", steps=3), "W_f", values=True, view="time")
    assert "1.01134 × 10⁻⁵" in d.to_text() and "e-05" not in d.to_text()
    assert r"1.01134 \times 10^{-5}" in d.to_latex() and r"1.01134 \times 10^{-5}" in d.to_markdown()
    assert "e − 05" not in d.to_text() and "e-05" not in d.to_html()


def test_bptt_term_with_its_digits(capsys):
    code, out, _ = run(capsys, "derive", "rnn-scalar", "--wrt", "u", "--values", "--steps", "4", "--view", "time")
    model = get_model("rnn-scalar")
    from graphnn.bptt import bptt_terms
    terms = bptt_terms(model.loss, model.find("u"), model.example, index=())
    explicit = terms.element(terms.terms[-1].value)
    assert number_text(explicit) == "-0.00172048" and f"= {number_text(explicit)}\n" in out


def test_batch_mean_is_a_mean_and_indices_are_one_based():
    d = derive(get_model("linear-regression"), "w", values=True, view="matrix")
    latex = d.to_latex()
    assert r"\frac{1}{n}" in latex and r"\frac{1}{n} \odot" not in latex and "1/n ⊙" not in d.to_text()
    x = gn.input("x", (None, 2))
    W = gn.parameter("W", [[0.1, 0.2], [0.3, 0.4]])
    E = gn.sum(gn.sigmoid(gn.matmul(x, W)), name="E")
    text = derive(E, (W, (0, 1)), values={"x": np.array([[1.0, 2.0]])}).to_text()
    assert "∂E/∂W_(1,2) = " in text and "[0,1]" not in text


def test_values_for_a_model_without_a_worked_example(capsys):
    code, out, _ = run(capsys, "derive", "digits-mlp", "--wrt", "W2", "--values", "--view", "matrix")
    assert code == 0 and "Numbers: the first training example of the model's data" in out


def test_feed_values_by_element_name_input_name_or_json(capsys, tmp_path):
    code, out, _ = run(capsys, "derive", "mazur", "--wrt", "w5", "--feed", "i1=0.1,i2=0.2")
    assert code == 0
    feeds = {"i": np.array([[0.1, 0.2]]), "target": get_model("mazur").example["target"]}
    expected = derive(get_model("mazur"), "w5", values=feeds).to_text()
    assert out == expected
    code, out2, _ = run(capsys, "derive", "mazur", "--wrt", "w5", "--feed", "i=0.1,0.2")
    assert out2 == expected
    (tmp_path / "feeds.json").write_text(json.dumps({"i": [[0.1, 0.2]], "target": [[0.01, 0.99]]}))
    code, out3, _ = run(capsys, "derive", "mazur", "--wrt", "w5", "--feed", str(tmp_path / "feeds.json"))
    assert out3 == expected
    code, _, err = run(capsys, "derive", "mazur", "--wrt", "w5", "--feed", "q7=1")
    assert code == 2 and "'q7' names no input" in err and "i1" in err
    code, _, err = run(capsys, "derive", "mazur", "--wrt", "w5", "--feed", "i=1,2,3")
    assert code == 2 and "3 value(s)" in err


def test_perceptrons_derive_the_perceptron_rule(capsys):
    code, out, _ = run(capsys, "derive", "perceptron-or", "--wrt", "w", "--values", "--lr", "0.5")
    assert code == 0 and "perceptron rule" in out and "derivative is 0" in out
    assert "= 0.5 · 1 + 0.5 · 1 + (-0.3)\n" in out and "= 0.7\n" in out


def test_scalar_view_counts_paths_and_refuses_at_once():
    """A 4-layer sigmoid net 6 wide: 216 paths to one first-layer weight. The scalar view
    says so (before enumerating any path) and points to the matrix view."""
    rng = np.random.default_rng(0)
    h = x = gn.input("x", (None, 6))
    for k in range(4):
        h = gn.sigmoid(gn.linear(h, gn.parameter(f"W{k + 1}", rng.normal(size=(6, 6))),
                                 gn.parameter(f"b{k + 1}", np.zeros(6))))
    E = gn.losses.quadratic(h, gn.input("t", (None, 6)), name="E")
    W1 = gn.Graph(E).find("W1")
    with pytest.raises(DerivationError, match=r"216 paths.*--view matrix"):
        derive(E, [(W1, (0, 0))])
    with pytest.raises(DerivationError, match=r"36 elements with up to 216 paths each \(up to 7776 terms"):
        derive(E, "W1")
    assert derive(E, "W1", view="matrix").steps                         # the matrix view writes it


def test_beamer_deck_with_pauses_compiles_without_overflow(tmp_path, capsys):
    """--format beamer --pause: 16:9 frames, sans-serif-safe math, the steps of a frame one at
    a time, nothing overflowing (every model's slides compile in test_derive_models)."""
    pdflatex = require_program("pdflatex")
    source = derive(get_model("mazur"), "w1", values=True, update=True).to_beamer(pause=True)
    assert r"\documentclass[aspectratio=169" in source and r"\uncover<2->" in source
    assert r"\renewcommand{\mathrm}{\mathsf}" in source            # no serif words in sans math
    (tmp_path / "deck.tex").write_text(source)
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "deck.tex"], cwd=tmp_path,
                          capture_output=True, timeout=600)
    log = (tmp_path / "deck.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    assert not [a for a in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt", log) if float(a) > 1.0]
    code, _, err = run(capsys, "derive", "mazur", "--wrt", "w5", "--values", "--format", "beamer",
                       "-o", str(tmp_path / "w5.pdf"))
    assert code == 0 and (tmp_path / "w5.pdf").read_bytes()[:5] == b"%PDF-"


def test_notebook_carries_the_font_once_and_reprs_read_well():
    set_notebook_font("once")
    try:
        d = derive(get_model("mazur"), "w5", values=True)
        pages = [d._repr_html_() for _ in range(3)]
        assert ["@font-face" in p for p in pages] == [True, False, False]
        assert all("graphnn-math" in p for p in pages)          # the later ones use the same family
        set_notebook_font("system")
        assert "@font-face" not in d._repr_html_()
        set_notebook_font("always")
        assert "@font-face" in d._repr_html_() and "@font-face" in d._repr_html_()
    finally:
        set_notebook_font("once")
    model = get_model("mazur")
    result = gn.check_grad(model.loss, model.params, model.example)
    text = repr(result)
    assert text.startswith("<gradient check passed") and "W1" in text and "np.float64" not in text
    assert "<table>" in result._repr_html_()
    assert repr(d.steps[0]).startswith("<Step chain: ∂E_total/∂w_5 = ∂E_total/∂out_o1")
