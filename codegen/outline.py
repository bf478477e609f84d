"""Outlining: a run of steps printed alike more than once becomes one function, a *segment*.

A model built of equal blocks (a transformer's layers, and in the backward pass their
gradients) prints each block's statements once per block, in ``train_epoch`` and in
``evaluate``: Numba and LLVM compile the same code again for each copy, inside one function
on the longest path of the compile. Printed as calls of one ``@njit`` function instead, the
block compiles once, and as a helper a compiler process may compile beside this one
(codegen/split_compile.py).

What a segment is, read from the printed statements with Python's ``ast`` (no step printer
changes; the schedule is not printed twice):

- each step's statements form a *fragment*; its *uses* are the names it reads before it
  writes them, its *defs* the names it writes;
- a fragment whose def a later fragment (or what follows the body) reads stays in the calling
  function — a scalar (a loss, a count) has no way out of a segment — except a `View` step,
  which computes nothing: it is printed again wherever its name is needed, never on its own
  (the caller's ``carve`` of each buffer from the workspace and, in ``train_epoch``, the
  batch's rows of it, ``rows(h_all, nb)``, are such views too);
- a fragment's signature is its text with the views it reads, its names renamed in order of
  use; runs of equal signatures are found longest first (`_longest_repeat`), and each copy
  becomes a call;
- a segment's parameters are its uses, in order of first use, renamed ``a0, a1, …`` (its
  locals ``v0, …``; the loops' own names i, j, f0 … stay), and each ``carve``'s offset (the
  copies of a block differ only in where their buffers lie); printed without comments
  (`ast.unparse`), equal copies print equal text, whose digest names the function
  ``segment_<digest>``; the call keeps the steps' comments, with the caller's names.

Only programs of `OUTLINE_MIN_STEPS` steps or more are searched, and only copies of
`MIN_SEGMENT_LINES` lines or more (with the views they print) are outlined: a function has a
fixed cost, which the GAN's and the contrastive model's three-step copies and a deep MLP's
equal layers did not pay back; outlining the rest too (for the two compiler processes to
share) cost the mid-sized models more than it saved. A body with no such copy is printed as
it is. Measured: docs/codegen.md, "Cut in the eighteenth session".
"""
from __future__ import annotations

import ast
import builtins
import functools
import hashlib
from dataclasses import dataclass, field

from .names import RESERVED, is_internal
from .printer import HELPERS, INDENT, INTRINSICS

__all__ = ["Fragment", "outline", "outline_body", "should_outline", "OUTLINE_MIN_STEPS"]

OUTLINE_MIN_STEPS = 40    # a program of fewer steps is printed inline
MIN_SEGMENT_LINES = 48    # a smaller copy (with its views) stays inline: a function costs more than it saves
MIN_REPEAT = 3            # fragments in a repeated run worth sharing


@dataclass
class Fragment:
    """One step's statements (dedented to column 0); ``view``: printed by a `View` step."""
    lines: list
    view: bool = False
    uses: list = field(default_factory=list)
    defs: set = field(default_factory=set)
    keep: bool = False    # stays in the calling function (a def read after it)
    size: int = 0         # its lines and those of the views it reads: what a segment prints for it

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class _Flow:
    """Names read before written (in order) and names written, in evaluation order: a value
    before its targets, an augmented target read first, a loop's range before its index. (A
    walk of its own: `ast.NodeVisitor`'s dispatch was most of the printing of a deep model.)"""

    def __init__(self):
        self.uses: dict = {}
        self.defs: dict = {}   # in order of first write

    def visit(self, node):
        kind = type(node)
        if kind is ast.Name:
            if type(node.ctx) is ast.Load:
                if node.id not in self.defs:
                    self.uses.setdefault(node.id, None)
            else:
                self.defs.setdefault(node.id, None)
        elif kind is ast.Assign:
            self.visit(node.value)
            for target in node.targets:
                self.visit(target)
        elif kind is ast.AugAssign:
            if type(node.target) is ast.Name and node.target.id not in self.defs:
                self.uses.setdefault(node.target.id, None)
            self.visit(node.value)
            self.visit(node.target)
        elif kind is ast.For:
            for part in (node.iter, node.target, *node.body, *node.orelse):
                self.visit(part)
        else:
            for child in ast.iter_child_nodes(node):
                self.visit(child)


