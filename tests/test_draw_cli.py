"""`graphnn draw` as a user runs it: SVG content for Mazur's net (names, values, gradients
checked against the reference numbers and our own autodiff), DOT determinism across
processes, the missing-`dot` message, and readable digits-MLP pictures."""
import json
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import graphnn as gn
from graphnn.cli import main
from graphnn.models import available, get_model
from graphnn.notation import number_html

REFERENCE = json.loads(Path("/work/shared/reference/mazur_2_2_2.json").read_text()) \
    if Path("/work/shared/reference/mazur_2_2_2.json").exists() else None
SVG = "{http://www.w3.org/2000/svg}"


def svg_groups(path, cls, subscripts=False):
    """{title: all text in the group} for the SVG's nodes or edges: the runs of one line joined
    (out + subscript h1 reads 'outh1'), lines joined by newlines. ``subscripts``: instead,
    {title: [the runs drawn as subscripts]}."""
    root = ET.parse(path).getroot()
    out = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != cls:
            continue
        title = g.find(f"{SVG}title").text
        runs = list(g.iter(f"{SVG}text"))
        if subscripts:
            out[title] = [t.text for t in runs if t.get("class") == "sub"]   # graphnn.draw.render.browser_svg
            continue
        lines = {}
        for t in runs:
            lines.setdefault(t.get("y"), []).append(t.text or "")
        out[title] = "\n".join("".join(parts) for parts in lines.values())
    return out


def num(x):
    """A number as the drawings (and derivations) print it: 3 significant digits, real minus."""
    return number_html(x, 3)


def mazur_gradients():
    """dE/dw for w1..w8 from graphnn's autodiff + evaluator (not from the drawing code)."""
    model = get_model("mazur")
    grads = gn.grad(model.loss, model.params)
    values = gn.evaluate([grads[p] for p in model.params], model.example)
    out = {}
    for p, g in zip(model.params, values):
        for name, v in zip(p.names[0], np.ravel(g)):
            out[name] = float(v)
    return out


@pytest.fixture(scope="module")
def mazur_svg(tmp_path_factory):
    path = tmp_path_factory.mktemp("draw") / "m.svg"
    assert main(["draw", "mazur", "--view", "neurons", "--grads", "--values", "-o", str(path)]) == 0
    return path


def test_mazur_svg_shows_every_weight_with_value_and_gradient(mazur_svg):
    edges, nodes = svg_groups(mazur_svg, "edge"), svg_groups(mazur_svg, "node")
    ours = mazur_gradients()
    model = get_model("mazur")
    weights = {n: float(v) for p in model.params for n, v in zip(p.names[0], np.ravel(p.value))}
    for k in range(1, 9):
        name = f"w{k}"
        hits = [(t, text) for t, text in edges.items() if f"{name} = " in text]
        assert len(hits) == 1, f"{name} should label exactly one edge"
        title, text = hits[0]
        assert f"{name} = {num(weights[name])}" in text
        assert f"∂Etotal/∂{name} = {num(ours[name])}" in text
        assert "total" in svg_groups(mazur_svg, "edge", subscripts=True)[title]   # E_total: a real subscript
        if REFERENCE is not None:   # our autodiff agrees with Mazur's numbers, and the edge joins
            assert ours[name] == pytest.approx(REFERENCE["gradients"][f"dE_d{name}"], abs=1e-10)
            src, dst = REFERENCE["conventions"]["weight_naming"][name].split("->")
            tail, head = title.replace("&#45;", "-").split("->")
            assert nodes[tail].split()[0].endswith(src) or nodes[tail].split()[0] == src
            assert nodes[head].split()[0].endswith(dst)
    # the issue's headline number, on w5's edge
    w5 = next(text for text in edges.values() if "w5 = " in text)
    assert "0.0822" in w5


def test_mazur_svg_units_show_forward_values_and_deltas(mazur_svg):
    nodes = svg_groups(mazur_svg, "node")
    model = get_model("mazur")
    _, values = gn.evaluate([model.loss], model.example, return_values=True)
    net_o = model.find("net_o")
    grads = gn.grad(model.loss, [net_o])
    delta = gn.evaluate(grads[net_o], model.example)[0]
    out_o1 = next(t for t in nodes.values() if t.startswith("outo1"))
    assert out_o1.startswith(f"outo1 = {num(values[model.output][0, 0])}")
    assert out_o1.count("outo1") == 1          # the unit's title carries its value: no "out 0.751" again
    assert f"neto1 = {num(values[model.find('net_o')][0, 0])}" in out_o1
    assert f"δ = {num(delta[0])}" in out_o1
    if REFERENCE is not None:
        assert delta[0] == pytest.approx(REFERENCE["chain_rule_factors"]["delta_o1"], abs=1e-10)
    assert any("Etotal = " + num(values[model.loss]) in t for t in nodes.values())
    assert any("bias" in t for t in nodes.values())


