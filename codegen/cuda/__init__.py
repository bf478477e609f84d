"""graphnn's CUDA code generator: the CPU codegen's schedule printed as Numba ``@cuda.jit``
kernels, and the 'cuda' training backend. Importing this package does not import
``numba.cuda``; building the backend does (and says clearly what is missing)."""
from graphnn.train import BACKENDS

from .device import CudaUnavailableError, enable_simulator


def cuda_backend(model, optimizer, dtype="float64", params=None, **options):
    """Factory registered as ``BACKENDS['cuda']`` (imports the backend only when used)."""
    from .backend import CudaBackend
    return CudaBackend(model, optimizer, dtype, params, **options)


def source(model, optimizer="sgd", dtype="float64", **hyper) -> str:
    """The CUDA module's source for ``model`` (no GPU needed): ``graphnn codegen MODEL --cuda``."""
    from graphnn.optim import make_optimizer

    from .backend import cuda_source
    opt = make_optimizer(optimizer, **{"lr": model.defaults.get("lr"), **hyper})
    return cuda_source(model, opt, dtype)


BACKENDS.setdefault("cuda", cuda_backend)
