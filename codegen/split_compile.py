"""A compiler process helps another with one function: it compiles that function's helpers
from the last one the function calls backwards, into the cache, while the other compiles the
function from the start.

A generated function's helpers (cells, shared loop nests, tiny products) are compiled while
Numba types the function: each call it types compiles its callee, in the order the calls are
met — before that function's own lowering and LLVM work can start. They are a large share of
the big models' compile (the transformer's ~20 loop-nest helpers: ~3 of its ~9 s; gan's and
contrastive's about a third) and independent of each other, so two processes can share them:

- the helping process types the function *only* (`helper_calls`: each generated helper call
  is recorded with its argument types and typed as returning None, nothing compiles), then
  compiles the helpers in reverse order into Numba's cache (`compile_from_the_end`);
- the process compiling the function needs nothing new: Numba's dispatcher looks in its
  cache before it compiles any callee, so each helper the helper process has finished by the
  time typing meets its call is loaded, not compiled.

They meet in the middle; the helping process stops at the first helper it finds in the cache
(the other process got there first) and goes on with its own functions (``evaluate``), whose
helpers are then mostly cached too. Nothing depends on the recorded order being exact: a
helper compiled by both is only time lost, and one recorded with argument types the real
compile does not use is an unused cache entry. Measured: docs/codegen.md, "Cut in the
seventeenth session".
"""
from __future__ import annotations

import dis
import functools

__all__ = ["helper_calls", "compile_from_the_end"]


@functools.lru_cache(maxsize=None)   # typing meets each helper's calls many times
def _returns_none(py_func) -> bool:
    """Whether every ``return`` of ``py_func`` returns None (a helper writes its outputs)."""
    code = list(dis.get_instructions(py_func))
    for i, ins in enumerate(code):
        if ins.opname == "RETURN_CONST":
            if ins.argval is not None:
                return False
        elif ins.opname == "RETURN_VALUE":
            if i == 0 or code[i - 1].opname != "LOAD_CONST" or code[i - 1].argval is not None:
                return False
    return True


def _is_helper(dispatcher, module: str) -> bool:
    """A function of the generated module ``module`` that only compiled code calls (no Python
    wrapper), is not inlined at Numba's IR level and returns nothing."""
    options = getattr(dispatcher, "targetoptions", {})
    py_func = getattr(dispatcher, "py_func", None)
    return (py_func is not None and py_func.__module__ == module and options.get("no_cpython_wrapper", False)
            and options.get("inline", "never") == "never" and _returns_none(py_func))


def helper_calls(dispatcher, args) -> list:
    """[(helper dispatcher, argument types)] of the generated helpers that ``dispatcher``'s
    function calls when compiled for ``args``, in the order Numba's typing meets the calls.

    Types the function only: a helper call is recorded and typed as returning None (each
    helper does) instead of compiling the helper; calls to anything else (stored kernels,
    Numba's own functions) type as usual — a function Numba's pipeline would inline at its IR
    level (``inline='always'``) is met as a call here, and compiles. Raises what typing raises."""
    from numba.core import compiler, typed_passes, typing, types
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.dispatcher import Dispatcher

    module = dispatcher.py_func.__module__
    found: list = []
    original = Dispatcher.get_call_template

    def recorded(self, arg_types, kws):
        if not _is_helper(self, module):
            return original(self, arg_types, kws)
        pysig, arg_types = self._compiler.fold_argument_types(arg_types, kws)
        if (self, tuple(arg_types)) not in found:
            found.append((self, tuple(arg_types)))
        name = self.py_func.__name__
        template = typing.make_concrete_template(f"CallTemplate({name})", key=name,
                                                 signatures=[types.none(*arg_types)])
        return template, pysig, arg_types, {}

    with global_compiler_lock:   # no other compile in this process sees the recording
        Dispatcher.get_call_template = recorded
        try:
            dispatcher.typingctx.refresh()   # what each compile does first: new registrations (intrinsics)
            dispatcher.targetctx.refresh()
            func_ir = compiler.run_frontend(dispatcher.py_func)
            typed_passes.type_inference_stage(dispatcher.typingctx, dispatcher.targetctx, func_ir,
                                              tuple(args), None)
        finally:
            Dispatcher.get_call_template = original
    return found


def compile_from_the_end(calls, in_cache) -> int:
    """Compile ``calls`` ([(dispatcher, argument types)]) from the last backwards, until one is
    found in Numba's cache (``in_cache(dispatcher, argument types)`` loads it if it is: another
    process has compiled from there on); the number compiled here. One this process already
    holds (the callee of one it compiled) is passed over."""
    done = 0
    for dispatcher, arg_types in reversed(calls):
        if tuple(arg_types) in dispatcher.overloads:
            continue
        if in_cache(dispatcher, arg_types):
            break
        dispatcher.compile(arg_types)
        done += 1
    return done
