"""The 'time' derivation view and the 'unrolled' drawing, from Python and the CLI."""
import re

import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.derive import derive
from graphnn.draw import draw
from graphnn.models import get_model


def _numbers(line):
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", line)]


def test_time_view_lists_four_path_terms_that_sum_to_the_gradient():
    m = get_model("rnn-scalar")
    d = derive(m, "w", values=True, view="time")
    paths = [s for s in d.steps if s.kind == "path"]
    assert [s.lhs for s in paths] == [f"\\mathrm{{term}}_{{{k}}}" for k in (4, 3, 2, 1)]
    total = next(s for s in d.steps if s.kind == "sum")
    autodiff = float(gn.evaluate(gn.grad(m.loss, [m.find("w")])[m.find("w")], m.example))
    assert total.value == pytest.approx(autodiff, rel=1e-6)
    assert sum(s.value for s in paths) == pytest.approx(autodiff, rel=1e-9)
    text = d.to_text()
    # ∂ for the total derivative as the course writes it, ∂⁺ for the explicit (immediate) one
    assert "∂⁺s_4/∂w" in text and "∂s_t/∂w = ∂⁺s_t/∂w" in text and "explicit" in text and "implicit" in text
    assert "ds_t" not in text and "dE/" not in text
    assert "s_t = tanh(" in text     # the cell's formula, and its two partials
    assert "w (1 - s_t²)" in text


@pytest.mark.parametrize("fmt", ["latex", "markdown", "html"])
def test_time_view_renders_in_every_format(fmt):
    d = derive(get_model("rnn-scalar"), "u", values=True, view="time")
    out = d.render(fmt)
    assert "term" in out and ("partial^{+}" in out or "∂" in out or "<math" in out)


def test_time_view_without_values_is_symbolic():
    text = derive(get_model("rnn-scalar"), "w", view="time").to_text()
    assert "∂s_4/∂s_3" in text and "= (" not in text


def test_time_view_for_vector_states_and_per_step_losses():
    d = derive(get_model("rnn", steps=3, hidden=4), "W", values=True, view="time")
    total = next(s for s in d.steps if s.kind == "sum")
    m = get_model("rnn", steps=3, hidden=4)
    W = m.find("W")
    assert total.value == pytest.approx(float(gn.evaluate(gn.grad(m.loss, [W])[W], m.example)[0, 0]))


def test_derive_cli_time_view_with_steps(capsys):
    assert main(["derive", "rnn-scalar", "--wrt", "w", "--values", "--steps", "4", "--view", "time",
                 "--format", "text"]) == 0
    out = capsys.readouterr().out
    for k in range(1, 5):
        assert f"term_{k}" in out
    sum_line = out.split("∂E/∂w =")[-1]
    parts = _numbers(sum_line.splitlines()[0])
    assert len(parts) == 3       # four terms, the k = 1 term is exactly 0 (s_0 = 0)
    assert main(["derive", "rnn-scalar", "--wrt", "w", "--values", "--steps", "6", "--view", "time"]) == 0
    assert "term_6" in capsys.readouterr().out


def test_steps_option_refuses_models_without_time(capsys):
    assert main(["derive", "mazur", "--wrt", "w5", "--steps", "3"]) == 2
    assert "model 'mazur' has no option --steps (it applies to: rnn-scalar, rnn, lstm)" in capsys.readouterr().err


def test_unrolled_drawing_styles_explicit_and_implicit_paths_apart():
    g = draw(get_model("rnn-scalar"), view="unrolled", values="example")
    src = g.source
    edges = re.findall(r"(\w+) -> (\w+) \[([^\]]*)\]", src, re.S)
    explicit = [attrs for a, b, attrs in edges if "∂⁺s<SUB>" in attrs]
    implicit = [attrs for a, b, attrs in edges if re.search(r"∂s<SUB>\d</SUB>/∂s<SUB>\d</SUB>", attrs)]
    assert len(explicit) == 4 and len(implicit) == 3
    assert all("dashed" in l for l in implicit) and not any("dashed" in l for l in explicit)
    assert "term 4 = " in src and "Σ terms" in src


def test_draw_cli_unrolled_svg(tmp_path, capsys):
    out = tmp_path / "r.svg"
    assert main(["draw", "rnn", "--view", "unrolled", "--steps", "4", "-o", str(out)]) == 0
    svg = out.read_text()
    states = re.findall(r'>s</text>\s*<text[^>]*class="sub"[^>]*>(\d+)</text>', svg)
    assert svg.startswith("<?xml") and "4" in states and "5" not in states
    assert main(["draw", "mazur", "--view", "unrolled"]) == 2
    assert "recurrent" in capsys.readouterr().err


def test_time_view_compiles_to_pdf(tmp_path):
    import os
    import shutil

    if shutil.which("pdflatex") is None:
        msg = "pdflatex is not installed (scripts/install_system_deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    out = tmp_path / "bptt.pdf"
    assert main(["derive", "rnn-scalar", "--wrt", "w", "--values", "--view", "time", "--format", "pdf",
                 "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name", ["rnn", "lstm"])   # (rnn-scalar has one training row)
def test_unrolled_values_of_a_batch_say_which_example_the_states_show(name):
    """Regression: with a batch of feeds the states drawn are row 1's and the loss the batch's,
    and the title did not say so (with the model's one example it needs no note)."""
    m = get_model(name)
    batch = {k: v[:3] for k, v in m.data.train.items()}
    title = re.search(r"unrolled over[^>]*", draw(m, view="unrolled", values=batch).source).group(0)
    assert "states of example 1 of 3, the loss over all 3" in title
    one = re.search(r"unrolled over[^>]*", draw(m, view="unrolled", values="example").source).group(0)
    assert "example" not in one
