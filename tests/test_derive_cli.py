"""`graphnn derive` as a user runs it: every format, the .tex compiles, the HTML renders
offline in headless Chromium, errors name what is wrong, the lecture example works.

pdflatex and chromium come from scripts/install_system_deps.sh: without them a test is
skipped locally but FAILS when the CI variable is set.
"""
from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_program

import graphnn as gn
from graphnn.cli import main
from graphnn.derive.printing import number
from graphnn.models import get_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ref():
    for path in (ROOT.parent / "shared" / "reference" / "mazur_2_2_2.json",
                 Path("/work/shared/reference/mazur_2_2_2.json")):
        if path.exists():
            return json.loads(path.read_text())
    pytest.skip("reference JSON not found")




def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def autodiff_gradient(model, name):
    """The autodiff value of dE/d(element name), by evaluating the gradient graph."""
    node = next(p for p in model.parameters if p.names and name in p.names[0])
    grads = gn.grad(model.loss, [node])
    value = gn.evaluate(grads[node], model.example)
    flat = node.names[0].index(name)
    return float(np.ravel(value)[flat])


# -- the commands the issue names ----------------------------------------------------------------


def test_cli_entry_point_w5(ref):
    """The installed `graphnn` command (a real subprocess, as a user runs it)."""
    exe = shutil.which("graphnn")
    cmd = [exe] if exe else [sys.executable, "-m", "graphnn"]
    out = subprocess.run(cmd + ["derive", "mazur", "--wrt", "w5", "--values"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert "∂E_total/∂w_5 = ∂E_total/∂out_o1 · ∂out_o1/∂net_o1 · ∂net_o1/∂w_5" in out
    assert "= -(target_o1 - out_o1) · out_o1 (1 - out_o1) · out_h1" in out
    f = ref["chain_rule_factors"]
    assert ("= " + " · ".join(number(f[k]) for k in ("dE_dout_o1", "dout_o1_dnet_o1", "dnet_o1_dw5"))
            + "\n") in out
    assert f"= {number(ref['gradients']['dE_dw5'])}\n" in out


def test_cli_w1_two_paths(capsys, ref):
    code, out, _ = run_cli(capsys, "derive", "mazur", "--wrt", "w1", "--values")
    assert code == 0
    model = get_model("mazur")
    value = autodiff_gradient(model, "w1")
    assert np.isclose(value, ref["gradients"]["dE_dw1"], rtol=1e-9)
    assert out.count(f"= {number(value)}\n") == 3  # the sum of the paths, Mazur's form, the delta form
    assert "Path 1 of 2" in out and "Path 2 of 2" in out and "term_1 + term_2" in out
    terms = [float(m) for m in re.findall(r"term_\d = [^\n]*\n(?:[^\n]*\n){2}\s+= (-?[\d.]+)", out)]
    assert len(terms) == 2 and np.isclose(sum(terms), value, atol=2e-9)


NUMBERS_W5 = ["0.741365", "0.186816", "0.593270", "0.0821670"]


@pytest.mark.parametrize("fmt", ["text", "latex", "markdown", "html"])
@pytest.mark.parametrize("wrt", ["w5", "w1"])
def test_every_format_carries_the_numbers(capsys, fmt, wrt, ref):
    code, out, _ = run_cli(capsys, "derive", "mazur", "--wrt", wrt, "--values", "--format", fmt)
    assert code == 0
    grad = number(ref["gradients"][f"dE_d{wrt}"])
    numbers = (NUMBERS_W5 if wrt == "w5" else []) + [grad]
    for n in numbers:
        assert n in out, (fmt, n)
    marker = {"text": "∂E_total/∂out_o1", "latex": r"\begin{align*}",
              "markdown": "$$\n\\begin{aligned}", "html": "<math"}[fmt]
    assert marker in out
    if fmt == "html":
        low = out.lower()
        assert "http://" not in low and "https://" not in low and "<script" not in low


def test_output_files_and_pdf(tmp_path, capsys):
    pdflatex = require_program("pdflatex")
    tex = tmp_path / "w5.tex"
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--values", "--update",
                           "--format", "latex", "-o", str(tex))
    assert code == 0 and "wrote" in err
    src = tex.read_text()
    assert src.startswith(r"\documentclass") and r"\end{document}" in src
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", tex.name],
                          cwd=tmp_path, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode(errors="replace")[-2000:]
    assert (tmp_path / "w5.pdf").read_bytes()[:5] == b"%PDF-"

    pdf = tmp_path / "matrix.pdf"
    code, _, _ = run_cli(capsys, "derive", "mazur", "--wrt", "W1", "--wrt", "W2", "--values",
                         "--view", "matrix", "--format", "pdf", "-o", str(pdf))
    assert code == 0 and pdf.read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
        assert "0.0821670" in text and "0.000438568" in text


def test_matrix_view_and_update_from_cli(capsys, ref):
    code, out, _ = run_cli(capsys, "derive", "mazur", "--wrt", "W2", "--values", "--view", "matrix",
                           "--update", "--lr", "0.5")
    assert code == 0
    assert "∂E_total/∂W_2 = out_hᵀ δ⁽²⁾" in out
    new = ref["updated_weights_after_one_step"]
    assert f"[{number(new['w5'])}, {number(new['w7'])}; {number(new['w6'])}, {number(new['w8'])}]" in out
    code, out, _ = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--values", "--update", "--lr", "0.1")
    assert "= 0.4 - 0.1 · 0.0821670" in out and f"= {number(0.4 - 0.1 * ref['gradients']['dE_dw5'])}" in out


def test_parameter_name_derives_every_element(capsys):
    code, out, _ = run_cli(capsys, "derive", "mazur", "--wrt", "W2")
    assert code == 0
    for w in ("w_5", "w_6", "w_7", "w_8"):
        assert f"∂E_total/∂{w} = " in out
    assert re.search(r"\d\.\d", out) is None  # no --values: symbols only


def test_user_model_file(tmp_path, capsys):
    path = tmp_path / "neuron.py"
    path.write_text("from graphnn.derive.course import single_neuron\n\n"
                    "def build():\n    return single_neuron()\n")
    code, out, _ = run_cli(capsys, "derive", str(path), "--wrt", "w1", "--values")
    assert code == 0 and "= 2 (y - t) · y (1 - y) · x_1" in out


def test_example_model_files(capsys):
    code, out, _ = run_cli(capsys, "derive", str(ROOT / "examples" / "boley_deltann.py"),
                           "--wrt", "W,V", "--values", "--view", "matrix")
    assert code == 0 and "∂E/∂z ⊙ (1 - z²)" in out and "∂E/∂V = x_bᵀ δ⁽¹⁾" in out
    code, out, _ = run_cli(capsys, "derive", str(ROOT / "examples" / "single_neuron.py"), "--wrt", "w3")
    assert code == 0 and "= 2 (y - t) · y (1 - y) · x_3" in out


def test_scalar_view_of_a_big_net_points_to_matrix(capsys):
    code, _, err = run_cli(capsys, "derive", "digits-mlp", "--wrt", "W2")
    assert code == 2 and "--view matrix" in err


# -- errors ------------------------------------------------------------------------------------------


def test_unknown_wrt_lists_parameters(capsys):
    code, out, err = run_cli(capsys, "derive", "mazur", "--wrt", "w9")
    assert code == 2 and out == ""
    assert "'w9' names nothing" in err
    assert "W1 (2, 2): w1, w3, w2, w4" in err and "W2 (2, 2): w5, w7, w6, w8" in err


def test_values_without_example_names_missing_feeds(capsys, tmp_path):
    path = tmp_path / "bare.py"     # a model with neither a worked example nor data
    path.write_text("from graphnn.models import get_model\nfrom graphnn.model import Model\n\n"
                    "def build():\n    m = get_model('digits-mlp')\n"
                    "    return Model('bare', m.loss, m.output, m.inputs)\n")
    code, _, err = run_cli(capsys, "derive", str(path), "--wrt", "W2", "--values", "--view", "matrix")
    assert code == 2 and "no example feeds" in err and "'x' (B, 64)" in err and "'t' (B, 10)" in err
    assert "--feed" in err


BARE_NAMED = ("import graphnn as gn\n\ndef build():\n    x = gn.input('x', (None, 3), names=['a', 'b', 'c'])\n"
              "    t = gn.input('label', (None, 1))\n    p = gn.dense(x, 1, 'sigmoid', name='out')\n"
              "    return gn.Model('bare', gn.losses.binary_cross_entropy(p, t), p, (x, t))\n")


def test_feeds_by_element_name_without_a_worked_example(capsys, tmp_path):
    """All of x's elements named one by one: was "the other elements of input 'x' have no values"."""
    path = tmp_path / "bare.py"
    path.write_text(BARE_NAMED)
    code, out, err = run_cli(capsys, "derive", str(path), "--wrt", "out.W", "--view", "matrix",
                             "--feed", "a=1,b=2,c=3", "--feed", "label=1")
    assert code == 0 and err == ""
    code, whole, _ = run_cli(capsys, "derive", str(path), "--wrt", "out.W", "--view", "matrix",
                             "--feed", "x=1,2,3,label=1")
    assert code == 0 and whole == out
    code, _, err = run_cli(capsys, "derive", str(path), "--wrt", "out.W", "--view", "matrix",
                           "--feed", "a=1,c=3", "--feed", "label=1")
    assert code == 2 and "input 'x' has no values for b (this model has no worked example" in err


@pytest.mark.parametrize("value, message", [
    ("null", "feed 'i1': None is not a number"), ('"abc"', "feed 'i1': 'abc' is not a number"),
    ("[1, 2]", "feed 'i1': [1, 2] is not a number"), ('{"a": 1}', "feed 'i1': {'a': 1} is not a number")])
def test_a_json_feed_that_is_not_a_number_is_named(value, message, capsys, tmp_path):
    """Was: unexpected TypeError (float() argument …) or NumPy's message, naming no feed."""
    path = tmp_path / "feed.json"
    path.write_text('{"i1": %s}' % value)
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--feed", str(path))
    assert code == 2 and err.strip().splitlines() == [f"graphnn derive: error: {message}"]


def test_bad_view_and_pdf_errors(capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--view", "sideways")
    assert code == 2 and "unknown view 'sideways'" in err and "matrix" in err
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", "pdf")
    assert code == 2 and "-o FILE.pdf" in err
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", "pdf",
                           "-o", str(tmp_path / "x.pdf"))
    assert code == 2 and "apt-get install texlive-latex-base" in err


# -- HTML in a real browser, offline ------------------------------------------------------------------


def _chromium(browser, html_file: Path, *extra):
    return subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tempfile.mkdtemp(dir=html_file.parent)}", "--window-size=1100,1400",
         *extra, html_file.as_uri()],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _ink_rows(png: Path) -> int:
    from PIL import Image
    return int((np.asarray(Image.open(png).convert("L")) < 200).any(axis=1).sum())


