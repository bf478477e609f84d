"""sympy → Numba-ready Python source for one scalar expression, in one float dtype.

sympy's own Python printer does the work (``math.tanh``, ``max``, ``a if c else b``); this
subclass only keeps every number in the kernel's dtype (in float32 a bare ``1 - y**2``
would be computed in float64: Numba promotes float32 with a Python float), writes small
integer powers as products (no ``pow`` call) and prints array reads verbatim.
"""
from __future__ import annotations

from pathlib import Path

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from .lower import CodegenError

PREC_MUL = PRECEDENCE["Mul"]


class KernelPrinter(PythonCodePrinter):
    """Prints expressions whose symbols are code (``h[i, j]``, ``d_z``) for dtype float64/float32."""

    def __init__(self, dtype="float64"):
        super().__init__({"standard": "python3", "fully_qualified_modules": True})
        self.dtype = dtype
        self.helpers: set = set()    # helper functions (HELPERS) the printed code calls

    # numbers: in the kernel's dtype
    def _number(self, value: float) -> str:
        value = float(value)
        text = repr(value) if value == value and abs(value) != float("inf") else \
            ("math.nan" if value != value else ("-math.inf" if value < 0 else "math.inf"))
        return text if self.dtype == "float64" else f"np.float32({text})"

    def _print_Float(self, expr):
        return self._number(float(expr))

    def _print_Integer(self, expr):
        return self._number(int(expr))

    def _print_Rational(self, expr):
        return self._number(float(expr))

    def _print_Half(self, expr):
        return self._number(0.5)

    def _print_Exp1(self, expr):
        return self._number(float(sympy.E))

    def _print_Pi(self, expr):
        return self._number(float(sympy.pi))

    def _print_NaN(self, expr):
        return self._number(float("nan"))

    # symbols are already code: array reads, locals
    def _print_Symbol(self, expr):
        return expr.name

    def _print_tanh(self, expr):
        name = "tanh_f32" if self.dtype == "float32" else "tanh_f64"
        self.helpers.add(name)
        return f"{name}({self._print(expr.args[0])})"

    def _print_Indexed(self, expr):
        return f"{expr.base}[{', '.join(str(i) for i in expr.indices)}]"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 1 <= int(exp) <= 4:
            factor = self.parenthesize(base, PREC_MUL)
            # parenthesised: sympy prints a/b**2 as a/<b**2>, which must stay a/(b*b)
            return "*".join([factor] * int(exp)) if int(exp) == 1 else "(" + "*".join([factor] * int(exp)) + ")"
        if exp.is_Integer and -4 <= int(exp) <= -1:
            if exp == -1:
                return f"{self._number(1)}/{self.parenthesize(base, PREC_MUL + 1)}"
            return f"{self._number(1)}/({self._print(sympy.Pow(base, -exp, evaluate=False))})"
        if exp == sympy.S.Half:
            return f"math.sqrt({self._print(base)})"
        if exp == -sympy.S.Half:
            return f"{self._number(1)}/math.sqrt({self._print(base)})"
        return super()._print_Pow(expr, rational=rational)

    def _print_Heaviside(self, expr):
        x = self._print(expr.args[0])
        at0 = expr.args[1] if len(expr.args) > 1 else sympy.S.Half
        if at0 == 0:
            return f"({self._number(1)} if {x} > 0 else {self._number(0)})"
        return (f"({self._number(1)} if {x} > 0 else "
                f"({self._print(at0)} if {x} == 0 else {self._number(0)}))")

    def _print_sign(self, expr):
        x = self._print(expr.args[0])
        return f"({self._number(1)} if {x} > 0 else ({self._number(-1)} if {x} < 0 else {self._number(0)}))"

    def _print_Max(self, expr):
        return self._minmax("max", expr.args)

    def _print_Min(self, expr):
        return self._minmax("min", expr.args)

    def _minmax(self, fn, args):
        # nested two-argument calls: Numba types max(a, b) of equal dtypes as that dtype
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{fn}({out}, {self._print(a)})"
        return out


