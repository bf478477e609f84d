"""Output formats for derivations: LaTeX, Markdown, offline HTML (MathML) and text.

The derivation renderer makes the math (LaTeX strings or sympy objects); this module
turns a `Document` (`blocks.py`: a title plus Prose, Heading and MathBlock blocks) into
LaTeX (an article; `beamer.py` makes slides), Markdown and HTML; `textual.py` makes the
terminal text. The HTML needs no network: MathML, which browsers render
natively, plus the Latin Modern Math font as base64, because without an OpenType
MATH table browsers draw fractions and stretchy delimiters poorly.
"""
from __future__ import annotations

import base64
import functools
import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from xml.etree import ElementTree
from typing import Union

from ..files import write_bytes, write_text
from . import layout
from .blocks import (Document, Heading, MathBlock, Prose, block_rows, render_blocks, split_cells,
                     split_prose)
from .textual import text_prose, to_text

__all__ = ["Prose", "Heading", "MathBlock", "Document", "MissingToolError", "LatexError", "to_latex_align",
           "to_latex_document", "to_markdown", "to_html", "to_text", "text_prose", "compile_pdf", "RichMixin",
           "split_prose", "write_atomic", "file_format", "SUFFIX_FORMATS", "step_rows", "FIT_MACROS", "set_notebook_font", "html_blocks",
           "html_style"]


class MissingToolError(RuntimeError):
    """An external program (pdflatex, ...) needed for this output is not installed."""


class LatexError(RuntimeError):
    """pdflatex ran but failed; the message carries the relevant log lines."""


# ---------------------------------------------------------------------------- LaTeX
_TEX_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
                "#": r"\#", "%": r"\%", "_": r"\_", "^": r"\textasciicircum{}", "|": r"\textbar{}",
                "~": r"\textasciitilde{}", "<": r"\textless{}", ">": r"\textgreater{}"}
# Unicode that utf8 inputenc does not know (it would stop pdflatex) but that shows up
# in lecture prose; typeset it as math instead.
_TEX_UNICODE = {"∂": r"\partial", "·": r"\cdot", "⊙": r"\odot", "×": r"\times", "−": "-",
                "→": r"\rightarrow", "←": r"\leftarrow", "≈": r"\approx", "≤": r"\leq",
                "≥": r"\geq", "≠": r"\neq", "∑": r"\sum", "Σ": r"\Sigma", "ᵀ": r"^{\top}",
                "∇": r"\nabla", "∞": r"\infty", "∈": r"\in", "±": r"\pm"}
_GREEK = dict(zip(("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu "
                   "xi pi rho sigma tau upsilon phi chi psi omega").split(),
                  "αβγδεζηθικλμνξπρστυφχψω"))
_TEX_UNICODE.update({ch: "\\" + name for name, ch in _GREEK.items()})
_TEX_TABLE = {**{ch: r"\ensuremath{%s}" % tex for ch, tex in _TEX_UNICODE.items()},
              **_TEX_ESCAPES}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_TABLE.get(ch, ch) for ch in text)


def tex_prose(text: str) -> str:
    return "".join(f"${s}$" if m else _tex_escape(s) for m, s in split_prose(text))


#: an article's line (11pt, 2.5 cm margins) in the ems of `layout.width`
ARTICLE_EMS = 38.0
#: LaTeX that shrinks a block of aligned rows to the line width when it is wider (a
#: matrix product that cannot be broken): ``\gnrows{a &= b \\ &= c}``; ``\gnfit[f]{x}``
#: shrinks one right side to the fraction f of the line (default 0.72)
FIT_MACROS = (r"\newsavebox{\gnmath}"
              r"\newcommand{\gnrows}[1]{\sbox{\gnmath}{$\displaystyle\begin{aligned}#1\end{aligned}$}%" "\n"
              r"  \ifdim\wd\gnmath>\linewidth\resizebox{\linewidth}{!}{\usebox{\gnmath}}"
              r"\else\usebox{\gnmath}\fi}" "\n"
              r"\newsavebox{\gncell}\newcommand{\gnfit}[2][0.72]{\sbox{\gncell}{$\displaystyle #2$}%" "\n"
              r"  \ifdim\wd\gncell>#1\linewidth\resizebox{#1\linewidth}{!}{\usebox{\gncell}}"
              r"\else\usebox{\gncell}\fi}")