_PROBE = """<script>
document.fonts.ready.then(() => {
  const fracs = [...document.querySelectorAll('mfrac')];
  const line = parseFloat(getComputedStyle(document.querySelector('p')).lineHeight);
  const r = {fracs: fracs.length,
             tallest: Math.max(...fracs.map(f => f.getBoundingClientRect().height)) / line,
             tables: document.querySelectorAll('mtable').length};
  document.body.innerHTML = '<pre id="probe">' + JSON.stringify(r) + '</pre>';
});
</script>"""


def test_html_renders_in_chromium(tmp_path, capsys):
    browser = require_program("chromium", "chromium-browser", "google-chrome")
    code, page, _ = run_cli(capsys, "derive", "mazur", "--wrt", "w1", "--values", "--format", "html")
    assert code == 0
    files = {"real": page, "nomath": re.sub(r"<math.*?</math>", "", page, flags=re.S),
             "probe": page.replace("</body>", _PROBE + "</body>")}
    for name, text in files.items():
        (tmp_path / f"{name}.html").write_text(text, encoding="utf-8")
    procs = {n: _chromium(browser, tmp_path / f"{n}.html", f"--screenshot={tmp_path / n}.png")
             for n in ("real", "nomath")}
    procs["probe"] = _chromium(browser, tmp_path / "probe.html", "--virtual-time-budget=5000", "--dump-dom")
    outs = {n: p.communicate(timeout=90)[0] for n, p in procs.items()}
    real, bare = _ink_rows(tmp_path / "real.png"), _ink_rows(tmp_path / "nomath.png")
    assert real > 2 * bare, (real, bare)  # the math was laid out, not dropped
    import html as html_mod
    probe = json.loads(html_mod.unescape(re.search(r'<pre id="probe">(.*?)</pre>', outs["probe"], re.S).group(1)))
    assert probe["fracs"] > 10 and probe["tallest"] > 1.3, probe  # ∂E/∂w stacked as fractions
    assert probe["tables"] >= 4, probe


