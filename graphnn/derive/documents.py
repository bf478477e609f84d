"""Output formats for derivations: LaTeX, Markdown, offline HTML (MathML) and text.

The derivation renderer produces math (LaTeX strings or sympy objects); this module
only turns that math into documents. A document is a title plus a list of blocks:

* ``Prose(text)`` -- plain text; inline math goes between single ``$...$``
  (write ``\\$`` for a literal dollar sign).
* ``MathBlock(lines)`` -- display math, one amsmath ``align*`` row per line, with
  ``&`` marking the alignment point (``a &= b``). A line may also be a sympy
  object; ``Eq(a, b)`` becomes ``a &= b``.

The HTML writer needs no network at all: LaTeX is converted to presentation MathML
(Chromium, Firefox and Safari render it natively) and the Latin Modern Math font is
embedded as base64, because without an OpenType MATH table browsers draw fractions
and stretchy delimiters poorly.
"""
from __future__ import annotations

import base64
import functools
import html
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

__all__ = ["Prose", "MathBlock", "Document", "MissingToolError", "LatexError",
           "to_latex_align", "to_latex_document", "to_markdown", "to_html",
           "to_text", "compile_pdf", "RichMixin"]

_ASSETS = Path(__file__).with_name("assets")
_FONT_FILE = _ASSETS / "latinmodern-math.otf"


@dataclass
class Prose:
    """A paragraph of plain text; ``$...$`` segments are inline LaTeX math."""
    text: str


@dataclass
class MathBlock:
    """Display math: each line is one ``align*`` row (LaTeX string or sympy object)."""
    lines: list


@dataclass
class Document:
    """A title and an ordered list of ``Prose`` / ``MathBlock`` blocks."""
    title: str
    blocks: list = field(default_factory=list)


class MissingToolError(RuntimeError):
    """An external program (pdflatex, ...) needed for this output is not installed."""


class LatexError(RuntimeError):
    """pdflatex ran but failed; the message carries the relevant log lines."""


# --------------------------------------------------------------------------- helpers
def _line_latex(line: Any) -> str:
    """LaTeX for one align row; sympy objects are printed lazily (sympy is optional here)."""
    if isinstance(line, str):
        # A trailing ``\\`` would create an empty row once we join with ``\\``.
        return re.sub(r"(\\\\\s*)+$", "", line.strip())
    import sympy
    if isinstance(line, sympy.Equality):
        return f"{sympy.latex(line.lhs)} &= {sympy.latex(line.rhs)}"
    return sympy.latex(line)


def _lines(block: MathBlock) -> list[str]:
    # Blank rows are dropped: an empty line inside align* is a LaTeX error.
    return [s for s in (_line_latex(x) for x in block.lines) if s]


def _render(doc: Document, math: Callable[[MathBlock], str],
            prose: Callable[[str], str]) -> list[str]:
    """One string per block, the shared walk of every writer; empty math is skipped."""
    return [math(b) if isinstance(b, MathBlock) else prose(b.text)
            for b in doc.blocks if not isinstance(b, MathBlock) or _lines(b)]


# A ``$`` that is not escaped as ``\$``; inline math is the text between two of them.
_INLINE = re.compile(r"(?<!\\)\$(.+?)(?<!\\)\$", re.S)