def test_values_without_grads_are_a_clean_forward_picture(tmp_path):
    path = tmp_path / "m.svg"
    assert main(["draw", "mazur", "--view", "neurons", "--values", "-o", str(path)]) == 0
    edges = svg_groups(path, "edge")
    w5 = next(text for text in edges.values() if "w5 = " in text)
    assert w5 == "w5 = 0.4"
    svg = path.read_text()
    for clutter in ("not computed", "∂", "δ", "0.0822"):
        assert clutter not in svg, clutter


def test_dot_output_is_identical_across_processes():
    def run(seed, *args):
        env = dict(os.environ, PYTHONHASHSEED=str(seed))
        return subprocess.run([sys.executable, "-m", "graphnn", "draw", *args], env=env,
                              capture_output=True, check=True).stdout

    for args in (["mazur", "--view", "backward", "--grads"], ["digits-mlp", "--view", "neurons", "--grads"]):
        first, second = run(1, *args), run(2, *args)
        assert first.startswith(b"digraph")
        assert first == second, f"DOT differs between processes for {args}"


def test_missing_dot_fails_early_with_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))     # an empty directory: no `dot`
    assert main(["draw", "mazur", "-o", str(tmp_path / "m.svg")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and "`dot`" in err
    assert not (tmp_path / "m.svg").exists()
    # .dot output is plain text and still works
    assert main(["draw", "mazur", "-o", str(tmp_path / "m.dot")]) == 0
    assert (tmp_path / "m.dot").read_text().startswith("digraph mazur")


def test_missing_dot_error_type_from_python(tmp_path, monkeypatch):
    from graphnn.draw import MissingDotError, save
    from graphnn.errors import GraphnnError

    digraph = gn.draw(get_model("xor"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDotError, match="apt-get install graphviz") as info:
        save(digraph, tmp_path / "x.png")
    assert isinstance(info.value, GraphnnError)
    save(digraph, tmp_path / "x.dot")


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("view", ["ops", "neurons"])
def test_digits_mlp_pictures_are_pngs_of_readable_size(tmp_path, view):
    path = tmp_path / f"d_{view}.png"
    assert main(["draw", "digits-mlp", "--view", view, "--values", "-o", str(path)]) == 0
    width, height = png_size(path)
    # readable: one screen-ish picture, not a 64x128-unit wall or a sliver
    assert 400 < width < 2600 and 300 < height < 2000, (width, height)


def test_digits_neurons_collapse_wide_layers(tmp_path):
    path = tmp_path / "d.svg"
    assert main(["draw", "digits-mlp", "--view", "neurons", "-o", str(path)]) == 0
    nodes = svg_groups(path, "node")
    texts = " ".join(nodes.values())
    assert "⋮" in texts
    assert "59 more" in texts and "123 more" in texts     # 64 − 5 shown, 128 − 5 shown
    assert "x[64]" in texts and "h[128]" in texts           # counted from 1, as derivations do
    assert len(nodes) < 40


def test_stdout_without_output_and_cli_errors(capsys):
    assert main(["draw", "xor", "--view", "neurons"]) == 0
    assert capsys.readouterr().out.startswith("digraph xor")
    assert main(["draw", "mazur", "--view", "sideways"]) == 2
    err = capsys.readouterr().err
    assert "unknown view 'sideways'" in err and "backward, block, cell, maps, neurons, ops, unrolled" in err
    assert main(["draw", "mazur", "-o", "m.jpeg"]) == 2
    assert ".svg" in capsys.readouterr().err
    assert main(["draw", "perceptron-and", "--view", "neurons", "--grads"]) == 2
    assert "perceptron" in capsys.readouterr().err
    assert main(["draw", "no-such-model"]) == 2
    assert "built-in models" in capsys.readouterr().err


def test_model_file_and_display_options(tmp_path, capsys):
    model_file = tmp_path / "tiny.py"
    model_file.write_text(
        "import numpy as np\n"
        "import graphnn as gn\n"
        "from graphnn.model import Model\n"
        "def build():\n"
        "    x = gn.input('x', (None, 3))\n"
        "    t = gn.input('t', (None, 1))\n"
        "    h = gn.relu(gn.linear(x, gn.parameter('W', np.full((3, 12), 0.123456)),\n"
        "                          gn.parameter('b', np.zeros(12)), name='net'), name='h')\n"
        "    y = gn.linear(h, gn.parameter('V', np.ones((12, 1))), gn.parameter('c', [0.0]), name='y')\n"
        "    ex = {'x': np.ones((1, 3)), 't': np.ones((1, 1))}\n"
        "    return Model('tiny', gn.losses.mse(y, t), y, (x, t), example=ex)\n")
    assert main(["draw", str(model_file), "--view", "neurons", "--max-units", "4",
                 "--precision", "5", "--values"]) == 0
    dot = capsys.readouterr().out
    units = sorted(set(re.findall(r"^\s*(L1u\d+|L1more) \[", dot, flags=re.M)))
    assert units == ["L1more", "L1u0", "L1u1", "L1u11"]       # first 2, ⋮, last
    assert "9 more" in dot                                     # 12 − 3 shown
    assert "net = 0.37037" in dot                              # 3 × 0.123456, 5 digits


def test_unrolled_rnn_beyond_sixteen_steps_draws_and_derives(tmp_path, capsys):
    """w is used at every step: 20 steps sum 20 gradient terms (a Map once held 16 at most,
    and `draw --view unrolled --grads` and `derive --view time` failed with an IndexError)."""
    assert main(["draw", "rnn-scalar", "--steps", "20", "--view", "unrolled", "--grads",
                 "-o", str(tmp_path / "u.dot")]) in (0, None)
    assert main(["derive", "rnn-scalar", "--wrt", "w", "--steps", "17", "--view", "time", "--values",
                 "-o", str(tmp_path / "r.txt")]) in (0, None)
    text = (tmp_path / "r.txt").read_text()
    assert "Π_(j=2)¹⁷ ∂s_j/∂s_(j-1)" in text          # the longest implicit term: through s_16 … s_1
    assert "The total: the sum of the explicit and implicit terms" in text


# -- option checks: each bad value is one error line, never silently replaced or ignored ---------


@pytest.mark.parametrize("argv, says", [
    (["lstm", "--view", "cell", "--values", "--step", "0"], "step 0 is out of range"),
    (["lstm", "--view", "cell", "--values", "--step", "-1"], "step -1 is out of range"),
    (["mazur", "--view", "neurons", "--grads", "--precision", "0"], "--precision"),
    (["mazur", "--view", "neurons", "--grads", "--precision", "-2"], "--precision"),
    (["mazur", "--view", "neurons", "--max-units", "0"], "--max-units"),
    (["mazur", "--view", "neurons", "--max-units", "-1"], "--max-units"),
    (["lstm", "--view", "cell", "--grads"], "the cell view draws no gradients"),
    (["transformer", "--view", "block", "--grads"], "the block view draws no gradients"),
    (["cnn", "--view", "maps", "--grads"], "the maps view draws no gradients"),
])
def test_draw_option_errors_are_one_line(capsys, tmp_path, argv, says):
    """--step 0 drew step T, --precision 0/-2 and --max-units 0/-1 were accepted, and --grads
    was silently ignored by the cell, block and maps views."""
    code = main(["draw", *argv, "-o", str(tmp_path / "x.svg")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "x.svg").exists()


def test_the_smallest_accepted_options_still_draw(capsys):
    assert main(["draw", "mazur", "--view", "neurons", "--grads", "--precision", "1", "--max-units", "3"]) == 0
    assert main(["draw", "lstm", "--view", "cell", "--values", "--step", "1"]) == 0
    assert main(["draw", "rnn-scalar", "--view", "unrolled", "--grads"]) == 0   # it draws the BPTT terms
    capsys.readouterr()


# -- --example counts from 1, as every label does ------------------------------------------------


def _example_rows(name):
    from graphnn.draw.context import batch_rows, example_feeds
    model = get_model(name)
    return model, batch_rows(model.graph, example_feeds(model)) or 1


@pytest.mark.parametrize("name", sorted(gn.models.available()))
def test_example_counts_from_one_and_out_of_range_is_one_line(capsys, tmp_path, name):
    """`draw --example K` counted rows from 0 while the picture said "example K+1": now
    --example 1 is the first example, and 0 or one past the last is one error line naming
    the option and the valid range — for every built-in model."""
    _, rows = _example_rows(name)
    valid = "(1)" if rows == 1 else f"(1 … {rows})"
    for bad in (0, rows + 1):
        code = main(["draw", name, "--values", "--example", str(bad), "-o", str(tmp_path / "x.dot")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"--example (example=) {bad} is out of range" in err and valid in err, err
        assert not (tmp_path / "x.dot").exists()


def test_example_k_shows_the_kth_example(capsys):
    """xor's example holds the four truth-table rows: --example 4 is x = (1, 1), "example 4 of 4"."""
    assert main(["draw", "xor", "--view", "neurons", "--values", "--example", "4"]) == 0
    dot = capsys.readouterr().out
    assert "units show example 4 of 4" in dot
    assert re.search(r"L0u0 \[label=<<B>x<SUB>1</SUB> = 1</B>>", dot) and \
        re.search(r"L0u1 \[label=<<B>x<SUB>2</SUB> = 1</B>>", dot)
    assert main(["draw", "xor", "--view", "neurons", "--values", "--example", "1"]) == 0
    dot = capsys.readouterr().out
    assert "units show example 1 of 4" in dot and re.search(r"L0u0 \[label=<<B>x<SUB>1</SUB> = 0</B>>", dot)


def test_example_without_values_is_one_line(capsys):
    assert main(["draw", "xor", "--view", "neurons", "--example", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "add --values" in err, err


@pytest.mark.parametrize("view", ["ops", "backward"])
def test_example_in_a_view_that_shows_the_whole_batch_is_one_line(capsys, view):
    """--example 3 was silently ignored by the views that show every row (ops, backward, …)."""
    assert main(["draw", "xor", "--view", view, "--grads", "--example", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"the {view} view shows the values of the whole batch" in err \
        and "--example 3" in err and "maps and neurons" in err, err
    assert main(["draw", "xor", "--view", view, "--grads", "--example", "1"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("name", list(available()))
def test_pdf_drawing_is_the_same_bytes_every_time(tmp_path, name):
    """cairo (behind `dot -Tpdf`) stamps the current time into /CreationDate: the same drawing
    gave different bytes a second later. The date is now the epoch, as in the derive PDFs,
    and the file's cross-reference offsets still hold (pdfinfo reads it without complaint)."""
    from graphnn.draw.render import save
    drawing = gn.draw(get_model(name))
    first, second = save(drawing, tmp_path / "a.pdf"), save(drawing, tmp_path / "b.pdf")
    data = first.read_bytes()
    dates = re.findall(rb"/CreationDate \(([^)]*)\)", data)
    assert dates == [b"D:19700101000000Z"], dates
    assert data == second.read_bytes()
    assert not list(tmp_path.glob(".*")), "no temporary file left beside the drawing"
    if subprocess.run(["which", "pdfinfo"], capture_output=True).returncode == 0:
        info = subprocess.run(["pdfinfo", str(first)], capture_output=True, text=True)
        assert info.returncode == 0 and not info.stderr, info.stderr
        assert "1970" in info.stdout


@pytest.mark.parametrize("stamp", [b"D:20261206180404Z", b"D:20261206130421-05'00", b"D:20261206233421+05'30"])
def test_pdf_date_of_any_time_zone_is_fixed_in_place(stamp):
    from graphnn.draw.render import _fixed_pdf_date
    pdf = b"<< /Producer (cairo) /CreationDate (" + stamp + b") >>\nxref"
    fixed = _fixed_pdf_date(pdf)
    assert len(fixed) == len(pdf) and b"(D:19700101000000Z)" in fixed and stamp not in fixed


@pytest.mark.parametrize("argv, message", [
    (["rnn-scalar", "--view", "unrolled", "--show-steps", "0"], "--show-steps (shown_steps=) draws the first and last"),
    (["rnn-scalar", "--view", "ops", "--wrt", "w"], "--wrt (wrt=) applies to the unrolled view only, not to the ops"),
    (["lstm", "--view", "ops", "--step", "2"], "--step (step=) applies to the cell view only, not to the ops view")])
def test_an_option_the_view_would_ignore_is_refused(argv, message, capsys):
    """--show-steps 0 drew 2 steps; --wrt and --step were ignored by the ops view without a word."""
    from graphnn.cli import main

    assert main(["draw", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
