"""Writing a drawing to a file: DOT is plain text; SVG/PNG/PDF need Graphviz's ``dot``."""
from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import graphviz

from ..errors import GraphnnError
from ..files import write_bytes

FORMATS = ("dot", "gv", "svg", "png", "pdf")
INSTALL_HINT = ("install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
                "(macOS), or run scripts/install_system_deps.sh; `.dot` output works without it")


# no creation dates in the files, so the same figure gives the same bytes
_FIXED_METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}

#: cairo (1.16, behind Graphviz's -Tpdf) stamps the current time, with the local offset, into
#: the PDF's /CreationDate and ignores SOURCE_DATE_EPOCH
_CAIRO_DATE = re.compile(rb"/CreationDate \((D:[0-9]{14}[^)]*)\)")
FIXED_PDF_DATE = b"D:19700101000000Z"


def _fixed_pdf_date(pdf: bytes) -> bytes:
    """``pdf`` with its creation date the epoch, as the derive PDFs have (SOURCE_DATE_EPOCH=0).
    The replacement is padded with spaces after the string to the old length, so the byte
    offsets in the cross-reference table stay right."""
    def fixed(m: re.Match) -> bytes:
        new = b"/CreationDate (" + FIXED_PDF_DATE + b")"
        return new + b" " * (len(m.group(0)) - len(new))
    return _CAIRO_DATE.sub(fixed, pdf, count=1)


class MissingDotError(GraphnnError, RuntimeError):
    """Rendering an image needs the Graphviz ``dot`` program, which is not on PATH."""


def require_dot() -> str:
    """The path of ``dot``; fail early, with how to install it, when it is missing."""
    path = shutil.which("dot")
    if path is None:
        raise MissingDotError(f"the Graphviz program `dot` was not found on PATH, so SVG/PNG/PDF "
                              f"cannot be rendered; {INSTALL_HINT}")
    return path


def output_format(path) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the drawing format from {str(path)!r}: use a file ending in "
                         + ", ".join(f".{f}" for f in FORMATS))
    return suffix


#: a sub- or superscript in a browser: its size, of the line's, and its shift, in the line's ems
#: (down for a subscript, up for a superscript); about what Graphviz's cairo PNG and PDF draw
SCRIPT_SCALE, SUB_SHIFT, SUP_SHIFT = 0.75, 0.25, 0.4
_SCRIPT_TEXT = re.compile(r'<text\b[^>]*\bbaseline-shift="(sub|super)"[^>]*>')


def _placed_script(m: re.Match) -> str:
    tag = m.group(0)
    size = re.search(r'\bfont-size="([\d.]+)"', tag)
    if size is None:
        return tag
    fs, kind = float(size.group(1)), m.group(1)
    shift = fs * (SUB_SHIFT if kind == "sub" else -SUP_SHIFT)
    tag = tag.replace(f' baseline-shift="{kind}"', f' class="{"sub" if kind == "sub" else "sup"}" dy="{shift:.2f}"')
    return tag.replace(size.group(0), f'font-size="{fs * SCRIPT_SCALE:.2f}"')


def browser_svg(svg: bytes) -> bytes:
    """Graphviz's SVG with its indices placed for a browser. Graphviz writes a <SUB>/<SUP>
    run as a full-size ``<text baseline-shift="sub">``; Chromium drops that by half a line,
    into the label's next line (s₁ over its value, ∂s₂/∂s₁ over its number), where cairo
    (PNG, PDF) draws a small index just below the line. Here each index gets cairo's look:
    smaller, moved by ``dy`` (its ``y`` stays its line's), marked ``class="sub"``/``"sup"``."""
    return _SCRIPT_TEXT.sub(_placed_script, svg.decode("utf-8")).encode("utf-8")


class Drawing(graphviz.Digraph):
    """A graphviz Digraph whose SVG (Jupyter's display, `save` to .svg) has its indices placed
    for a browser (`browser_svg`)."""

    def _repr_image_svg_xml(self) -> str:
        return browser_svg(self.pipe(format="svg")).decode("utf-8")


def render_bytes(digraph: graphviz.Digraph, fmt: str) -> bytes:
    """The drawing as bytes in ``fmt`` (dot/gv: its DOT source). A matplotlib Figure (the
    'maps' view) is written by matplotlib, offline, images embedded."""
    if hasattr(digraph, "savefig"):
        if fmt in ("dot", "gv"):
            raise GraphnnError("this drawing is a picture (a matplotlib figure), not a graph: write it "
                               "as .png, .svg or .pdf")
        buf = io.BytesIO()
        digraph.savefig(buf, format=fmt, dpi=digraph.dpi, metadata=_FIXED_METADATA.get(fmt))
        return buf.getvalue()
    if fmt in ("dot", "gv"):
        return digraph.source.encode("utf-8")
    require_dot()
    try:
        data = digraph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:  # PATH changed between check and run
        raise MissingDotError(f"{e}; {INSTALL_HINT}") from None
    except graphviz.CalledProcessError as e:
        stderr = (e.stderr or b"").decode(errors="replace").strip()
        raise GraphnnError(f"Graphviz `dot` failed to render {fmt}: {stderr or e}") from None
    return _fixed_pdf_date(data) if fmt == "pdf" else data


def save(digraph: graphviz.Digraph, path) -> Path:
    """Write ``digraph`` to ``path``; the format comes from the suffix (.dot .svg .png .pdf).
    Missing folders are made (`graphnn.files.atomic_write`)."""
    path = Path(path)
    fmt = output_format(path)
    data = render_bytes(digraph, fmt)
    if fmt == "svg" and not hasattr(digraph, "savefig"):
        data = browser_svg(data)
    return write_bytes(path, data)     # atomic, missing folders made, a bad path named in one line
