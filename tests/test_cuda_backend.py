"""The 'cuda' backend in Numba's CUDA simulator: every built-in model the schedule lowers
trains step for step like the NumPy reference (float64 ~1e-10, float32 ~1e-5).

The simulator is slow (each simulated thread is a Python thread): batches of 4, hidden
layers of 8 where a model allows it.
"""
import numpy as np
import pytest

from codegen.cuda.device import enable_simulator

cuda = enable_simulator()  # before anything imports numba.cuda for the real target

from codegen.cuda.backend import CudaBackend  # noqa: E402
from codegen.lower import CodegenError  # noqa: E402
from graphnn.errors import GraphnnError  # noqa: E402
from graphnn.models import available, get_model  # noqa: E402
from graphnn.optim import make_optimizer  # noqa: E402
from graphnn.training import NumpyBackend, Trainer  # noqa: E402

TOL = {"float64": 1e-10, "float32": 1e-5}

#: built-in models whose ops the schedule lowers, with small sizes for the simulator
LOWERED = {
    "xor": {}, "mazur": {}, "linear-regression": {}, "rnn-scalar": {"mode": "looped"},
    "rnn": {"steps": 2, "hidden": 3}, "lstm": {"steps": 2, "hidden": 2},
    "digits-mlp": {"hidden": 8}, "autoencoder": {"hidden": 4},
    "stacked-autoencoder": {"sizes": (64, 6, 4)},
    "cnn": {"filters": (2, 3), "hidden": 4, "dropout_rate": 0.5},
    "denoising-autoencoder": {"hidden": 4}, "attention": {"d_model": 4, "heads": 2},
    "transformer": {"block": 4, "d_model": 4, "heads": 2, "layers": 1, "d_ff": 4, "stride": 1024},
    "gan": {"hidden": 3, "n": 8}, "diffusion": {"hidden": 3, "embed": 2, "n": 8},
    "contrastive": {"d_embed": 3, "hidden": 3, "d_char": 2},
}


def _training(feeds, step):
    """Training mode for dropout/corruption (graphs without those inputs ignore them)."""
    return dict(feeds, training=1.0, step=float(step))


def _small_feeds(model, n=4):
    return {k: np.asarray(v)[:n] for k, v in model.data.train.items()}


def _close(a, b, tol):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def _pair(model, optimizer, dtype, **hyper):
    opt_a = make_optimizer(optimizer, lr=model.defaults.get("lr", 0.1), **hyper)
    opt_b = make_optimizer(optimizer, lr=model.defaults.get("lr", 0.1), **hyper)
    return CudaBackend(model, opt_a, dtype), NumpyBackend(model, opt_b, dtype)


@pytest.mark.parametrize("name", sorted(LOWERED))
def test_train_steps_match_reference_float64(name):
    model = get_model(name, **LOWERED[name])
    dev, ref = _pair(model, "adam" if name == "digits-mlp" else "sgd", "float64")
    feeds = _small_feeds(model, 2 if name == "cnn" else 4)
    for step in (1, 2):
        _close(dev.train_step(_training(feeds, step)), ref.train_step(_training(feeds, step)), TOL["float64"])
    params = dev.params
    for p in model.parameters:
        _close(params[p], ref.params[p], TOL["float64"])
    _close(dev.loss(feeds), ref.loss(feeds), TOL["float64"])
    _close(dev.predict(feeds), ref.predict(feeds), TOL["float64"])


@pytest.mark.parametrize("name", ["xor", "digits-mlp"])
def test_train_steps_match_reference_float32(name):
    model = get_model(name, **LOWERED[name])
    dev, ref = _pair(model, "momentum", "float32")
    feeds = _small_feeds(model)
    for _ in range(2):
        _close(dev.train_step(feeds), ref.train_step(feeds), TOL["float32"])
    params = dev.params
    for p in model.params:
        assert params[p].dtype == np.float32
        _close(params[p], ref.params[p], TOL["float32"])


def test_epoch_on_device_matches_reference_with_short_last_batch():
    # batches of 20 rows: more rows than the simulator's one 16-thread block has threads,
    # so every kernel's grid-stride loop is exercised
    model = get_model("digits-mlp", hidden=8)
    dev, ref = _pair(model, "sgd", "float64")
    feeds = _small_feeds(model, 45)
    order = np.random.default_rng(0).permutation(45)
    batches = [order[:20], order[20:40], order[40:]]
    for _ in range(2):
        _close(dev.train_epoch(feeds, batches), ref.train_epoch(feeds, batches), TOL["float64"])
    params = dev.params
    for p in model.params:
        _close(params[p], ref.params[p], TOL["float64"])
    # the training arrays went to the device once and stay there
    assert len(dev._data) == 2
    # new arrays replace their inputs' old device copies (they were kept: device memory grew per fit)
    copies = {k: v.copy() for k, v in feeds.items()}
    _close(dev.train_epoch(copies, batches), ref.train_epoch(copies, batches), TOL["float64"])
    assert len(dev._data) == 2


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the hash's uint64 wrap-around stays quiet
def test_gaussian_corruption_matches_reference_bit_for_bit():
    model = get_model("denoising-autoencoder", hidden=4, noise="gaussian")
    dev, ref = _pair(model, "sgd", "float64")
    feeds = _training(_small_feeds(model, 3), 7)
    _close(dev.train_step(feeds), ref.train_step(feeds), TOL["float64"])


