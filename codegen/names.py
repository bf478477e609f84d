"""Identifiers for graph nodes in generated code: readable, and never one of the module's own.

A node's name is what the user wrote ('w₁', 'dCE/dW1', 'lr'); the module has names of its
own (helpers, the locals train_epoch assigns, the forms derived from a buffer's name). A
graph name becomes a Python identifier as Python reads it (NFKC) and is kept apart from
those (tests/test_codegen_names.py reads every built-in model's module and fails on a name
of the module's that a graph node could take).
"""
from __future__ import annotations

import keyword
import re
import unicodedata

#: the generated loops' own names: indices, sizes, locals, builtins a graph name would shadow
RESERVED = {"np", "math", "numba", "njit", "gemm", "gemm_update", "view", "rows", "rows_at", "permuted", "strided", "carve", "work", "B", "nB", "i", "j", "k", "l", "m", "n", "o", "q", "p", "r",
            "c", "s", "w", "g", "step", "order", "start", "stop", "nb", "total", "loss", "acc", "zmax",
            "lse", "flat_params", "flat_grad", "sum", "max", "min", "abs", "range", "batch_size",
            # locals the emitters assign (softmax/CE rows, reductions): a buffer named like
            # one would clash in Numba's typing ("Cannot unify array and float64")
            "e", "inv", "row", "nb",
            "tt", "tau", "lo",  # the recurrence loops (codegen/lower_loop.py)
            *(f"f{d}" for d in range(8)), *(f"n{d}" for d in range(8))}  # fill / batched-matmul loops

#: Names the generated module gives its own things, so a graph name must not take them
#: (a parameter called 'lr' or 'matmul_nn' made Python refuse the module): the module's
#: functions and helpers, and the locals train_epoch and apply_update assign. Names with a
#: leading underscore are the generator's own already (`identifier` strips it from graph names).
INTERNAL_NAMES = {"JIT", "JIT_INNER", "GeneratedCompiler", "forward", "loss", "evaluate", "grad_step", "apply_update", "train_step", "train_epoch",
                  "first_row", "in_order", "k_batch", "first_step", "any_nonzero", "stack_to_cols",
                  "cols_to_stack", "mix64", "lr", "float", "int", "len", "bool", "isinstance"}
INTERNAL_PREFIXES = re.compile(r"^(?:matmul|copy|add|fill|swap01|cell|loops|nest|tanh|exp|state|layer_norm|sparse_ce|"
                               r"scatter_add)_(?!\d+$)")   # not matmul_2: the uniqueness suffix
#: the step helpers' names (codegen/step_helpers.py): a step kind, a digest, the dtype's tag
STEP_HELPER = re.compile(r"^(?:conv|pool|bias_grad|softmax_ce|row_softmax|segment)_[0-9a-f]{10}(?:_f32)?$")
#: endings the emitters give a buffer's name for their own locals and buffers ('h' → h_all,
#: h_data, h_ij; E → E_acc; lr → lr_per_step): 'h' and 'h_ij' cannot both be graph names
DERIVED_SUFFIXES = ("_all", "_data", "_acc", "_s_acc", "_i", "_ij", "_ijk", "_ijkl", "_s", "_per_step", "_view", "_v",
                    "_rows", *(f"_rows_{k}" for k in range(2, 10)))


def is_internal(name: str) -> bool:
    """True if the generated module may use ``name`` for something of its own."""
    return (name in RESERVED or name in INTERNAL_NAMES or bool(INTERNAL_PREFIXES.search(name))
            or bool(STEP_HELPER.match(name)))


def clashes(name: str, taken) -> bool:
    """True if a graph name ``name`` could meet a name the module uses, given the graph names
    ``taken`` so far (tests/test_codegen_names.py reads every built-in model's module and fails
    on a name this does not cover)."""
    return (name in taken or is_internal(name)
            or any(name.endswith(s) and name[:-len(s)] in taken for s in DERIVED_SUFFIXES)
            or any(name + s in taken for s in DERIVED_SUFFIXES))


def unique_name(hint: str, taken: set, prefix: str = "") -> str:
    """``prefix`` + the identifier of ``hint``, made distinct from ``taken`` and from the names
    the module uses (an input 'i' becomes 'i_', a second 'W' 'W_2'); added to ``taken``."""
    base = prefix + identifier(hint)
    if INTERNAL_PREFIXES.search(base):
        base = "v_" + base            # 'matmul_nn' → 'v_matmul_nn': no ending frees a helper's family
    elif is_internal(base) or (base not in taken and clashes(base, taken)):
        base += "_"
    name, k, sep = base, 2, "" if base.endswith("_") else "_"
    while clashes(name, taken):
        name, k = f"{base}{sep}{k}", k + 1
    taken.add(name)
    return name



def identifier(text: str) -> str:
    """A readable Python identifier from a node name ('dCE/dW1' → 'dCE_dW1', 'w₁' → 'w1').

    NFKC first, as Python reads identifiers: 'w₁' is not one ('₁' is no identifier
    character) and 'Ｗ' *is* 'W' to Python, so two names differing only there must be made
    distinct by the callers' uniqueness check, which compares the normalised text."""
    text = unicodedata.normalize("NFKC", text.replace("∂", "d").replace("Σ", "sum"))
    text = re.sub(r"\W+", "_", text)
    text = "".join(c if ("_" + c).isidentifier() else "_" for c in text).strip("_") or "v"
    if not text.isidentifier():   # a leading digit or combining mark
        text = "v" + text
    return text + "_" if keyword.iskeyword(text) else text
