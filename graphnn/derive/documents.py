"""Output formats for derivations: LaTeX, Markdown, offline HTML (MathML) and text.

The derivation renderer makes the math (LaTeX strings or sympy objects); this module
turns it into documents: a title plus blocks, each ``Prose(text)`` (inline math
between single ``$...$``; ``\\$`` is a literal dollar) or ``MathBlock(lines)`` (one
amsmath ``align*`` row per line, ``&`` at the alignment point; sympy ``Eq(a, b)``
becomes ``a &= b``). The HTML needs no network: MathML, which browsers render
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
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree
from typing import Any, Callable, Union

from . import layout

__all__ = ["Prose", "Heading", "MathBlock", "Document", "MissingToolError", "LatexError", "to_latex_align",
           "to_latex_document", "to_markdown", "to_html", "to_text", "compile_pdf", "RichMixin"]

@dataclass
class Prose:
    """A paragraph of plain text; ``$...$`` segments are inline LaTeX math."""
    text: str


@dataclass
class Heading:
    """A section title inside a document (prose: ``$...$`` is inline math)."""
    text: str


@dataclass
class MathBlock:
    """Display math: each line is one ``align*`` row (LaTeX string or sympy object).
    ``steps``: the rows where a new equation starts (a step of a derivation), if known."""
    lines: list
    steps: list | None = None


@dataclass
class Document:
    """A title (prose: ``$...$`` is inline math) and ``Prose`` / ``MathBlock`` blocks."""
    title: str
    blocks: list = field(default_factory=list)


class MissingToolError(RuntimeError):
    """An external program (pdflatex, ...) needed for this output is not installed."""


class LatexError(RuntimeError):
    """pdflatex ran but failed; the message carries the relevant log lines."""


def _line_latex(line: Any) -> str:
    """LaTeX for one align row; sympy objects are printed lazily (sympy is optional here)."""
    if isinstance(line, str):
        return re.sub(r"(\\\\|\s)*$", "", line.strip())  # a trailing \\ adds an empty row
    import sympy
    if isinstance(line, sympy.Equality):
        return f"{sympy.latex(line.lhs)} &= {sympy.latex(line.rhs)}"
    return sympy.latex(line)


def block_rows(block: MathBlock) -> list[str]:  # without blank rows: in align* an error
    items = [block.lines] if isinstance(block.lines, str) else block.lines  # one bare line
    return [s for s in map(_line_latex, items) if s]


def render_blocks(doc: Document, math: Callable[[MathBlock], str], prose: Callable[[str], str],
            heading: Callable[[str], str] | None = None):
    """One string per block, the shared walk of every writer; empty math is skipped."""
    heading = heading or prose
    return [math(b) if isinstance(b, MathBlock) else heading(b.text) if isinstance(b, Heading) else prose(b.text)
            for b in doc.blocks if not isinstance(b, MathBlock) or block_rows(b)]


# A ``$`` that is not escaped as ``\$``; inline math is the text between two of them.
_INLINE = re.compile(r"(?<!\\)\$(.+?)(?<!\\)\$", re.S)


def split_prose(text: str) -> list[tuple[bool, str]]:
    """``(is_math, piece)`` pairs: re.split with one group alternates text, math, text."""
    return [(k % 2 == 1, p if k % 2 else p.replace(r"\$", "$"))  # text: \$ is a dollar
            for k, p in enumerate(_INLINE.split(text)) if p]


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
#: matrix product that cannot be broken): ``\gnrows{a &= b \\ &= c}``
FIT_MACROS = (r"\newsavebox{\gnmath}"
              r"\newcommand{\gnrows}[1]{\sbox{\gnmath}{$\displaystyle\begin{aligned}#1\end{aligned}$}%" "\n"
              r"  \ifdim\wd\gnmath>\linewidth\resizebox{\linewidth}{!}{\usebox{\gnmath}}"
              r"\else\usebox{\gnmath}\fi}" "\n"
              r"\newsavebox{\gncell}\newcommand{\gnfit}[1]{\sbox{\gncell}{$\displaystyle #1$}%" "\n"
              r"  \ifdim\wd\gncell>0.72\linewidth\resizebox{0.72\linewidth}{!}{\usebox{\gncell}}"
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
             FIT_MACROS, r"\title{" + tex_prose(doc.title) + "}", r"\date{}", r"\begin{document}",
             r"\maketitle", ""]
    parts += [p + "\n" for p in render_blocks(doc, _fitted_block, tex_prose,
                                                lambda t: r"{\raggedright\section*{%s}}" % tex_prose(t))]
    return "\n".join(parts + [r"\end{document}", ""])


def write_atomic(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` to ``path`` in one step (a temporary file beside it, then renamed):
    a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as f:
        f.write(text)
    os.replace(f.name, path)
    return path


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
            cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        pdf = Path(tmp) / "doc.pdf"
        if proc.returncode != 0 or not pdf.exists():
            log = proc.stdout.decode("utf-8", "replace").splitlines()
            # TeX errors start with "!"; keep them plus the context line that follows.
            errs = [ln for i, ln in enumerate(log)
                    if ln.startswith("!") or (i and log[i - 1].startswith("!"))]
            raise LatexError("pdflatex failed:\n" + "\n".join(errs or log[-20:]))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        staged = out_path.with_name(f".{out_path.name}.part")
        shutil.copyfile(pdf, staged)
        os.replace(staged, out_path)
    return out_path


# ------------------------------------------------------------------------- Markdown
def _md_escape(text: str) -> str:
    # Escape only what Markdown would turn into formatting; prose stays readable.
    return re.sub(r"([\\`*_\[\]])", r"\\\1", text).replace("<", "&lt;").replace(">", "&gt;")


def _aligned(block: MathBlock) -> str:
    # MathJax (Jupyter) and GitHub render ``aligned`` inside $$ but not ``align*``.
    return "\\begin{aligned}\n" + " \\\\\n".join(block_rows(block)) + "\n\\end{aligned}"


def to_markdown(doc: Document) -> str:
    """Markdown with ``$..$`` inline and ``$$\\begin{aligned}..$$`` display math."""
    def prose(text: str) -> str:
        return "".join(f"${s.strip()}$" if m else _md_escape(s) for m, s in split_prose(text))
    blocks = render_blocks(doc, lambda b: "$$\n" + _aligned(b) + "\n$$", prose)
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
    return ElementTree.tostring(root[0] if inner else root, encoding="unicode")


def _split_cells(line: str) -> list[str]:
    r"""Split an align row at its top-level ``&`` (not ``\&``, not inside {} or an env)."""
    cells, depth, start, i = [], 0, 0, 0
    while i < len(line):
        if line.startswith(("\\begin", "{"), i):
            depth += 1
        elif line.startswith(("\\end", "}"), i):
            depth -= 1
        elif line[i] == "&" and depth == 0:
            cells.append(line[start:i])
            start = i + 1
        i += 2 if line[i] == "\\" else 1
    return cells + [line[start:]]


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
    # One <mtable> per block, cells right/left/right... like align*: "&"s line up.
    rows = ["<mtr>" + "".join(_mtd(c, k % 2 == 0) for k, c in enumerate(_split_cells(s)))
            + "</mtr>" for s in block_rows(block)]
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


def to_html(doc: Document, *, full_page: bool = True, embed_font: bool = True) -> str:
    """HTML with MathML math: no scripts, no external URLs, font embedded as base64.

    ``full_page=False`` gives a fragment (for Jupyter); ``embed_font=False`` leaves out
    the ~1 MB font and lets the browser pick its own math font.
    """
    try:  # fail loudly here, not cell by cell in the fallbacks below
        import latex2mathml.converter  # noqa: F401
    except ImportError as exc:
        raise MissingToolError("to_html needs latex2mathml: pip install latex2mathml") from exc
    body = [_html_prose(doc.title, "h1")] + render_blocks(
        doc, lambda b: f'<div class="display">{_html_math_block(b)}</div>', _html_prose)
    style = "<style>" + (_font_css() if embed_font else "") + _CSS + "</style>"
    main = '<div class="graphnn-doc">\n' + "\n".join(body) + "\n</div>"
    if not full_page:
        return style + "\n" + main
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(text_prose(doc.title))}</title>\n{style}\n</head>\n"
            f"<body>\n{main}\n</body>\n</html>\n")


# ----------------------------------------------------------------------------- text
# Symbols drawn as a letter: TeX swallows the spaces after them (``\partial E`` -> ∂E).
_TEXT_ORD = {"partial": "∂", "top": "ᵀ", "prime": "′", "infty": "∞", "nabla": "∇", "ell": "ℓ",
             "varepsilon": "ε", "varphi": "φ", "vartheta": "ϑ", "Delta": "Δ", "Gamma": "Γ",
             "Theta": "Θ", "Lambda": "Λ", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
             "Pi": "Π", "ldots": "…", "cdots": "⋯", "dots": "…", "lVert": "‖", "rVert": "‖",
             "sum": "Σ", "prod": "Π", **_GREEK}
# Binary operators and relations: always written with a space either side.
_TEXT_BIN = {"cdot": "·", "odot": "⊙", "times": "×", "otimes": "⊗", "circ": "∘", "pm": "±",
             "approx": "≈", "leftarrow": "←", "gets": "←", "rightarrow": "→", "to": "→",
             "in": "∈", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "mid": "|",
             "wedge": "∧", "land": "∧", "vee": "∨", "lor": "∨", "lt": "<", "gt": ">", "star": "⋆",
             "ast": "∗"}
_TEXT_SPACE = {",": " ", ";": " ", ":": " ", "!": "", "quad": "  ", "qquad": "    ", " ": " "}
_SUPERSCRIPTS = dict(zip("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ"))
_DROP = set("left right big Big bigg Bigg bigl bigr Bigl Bigr displaystyle textstyle "
            "limits nolimits notag nonumber".split())
_ACCENTS = {"hat": "\u0302", "bar": "\u0304", "overline": "\u0305", "tilde": "\u0303",
            "vec": "\u20d7", "dot": "\u0307"}
_FONTS = set("mathrm operatorname text mathbf boldsymbol mathit mathsf mathcal mathbb "
             "textbf mbox".split())
_ATOM = re.compile(r"^([\w∂′'√ᵀ⁺⁻⁽⁾.^\u0300-\u036f\u20d7]+(\([^()]*\))?|\([^()]*\))$")  # + accents (ẑ)


def _group(s: str, i: int) -> tuple[str, int]:
    """Read one argument at ``s[i:]``: a braced group, a command or one character."""
    i += len(s[i:]) - len(s[i:].lstrip(" "))
    if s[i:i + 1] == "{":
        depth, j = 0, i
        while j < len(s):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1:j], j + 1
            j += 1 if s[j] != "\\" else 2
        return s[i + 1:], len(s)
    m = re.match(r"\\([A-Za-z]+|.)|.|$", s[i:], re.S)
    return m.group(0), i + m.end()


def _paren(t: str) -> str:  # a/b and scripts need parentheses unless t is an atom
    return t if _ATOM.match(t) else f"({t})"


def _script(t: str, sup: bool) -> str:
    if sup and t.endswith("ᵀ"):  # W^{(l)\top} -> W^(l)ᵀ rather than W^((l)ᵀ)
        return (_script(t[:-1], True) if t[:-1] else "") + "ᵀ"
    if sup and t and all(c in _SUPERSCRIPTS for c in t):
        return "".join(_SUPERSCRIPTS[c] for c in t)
    return ("^" if sup else "_") + _paren(t)


def _latex_text(s: str) -> str:
    """A small LaTeX -> Unicode pass: readable in a terminal, not typographically exact."""
    out, i = [], 0
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", s[i:])
            name, i = m.group(1), i + m.end()
            if name in {"frac", "dfrac", "tfrac", "cfrac"}:
                num, i = _group(s, i)
                den, i = _group(s, i)
                out.append(_paren(_latex_text(num)) + "/" + _paren(_latex_text(den)))
            elif name == "sqrt":
                arg, i = _group(s, i)
                out.append("√" + _paren(_latex_text(arg)))
            elif name == "begin":
                env, i = _group(s, i)
                end = s.find(r"\end{%s}" % env, i)
                end = len(s) if end < 0 else end
                out.append(_environment_text(env, s[i:end]))
                i = min(len(s), end + len(r"\end{%s}" % env))
            elif name in _ACCENTS or name in _FONTS:
                arg, i = _group(s, i)
                text = _latex_text(arg)
                out.append("𝟙" if name == "mathbf" and text == "1" else text + _ACCENTS.get(name, ""))
            elif name in _TEXT_ORD:
                out.append(_TEXT_ORD[name])  # TeX drops the spaces after a control word:
                rest = s[i:].lstrip(" ")     # ∂E, but η = 0.5 keeps its space before "="
                if rest[:1].isalnum() or rest[:1] in "\\{(":
                    i += len(s[i:]) - len(rest)
            elif name in _TEXT_BIN:
                out.append(f" {_TEXT_BIN[name]} ")
            elif name not in _DROP:  # \exp, \log, \tanh, \{, \% ... as written
                out.append(_TEXT_SPACE.get(name, name))
        elif ch in "_^":
            arg, i = _group(s, i + 1)
            out.append(_script(_latex_text(arg).strip(), ch == "^"))
        else:
            out.append("" if ch in "{}" else ch)
            i += 1
    text = re.sub(r"[ \t]+", " ", "".join(out))
    text = re.sub(r"\((\{[^{}()]*\})\)", r"\1", text)   # \left( cases \right): one bracket is enough
    # "\partial^{+} E" -> "∂⁺E": a derivative symbol binds to what follows.
    return re.sub(r"(∂[⁺⁻⁰¹²³⁴⁵⁶⁷⁸⁹]*) +", r"\1", text)


def _environment_text(env: str, body: str) -> str:
    """``cases`` as ``{1 if a ≥ b; 0 otherwise}``; any other environment as its content."""
    if env != "cases":
        return _latex_text(body)
    rows = []
    for row in re.split(r"\\\\", body):
        value, _, condition = row.partition("&")
        value, condition = _latex_text(value).strip(), _latex_text(condition).strip()
        if not value:
            continue
        condition = re.sub(r"^(for|if)\b\s*", "", condition)
        rows.append(f"{value} otherwise" if condition in ("", "otherwise") else f"{value} if {condition}")
    return "{" + "; ".join(rows) + "}"


def _text_block(block: MathBlock, indent: str = "    ") -> str:
    # Pad every column to its widest cell so the "=" signs line up as in align*.
    rows = [[_latex_text(c).strip() for c in _split_cells(s)] for s in block_rows(block)]
    widths = [max(len(r[k]) for r in rows if k < len(r)) for k in range(max(map(len, rows)))]
    return "\n".join((indent + " ".join(c.rjust(widths[k]) if k % 2 == 0 else c.ljust(widths[k])
                                        for k, c in enumerate(r))).rstrip() for r in rows)


def text_prose(text: str) -> str:
    return "".join(_latex_text(s).strip() if m else s for m, s in split_prose(text))


def to_text(doc: Document) -> str:
    """Plain Unicode for a terminal: Greek, ∂, ·, ⊙, ᵀ, a/b fractions, aligned rows."""
    blocks = render_blocks(doc, _text_block, text_prose)
    title = text_prose(doc.title)
    return "\n\n".join([title + "\n" + "=" * len(title)] + blocks) + "\n"


# --------------------------------------------------------------------- rich display
class RichMixin:
    """Jupyter rich display for anything with ``to_document() -> Document``."""

    def to_document(self) -> Document:  # pragma: no cover
        raise NotImplementedError("subclasses build their Document here")

    def _repr_html_(self) -> str:
        return to_html(self.to_document(), full_page=False)

    def _repr_markdown_(self) -> str:
        return to_markdown(self.to_document())

    def _repr_latex_(self) -> str:
        # Front ends hand this to MathJax: prose as text, math as $$\begin{aligned}..$$.
        doc = self.to_document()
        blocks = render_blocks(doc, lambda b: "$$" + _aligned(b) + "$$", lambda t: t)
        return "\n\n".join([doc.title] + blocks)
