"""Runs of steps printed alike more than once become one segment function (codegen/outline.py):
the transformer's equal blocks compile once; every model, and drawn graphs, train as the
reference does with outlining forced on everything that repeats; and the statement analysis
it rests on reads generated code right."""
from __future__ import annotations

import ast
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import codegen
from codegen import outline
from codegen.outline import Fragment
from fuzz_graphs import build, graphs
from graphnn.models import available, get_model
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend

pytestmark = pytest.mark.usefixtures("private_cache_dir")


def _gradient_models():
    return sorted(name for name, build_ in available().items()
                  if (m := build_()).task != "perceptron" and m.params and m.data is not None)


def _function(source, name) -> str:
    return re.search(rf"\ndef {name}\(.*?(?=\n@njit|\nfrom |\n# -- the intrinsics|\Z)", source, re.S).group(0)


def _segment_calls(source, function) -> list:
    return re.findall(r"^\s+(segment_\w+)\(", _function(source, function), re.M)


@pytest.fixture
def everything_repeated_outlined(monkeypatch):
    """Outlining forced: every program searched, every repeated fragment a segment."""
    monkeypatch.setattr(outline, "OUTLINE_MIN_STEPS", 1)
    monkeypatch.setattr(outline, "MIN_REPEAT", 1)
    monkeypatch.setattr(outline, "MIN_SEGMENT_LINES", 0)


def _same_epoch(model, feeds, batches, optimizer="adam", lr=1e-2, dtype="float64"):
    cpu = codegen.CpuBackend(model, make_optimizer(optimizer, lr=lr), dtype)
    ref = NumpyBackend(model, make_optimizer(optimizer, lr=lr), dtype)
    assert cpu.train_epoch(feeds, batches) == pytest.approx(ref.train_epoch(feeds, batches), rel=1e-10, abs=1e-12)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=0, atol=1e-10, err_msg=p.name)
    some = {k: v[:3] for k, v in feeds.items()}
    assert cpu.evaluate(some)[0] == pytest.approx(ref.evaluate(some)[0], rel=1e-10, abs=1e-12)
    return cpu


def _epoch_of(model, n, batch, seed=0):
    feeds = {k: v[:n] for k, v in model.data.train.items()}
    order = np.random.default_rng(seed).permutation(n)
    return feeds, [order[i:i + batch] for i in range(0, n, batch)]


def test_the_transformers_equal_blocks_are_one_function_each_called_once_per_block():
    model = get_model("transformer")
    cpu = _same_epoch(model, *_epoch_of(model, 12, 8))   # the short last batch: rows of the buffers
    calls = _segment_calls(cpu.source, "train_epoch")
    # a block's forward and backward passes: each printed once, called per block
    assert len(set(calls)) >= 2 and all(calls.count(name) == 2 for name in set(calls)), calls
    assert len(_segment_calls(cpu.source, "evaluate")) >= 2
    for name in set(calls):
        assert cpu.source.count(f"\ndef {name}(") == 1
        # one compile for both blocks: the offsets are int64, not each block's literal value
        assert len(getattr(cpu.module, name).overloads) == 1, name
    # the caller keeps the steps' comments, with its own names
    assert "# block2_attn_head_A = softmax(block2_attn_head_S)" in _function(cpu.source, "train_epoch")


def test_graphnn_codegen_prints_the_segments_and_float32_trains_as_the_reference(capsys):
    from graphnn.cli import main

    assert main(["codegen", "transformer", "--dtype", "float32"]) == 0
    source = capsys.readouterr().out
    calls = _segment_calls(source, "train_epoch")
    assert calls and all(name.endswith("_f32") and f"\ndef {name}(" in source for name in calls)
    model = get_model("transformer")
    feeds, batches = _epoch_of(model, 12, 8)
    cpu = codegen.CpuBackend(model, make_optimizer("adam", lr=1e-2), "float32")
    ref = NumpyBackend(model, make_optimizer("adam", lr=1e-2), "float32")
    assert cpu.train_epoch(feeds, batches) == pytest.approx(ref.train_epoch(feeds, batches), rel=1e-4)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-3, atol=1e-5, err_msg=p.name)


def test_a_small_model_is_printed_as_before():
    source = codegen.CpuBackend(get_model("digits-mlp"), make_optimizer("sgd", lr=0.1), "float64").source
    assert "segment_" not in source


