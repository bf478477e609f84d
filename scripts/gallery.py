"""Make the drawing gallery: a slide-sized PNG of every view of every built-in model.

    python scripts/gallery.py                 # all models → docs/gallery/, and the table in docs/drawing.md
    python scripts/gallery.py mazur lstm      # just these models (the table lists what is on disk)

Each picture is what ``graphnn draw MODEL --view VIEW --slide`` gives (with ``--values``, and
``--grads`` where the net is differentiable); a view that does not apply to a model (the
neurons of a CNN, the LSTM cell of an MLP) is skipped. The table between the gallery markers
of docs/drawing.md is rewritten from the files in docs/gallery/. Needs Graphviz's ``dot``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import graphnn as gn  # noqa: E402
from graphnn.draw import DrawError, save  # noqa: E402
from graphnn.models import available, get_model  # noqa: E402

VIEWS = ("ops", "neurons", "backward", "unrolled", "cell", "block", "maps")
START, END = "<!-- gallery:start -->", "<!-- gallery:end -->"


def options(model, view) -> dict:
    """What the gallery shows: the worked example's values, gradients where they exist."""
    differentiable = model.task not in ("perceptron", "hopfield")
    has_example = bool(model.example or model.data)
    grads = differentiable and has_example and view in ("ops", "neurons", "backward")
    return {"values": "example" if has_example else None, "grads": grads, "size": "slide"}


def render(names, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        model = get_model(name)
        for view in VIEWS:
            try:
                drawing = gn.draw(model, view=view, **options(model, view))
            except DrawError:
                continue
            path = save(drawing, out / f"{name}-{view}.png")
            if not hasattr(drawing, "savefig"):   # matplotlib's colour maps need their colours
                _shrink(path)
            written.append(path)
            print(f"wrote {path.relative_to(ROOT)}")
    return written


def _shrink(path: Path) -> None:
    """96-colour palette PNG (a third of the bytes; drawings have few colours), if Pillow is
    installed (``pip install graphnn[dev]``); else the PNG stays as Graphviz wrote it."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    tmp = path.with_name(f".{path.name}.tmp")
    small.save(tmp, "PNG", optimize=True)
    tmp.replace(path)


def table(out: Path) -> str:
    """The markdown gallery: one row per model, one linked thumbnail per view."""
    rows = ["| model | views (each a 1920×1080 slide: `graphnn draw MODEL --view VIEW --slide`) |", "|---|---|"]
    for name in available():
        cells = []
        for view in VIEWS:
            png = out / f"{name}-{view}.png"
            if png.exists():
                rel = png.relative_to(ROOT / "docs").as_posix()
                cells.append(f"[{view}]({rel})")
        if cells:
            rows.append(f"| `{name}` | {' · '.join(cells)} |")
    return "\n".join(rows)


def update_doc(doc: Path, out: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{doc}: the gallery markers {START} … {END} are missing")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table(out)}\n{END}{tail}"
    tmp = doc.with_name(f".{doc.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(doc)
    print(f"updated the gallery table in {doc.relative_to(ROOT)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="models to draw (default: every built-in model)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "gallery"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    render(args.models or list(available()), out)
    update_doc(ROOT / "docs" / "drawing.md", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
