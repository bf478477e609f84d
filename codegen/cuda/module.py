"""Assemble kernel sources into one generated CUDA module and load it through the cache."""
from __future__ import annotations

from dataclasses import dataclass

from codegen.cache import load_generated_module

from . import kernels
from .device import is_simulator, require_cuda


@dataclass(frozen=True)
class LaunchOptions:
    """Launch geometry. The simulator runs each thread as a Python thread, so its
    defaults are small; on a GPU 16×16 tiles and 256-thread blocks."""

    tile: int = 16
    threads: int = 256
    max_blocks: int = 4096
    split: int = 8     # threads sharing one column of a batch reduction (bias gradients)

    @classmethod
    def for_target(cls, simulator: bool, tile=None, threads=None):
        # the simulator pays per barrier and per thread started: one block, each thread
        # loops longer (grid-stride), big tiles (fewer syncthreads); split 2 keeps the
        # split-reduction path tested
        base = cls(16, 16, 1, 2) if simulator else cls()
        return cls(tile or base.tile, threads or base.threads, base.max_blocks, base.split)


def module_source(parts, dtype, options: LaunchOptions, cache: bool, title="") -> str:
    doc = f'"""{title or "graphnn generated CUDA module"} (generated: do not edit)."""\n'
    return doc + kernels.header(dtype, options.tile, options.threads, cache, options.max_blocks) + "\n\n" + \
        "\n\n".join(p.rstrip("\n") + "\n" for p in parts)


def load_module(parts, *, dtype="float64", options: LaunchOptions | None = None, key=None,
                title="", verbose=False):
    """Load a module made of kernel/driver ``parts`` (strings); returns (module, source)."""
    cuda = require_cuda()
    sim = is_simulator(cuda)
    options = options or LaunchOptions.for_target(sim)
    # Numba's on-disk cache of CUDA kernels needs a real device; the simulator has none.
    source = module_source(parts, dtype, options, cache=not sim, title=title)
    module = load_generated_module(source, {"target": "cudasim" if sim else "cuda", "dtype": dtype,
                                            **(key or {})}, verbose=verbose)
    return module, source
