"""Every built-in model derives: every view that applies, with values, in every format.

One derivation per model × view (built once for the module): each number the
derivations claim equals the autodiff's or the reference evaluator's; no output in any
format carries an internal name (vjp_…, θ(…), map, @, ᵀᵀ, an op identifier); all of them
together compile with pdflatex -halt-on-error as one article and as one Beamer deck,
with no overfull box (no line off the page, no frame overflowing its 16:9 slide).
"""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from conftest import require_program

import graphnn as gn
from graphnn.derive import VIEWS, Derivation, DerivationError, derive
from graphnn.derive.core import first_example
from graphnn.derive.resolve import training_step
from graphnn.models import available, get_model
from graphnn.ops import registered_ops

#: op names that are also words of the course's notation (softmax, sum, max, …)
WORDS = {"softmax", "sum", "max", "count", "index", "concat", "transpose", "linear", "loop", "dropout",
         "input", "parameter", "constant"}
INTERNAL = re.compile(r"vjp|θ\(|\\theta|@|ᵀᵀ|\^\{\\top\}\^\{\\top\}|\w#\d|"
                      + "|".join(r"\b%s\b" % re.escape(op) for op in sorted(registered_ops()) if op not in WORDS))
#: overfull boxes up to this much are rounding, not a line off the page
OVERFULL_PT = 1.0


def _views(name, model):
    params = [p.name for p in model.parameters]
    yield "matrix", params
    yield "forward", None
    if (model.extras or {}).get("scan") is not None:
        yield "time", params[:1]
    yield "scalar", params


@pytest.fixture(scope="module")
def derivations():
    """[(model name, view, model, Derivation)] — a scalar view too big to write is refused,
    and then one element of the last parameter (the fewest paths) is derived instead."""
    out = []
    for name in available():
        model = get_model(name)
        for view, wrt in _views(name, model):
            update = name == "mazur" and view in ("scalar", "matrix")
            try:
                d = derive(model, wrt, values=True, view=view, update=update)
            except DerivationError as e:
                assert view == "scalar" and "--view matrix" in str(e), (name, view, e)
                p = model.params[-1]
                try:
                    d = derive(model, (p, (0,) * p.ndim), values=True, view=view)
                except DerivationError as e:        # too many paths even for one element
                    assert "--view matrix" in str(e), (name, view, e)
                    continue
            out.append((name, view, model, d))
    return out


def _oracle(model, feeds, gradients):
    """Fresh values: the forward graph, and (if asked) a fresh gradient graph's adjoints."""
    if not gradients:
        _, values = gn.evaluate(model.loss, feeds, return_values=True)
        return {}, {}, values
    grads = gn.grad(model.loss, model.parameters, disconnected="zero")
    totals = {n: a.total for n, a in grads.record.adjoints.items() if a.total is not None}
    _, values = gn.evaluate([model.loss] + list(totals.values()), feeds, return_values=True)
    return grads, totals, values


def test_every_number_is_the_autodiffs_or_the_evaluators(derivations):
    checked = 0
    cache = {}
    for name, view, model, d in derivations:
        # a net with dropout or input noise derives a training step (derive.resolve.training_step)
        feeds, _ = training_step(model.graph, model.example_feeds()[0])
        if getattr(VIEWS.get(view), "one_example", False):     # lectures derive one example at a time
            feeds = first_example(model.graph, feeds)
        gradients = any(c[0][0] in ("gradient", "adjoint") for s in d.steps for c in s.checks)
        key = (name, gradients, getattr(VIEWS.get(view), "one_example", False))
        if key not in cache:
            cache[key] = _oracle(model, feeds, gradients)
        grads, totals, values = cache[key]
        for step in d.steps:
            for claim, value in step.checks:
                kind = claim[0]
                if kind == "gradient":
                    want = values[grads[claim[1]]]
                elif kind == "adjoint":
                    want = values[totals[claim[1]]]
                elif kind == "forward":
                    want = values[claim[1]]
                else:
                    continue
                want = np.asarray(want) if claim[2] is None else np.asarray(want)[claim[2]]
                np.testing.assert_allclose(value, want, rtol=1e-9, atol=1e-12, err_msg=f"{name} {view} {claim}")
                checked += 1
    assert checked > 200


def test_values_for_every_model_say_where_they_come_from(derivations):
    for name, view, model, d in derivations:
        text = d.to_text()
        if model.example:
            assert "first training example" not in text, name
        else:
            assert "Numbers: the first training example of the model's data" in text, name


def test_no_internal_name_in_any_format(derivations):
    for name, view, _, d in derivations:
        for fmt in ("text", "latex", "markdown", "html"):
            out = d.render(fmt)
            if fmt == "html":
                out = re.sub(r"<style>.*?</style>", "", out, flags=re.S)
                # every formula became MathML: no LaTeX source shown as a fallback
                assert not re.search(r"<mtext>[^<]*\\[^<]*</mtext>|\$\\", out), (name, view)
            found = INTERNAL.search(out)
            assert found is None, (name, view, fmt, out[max(0, found.start() - 80):found.end() + 40])
        assert r"\frac{d" not in d.to_latex(), (name, view)     # ∂ throughout, as the course writes


#: math a slide must never show: x = x, a sign against a sign (e^{- - D}), a float's −1.0·x as "- 1 x"
WRONG_MATH = re.compile(r"^\s*(?P<lhs>\S.*?) = (?P=lhs)\s*$|- -|\(- 1 [^\d]|\^\{- 1 \\", re.M)


