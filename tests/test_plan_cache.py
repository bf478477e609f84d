"""Cached starts read a stored plan instead of lowering the model again (codegen/plan_cache.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import codegen.backend
from codegen.cache import clear_cache, load_generated_module
from codegen.emit_cpu import emit_module
from codegen.plan import lower
from codegen.plan_cache import PLAN_PREFIX, load_plan, save_plan
from graphnn.models import available, get_model
from graphnn.optim import make_optimizer

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("isolated_cache")   # (tests/conftest.py)


def _lowerable():
    out = []
    for name in available():
        try:
            lower(get_model(name), make_optimizer("sgd", lr=0.1))
        except Exception:   # the perceptrons (no gradient) and Hopfield (not trained by gradients)
            continue
        out.append(name)
    return out


def _store(model, optimizer, dtype="float64"):
    """Lower, print and write the module (nothing compiles), then store its plan."""
    sched = lower(model, optimizer, dtype)
    source = emit_module(sched, optimizer)
    module = load_generated_module(source, {"graph": sched.graph_hash, "dtype": dtype,
                                            "optimizer": repr(optimizer.code_key())})
    assert save_plan(model, optimizer, sched, module._graphnn_path)
    return sched, source


def _runtime_view(model, sched):
    """What the backend reads from a schedule, with nodes as their place in the model's graph."""
    index = model.graph.index
    at = lambda n: index.get(n, "not in the model's graph")  # noqa: E731
    return {
        "programs": {p.name: [(a.name, a.shape, a.role, at(a.node) if a.role in ("input", "param") else None)
                              for a in p.args] for p in (*sched.programs, sched.evaluate)},
        "names": {at(n): sched.names[n] for n in (*sched.inputs, *sched.trainable, *sched.fixed, *sched.consts,
                                                  model.output)},
        "consts": [(at(c), np.asarray(c.value).tobytes()) for c in sched.consts],
        "layout": [(at(p), off, size, shape) for p, off, size, shape in sched.flat_layout],
        "gradients": {at(p): sched.names[g] for p, g in sched.gradients.items()},
        "update": (sched.update.state, sched.update.hyper),
        "leaves": ([at(n) for n in sched.inputs], [at(n) for n in sched.trainable], [at(n) for n in sched.fixed]),
        "about": (sched.model_name, sched.graph_hash, sched.dtype),
    }


@pytest.mark.parametrize("name", _lowerable())
def test_every_model_runs_from_its_plan_as_from_its_lowering(name):
    """A new build of the model (new nodes, as in a new process) gets the lowered schedule's
    arguments, names and layout from the plan, and the module's source from its file."""
    optimizer, built = make_optimizer("adam", lr=0.01), get_model(name)
    lowered, source = _store(built, optimizer)
    again = get_model(name)
    planned = load_plan(again, make_optimizer("adam", lr=0.02), "float64")   # a value is not in the key
    assert planned is not None
    sched, planned_source = planned
    assert sched.runtime_only and planned_source == source
    assert _runtime_view(again, sched) == _runtime_view(built, lowered)
    with pytest.raises(ValueError, match="run-time-only"):
        emit_module(sched, optimizer)


def test_the_plan_key_separates_dtype_optimizer_and_graph():
    model = get_model("xor")
    _store(model, make_optimizer("sgd", lr=0.1))
    assert load_plan(get_model("xor"), make_optimizer("sgd", lr=0.5), "float64") is not None
    assert load_plan(get_model("xor"), make_optimizer("sgd", lr=0.1), "float32") is None
    assert load_plan(get_model("xor"), make_optimizer("momentum", lr=0.1), "float64") is None
    assert load_plan(get_model("mazur"), make_optimizer("sgd", lr=0.1), "float64") is None


def test_a_generator_setting_changed_at_run_time_changes_the_key(monkeypatch):
    """A test (or a user) that sets codegen's module-level knobs gets a module printed with them."""
    from codegen import emit_conv

    _store(get_model("cnn"), make_optimizer("sgd", lr=0.1))
    assert load_plan(get_model("cnn"), make_optimizer("sgd", lr=0.1), "float64") is not None
    monkeypatch.setattr(emit_conv, "UNROLL", 0)
    assert load_plan(get_model("cnn"), make_optimizer("sgd", lr=0.1), "float64") is None