def to_latex_align(block: MathBlock, ems: float = ARTICLE_EMS) -> str:
    """An ``align*`` environment for the block, ready to paste into Beamer or an article;
    rows wider than ``ems`` are broken at their top-level operators."""
    body = " \\\\\n".join("  " + s for s in layout.fit_rows(block_rows(block), ems))
    return "\\begin{align*}\n" + body + "\n\\end{align*}"


def _fitted_block(block: MathBlock) -> str:
    """align*, long rows broken, and a right side that holds a matrix or is still too wide
    shrunk to the line if LaTeX finds it wider (``\\gnfit``, `FIT_MACROS`); rows stay
    separate, so a long derivation still breaks across pages."""
    rows = layout.boxed(layout.fit_rows(block_rows(block), ARTICLE_EMS), ARTICLE_EMS)
    return "\\begin{align*}\n" + " \\\\\n".join("  " + r for r in rows) + "\n\\end{align*}"


def step_rows(block: MathBlock, ems: float) -> list[list[str]]:
    """The block's rows grouped by step (one group if the steps are not known), broken to ``ems``."""
    rows = block_rows(block)
    starts = [k for k in (block.steps or [0]) if k < len(rows)] or [0]
    bounds = starts + [len(rows)]
    return [layout.fit_rows(rows[a:b], ems) for a, b in zip(bounds, bounds[1:]) if b > a]


def to_latex_document(doc: Document) -> str:
    """A standalone article (amsmath/amssymb/graphicx) that compiles with plain pdflatex."""
    parts = [r"\documentclass[11pt]{article}", r"\usepackage[utf8]{inputenc}",
             r"\usepackage{amsmath,amssymb,graphicx}", r"\usepackage[margin=2.5cm]{geometry}",
             r"\allowdisplaybreaks",  # a long derivation may page-break between rows
             r"\setlength{\emergencystretch}{3em}",  # prose listing long names ($block2.attn.W_O$): no overfull line
             FIT_MACROS, r"\title{" + tex_prose(doc.title) + "}", r"\date{}", r"\begin{document}",
             r"\maketitle", ""]
    parts += [p + "\n" for p in render_blocks(doc, _fitted_block, tex_prose,
                                                lambda t: r"{\raggedright\section*{%s}}" % tex_prose(t))]
    return "\n".join(parts + [r"\end{document}", ""])


#: a derivation file's ending -> the format it holds when none is named
SUFFIX_FORMATS = {".txt": "text", ".tex": "latex-document", ".md": "markdown", ".markdown": "markdown",
                  ".html": "html", ".htm": "html", ".pdf": "pdf"}
#: the named formats an ending may hold: LaTeX (an article or Beamer slides) in .tex, a PDF
#: compiled from either in .pdf
_FITS = {".tex": ("latex", "latex-document", "beamer"), ".pdf": ("pdf", "beamer")}


def file_format(path: Union[str, Path], fmt: str | None = None, option: str = "format=") -> str:
    """The format to write a derivation to ``path`` in: ``fmt`` when named, else the one
    the ending names (`SUFFIX_FORMATS`). Returns text, latex, latex-document (a .tex file
    compiles on its own), markdown, html, pdf, beamer (its LaTeX) or beamer-pdf (compiled).

    Never silently wrong: an ending it cannot tell with no ``fmt``, or a ``fmt`` that clashes
    with a known ending (HTML into x.pdf), is a ValueError naming the path; ``option`` is
    how the message names the format's setting (the CLI: '--format '). A ``fmt`` with an
    ending graphnn does not know (notes.log) is the user's choice and is kept."""
    suffix = Path(path).suffix.lower()
    natural = SUFFIX_FORMATS.get(suffix)
    if fmt is None:
        if natural is None:
            endings = ", ".join(dict.fromkeys(SUFFIX_FORMATS))
            raise ValueError(f"cannot tell the derivation format from {str(path)!r}: use a file ending in "
                             f"{endings}, or name it ({option.strip()})")
        fmt = natural
    elif natural is not None and fmt != natural and fmt not in _FITS.get(suffix, ()):
        raise ValueError(f"{option}{fmt} does not fit {str(path)!r}: a {suffix} file holds "
                         f"{' or '.join(_FITS.get(suffix, (natural,)))}; change the file's ending or the format")
    if suffix == ".tex" and fmt == "latex":
        return "latex-document"   # a .tex file must compile on its own
    if suffix == ".pdf" and fmt == "beamer":
        return "beamer-pdf"
    return fmt


