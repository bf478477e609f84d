"""The `interpreted` fixture (conftest.py): generated code run as plain Python must not call
Numba's compiled stored kernels. A full run failed twice (test_fuse_update's contrastive and
transformer cases) when codegen.modern_kernels had been imported, compiled, by an earlier test:
the interpreted module called the dispatcher, which compiled a new signature under
DISABLE_JIT and met Numba's own overloads made plain functions."""
import numpy as np

import codegen.modern_kernels  # noqa: F401  (compiled: imported before any interpreted test)


def test_interpreted_code_gets_plain_stored_kernels(interpreted):
    from codegen.modern_kernels import sparse_ce_rows

    assert not hasattr(sparse_ce_rows, "py_func"), "the compiled dispatcher, not a plain function"
    z = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 10   # a signature compiled nowhere
    labels, out = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    sparse_ce_rows(z, labels, out)
    want = np.log(np.exp(z).sum(-1)) - z[..., 1]
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_the_compiled_kernels_come_back_after_it():
    import codegen
    from codegen.modern_kernels import sparse_ce_rows

    assert hasattr(sparse_ce_rows, "py_func")
    assert codegen.modern_kernels.sparse_ce_rows is sparse_ce_rows