def test_no_tautology_or_sign_against_sign(derivations):
    """The GAN printed softplus(−D(x)) = softplus(−D(x)) and e^(- 1 - D̄(G(z))) (which reads
    e^{−1−D̄}, wrong); a negated name put its accent on the sign (\\bar{- D})."""
    for name, view, _, d in derivations:
        for fmt in ("text", "latex"):
            found = WRONG_MATH.search(d.render(fmt))
            assert found is None, (name, view, fmt, found.group(0))
        assert r"\bar{-" not in d.to_latex() and r"\tilde{-" not in d.to_latex(), (name, view)


def _compile(tmp_path, stem, source):
    pdflatex = require_program("pdflatex")
    (tmp_path / f"{stem}.tex").write_text(source, encoding="utf-8")
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", f"{stem}.tex"],
                          cwd=tmp_path, capture_output=True, timeout=600)
    log = (tmp_path / f"{stem}.log").read_text(errors="replace")
    assert proc.returncode == 0, "\n".join(ln for ln in log.splitlines() if ln.startswith("!"))[:2000]
    lines = source.splitlines()
    over = []
    for amount, line in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too \w+\)[^\n]*?lines? (\d+)", log):
        if float(amount) > OVERFULL_PT:
            section = next((ln for ln in reversed(lines[:int(line)]) if "section*" in ln or "begin{frame}" in ln), "")
            over.append((amount, section[:120]))
    return over, log


def test_every_model_and_view_compiles_as_an_article_and_as_slides(derivations, tmp_path):
    """One article and one 16:9 Beamer deck holding every derivation above."""
    doc = Derivation.combine("Every built-in model", [_titled(n, v, d) for n, v, _, d in derivations])
    over, _ = _compile(tmp_path, "article", doc.to_latex_document())
    assert not over, over
    over, log = _compile(tmp_path, "slides", doc.to_beamer())
    assert not over, over
    assert "Overfull \\vbox" not in log                     # no frame taller than its slide


def _titled(name, view, d):
    d = Derivation(f"{name}: " + d.title, d.items, d.precision, d.display)
    return d


#: a numeral, a thin space, a numeral: "-1 \, 0.5" reads as −10.5
SIDE_BY_SIDE = re.compile(r"(?<![\w.}])-?\d+(?:\.\d+)? \\, -?\d")


#: a ones-vector 𝟙_n, then (past spacing and a row break) a number or a numeric fraction
ONES_THEN_NUMBER = re.compile(r"\\mathbf\{1\}_\{\d+\}(?:\s|\\[,;! ]|\\\\|&|\\quad)*(?:-\s*)?(?:\d|\\frac\{\d)")
TEXT_ONES_THEN_NUMBER = re.compile(r"𝟙_\d+\s+-?\d")


def test_no_two_numbers_side_by_side(derivations):
    """The GAN's ∂L/∂D̄ read "= −1 0.5 [...]" (−1 · 1/n, n = 2): a factor −1 is a sign.
    A mean's gradient read "𝟙₈ 0.125 [...]" and "𝟙₈ 1/8 ∂CE/∂pooled" (attention), "𝟙₅ 0.2"
    (contrastive): a ones-vector's size beside a number (8 0.125, 8⅛); now 𝟙₈ · 0.125."""
    for name, view, _, d in derivations:
        latex = d.to_latex()
        found = SIDE_BY_SIDE.search(latex) or ONES_THEN_NUMBER.search(latex)
        assert found is None, (name, view, found.group(0))
        found = TEXT_ONES_THEN_NUMBER.search(d.render("text"))
        assert found is None, (name, view, found.group(0))


_SCRIPTS = {"msub": 2, "msup": 2, "msubsup": 3, "munder": 2, "mover": 2, "munderover": 3, "mfrac": 2}


def test_html_math_is_well_formed_mathml(derivations):
    """latex2mathml wrote a matrix with a script (the attention's [⋯]_(1,1,:,:), a ᵀ) as an
    <msub> of four children, which Chromium draws shrunk to script size, and left a matrix's
    brackets loose in the row, stretched to the tallest neighbour. Every script element has
    its base and scripts only; every bracketed matrix is one <mrow>."""
    from xml.etree import ElementTree
    for name, view, _, d in derivations:
        page = d.render("html")
        for math in re.findall(r"<math\b.*?</math>", page, flags=re.S):
            root = ElementTree.fromstring(math)
            for el in root.iter():
                if el.tag in _SCRIPTS:
                    assert len(el) == _SCRIPTS[el.tag], (name, view, el.tag, [k.tag for k in el])
                kids = list(el)
                for k, kid in enumerate(kids):
                    if kid.tag == "mtable" and 0 < k < len(kids) - 1 and kids[k - 1].tag == "mo":
                        assert len(kids) == 3, (name, view, [c.tag for c in kids][:8])


def test_markdown_and_html_rows_are_broken_like_the_article(derivations):
    """lstm's BPTT total (20 terms) was one Markdown row and one HTML row 3,100 px wide, read
    by scrolling sideways; the article broke it. Every format breaks long rows alike."""
    from xml.etree import ElementTree

    from graphnn.derive import layout
    from graphnn.derive.blocks import MathBlock, block_rows
    from graphnn.derive.documents import ARTICLE_EMS
    for name, view, _, d in derivations:
        article = [r for b in d.to_document().blocks if isinstance(b, MathBlock)
                   for r in layout.fit_rows(block_rows(b), ARTICLE_EMS)]
        md = d.render("markdown")
        rows = [r for b in re.findall(r"\\begin\{aligned\}\n(.*?)\n\\end\{aligned\}", md, re.S)
                for r in b.split(" \\\\\n")]
        assert rows == article, (name, view, next((r[:200] for r, a in zip(rows, article) if r != a), None))
        page = d.render("html")
        html_rows = sum(len(ElementTree.fromstring(m)[0]) for m in
                        re.findall(r'<math display="block">.*?</math>', page, flags=re.S))
        assert html_rows == len(article), (name, view, html_rows, len(article))
