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