@functools.cache
def _intrinsic_names() -> frozenset:
    tree = ast.parse(INTRINSICS)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return frozenset(names | {"np", "math"})


def _is_global(name: str) -> bool:
    """A module's function or import, or a builtin no graph name can take (codegen/names.py:
    an input may be called ``next``, and is then an argument like any other)."""
    return name in HELPERS or name in _intrinsic_names() or (name in _BUILTINS and is_internal(name))


_BUILTINS = frozenset(dir(builtins))


def _analysed(fragment: Fragment) -> Fragment:
    uses, defs = _flow(fragment.text)
    fragment.uses, fragment.defs = list(uses), set(defs)
    return fragment


@functools.lru_cache(maxsize=65536)   # a module is printed twice, and its programs share statements
def _flow(text: str) -> tuple:
    """(the names ``text`` reads before writing them, but globals; the names it writes)."""
    flow = _Flow()
    flow.visit(ast.parse(text))
    return tuple(n for n in flow.uses if not _is_global(n)), tuple(flow.defs)


def should_outline(prog) -> bool:
    """Whether a `Program`'s function is printed as segment calls."""
    return len(prog.steps) >= OUTLINE_MIN_STEPS


def outline(fragments: list, live_out: set, dtype: str, helpers: set) -> list | None:
    """The body's lines (at column 0) with runs of ``fragments`` printed as segment calls, the
    segments added to HELPERS and ``helpers``; None where the body is printed as it is (a name
    written twice, or no copy worth a segment). ``live_out``: names read after the body."""
    fragments = [_analysed(f) for f in fragments if f.lines]
    written = [n for f in fragments for n in f.defs if n not in RESERVED]
    if len(written) != len(set(written)):   # not one assignment per name: leave it as printed
        return None
    read_later, views = set(live_out), {}
    for f in reversed(fragments):
        f.keep = not f.view and bool(f.defs & read_later)
        read_later |= set(f.uses)
    for f in fragments:
        if f.view:
            views.update(dict.fromkeys(f.defs, f))
    work = [f for f in fragments if not f.view]
    for f in work:
        f.size = len(f.lines) + sum(len(v.lines) for v in _views_for(f.uses, views, set()))
    runs = [(run, shared and sum(f.size for f in run) >= MIN_SEGMENT_LINES) for run, shared in _runs(work, views)]
    if not any(outlined for _, outlined in runs):
        return None
    out, printed = [], set()
    for run, outlined in runs:
        if outlined:
            out += _segment_call(run, views, dtype, helpers)
        else:
            for f in run:
                out += [line for v in _views_for(f.uses, views, printed) for line in v.lines] + f.lines
    return out


def _views_for(names, views, done: set) -> list:
    """The `View` fragments that define ``names`` (and the views they read), in order, less
    those in ``done`` (updated)."""
    needed: list = []

    def need(name):
        f = views.get(name)
        if f is None or name in done:
            return
        done.add(name)
        for used in f.uses:
            need(used)
        needed.append(f)

    for name in names:
        need(name)
    return needed


def _runs(work: list, views: dict) -> list:
    """[(run, shared)]: ``work`` in order, each copy of a repeated run as one (shared), every
    other fragment alone. Repeats are taken longest first; a fragment's signature is its text
    with the views it reads, renamed as a segment's (a kept fragment matches none)."""
    signature = [f"keep {k}" if f.keep else _digest(_canonical(_views_for(f.uses, views, set()) + [f])[0])
                 for k, f in enumerate(work)]
    taken, copies = [f.keep for f in work], {}
    while True:
        _, _, length = best = _longest_repeat(signature, taken)
        if length < MIN_REPEAT:
            break
        pattern, at = signature[best[0]:best[0] + length], 0
        while at + length <= len(work):
            if signature[at:at + length] == pattern and not any(taken[at:at + length]):
                copies[at] = length
                taken[at:at + length] = [True] * length
                at += length
            else:
                at += 1
    runs, at = [], 0
    while at < len(work):
        length = copies.get(at, 1)
        runs.append((work[at:at + length], at in copies))
        at += length
    return runs


def _longest_repeat(signature: list, taken: list) -> tuple:
    """(start, start of a copy, length) of the longest run of signatures repeated without
    overlap among the untaken positions."""
    n = len(signature)
    best = (0, 0, 0)
    following = [0] * (n + 1)   # common length of the runs at i + 1 and j + 1
    for i in range(n - 1, -1, -1):
        here = [0] * (n + 1)
        for j in range(n - 1, i, -1):
            if signature[i] == signature[j] and not taken[i] and not taken[j]:
                here[j] = following[j + 1] + 1
                length = min(here[j], j - i)
                if length > best[2]:
                    best = (i, j, length)
        following = here
    return best