def print_expr(expr, dtype="float64") -> str:
    """One expression as kernel code (see `KernelPrinter`)."""
    return KernelPrinter(dtype).doprint(expr)


#: gemm and view (codegen/intrinsics.py says why), printed into every generated module
INTRINSICS_MARKER = "# -- printed into generated modules from here on --"
INTRINSICS = Path(__file__).with_name("intrinsics.py").read_text(encoding="utf-8").split(INTRINSICS_MARKER, 1)[1]


def reshaped(array: str, shape: str) -> str:
    """The text of ``array`` viewed with ``shape`` (a shape's text): the `view` intrinsic."""
    return f"view({array}, {shape})"


#: Small @njit helpers a module includes when its code calls them.
HELPERS = {
    "tanh_f64": '''
@njit(inline="always", **JIT)
def tanh_f64(x):
    """tanh in float64 without a libm call (≤ 4 ulp; ~7x faster here, and loops vectorise).

    u = expm1(−2|x|/64) by its Taylor series, then six doublings expm1(2z) = u(u + 2)
    give expm1(−2|x|) to full relative precision; tanh|x| = −u / (2 + u).
    """
    a = min(abs(x), 20.0)
    z = a * (-2.0 / 64.0)
    u = z * (1.0 + z * (1.0 / 2 + z * (1.0 / 6 + z * (1.0 / 24 + z * (1.0 / 120 + z * (1.0 / 720 + z * (
        1.0 / 5040 + z * (1.0 / 40320 + z * (1.0 / 362880 + z * (1.0 / 3628800 + z * (1.0 / 39916800 + z * (
            1.0 / 479001600 + z * (1.0 / 6227020800 + z * (1.0 / 87178291200))))))))))))))
    for _ in range(6):
        u = u * (u + 2.0)
    t = -u / (2.0 + u)
    return t if x >= 0 else -t
''',
    "tanh_f32": '''
@njit(inline="always", **JIT)
def tanh_f32(x):
    """tanh in float32 as a rational function (Eigen's fast tanh, error of a few ulp).

    libm's tanhf is a scalar call; this is branch-free arithmetic, so loops vectorise.
    """
    x = max(np.float32(-7.90531110763549805), min(np.float32(7.90531110763549805), x))
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q
''',
}


INDENT = "    "

#: (expression, dtype) -> (its text, the helpers it calls): the same statements recur in forward,
#: loss, grad_step, evaluate and train_epoch, and sympy's printer is most of a cached start's
#: time (building the transformer's backend in a new process: 0.48 → 0.33 s)
_PRINTED: dict = {}


class Writer:
    """Accumulates indented source lines; knows the dtype and prints expressions."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.printer = KernelPrinter(dtype)
        self.lines: list = []
        self.depth = 1
        self.ranks: dict = {}   # array name -> rank, where known (the program's arguments, views)
        self.specialise = False   # tiny products with literal sizes (a recurrence's step)

    def __call__(self, line=""):
        self.lines.append(INDENT * self.depth + line if line else "")

    def expr(self, e) -> str:
        key = (e, self.dtype)
        hit = _PRINTED.get(key)
        if hit is None:
            mine, self.printer.helpers = self.printer.helpers, set()   # what this expression alone calls
            try:
                text = self.printer.doprint(e)
            except Exception as err:   # sympy: a function with no Python/Numba spelling
                why = " ".join(str(err).splitlines()[0].split())   # not sympy's advice on printer options
                raise CodegenError(f"codegen: cannot print {e} as kernel code ({why}); the compiled backends "
                                   "have no spelling for it: train with backend='numpy'") from None
            finally:
                mine, self.printer.helpers = self.printer.helpers, mine
            if len(_PRINTED) > 100_000:
                _PRINTED.clear()
            hit = _PRINTED[key] = (text, frozenset(mine))
        self.printer.helpers |= hit[1]
        return hit[0]

    def num(self, value) -> str:
        return self.printer._number(value)

    def indent(self, n=1):
        self.depth += n

    def dedent(self, n=1):
        self.depth -= n