def _per_step_truncated_rnn():
    """A small RNN with a loss at every step and BPTT truncated to 2 steps."""
    import graphnn as gn
    from graphnn.model import Model
    from graphnn.data import Dataset
    xs, t = gn.input("xs", (None, 4, 2)), gn.input("t", (None, 4, 3))
    W, U = gn.parameter("W", shape=(3, 3)), gn.parameter("U", shape=(2, 3))
    rec = gn.scan(lambda h, x_t: (gn.tanh(h @ W + x_t @ U),) * 2, np.zeros(3), xs, truncate=2)
    rng = np.random.default_rng(2)
    data = {"xs": rng.normal(size=(4, 4, 2)), "t": rng.normal(size=(4, 4, 3))}
    return Model("trunc", gn.losses.mse(rec.ys, t), rec.ys, (xs, t), Dataset(data, data))


@pytest.mark.parametrize("per_step", [False, True])
def test_truncated_bptt_matches_reference(per_step):
    """Loss on the last state (one sweep of k steps) and at every step (the live-step flags)."""
    model = _per_step_truncated_rnn() if per_step else get_model("rnn", steps=3, hidden=3, truncate=2)
    feeds = _small_feeds(model)
    dev, ref = _pair(model, "sgd", "float64")
    assert "truncated to 2 steps" in dev.source
    for _ in range(2):
        _close(dev.train_step(feeds), ref.train_step(feeds), TOL["float64"])
    for p in model.params:
        _close(dev.params[p], ref.params[p], TOL["float64"])


def test_gradients_and_apply_gradients_match_train_step():
    model = get_model("xor")
    dev, ref = _pair(model, "sgd", "float64")
    feeds = _small_feeds(model)
    loss, flat = dev.gradients(feeds)
    ref_loss, ref_flat = ref.gradients(feeds)
    _close(loss, ref_loss, TOL["float64"])
    _close(flat, ref_flat, TOL["float64"])
    dev.apply_gradients(flat)
    ref.apply_gradients(ref_flat)
    for p in model.params:
        _close(dev.params[p], ref.params[p], TOL["float64"])


def test_trainer_fit_with_backend_cuda():
    from graphnn.schedules import exponential

    model = get_model("xor")
    lr = exponential(2.0, 0.5)               # a schedule: the update's rate per step, at run time
    a = Trainer(model, backend="cuda", lr=lr)
    b = Trainer(model, backend="numpy", lr=lr)
    a.fit(steps=3)
    b.fit(steps=3)
    _close(a.history.losses, b.history.losses, TOL["float64"])
    b.fit(steps=2)
    a.set_params(b.params)                   # host values onto the device (restoring a best epoch)
    x = model.data.train["x"]
    _close(a.predict(x), b.predict(x), TOL["float64"])


def test_models_not_lowered_fail_clearly():
    """Every other built-in model either lowers (and is tested above) or says which op or
    step is missing — a GraphnnError, never a raw traceback from the kernels."""
    for name in sorted(set(available()) - set(LOWERED)):
        model = get_model(name)
        try:
            CudaBackend(model, make_optimizer("sgd", lr=0.1), "float64")
        except (GraphnnError, CodegenError) as e:
            assert str(e)
            continue
        # it built: it must then also train like the reference (kept to one tiny step)
        dev, ref = _pair(model, "sgd", "float64")
        feeds = _small_feeds(model, 2)
        _close(dev.train_step(feeds), ref.train_step(feeds), TOL["float64"])


def test_generated_source_is_readable_and_cached():
    model = get_model("digits-mlp", hidden=8)
    dev = CudaBackend(model, make_optimizer("sgd", lr=0.1), "float64")
    src = dev.source
    assert "@cuda.jit" in src and "def grad_step(a, B):" in src and "def update(a, t, hyper):" in src
    assert "softmax cross-entropy" in src          # the schedule's comments survive
    assert "shfl" not in src and "syncwarp" not in src
    again = CudaBackend(model, make_optimizer("sgd", lr=0.1), "float64")
    assert again.module is dev.module            # same source → same cached module


