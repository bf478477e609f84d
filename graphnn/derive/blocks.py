"""The parts a derivation document is made of, shared by every writer: a title and blocks,
each ``Prose(text)`` (inline math between single ``$...$``; ``\\$`` is a literal dollar),
``Heading(text)`` or ``MathBlock(lines)`` (one amsmath ``align*`` row per line, ``&`` at the
alignment point; sympy ``Eq(a, b)`` becomes ``a &= b``)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable


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


def split_cells(line: str) -> list[str]:
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
