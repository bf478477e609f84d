"""The course's notation for names and numbers, in every output: LaTeX, HTML, Graphviz, text.

One function per target reads a *teaching name* as the graph carries it and writes it the
way the course does; derivations and drawings both call these, so a name looks the same on
a slide, in a page and in a picture:

    name          LaTeX                       Graphviz HTML label        text
    w5            w_{5}                       w<SUB>5</SUB>              w5
    out_h1        \\mathrm{out}_{h1}           out<SUB>h1</SUB>           out_h1
    E_total       E_{\\mathrm{total}}          E<SUB>total</SUB>          E_total
    x̂  x_hat      \\hat{x}                     x̂                         x̂
    net_x̂         \\mathrm{net}_{\\hat{x}}      net<SUB>x̂</SUB>           net_x̂
    Wᵀ            W^{\\top}                    W<SUP>T</SUP>              Wᵀ
    δ⁽¹⁾          \\delta^{(1)}                δ<SUP>(1)</SUP>            δ⁽¹⁾
    v'_1  b'      v'_{1}  b'                  v<SUB>1</SUB><SUP>′</SUP>  v'_1
    W1[0,1]       (W_{1})_{1,2}               W<SUB>1</SUB>[0,1]         W1[0,1]
    attn.W_Q      \\mathrm{attn}.W_{Q}         attn.W<SUB>Q</SUB>         attn.W_Q
    h(t-1)        h_{t-1}                     h<SUB>t-1</SUB>            h(t-1)

Element indices print 1-based in LaTeX, as the course writes w_ij. Any character LaTeX
cannot typeset becomes a safe stand-in, so `latex_name` always compiles.

`parse` splits a name into its parts (`Name`); numbers have `significant` (N significant
digits, exact values exactly) and its LaTeX/HTML/text forms with × 10ⁿ for small and
large ones.
"""
from __future__ import annotations

import html
import math
import re
import unicodedata
from dataclasses import dataclass

GREEK = set("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho "
            "sigma tau upsilon phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi "
            "Omega".split())
_GREEK_LETTERS = dict(zip("αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩ",
                          "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho "
                          "sigma tau upsilon phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi "
                          "Omega".split()))
_ACCENTS = {"\u0302": "hat", "\u0303": "tilde", "\u0304": "bar", "\u0307": "dot"}
_WORD_ACCENTS = {"hat", "tilde", "bar", "dot"}
_SUPERSCRIPT = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾⁺⁻ᵀ", "0123456789()+-T"))
_SUBSCRIPT = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
#: Unicode a name may carry that LaTeX math writes as a command
_MATH_UNICODE = {"∂": r"\partial", "·": r"\cdot", "⊙": r"\odot", "×": r"\times", "−": "-", "√": r"\surd",
                 "Σ": r"\Sigma", "∑": r"\sum", "∇": r"\nabla", "∞": r"\infty", "′": "'", "½": r"\tfrac{1}{2}",
                 "→": r"\to", "≥": r"\geq", "≤": r"\leq", "ℓ": r"\ell", "ε": r"\varepsilon", "‖": r"\Vert"}


@dataclass(frozen=True)
class Name:
    """A teaching name in parts: base (a word or one letter), subscript, superscript,
    accent ('hat', 'tilde', 'bar', 'dot' or ''), transposed, primes, element index text,
    and the dotted prefix it lives under ('attn' of attn.W_Q) and a bracketed argument."""

    base: str
    sub: str = ""
    sup: str = ""
    accent: str = ""
    transposed: bool = False
    primes: int = 0
    index: str = ""
    prefix: str = ""
    arg: str = ""


def _split_accents(text: str):
    """('x', 'hat') for 'x̂' (a combining mark); accents elsewhere are left to the caller."""
    accent = ""
    for mark, word in _ACCENTS.items():
        if mark in text:
            text, accent = text.replace(mark, ""), word
    return text, accent


