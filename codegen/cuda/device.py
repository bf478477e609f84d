"""Finding the CUDA device (or Numba's CUDA simulator), with errors that say what is missing.

``numba.cuda`` is imported only here and only when the CUDA backend is asked for, so CPU
users never load it. Which target the process gets is fixed at that first import:
``NUMBA_ENABLE_CUDASIM=1`` selects Numba's simulator (slow, GPU-free; what CI uses).
"""
from __future__ import annotations

import importlib.util
import os
import sys

from graphnn.errors import GraphnnError

INSTALL_HINT = ("pip install 'graphnn[cuda]' (NVIDIA's numba-cuda; add the toolkit with "
                "'graphnn[cu12]' or 'graphnn[cu13]' to match your driver)")


class CudaUnavailableError(GraphnnError):
    """The CUDA backend cannot run here: no numba-cuda, no driver, or no GPU."""


def simulator_requested() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def enable_simulator():
    """Switch this process to Numba's CUDA simulator (before numba.cuda is first imported).

    Returns the simulator's ``cuda`` module. Raises if the real target is already loaded,
    because Numba cannot switch targets inside one process.
    """
    loaded = sys.modules.get("numba.cuda")
    if loaded is not None:
        if getattr(loaded, "simulator_enabled", None) or _is_simulator(loaded):
            return loaded
        raise CudaUnavailableError("numba.cuda is already imported for the real GPU target in this "
                                   "process; set NUMBA_ENABLE_CUDASIM=1 before starting Python")
    from numba.core import config

    previous = os.environ.get("NUMBA_ENABLE_CUDASIM")
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    try:
        config.reload_config()
        from numba import cuda
    finally:
        # the choice is now fixed in this process; don't leak the variable to children
        if previous is None:
            os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
        else:
            os.environ["NUMBA_ENABLE_CUDASIM"] = previous
        # and let Numba see the environment as it now is: it reloads its whole config at the
        # next compile when the environment differs from what it saw last, which would undo
        # any setting made in between (numba.config.DISABLE_JIT = True, say) at a random later
        # compile
        config.reload_config()
    return cuda


def _is_simulator(cuda) -> bool:
    return "simulator" in type(cuda.to_device).__module__ or "simulator" in getattr(
        cuda.to_device, "__module__", "")


def is_simulator(cuda=None) -> bool:
    cuda = cuda or sys.modules.get("numba.cuda")
    return bool(cuda is not None and _is_simulator(cuda))


def numba_cuda_installed() -> bool:
    return importlib.util.find_spec("numba_cuda") is not None


def require_cuda():
    """The ``numba.cuda`` module, ready to launch kernels; else a CudaUnavailableError.

    Accepts the simulator (``NUMBA_ENABLE_CUDASIM=1``) without a GPU. Otherwise checks,
    in order: NVIDIA's numba-cuda is installed, the driver loads, a GPU is present.
    """
    loaded = sys.modules.get("numba.cuda")
    if loaded is not None and is_simulator(loaded):
        return loaded
    if simulator_requested():
        from numba import cuda
        return cuda
    if not numba_cuda_installed():
        raise CudaUnavailableError(
            "backend 'cuda' needs NVIDIA's numba-cuda package, which is not installed: "
            f"{INSTALL_HINT}. To try the CUDA backend without a GPU, set NUMBA_ENABLE_CUDASIM=1 "
            "(Numba's simulator: slow, for testing only).")
    try:
        from numba import cuda
    except Exception as e:  # a broken install: say which package
        raise CudaUnavailableError(f"backend 'cuda': importing numba-cuda failed ({e}); "
                                   f"reinstall with {INSTALL_HINT}") from None
    try:
        cuda.get_current_device()
    except Exception as e:
        reason = " ".join(str(e).split()).rstrip(" :.")
        if "driver" in reason.lower() and "cannot be found" in reason.lower():
            what = "the NVIDIA driver library (libcuda) was not found — is there an NVIDIA GPU and driver?"
        elif "no cuda-capable device" in reason.lower() or "no device" in reason.lower():
            what = "no CUDA GPU was detected"
        else:
            what = "the CUDA driver could not be initialised"
        raise CudaUnavailableError(
            f"backend 'cuda' cannot run here: {what} (numba-cuda said: {reason}). "
            "Use backend 'cpu' or 'numpy', or set NUMBA_ENABLE_CUDASIM=1 to run the CUDA "
            "kernels in Numba's simulator (slow, for testing).") from None
    return cuda