def write_atomic(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` to ``path`` in one step (a temporary file beside it, then renamed):
    a reader never sees half a file."""
    return write_text(path, text)


#: pdflatex's environment: a fixed creation date and file ID (pdfTeX reads SOURCE_DATE_EPOCH),
#: so the same derivation gives the same PDF bytes (its dates and ID changed every run)
_REPRODUCIBLE_TEX = {"SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"}


def compile_pdf(latex_source: str, out_path: Union[str, Path], timeout: float = 120) -> Path:
    """Compile LaTeX source to ``out_path`` with pdflatex (run in a temporary directory)."""
    exe = shutil.which("pdflatex")
    if exe is None:
        raise MissingToolError("pdflatex was not found on PATH; on Debian/Ubuntu "
                               "`apt-get install texlive-latex-base` installs it")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="graphnn-tex-") as tmp:
        (Path(tmp) / "doc.tex").write_text(latex_source, encoding="utf-8")
        proc = subprocess.run(
            [exe, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
            cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
            env={**os.environ, **_REPRODUCIBLE_TEX})
        pdf = Path(tmp) / "doc.pdf"
        if proc.returncode != 0 or not pdf.exists():
            log = proc.stdout.decode("utf-8", "replace").splitlines()
            # TeX errors start with "!"; keep them plus the context line that follows.
            errs = [ln for i, ln in enumerate(log)
                    if ln.startswith("!") or (i and log[i - 1].startswith("!"))]
            raise LatexError("pdflatex failed:\n" + "\n".join(errs or log[-20:]))
        write_bytes(out_path, pdf.read_bytes())
    return out_path


# ------------------------------------------------------------------------- Markdown
def _md_escape(text: str) -> str:
    # Escape only what Markdown would turn into formatting; prose stays readable.
    return re.sub(r"([\\`*_\[\]])", r"\\\1", text).replace("<", "&lt;").replace(">", "&gt;")


def _aligned(block: MathBlock) -> str:
    # MathJax (Jupyter) and GitHub render ``aligned`` inside $$ but not ``align*``; neither
    # breaks a long row, so rows are broken as for the article (a 20-term BPTT sum was one
    # line, scrolled sideways)
    rows = layout.fit_rows(block_rows(block), ARTICLE_EMS)
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def to_markdown(doc: Document) -> str:
    """Markdown with ``$..$`` inline and ``$$\\begin{aligned}..$$`` display math."""
    def prose(text: str) -> str:
        return "".join(f"${s.strip()}$" if m else _md_escape(s) for m, s in split_prose(text))
    blocks = render_blocks(doc, lambda b: "$$\n" + _aligned(b) + "\n$$", prose, lambda t: "## " + prose(t))
    return "\n\n".join(["# " + prose(doc.title.strip())] + blocks) + "\n"


# ----------------------------------------------------------------------------- HTML
@functools.lru_cache(maxsize=1)
def _font_css() -> str:
    font = Path(__file__).with_name("assets") / "latinmodern-math.otf"  # see assets/README
    data = base64.b64encode(font.read_bytes()).decode("ascii")
    return ('@font-face{font-family:"graphnn-math";'  # private name: no installed font wins
            f'src:url(data:font/otf;base64,{data}) format("opentype");}}\n')


_CSS = """
.graphnn-doc{font-family:"Latin Modern Roman","Times New Roman",serif;font-size:18px;
  line-height:1.45;max-width:60em;margin:1.5em auto;padding:0 1em;color:#111;background:#fff}
.graphnn-doc math{font-family:"graphnn-math",math}
.graphnn-doc .display{overflow-x:auto;overflow-y:hidden;margin:.5em 0;padding:.3em 0}
/* Chromium (MathML Core) ignores columnalign/columnspacing, so align*'s layout (right,
   left, gap, right, left...) is restated here. A cell is aligned only when it holds a
   single <mrow> (each cell gets one), and then by -webkit-right but not "right". */
.graphnn-doc mtd{padding:.2em 0} .graphnn-doc mtd:nth-child(2n+3){padding-left:2em}
.graphnn-doc mtd[columnalign=right]{text-align:right;text-align:-webkit-right}
.graphnn-doc mtd[columnalign=left]{text-align:left}
/* a matrix inside an align row: its own cells, evenly spaced (not align*'s gaps) */
.graphnn-doc mtable mtable mtd,.graphnn-doc mtable mtable mtd:nth-child(2n+3){padding:.1em .4em}
"""