def parse(name: str) -> Name:
    """Read a teaching name (see the module docstring's table). Long: one regex per part of
    the name, applied from the outside in."""
    text = unicodedata.normalize("NFD", str(name))   # x̂ as one character → x + U+0302
    primes = 0
    m = re.fullmatch(r"(.*?)'(\d+)", text)
    if m and m.group(1):          # GradRecord makes clashing names unique as name'k
        text, primes = m.group(1), min(int(m.group(2)), 3)
    index = ""
    m = re.fullmatch(r"(.+?)\[([\d,\s:]+)\]", text)
    if m:
        text, index = m.group(1), m.group(2)
    transposed = False
    while text.endswith("ᵀ") and len(text) > 1:
        text, transposed = text[:-1], not transposed
    prefix = ""
    m = re.fullmatch(r"([A-Za-z_][\w.]*)\.([^.]+)", text)
    if m:
        prefix, text = m.group(1), m.group(2)
    arg = ""
    m = re.fullmatch(r"(.+?)\((.*)\)", text)
    if m:
        text, arg = m.group(1), m.group(2)
    sup = ""
    m = re.fullmatch(r"(.+?)([⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾⁺⁻]+)", text)
    if m:
        text, sup = m.group(1), "".join(_SUPERSCRIPT[c] for c in m.group(2))
    m = re.fullmatch(r"(.+?)\^\{?([^{}]+)\}?", text)
    if m and not sup:
        text, sup = m.group(1), m.group(2)
    head, _, sub = text.partition("_")
    sub = sub.strip("{}")
    head, accent = _split_accents(head)
    while head.endswith("'") and len(head) > 1:
        head, primes = head[:-1], primes + 1
    if primes == 0 and head.endswith("′"):
        head, primes = head[:-1], 1
    if sub in _WORD_ACCENTS and not accent:
        head, sub, accent = head, "", sub
    if not sub:
        m = re.fullmatch(r"([A-Za-z]+|[α-ωΑ-Ω])(\d+)", head)
        if m:
            head, sub = m.group(1), m.group(2)
        elif re.fullmatch(r".+[₀-₉]+", head):
            i = next(k for k, c in enumerate(head) if c in _SUBSCRIPT)
            head, sub = head[:i], "".join(_SUBSCRIPT[c] for c in head[i:])
    if arg and not sub and re.fullmatch(r"t(\s*[-+]\s*\d+)?|\d+", arg.strip()):
        sub, arg = arg.replace(" ", ""), ""      # h(t-1) is h_{t-1}
    return Name(head, sub, sup, accent, transposed, primes, index, prefix, arg)


# -- LaTeX ----------------------------------------------------------------------------------------

def _latex_char(ch: str) -> str:
    if ch in _GREEK_LETTERS:
        return "\\" + _GREEK_LETTERS[ch] + " "
    if ch in _MATH_UNICODE:
        return _MATH_UNICODE[ch] + " "
    if ch in _SUPERSCRIPT:
        return "^{%s}" % (r"\top" if ch == "ᵀ" else _SUPERSCRIPT[ch])
    if ch in _SUBSCRIPT:
        return "_{%s}" % _SUBSCRIPT[ch]
    if ch in _ACCENTS:
        return ""           # a stray combining mark: dropped rather than break the build
    if ord(ch) < 128:
        return {"_": r"\_", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "{": r"\{", "}": r"\}",
                "~": r"\sim ", "^": r"\wedge ", "\\": r"\backslash "}.get(ch, ch)
    return "?"              # anything else pdflatex's utf8 input cannot typeset


def latex_escape(text: str) -> str:
    """Text safe inside LaTeX math: specials escaped, Greek letters and math symbols as
    commands, any other non-ASCII character replaced — the result always compiles."""
    return "".join(_latex_char(ch) for ch in unicodedata.normalize("NFC", str(text))).rstrip()


