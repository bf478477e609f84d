"""How derivations print: teaching names, the course's sign forms, numbers, matrices.

Everything a derivation shows is LaTeX made here; documents.py turns it into text,
Markdown, HTML or a PDF. The printer is sympy's LaTeX printer with these changes:

- symbols print as the course writes them, through `graphnn.notation.latex_name`
  (``out_o1`` → \\mathrm{out}_{o1}, ``w5`` → w_{5}, ``x̂`` → \\hat{x}); a derivation may
  give a symbol a display name of its own (``names``);
- a sum prints its positive terms first (``target_o1 − out_o1``, not ``−out_o1 + target_o1``);
- ``Partial(E, w)`` and ``Total(E, w)`` both print as ∂E/∂w, as the course writes them
  (Total is the whole derivative, every path summed; the record's links are Partials);
- ``signed(c, A)`` keeps a factored form such as −(target_o1 − out_o1), which sympy
  would otherwise normalise to out_o1 − target_o1;
- a step function's derivative H(x) prints as the indicator 𝟙[x > 0];
- numbers print with the derivation's significant digits (`precision`, default 6), exact
  ones exactly (0.4, η = 0.5), tiny and huge ones as 1.01134 × 10⁻⁵.
"""
from __future__ import annotations

import contextlib
import contextvars
import re

import numpy as np
import sympy
from sympy.printing.latex import LatexPrinter

from ..notation import latex_name, number_latex

#: optimizer hyperparameter names → the course's letters
HYPER_LATEX = {"lr": r"\eta", "mu": r"\mu", "beta1": r"\beta_{1}", "beta2": r"\beta_{2}",
               "eps": r"\varepsilon", "alpha": r"\alpha"}

#: significant digits of every printed number (set by derive(precision=…) and at render time)
PRECISION: contextvars.ContextVar = contextvars.ContextVar("graphnn_derive_precision", default=6)
#: symbol name → display LaTeX for the derivation being built or rendered
DISPLAY: contextvars.ContextVar = contextvars.ContextVar("graphnn_derive_display", default=None)


@contextlib.contextmanager
def printing(precision: int | None = None, display: dict | None = None):
    """Print numbers with ``precision`` significant digits and symbols by ``display`` inside."""
    tokens = [PRECISION.set(int(precision))] if precision is not None else []
    dtoken = DISPLAY.set(display) if display is not None else None
    try:
        yield
    finally:
        if dtoken is not None:
            DISPLAY.reset(dtoken)
        for t in tokens:
            PRECISION.reset(t)


class DisplayNames(dict):
    """Display names a derivation gives symbols: ready entries, plus lookups (functions of a
    symbol name returning LaTeX or None) tried in order."""

    def __init__(self):
        super().__init__()
        self.lookups = []

    def add(self, lookup):
        self.lookups.append(lookup)

    def __contains__(self, name):
        if dict.__contains__(self, name):
            return True
        for lookup in self.lookups:
            if name in lookup:
                self[name] = lookup[name]
                return True
        return False


class Partial(sympy.Function):
    """∂ of / ∂ wrt: one factor of a chain (an immediate partial derivative)."""
    nargs = 2


class Total(sympy.Function):
    """∂ of / ∂ wrt for the whole derivative, every path summed."""
    nargs = 2


class Signed(sympy.Function):
    """coefficient · (group), printed factored: Signed(-1, t - y) is −(t − y)."""
    nargs = 2

    def doit(self, **hints):
        return self.args[0] * self.args[1]


def signed(coefficient, group):
    return Signed(sympy.sympify(coefficient), group, evaluate=False)


def factored(expr, forward):
    """−(target − out) rather than out − target: a derivative that is a multiple of a
    difference appearing in the op's own formula ``forward`` prints as that multiple."""
    if not isinstance(expr, sympy.Add):
        return expr
    for group in sorted(forward.atoms(sympy.Add), key=sympy.count_ops):
        ratio = sympy.simplify(expr / group)
        if ratio.is_Number and ratio not in (0, 1):
            return signed(ratio, group)
    return expr


def operand_names(names: dict, expr) -> dict:
    """``names`` (symbol → LaTeX) with each name that is a sum or starts with a sign bracketed
    where ``expr`` uses it as an operand: −(−D) and e^{−1·(−D)}, never e^{− 1 − D}. A name
    that only ever appears whole, or as a function's argument (σ(−D) has its own brackets),
    stays bare."""
    out = dict(names)
    for sym, tex in names.items():
        if isinstance(tex, str) and needs_brackets(tex) and sym in getattr(expr, "free_symbols", ()) \
                and expr != sym and not all(isinstance(p, sympy.Function) for p in _users(expr, sym)):
            out[sym] = r"\left(%s\right)" % tex
    return out


def _users(expr, sym):
    """The sub-expressions of ``expr`` that have ``sym`` as a direct argument."""
    return [e for e in sympy.preorder_traversal(expr) if sym in e.args]


