"""The picture as the page's script addresses it.

A drawing (`graphnn.draw`) is rendered to SVG by Graphviz, then tagged: every node and edge
group gets ``data-owner`` = its DOT id (``L1u0``, ``L1u0->L2u0``, ``s4->w``: the drawing's
deterministic ids), every text line of its label ``data-line`` (0 at the top), and every
number in a label is wrapped in ``<tspan class="num">`` so the page can hide it, reveal it
or put an updated value in its place — the page never computes one. Matplotlib figures go
through the same clean-up (`clean_svg`): inline SVG with no namespace URL, no DOCTYPE and
no metadata, so the page holds no web address at all.
"""
from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from ..draw.render import browser_svg, render_bytes
from ..draw.style import FONT

SVG_NS = "http://www.w3.org/2000/svg"
_Q = "{%s}" % SVG_NS
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")

#: a label's number at the end of a text run: "0.593", " = 0.593", "term 4 = −0.00172",
#: " = 0.35 (fixed)", " = 0.0187 (sum of its edges)", "−2.66×10" (its exponent is the next,
#: superscript, run)
_NUMBER = re.compile(r"(^|= )([−-]?\d+(?:\.\d+)?(?:×10)?)(\s*\([^()]*\))?$")


@dataclass
class Picture:
    """One rendered drawing: inline SVG, its label lines and the numbers in them."""

    svg: str
    lines: dict        # owner -> [text of each label line]
    numbers: dict      # "owner|line" -> [the number texts of that line]

    def key(self, owner: str, predicate) -> list:
        """Keys "owner|line" of the owner's lines whose text satisfies ``predicate``."""
        return [f"{owner}|{k}" for k, text in enumerate(self.lines.get(owner, [])) if predicate(text)]

    def numbered(self, owner: str) -> list:
        """Keys of the owner's lines that hold a number."""
        return [k for k in (f"{owner}|{i}" for i in range(len(self.lines.get(owner, [])))) if k in self.numbers]

    def changes(self, other: "Picture") -> dict:
        """"owner|line" -> number texts where ``other`` (the same drawing, other values) differs."""
        return {k: v for k, v in other.numbers.items() if k in self.numbers and self.numbers[k] != v}


_SUPERSCRIPT = dict(zip("0123456789−-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁻"))


def clean_svg(svg: str) -> str:
    """SVG text fit to sit inline in the page: no XML declaration, DOCTYPE, comments,
    metadata or namespace declarations (HTML needs none; they are web addresses)."""
    svg = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    return svg.strip()


def _lines(texts) -> dict:
    """text element -> its line number inside one label (by baseline, top first)."""
    ys = sorted({round(float(t.get("y", "0")), 1) for t in texts})
    return {t: ys.index(round(float(t.get("y", "0")), 1)) for t in texts}


def _wrap_number(text_el) -> bool:
    """Put the run's trailing number in a tspan.num; True if it ends in "×10" (the exponent
    follows as the next run)."""
    content = text_el.text or ""
    m = _NUMBER.search(content)
    if not m:
        return False
    start, end = m.span(2)
    span = ET.SubElement(text_el, _Q + "tspan", {"class": "num"})
    span.text = content[start:end]
    span.tail = content[end:]
    text_el.text = content[:start]
    return span.text.endswith("×10")


def annotate(svg_bytes: bytes) -> Picture:
    """The `Picture` of a Graphviz SVG: tagged inline SVG, label lines, numbers."""
    root = ET.fromstring(svg_bytes)
    owners, numbers = {}, {}
    for g in root.iter(_Q + "g"):
        if g.get("class") not in ("node", "edge"):
            continue
        title = g.find(_Q + "title")
        if title is None:
            continue
        owner = title.text or ""
        g.set("data-owner", owner)
        g.attrib.pop("id", None)        # graphviz's node1, edge7: repeated across pictures
        texts = [t for t in g.iter(_Q + "text")]
        line_of = _lines(texts)
        lines: dict = {}
        exponent_next = False
        for t in texts:
            t.set("data-line", str(line_of[t]))
            script = t.get("class") in ("sub", "sup")       # graphnn.draw.render.browser_svg
            lines.setdefault(line_of[t], []).append(t.text or "")
            key = f"{owner}|{line_of[t]}"
            if exponent_next and t.get("class") == "sup":
                t.set("class", "sup num")
                numbers[key][-1] += "".join(_SUPERSCRIPT.get(c, c) for c in t.text or "")
                exponent_next = False
                continue
            exponent_next = not script and _wrap_number(t)
            span = t.find(_Q + "tspan")
            if span is not None:
                numbers.setdefault(key, []).append(span.text)
        owners[owner] = ["".join(lines[k]) for k in sorted(lines)]
    for attr in ("width", "height"):        # the page sizes the picture (viewBox kept)
        root.attrib.pop(attr, None)
    root.set("class", "picture")
    buf = io.StringIO()
    ET.ElementTree(root).write(buf, encoding="unicode")
    return Picture(clean_svg(buf.getvalue()), owners, numbers)