@pytest.mark.parametrize("name", _gradient_models())
def test_every_model_trains_as_the_reference_with_every_repeat_outlined(name, everything_repeated_outlined):
    model = get_model(name)
    size = len(next(iter(model.data.train.values())))
    cpu = _same_epoch(model, *_epoch_of(model, min(size, 10), 4), optimizer="sgd", lr=model.defaults.get("lr", 0.1))
    if name in ("transformer", "gan", "contrastive", "attention"):   # the others print no two steps alike
        assert "segment_" in _function(cpu.source, "train_epoch"), name


@settings(max_examples=6, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(recipe=graphs(max_terms=3, max_steps=4))
def test_a_drawn_graph_trains_as_the_reference_with_every_repeat_outlined(recipe):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outline, "OUTLINE_MIN_STEPS", 1)
        mp.setattr(outline, "MIN_REPEAT", 1)
        mp.setattr(outline, "MIN_SEGMENT_LINES", 0)
        g = build(recipe)
        n = len(g.feeds["x"])
        order = np.arange(n)[::-1]
        batches = [b for b in (order[:(n + 1) // 2], order[(n + 1) // 2:]) if len(b)]
        _same_epoch(g.model, g.feeds, batches, optimizer="sgd", lr=0.05)


# -- the statement analysis -----------------------------------------------------------------

def _fragment(text, view=False):
    return outline._analysed(Fragment(text.strip("\n").split("\n"), view))


def test_uses_are_read_before_written_and_defs_in_order():
    f = _fragment("""
acc = 0.0
for i in range(B):
    acc += x[i]
    y[i] = acc * w
total += acc
""")
    # a store's value is read before its target: y after w
    assert f.uses == ["B", "x", "w", "y", "total"] and set(f.defs) == {"acc", "i", "total"}
    # range and the module's helpers are globals, an input called like a builtin is not
    assert _fragment("sparse_ce_rows(logits, next, out)").uses == ["logits", "next", "out"]


def test_a_scalar_read_later_stays_in_the_caller_and_views_go_where_they_are_read(monkeypatch):
    monkeypatch.setattr(outline, "MIN_SEGMENT_LINES", 0)
    frags = [_fragment("h_rows = view(h, (-1, 4))", view=True),
             _fragment("gemm(h_rows, W, out)"), _fragment("gemm(h_rows, W, out)"), _fragment("gemm(h_rows, W, out)"),
             _fragment("s = out[0, 0]"),
             _fragment("gemm(h_rows, W, out)"), _fragment("gemm(h_rows, W, out)"), _fragment("gemm(h_rows, W, out)"),
             _fragment("loss = s + 1.0")]
    helpers: set = set()
    lines = outline.outline(frags, {"loss"}, "float64", helpers)
    calls = [line for line in lines if line.startswith("segment_")]
    assert len(calls) == 2 and calls[0] == calls[1] == f"{calls[0].split('(')[0]}(h, W, out)"
    assert "s = out[0, 0]" in lines and "loss = s + 1.0" in lines      # the scalars stay
    assert not any(line.startswith("h_rows") for line in lines)        # the view is the segment's
    (name,) = helpers
    text = outline.HELPERS[name]
    assert "v0 = view(a0, (-1, 4))" in text and "gemm(v0, a1, a2)" in text
    ast.parse(text)


def test_copies_that_differ_only_in_where_their_buffers_lie_share_one_segment(monkeypatch):
    monkeypatch.setattr(outline, "MIN_SEGMENT_LINES", 0)
    views = ["h = carve(work, 64 * B, (B, 4))", "W = carve(flat, 0, (4, 4))",
             "h2 = carve(work, 128 * B, (B, 4))", "W2 = carve(flat, 16, (4, 4))"]
    frags = [_fragment(v, view=True) for v in views]
    frags += [_fragment(f"gemm({a}, {b}, {a})") for a, b in [("h", "W")] * 3 + [("h2", "W2")] * 3]
    helpers: set = set()
    lines = outline.outline(frags, set(), "float64", helpers)
    (name,) = helpers
    assert lines == [f"{name}(work, 64 * B, B, flat, int(0))", f"{name}(work, 128 * B, B, flat, int(16))"]
    assert "v0 = carve(a0, a1, (a2, 4))" in outline.HELPERS[name]


def test_a_name_written_twice_leaves_the_body_as_printed():
    frags = [_fragment("x = a + 1"), _fragment("x = a + 2")]
    assert outline.outline(frags, set(), "float64", set()) is None