def test_every_launched_kernel_compiles_to_ptx():
    """The simulator does not type kernels: compile each one as launched, for a GPU, with
    the CUDA toolkit wheels (numba-cuda[cu12]), in a process without the simulator."""
    from codegen.cuda.ptx import check_ptx, record_launches, toolkit_available

    if not toolkit_available():
        pytest.skip("CUDA toolkit wheels not installed (pip install 'numba-cuda[cu12]')")
    modules, expected = [], []
    cases = [("digits-mlp", "float32", {}), ("cnn", "float32", {}),
             ("denoising-autoencoder", "float64", {"noise": "gaussian"}), ("rnn", "float32", {}),
             ("truncated", "float32", {})]
    for name, dtype, extra in cases:
        model = (_per_step_truncated_rnn() if name == "truncated"
                 else get_model(name, **LOWERED[name], **extra))
        dev = CudaBackend(model, make_optimizer("adam", lr=0.01), dtype)
        feeds = _small_feeds(model, 2)
        with record_launches(dev.module) as launched:
            dev.train_epoch(feeds, [np.arange(1), np.arange(1, 2)])
            dev.train_step(_training(feeds, 1))
            dev.loss(feeds)
            dev.predict(feeds)
        defined = {n for n, v in vars(dev.module).items() if type(v).__name__ == "FakeCUDAKernel"
                   and not v._device}
        assert set(launched) == defined, f"kernels never launched: {defined - set(launched)}"
        modules.append((dev.module.__file__, launched))
        expected.append(defined)
    for sizes, defined in zip(check_ptx(modules), expected):
        assert set(sizes) == defined and all(v > 0 for v in sizes.values())


def test_a_batch_of_rows_times_a_matrix_as_one_gemm_on_the_device():
    """The (B, T, d) @ (d, k) products as one matmul kernel over B·T rows (reshaped views)."""
    from test_codegen import rows_model
    model = rows_model(n=2)
    dev, ref = _pair(model, "sgd", "float64")
    assert "one GEMM over all B × 3 rows" in dev.source
    feeds = _small_feeds(model, 2)
    for step in (1, 2):
        _close(dev.train_step(feeds), ref.train_step(feeds), TOL["float64"])
    for p in model.parameters:
        _close(dev.params[p], ref.params[p], TOL["float64"])


def test_a_block_the_cpu_fuses_runs_unfused_on_the_device():
    """conv → ReLU → max-pool, which the CPU prints as one fused step (a CPU-only rewrite), is
    printed from the shared, unfused schedule for CUDA and equals the reference."""
    from test_conv_fusion import FUSED, block_model
    model, feeds = block_model()
    dev, ref = _pair(model, "sgd", "float64")
    assert FUSED not in dev.source and "max" in dev.source
    small = {k: v[:2] for k, v in feeds.items()}
    for step in (1, 2):
        _close(dev.train_step(small), ref.train_step(small), TOL["float64"])
    for p in model.parameters:
        _close(dev.params[p], ref.params[p], TOL["float64"])


@pytest.mark.parametrize("what", ["predict", "loss"])
def test_a_nan_in_predict_or_loss_names_the_node_as_the_reference_does(what):
    import graphnn as gn
    from graphnn.data import Dataset
    from graphnn.model import Model

    rng = np.random.default_rng(0)
    x, W = gn.input("x", (None, 3)), rng.normal(size=(3, 4))
    W[1, 2] = np.nan    # (a √ of a negative raises in the simulator, which runs Python's math)
    y = gn.tanh(gn.matmul(x, gn.parameter("W", W), name="xW"), name="y")
    feeds = {"x": rng.normal(size=(6, 3))}
    model = Model("nan-inside", gn.sum(y), y, (x,), Dataset(feeds))
    with pytest.raises(gn.NonFiniteError, match="node 'xW' is the first to produce NaN") as want:
        getattr(NumpyBackend(model, make_optimizer("sgd", lr=0.1)), what)(feeds)
    with pytest.raises(gn.NonFiniteError) as got:
        getattr(CudaBackend(model, make_optimizer("sgd", lr=0.1)), what)(feeds)
    assert str(got.value) == str(want.value)


def test_an_optimizer_calling_exp_and_tanh_trains_like_the_reference():
    """Its host-side update printed exp_f64 (the CPU's helper), a NameError on the host."""
    from test_generic_kernels import DecayingSoftClip

    model = get_model("xor")
    dev = CudaBackend(model, DecayingSoftClip.make(), "float64")
    ref = NumpyBackend(model, DecayingSoftClip.make(), "float64")
    for _ in range(2):
        assert dev.train_step(model.data.train) == pytest.approx(ref.train_step(model.data.train), rel=1e-12)
    for p in model.parameters:
        np.testing.assert_allclose(dev.params[p], ref.params[p], rtol=1e-12)
