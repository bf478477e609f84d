"""Fitting display math to a page or a slide: estimated widths and long rows broken.

pdflatex does not tell us how wide a formula is before it typesets it, so rows are
measured here roughly (in ems: a letter about 0.55, a fraction as wide as its wider part,
a matrix by its columns) and a row wider than the page is broken at its top-level
operators (· ⊙ + −) into continuation rows, the way a lecturer breaks a long product on
a slide. What is still too wide after that (one huge matrix) is shrunk by LaTeX itself:
the documents' ``\\gnrows`` box scales a block to the line width, so nothing runs off
the page.
"""
from __future__ import annotations

import re

#: breaking points of a row, at the top level: the operator starts the continuation row
BREAKS = (r" \cdot ", r" \odot ", " + ", " - ", r" \, ")
_CMD = re.compile(r"\\([A-Za-z]+|.)")
_WIDE = {"cdot": 1.0, "odot": 1.2, "times": 1.2, "quad": 1.0, "qquad": 2.0, ",": 0.17, ";": 0.28, ":": 0.22,
         "!": 0.0, "left": 0.0, "right": 0.0, "top": 0.8, "partial": 0.6, "sum": 1.1, "cdots": 1.2,
         "ldots": 1.2, "vdots": 0.4, "ddots": 1.2, "infty": 1.0, "star": 0.8, "ast": 0.6, "sqrt": 0.9}


def _group(s: str, i: int):
    """The braced group starting at s[i] ('{'): (content, index after it)."""
    depth, j = 0, i
    while j < len(s):
        ch = s[j]
        if ch == "\\":
            j += 2
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return s[i + 1:j], j + 1
        j += 1
    return s[i + 1:], len(s)


def width(tex: str) -> float:
    """A rough width of inline/display LaTeX math, in ems."""
    total, i = 0.0, 0
    while i < len(tex):
        ch = tex[i]
        if ch == "\\":
            m = _CMD.match(tex, i)
            if m is None:            # a lone trailing backslash
                break
            name, i = m.group(1), m.end()
            if name == "frac" and i < len(tex) and tex[i] == "{":
                num, i = _group(tex, i)
                den, i = _group(tex, i) if i < len(tex) and tex[i] == "{" else ("", i)
                total += max(width(num), width(den)) * (0.75 if tex[:1] != "\\" else 1.0) + 0.3
            elif name == "begin":
                env, i = _group(tex, i)
                end = tex.find(r"\end{%s}" % env, i)
                end = len(tex) if end < 0 else end
                total += _matrix_width(tex[i:end]) + 1.0
                i = min(len(tex), end + len(r"\end{%s}" % env))
            elif name in ("mathrm", "operatorname", "text", "mathsf", "mathbf", "hat", "tilde", "bar"):
                arg, i = _group(tex, i) if i < len(tex) and tex[i] == "{" else ("", i)
                total += width(arg) * (1.0 if name.startswith(("math", "op", "text")) else 1.0)
            else:
                total += _WIDE.get(name, 0.6)
        elif ch in "_^":
            i += 1
            if i < len(tex) and tex[i] == "{":
                arg, i = _group(tex, i)
            else:
                arg, i = tex[i:i + 1], i + 1
            total += 0.7 * width(arg)
        elif ch in "{} ":
            i += 1
        elif ch in "=+-<>":
            total += 1.0
            i += 1
        else:
            total += 0.55 if ch.isalpha() else 0.5
            i += 1
    return total


def _matrix_width(body: str) -> float:
    rows = [r.split("&") for r in re.split(r"\\\\", body)]
    cols = max((len(r) for r in rows), default=0)
    return sum(max((width(r[c]) for r in rows if c < len(r)), default=0) + 0.8 for c in range(cols))


def height(rows) -> float:
    """A rough height of align rows, in lines: a fraction is two, a matrix its rows."""
    total = 0.0
    for row in rows:
        h = 1.0
        if r"\frac" in row:
            h = 1.8
        for body in re.findall(r"\\begin\{[bp]?matrix\}(.*?)\\end\{[bp]?matrix\}", row, re.S):
            h = max(h, 1.05 * (body.count(r"\\") + 1) + 0.3)
        total += h + 0.1
    return total