def integral_floats(expr):
    """1.0·x as 1·x (so −1.0·x prints −x): floats that are whole numbers become integers."""
    if not isinstance(expr, sympy.Basic):
        return expr
    return expr.xreplace({f: sympy.Integer(int(f)) for f in expr.atoms(sympy.Float) if float(f).is_integer()})


def symbol_latex(name: str) -> str:
    """A teaching name as LaTeX (the derivation's display name if it gave one)."""
    display = DISPLAY.get()
    if display is not None and name in display:
        return display[name]
    return latex_name(name)


def number(value, digits: int | None = None) -> str:
    """A value as the course prints it: N significant digits, exact values exactly."""
    return number_latex(value, PRECISION.get() if digits is None else digits)


#: two numbers side by side in a product: a number (or a bracketed negative one) before a
#: bracketed negative number, or a bracketed negative number before a digit
_NUMBER_THEN_NEGATIVE = re.compile(r"(?:(?<=\d)|(?<=\\right\)))\s+(?=\\left\(-\s*[\d.])|(?<=\\right\))\s+(?=\d)")


#: a function's argument that is itself a bracketed number: \left(\left(-0.5\right) \right)
_BRACKETED_ARGUMENT = re.compile(r"\\left\(\\left\((-[^()]*)\\right\) \\right\)")


class TeachingPrinter(LatexPrinter):
    """sympy's LaTeX printer speaking the course's notation (see the module docstring)."""

    def __init__(self, names: dict | None = None, **settings):
        super().__init__(settings)
        self.names = names or {}

    def _print_Symbol(self, expr, style="plain"):
        if expr in self.names:
            return self.names[expr]
        return symbol_latex(expr.name)

    def _print_Float(self, expr):
        return number(expr)

    def _print_Mul(self, expr):
        # sympy writes · only between two bare digits (1 · 0); a bracketed negative number
        # (a substituted value) would follow with a bare space: 1 (−2) reads as a call
        return _NUMBER_THEN_NEGATIVE.sub(r" \\cdot ", super()._print_Mul(expr))

    def _print_Function(self, expr, exp=None):
        # a bracketed negative number as the argument keeps one pair: tanh(−0.5), not tanh((−0.5))
        return _BRACKETED_ARGUMENT.sub(r"\\left(\1 \\right)", super()._print_Function(expr, exp))

    def _print_Heaviside(self, expr, exp=None):
        x = self._print(expr.args[0])
        rel = ">" if len(expr.args) < 2 or expr.args[1] == 0 else r"\geq"
        return r"\mathbf{1}\left[%s %s 0\right]" % (x, rel)

    def _print_Pow(self, expr):
        base = expr.base
        if isinstance(base, sympy.Symbol) and base in self.names and expr.exp.is_Integer \
                and expr.exp > 0:
            # a name printed as a fraction, a number or a formula: (∂E/∂w)², (6.75·10⁻⁶)², tanh(c)²
            tex = self.names[base]
            if needs_brackets(tex) or "\\frac" in tex or " " in tex.strip() or "\\left" in tex:
                tex = r"\left(%s\right)" % tex
            return r"%s^{%s}" % (tex, self._print(expr.exp))
        return super()._print_Pow(expr)

    def _print_Add(self, expr, order=None):
        terms = self._as_ordered_terms(expr, order=order)
        terms = [t for t in terms if not t.could_extract_minus_sign()] + \
                [t for t in terms if t.could_extract_minus_sign()]
        tex = ""
        for i, term in enumerate(terms):
            if i == 0:
                pass
            elif term.could_extract_minus_sign():
                tex += " - "
                term = -term
            else:
                tex += " + "
            term_tex = self._print(term)
            if self._needs_add_brackets(term):
                term_tex = r"\left(%s\right)" % term_tex
            tex += term_tex
        return tex

    def _print_Partial(self, expr, exp=None):
        of, wrt = (self._print(a) for a in expr.args)
        return r"\frac{\partial %s}{\partial %s}" % (of, wrt)

    _print_Total = _print_Partial

    def _print_Signed(self, expr, exp=None):
        c, group = expr.args
        inner = r"\left(%s\right)" % self._print(group)
        if c == 1:
            return self._print(group)
        if c == -1:
            return "-" + inner
        return self._print(c) + " " + inner


class ElementwisePrinter(TeachingPrinter):
    """Products of arrays as the course writes them elementwise: f_t ⊙ c_{t−1}, v ⊙ net
    (``arrays``: the symbols that stand for arrays; numbers and scalars still multiply)."""

    def __init__(self, names=None, arrays=(), **settings):
        super().__init__(names, **settings)
        self.arrays = set(arrays)

    def _print_Mul(self, expr):
        coeff, factors = expr.as_coeff_mul()
        if sum(1 for f in factors if f.free_symbols & self.arrays) < 2:
            return super()._print_Mul(expr)
        texs = []
        for f in factors:
            tex = self._print(f)
            texs.append(r"\left(%s\right)" % tex if isinstance(f, sympy.Add) else tex)
        body = r" \odot ".join(texs)
        if coeff == 1:
            return body
        if coeff == -1:
            return "-" + body
        return self._print(coeff) + r" \, " + body


