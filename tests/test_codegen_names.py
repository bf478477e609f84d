"""Graph names in generated code: any node name a user writes becomes an identifier that
cannot meet the module's own names (helpers, locals, the forms derived from a buffer's name).

What was wrong: parameters named 'w₁' (not a Python identifier), 'Ｗ' beside 'W' (one name
to Python), or 'lr', 'matmul_nn', 'x_data' (the module's own) trained on the reference but
made the compiled module fail with a SyntaxError or a Numba typing error."""
import ast
import builtins
import keyword
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphnn as gn
from graphnn.models import available, get_model

pytest.importorskip("numba")
from codegen.emit_cpu import emit_module  # noqa: E402
from codegen.names import clashes, identifier, unique_name  # noqa: E402
from codegen.plan import lower, optimizer_names  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=12))
def test_identifier_is_what_python_reads(text):
    name = identifier(text)
    assert name.isidentifier() and not keyword.iskeyword(name)
    assert unicodedata.normalize("NFKC", name) == name   # Python would read it as itself


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["W", "Ｗ", "w₁", "w1", "lr", "lr_per_step", "x", "x_data", "h", "h_ij",
                                 "h_all", "matmul_nn", "copy_2d", "JIT", "e", "sum", "ﬁ", "fi", "B", "ℬ",
                                 "train_epoch", "cell_1a2b", "tanh_f64", "E_acc", "E"]), max_size=12))
def test_unique_names_never_clash(hints):
    taken: set = set()
    names = [unique_name(h, taken) for h in hints]
    assert len(set(names)) == len(names)
    for k, name in enumerate(names):   # no name is internal, nor derived from another one
        assert not clashes(name, set(names[:k] + names[k + 1:]) - {name})


PROGRAMS = {"forward", "loss", "evaluate", "grad_step", "train_step", "train_epoch"}


@pytest.mark.parametrize("name", [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")])
def test_every_name_a_module_uses_is_kept_from_graph_names(name):
    """In each function that receives graph buffers, every other identifier (a helper, a local,
    a global, h_ij from h) is one no graph name can become — read from the real module."""
    model = get_model(name)
    trainer = gn.Trainer(model, backend="numpy")
    sched = lower(model, trainer.optimizer, "float64")
    tree = ast.parse(emit_module(sched, trainer.optimizer))
    graph_names = set(sched.names.values())
    for prog in (sched.forward, sched.loss, sched.evaluate, sched.grad_step):
        graph_names |= {b.name for b in list(prog.args) + list(prog.temps())}
        for step in prog.steps:   # a recurrence's views: fresh names the lowering made
            graph_names |= step.local_names() if hasattr(step, "local_names") else set()
    cells = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("cell_")]
    cell_names = {a.arg for f in cells for a in f.args.args}
    leaks = set()
    programs = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in PROGRAMS]
    for fn in programs + cells:
        mine = cell_names if fn in cells else graph_names
        used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} | {a.arg for a in fn.args.args}
        for ident in used - mine:
            if not clashes(ident, mine | optimizer_names(trainer.optimizer)) and not ident.startswith("_"):
                leaks.add((fn.name, ident))
    assert not leaks, f"names a graph node could take: {sorted(leaks)[:20]}"


NAMES = [("w₁", "w₂", "b₁", "b₂", "x₁"), ("W", "Ｗ", "ﬁ", "fi", "ℬ"),
         ("matmul_nn", "JIT", "tanh_f64", "copy_2d", "in_order"),
         ("lr", "x_data", "lr_per_step", "h_ij", "range")]


@pytest.mark.parametrize("names", NAMES, ids=["subscripts", "nfkc-twins", "helpers", "locals"])
def test_user_names_like_the_modules_own_train_as_on_the_reference(names, isolated_cache):
    w1, w2, b1, b2, xin = names
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 2)), rng.normal(size=(8, 1))

    def build():
        r = np.random.default_rng(5)
        x, t = gn.input(xin, (None, 2)), gn.input("t", (None, 1))
        h = gn.tanh(gn.linear(x, gn.parameter(w1, r.normal(size=(2, 2))), gn.parameter(b1, [0.1, -0.1])))
        out = gn.linear(h, gn.parameter(w2, r.normal(size=(2, 1))), gn.parameter(b2, [0.2]))
        return gn.Model("names", gn.losses.mse(out, t), out, (x, t), task="regression")

    losses = {}
    for backend in ("numpy", "cpu"):
        extra = {"background_compile": False} if backend == "cpu" else {}
        trainer = gn.Trainer(build(), backend=backend, lr=0.1, batch_size=3, **extra)
        trainer.fit(X, y, epochs=3, progress=False)
        losses[backend] = trainer.history.last()
    assert losses["cpu"] == pytest.approx(losses["numpy"], rel=1e-10)