def _uses_of(fragments: list) -> list:
    """The names a run of fragments reads before it writes them, in order of first use."""
    uses, defined = {}, set()
    for f in fragments:
        uses.update(dict.fromkeys(n for n in f.uses if n not in defined))
        defined |= f.defs
    return list(uses)


def _canonical(fragments: list) -> tuple:
    """(the fragments' statements as one function body, its parameters renamed a0, a1, … and
    its locals v0, …, without comments; the texts its parameters take, in order: names, and
    ``carve``'s offsets)."""
    text, params = _canonical_text("\n".join(f.text for f in fragments))
    return text, list(params)


def _lift_offsets(tree) -> dict:
    """Each ``carve``'s offset (codegen/workspace.py: ``h = carve(work, offset, shape)``, a
    statement of its own) in ``tree`` replaced by a name
    ``_offset<k>``, in place: equal blocks differ only in where their buffers lie, so the
    offsets are a segment's arguments. Returns {name: the offset's text in the caller}."""
    offsets = {}
    calls = [s.value for s in tree.body if type(s) is ast.Assign and type(s.value) is ast.Call   # carves are
             and type(s.value.func) is ast.Name and s.value.func.id == "carve" and len(s.value.args) == 3]  # statements
    for call in calls:
        name, text = f"_offset{len(offsets)}", ast.unparse(call.args[1])
        # int(…): Numba types a constant argument as its value, one compile per offset
        offsets[name] = f"int({text})" if isinstance(call.args[1], ast.Constant) else text
        call.args[1] = ast.copy_location(ast.Name(name, ast.Load()), call.args[1])
    return offsets


@functools.lru_cache(maxsize=65536)
def _canonical_text(source: str) -> tuple:
    tree = ast.parse(source)
    offsets = _lift_offsets(tree)
    flow = _Flow()
    flow.visit(tree)
    params = [n for n in flow.uses if not _is_global(n)]
    names = {n: f"a{k}" for k, n in enumerate(params)}
    locals_ = [n for n in flow.defs if n not in names and n not in RESERVED]
    names.update({n: f"v{k}" for k, n in enumerate(locals_)})
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = names.get(node.id, node.id)
    return ast.unparse(tree), tuple(offsets.get(n, n) for n in params)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _segment_call(run: list, views: dict, dtype: str, helpers: set) -> list:
    """A run's segment function (added to HELPERS and ``helpers``) and the lines calling it:
    the run's step comments, then the call."""
    fragments = _views_for(_uses_of(run), views, set()) + run
    text, params = _canonical(fragments)
    name = f"segment_{_digest(text)}" + ("_f32" if dtype == "float32" else "")
    if name not in HELPERS:
        body = "\n".join(INDENT + line for line in text.split("\n"))
        HELPERS[name] = (f"\n@njit(**JIT_INNER)\ndef {name}({', '.join(f'a{k}' for k in range(len(params)))}):\n"
                         f'{INDENT}"""{len(run)} steps of a long function (codegen/outline.py), shared by '
                         f'every run printed alike."""\n{body}\n')
    helpers.add(name)
    comments = [line for f in run for line in f.lines if line.startswith("#")]
    return comments + [f"{name}({', '.join(params)})"]


def outline_body(lines: list, starts: list, returns, dtype: str, helpers: set, views=()) -> list | None:
    """A printed function body (``lines`` at one indent) outlined (see `outline`), or None;
    ``starts``: [(the index of a step's first line, whether it is a `View` step)] per step;
    ``returns``: the function's returned expression (read after the body), or None; ``views``:
    lines (at column 0) defining views the statements read, printed where they are read."""
    ends = [s for s, _ in starts[1:]] + [len(lines)]
    fragments = [Fragment([line], True) for line in views]
    fragments += [Fragment([line[len(INDENT):] for line in lines[s:e]], view) for (s, view), e in zip(starts, ends)]
    live_out = {str(s) for s in getattr(returns, "free_symbols", ())}
    out = outline(fragments, live_out, dtype, helpers)
    return None if out is None else [INDENT + line if line else "" for line in out]