def _poison_lowering(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("lowered again although a plan was stored")
    monkeypatch.setattr(codegen.backend, "lower", refuse)


def test_a_cached_start_does_not_lower_and_trains_the_same(monkeypatch):
    from codegen import CpuBackend

    model = get_model("mazur")
    first = CpuBackend(model, make_optimizer("sgd", lr=0.5), "float64")
    feeds = {k: np.asarray(v) for k, v in model.data.train.items()}
    batches = [np.arange(len(next(iter(feeds.values()))))]
    l1 = [first.train_epoch(feeds, batches) for _ in range(3)]

    _poison_lowering(monkeypatch)
    again = get_model("mazur")
    second = CpuBackend(again, make_optimizer("sgd", lr=0.5), "float64")
    assert second.schedule.runtime_only
    feeds2 = {k: np.asarray(v) for k, v in again.data.train.items()}
    l2 = [second.train_epoch(feeds2, batches) for _ in range(3)]
    assert l1 == l2
    assert np.array_equal(first.flat_params, second.flat_params)
    out = second.predict(feeds2)
    assert np.array_equal(out, first.predict(feeds))
    with pytest.raises(AssertionError, match="lowered again"):   # another optimizer: another plan
        CpuBackend(get_model("mazur"), make_optimizer("adam", lr=0.5), "float64")


def _plans(folder):
    return sorted(folder.glob(f"{PLAN_PREFIX}*.json"))


def test_a_corrupted_plan_is_ignored_with_a_notice_and_rewritten(isolated_cache, capsys):
    _store(get_model("xor"), make_optimizer("sgd", lr=0.1))
    [plan] = _plans(isolated_cache)
    plan.write_text("{not json")
    assert load_plan(get_model("xor"), make_optimizer("sgd", lr=0.1), "float64") is None
    assert "cannot be used" in capsys.readouterr().err
    _store(get_model("xor"), make_optimizer("sgd", lr=0.1))
    assert load_plan(get_model("xor"), make_optimizer("sgd", lr=0.1), "float64") is not None


def test_a_plan_naming_a_node_outside_the_graph_is_not_used(isolated_cache, capsys):
    _store(get_model("xor"), make_optimizer("sgd", lr=0.1))
    [plan] = _plans(isolated_cache)
    stored = json.loads(plan.read_text())
    stored["inputs"] = [-1]
    plan.write_text(json.dumps(stored))
    assert load_plan(get_model("xor"), make_optimizer("sgd", lr=0.1), "float64") is None
    assert "not in the model's graph" in capsys.readouterr().err


def test_a_plan_whose_module_changed_or_went_is_not_used(isolated_cache):
    _store(get_model("xor"), make_optimizer("sgd", lr=0.1))
    [plan] = _plans(isolated_cache)
    module = isolated_cache / json.loads(plan.read_text())["module"]
    module.write_text(module.read_text() + "\n# edited\n")
    assert load_plan(get_model("xor"), make_optimizer("sgd", lr=0.1), "float64") is None
    module.unlink()
    assert load_plan(get_model("xor"), make_optimizer("sgd", lr=0.1), "float64") is None


def test_a_symlinked_plan_is_not_followed(isolated_cache, tmp_path, capsys):
    _store(get_model("xor"), make_optimizer("sgd", lr=0.1))
    [plan] = _plans(isolated_cache)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(plan.read_text())
    plan.unlink()
    os.symlink(elsewhere, plan)
    assert load_plan(get_model("xor"), make_optimizer("sgd", lr=0.1), "float64") is None
    assert "cannot be used" in capsys.readouterr().err


def test_clear_cache_removes_plans_and_cache_info_counts_them(isolated_cache):
    from codegen import cache_info

    _store(get_model("xor"), make_optimizer("sgd", lr=0.1))
    assert _plans(isolated_cache) and cache_info()["plans"] == 1
    clear_cache()
    assert not _plans(isolated_cache) and cache_info()["plans"] == 0


def test_the_command_line_says_when_a_start_used_the_plan(isolated_cache):
    env = {**os.environ, "GRAPHNN_CACHE_DIR": str(isolated_cache), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "graphnn", "train", "xor", "--backend", "cpu", "--epochs", "1",
           "--no-background-compile", "--verbose"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "not lowered again" not in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "plan stored with the module: the model was not lowered again" in second.stdout
    last = lambda out: [ln for ln in out.splitlines() if "loss" in ln.lower()][-1:]  # noqa: E731
    assert last(first.stdout) == last(second.stdout)


def test_the_key_before_lowering_is_the_key_the_plan_was_stored_under(isolated_cache):
    """In a fresh process (nothing of codegen imported yet): the key a cached start computes
    before lowering names the plan that the lowering stored."""
    script = (
        "import sys\n"
        "from graphnn.models import get_model\n"
        "from graphnn.optim import make_optimizer\n"
        "from codegen.plan_cache import plan_key, plan_path\n"
        "from codegen.cache import usable_cache_dir\n"
        "from codegen import CpuBackend\n"
        "for name in sys.argv[1:]:\n"
        "    opt = make_optimizer('adam', lr=0.01)\n"
        "    before = plan_key(get_model(name), opt, 'float64')\n"
        "    CpuBackend(get_model(name), opt, 'float64')   # lowers, prints, stores (compiles nothing)\n"
        "    assert plan_path(usable_cache_dir(), before).exists(), name\n"
        "print('ok')\n")
    env = {**os.environ, "GRAPHNN_CACHE_DIR": str(isolated_cache), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script, "xor", "rnn", "cnn", "lstm", "transformer"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_model_shaped_by_the_users_own_code_has_no_plan(isolated_cache, monkeypatch):
    """A user's op class or rewrite is code no key covers: such a model is lowered at every
    start (its module found by its source), never given a module an older version printed."""
    import graphnn as gn
    from codegen import CpuBackend, emit_cpu
    from codegen.plan_cache import user_code
    from graphnn.model import Model
    from graphnn.ops import Map
    from graphnn.ops.base import apply

    class UsersTanh(Map):
        name = "users_tanh_for_the_plan_test"

    x = gn.input("x", (None, 2))
    W = gn.parameter("W", np.full((2, 3), 0.5))
    h = gn.tanh(x @ W)
    mine = apply(UsersTanh.instance(), h.inputs, h.attrs, name="h")
    model = Model("users-op", gn.sum(mine), mine, (x,))
    assert "UsersTanh" in user_code(model)
    for _ in range(2):
        CpuBackend(model, make_optimizer("sgd", lr=0.1), "float64")
    assert not _plans(isolated_cache)

    monkeypatch.setattr(emit_cpu, "REWRITES", emit_cpu.REWRITES + [lambda prog, steps: steps])
    assert "rewrite" in user_code(get_model("xor"))
    CpuBackend(get_model("xor"), make_optimizer("sgd", lr=0.1), "float64")
    assert not _plans(isolated_cache)


def test_a_new_cache_folder_in_the_same_process_gets_its_own_module_and_plan(isolated_cache, monkeypatch, tmp_path):
    """A module imported from one cache folder was reused after GRAPHNN_CACHE_DIR changed: the
    plan written in the new folder named a module file that was not there, and no cached start
    could use it (seen when one test's backend ran before another's isolated cache)."""
    model, optimizer = get_model("xor"), make_optimizer("adam", lr=0.01)
    first = codegen.backend.CpuBackend(model, optimizer, "float64").module._graphnn_path
    assert first.parent == isolated_cache
    other = tmp_path / "other-cache"
    other.mkdir(mode=0o700)
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(other))
    second = codegen.backend.CpuBackend(get_model("xor"), optimizer, "float64").module._graphnn_path
    assert second.parent == other and second.read_bytes() == first.read_bytes()
    assert load_plan(get_model("xor"), optimizer, "float64") is not None
    assert not save_plan(model, optimizer, lower(model, optimizer, "float64"), first)   # another folder's module
