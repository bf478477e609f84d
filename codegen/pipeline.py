"""The Numba pipeline of the generated modules: Numba's nopython pipeline less the passes
generated code never needs, and Numba's whole pipeline again wherever that would not do.

Dropped (each pass walks the whole function, and most then re-run Numba's IR
post-processing: use-defs, live variables, ...):
- closure inlining (``InlineClosureLikes``): generated code has no closures, no nested
  functions, no comprehensions;
- the rewrites before and after typing (semantic constants, dead-branch pruning, static
  getitems, array expressions): generated code indexes tuples by type, has no constant
  branches and no array expressions (codegen's printers write loops);
- SSA reconstruction (``ReconstructSSA``). Without it each variable has one type, the
  unification of all its definitions'; with it each definition has its own. The two agree
  when every definition of a variable defined more than once already has the variable's
  type, and `SameTypesAsSSA`, run right after typing, checks exactly that. The generated
  code reuses loop variables and accumulators (``_ii``, ``_acc``, ``zmax``) with one type
  each, and a Numba that typed them apart would lower the same arithmetic.

If the trimmed pipeline fails in any way — a typing error, or a variable `SameTypesAsSSA`
finds typed differently (a float32 accumulator started at an integer literal, two views of
different layouts under one name) — Numba's full pipeline compiles the function again from
its bytecode (``CompilerBase`` tries its pipelines in order), and the function is listed in
`FELL_BACK`: never a different result, at worst the compile time saved lost. What it
bought: docs/codegen.md, "Cut in the sixteenth session".
"""
from __future__ import annotations

from numba.core import errors, ir, types
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import AnalysisPass, register_pass
from numba.core.ir_utils import build_definitions
from numba.core.typed_passes import NopythonRewrites, NopythonTypeInference
from numba.core.untyped_passes import (DeadBranchPrune, GenericRewrites, InlineClosureLikes,
                                       ReconstructSSA, RewriteSemanticConstants)

__all__ = ["GeneratedCompiler", "FELL_BACK"]

#: passes the generated code does not need (the module docstring says why)
DROPPED = (InlineClosureLikes, RewriteSemanticConstants, DeadBranchPrune, GenericRewrites,
           NopythonRewrites, ReconstructSSA)

#: "module.function": compiled by Numba's full pipeline after the trimmed one failed
FELL_BACK: list = []


class TypedApartUnderSSA(errors.NumbaError):
    """A variable's definitions have types other than the variable's: only SSA keeps them apart."""


def _definition_type(value, state):
    """The type ``value`` (the right-hand side of an assignment) has by itself, or None."""
    typemap, calltypes, typingctx = state.typemap, state.calltypes, state.typingctx
    if isinstance(value, ir.Var):
        return typemap.get(value.name)
    if isinstance(value, ir.Arg):
        return state.args[value.index]
    if isinstance(value, (ir.Const, ir.Global, ir.FreeVar)):
        try:
            return typingctx.resolve_value_type(value.value)
        except (errors.NumbaError, ValueError, TypeError):
            return None
    if isinstance(value, ir.Expr):
        sig = calltypes.get(value)
        if sig is not None:
            return sig.return_type
        if value.op == "getattr" and value.value.name in typemap:
            return typingctx.resolve_getattr(typemap[value.value.name], value.attr)
    return None  # an expression whose own type this pass cannot tell: assume it differs


def typed_apart(state) -> list:
    """The variables defined more than once whose definitions do not all have the variable's
    (unliteral) type: those SSA reconstruction would have typed differently."""
    apart = []
    for name, values in build_definitions(state.func_ir.blocks).items():
        if len(values) < 2:
            continue
        own = types.unliteral(state.typemap[name])
        for value in values:
            kind = _definition_type(value, state)
            if kind is None or types.unliteral(kind) != own:
                apart.append((name, own, kind))
                break
    return apart


@register_pass(mutates_CFG=False, analysis_only=True)
class SameTypesAsSSA(AnalysisPass):
    """Raises `TypedApartUnderSSA` (so Numba's full pipeline runs) if a variable's definitions
    would be typed apart under SSA."""

    _name = "graphnn_same_types_as_ssa"

    def __init__(self):
        AnalysisPass.__init__(self)

    def run_pass(self, state):
        apart = typed_apart(state)
        if apart:
            name, own, kind = apart[0]
            raise TypedApartUnderSSA(f"{name} is {own}, one of its definitions {kind}")
        return False


def trimmed_pipeline(state):
    """Numba's nopython pipeline without `DROPPED`, checked by `SameTypesAsSSA` after typing."""
    pm = DefaultPassBuilder.define_nopython_pipeline(state, name="graphnn_trimmed")
    passes = []
    for entry in pm.passes:
        if entry[0] in DROPPED:
            continue
        passes.append(entry)
        if entry[0] is NopythonTypeInference:
            passes.append((SameTypesAsSSA, "variables typed as SSA would type them"))
    pm.passes = passes
    pm.finalize()
    return pm


class GeneratedCompiler(CompilerBase):
    """The ``pipeline_class`` of the generated modules' functions: `trimmed_pipeline`, then,
    only if that fails, Numba's full nopython pipeline, from the state the first one started
    with."""

    def define_pipelines(self):
        full = DefaultPassBuilder.define_nopython_pipeline(self.state)
        if self.state.func_ir is not None:  # given IR (a lifted loop), not bytecode: Numba's way
            return [full]
        self.state.graphnn_start = dict(self.state, locals=dict(self.state.locals))
        full.passes.insert(0, (_StartAgain, "the trimmed pipeline failed: start again"))
        full.finalize()
        return [trimmed_pipeline(self.state), full]


@register_pass(mutates_CFG=True, analysis_only=False)
class _StartAgain(AnalysisPass):
    """Puts back the state the compile started from (the trimmed pipeline's return type, IR,
    types and error must not reach Numba's own run) and lists the function in `FELL_BACK`."""

    _name = "graphnn_start_again"

    def __init__(self):
        AnalysisPass.__init__(self)

    def run_pass(self, state):
        FELL_BACK.append(f"{state.func_id.modname}.{state.func_id.func_qualname}")
        start = state.graphnn_start
        for key, value in start.items():
            state[key] = value
        state.locals = dict(start["locals"])
        # Numba keeps a failed pipeline's error for the object-mode fallback it no longer has:
        # left set, the dispatcher raises it even though this pipeline compiles the function
        state.status.fail_reason = None
        return True
