"""Derivations as plain Unicode text for a terminal: a small LaTeX → Unicode pass (Greek,
∂, ·, ⊙, ᵀ, a/b fractions, sub/superscripts) and rows padded so the "=" signs line up."""
from __future__ import annotations

import re

from .blocks import Document, MathBlock, block_rows, render_blocks, split_cells, split_prose

_GREEK = dict(zip(("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu "
                   "xi pi rho sigma tau upsilon phi chi psi omega").split(),
                  "αβγδεζηθικλμνξπρστυφχψω"))

# Symbols drawn as a letter: TeX swallows the spaces after them (``\partial E`` -> ∂E).
_TEXT_ORD = {"partial": "∂", "top": "ᵀ", "prime": "′", "infty": "∞", "nabla": "∇", "ell": "ℓ",
             "varepsilon": "ε", "varphi": "φ", "vartheta": "ϑ", "Delta": "Δ", "Gamma": "Γ",
             "Theta": "Θ", "Lambda": "Λ", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
             "Pi": "Π", "ldots": "…", "cdots": "⋯", "dots": "…", "lVert": "‖", "rVert": "‖", "Vert": "‖",
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


def latex_text(s: str) -> str:
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
                out.append(_paren(latex_text(num)) + "/" + _paren(latex_text(den)))
            elif name == "sqrt":
                arg, i = _group(s, i)
                out.append("√" + _paren(latex_text(arg)))
            elif name == "begin":
                env, i = _group(s, i)
                end = s.find(r"\end{%s}" % env, i)
                end = len(s) if end < 0 else end
                out.append(_environment_text(env, s[i:end]))
                i = min(len(s), end + len(r"\end{%s}" % env))
            elif name in _ACCENTS or name in _FONTS:
                arg, i = _group(s, i)
                text = latex_text(arg)
                out.append("𝟙" if name == "mathbf" and text == "1" else text + _ACCENTS.get(name, ""))
            elif name in _TEXT_ORD:
                out.append(_TEXT_ORD[name])  # TeX drops the spaces after a control word:
                rest = s[i:].lstrip(" ")     # ∂E, but η = 0.5 keeps its space before "="
                if rest[:1].isalnum() or rest[:1] in "\\{(":
                    i += len(s[i:]) - len(rest)
            elif name in _TEXT_BIN:           # ∗_full: a subscripted operator keeps its subscript
                out.append(f" {_TEXT_BIN[name]}" + ("" if s[i:i + 1] in "_^" else " "))
            elif name not in _DROP:  # \exp, \log, \tanh, \{, \% ... as written
                out.append(_TEXT_SPACE.get(name, name))
        elif ch in "_^":
            arg, i = _group(s, i + 1)
            out.append(_script(latex_text(arg).strip(), ch == "^"))
        else:
            out.append("" if ch in "{}" else ch)
            i += 1
    text = re.sub(r"[ \t]+", " ", "".join(out))
    text = re.sub(r"(?<=\S) +\)", ")", text)   # sympy's "\tanh{\left(x \right)}": tanh(x), not tanh(x )
    text = re.sub(r"\((\{[^{}()]*\})\)", r"\1", text)   # \left( cases \right): one bracket is enough
    # "\partial^{+} E" -> "∂⁺E": a derivative symbol binds to what follows.
    return re.sub(r"(∂[⁺⁻⁰¹²³⁴⁵⁶⁷⁸⁹]*) +", r"\1", text)


def _environment_text(env: str, body: str) -> str:
    """``cases`` as ``{1 if a ≥ b; 0 otherwise}``; any other environment as its content."""
    if env != "cases":
        return latex_text(body)
    rows = []
    for row in re.split(r"\\\\", body):
        value, _, condition = row.partition("&")
        value, condition = latex_text(value).strip(), latex_text(condition).strip()
        if not value:
            continue
        condition = re.sub(r"^(for|if)\b\s*", "", condition)
        rows.append(f"{value} otherwise" if condition in ("", "otherwise") else f"{value} if {condition}")
    return "{" + "; ".join(rows) + "}"


def _text_block(block: MathBlock, indent: str = "    ") -> str:
    # Pad every column to its widest cell so the "=" signs line up as in align*.
    rows = [[latex_text(c).strip() for c in split_cells(s)] for s in block_rows(block)]
    widths = [max(len(r[k]) for r in rows if k < len(r)) for k in range(max(map(len, rows)))]
    return "\n".join((indent + " ".join(c.rjust(widths[k]) if k % 2 == 0 else c.ljust(widths[k])
                                        for k, c in enumerate(r))).rstrip() for r in rows)


def text_prose(text: str) -> str:
    return "".join(latex_text(s).strip() if m else s for m, s in split_prose(text))


def to_text(doc: Document) -> str:
    """Plain Unicode for a terminal: Greek, ∂, ·, ⊙, ᵀ, a/b fractions, aligned rows."""
    def heading(text):
        t = text_prose(text)
        return t + "\n" + "-" * len(t)
    blocks = render_blocks(doc, _text_block, text_prose, heading)
    title = text_prose(doc.title)
    return "\n\n".join([title + "\n" + "=" * len(title)] + blocks) + "\n"
