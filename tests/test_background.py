"""Training starts at once (graphnn/training/switching.py, codegen/background.py, worker.py):
the reference trains while the compiled backend is prepared in the background, then the
compiled one takes over at a batch boundary.

The suite compiles before the first batch (conftest.py); these tests ask for the background
compile. `switch_at` makes the reference wait at a chosen update until the compile is done,
so the switch comes at the next batch boundary, deterministically.
"""
import dataclasses
import os
import sys
import time
import types

import numpy as np
import pytest

import graphnn as gn
from graphnn.data import Dataset
from graphnn.model import Model
from graphnn.models import get_model
from graphnn.training import LambdaCallback, Trainer
from graphnn.training.backends import BACKENDS, LazyBackend
from graphnn.training.distributed import LocalComm
from graphnn.training.switching import agree_to_switch, switching_backend
from test_dropout import dropout_mlp   # mini-batches (4 per epoch) and dropout: its step count must carry over


GATE = types.ModuleType("graphnn_test_gate")   # the gated preparers (fixture `gated`)
sys.modules[GATE.__name__] = GATE


def twin_prepare(model, optimizer, dtype, params, options, plan, cancelled, report=None, load_backend=None):
    """'numpy-twin' is the reference, and its 'compiled' twin another reference backend."""
    return load_backend()(model, optimizer, dtype, params)


@pytest.fixture
def gated(monkeypatch):
    """The 'cpu' backend, and 'numpy-twin', whose background preparation (a real one for cpu)
    is handed over only once the returned gate is open (`switch_at` opens it)."""
    import threading

    from codegen.background import prepare as cpu_prepare

    gate = threading.Event()

    def held(prepare):
        def run(**kw):
            backend = prepare(**kw)
            while not gate.wait(0.01):
                if kw["cancelled"].is_set():
                    raise RuntimeError("cancelled")
            return backend
        return run

    GATE.cpu, GATE.twin = held(cpu_prepare), held(twin_prepare)
    monkeypatch.setitem(BACKENDS, "cpu", dataclasses.replace(BACKENDS["cpu"], background=f"{GATE.__name__}:cpu"))
    monkeypatch.setitem(BACKENDS, "numpy-twin", LazyBackend("graphnn.training.backends:NumpyBackend", options=(),
                                                            background=f"{GATE.__name__}:twin"))
    return gate


def switch_at(trainer, update, gate, method="train_step"):
    """Open the gate after ``update`` updates and hold the reference until the preparation is
    done: the switch comes at the next batch boundary."""
    s = switching_backend(trainer.backend)
    reference = s.inner
    original = getattr(reference, method)

    def held(*args):
        out = original(*args)
        if reference.steps == update:
            gate.set()
            deadline = time.monotonic() + 300
            while not s.ready():
                assert time.monotonic() < deadline, "the background compile never finished"
                time.sleep(0.01)
        return out

    setattr(reference, method, held)
    return s


def params_of(trainer):
    return [np.array(trainer.params[p]) for p in trainer.model.params]


def test_a_run_that_switched_mid_epoch_equals_runs_that_did_not(gated, capsys):
    """float64, dropout: 6 updates on the reference, the rest compiled (in one epoch call from
    the middle of epoch 2), against the compiled run and the reference run. (test_dropout.py
    compiles the same module: whichever runs first pays for it.)"""
    model, _ = dropout_mlp()
    runs, s = {}, None
    for name, backend, background in (("switched", "cpu", True), ("compiled", "cpu", False),
                                      ("reference", "numpy", None)):
        trainer = Trainer(model, backend=backend, background_compile=background,
                          backend_options={"verbose": True} if background else None)
        s = switch_at(trainer, 6, gated) if background else s
        trainer.fit(epochs=4, progress=False)
        runs[name] = trainer
    assert s.switched_at == 6 and s.compiled and type(s.inner).__name__ == "CpuBackend"
    out = capsys.readouterr().out
    assert "training starts on the numpy reference" in out
    assert "update 6: switched to the compiled cpu backend" in out
    for other in ("compiled", "reference"):
        for a, b in zip(params_of(runs["switched"]), params_of(runs[other])):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(runs["switched"].history.losses, runs[other].history.losses, rtol=1e-10)


# -- the switch itself, on a twin of the reference (no compile: results must be identical) ------

@pytest.mark.parametrize("path", ["epochs", "steps", "data-parallel"])
def test_the_switch_carries_parameters_optimizer_state_and_step_counts(gated, path):
    model = dropout_mlp()[0] if path != "data-parallel" else get_model("digits-mlp")   # (dropout is not
    kw = dict(optimizer="adam", lr=0.02)                                              # data-parallel)
    if path == "data-parallel":
        kw.update(comm=LocalComm(), data=model.data)
    switched = Trainer(model, backend="numpy-twin", background_compile=True, **kw)
    plain = Trainer(model, backend="numpy", **kw)
    s = switch_at(switched, 5, gated, "apply_gradients" if path == "data-parallel" else "train_step")
    for trainer in (switched, plain):
        trainer.fit(**({"steps": 11} if path == "steps" else {"epochs": 3 if path == "epochs" else 1}),
                    progress=False)
    assert s.switched_at == 5 and s.inner is not s.__dict__.get("reference")
    for a, b in zip(params_of(switched), params_of(plain)):
        np.testing.assert_array_equal(a, b)
    assert switched.history.losses == plain.history.losses


