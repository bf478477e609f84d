"""Type-check generated CUDA kernels by compiling them to PTX, without a GPU.

Numba's simulator runs kernels as Python, so it never types them: a kernel that works in
the simulator can still fail to compile for a GPU. With the CUDA toolkit wheels
(``numba-cuda[cu12]``) ``cuda.compile_ptx`` compiles a kernel for a given signature
without a device. The signatures come from the simulator run itself:
`record_launches` notes the argument types of every launch, and `check_ptx` compiles
each kernel with them in a fresh process (the simulator and the real target cannot
share one process).

    python -m codegen.cuda.ptx SPEC.json   # {"modules": [{"path", "signatures"}], "cc"}
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np


def describe(arg):
    """A JSON-able type descriptor of one kernel argument."""
    ary = getattr(arg, "_ary", arg)          # the simulator's device arrays wrap numpy
    if isinstance(ary, np.ndarray) and ary.ndim > 0:
        layout = "C" if ary.flags.c_contiguous else "F" if ary.flags.f_contiguous else "A"
        return ["array", ary.dtype.name, ary.ndim, layout]
    if isinstance(arg, (bool, np.bool_)):
        return ["bool"]
    if isinstance(arg, (int, np.integer)):
        return ["int64"]
    if isinstance(arg, np.floating):
        return [np.dtype(type(arg)).name]
    if isinstance(arg, float):
        return ["float64"]
    raise TypeError(f"cannot describe a kernel argument of type {type(arg).__name__}")


@contextlib.contextmanager
def record_launches(module):
    """Inside the block, every launch of a kernel of ``module`` (simulator only) is recorded
    as {kernel name: [signature, …]} into the yielded dict."""
    from numba.cuda.simulator import kernel as sim

    seen: dict = {}
    original = sim.FakeCUDAKernel.__call__

    def call(self, *args):
        if not self._device and getattr(self.fn, "__module__", None) == module.__name__:
            sig = [describe(a) for a in args]
            sigs = seen.setdefault(self.fn.__name__, [])
            if sig not in sigs:
                sigs.append(sig)
        return original(self, *args)

    sim.FakeCUDAKernel.__call__ = call
    try:
        yield seen
    finally:
        sim.FakeCUDAKernel.__call__ = original


def numba_signature(sig):
    from numba import types

    out = []
    for d in sig:
        if d[0] == "array":
            out.append(types.Array(getattr(types, d[1]), d[2], d[3]))
        else:
            out.append(getattr(types, d[0]))
    return tuple(out)


def compile_kernels(path, signatures, cc=(7, 5)) -> dict:
    """Compile every kernel of the module file ``path`` for each recorded signature.

    Must run in a process whose ``numba.cuda`` is the real target (no simulator).
    Returns {kernel: total PTX characters}; raises naming the kernel that fails.
    """
    import types

    from numba import cuda
    from numba.cuda import dispatcher

    # numba-cuda compiles a kernel's device functions (mix64, …) for the *current device's*
    # compute capability, which fails without a GPU; here there is none, so answer with the
    # capability we compile for.
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=tuple(cc))
    spec = importlib.util.spec_from_file_location(f"graphnn_ptx_check_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    sizes = {}
    for name, sigs in signatures.items():
        fn = getattr(module, name).py_func
        for sig in sigs:
            try:
                ptx, _ = cuda.compile_ptx(fn, numba_signature(sig), cc=tuple(cc))
            except Exception as e:
                raise RuntimeError(f"kernel {name}{tuple(sig)} does not compile for a GPU: "
                                   f"{type(e).__name__}: {str(e).strip().splitlines()[0]}") from e
            sizes[name] = sizes.get(name, 0) + len(ptx)
    return sizes


def toolkit_available() -> bool:
    """NVRTC (the CUDA toolkit's runtime compiler) is importable: compile_ptx can work."""
    try:
        return (importlib.util.find_spec("numba_cuda") is not None
                and importlib.util.find_spec("nvidia.cuda_nvrtc") is not None)
    except ModuleNotFoundError:
        return False


def check_ptx(modules, cc=(7, 5), timeout=600) -> list:
    """`compile_kernels` for each (module path, signatures) in one fresh process without the
    simulator; returns one {kernel: PTX size} per module."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    spec = json.dumps({"modules": [{"path": str(p), "signatures": s} for p, s in modules], "cc": list(cc)})
    proc = subprocess.run([sys.executable, "-m", "codegen.cuda.ptx", "-"], input=spec,
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"PTX check failed:\n{proc.stderr.strip()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    spec = json.load(sys.stdin if argv[0] == "-" else open(argv[0]))
    cc = spec.get("cc", (7, 5))
    print(json.dumps([compile_kernels(m["path"], m["signatures"], cc) for m in spec["modules"]]))


if __name__ == "__main__":
    main()
