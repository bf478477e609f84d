"""Every built-in model × view, drawn with --slide, is a picture that goes on a 16:9 slide
unchanged: the PNG fits 1920×1080 and no text in it is smaller than MIN_FONT_PX pixels.

The checks read what Graphviz and matplotlib produced (the PNG header, the SVG's font sizes
and scale, the clusters' positions), not what the drawing code meant to produce. One
render per model × view serves every assertion.
"""
import re
import struct
import xml.etree.ElementTree as ET

import pytest

import graphnn as gn
from graphnn.draw import MIN_FONT_PX, NO_GRADS, DrawError, available_views
from graphnn.draw.render import render_bytes
from graphnn.models import available, get_model
from conftest import require_program

SVG = "{http://www.w3.org/2000/svg}"
SLIDE_W, SLIDE_H = 1920, 1080
#: the views each model has: every registered view is tried, and one that does not apply
#: must say so with a DrawError (neurons of a CNN, cell of an MLP, …)
VIEWS = ("ops", "neurons", "backward", "unrolled", "cell", "block", "maps")
EXPECTED = {   # views that must exist for these models (a DrawError would be a regression)
    "mazur": {"ops", "neurons", "backward"}, "digits-mlp": {"ops", "neurons", "backward"},
    "rnn-scalar": {"ops", "backward", "unrolled"}, "rnn": {"ops", "backward", "unrolled"},
    "lstm": {"ops", "backward", "unrolled", "cell"}, "cnn": {"ops", "backward", "maps"},
    "attention": {"ops", "backward", "block"}, "autoencoder": {"ops", "neurons", "backward"},
}


def png_size(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def svg_smallest_text_px(svg: bytes) -> float:
    """The smallest text in output pixels: font-size × the drawing's scale × 96/72."""
    text = svg.decode()
    scale = re.search(r'class="graph" transform="scale\(([\d.]+) ([\d.]+)\)', text)
    s = min(float(scale.group(1)), float(scale.group(2))) if scale else 1.0
    sizes = [float(v) for v in re.findall(r'<text[^>]*font-size="([\d.]+)"', text)]
    return min(sizes) * s * 96 / 72


def svg_cluster_boxes(svg: bytes) -> dict:
    """cluster name -> (x0, x1) of its outline, from the SVG."""
    boxes = {}
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("class") != "cluster":
            continue
        shape = g.find(f"{SVG}path") if g.find(f"{SVG}path") is not None else g.find(f"{SVG}polygon")
        raw = shape.get("d") or shape.get("points")
        xs = [float(x) for x, _ in re.findall(r"(-?[\d.]+),(-?[\d.]+)", raw)]
        boxes[g.find(f"{SVG}title").text] = (min(xs), max(xs))
    return boxes


def _draw(model, view):
    differentiable = model.task not in ("perceptron", "hopfield")
    values = "example" if (model.example or model.data) else None
    grads = differentiable and values is not None and view not in NO_GRADS   # cell/block/maps refuse grads
    return gn.draw(model, view=view, values=values, grads=grads, size="slide")


@pytest.mark.parametrize("name", list(available()))
def test_every_view_fits_a_slide_at_a_readable_font(name):
    require_program("dot")
    assert set(VIEWS) <= set(available_views())
    model = get_model(name)
    drawn = set()
    for view in VIEWS:
        try:
            drawing = _draw(model, view)
        except DrawError:
            continue
        drawn.add(view)
        png = render_bytes(drawing, "png")
        width, height = png_size(png)
        assert width <= SLIDE_W and height <= SLIDE_H, (view, width, height)
        assert max(width / SLIDE_W, height / SLIDE_H) > 0.5, (view, width, height)   # uses the slide
        if hasattr(drawing, "savefig"):      # a matplotlib figure: its text artists' sizes
            texts = [t for t in drawing.findobj(lambda a: hasattr(a, "get_fontsize")) if t.get_text()]
            smallest = min(t.get_fontsize() for t in texts) * drawing.dpi / 72
        else:
            svg = render_bytes(drawing, "svg")
            smallest = svg_smallest_text_px(svg)
            words = re.findall(r">([^<>]+)<", drawing.source)
            assert not [w for w in words if w.strip() in ("None", "nan", "NaN")], (view, "a label says None")
            if view == "backward":   # the gradient graph always on the right of the forward graph
                boxes = svg_cluster_boxes(svg)
                assert boxes["cluster_forward"][1] <= boxes["cluster_backward"][0], boxes
        assert smallest >= MIN_FONT_PX, (view, smallest)
    assert EXPECTED.get(name, set()) <= drawn, EXPECTED[name] - drawn
    assert "ops" in drawn


def test_slide_size_argument_and_cli(tmp_path, capsys):
    require_program("dot")
    from graphnn.cli import main

    out = tmp_path / "l.png"
    assert main(["draw", "lstm", "--view", "unrolled", "--slide", "-o", str(out)]) == 0
    width, height = png_size(out.read_bytes())
    assert width <= SLIDE_W and height <= SLIDE_H
    small = gn.draw(get_model("mazur"), view="neurons", grads=True, size=(1280, 720))
    width, height = png_size(render_bytes(small, "png"))
    assert width <= 1280 and height <= 720
    with pytest.raises(DrawError, match="size"):
        gn.draw(get_model("mazur"), size="poster")
    assert main(["draw", "mazur", "--size", "1280x720", "-o", str(tmp_path / "m.png")]) == 0
    assert main(["draw", "mazur", "--size", "big", "-o", str(tmp_path / "m.png")]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