def _latex_word(word: str) -> str:
    """A base or subscript word: Greek as commands, one letter plain, words upright."""
    if word in GREEK:
        return "\\" + word
    if word in _GREEK_LETTERS:
        return "\\" + _GREEK_LETTERS[word]
    word = unicodedata.normalize("NFD", word)
    if any(mark in word for mark in _ACCENTS):   # x̂ inside a subscript: net_x̂1 → net_{\hat{x}1}
        return "".join(r"\%s{%s}" % (_ACCENTS[mark], _latex_word(ch)) if mark else _latex_word(ch)
                       for ch, mark in re.findall(r"(.)([\u0302\u0303\u0304\u0307]?)", word, re.S))
    tex = latex_escape(word)
    if len(word) == 1 or not re.search(r"[A-Za-z]{2,}", word):
        return tex
    return r"\mathrm{%s}" % tex


def _latex_sub(sub: str) -> str:
    if "_" in sub:          # E_total_o1: nested subscripts read as one word
        return _latex_word(sub.replace("_", ","))
    if re.fullmatch(r"[A-Za-z]+\d+", sub) and not re.search(r"[A-Za-z]{2,}", sub):
        return sub          # h1, o2: Mazur's unit names
    return _latex_word(sub)


def _signed(name: str):
    """('-', 'D̄(x)') for '−D̄(x)': a name that is a negation keeps its accent on its letter."""
    name = str(name)
    if len(name) > 1 and name[0] in "−-" and name[1] not in "−-":
        return "-", name[1:]
    return "", name


def latex_name(name: str) -> str:
    """A teaching name as LaTeX math (every character LaTeX can compile)."""
    sign, name = _signed(name)
    if sign:
        return "- " + latex_name(name)
    n = parse(name)
    tex = _latex_word(n.base)
    if n.accent:
        tex = r"\%s{%s}" % (n.accent, tex)
    if n.primes:
        tex += "'" * n.primes
    if n.sub:
        tex += "_{%s}" % _latex_sub(n.sub)
    sups = ([latex_escape(n.sup)] if n.sup else []) + ([r"\top"] if n.transposed and not n.index else [])
    if sups:
        tex += "^{%s}" % " ".join(sups)
    if n.arg:
        tex += r"\left(%s\right)" % latex_name(n.arg)
    if n.prefix:
        tex = r"\mathrm{%s}.%s" % (latex_escape(n.prefix), tex)
    if n.index:
        tex = _latex_index(tex, n)
    return tex


def _latex_index(tex: str, n: Name) -> str:
    """W1[0,1] → (W_{1})_{1,2}: the element, 1-based as the course counts."""
    parts = [p.strip() for p in n.index.split(",")]
    one_based = ",".join(str(int(p) + 1) if p.isdigit() else latex_escape(p) for p in parts)
    if n.sub or n.primes or n.prefix or n.arg:
        tex = r"\left(%s\right)" % tex
    return tex + "_{%s}" % one_based + (r"^{\top}" if n.transposed else "")


# -- Graphviz HTML-like labels -------------------------------------------------------------------

_HTML_ACCENT = {"hat": "\u0302", "tilde": "\u0303", "bar": "\u0304", "dot": "\u0307"}
_HTML_GREEK = {v: k for k, v in _GREEK_LETTERS.items()}


def html_name(name: str) -> str:
    """A teaching name as Graphviz HTML-like label text: real subscripts and superscripts."""
    sign, name = _signed(name)
    if sign:
        return "−" + html_name(name)
    n = parse(name)
    base = _HTML_GREEK.get(n.base, n.base)
    text = html.escape(unicodedata.normalize("NFC", base), quote=False)
    if n.accent:
        text += _HTML_ACCENT[n.accent]
    if n.prefix:
        text = html.escape(n.prefix, quote=False) + "." + text
    if n.sub:
        text += f"<SUB>{html.escape(unicodedata.normalize('NFC', n.sub), quote=False)}</SUB>"
    sups = n.sup + ("T" if n.transposed else "") + "′" * n.primes
    if sups:
        text += f"<SUP>{html.escape(sups, quote=False)}</SUP>"
    if n.arg:
        text += f"({html.escape(n.arg, quote=False)})"
    if n.index:
        text += f"[{n.index}]"
    return text


