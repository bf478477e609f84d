"""Beamer slides of a derivation: a 16:9 deck, one frame per step, that always fits.

Each step of the derivation (``lhs = form = form …``) gets a frame, with the sentence
that introduces it; short steps that follow each other (a net's equations) share one,
up to what a frame holds. Long products are broken over lines at their operators
(`layout`), and as a last resort LaTeX shrinks a formula to the line width
(``\\gnrows``) and a frame's body to the frame height (``\\gnbody``), so no frame
overflows. Math is set sans-serif-safe: Beamer typesets math in sans serif, so
``\\mathrm``, ``\\mathbf`` and operator names (tanh, softmax) are switched to sans too
instead of printing serif beside it. ``pause=True`` uncovers the steps of a frame one
by one.
"""
from __future__ import annotations

import re

from . import layout
from .documents import (FIT_MACROS, Document, Heading, MathBlock, step_rows, tex_prose, text_prose)

#: a frame's line (16:9, 11pt) in the ems of `layout.width`, and its height in text lines
FRAME_EMS = 33.0
FRAME_LINES = 12.5
#: prose longer than this many characters gets a frame of its own
PROSE_CHARS = 260

PREAMBLE = r"""\documentclass[aspectratio=169,11pt]{beamer}
\usepackage[utf8]{inputenc}
\usepackage{amsmath,amssymb,graphicx}
\setlength{\emergencystretch}{3em}
\setbeamertemplate{navigation symbols}{}
\SetSymbolFont{operators}{normal}{OT1}{cmss}{m}{n}
\AtBeginDocument{\renewcommand{\mathrm}{\mathsf}\renewcommand{\mathbf}[1]{\text{\bfseries #1}}}
%(fit)s
\newsavebox{\gnpage}\newlength{\gnheight}
\newcommand{\gnbody}[1]{\sbox{\gnpage}{\begin{minipage}[t]{\linewidth}#1\end{minipage}}%%
  \ifdim\dimexpr\ht\gnpage+\dp\gnpage\relax>\gnheight\resizebox*{!}{\gnheight}{\usebox{\gnpage}}%%
  \else\usebox{\gnpage}\fi}
"""


def _short_title(title: str) -> str:
    """A frame title that fits one line: a long list of derivatives cut to its first one."""
    if len(text_prose(title)) <= 48:
        return title
    m = re.match(r"(.*?:\s*)(\$[^$]*\$)(,.*?)(\s*\([^()]*\))?$", title)
    if m:
        return m.group(1) + m.group(2) + ", …" + (m.group(4) or "")
    return title


class _Frames:
    """Frames being filled: each a title and parts ('prose', tex) / ('math', rows)."""

    def __init__(self, title):
        self.title, self.frames, self.prose = title, [], []

    def new(self, title=None):
        self.frames.append({"title": title or self.title, "parts": [], "lines": 0.0})
        return self.frames[-1]

    def flush_prose(self):
        """Prose with no math after it (or too long to share a frame) on a frame of its own."""
        if self.prose:
            frame = self.new()
            frame["parts"] += [("prose", p) for p in self.prose]
            self.prose = []

    def add_step(self, rows):
        """A step on the current frame if it fits, else on a new one; a step taller than a
        frame continues on the next ("cont.")."""
        chunks, chunk = [], []
        for row in rows:
            if chunk and layout.height(chunk + [row]) > FRAME_LINES:
                chunks.append(chunk)
                chunk = []
            chunk.append(row)
        chunks.append(chunk)
        self._add(chunks[0])
        for c in chunks[1:]:
            frame = self.new(self.title + " (cont.)")
            frame["parts"].append(("math", c))
            frame["lines"] = layout.height(c)

    def _add(self, rows):
        need = layout.height(rows)
        prose_lines = sum(len(text_prose(p)) / 80 + 0.6 for p in self.prose)
        frame = self.frames[-1] if self.frames and self.frames[-1].get("open") else None
        if frame is None or self.prose or frame["lines"] + need > FRAME_LINES:
            frame = self.new()
            frame["open"] = True
        frame["parts"] += [("prose", p) for p in self.prose] + [("math", rows)]
        frame["lines"] += need + prose_lines
        self.prose = []


def frames_of(doc: Document) -> list[dict]:
    """The deck's frames, in order (see the module docstring)."""
    f = _Frames(_short_title(doc.title))
    for block in doc.blocks:
        if isinstance(block, Heading):
            f.flush_prose()
            f.title = _short_title(block.text)
            if f.frames:
                f.frames[-1]["open"] = False
        elif isinstance(block, MathBlock):
            if sum(len(p) for p in f.prose) > PROSE_CHARS:   # long prose apart; its last short line stays
                keep = f.prose[-1:] if len(f.prose[-1]) <= PROSE_CHARS // 2 else []
                f.prose = f.prose[:len(f.prose) - len(keep)]
                f.flush_prose()
                f.prose = keep
            for rows in step_rows(block, FRAME_EMS):
                f.add_step(rows)
        else:
            if f.frames:
                f.frames[-1]["open"] = False
            f.prose.append(block.text)
    f.flush_prose()
    return f.frames


def to_beamer(doc: Document, pause: bool = False) -> str:
    """A Beamer deck (16:9) of ``doc`` that compiles with pdflatex; ``pause`` uncovers the
    steps of a frame one at a time."""
    out = [PREAMBLE % {"fit": FIT_MACROS}, r"\title{%s}" % tex_prose(doc.title), r"\date{}",
           r"\begin{document}", r"\setlength{\gnheight}{0.8\textheight}", r"\frame{\titlepage}"]
    for frame in frames_of(doc):
        body, k = [], 0
        for kind, content in frame["parts"]:
            if kind == "prose":
                body.append(tex_prose(content) + r"\par\smallskip")
                continue
            k += 1
            math = r"{\centering\gnrows{%s}\par}" % (" \\\\\n  ".join(layout.boxed(content, FRAME_EMS)))
            body.append(math if not pause or k == 1 else r"\uncover<%d->{%s}" % (k, math))
        out.append(r"\begin{frame}{%s}" % tex_prose(frame["title"]))
        out.append(r"\gnbody{%s}" % "\n".join(body))
        out.append(r"\end{frame}")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"
