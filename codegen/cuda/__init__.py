"""graphnn's CUDA code generator: the CPU codegen's schedule printed as Numba ``@cuda.jit``
kernels, and the 'cuda' training backend. Importing this package does not import
``numba.cuda``; building the backend does (and says clearly what is missing)."""
from .device import CudaUnavailableError, enable_simulator


def cuda_backend(model, optimizer, dtype="float64", params=None, **options):
    """The 'cuda' backend (graphnn.training's registry names 'codegen.cuda:cuda_backend'); it
    imports the backend, and numba.cuda, only when one is built."""
    from .backend import CudaBackend
    return CudaBackend(model, optimizer, dtype, params, **options)


def source(model, optimizer="sgd", dtype="float64", **hyper) -> str:
    """The CUDA module's source for ``model`` (no GPU needed): ``graphnn codegen MODEL --cuda``."""
    from graphnn.optim import make_optimizer

    from .backend import cuda_source
    opt = make_optimizer(optimizer, **{"lr": model.defaults.get("lr"), **hyper})
    return cuda_source(model, opt, dtype)

