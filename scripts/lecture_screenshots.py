"""Make the screenshots of docs/lecture.md: lecture pages driven in headless Chromium.

    python scripts/lecture_screenshots.py            # → docs/lecture/*.png

Each picture is what a lecturer sees after the keys and clicks listed in SHOTS, on the page
`graphnn lecture MODEL -o page.html` writes. Needs Graphviz's `dot`, Chromium and the
`websocket-client` package (the dev extra); the browser is driven by tests/browser.py.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import graphnn as gn  # noqa: E402
from browser import Browser  # noqa: E402

#: (file name, model, what to do: "key:K", "click:SELECTOR", "wait:S")
SHOTS = [
    ("mazur-forward", "mazur", ["key:ArrowRight"] * 4),
    ("mazur-backward", "mazur", ["key:ArrowRight"] * 9),
    ("mazur-update", "mazur", ["key:End", "key:ArrowLeft"]),
    ("mazur-click-w1", "mazur", ["key:ArrowRight"] * 6 + ['click:.chip[data-weight="w1"]']),
    ("mazur-quiz", "mazur", ["key:ArrowRight"] * 4 + ["key:q"]),
    ("rnn-scalar-term", "rnn-scalar", ["key:ArrowRight"] * 8),
    ("rnn-scalar-click-u", "rnn-scalar", ["key:ArrowRight"] * 6 + ['click:.chip[data-weight="u"]']),
    ("xor-training", "xor", ["key:End", "key:p", "wait:9"]),
    ("perceptron-and-rule", "perceptron-and", ["key:ArrowRight"] * 7),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "lecture"), help="folder of the PNGs")
    parser.add_argument("--chromium", default="chromium")
    parser.add_argument("--size", default="1600x900", help="the browser window, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        pages = {}
        for _, model, _ in SHOTS:
            if model not in pages:
                pages[model] = Path(tmp) / f"{model}.html"
                gn.lecture(gn.models.get_model(model), pages[model])
        import shutil
        with Browser(shutil.which(args.chromium) or args.chromium, width, height) as b:
            for name, model, actions in SHOTS:
                b.open(pages[model])
                for action in actions:
                    kind, _, what = action.partition(":")
                    if kind == "key":
                        b.key(what)
                    elif kind == "click":
                        b.click(what)
                    elif kind == "wait":
                        time.sleep(float(what))
                time.sleep(0.3)
                b.screenshot(out / f"{name}.png")
                _shrink(out / f"{name}.png")
                print(f"wrote {out / name}.png")


def _shrink(path: Path):
    """256 colours: a screenshot of flat colours loses nothing visible and a third of its size."""
    try:
        from PIL import Image
    except ImportError:
        return
    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)


if __name__ == "__main__":
    main()