def test_data_parallel_ranks_switch_together_or_not_at_all(gated):
    """agree_to_switch: every rank's preparation done and fine → all switch; any failed → none."""
    model, _ = dropout_mlp()

    class TwoRanks(LocalComm):
        size = 2

        def __init__(self, other):
            self.other = other   # the other rank's (done, ok)

        def allreduce_sum_inplace(self, buf):
            buf += self.other

    for other, switches in (((0.0, 0.0), False), ((1.0, 0.0), False), ((1.0, 1.0), True)):
        trainer = Trainer(model, backend="numpy-twin", background_compile=True)
        s = switching_backend(trainer.backend)
        s.collective = True
        trainer.backend.train_step({k: v[:4] for k, v in model.data.train.items()})   # starts it
        gated.set()
        assert s.pending and s.wait(30) is False and s.ready()
        agree_to_switch(s, TwoRanks(np.array(other)))
        assert s.compiled == switches
        assert (s.failure is not None) == (other == (1.0, 0.0))


# -- what goes wrong ----------------------------------------------------------------------------

def test_a_failing_compile_is_reported_and_training_continues_on_the_reference(gated, monkeypatch, tmp_path,
                                                                                 capfd):
    """The compiler process fails (code Numba cannot type); training goes on, on the reference.
    The compiler process runs nothing from the current folder or PYTHONPATH (planted here)."""
    from dataclasses import dataclass

    from codegen import Lowered
    from codegen.emit_cpu import EMITTERS
    from codegen.lower import LOWERINGS
    from graphnn.ops.elementwise import Map

    @dataclass
    class Broken:
        out: str
        x: str

    monkeypatch.setitem(EMITTERS, Broken, lambda step, w: w(f"{step.out}[...] = {step.x}.no_such_attribute"))
    monkeypatch.setitem(LOWERINGS, Map, lambda node, ctx: Lowered(steps=[Broken(ctx.name(node),
                                                                              ctx.array(node.inputs[0]))]))
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path / "cache"))
    marker = tmp_path / "planted-code-ran"
    for name in ("numba", "codegen"):
        (tmp_path / "plant" / name).mkdir(parents=True)
        (tmp_path / "plant" / name / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path / "plant")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "plant"))

    rng = np.random.default_rng(1)
    x, t = gn.input("x", (None, 3)), gn.input("t", (None, 2))
    y = gn.tanh(x @ gn.parameter("W", rng.normal(size=(3, 2))), name="y")
    model = Model("bg-broken", gn.losses.mse(y, t), y, (x, t),
                  Dataset({"x": rng.normal(size=(8, 3)), "t": rng.normal(size=(8, 2))}), defaults={"lr": 0.1})
    trainer = Trainer(model, backend="cpu", background_compile=True)
    s = switch_at(trainer, 2, gated)
    trainer.fit(steps=6, progress=False)
    reference = Trainer(model).fit(steps=6, progress=False)
    err = capfd.readouterr().err
    assert "the cpu backend could not be compiled in the background" in err
    assert "no_such_attribute" in err and "training continues on the numpy reference" in err
    assert not marker.exists()
    assert s.failure and not s.compiled and trainer.history.losses == reference.losses


def test_training_that_ends_first_stops_the_compile_and_reaps_its_processes(monkeypatch, tmp_path):
    from codegen.worker import running

    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path / "cache"))   # nothing cached: it compiles
    seen = []

    def wait_for_the_compiler(trainer, row):
        deadline = time.monotonic() + 120
        while not running():
            assert time.monotonic() < deadline, "no compiler process was started"
            time.sleep(0.01)
        seen.extend(running())

    trainer = Trainer(get_model("digits-mlp"), backend="cpu", background_compile=True)
    trainer.fit(steps=3, log_every=1, callbacks=[LambdaCallback(on_epoch_end=wait_for_the_compiler)],
                progress=False)
    deadline = time.monotonic() + 30
    while running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen and not running()
    for pid in seen:   # killed and reaped: not a zombie, not ours any more
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        assert not os.path.exists(f"/proc/{pid}")
    assert not switching_backend(trainer.backend).compiled


def test_backends_that_cannot_compile_in_the_background_say_so():
    model = get_model("mazur")
    with pytest.raises(ValueError, match="backend 'cuda' cannot compile in the background .only cpu"):
        Trainer(model, backend="cuda", background_compile=True)
    assert switching_backend(Trainer(model, backend="numpy", background_compile=True).backend) is None