# -- numbers --------------------------------------------------------------------------------------

#: outside [SMALL, LARGE) numbers print as a × 10ⁿ
SMALL, LARGE = 1e-4, 1e6


def _exact(v: float, rounded: float) -> bool:
    """Rounding lost nothing but float noise: 0.4, 0.5, 0.3775 are the numbers themselves."""
    return rounded == v or abs(rounded - v) <= 1e-12 * abs(v)


def _parts(value, digits: int):
    """(sign, mantissa digits text, exponent, exact) of ``value`` to ``digits`` significant digits."""
    v = float(value)
    digits = max(1, int(digits))
    mant, _, exp = f"{v:.{digits - 1}e}".partition("e")
    exact = _exact(v, float(f"{mant}e{exp}"))
    if exact and "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return mant, int(exp), exact


def significant(value, digits: int = 6) -> str:
    """``value`` with ``digits`` significant digits (trailing zeros kept: they are digits),
    exact values exactly: 0.4, 0.5, 0.3775, 0.593270, 0.00877135, −0.00172048; outside
    1e-4 … 1e6 the exponent form Python reads back, 1.01134e-05."""
    v = float(value)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else ("inf" if v > 0 else "-inf") if math.isinf(v) else "nan"
    mant, exp, exact = _parts(v, digits)
    if not SMALL <= abs(float(f"{mant}e{exp}")) < LARGE:
        return f"{mant}e{exp:+03d}"
    decimals = max(0, max(1, int(digits)) - 1 - exp)
    text = f"{float(f'{mant}e{exp}'):.{decimals}f}"
    if exact and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _mantissa_exponent(text: str):
    mant, _, exp = text.partition("e")
    return mant, int(exp)


def number_latex(value, digits: int = 6) -> str:
    """A number for LaTeX: 0.0822, -0.0190491, 1.01134 \\times 10^{-5}."""
    text = significant(value, digits)
    if "e" in text and text not in ("inf", "-inf"):
        mant, exp = _mantissa_exponent(text)
        return rf"{mant} \times 10^{{{exp}}}"
    if text in ("inf", "-inf", "nan"):
        return {"inf": r"\infty", "-inf": r"-\infty", "nan": r"\mathrm{NaN}"}[text]
    return text


def number_html(value, digits: int = 6) -> str:
    """A number for an HTML-like label: 1.01134×10<SUP>−5</SUP>."""
    text = significant(value, digits)
    if "e" in text and text not in ("inf", "-inf"):
        mant, exp = _mantissa_exponent(text)
        return f"{mant.replace('-', '−')}×10<SUP>{'−' if exp < 0 else ''}{abs(exp)}</SUP>"
    return text.replace("-", "−")


