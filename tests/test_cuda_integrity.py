"""Issue 17 on the 'cuda' backend, in Numba's CUDA simulator (kept tiny: the simulator is slow).

Exact resume (parameters, Adam's state and step, the dropout/noise step, the batch order)
and NaN caught with the node named, as on the other backends.
"""
import numpy as np
import pytest

from codegen.cuda.device import enable_simulator

cuda = enable_simulator()  # before anything imports numba.cuda for the real target

import graphnn as gn  # noqa: E402
from graphnn.training import Trainer, with_training_feeds  # noqa: E402
from test_checkpoints import noisy_net  # noqa: E402


def test_resume_mid_epoch_is_exact_on_cuda(tmp_path):
    def trainer():
        return with_training_feeds(Trainer(noisy_net(), backend="cuda", optimizer="adam", lr=0.01, batch_size=4,
                                           seed=2))
    whole = trainer()
    whole.fit(steps=3, progress=False)
    part = trainer()
    part.fit(steps=2, progress=False)
    resumed = trainer().load(part.save(tmp_path / "cuda"))
    resumed.fit(steps=1, progress=False)
    assert (resumed.epoch, resumed.backend.steps) == (whole.epoch, whole.backend.steps)
    for p, q in zip(whole.model.parameters, resumed.model.parameters):
        np.testing.assert_allclose(resumed.params[q], whole.params[p], rtol=0, atol=1e-14, err_msg=p.name)


def test_nan_in_a_cuda_epoch_names_the_node():
    # (the simulator runs Python's math: log(-1) would raise there, an overflow gives inf as on a GPU)
    x = gn.input("x", (None, 2))
    W = gn.parameter("W", [[1e200], [-1.0]])
    net = x @ W
    loss = gn.mean(gn.mul(net, net, name="sq"))
    model = gn.Model("overflow", loss, loss, (x,), gn.Dataset({"x": np.array([[2.0, 1.0], [1.0, 3.0]])}))
    t = Trainer(model, backend="cuda", lr=0.1)
    with pytest.raises(gn.NonFiniteError, match=r"training step 1: × node 'sq' is the first to produce inf"):
        t.fit(epochs=1, progress=False)
    np.testing.assert_array_equal(t.params[W], [[1e200], [-1.0]])   # the bad step was never applied


def test_the_issue_graph_agrees_with_the_reference_on_cuda():
    """Views as outputs, a (n, B) layout, slices through index 0, a reshaped scalar concatenated
    (concat parts were all written at offset 0 on cuda), a 0-d output."""
    from fuzz_graphs import build
    from graphnn.optim import make_optimizer
    from graphnn.training import NumpyBackend
    from test_differential import ISSUE_17

    from codegen.cuda.backend import CudaBackend

    g = build(ISSUE_17)
    opt = make_optimizer("sgd", lr=0.1)
    ref, dev = NumpyBackend(g.model, opt), CudaBackend(g.model, opt)
    (l_ref, g_ref), (l_dev, g_dev) = ref.gradients(g.feeds), dev.gradients(g.feeds)
    assert l_dev == pytest.approx(l_ref, rel=1e-12)
    np.testing.assert_allclose(g_dev, g_ref, rtol=1e-10, atol=1e-12)
    out = dev.predict(g.feeds)
    assert out.shape == () and float(out) == pytest.approx(float(ref.predict(g.feeds)), rel=1e-12)


def test_switching_to_the_simulator_leaves_numbas_config_settings_alone():
    """enable_simulator set NUMBA_ENABLE_CUDASIM for a moment: Numba's next compile then saw a
    changed environment and reloaded its whole config, undoing a setting made in between — a
    test's DISABLE_JIT, at some later compile (a generated module half interpreted, half compiled:
    "untyped global name 'exp_f64'"). In a fresh process, as the switch is once per process."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("from codegen.cuda.device import enable_simulator\n"
            "enable_simulator()\n"
            "from numba.core import config\n"
            "config.DISABLE_JIT = True\n"
            "config.reload_config()   # what Numba's compiler calls first at every compile\n"
            "assert config.DISABLE_JIT, 'the next compile undid a config setting'\n")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # the simulator's inf − inf, on purpose
def test_a_max_reduction_on_cuda_keeps_a_nan_as_the_reference_stops_on_it():
    """The threads' partial maxima were combined by max(a, b), which drops a NaN b: the loss came
    back finite (0.0) where the reference stops. (Python's math in the simulator raises on log(−1),
    so the NaN here is inf − inf.)"""
    from graphnn.optim import make_optimizer
    from graphnn.training import NumpyBackend

    from codegen.cuda.backend import CudaBackend

    x = gn.input("x", (None, 8))
    big = [x * gn.parameter(f"w{k}", np.ones(8)) * 1e300 for k in (1, 2)]
    loss = gn.max(big[0] - big[1])
    model = gn.Model("nan-max", loss, loss, (x,))
    feeds = {"x": np.array([[1.0] * 5 + [1e10] + [1.0] * 2] * 3)}   # 1e310: inf − inf at one place
    errors = []
    for backend in (NumpyBackend(model, make_optimizer("sgd", lr=0.1)), CudaBackend(model, make_optimizer("sgd", lr=0.1))):
        with pytest.raises(gn.NonFiniteError) as err:
            backend.loss(feeds)
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "first to produce inf" in errors[0]
