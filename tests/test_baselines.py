"""The hand-written NumPy baselines are correct: gradients match finite differences, SGD learns."""
import numpy as np
import pytest

from benchmarks.baselines import (W1_SIZES, MLPBaseline, blas_roofline_gflops, init_params,
                                  numpy_threads_limited)


def _data(n, sizes, seed=1, dtype=np.float64):
    """Inputs and one-hot labels from a random linear teacher, so there is something to learn."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    labels = (X @ rng.standard_normal((sizes[0], sizes[-1]))).argmax(axis=1)
    return X, np.eye(sizes[-1], dtype=dtype)[labels]


def _finite_difference_grads(model, X, T, h=1e-5):
    """Central differences of the mean loss, one parameter element at a time."""
    grads = {}
    for name, p in model.params.items():
        g = np.empty_like(p)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = model.loss(X, T)
            flat[i] = old - h
            down = model.loss(X, T)
            flat[i] = old
            gflat[i] = (up - down) / (2 * h)
        grads[name] = g
    return grads


@pytest.mark.parametrize("sizes,activation", [(W1_SIZES, "tanh"), ((12, 9, 7, 4), "relu"),
                                              ((6, 5, 5, 3), "tanh")])
def test_gradients_match_finite_differences(sizes, activation):
    params = init_params(sizes, seed=3)
    # Nonzero biases, so a wrong bias gradient cannot hide behind zeros.
    rng = np.random.default_rng(4)
    for k in params:
        if k.startswith("b"):
            params[k] = 0.1 * rng.standard_normal(params[k].shape)
    model = MLPBaseline(params, lr=0.1, dtype=np.float64, activation=activation)
    X, T = _data(3, sizes)
    grads, loss = model.grads(X, T)
    assert loss == pytest.approx(model.loss(X, T), rel=1e-12)
    numeric = _finite_difference_grads(model, X, T)
    assert set(grads) == set(numeric) == set(params)
    for name in params:
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-6, atol=1e-9, err_msg=name)


def test_loss_is_stable_for_large_logits():
    params = init_params((4, 3), seed=0)
    params["W1"] *= 1e4                    # logits ~1e4: a naive softmax overflows
    model = MLPBaseline(params, dtype=np.float32)
    X, T = _data(5, (4, 3), dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is harmless
        grads, loss = model.grads(X, T)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes,activation,lr", [(W1_SIZES, "tanh", 0.1), ((50, 32, 32, 10), "relu", 0.3)])
def test_one_epoch_lowers_loss(sizes, activation, lr, dtype):
    X, T = _data(600, sizes, dtype=dtype)
    params = init_params(sizes, seed=0)
    model = MLPBaseline(params, lr=lr, dtype=dtype, sizes=sizes, activation=activation)
    before = model.loss(X, T)
    order = np.random.default_rng(0).permutation(len(X))
    epoch_loss = model.epoch(X, T, order, batch_size=32)      # 600 = 18 * 32 + a short batch of 24
    after = model.loss(X, T)
    assert after < 0.9 * before
    assert after < epoch_loss < before * 1.05   # the epoch's loss is measured before each update
    assert model.W[0].dtype == dtype and params["W1"].dtype == np.float64
    # The caller's initial weights are untouched (copied), so other backends can reuse them.
    np.testing.assert_array_equal(params["W1"], init_params(sizes, seed=0)["W1"])


def test_epoch_follows_the_given_order():
    """Same order → identical weights; another order → different ones (batches really follow it)."""
    sizes = (8, 6, 3)
    X, T = _data(50, sizes)
    order = np.random.default_rng(0).permutation(50)
    runs = []
    for o in (order, order, order[::-1]):
        m = MLPBaseline(init_params(sizes), lr=0.5, dtype=np.float64)
        m.epoch(X, T, o, batch_size=16)
        runs.append(m.W[0].copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_one_sgd_step_equals_manual_update():
    sizes = (5, 4, 3)
    X, T = _data(7, sizes)
    ref = MLPBaseline(init_params(sizes), dtype=np.float64)
    grads, _ = ref.grads(X, T)
    m = MLPBaseline(init_params(sizes), lr=0.3, dtype=np.float64)
    m.epoch(X, T, np.arange(7), batch_size=7)
    for name, p in m.params.items():
        np.testing.assert_allclose(p, ref.params[name] - 0.3 * grads[name], rtol=1e-12, atol=1e-15)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="activation"):
        MLPBaseline(sizes=(3, 2), activation="sigmoid")
    with pytest.raises(ValueError, match="sizes"):
        MLPBaseline(init_params((3, 4, 2)), sizes=(3, 5, 2))


def test_roofline_and_thread_limit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with numpy_threads_limited(1):
        blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert all(p["num_threads"] == 1 for p in blas)
        assert blas_roofline_gflops(np.float64, n=128, repeats=2) > 0.1


def test_benchmarks_time_the_compiled_backend_not_the_reference():
    """Regression: with background compilation on by default, the W3–W6 rows timed the NumPy
    reference training while the module compiled (W4 'cpu' read 55 ms, the reference's speed).
    Every Trainer a benchmark times says background_compile=False (compile.py measures the
    switch on purpose and says True)."""
    import ast
    from pathlib import Path

    missing = []
    for path in sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Trainer":
                backend = next((k.value for k in node.keywords if k.arg == "backend"), None)
                if isinstance(backend, ast.Constant) and backend.value in ("numpy", "cuda"):  # neither switches
                    continue
                if not any(k.arg == "background_compile" for k in node.keywords):
                    missing.append(f"{path.name}:{node.lineno}")
    assert not missing, f"Trainer without background_compile= in {missing}"
