"""The size- and rank-generic helpers compiled once per install (codegen/generic_kernels.py):
the stored file is what the generators print, every kernel equals NumPy, and generated
modules import them instead of compiling their own copies."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")
import codegen.generic_kernels as K  # noqa: E402
from codegen.shared_loops import GENERIC_RANKS, generic_kernels_source  # noqa: E402

RNG = np.random.default_rng(7)


def test_the_stored_file_is_what_the_generators_print():
    stored = (Path(K.__file__)).read_text(encoding="utf-8")
    assert stored == generic_kernels_source(), \
        "codegen/generic_kernels.py is stale: run python scripts/write_generic_kernels.py"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta, tb", [(False, False), (False, True), (True, False), (True, True)])
def test_products_equal_numpy(dtype, ta, tb):
    m, k, n = 5, 3, 4
    a = RNG.normal(size=(k, m) if ta else (m, k)).astype(dtype)
    b = RNG.normal(size=(n, k) if tb else (k, n)).astype(dtype)
    out = np.full((m, n), np.nan, dtype=dtype)
    name = f"matmul_{'t' if ta else 'n'}{'t' if tb else 'n'}" + ("_f32" if dtype == "float32" else "")
    getattr(K, name)(a, b, out)
    expected = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_allclose(out, expected, rtol=1e-12 if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("rank", GENERIC_RANKS)
def test_copy_add_fill_equal_numpy_on_views(rank):
    shape = (3, 4, 2, 5)[:rank]
    src = RNG.normal(size=shape)
    dst = RNG.normal(size=(2 * shape[0],) + shape[1:])[::2]   # a strided view
    before = dst.copy()
    K.__dict__[f"add_{rank}d"](dst, src)
    np.testing.assert_allclose(dst, before + src, rtol=1e-15)
    K.__dict__[f"copy_{rank}d"](dst, src)
    np.testing.assert_array_equal(dst, src)
    K.__dict__[f"fill_{rank}d"](dst, 2.5)
    assert (dst == 2.5).all()


@pytest.mark.parametrize("rank", [r for r in GENERIC_RANKS if r >= 2])
def test_swap01_is_a_transpose_of_the_first_two_axes(rank):
    src = RNG.normal(size=(3, 4, 2, 5)[:rank])
    dst = np.empty((src.shape[1], src.shape[0]) + src.shape[2:])
    K.__dict__[f"swap01_{rank}d"](dst, src)
    np.testing.assert_array_equal(dst, np.swapaxes(src, 0, 1))


def test_stack_and_columns_round_trip_and_any_nonzero():
    T, B, F, off = 3, 2, 4, 5
    stack = RNG.normal(size=(T, B, F))
    cols = np.zeros((B, off + T * F + 1))
    K.stack_to_cols(cols, off, stack)
    np.testing.assert_array_equal(cols[:, off:off + T * F], stack.transpose(1, 0, 2).reshape(B, T * F))
    back = np.empty_like(stack)
    K.cols_to_stack(back, cols, off)
    np.testing.assert_array_equal(back, stack)
    assert not K.any_nonzero(np.zeros((2, 3))) and K.any_nonzero(np.eye(2))


def test_generated_modules_import_them_and_print_only_what_is_not_stored(isolated_cache):
    import graphnn as gn
    from codegen.backend import CpuBackend
    from graphnn.models import get_model

    model = get_model("xor")
    source = CpuBackend(model, gn.Trainer(model, backend="numpy").optimizer).source
    assert "from codegen.generic_kernels import matmul_nn  # kernels " in source
    assert "def matmul_nn(" not in source
    from codegen.shared_loops import array_helper
    from codegen.printer import HELPERS
    assert HELPERS[array_helper("copy", (None,) * 6)].lstrip().startswith("@njit")   # rank 6: printed


def test_a_module_names_the_version_of_the_stored_kernels_it_imports(isolated_cache):
    """Numba's cache of a generated module keeps the imported kernels' code linked in; the
    kernels' digest in the import line gives a module a new source (a new cache entry) when
    they change. Without it, an edited kernel file went on running the old code."""
    import hashlib

    import graphnn as gn
    import codegen.modern_kernels as M
    from codegen.backend import CpuBackend
    from codegen.shared_loops import generic_kernels_source
    from graphnn.models import get_model

    model = get_model("transformer")
    source = CpuBackend(model, gn.Trainer(model, backend="numpy").optimizer).source
    modern = hashlib.sha256(Path(M.__file__).read_bytes()).hexdigest()[:12]
    generic = hashlib.sha256(generic_kernels_source().encode()).hexdigest()[:12]
    assert f"import layer_norm_rows  # kernels {modern}" in source
    assert f"  # kernels {generic}" in source


def _source(model, optimizer, dtype):
    from codegen import CpuBackend
    from graphnn.optim import make_optimizer

    return CpuBackend(model, make_optimizer(optimizer), dtype).source


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_model_imports_its_built_in_optimizers_update(dtype):
    """apply_update is the same text for every model of one built-in optimizer and dtype: it
    is stored with these kernels (compiled once per install, ~0.2 s of every cold compile),
    never printed into a module again."""
    from graphnn.models import available, get_model

    names = [n for n in available() if get_model(n).task not in ("perceptron", "hopfield")]
    for name in names:
        for optimizer in ("sgd", "momentum", "adam"):
            source = _source(get_model(name), optimizer, dtype)
            assert f"import apply_update_{optimizer}_{dtype} as apply_update" in source, (name, optimizer)
            assert "def apply_update(" not in source, (name, optimizer)


def test_a_users_own_optimizer_prints_its_update_and_trains_like_the_reference():
    import sympy

    from codegen import CpuBackend
    from graphnn.models import get_model
    from graphnn.optim import Optimizer, g, w
    from graphnn.training import NumpyBackend

    class Lion(Optimizer):   # sign of a momentum blend (Chen et al. 2023), without weight decay
        name = "lion"
        state = ("m",)
        defaults = {"lr": 0.01, "b1": 0.9}

        def rules(self):
            m, lr, b1 = sympy.Symbol("m"), self.hyper_symbols["lr"], self.hyper_symbols["b1"]
            return [(w, w - lr * sympy.sign(b1 * m + (1 - b1) * g)), (m, b1 * m + (1 - b1) * g)]

    model = get_model("xor")
    cpu, ref = CpuBackend(model, Lion(), "float64"), NumpyBackend(model, Lion(), "float64")
    assert "def apply_update(" in cpu.source and "as apply_update" not in cpu.source
    for _ in range(5):
        assert cpu.train_step(model.data.train) == pytest.approx(ref.train_step(model.data.train), rel=1e-12)
    for p in model.parameters:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-12, atol=1e-15)


class DecayingSoftClip:
    """An optimizer whose rules call exp (a per-step scalar) and tanh (per element):
    w ← w − η·e^(−λt)·tanh(g). Its module printed exp_f64 without importing it (the update's
    own printer's helpers were dropped): Numba could not compile apply_update."""

    @staticmethod
    def make():
        import sympy

        from graphnn.optim import Optimizer, g, t, w

        class DecayingSoftClipOptimizer(Optimizer):
            name = "decaying_soft_clip"
            defaults = {"lr": 0.1, "decay": 0.5}

            def rules(self):
                h = self.hyper_symbols
                return [(w, w - h["lr"] * sympy.exp(-h["decay"] * t) * sympy.tanh(g))]

        return DecayingSoftClipOptimizer()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_optimizer_calling_exp_and_tanh_compiles_and_trains_like_the_reference(dtype):
    from codegen import CpuBackend
    from graphnn.models import get_model
    from graphnn.training import NumpyBackend

    model = get_model("xor")
    cpu = CpuBackend(model, DecayingSoftClip.make(), dtype)
    ref = NumpyBackend(model, DecayingSoftClip.make(), dtype)
    for _ in range(3):
        assert cpu.train_step(model.data.train) == pytest.approx(ref.train_step(model.data.train),
                                                                 rel=1e-12 if dtype == "float64" else 1e-5)
    for p in model.parameters:
        np.testing.assert_allclose(cpu.params[p], ref.params[p], rtol=1e-12 if dtype == "float64" else 1e-5)