_TEXT_SUP = dict(zip("0123456789-+", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺"))


def number_text(value, digits: int = 6) -> str:
    """A number in plain text, as the derivations' text shows it: 0.0822, 1.01134 × 10⁻⁵."""
    text = significant(value, digits)
    if "e" in text and text not in ("inf", "-inf"):
        mant, exp = _mantissa_exponent(text)
        return f"{mant} × 10{''.join(_TEXT_SUP[c] for c in str(exp))}"
    return text


# -- formulas (appended for the drawings: an op's formula with its constants, a loss in the
#    model's names) --------------------------------------------------------------------------------

_FRACTIONS = {(1, 2): "½", (1, 3): "⅓", (2, 3): "⅔", (1, 4): "¼", (3, 4): "¾"}
_SUP_DIGITS = dict(zip("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"))


def expr_text(expr, names=None) -> str:
    """A sympy expression as the course writes it in plain text: ``1 − 3·v``, ``½(t − y)²``.

    ``names`` maps symbols to the names to print (e.g. v0 → 'target'); positive terms come
    first, products use '·', squares and cubes superscripts."""
    return _Formula(names or {}, html_out=False).print(expr)


def expr_html(expr, names=None) -> str:
    """The same formula for a Graphviz HTML-like label: names by `html_name`, powers in <SUP>."""
    return _Formula(names or {}, html_out=True).print(expr)


class _Formula:
    """A small printer for the formulas of elementwise ops (Add, Mul, Pow, numbers, functions)."""

    def __init__(self, names, html_out):
        self.names, self.html = names, html_out

    def print(self, e) -> str:
        import sympy

        if isinstance(e, sympy.Symbol):
            name = str(self.names.get(e, e))
            return html_name(name) if self.html else name
        if isinstance(e, sympy.Rational) and not isinstance(e, sympy.Integer):
            return _FRACTIONS.get((int(e.p), int(e.q)), f"{e.p}/{e.q}")
        if isinstance(e, sympy.Number):
            return (number_html if self.html else number_text)(float(e), 6)
        if isinstance(e, sympy.Add):
            return self._add(e)
        if isinstance(e, sympy.Mul):
            return self._mul(e)
        if isinstance(e, sympy.Pow):
            return self._pow(e)
        if isinstance(e, sympy.Function):
            return f"{type(e).__name__}({', '.join(self.print(a) for a in e.args)})"
        text = str(e)
        return html.escape(text, quote=False) if self.html else text

    def _add(self, e):
        terms = sorted(e.args, key=lambda a: a.could_extract_minus_sign())   # positive terms first
        out = self.print(terms[0])
        for a in terms[1:]:
            out += f" − {self.print(-a)}" if a.could_extract_minus_sign() else f" + {self.print(a)}"
        return out

    def _mul(self, e):
        import sympy

        coeff, rest = e.as_coeff_Mul()
        if coeff < 0:
            return "−" + (self._factor(-e) if isinstance(-e, sympy.Add) else self.print(-e))
        num, den = [], []
        for f in sympy.Mul.make_args(rest):
            if isinstance(f, sympy.Pow) and f.exp.is_negative:
                den.append(f.base if f.exp == -1 else sympy.Pow(f.base, -f.exp))
            else:
                num.append(f)
        body = "·".join(self._factor(f) for f in num) or "1"
        if isinstance(coeff, sympy.Rational) and coeff.q != 1 and num and not body.startswith("("):
            body = (f"{self.print(sympy.Integer(coeff.p))}·" if coeff.p != 1 else "") + body
            den.insert(0, sympy.Integer(coeff.q))         # x/2, not ½·x
        elif coeff != 1:
            c = self.print(coeff)
            glue = "" if c in _FRACTIONS.values() and body.startswith("(") else "·"
            body = c + glue + body if num else c
        if den:
            d = "·".join(self._factor(f) for f in den)
            body += "/" + (f"({d})" if len(den) > 1 else d)
        return body

    def _pow(self, e):
        import sympy

        base, exp = e.args
        if exp == sympy.Rational(1, 2):
            return "√" + self._factor(base)
        if exp.is_negative:
            return "1/" + self._factor(sympy.Pow(base, -exp))
        b = self._factor(base)
        if isinstance(exp, sympy.Integer):
            x = str(int(exp))
            return b + (f"<SUP>{x}</SUP>" if self.html else "".join(_SUP_DIGITS[c] for c in x))
        x = self.print(exp)
        return b + (f"<SUP>{x}</SUP>" if self.html else f"^({x})")

    def _factor(self, e):
        """``e`` printed as one factor: sums, negative numbers and products in parentheses."""
        import sympy

        text = self.print(e)
        if isinstance(e, (sympy.Add, sympy.Mul)) or (isinstance(e, sympy.Number) and e < 0):
            return f"({text})"
        return text
