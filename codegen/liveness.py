"""Numba's live-variable analysis, the same result computed on bit sets.

Numba runs ``analysis.compute_live_map`` after nearly every pass over a function's IR (its
``PostProcessor``), and computes it on Python sets of variable names: for each block, every
definition that reaches it, then the variables live at its entry. In a function of hundreds
of blocks and thousands of variables — the CNN's ``train_epoch``, its convolutions written
out tap by tap — the reaching-definition sets hold thousands of names, and unions of them,
block by block and pass after pass, took about 2.5 of its 9.2 s of cold compile.

`compute_live_map` here iterates the same equations in the same order over integers used as
bit sets (one bit per variable; a union is one C-level ``|`` over machine words) and returns
the same ``{block: set of names}``: both iterate to the least fixed point of the same
monotone equations, which is unique. tests/test_liveness.py checks the two against each other
on drawn control-flow graphs and on every call Numba makes while it compiles a CNN function.

Numba 0.68 iterates the blocks reachable from the entry (its CFG's topological order); an
iteration over every block gives the same sets, since Numba's processed CFG gives an
unreachable block no edges (the tests check both). `install` puts this function in place of
Numba's, in every Numba module that imported it, once Numba's own gives the same on a probe
graph (`_agrees`: another Numba's contract keeps its own function). Idempotent, for the whole
process: a user's own ``@njit`` code gets the same result sooner too.
"""
from __future__ import annotations

import re
import sys
import threading

_lock = threading.Lock()
_installed = False
_ONE = re.compile("1")
_original: dict = {}

#: the modules that hold a reference to Numba's function (``from ... import``), by name
_HOLDERS = ("numba.core.analysis", "numba.core.ir_utils", "numba.parfors.parfor")


def compute_live_map(cfg, blocks, var_use_map, var_def_map) -> dict:
    """The variables live at the entry of each block of ``blocks``: ``{offset: set of names}``
    (the contract and result of ``numba.core.analysis.compute_live_map``)."""
    bits: dict = {}
    use = {offset: _mask(var_use_map[offset], bits) for offset in blocks}
    defs = {offset: _mask(var_def_map[offset], bits) for offset in blocks}
    order = cfg.topo_order()
    reach = _reaching(cfg, order, use, defs)
    # a variable live at a block's entry is live at the entry of each predecessor it reaches
    # and that does not define it: propagated backwards to the fixed point (Numba's liveness)
    live = dict(use)
    changed = True
    while changed:
        changed = False
        for offset in reversed(order):
            here = live[offset]
            for pred, _ in cfg.predecessors(offset):
                grown = live[pred] | (here & reach.get(pred, 0) & ~defs[pred])
                if grown != live[pred]:
                    live[pred] = grown
                    changed = True
    names = list(bits)
    return {offset: _names(mask, names) for offset, mask in live.items()}


def _reaching(cfg, order, use, defs) -> dict:
    """{offset: the variables used or defined in a block from which this one is reachable
    (itself included)} as bit sets: Numba's ``def_reach``."""
    reach: dict = {}
    changed = True
    while changed:
        changed = False
        for offset in order:
            mine = reach.get(offset, 0) | use[offset] | defs[offset]
            if mine != reach.get(offset, 0):
                reach[offset] = mine
                changed = True
            for succ, _ in cfg.successors(offset):
                grown = reach.get(succ, 0) | mine
                if grown != reach.get(succ, 0):
                    reach[succ] = grown
                    changed = True
    return reach


def _mask(names, bits: dict) -> int:
    """The bit set of ``names``, numbering new names as they come."""
    mask = 0
    for name in names:
        index = bits.get(name)
        if index is None:
            index = bits[name] = len(bits)
        mask |= 1 << index
    return mask


def _names(mask: int, names: list) -> set:
    """The names whose bits are set in ``mask`` (the scan for set bits runs in C)."""
    text = bin(mask)
    top = len(text) - 1
    return {names[top - m.start()] for m in _ONE.finditer(text)}


def install() -> None:
    """Put `compute_live_map` in place of Numba's (idempotent; thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        import numba.core.ir_utils   # noqa: F401  (and analysis, which it imports)
        from numba.core import analysis

        _original.setdefault("fn", analysis.compute_live_map)
        _installed = True
        if not _agrees(_original["fn"]):   # a Numba whose analysis differs: keep its own
            return
        for name in _HOLDERS:
            module = sys.modules.get(name)
            if module is not None:   # parfors, if imported later, imports ours from analysis
                module.compute_live_map = compute_live_map


def _agrees(numbas) -> bool:
    """Whether ``numbas`` (Numba's ``compute_live_map``) gives what `compute_live_map` gives on
    a probe graph: a loop, a branch around it and an unreachable block."""
    from numba.core.controlflow import CFGraph

    cfg = CFGraph()
    for offset in (0, 2, 4, 6, 8):
        cfg.add_node(offset)
    for a, b in ((0, 2), (2, 4), (4, 2), (2, 6), (0, 6), (8, 4)):   # 8 is unreachable
        cfg.add_edge(a, b)
    cfg.set_entry_point(0)
    cfg.process()
    blocks = dict.fromkeys((0, 2, 4, 6, 8))
    use = {0: set(), 2: {"i"}, 4: {"a", "i"}, 6: {"x"}, 8: {"z"}}
    defs = {0: {"i", "x"}, 2: {"a"}, 4: {"i"}, 6: set(), 8: {"a"}}
    try:
        theirs = numbas(cfg, blocks, {k: set(v) for k, v in use.items()},   # copies: it may not
                        {k: set(v) for k, v in defs.items()})                 # mutate ours
    except Exception:   # another signature or contract
        return False
    return theirs == compute_live_map(cfg, blocks, use, defs)


def numba_original():
    """Numba's own ``compute_live_map`` (what the tests compare against)."""
    from numba.core import analysis

    return _original.get("fn", analysis.compute_live_map)