#: how much larger than a document's the picture's type is: read from the back of a room
PROJECTOR_SCALE = 1.5
LR_RANKSEP = "0.45"   # inches between ranks of a left-to-right picture (the neurons view: 1.6)


def enlarge(digraph, factor: float = PROJECTOR_SCALE):
    """A copy of ``digraph`` with every font size times ``factor`` and no title (the page
    has its own); Graphviz then lays it out around the larger text (scaling the finished
    picture would only shrink it again to fit the screen)."""
    big = digraph.copy()
    big.body = [line for line in big.body if not line.startswith("\tlabel=")]
    if big.graph_attr.get("rankdir") == "LR":
        # the weights' labels sit in ranks of their own between the layers: less space around
        # them leaves a wide picture room to be drawn larger on a screen
        big.graph_attr["ranksep"] = LR_RANKSEP

    def scale(m):
        return f'{m.group(1)}{float(m.group(2)) * factor:g}{m.group(3)}'

    for attrs in (big.graph_attr, big.node_attr, big.edge_attr):
        if "fontsize" in attrs:
            attrs["fontsize"] = f"{float(attrs['fontsize']) * factor:g}"
    big.body = [re.sub(r'(POINT-SIZE=")(\d+(?:\.\d+)?)(")', scale, line) for line in big.body]
    big.body = [re.sub(r'(fontsize=)(\d+(?:\.\d+)?)(\b)', scale, line) for line in big.body]
    return big


def picture(digraph) -> Picture:
    """Render a drawing with Graphviz, its type enlarged for a projector, its indices placed
    for a browser as every SVG drawing's are (`graphnn.draw.render.browser_svg`: smaller,
    moved by dy, class="sub"/"sup"), and `annotate` it."""
    return annotate(browser_svg(render_bytes(enlarge(digraph), "svg")))


#: after the font Graphviz measured with: fonts of Helvetica's widths, then any sans
FALLBACK_FONTS = ('"Liberation Sans", Arimo, "Nimbus Sans", Helvetica, Arial, sans-serif')


@functools.lru_cache(maxsize=None)
def measured_font() -> str | None:
    """The family Graphviz sets the drawings' font (`graphnn.draw.style.FONT`) in on this
    machine: it places each run of a label (a name, then its index) by that font's widths,
    so the page must draw the runs in it, or a narrower font leaves gaps before indices
    ("∂E/∂s  4") and a wider one runs them together. Graphviz's text layout (pango) asks
    fontconfig; None where fontconfig's ``fc-match`` is not there to ask."""
    program = shutil.which("fc-match")
    if program is None:
        return None
    try:
        out = subprocess.run([program, "-f", "%{family[0]}", FONT], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    family = out.stdout.strip()
    return family if out.returncode == 0 and family and '"' not in family and "<" not in family else None


def picture_font_css() -> str:
    """The pictures' font rule: the measured family first (`measured_font`)."""
    family = measured_font()
    first = f'"{family}", ' if family else ""
    # white-space: a run starts with its space (" via net" after "out" with its index): a
    # browser drops it, Graphviz counted it
    return f"svg.picture text {{ font-family: {first}{FALLBACK_FONTS}; white-space: pre; }}\n"


def figure_svg(fig) -> str:
    """A matplotlib figure as inline SVG (no metadata, no addresses)."""
    import matplotlib
    buf = io.StringIO()
    # a fixed salt: matplotlib names clip paths and markers by a random hash otherwise, and
    # the same lecture gave a different page every run
    with matplotlib.rc_context({"svg.hashsalt": "graphnn"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return clean_svg(buf.getvalue())