def _mathml(latex: str, display: bool = False, inner: bool = False) -> str:
    """LaTeX -> MathML; ``inner`` gives just the top ``<mrow>`` (to put in a ``<mtd>``)."""
    from latex2mathml.converter import convert_to_element
    root = convert_to_element(latex, display="block" if display else "inline")
    root.attrib.pop("xmlns")  # redundant in HTML, and it would be the page's only URL
    # latex2mathml unescapes its whole output (its text holds "&#x02202;"), letting "<"
    # from \text{} through as markup: unescape per node; ElementTree escapes on output.
    for el in root.iter():
        el.text, el.tail = (t and html.unescape(t) for t in (el.text, el.tail))
    for parent in root.iter():
        for k, el in enumerate(parent):
            word = el.text if el.tag == "mo" and not el.attrib else None
            if word == "\u2202":  # \partial: an ordinary symbol in TeX, no operator spacing
                el.tag, el.attrib["mathvariant"] = "mi", "normal"
            elif word and len(word) > 1 and word.isalpha() and not (
                    k == 0 and parent.tag.startswith(("msub", "munder"))):  # \max_i stays
                el.tag = "mi"  # \operatorname{softmax}(z): upright, hugging its argument
    _group_matrices(root)
    return ElementTree.tostring(root[0] if inner else root, encoding="unicode")


#: the children a script element takes: its base and its scripts
_SCRIPT_ARITY = {"msub": 2, "msup": 2, "msubsup": 3, "munder": 2, "mover": 2, "munderover": 3}
_OPEN, _CLOSE = "([{|\u2016\u27e8", ")]}|\u2016\u27e9"


def _group_matrices(root) -> None:
    """Repair latex2mathml's matrices: it writes ``\\begin{bmatrix}…\\end{bmatrix}`` as three
    loose siblings ``<mo>[</mo><mtable/><mo>]</mo>``. Loose, the brackets stretch to the
    tallest thing in the row (a 2-row matrix beside a 5-row one got 5-row brackets), and
    under a script (``…\\end{bmatrix}_{(1,1,:,:)}``, ``^{\\top}``) they made an ``<msub>``
    of four children, which Chromium draws as an error: the matrix shrunk to script size.
    Each bracketed matrix becomes one ``<mrow>``, and a script element's extra leading
    children its base."""
    def fence(el, chars):
        return el is not None and el.tag == "mo" and (el.text or "") in chars and len(el.text or "") == 1

    for parent in list(root.iter()):
        kids = list(parent)
        k = 0
        while k + 2 < len(kids):
            a, t, b = kids[k:k + 3]
            if fence(a, _OPEN) and t.tag == "mtable" and fence(b, _CLOSE) and len(kids) > 3:
                group = ElementTree.Element("mrow")
                at = list(parent).index(a)
                for el in (a, t, b):
                    parent.remove(el)
                    group.append(el)
                parent.insert(at, group)
                kids[k:k + 3] = [group]
            k += 1
    for parent in list(root.iter()):
        arity = _SCRIPT_ARITY.get(parent.tag)
        kids = list(parent)
        if arity is None or len(kids) <= arity:
            continue
        base = ElementTree.Element("mrow")
        for el in kids[:len(kids) - arity + 1]:
            parent.remove(el)
            base.append(el)
        parent.insert(0, base)


def _mtd(cell: str, right: bool) -> str:
    cell = cell.strip()
    if not right and cell[:1] in "=<>+-\\":  # like amsmath, an empty atom before "&=" so
        cell = "{}" + cell                     # the relation keeps its spacing
    try:
        inner = _mathml(cell, display=True, inner=True) if cell else ""
    except Exception:  # noqa: BLE001 -- show the source rather than lose the derivation
        inner = f"<mrow><mtext>{html.escape(cell)}</mtext></mrow>"
    return f'<mtd columnalign="{"right" if right else "left"}">{inner or "<mrow/>"}</mtd>'


