"""codegen/liveness.py: Numba's live-variable analysis on bit sets gives Numba's own result.

Checked against Numba's ``analysis.compute_live_map`` itself (the oracle): on drawn
control-flow graphs (loops, branches, unreachable blocks, variables used before any
definition) and on every call Numba makes while it compiles the CNN's ``evaluate`` (convolutions
written out tap by tap: the function this exists for); against a plain set iteration over every
block; installed only over an analysis it reproduces on a probe graph, and then what Numba's
passes call, in every Numba module that imported the original."""
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba.core import analysis, ir_utils
from numba.core.controlflow import CFGraph

import graphnn as gn
from codegen import liveness
from codegen.background import signatures
from graphnn.models import get_model

VARIABLES = [f"v{i}" for i in range(12)] + ["$phi1.0", "x.2"]


@st.composite
def flow_graphs(draw):
    """(cfg, blocks, usemap, defmap): up to 24 blocks, each with up to three successors (back
    edges and self-loops included), and use and def sets from a small pool of names."""
    n = draw(st.integers(1, 24))
    offsets = sorted(draw(st.sets(st.integers(0, 400), min_size=n, max_size=n)))
    cfg = CFGraph()
    for offset in offsets:
        cfg.add_node(offset)
    for offset in offsets:
        for succ in draw(st.lists(st.sampled_from(offsets), max_size=3, unique=True)):
            cfg.add_edge(offset, succ)
    cfg.set_entry_point(offsets[0])
    cfg.process()
    names = st.sets(st.sampled_from(VARIABLES), max_size=6)
    usemap = {offset: draw(names) for offset in offsets}
    defmap = {offset: draw(names) for offset in offsets}
    return cfg, dict.fromkeys(offsets), usemap, defmap


@settings(max_examples=300, deadline=None)
@given(flow_graphs())
def test_the_live_map_is_numbas_on_drawn_graphs(graph):
    cfg, blocks, usemap, defmap = graph
    expected = liveness.numba_original()(cfg, blocks, usemap, defmap)
    assert liveness.compute_live_map(cfg, blocks, usemap, defmap) == expected


def _every_block_oracle(cfg, blocks, usemap, defmap):
    """The same equations on Python sets, iterated over every block in the dict's order (Numba
    0.68 iterates the reachable blocks in topological order)."""
    reach = {offset: set() for offset in blocks}
    grown = True
    while grown:   # each block's reaching uses and definitions, forwards
        before = sum(map(len, reach.values()))
        for offset in blocks:
            reach[offset] |= usemap[offset] | defmap[offset]
            for succ, _ in cfg.successors(offset):
                reach[succ] |= reach[offset]
        grown = sum(map(len, reach.values())) != before
    live = {offset: set(usemap[offset]) for offset in blocks}
    grown = True
    while grown:   # what is live at a block's entry, backwards
        before = sum(map(len, live.values()))
        for offset in blocks:
            for pred, _ in cfg.predecessors(offset):
                live[pred] |= (live[offset] & reach[pred]) - defmap[pred]
        grown = sum(map(len, live.values())) != before
    return live


@settings(max_examples=200, deadline=None)
@given(flow_graphs())
def test_the_live_map_is_older_numbas_too(graph):
    """Unreachable blocks have no edges in Numba's processed CFG: iterating them or not gives
    the same sets (a Numba that iterates every block gets its own result too)."""
    cfg, blocks, usemap, defmap = graph
    expected = _every_block_oracle(cfg, blocks, usemap, defmap)
    assert liveness.compute_live_map(cfg, blocks, usemap, defmap) == expected


def test_it_is_installed_only_over_an_analysis_it_reproduces():
    assert liveness._agrees(liveness.numba_original())
    assert liveness._agrees(_every_block_oracle)
    assert not liveness._agrees(lambda cfg, blocks, usemap, defmap: {k: set() for k in blocks})
    assert not liveness._agrees(lambda cfg: {})   # another signature


def test_a_variable_live_around_a_loop():
    """x defined before a loop and used after it is live through the loop; y defined in the
    loop body is live into the body's successors only where it reaches."""
    cfg = CFGraph()
    for offset in (0, 10, 20, 30):
        cfg.add_node(offset)
    for a, b in ((0, 10), (10, 20), (20, 10), (10, 30)):
        cfg.add_edge(a, b)
    cfg.set_entry_point(0)
    cfg.process()
    usemap = {0: set(), 10: {"i"}, 20: {"y"}, 30: {"x"}}
    defmap = {0: {"x", "i"}, 10: {"y"}, 20: {"i"}, 30: set()}
    live = liveness.compute_live_map(cfg, dict.fromkeys((0, 10, 20, 30)), usemap, defmap)
    assert live == {0: set(), 10: {"i", "x"}, 20: {"y", "x"}, 30: {"x"}}
    assert live == liveness.numba_original()(cfg, dict.fromkeys((0, 10, 20, 30)), usemap, defmap)


def test_every_live_map_of_a_model_compile_is_numbas(monkeypatch, isolated_cache):
    liveness.install()   # before the patch below (loading a generated module installs it)
    calls = []
    original = liveness.numba_original()

    def checked(cfg, blocks, usemap, defmap):
        ours = liveness.compute_live_map(cfg, blocks, usemap, defmap)
        assert ours == original(cfg, blocks, usemap, defmap), f"block sets differ in call {len(calls)}"
        calls.append(len(blocks))
        return ours

    monkeypatch.setattr(analysis, "compute_live_map", checked)
    monkeypatch.setattr(ir_utils, "compute_live_map", checked)
    trainer = gn.Trainer(get_model("cnn"), backend="cpu", background_compile=False)
    backend = trainer.backend
    sigs = signatures(backend, ("epoch", trainer.data.train, trainer._batches(), True))
    fn, sig = next((fn, sig) for fn, sig in sigs if fn == "train_epoch")
    getattr(backend.module, fn).compile(sig)
    # train_epoch (12 calls, up to 31 blocks) and those of its helpers this process had not
    # compiled yet (the convolutions' among them: codegen/step_helpers.py)
    assert len(calls) >= 10 and max(calls) > 25


def test_installed_it_is_what_numbas_passes_call():
    liveness.install()
    assert analysis.compute_live_map is liveness.compute_live_map
    assert ir_utils.compute_live_map is liveness.compute_live_map
    if "numba.parfors.parfor" in sys.modules:
        assert sys.modules["numba.parfors.parfor"].compute_live_map is liveness.compute_live_map
    assert liveness.numba_original() is not liveness.compute_live_map
    assert liveness.numba_original().__module__ == "numba.core.analysis"


@pytest.mark.parametrize("mask,expected", [(0, set()), (1, {"a"}), (0b101, {"a", "c"}), (1 << 2, {"c"})])
def test_bit_sets_read_back_as_names(mask, expected):
    assert liveness._names(mask, ["a", "b", "c"]) == expected