def latex(expr, names: dict | None = None, mul_symbol: str | None = None) -> str:
    """LaTeX of a sympy expression (or a plain number) in the course's notation.

    ``names`` maps symbols to ready LaTeX (a number, η); products of partials use ·.
    """
    if isinstance(expr, (int, float, np.floating, np.integer)):
        return number(expr)
    if mul_symbol is None and _has_partials(expr):
        mul_symbol = "dot"
    return TeachingPrinter(names, mul_symbol=mul_symbol).doprint(expr)


def _has_partials(expr) -> bool:
    return isinstance(expr, sympy.Basic) and expr.has(Partial, Total)


def product(factors, names=None) -> str:
    """Factors joined by ·, each bracketed when it is a sum (a chain of partials reads left to right)."""
    out = []
    for f in factors:
        tex = f if isinstance(f, str) else latex(f, names)
        # a sum, or a negative factor after the first (· −u₁u₂ · reads as a minus sign)
        if len(factors) > 1 and (isinstance(f, sympy.Add) or needs_brackets(tex)) and (out or isinstance(f, (str, sympy.Add))):
            tex = r"\left(%s\right)" % tex
        out.append(tex)
    return r" \cdot ".join(out) if out else "1"


def needs_brackets(tex: str) -> bool:
    """A bare number or product prints as is; a negative number or a sum gets brackets."""
    t = tex.strip()
    if t.startswith("-"):
        return True
    t = re.sub(r"\\begin\{(\w+)\}.*?\\end\{\1\}", "M", t, flags=re.S)   # a matrix is one thing
    depth = 0
    for i, ch in enumerate(t):
        depth += {"{": 1, "}": -1, "(": 1, ")": -1, "[": 1, "]": -1}.get(ch, 0)
        if depth == 0 and ch in "+-" and i > 0:
            return True
    return False


def signed_number(v) -> str:
    """A number as a factor or a term: negative ones in brackets, (−0.0190491)."""
    return rf"\left({number(v)}\right)" if float(v) < 0 else number(v)


def numbers(values, joiner: str = r" \cdot ") -> str:
    """Numbers joined by · (or ``joiner``), negative ones after the first bracketed:
    0.741365 · (−0.217072), 0.0553994 + (−0.0190491)."""
    values = list(values)
    if len(values) == 1:
        return number(values[0])
    return joiner.join(signed_number(v) if k or joiner == r" \cdot " else number(v)
                       for k, v in enumerate(values))


#: rows/columns shown before a matrix is abbreviated with ⋯ (numpy-style summary)
MATRIX_EDGE = 3


def matrix(value, text_mode: bool = False) -> str:
    """A small array as a bracketed matrix (a row vector for 1-d, a number for 0-d).

    Matrices with more than 2·MATRIX_EDGE + 1 rows or columns show their first
    MATRIX_EDGE and last row/column around ⋯ / ⋮; a stack of them (B × C × H × W) its
    first, marked _(1,1,:,:). ``text_mode`` writes [a, b; c, d],
    which the plain-text renderer can show (it does not lay out LaTeX matrix environments).
    """
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return number(arr)
    if arr.ndim == 1:
        arr = arr[None, :]
    where = ""
    if arr.ndim > 2:        # an image stack: its first matrix, and which one it is (1-based)
        where = "_{(%s)}" % ",".join(["1"] * (arr.ndim - 2) + [":", ":"])
        arr = arr[(0,) * (arr.ndim - 2)]
    dots = ("…", "⋮", "⋱") if text_mode else (r"\cdots", r"\vdots", r"\ddots")
    rows = [[number(v) for v in row] for row in arr]
    if arr.shape[1] > 2 * MATRIX_EDGE + 1:
        rows = [r[:MATRIX_EDGE] + [dots[0]] + r[-1:] for r in rows]
    if arr.shape[0] > 2 * MATRIX_EDGE + 1:
        gap = [dots[1]] * len(rows[0])
        if arr.shape[1] > 2 * MATRIX_EDGE + 1:
            gap[MATRIX_EDGE] = dots[2]
        rows = rows[:MATRIX_EDGE] + [gap] + rows[-1:]
    if text_mode:
        return r"\left[" + "; ".join(", ".join(r) for r in rows) + r"\right]" + where
    return r"\begin{bmatrix} %s \end{bmatrix}" % r" \\ ".join(" & ".join(r) for r in rows) + where


def shape_latex(shape) -> str:
    """(1, 2) → 1 \\times 2; the batch axis prints as B."""
    dims = ["B" if d is None else str(d) for d in shape] or ["1"]
    if len(dims) == 1:
        dims = ["1"] + dims
    return r" \times ".join(dims)