def _top_level_splits(tex: str) -> list[int]:
    """Positions of the top-level breaking operators (outside braces, \\left…\\right, envs)."""
    out, depth, i = [], 0, 0
    while i < len(tex):
        if tex.startswith(("\\left", "\\begin"), i):
            depth += 1
            i += 5
            continue
        if tex.startswith(("\\right", "\\end"), i):
            depth -= 1
            i += 4
            continue
        ch = tex[i]
        if ch == "\\" and not tex.startswith(BREAKS, i):
            i += 2
            continue
        if ch in "{":
            depth += 1
        elif ch in "}":
            depth -= 1
        elif depth == 0 and i > 0 and tex.startswith(BREAKS, i):
            out.append(i)
        i += 1
    return out


def break_rhs(rhs: str, budget: float) -> list[str]:
    """``rhs`` cut at top-level operators into pieces each about ``budget`` ems wide (the
    operator begins the next piece)."""
    if width(rhs) <= budget:
        return [rhs]
    cuts = _top_level_splits(rhs)
    pieces, start = [], 0
    for k, pos in enumerate(cuts):
        nxt = cuts[k + 1] if k + 1 < len(cuts) else len(rhs)
        if width(rhs[start:nxt]) > budget and pos > start:
            pieces.append(rhs[start:pos])
            start = pos
    pieces.append(rhs[start:])
    return [p.strip() for p in pieces if p.strip()]


def _cells(row: str):
    """(lhs, rest) split at the row's first alignment ``&`` (not ``\\&``), or None."""
    from .blocks import split_cells
    cells = split_cells(row)
    if len(cells) < 2:
        return None
    return cells[0], row[len(cells[0]) + 1:]


def break_row(row: str, budget: float) -> list[str]:
    """One align row (``lhs &= rhs`` or ``&= rhs``) as one or more rows that fit ``budget``;
    continuation rows start ``& \\quad`` with their operator."""
    cells = _cells(row)
    if cells is None:
        return [row]
    lhs, rest = cells
    m = re.match(r"\s*(=|\\quad \+|\+)\s*", rest)
    lead = m.group(0) if m else ""
    rhs = rest[len(lead):]
    pieces = break_rhs(rhs, max(8.0, budget - width(lhs) - 2.0))
    if len(pieces) == 1:
        return [row]
    return [f"{lhs}&{lead}{pieces[0]}"] + [rf"&\quad {p}" for p in pieces[1:]]


def fit_rows(rows, budget: float) -> list[str]:
    """Every row broken to fit ``budget`` ems where it can be."""
    out = []
    for r in rows:
        out += break_row(r, budget)
    return out


def boxed(rows, ems: float) -> list[str]:
    """Rows whose right side holds a matrix, or is still wider than ``ems``, with that side
    in ``\\gnfit{…}``: LaTeX shrinks it to the line if it is too wide (see `documents`)."""
    split = [_cells(row) for row in rows]
    # the right sides share the line with the widest left side (align* lines them up):
    # a long name (∂CE/∂block1.attn.head.scores) leaves less than the usual 72 %
    left = max((width(c[0]) for c in split if c), default=0.0)
    frac = min(0.72, max(0.45, 1.0 - (left + 3.0) / ems))
    fit = r"\gnfit" if frac == 0.72 else r"\gnfit[%.2f]" % frac
    out = []
    for row, cells in zip(rows, split):
        lhs, rest = cells if cells else (row, "")
        m = re.match(r"\s*(=|\\quad \+|\+|\\quad)\s*", rest)
        lead = m.group(0) if m else ""
        rhs = rest[len(lead):]
        if cells and rhs.strip() and (r"\begin{" in rhs or width(row.replace("&", "")) > ems):
            row = f"{lhs}&{lead}{fit}{{{rhs}}}"
        out.append(row)
    return out


def widest(rows) -> float:
    return max((width(r.replace("&", "")) for r in rows), default=0.0)