# -- notebooks and the lecture example ----------------------------------------------------------------


def test_jupyter_repr():
    from graphnn.derive import derive
    d = derive(get_model("mazur"), "w5", values=True)
    html = d._repr_html_()
    assert "<math" in html and "0.0821670" in html and "<html" not in html
    latex = d._repr_latex_()
    assert latex.count("$$\\begin{aligned}") >= 2
    assert r"\frac{\partial E_{\mathrm{total}}}{\partial w_{5}}" in latex


def test_mazur_lecture_example(tmp_path):
    html, tex = tmp_path / "lecture.html", tmp_path / "lecture.tex"
    mod = runpy.run_path(str(ROOT / "examples" / "mazur_lecture.py"))
    assert mod["main"]([str(html), str(tex)]) == 0
    page, src = html.read_text(), tex.read_text()
    for piece in ["0.0821670", "0.000438568", "0.358916", "0.149781"]:  # w5, w1, updates
        assert piece in page and piece in src
    assert r"\delta^{(2)}" in src and "Path 2 of 2" in src
    pdflatex = require_program("pdflatex")
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", tex.name],
                          cwd=tmp_path, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode(errors="replace")[-2000:]


def test_the_title_is_typeset_in_every_format(capsys, tmp_path):
    """dE_total/dw5 in the course's notation: math in LaTeX, MathML in HTML, plain in text."""
    code, out, _ = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", "text")
    assert code == 0 and out.startswith("Backpropagation: ∂E_total/∂w_5 (scalar view)\n=====")
    tex = tmp_path / "d.tex"
    assert run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", "latex", "-o", str(tex))[0] == 0
    assert r"\title{Backpropagation: $\partial E_{\mathrm{total}}/\partial w_{5}$ (scalar view)}" in tex.read_text()
    page = tmp_path / "d.html"
    assert run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", "html", "-o", str(page))[0] == 0
    text = page.read_text()
    assert "<title>Backpropagation: ∂E_total/∂w_5 (scalar view)</title>" in text
    assert re.search(r"<h1>Backpropagation: <math[^>]*>.*</math> \(scalar view\)</h1>", text)
    code, out, _ = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", "markdown")
    assert out.startswith(r"# Backpropagation: $\partial E_{\mathrm{total}}/\partial w_{5}$ (scalar view)")


@pytest.mark.parametrize("argv, message", [
    (["--lr", "0.5"], "--lr sets the update step, which only --update writes: add --update"),
    (["--optimizer", "adam"], "--optimizer sets the update step, which only --update writes: add --update"),
    (["--pause"], "--pause uncovers a Beamer frame's steps: it needs --format beamer")])
def test_an_option_the_derivation_would_ignore_is_refused(argv, message, capsys):
    """derive --lr 0.5 without --update wrote the same derivation as without it."""
    code, out, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", *argv)
    assert code == 2 and out == "" and err.strip().splitlines() == [f"graphnn derive: error: {message}"]


def test_codegen_takes_one_of_schedule_cuda_compile(capsys):
    code, out, err = run_cli(capsys, "codegen", "xor", "--schedule", "--cuda")
    assert code == 2 and "--schedule and --cuda each choose what codegen prints: give one" in err
