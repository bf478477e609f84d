"""graphnn.notation: one typesetting function for every name (LaTeX that always compiles),
numbers with N significant digits (exact ones exactly, × 10ⁿ outside 1e-4 … 1e6)."""
from __future__ import annotations

import pytest
from conftest import require_program
from hypothesis import given, settings, strategies as st

from graphnn.derive.documents import Document, MathBlock, compile_pdf, to_latex_document
from graphnn.notation import html_name, latex_name, number_html, number_latex, number_text, parse, significant

#: the names the built-in models and the autodiff make, and a few a user might
NAMES = ["w5", "out_h1", "E_total", "x̂", "x̂1", "net_x̂", "net_x̂1", "b'", "b1'", "Wᵀ", "W1ᵀ", "attn.W_Q",
         "attn.head.Kᵀ", "attn.head.scores", "lstm.init0(t-1)", "h(t-1)", "dh_t", "s_T", "BPTT(lstm)", "x̃",
         "y_hat", "w_12", "v'_1", "W1[0,1]", "sigmoid[0,0,0,1]", "δ⁽¹⁾", "net⁽²⁾[0,1]", "delta_{o1}",
         "E_total_elements", "W_embed", "p_z2", "E_total'2", "a&b%c#d$e{f}g~h^i\\j", "☃snow", "m_W_o",
         "u⁽¹⁾", "1", "½(t−y)²", "net_g,t"]


@pytest.mark.parametrize("name, tex", [
    ("w5", "w_{5}"), ("out_h1", r"\mathrm{out}_{h1}"), ("E_total", r"E_{\mathrm{total}}"),
    ("x̂", r"\hat{x}"), ("net_x̂", r"\mathrm{net}_{\hat{x}}"), ("net_x̂1", r"\mathrm{net}_{\hat{x}1}"),
    ("Wᵀ", r"W^{\top}"), ("δ⁽¹⁾", r"\delta^{(1)}"), ("v'_1", "v'_{1}"), ("b'", "b'"),
    ("W1[0,1]", r"\left(W_{1}\right)_{1,2}"),                 # 1-based, as the course writes w_ij
    ("net⁽²⁾[0,1]", r"\mathrm{net}^{(2)}_{1,2}"), ("attn.W_Q", r"\mathrm{attn}.W_{Q}"),
    ("h(t-1)", "h_{t-1}"), ("y_hat", r"\hat{y}"),
])
def test_latex_name_typesets_every_part(name, tex):
    assert latex_name(name) == tex


def test_the_hat_stays_a_hat():
    """x̂ (U+0302) is an accent, not a character LaTeX drops: −(x − x̂), never −(x − x)."""
    assert parse("x̂").accent == "hat" and parse("x̂").base == "x"
    assert r"\hat{x}" in latex_name("x̂") and "\u0302" not in latex_name("net_x̂")


def test_every_name_compiles(tmp_path):
    """One document with every name in math: pdflatex -halt-on-error accepts all of them."""
    require_program("pdflatex")
    rows = [f"{latex_name(n)} &= 1" for n in NAMES]
    pdf = compile_pdf(to_latex_document(Document("names", [MathBlock(rows)])), tmp_path / "names.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"


@given(st.text(min_size=1, max_size=12))
@settings(max_examples=100, deadline=None)
def test_any_name_gives_balanced_ascii_latex(name):
    tex = latex_name(name)
    assert tex.isascii()                       # nothing pdflatex's utf8 input can choke on
    depth = 0
    for k, ch in enumerate(tex):
        if ch in "{}" and (k == 0 or tex[k - 1] != "\\"):
            depth += 1 if ch == "{" else -1
            assert depth >= 0
    assert depth == 0


@pytest.mark.parametrize("value, digits, text", [
    (0.4, 6, "0.4"), (0.5, 6, "0.5"), (0.3775, 6, "0.3775"), (2.0, 6, "2"),       # exact: exactly
    (0.593269992107, 6, "0.593270"),            # computed: N significant digits, zeros kept
    (0.00877135468949, 6, "0.00877135"), (-0.00172048329, 6, "-0.00172048"),
    (0.0821670405642, 3, "0.0822"), (0.000438567734474, 6, "0.000438568"),
    (1.01134e-5, 6, "1.01134e-05"), (123456789.0, 6, "1.23457e+08"),
])
def test_significant_digits(value, digits, text):
    assert significant(value, digits) == text


def test_small_and_large_numbers_read_as_times_ten_to_the():
    assert number_latex(1.01134e-5) == r"1.01134 \times 10^{-5}"
    assert number_text(1.01134e-5) == "1.01134 × 10⁻⁵"
    assert number_html(-6.75142e-6) == "−6.75142×10<SUP>−6</SUP>"
    assert number_latex(0.4) == "0.4" and number_latex(float("inf")) == r"\infty"


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).filter(lambda v: v != 0),
       st.integers(min_value=1, max_value=9))
@settings(max_examples=150, deadline=None)
def test_significant_reads_back_within_its_digits(value, digits):
    back = float(significant(value, digits))
    assert back == pytest.approx(value, rel=0.51 * 10 ** (1 - digits))


def test_a_negated_name_keeps_its_accent_on_its_letter():
    """'−D̄(G(z))' was \\bar{- D}(…): the bar over the minus sign."""
    assert latex_name("−D̄(G(z))") == r"- \bar{D}\left(G\left(z\right)\right)"
    assert latex_name("-x̂") == r"- \hat{x}" and html_name("−x̂") == "−x\u0302"
    assert latex_name("x-1") == "x-1" and latex_name("−") == "-"