def _html_math_block(block: MathBlock) -> str:
    # One <mtable> per block, cells right/left/right... like align*: "&"s line up. Long
    # rows are broken as in the article (a browser does not break display math: lstm's
    # 20-term BPTT sum was one row 3,100 px wide, read by scrolling sideways)
    rows = ["<mtr>" + "".join(_mtd(c, k % 2 == 0) for k, c in enumerate(split_cells(s)))
            + "</mtr>" for s in layout.fit_rows(block_rows(block), ARTICLE_EMS)]
    return ('<math display="block"><mtable displaystyle="true">' + "".join(rows)
            + "</mtable></math>")


def _html_prose(text: str, tag: str = "p") -> str:
    out = []
    for is_math, s in split_prose(text):
        try:
            out.append(_mathml(s) if is_math else html.escape(s))
        except Exception:  # noqa: BLE001 -- show the source rather than fail the page
            out.append(html.escape(f"${s}$"))
    return f"<{tag}>" + "".join(out) + f"</{tag}>"


def html_blocks(doc: Document) -> list[str]:
    """Each block of ``doc`` as HTML (MathML math; no title, no style), for a page that lays
    the blocks out itself (the lecture page); inside an element of class ``graphnn-doc``
    they take `html_style`'s look."""
    return render_blocks(doc, lambda b: f'<div class="display">{_html_math_block(b)}</div>', _html_prose,
                         lambda t: _html_prose(t, "h2"))


def html_style(embed_font: bool = True) -> str:
    """The CSS of `to_html`'s pages (the math font as base64 with ``embed_font``)."""
    return (_font_css() if embed_font else "") + _CSS


def to_html(doc: Document, *, full_page: bool = True, embed_font: bool = True) -> str:
    """HTML with MathML math: no scripts, no external URLs, font embedded as base64.

    ``full_page=False`` gives a fragment (for Jupyter); ``embed_font=False`` leaves out
    the ~1 MB font and lets the browser pick its own math font.
    """
    try:  # fail loudly here, not cell by cell in the fallbacks below
        import latex2mathml.converter  # noqa: F401
    except ImportError as exc:
        raise MissingToolError("to_html needs latex2mathml: pip install latex2mathml") from exc
    body = [_html_prose(doc.title, "h1")] + html_blocks(doc)
    style = "<style>" + html_style(embed_font) + "</style>"
    main = '<div class="graphnn-doc">\n' + "\n".join(body) + "\n</div>"
    if not full_page:
        return style + "\n" + main
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(text_prose(doc.title))}</title>\n{style}\n</head>\n"
            f"<body>\n{main}\n</body>\n</html>\n")


# --------------------------------------------------------------------- rich display
#: how notebook output gets the math font: 'once' (embedded in the first output of the
#: session only: a notebook carries it once), 'always', or 'system' (never: the browser's)
NOTEBOOK_FONT = {"mode": "once", "sent": False}


def set_notebook_font(mode: str = "once") -> None:
    """Choose how Jupyter output gets the Latin Modern Math font: 'once' (default: the first
    derivation shown embeds it, ~1 MB; the rest use it from the page), 'always' (every
    output carries it: each stands alone) or 'system' (never: the browser's math font)."""
    if mode not in ("once", "always", "system"):
        raise ValueError(f"notebook font must be 'once', 'always' or 'system', not {mode!r}")
    NOTEBOOK_FONT.update(mode=mode, sent=False)


class RichMixin:
    """Jupyter rich display for anything with ``to_document() -> Document``."""

    def to_document(self) -> Document:  # pragma: no cover
        raise NotImplementedError("subclasses build their Document here")

    def _repr_html_(self) -> str:
        mode = NOTEBOOK_FONT["mode"]
        embed = mode == "always" or (mode == "once" and not NOTEBOOK_FONT["sent"])
        NOTEBOOK_FONT["sent"] = NOTEBOOK_FONT["sent"] or embed
        return to_html(self.to_document(), full_page=False, embed_font=embed)

    def _repr_markdown_(self) -> str:
        return to_markdown(self.to_document())

    def _repr_latex_(self) -> str:
        # Front ends hand this to MathJax: prose as text, math as $$\begin{aligned}..$$.
        doc = self.to_document()
        blocks = render_blocks(doc, lambda b: "$$" + _aligned(b) + "$$", lambda t: t)
        return "\n\n".join([doc.title] + blocks)
