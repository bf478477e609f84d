"""Every built-in model trained by gradient descent: compiled train_step == the reference.

Iterates over `graphnn.models.available()` (models added later are covered automatically).
float64: parameters and loss agree to 1e-10 after a few steps; float32: to ~1e-5. A model
whose graph uses an op that has no CPU lowering yet is reported as an expected failure
with the CodegenError's message (never silently skipped).
"""
import numpy as np
import pytest

import codegen
from codegen import CodegenError
from graphnn.errors import GradientError
from graphnn.models import available
from graphnn.optim import make_optimizer
from graphnn.training import NumpyBackend


pytestmark = pytest.mark.usefixtures("private_cache_dir")


def _gradient_models():
    out = []
    for name, build in available().items():
        model = build()
        if model.task == "perceptron" or not model.params or model.data is None:
            continue   # trained by a rule (perceptron, Hopfield storage), not by gradients
        out.append(name)
    return out


MODELS = _gradient_models()
STEPS = 3


def _feeds(model, n=12):
    train = model.data.train
    size = len(next(iter(train.values())))
    idx = np.arange(min(size, n))
    return {k: v[idx] for k, v in train.items()}


def _backends(name, dtype, optimizer="sgd"):
    model = available()[name]()
    lr = model.defaults.get("lr", 0.1)
    try:
        cpu = codegen.CpuBackend(model, make_optimizer(optimizer, lr=lr), dtype)
    except GradientError as e:
        pytest.skip(f"{name}: not trained by gradients ({e})")
    except CodegenError as e:
        if "no CPU lowering" in str(e):
            pytest.xfail(str(e))
        raise
    return model, cpu, NumpyBackend(model, make_optimizer(optimizer, lr=lr), dtype)


def _run(model, cpu, ref, tol):
    feeds = _feeds(model)
    for _ in range(STEPS):
        lc, lr_ = cpu.train_step(feeds), ref.train_step(feeds)
        assert lc == pytest.approx(lr_, rel=tol, abs=tol)
    for p in model.params:
        scale = max(1.0, float(np.max(np.abs(ref.params[p]))))
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=0, atol=tol * scale,
                                   err_msg=f"{model.name}: parameter {p.name}")
    np.testing.assert_allclose(cpu.predict(feeds), ref.predict(feeds), rtol=tol, atol=tol * 10)


def test_model_list_is_not_empty():
    assert {"mazur", "digits-mlp", "xor"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_train_step_float64_matches_reference(name):
    _run(*_backends(name, "float64"), tol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_and_update_float32_match_reference(name):
    """float32: the loss, the flat gradient and the updated parameters after a few steps."""
    model, cpu, ref = _backends(name, "float32")
    feeds = _feeds(model)
    tol = 2e-5
    for _ in range(STEPS):
        (lc, gc), (lr_, gr) = cpu.gradients(feeds), ref.gradients(feeds)
        assert lc == pytest.approx(lr_, rel=tol, abs=tol)
        np.testing.assert_allclose(gc, gr, rtol=0, atol=tol * max(1.0, float(np.max(np.abs(gr)))))
        cpu.apply_gradients(gc)
        ref.apply_gradients(gr)
    for p in model.params:
        scale = max(1.0, float(np.max(np.abs(ref.params[p]))))
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=0, atol=tol * scale,
                                   err_msg=f"{model.name}: parameter {p.name}")


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optimizers_compiled_match_reference(optimizer):
    _run(*_backends("digits-mlp", "float64", optimizer), tol=1e-10)


def test_train_epoch_equals_reference_epoch_in_the_same_batch_order():
    model, cpu, ref = _backends("digits-mlp", "float64")
    rng = np.random.default_rng(7)
    n = 200
    feeds = {k: v[:n] for k, v in model.data.train.items()}
    order = rng.permutation(n)
    batches = [order[i:i + 32] for i in range(0, n, 32)]   # the last batch is short (8)
    assert cpu.train_epoch(feeds, batches) == pytest.approx(ref.train_epoch(feeds, batches), rel=1e-10)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], atol=1e-10)
    assert cpu.steps == ref.steps == len(batches)


def test_flat_gradient_layout_and_apply_gradients_match_numpy_backend():
    model, cpu, ref = _backends("mazur", "float64")
    feeds = _feeds(model)
    (lc, gc), (lr_, gr) = cpu.gradients(feeds), ref.gradients(feeds)
    assert lc == pytest.approx(lr_, rel=1e-12)
    np.testing.assert_allclose(gc, gr, rtol=1e-12)
    offset = 0
    for p, off, size, shape in cpu.schedule.flat_layout:   # documented order: model.params
        assert off == offset and tuple(shape) == p.shape
        offset += size
    assert [p for p, *_ in cpu.schedule.flat_layout] == list(model.params)
    cpu.apply_gradients(gc * 2.0)
    ref.apply_gradients(gr * 2.0)
    for p in model.params:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], atol=1e-12)


def test_compiled_epoch_allocates_nothing_per_batch():
    """Numba's allocation counter: one epoch of 45 batches allocates as much as one of 5
    (only the call's argument wrappers), so nothing is allocated per batch — also in a
    recurrent net's epoch (its carry history and BPTT stacks are preallocated)."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import numpy as np
        from numba.core.runtime import rtsys
        import codegen
        from graphnn.models import get_model
        from graphnn.optim import make_optimizer
        for name, dtype in (('digits-mlp', 'float32'), ('rnn', 'float64')):
            m = get_model(name)
            cpu = codegen.CpuBackend(m, make_optimizer('sgd', lr=0.1), dtype)
            order = np.random.default_rng(0).permutation(m.data.n_train)
            batches = [order[i:i + 8] for i in range(0, len(order), 8)][:45]
            cpu.train_epoch(m.data.train, batches)
            counts = []
            for part in (batches, batches[:5]):
                before = rtsys.get_allocation_stats().alloc
                cpu.train_epoch(m.data.train, part)
                counts.append(rtsys.get_allocation_stats().alloc - before)
            print(name, counts[0], counts[1])
    """)
    # the module's cache: the models' float64 steps above compiled rnn already
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    for line in out.stdout.splitlines():
        name, many, few = line.split()
        assert many == few, f"{name}: {many} allocations in 45 batches, {few} in 5"