def _split_prose(text: str) -> list[tuple[bool, str]]:
    """Split prose into ``(is_math, piece)``; text pieces have ``\\$`` unescaped."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append((False, text[pos:m.start()].replace(r"\$", "$")))
        out.append((True, m.group(1)))
        pos = m.end()
    out.append((False, text[pos:].replace(r"\$", "$")))
    return [(is_math, s) for is_math, s in out if s]


# ---------------------------------------------------------------------------- LaTeX
_TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
    "#": r"\#", "%": r"\%", "_": r"\_", "^": r"\textasciicircum{}",
    "~": r"\textasciitilde{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
# Unicode that utf8 inputenc does not know (it would stop pdflatex) but that shows up
# in lecture prose; typeset it as math instead.
_TEX_UNICODE = {
    "∂": r"\partial", "·": r"\cdot", "⊙": r"\odot", "×": r"\times", "−": "-",
    "→": r"\rightarrow", "←": r"\leftarrow", "≈": r"\approx", "≤": r"\leq",
    "≥": r"\geq", "≠": r"\neq", "∑": r"\sum", "Σ": r"\Sigma", "ᵀ": r"^{\top}",
    "∇": r"\nabla", "∞": r"\infty", "∈": r"\in", "±": r"\pm",
}
_GREEK = dict(zip(("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu "
                   "xi pi rho sigma tau upsilon phi chi psi omega").split(),
                  "αβγδεζηθικλμνξπρστυφχψω"))
_TEX_UNICODE.update({ch: "\\" + name for name, ch in _GREEK.items()})


def _tex_escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in _TEX_ESCAPES:
            out.append(_TEX_ESCAPES[ch])
        elif ch in _TEX_UNICODE:
            out.append(r"\ensuremath{" + _TEX_UNICODE[ch] + "}")
        else:
            out.append(ch)
    return "".join(out)


def _tex_prose(text: str) -> str:
    return "".join(f"${s}$" if m else _tex_escape(s) for m, s in _split_prose(text))


def to_latex_align(block: MathBlock) -> str:
    """An ``align*`` environment for the block, ready to paste into Beamer or an article."""
    body = " \\\\\n".join("  " + s for s in _lines(block))
    return "\\begin{align*}\n" + body + "\n\\end{align*}"


def to_latex_document(doc: Document) -> str:
    """A standalone article (amsmath/amssymb) that compiles with plain pdflatex."""
    parts = [r"\documentclass[11pt]{article}", r"\usepackage[utf8]{inputenc}",
             r"\usepackage{amsmath,amssymb}", r"\usepackage[margin=2.5cm]{geometry}",
             # Long chain-rule rows would overflow the margin; allow breaks at = signs.
             r"\allowdisplaybreaks",
             r"\title{" + _tex_escape(doc.title) + "}", r"\date{}",
             r"\begin{document}", r"\maketitle", ""]
    parts += [p + "\n" for p in _render(doc, to_latex_align, _tex_prose)]
    return "\n".join(parts + [r"\end{document}", ""])


def compile_pdf(latex_source: str, out_path: Union[str, Path], timeout: float = 120) -> Path:
    """Compile LaTeX source to ``out_path`` with pdflatex (run in a temporary directory)."""
    exe = shutil.which("pdflatex")
    if exe is None:
        raise MissingToolError(
            "pdflatex was not found on PATH; on Debian/Ubuntu "
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
        shutil.copyfile(pdf, out_path)
    return out_path


# ------------------------------------------------------------------------- Markdown
def _md_escape(text: str) -> str:
    # Escape only what Markdown would turn into formatting; prose stays readable.
    text = re.sub(r"([\\`*_\[\]])", r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _aligned(block: MathBlock) -> str:
    # MathJax (Jupyter) and GitHub render ``aligned`` inside $$ but not ``align*``.
    return "\\begin{aligned}\n" + " \\\\\n".join(_lines(block)) + "\n\\end{aligned}"


def to_markdown(doc: Document) -> str:
    """Markdown with ``$..$`` inline and ``$$\\begin{aligned}..$$`` display math."""
    def prose(text: str) -> str:
        return "".join(f"${s.strip()}$" if m else _md_escape(s) for m, s in _split_prose(text))
    blocks = _render(doc, lambda b: "$$\n" + _aligned(b) + "\n$$", prose)
    return "\n\n".join(["# " + doc.title.strip()] + blocks) + "\n"


# ----------------------------------------------------------------------------- HTML
@functools.lru_cache(maxsize=1)
def _font_css() -> str:
    data = base64.b64encode(_FONT_FILE.read_bytes()).decode("ascii")
    # A private family name, so a differently-versioned installed font cannot win.
    return ('@font-face{font-family:"graphnn-math";'
            f'src:url(data:font/otf;base64,{data}) format("opentype");}}\n')


_CSS = """
.graphnn-doc{font-family:"Latin Modern Roman","Times New Roman",serif;font-size:18px;
  line-height:1.45;max-width:60em;margin:1.5em auto;padding:0 1em;color:#111;background:#fff}
.graphnn-doc math{font-family:"graphnn-math",math}
.graphnn-doc .display{overflow-x:auto;overflow-y:hidden;margin:.5em 0;padding:.3em 0}
.graphnn-doc math[display=block]{margin:0}
/* Chromium (MathML Core) ignores columnalign/columnspacing, so amsmath's align*
   layout (right, left, gap, right, left...) is restated in CSS. It aligns a cell
   only when the cell holds a single <mrow> (so each cell gets one), and there it
   honours start/center and -webkit-right but not plain "right" (measured, v156). */
.graphnn-doc mtd{padding:.2em 0}
.graphnn-doc mtd:nth-child(2n+3){padding-left:2em}
.graphnn-doc mtd[columnalign=right]{text-align:right;text-align:-webkit-right}
.graphnn-doc mtd[columnalign=left]{text-align:left}
"""


def _mathml(latex: str, display: bool = False, inner: bool = False) -> str:
    """LaTeX -> MathML; ``inner`` returns just the content (to place inside a <mtd>)."""
    from latex2mathml.converter import convert
    out = convert(latex, display="block" if display else "inline")
    # The namespace attribute is redundant in HTML and is the page's only URL.
    out = out.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "")
    # latex2mathml emits \partial as an operator, which gets operator spacing
    # ("∂ E"); TeX treats it as an ordinary symbol, i.e. an upright identifier.
    out = out.replace("<mo>&#x02202;</mo>", '<mi mathvariant="normal">&#x02202;</mi>')
    # \operatorname{softmax} arrives as <mo>softmax</mo>, spaced like an operator
    # ("softmax (z)"); as a multi-letter <mi> it stays upright and hugs its argument.
    # Bases of limits (\max_i, \lim_{x}) keep their operator form.
    out = re.sub(r"(?<!<msub>)(?<!<munder>)(?<!<msubsup>)(?<!<munderover>)"
                 r"<mo>([A-Za-z]{2,})</mo>", r"<mi>\1</mi>", out)
    return out[out.index(">") + 1:-len("</math>")] if inner else out


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
    if not right and cell[:1] in "=<>+-\\":
        # amsmath's "&=" puts an empty atom before the relation so it keeps its spacing.
        cell = "{}" + cell
    try:
        inner = _mathml(cell, display=True, inner=True) if cell else ""
    except Exception:  # noqa: BLE001 -- show the source rather than lose the derivation
        inner = f"<mtext>{html.escape(cell)}</mtext>"
    return f'<mtd columnalign="{"right" if right else "left"}"><mrow>{inner}</mrow></mtd>'


def _html_math_block(block: MathBlock) -> str:
    # One <mtable> per block, cells alternating right/left like align*, so the
    # relation after each "&" lines up down the rows.
    rows = ["<mtr>" + "".join(_mtd(c, k % 2 == 0) for k, c in enumerate(_split_cells(s)))
            + "</mtr>" for s in _lines(block)]
    return ('<math display="block"><mtable displaystyle="true">' + "".join(rows)
            + "</mtable></math>")


def _html_prose(text: str) -> str:
    out = []
    for is_math, s in _split_prose(text):
        if is_math:
            try:
                out.append(_mathml(s, False))
                continue
            except Exception:  # noqa: BLE001 -- show the source rather than fail
                s = f"${s}$"
        out.append(html.escape(s))
    return "<p>" + "".join(out) + "</p>"


def to_html(doc: Document, *, full_page: bool = True, embed_font: bool = True) -> str:
    """HTML with MathML math: no scripts, no external URLs, font embedded as base64.

    ``full_page=False`` gives a ``<div>`` fragment (for Jupyter); ``embed_font=False``
    drops the ~1 MB font and lets the browser pick its own math font.
    """
    body = [f"<h1>{html.escape(doc.title)}</h1>"] + _render(
        doc, lambda b: f'<div class="display">{_html_math_block(b)}</div>', _html_prose)
    style = "<style>" + (_font_css() if embed_font else "") + _CSS + "</style>"
    main = '<div class="graphnn-doc">\n' + "\n".join(body) + "\n</div>"
    if not full_page:
        return style + "\n" + main
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(doc.title)}</title>\n{style}\n</head>\n"
            f"<body>\n{main}\n</body>\n</html>\n")


# ----------------------------------------------------------------------------- text
# Symbols drawn as a letter: TeX swallows the spaces after them (``\partial E`` -> ∂E).
_TEXT_ORD = {"partial": "∂", "top": "ᵀ", "prime": "′", "infty": "∞", "nabla": "∇",
             "ell": "ℓ", "varepsilon": "ε", "varphi": "φ", "vartheta": "ϑ", "Delta": "Δ",
             "Gamma": "Γ", "Theta": "Θ", "Lambda": "Λ", "Sigma": "Σ", "Phi": "Φ",
             "Psi": "Ψ", "Omega": "Ω", "Pi": "Π", "ldots": "…", "cdots": "⋯", "dots": "…",
             "lVert": "‖", "rVert": "‖", "sum": "Σ", "prod": "Π", **_GREEK}
# Binary operators and relations: always written with a space either side.
_TEXT_BIN = {"cdot": "·", "odot": "⊙", "times": "×", "otimes": "⊗", "circ": "∘",
             "pm": "±", "approx": "≈", "leftarrow": "←", "gets": "←", "rightarrow": "→",
             "to": "→", "in": "∈", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥",
             "neq": "≠", "mid": "|"}
_TEXT_SPACE = {",": " ", ";": " ", ":": " ", "!": "", "quad": "  ", "qquad": "    ", " ": " "}
_SUPERSCRIPTS = dict(zip("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ"))
_DROP = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr",
         "displaystyle", "textstyle", "limits", "nolimits", "notag", "nonumber"}
_ACCENTS = {"hat": "\u0302", "bar": "\u0304", "overline": "\u0305", "tilde": "\u0303",
            "vec": "\u20d7", "dot": "\u0307"}
_FONTS = {"mathrm", "operatorname", "text", "mathbf", "boldsymbol", "mathit", "mathsf",
          "mathcal", "mathbb", "textbf", "mbox"}
# Needs no parentheses around it when used in a/b or as a script: a name, maybe a call.
_ATOM = re.compile(r"^([\w∂′ᵀ⁺⁻.^]+(\([^()]*\))?|\([^()]*\))$")


def _group(s: str, i: int) -> tuple[str, int]:
    """Read one argument at ``s[i:]``: a braced group, a command or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth, j = 0, i
        while j < len(s):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1:j], j + 1
            j += 1 if s[j] != "\\" else 2
        return s[i + 1:], len(s)
    m = re.match(r"\\([A-Za-z]+|.)", s[i:])
    return (m.group(0), i + m.end()) if m else (s[i], i + 1)


