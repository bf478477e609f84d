"""The view intrinsics build each array header as an SSA value (codegen/intrinsics.py).

Numba's own ``make_array`` proxy stores a header to a stack slot and loads every field back;
an epoch function makes hundreds of headers (carves, row views), and LLVM's SROA then spent a
large share of the compile taking those slots apart again. The headers are now built with
``insertvalue`` and read with ``extractvalue``: these tests lower each intrinsic alone and find
no stack slot and no load in its code, and check the fields a header carries
(size, strides, the shared data) against NumPy."""
import llvmlite.ir as ir
import numpy as np
import pytest
from numba import njit, types
from numba.core.registry import cpu_target

from codegen.intrinsics import carve, permuted, rows, rows_at, strided, view

F64_1D = types.Array(types.float64, 1, "C")
F64_2D = types.Array(types.float64, 2, "C")
F64_3D = types.Array(types.float64, 3, "C")
F64_2D_F = types.Array(types.float64, 2, "F")
PAIR = types.UniTuple(types.intp, 2)
TRIPLE = types.UniTuple(types.intp, 3)


def lowered(intrinsic, *argtypes) -> tuple:
    """The LLVM IR ``intrinsic`` emits in a function of its arguments (Numba's calling convention),
    and the LLVM type of the array header it returns."""
    context = cpu_target.target_context
    context.refresh()   # its lowering registries, as a compile loads them
    sig, codegen = intrinsic._defn(cpu_target.typing_context, *argtypes)
    module = context.create_module("header_test")
    fn = ir.Function(module, context.call_conv.get_function_type(sig.return_type, sig.args), "f")
    context.call_conv.decorate_function(fn, [f"a{i}" for i in range(len(sig.args))], sig.args)
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    args = context.get_arg_packer(sig.args).from_arguments(builder, context.call_conv.get_arguments(fn))
    codegen(context, builder, sig, args)
    return str(fn), str(context.get_value_type(sig.return_type))   # unterminated: only what it emitted

CASES = {
    "carve": (carve, F64_1D, types.intp, PAIR),
    "carve, one dimension": (carve, F64_1D, types.intp, types.intp),
    "view": (view, F64_2D, TRIPLE),
    "rows": (rows, F64_3D, types.intp),
    "rows of an F array": (rows, F64_2D_F, types.intp),
    "rows_at": (rows_at, F64_2D, types.intp, types.intp),
    "permuted": (permuted, F64_3D, TRIPLE),
    "strided": (strided, F64_2D),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_header_is_built_without_a_stack_slot(case):
    text, header = lowered(*CASES[case])
    # (the error path's own slot and load, Numba's try state and exception, are not headers)
    for op in ("alloca", "load", "getelementptr inbounds"):   # what make_array's proxy emits
        assert f"{op} {header}" not in text, f"{case}: a header in memory:\n{text}"
    if case != "strided":   # strided returns its argument as it came
        assert f"insertvalue {header}" in text, text

def test_the_header_fields_are_numpys():
    @njit
    def headers(work, m):
        a = carve(work, 4, (3, 5))
        b = view(a, (5, 3))
        c = rows(a, m)
        d = rows_at(a, 1, m)
        e = permuted(view(a, (3, 5, 1)), (2, 0, 1))
        return (a.size, a.strides, b.size, b.strides, c.size, c.shape, d.size, d[0, 0],
                e.size, e.shape, e.strides, strided(a).size)

    work = np.arange(40.0)
    a = work[4:19].reshape(3, 5)
    e = a.reshape(3, 5, 1).transpose(2, 0, 1)
    assert headers(work, 2) == (15, a.strides, 15, a.reshape(5, 3).strides, 10, (2, 5), 10, a[1, 0],
                                15, e.shape, e.strides, 15)
    a_view = njit(lambda w: carve(w, 4, (3, 5)))(work)
    a_view[0, 0] = -1.0
    assert work[4] == -1.0   # the same memory
