"""Tests for graphnn.derive.documents: LaTeX/PDF, offline HTML in a real browser, text.

pdflatex and chromium are external programs (scripts/install_system_deps.sh installs
them). Without them a test is skipped locally but FAILS when the CI variable is set,
so a CI image that lost a package cannot pass silently.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import require_program

from graphnn.derive.documents import (
    Document, LatexError, MathBlock, MissingToolError, Prose, RichMixin, compile_pdf,
    to_html, to_latex_align, to_latex_document, to_markdown, to_text)

CHAIN = [
    r"\frac{\partial E_{total}}{\partial w_{5}} &= "
    r"\frac{\partial E_{total}}{\partial out_{o1}} \cdot "
    r"\frac{\partial out_{o1}}{\partial net_{o1}} \cdot \frac{\partial net_{o1}}{\partial w_{5}}",
    r"&= 0.741365 \cdot 0.186816 \cdot 0.593270 = 0.082167",
]
DELTA = [
    r"\delta^{(l)} &= \left( W^{(l+1)\top} \delta^{(l+1)} \right)"
    r" \odot \sigma'\left(z^{(l)}\right)",
    r"w_{5}^{+} &= w_{5} - \eta \cdot \frac{\partial E_{total}}{\partial w_{5}} = 0.358916",
]
BPTT = [
    r"\frac{\partial^{+} E}{\partial W_{hh}} &= "
    r"\sum_{k=1}^{T} \frac{\partial^{+} E}{\partial h_{k}} \cdot "
    r"\frac{\partial h_{k}}{\partial W_{hh}}",
    r"\operatorname{softmax}(z)_{i} &= \frac{\exp(z_i)}{\sum_{j} \exp(z_j)}",
]


@pytest.fixture(scope="module")
def doc() -> Document:
    return Document("Backprop for w_5 & friends: 100% by hand", [
        Prose(r"Chain rule for $w_{5}$ (costs 50% & uses #tags, under_scores, ~, ^, {}, "
              r"a back\slash, <angle> brackets and \$5); δ is the error signal."),
        MathBlock(CHAIN),
        Prose(r"Delta rule with learning rate $\eta = 0.5$:"),
        MathBlock(DELTA),
        Prose("Backprop through time sums over the steps:"),
        MathBlock(BPTT),
    ])




# ----------------------------------------------------------------------------- LaTeX
def test_latex_align_block():
    src = to_latex_align(MathBlock(CHAIN + ["", r"x &= 1 \\"]))
    assert src.startswith("\\begin{align*}\n") and src.endswith("\n\\end{align*}")
    body = src.splitlines()[1:-1]
    assert len(body) == 3  # blank row dropped: it would be a LaTeX error
    assert body[0].rstrip().endswith("\\\\") and body[1].rstrip().endswith("\\\\")
    assert body[2].strip() == "x &= 1"  # the user's trailing \\ is not doubled


def test_latex_document_escapes_prose_not_math(doc):
    src = to_latex_document(doc)
    assert "\\usepackage[utf8]{inputenc}" in src and "amsmath" in src and "amssymb" in src
    assert r"\title{Backprop for w\_5 \& friends: 100\% by hand}" in src
    for piece in [r"50\%", r"\&", r"\#tags", r"under\_scores", r"\textasciitilde{}",
                  r"\textasciicircum{}", r"\{\}", r"back\textbackslash{}slash",
                  r"\textless{}angle\textgreater{}", r"\$5", r"\ensuremath{\delta}"]:
        assert piece in src, piece
    assert "$w_{5}$" in src and r"$\eta = 0.5$" in src  # math passes through untouched
    assert src.count("\\begin{align*}") == 3


def test_latex_compiles_to_pdf(doc, tmp_path):
    require_program("pdflatex")
    pdf = compile_pdf(to_latex_document(doc), tmp_path / "out" / "derivation.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "0.082167" in text and "0.358916" in text


def test_latex_error_is_reported(tmp_path):
    require_program("pdflatex")
    with pytest.raises(LatexError, match="Undefined control sequence"):
        compile_pdf("\\documentclass{article}\\begin{document}\\nosuchmacro\\end{document}",
                    tmp_path / "bad.pdf")


def test_missing_pdflatex_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError, match="apt-get install texlive-latex-base"):
        compile_pdf("x", tmp_path / "x.pdf")
    assert issubclass(MissingToolError, RuntimeError)


# ------------------------------------------------------------------------------ HTML
def test_html_is_offline_and_has_mathml(doc):
    page = to_html(doc)
    low = page.lower()
    assert "http://" not in low and "https://" not in low and "<script" not in low
    assert "<math" in page and page.count("<mtable") == 3
    assert "@font-face" in page and "data:font/otf;base64," in page
    assert 'columnalign="right"' in page and 'columnalign="left"' in page
    for number in ["0.741365", "0.186816", "0.593270", "0.082167", "0.358916"]:
        assert number in page
    assert "under_scores" in page and "&lt;angle&gt;" in page and "$5" in page


def test_html_escapes_markup_inside_math():
    page = to_html(Document("<t>", [Prose(r"$\text{<script>x</script>}$ & <b>"),
                                    MathBlock([r"\text{<img src=x>} &= 1 \& 2"])]),
                   embed_font=False)
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "&lt;img" in page  # shown as text


def test_html_without_latex2mathml_says_how_to_install(doc, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "latex2mathml", None)
    monkeypatch.setitem(sys.modules, "latex2mathml.converter", None)
    with pytest.raises(MissingToolError, match="pip install latex2mathml"):
        to_html(doc)


def test_html_fragment_for_notebooks(doc):
    frag = to_html(doc, full_page=False, embed_font=False)
    assert "<html" not in frag and "<math" in frag and "base64" not in frag


_PROBE = """<script>
document.fonts.ready.then(() => {
  const r = {font: [...document.fonts].some(
    f => f.family.replace(/"/g, '') === 'graphnn-math' && f.status === 'loaded')};
  const line = parseFloat(getComputedStyle(document.querySelector('p')).lineHeight);
  r.fracHeight = document.querySelector('mfrac').getBoundingClientRect().height / line;
  r.eqX = []; r.rightGap = [];
  for (const table of document.querySelectorAll('mtable')) {
    const rows = [...table.querySelectorAll('mtr')];
    // x of the relation opening each left cell: rows must line up at the &
    const xs = rows.map(
      tr => tr.querySelector('mtd[columnalign=left] mo').getBoundingClientRect().left);
    r.eqX.push(Math.max(...xs) - Math.min(...xs));
    // right cells (non-empty): content flush with the cell's right edge
    for (const td of table.querySelectorAll('mtd[columnalign=right]')) {
      const box = td.firstElementChild.getBoundingClientRect();
      if (box.width > 0) r.rightGap.push(td.getBoundingClientRect().right - box.right);
    }
  }
  document.body.innerHTML = '<pre id="probe">' + JSON.stringify(r) + '</pre>';
});
</script>"""


def _chromium(browser: str, html_file: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tempfile.mkdtemp(dir=html_file.parent)}",
         "--window-size=1100,900", *extra, html_file.as_uri()],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _ink_rows(png: Path) -> int:
    """Pixel rows holding any clearly dark pixel: tall stacked math adds many."""
    import numpy as np
    from PIL import Image
    return int((np.asarray(Image.open(png).convert("L")) < 200).any(axis=1).sum())


def test_html_renders_math_in_chromium(doc, tmp_path):
    browser = require_program("chromium", "chromium-browser", "google-chrome")
    page = to_html(doc)
    without_math = re.sub(r"<math.*?</math>", "", page, flags=re.S)
    files = {}
    for name, text in [("real", page), ("nomath", without_math),
                       ("probe", page.replace("</body>", _PROBE + "</body>"))]:
        files[name] = tmp_path / f"{name}.html"
        files[name].write_text(text, encoding="utf-8")
    # Three browsers at once: the suite stays fast.
    procs = {n: _chromium(browser, files[n], f"--screenshot={tmp_path / n}.png")
             for n in ("real", "nomath")}
    procs["probe"] = _chromium(browser, files["probe"], "--virtual-time-budget=5000",
                               "--dump-dom")
    outs = {n: p.communicate(timeout=60)[0] for n, p in procs.items()}

    real, bare = _ink_rows(tmp_path / "real.png"), _ink_rows(tmp_path / "nomath.png")
    assert real > 2.5 * bare, (real, bare)  # the math itself was laid out (363 vs 89 here)

    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>',
                                               outs["probe"], re.S).group(1)))
    assert probe["font"], "embedded math font did not load"
    assert probe["fracHeight"] > 1.3, probe  # numerator stacked over denominator
    assert all(spread < 0.5 for spread in probe["eqX"]), probe  # '=' signs line up
    assert len(probe["rightGap"]) == 5, probe
    assert all(abs(gap) < 0.5 for gap in probe["rightGap"]), probe  # flush right


# ----------------------------------------------------------------- Markdown and text
def test_markdown(doc):
    md = to_markdown(doc)
    assert md.startswith(r"# Backprop for w\_5")   # the title is prose: escaped like any
    assert md.count("$$\n\\begin{aligned}") == 3 and "align*" not in md
    assert CHAIN[0] + " \\\\\n" + CHAIN[1] in md
    assert "$w_{5}$" in md and r"under\_scores" in md and "$5" in md


def test_text(doc):
    text = to_text(doc)
    for piece in ["∂E_total/∂w_5 = ∂E_total/∂out_o1 · ∂out_o1/∂net_o1 · ∂net_o1/∂w_5",
                  "= 0.741365 · 0.186816 · 0.593270 = 0.082167", "⊙", "W^(l+1)ᵀ",
                  "σ'", "η", "δ^(l) =", "Σ_(k=1)^T", "∂⁺E/∂W_hh", "softmax(z)_i",
                  "exp(z_i)/(Σ_j exp(z_j))", "δ is the error"]:
        assert piece in text, piece
    chain = [ln for ln in text.splitlines() if "0.082167" in ln or "∂net_o1/∂w_5" in ln]
    assert chain[0].index("=") == chain[1].index("=")  # aligned at &
    assert "\\" not in text.split("\n", 3)[3].replace("back\\slash", "")


def test_bare_string_block_and_escaped_dollar():
    doc = Document("t", [Prose(r"costs \$3, not $x$"), MathBlock(r" a &= b \\ \\ ")])
    assert to_latex_align(doc.blocks[1]) == "\\begin{align*}\n  a &= b\n\\end{align*}"
    assert r"costs \$3, not $x$" in to_latex_document(doc)
    assert "costs $3, not <math" in to_html(doc, embed_font=False)
    assert "costs $3, not x" in to_text(doc)


def test_sympy_lines():
    sympy = pytest.importorskip("sympy")
    x, y = sympy.symbols("x y")
    block = MathBlock([sympy.Eq(x, y**2), sympy.sqrt(x)])
    assert to_latex_align(block).splitlines()[1:3] == ["  x &= y^{2} \\\\", "  \\sqrt{x}"]


def test_rich_mixin(doc):
    class Derivation(RichMixin):
        def to_document(self):
            return doc

    d = Derivation()
    assert "<math" in d._repr_html_() and "<html" not in d._repr_html_()
    assert d._repr_markdown_() == to_markdown(doc)
    latex = d._repr_latex_()
    assert "$$\\begin{aligned}" in latex and "0.082167" in latex
