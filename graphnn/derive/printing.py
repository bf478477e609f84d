"""How derivations print: teaching names, the course's sign forms, numbers, matrices.

Everything a derivation shows is LaTeX made here; documents.py turns it into text,
Markdown, HTML or a PDF. The printer is sympy's LaTeX printer with four changes:

- symbols print as the course writes them (``out_o1`` → \\mathrm{out}_{o1}, ``w5`` → w_{5});
- a sum prints its positive terms first (``target_o1 − out_o1``, not ``−out_o1 + target_o1``);
- ``Partial(E, w)`` / ``Total(E, w)`` print as ∂E/∂w and dE/dw;
- ``signed(c, A)`` keeps a factored form such as −(target_o1 − out_o1), which sympy
  would otherwise normalise to out_o1 − target_o1;
- floats print with six decimals (``number``), so a line reads 0.741365 · 0.186816.
"""
from __future__ import annotations

import math
import re

import numpy as np
import sympy
from sympy.printing.latex import LatexPrinter

_GREEK = set("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho "
             "sigma tau upsilon phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi "
             "Omega".split())
#: optimizer hyperparameter names → the course's letters
HYPER_LATEX = {"lr": r"\eta", "mu": r"\mu", "beta1": r"\beta_{1}", "beta2": r"\beta_{2}",
               "eps": r"\varepsilon", "alpha": r"\alpha"}


class Partial(sympy.Function):
    """∂ of / ∂ wrt: one factor of a chain (an immediate partial derivative)."""
    nargs = 2


class Total(sympy.Function):
    """d of / d wrt: the whole derivative, every path summed."""
    nargs = 2


class Signed(sympy.Function):
    """coefficient · (group), printed factored: Signed(-1, t - y) is −(t − y)."""
    nargs = 2

    def doit(self, **hints):
        return self.args[0] * self.args[1]


def signed(coefficient, group):
    return Signed(sympy.sympify(coefficient), group, evaluate=False)


def _word(text: str) -> str:
    text = text.replace("_", r"\_")
    return text if len(text) == 1 else r"\mathrm{%s}" % text


def _head(head: str) -> str:
    if head in _GREEK:
        return "\\" + head
    return _word(head)


def symbol_latex(name: str) -> str:
    """A teaching name as LaTeX: w5 → w_{5}, out_o1 → \\mathrm{out}_{o1}, E_total → E_{\\mathrm{total}}."""
    primes = ""
    m = re.fullmatch(r"(.*?)'(\d*)", name)
    if m:  # GradRecord makes clashing names unique as name'k
        name, primes = m.group(1), "'" * min(int(m.group(2) or 1), 3)
    m = re.fullmatch(r"(.+)\[([\d,\s]+)\]", name)
    if m:  # an unnamed element: W1[0,1]
        return f"{symbol_latex(m.group(1))}[{m.group(2)}]{primes}"
    head, _, sub = name.partition("_")
    if not sub:
        m = re.fullmatch(r"([A-Za-z]+)(\d+)", head)
        if m:
            return f"{_head(m.group(1))}_{{{m.group(2)}}}{primes}"
        return _head(head) + primes
    if sub == "hat":
        return r"\hat{%s}%s" % (_head(head), primes)
    sub_tex = r"\mathrm{%s}" % sub.replace("_", r"\_") if re.search(r"[A-Za-z]{2,}", sub) else sub
    return f"{_head(head)}_{{{sub_tex}}}{primes}"


def number(value, digits: int = 6) -> str:
    """A value as the course prints it: 0.741365, 0.593270; tiny/huge ones as a·10^{k}."""
    v = float(value)
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return r"\infty" if v > 0 else r"-\infty"
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:.{digits}f}"
    if 1e-5 <= abs(v) < 1e-3:  # 0.000438568: still readable as a decimal
        return f"{v:.{digits}g}"
    mant, exp = f"{v:.{digits - 1}e}".split("e")
    return rf"{mant} \cdot 10^{{{int(exp)}}}"


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

    def _print_Pow(self, expr):
        base = expr.base
        if isinstance(base, sympy.Symbol) and base in self.names and expr.exp.is_Integer \
                and expr.exp > 0:
            # a name printed as a fraction or a number: (dE/dw)², (6.75·10⁻⁶)²
            return r"\left(%s\right)^{%s}" % (self.names[base], self._print(expr.exp))
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

    def _print_Total(self, expr, exp=None):
        of, wrt = (self._print(a) for a in expr.args)
        return r"\frac{d%s}{d%s}" % (of, wrt)

    def _print_Signed(self, expr, exp=None):
        c, group = expr.args
        inner = r"\left(%s\right)" % self._print(group)
        if c == 1:
            return self._print(group)
        if c == -1:
            return "-" + inner
        return self._print(c) + " " + inner


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
        if len(factors) > 1 and (isinstance(f, sympy.Add) or (isinstance(f, str) and _needs_brackets(tex))):
            tex = r"\left(%s\right)" % tex
        out.append(tex)
    return r" \cdot ".join(out) if out else "1"


def _needs_brackets(tex: str) -> bool:
    """A bare number or product prints as is; a negative number or a sum gets brackets."""
    t = tex.strip()
    if t.startswith("-"):
        return True
    depth = 0
    for i, ch in enumerate(t):
        depth += {"{": 1, "}": -1, "(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and ch in "+-" and i > 0:
            return True
    return False


def numbers(values) -> str:
    """Numbers joined by ·, negative ones bracketed: 0.741365 \\cdot (-0.217072)."""
    values = list(values)
    return r" \cdot ".join(f"\\left({number(v)}\\right)" if float(v) < 0 and len(values) > 1
                           else number(v) for v in values)


#: rows/columns shown before a matrix is abbreviated with ⋯ (numpy-style summary)
MATRIX_EDGE = 3


def matrix(value, text_mode: bool = False) -> str:
    """A small array as a bracketed matrix (a row vector for 1-d, a number for 0-d).

    Matrices with more than 2·MATRIX_EDGE + 1 rows or columns show their first
    MATRIX_EDGE and last row/column around ⋯ / ⋮. ``text_mode`` writes [a, b; c, d],
    which the plain-text renderer can show (it does not lay out LaTeX matrix environments).
    """
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return number(arr)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim > 2:
        arr = arr.reshape(-1, arr.shape[-1])
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
        return r"\left[" + "; ".join(", ".join(r) for r in rows) + r"\right]"
    return r"\begin{bmatrix} %s \end{bmatrix}" % r" \\ ".join(" & ".join(r) for r in rows)


def shape_latex(shape) -> str:
    """(1, 2) → 1 \\times 2; the batch axis prints as B."""
    dims = ["B" if d is None else str(d) for d in shape] or ["1"]
    if len(dims) == 1:
        dims = ["1"] + dims
    return r" \times ".join(dims)
