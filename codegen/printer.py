"""sympy → Numba-ready Python source for one scalar expression, in one float dtype.

sympy's own Python printer does the work (``math.tanh``, ``max``, ``a if c else b``); this
subclass only keeps every number in the kernel's dtype (in float32 a bare ``1 - y**2``
would be computed in float64: Numba promotes float32 with a Python float), writes small
integer powers as products (no ``pow`` call) and prints array reads verbatim.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from .lower import CodegenError

PREC_MUL = PRECEDENCE["Mul"]

#: the generated modules' fast-math flags; without nnan/ninf: isnan/isinf keep working. The
#: stored kernels (generic_kernels.py, modern_kernels.py, scalar_math.py) write them out
#: (Numba's cache of a file sees only its text; their tests keep them equal to these)
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: what allocates in generated code (the flat convolutions' scratch rows, a copy of a strided view)
ALLOCATES = re.compile(r"\bnp\.(?:zeros|empty|ones|full|array|copy|ascontiguousarray)\(|\.copy\(\)")


def jit_settings(kernels) -> str:
    """The module's ``JIT``/``JIT_INNER`` settings for the texts of its functions ``kernels``.

    No C-callable wrapper: nothing takes a kernel's C address; no Python wrapper for what only
    compiled code calls (cells, helpers): each wrapper is more for LLVM to compile. Where no
    function allocates (every array is the caller's), no reference counting either (``_nrt``):
    Numba then emits no incref/decref around every array value, which cut 5–14 % of the large
    models' compile. An allocation such a module would make is a typing error, never silent.
    Numba's pipeline less what generated code never needs: codegen/pipeline.py."""
    allocates = any(ALLOCATES.search(text) for text in kernels)
    return (f"JIT = dict(cache=True, fastmath={{{', '.join(repr(f) for f in sorted(FASTMATH))}}}, "
            "error_model='numpy', no_cfunc_wrapper=True" + ("" if allocates else ", _nrt=False")
            + ", pipeline_class=GeneratedCompiler)"
            + ("" if allocates else "  # nothing here allocates: no reference counting") + "\n"
            "JIT_INNER = dict(JIT, no_cpython_wrapper=True)  # called only from compiled code\n")


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
        return f"{scalar_math('tanh', self.dtype, self.helpers)}({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return f"{scalar_math('exp', self.dtype, self.helpers)}({self._print(expr.args[0])})"

    def _print_Kept(self, expr):   # the value itself; the wrapper only stopped sympy's folding
        return f"({self._print(expr.args[0])})"

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

    # NaN in, NaN out, as NumPy's heaviside, sign, maximum and minimum: a comparison with NaN
    # is false, so each form below ends in the branch that returns x itself
    def _print_Heaviside(self, expr):
        x = self._print(expr.args[0])
        at0 = expr.args[1] if len(expr.args) > 1 else sympy.S.Half
        if at0 == 0:
            return f"({self._number(1)} if {x} > 0 else ({self._number(0)} if {x} <= 0 else {x}))"
        return (f"({self._number(1)} if {x} > 0 else ({self._print(at0)} if {x} == 0 else "
                f"({self._number(0)} if {x} < 0 else {x})))")

    def _print_sign(self, expr):
        x = self._print(expr.args[0])
        return (f"({self._number(1)} if {x} > 0 else ({self._number(-1)} if {x} < 0 else "
                f"({self._number(0)} if {x} == 0 else {x})))")

    def _print_Max(self, expr):
        return self._minmax("max", expr.args)

    def _print_Min(self, expr):
        return self._minmax("min", expr.args)

    def _minmax(self, fn, args):
        # nested two-argument calls: Numba types max(a, b) of equal dtypes as that dtype.
        # Numba's max(a, b) keeps a NaN a but not a NaN b: numbers go last, and a b that may be
        # NaN is tested (relu(NaN) must be NaN, as np.maximum gives, not 0)
        args = sorted(args, key=lambda a: a.is_number)
        out = self._print(args[0])
        for a in args[1:]:
            b = self._print(a)
            out = f"{fn}({out}, {b})" if a.is_number else f"({fn}({out}, {b}) if {b} == {b} else {b})"
        return out


def max_into(target: str, value: str) -> str:
    """The statement ``target = max(target, value)`` of a max-reduction, with a NaN sticking as
    in ``np.max`` (Numba's and Python's max keep a NaN only as their first argument: the value
    goes first while the target is a number; a NaN target is kept). ``value`` is printed once."""
    return f"{target} = max({value}, {target}) if {target} == {target} else {target}"


def print_expr(expr, dtype="float64") -> str:
    """One expression as kernel code (see `KernelPrinter`)."""
    return KernelPrinter(dtype).doprint(expr)


#: gemm and view (codegen/intrinsics.py says why), printed into every generated module
INTRINSICS_MARKER = "# -- printed into generated modules from here on --"
INTRINSICS = Path(__file__).with_name("intrinsics.py").read_text(encoding="utf-8").split(INTRINSICS_MARKER, 1)[1]


def reshaped(array: str, shape: str) -> str:
    """The text of ``array`` viewed with ``shape`` (a shape's text): the `view` intrinsic."""
    return f"view({array}, {shape})"


#: Small @njit helpers a module includes when its code calls them (other modules add theirs).
HELPERS: dict = {}

#: exp and tanh without a libm call, so loops vectorise (codegen/scalar_math.py), imported
#: by name; the digest in the import line recompiles a module when they change
SCALAR_MATH = {("exp", "float64"): "exp_f64", ("exp", "float32"): "exp_f32",
               ("tanh", "float64"): "tanh_f64", ("tanh", "float32"): "tanh_f32"}
_SCALAR_DIGEST = hashlib.sha256(Path(__file__).with_name("scalar_math.py").read_bytes()).hexdigest()[:12]
HELPERS.update({name: f"from codegen.scalar_math import {name}  # kernels {_SCALAR_DIGEST}"
                for name in SCALAR_MATH.values()})


def scalar_math(fn: str, dtype: str, helpers: set) -> str:
    """The name of the vectorisable ``fn`` ('exp', 'tanh') for ``dtype``, added to ``helpers``."""
    name = SCALAR_MATH[fn, dtype]
    helpers.add(name)
    return name


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
        self.strided: set = set()   # views Numba types as any layout ('A'): permuted, sliced
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

    def exp(self, arg: str) -> str:
        """The text of e**arg (the vectorisable exp of the dtype)."""
        return f"{scalar_math('exp', self.dtype, self.printer.helpers)}({arg})"

    def indent(self, n=1):
        self.depth += n

    def dedent(self, n=1):
        self.depth -= n