def _paren(t: str) -> str:
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
            elif name in _ACCENTS or name in _FONTS:
                arg, i = _group(s, i)
                out.append(_latex_text(arg) + _ACCENTS.get(name, ""))
            elif name in _TEXT_ORD:
                out.append(_TEXT_ORD[name])
                while i < len(s) and s[i] == " ":  # TeX drops spaces after a control word
                    i += 1
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
    # "\partial^{+} E" -> "∂⁺E": a derivative symbol binds to what follows.
    return re.sub(r"(∂[⁺⁻⁰¹²³⁴⁵⁶⁷⁸⁹]*) +", r"\1", text)


def _text_block(block: MathBlock, indent: str = "    ") -> str:
    # Pad every column to its widest cell so the "=" signs line up as in align*.
    rows = [[_latex_text(c).strip() for c in _split_cells(s)] for s in _lines(block)]
    ncol = max(len(r) for r in rows)
    widths = [max((len(r[k]) for r in rows if k < len(r)), default=0) for k in range(ncol)]
    lines = []
    for r in rows:
        cells = [c.rjust(widths[k]) if k % 2 == 0 else c.ljust(widths[k])
                 for k, c in enumerate(r)]
        lines.append((indent + " ".join(cells)).rstrip())
    return "\n".join(lines)


def to_text(doc: Document) -> str:
    """Plain Unicode for a terminal: Greek, ∂, ·, ⊙, ᵀ, a/b fractions, aligned rows."""
    def prose(text: str) -> str:
        return "".join(_latex_text(s).strip() if m else s for m, s in _split_prose(text))
    blocks = _render(doc, _text_block, prose)
    return "\n\n".join([doc.title + "\n" + "=" * len(doc.title)] + blocks) + "\n"


# --------------------------------------------------------------------- rich display
class RichMixin:
    """Jupyter rich display for anything with ``to_document() -> Document``."""

    def to_document(self) -> Document:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return to_html(self.to_document(), full_page=False)

    def _repr_markdown_(self) -> str:
        return to_markdown(self.to_document())

    def _repr_latex_(self) -> str:
        # Front ends hand this to MathJax, which only understands math mode:
        # prose as text, display blocks as $$\begin{aligned}...$$.
        doc = self.to_document()
        blocks = _render(doc, lambda b: "$$" + _aligned(b) + "$$", lambda t: t)
        return "\n\n".join([doc.title] + blocks)
