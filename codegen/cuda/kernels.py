"""CUDA kernel templates: each function returns the source of one ``@cuda.jit`` kernel
plus its host launcher ``run_<name>(...)``, to be pasted into one generated module.

Kernels are printed as source (not built by closures) so the generated module is a
real file: readable, and cacheable by Numba (``cache=True`` needs a file). Every
template avoids warp intrinsics (``shfl_*``, vote, ``syncwarp``): reductions use shared
memory and ``syncthreads``, which Numba's CUDA simulator runs, so CI checks every kernel.

Conventions inside generated modules: ``F`` is the float type (``np.float32`` or
``np.float64``), ``TILE`` the matmul tile edge, ``THREADS`` the threads per block of 1-D
launches (a power of two), ``cdiv`` ceiling division, ``CACHE`` the ``cache=`` flag.
"""
from __future__ import annotations

import textwrap


def _block(src: str) -> str:
    return textwrap.dedent(src).strip("\n") + "\n"


# -- module header -------------------------------------------------------------------

def header(dtype: str, tile: int, threads: int, cache: bool, max_blocks: int = 4096) -> str:
    """Imports and constants shared by every kernel of a generated module."""
    if threads & (threads - 1):
        raise ValueError(f"threads per block must be a power of two, got {threads}")
    return _block(f"""
        import math

        import numpy as np
        from numba import cuda

        F = np.{dtype}
        TILE = {tile}
        TILE_PAD = {tile + 1}  # shared tiles' row length: +1 avoids bank conflicts
        THREADS = {threads}
        CACHE = {cache}
        MAX_BLOCKS = {max_blocks}


        def cdiv(a, b):
            return (a + b - 1) // b


        def permuted(arr, axes):
            # a zero-copy view with permuted axes: numba-cuda's DeviceNDArray.T launches a
            # copy kernel, and a copy bound once as a "view" would go stale
            if hasattr(arr, "gpu_data"):
                return type(arr)(shape=tuple(arr.shape[k] for k in axes),
                                 strides=tuple(arr.strides[k] for k in axes),
                                 dtype=arr.dtype, gpu_data=arr.gpu_data)
            return arr.transpose(axes)  # the simulator's arrays are NumPy views already


        def rows(arr):
            # an n-d array as (rows, last axis): softmax row by row (contiguous arrays only)
            last = tuple(arr.shape)[-1]
            return arr.reshape(arr.size // last, last)


        def cols_as_stack(arr, off, steps, width):
            # columns off … off + steps·width of a (B, ·) array seen as (steps, B, width): the
            # per-example packed row of a recurrence as a time-major stack (a zero-copy view)
            part = arr[:, off:off + steps * width]
            shape = (steps, arr.shape[0], width)
            strides = (width * arr.strides[1], arr.strides[0], arr.strides[1])
            if hasattr(part, "gpu_data"):
                return type(part)(shape=shape, strides=strides, dtype=part.dtype, gpu_data=part.gpu_data)
            view = np.lib.stride_tricks.as_strided(getattr(part, "_ary", part), shape, strides)
            return type(part)(view) if hasattr(part, "_ary") else view   # the simulator's array type


        def blocks_for(n):
            # grid-stride kernels: enough blocks to cover n, capped (each thread loops)
            return max(1, min(cdiv(n, THREADS), MAX_BLOCKS))
        """)


# -- tiled matmul ---------------------------------------------------------------------

def matmul(name, trans_a=False, trans_b=False) -> str:
    """C = op(A) @ op(B), tiled through shared memory.

    op(A) is A or Aᵀ (``trans_a``: A is stored (K, M)); op(B) is B or Bᵀ (``trans_b``:
    B is stored (N, K)). The forward pass uses A@B, the backward pass g@Wᵀ (``trans_b``)
    and xᵀ@g (``trans_a``), reading the transposed operand where it is. Tiles are loaded so
    consecutive threads read consecutive addresses in every form (coalesced); the tiles'
    rows are padded by one element so the transposing stores hit distinct shared banks.
    Long: most of it is the kernel's own source, one template read top to bottom.
    """
    if trans_a:
        load_a = _block("""
            k = t0 + ty
            if k < K and bm + tx < M:
                sA[tx, ty] = A[k, bm + tx]
            else:
                sA[tx, ty] = 0
            """)
    else:
        load_a = _block("""
            k = t0 + tx
            if row < M and k < K:
                sA[ty, tx] = A[row, k]
            else:
                sA[ty, tx] = 0
            """)
    if trans_b:
        load_b = _block("""
            k = t0 + tx
            if bn + ty < N and k < K:
                sB[tx, ty] = B[bn + ty, k]
            else:
                sB[tx, ty] = 0
            """)
    else:
        load_b = _block("""
            k = t0 + ty
            if col < N and k < K:
                sB[ty, tx] = B[k, col]
            else:
                sB[ty, tx] = 0
            """)
    k_dim = "A.shape[0]" if trans_a else "A.shape[1]"
    loads = textwrap.indent(load_a + load_b, " " * 20).rstrip("\n")
    return _block(f'''
        @cuda.jit(cache=CACHE)
        def {name}(A, B, C):
            """C = {'Aᵀ' if trans_a else 'A'} @ {'Bᵀ' if trans_b else 'B'}."""
            sA = cuda.shared.array((TILE, TILE_PAD), dtype=F)
            sB = cuda.shared.array((TILE, TILE_PAD), dtype=F)
            tx = cuda.threadIdx.x
            ty = cuda.threadIdx.y
            M = C.shape[0]
            N = C.shape[1]
            K = {k_dim}
            tiles_n = (N + TILE - 1) // TILE
            n_tiles = ((M + TILE - 1) // TILE) * tiles_n
            # blocks stride over output tiles (every thread of a block runs the same
            # iterations, so the barriers inside stay uniform)
            for tile_id in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
                bm = (tile_id // tiles_n) * TILE
                bn = (tile_id % tiles_n) * TILE
                row = bm + ty
                col = bn + tx
                acc = F(0)
                for t0 in range(0, K, TILE):
{loads}
                    cuda.syncthreads()
                    for kk in range(TILE):
                        acc += sA[ty, kk] * sB[kk, tx]
                    cuda.syncthreads()
                if row < M and col < N:
                    C[row, col] = acc


        def run_{name}(A, B, C):
            tiles = cdiv(C.shape[0], TILE) * cdiv(C.shape[1], TILE)
            {name}[min(tiles, MAX_BLOCKS), (TILE, TILE)](A, B, C)
        ''')


# -- softmax, softmax cross-entropy (one thread per row) -------------------------------

def row_softmax(name, log=False) -> str:
    """out[r] = softmax(x[r]) (or log-softmax), max-shifted, one thread per row (grid-stride)."""
    store = "x[r, k] - lse" if log else "math.exp(x[r, k] - lse)"
    return _block(f'''
        @cuda.jit(cache=CACHE)
        def {name}(x, out):
            """{'log-softmax' if log else 'softmax'} over the last axis, one row per thread."""
            for r in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
                m = x[r, 0]
                for k in range(1, x.shape[1]):
                    m = max(m, x[r, k])
                s = F(0)
                for k in range(x.shape[1]):
                    s += math.exp(x[r, k] - m)
                lse = m + math.log(s)
                for k in range(x.shape[1]):
                    out[r, k] = {store}


        def run_{name}(x, out):
            {name}[blocks_for(x.shape[0]), THREADS](x, out)
        ''')


def softmax_ce_rows(name, probs=False) -> str:
    """loss[r] = −Σ_k t[r,k] (z[r,k] − logsumexp(z[r])); with ``probs`` also p = softmax(z).

    The schedule fuses the gradient g·(p − t) into the loop that follows, reading ``p``:
    the loss, the probabilities and the gradient take one pass over z each.
    """
    sig = "z, t, loss, p" if probs else "z, t, loss"
    write_p = "\n                    p[r, k] = math.exp(z[r, k] - lse)" if probs else ""
    return _block(f'''
        @cuda.jit(cache=CACHE)
        def {name}({sig}):
            """Softmax cross-entropy per row{' and the probabilities' if probs else ''}."""
            for r in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
                m = z[r, 0]
                for k in range(1, z.shape[1]):
                    m = max(m, z[r, k])
                s = F(0)
                for k in range(z.shape[1]):
                    s += math.exp(z[r, k] - m)
                lse = m + math.log(s)
                acc = F(0)
                for k in range(z.shape[1]):
                    acc -= t[r, k] * (z[r, k] - lse){write_p}
                loss[r] = acc


        def run_{name}({sig}):
            {name}[blocks_for(z.shape[0]), THREADS]({sig})
        ''')


# -- fill and copy (any rank, any strides: they run over views) ----------------------------

def unravel(indices, sizes, flat):
    """Lines splitting the flat position ``flat`` into ``indices`` (row-major over ``sizes``,
    each an expression); the last index varies fastest."""
    lines, rest = [], flat
    for n, (i, size) in enumerate(zip(reversed(indices), reversed(sizes))):
        if n == len(indices) - 1:
            lines.append(f"{i} = {rest}")
        else:
            lines.append(f"{i} = {rest} % {size}")
            lines.append(f"q{n} = {rest} // {size}")
            rest = f"q{n}"
    return lines


def _over_elements(name, rank, params, over, statement, doc) -> str:
    """A grid-stride kernel running ``statement`` at every element of the ``rank``-d array
    ``over`` (any strides: views allowed), and its launcher ``run_<name>``."""
    rank = max(rank, 1)   # 0-d buffers are 1-element arrays
    idx = [f"i{k}" for k in range(rank)]
    body = "\n".join("        " + line
                     for line in unravel(idx, [f"{over}.shape[{k}]" for k in range(rank)], "i"))
    return (f"@cuda.jit(cache=CACHE)\ndef {name}({params}):\n"
            f'    """{doc}"""\n'
            f"    for i in range(cuda.grid(1), {over}.size, cuda.gridsize(1)):\n{body}\n"
            f"        {statement.format(idx=', '.join(idx))}\n\n\n"
            f"def run_{name}({params}):\n"
            f"    {name}[blocks_for({over}.size), THREADS]({params})\n")


def fill(name, rank) -> str:
    """out[...] = value over a ``rank``-d array."""
    return _over_elements(name, rank, "out, value", "out", "out[{idx}] = value", "out[...] = value")


def copy(name, rank) -> str:
    """dst[...] = src[...] for two ``rank``-d arrays of one shape (views allowed)."""
    return _over_elements(name, rank, "src, dst", "dst", "dst[{idx}] = src[{idx}]", "dst[...] = src")


def add_into(name, rank) -> str:
    """dst[...] += src[...] (a recurrence sums each step's weight gradient)."""
    return _over_elements(name, rank, "src, dst", "dst", "dst[{idx}] += src[{idx}]", "dst += src")


def repeat_row(name) -> str:
    """dst[r, :] = src[0, :] for every row: a (1, n) initial state broadcast over the batch."""
    return _block(f'''
        @cuda.jit(cache=CACHE)
        def {name}(src, dst):
            ncol = dst.shape[1]
            for i in range(cuda.grid(1), dst.shape[0] * ncol, cuda.gridsize(1)):
                dst[i // ncol, i % ncol] = src[0, i % ncol]


        def run_{name}(src, dst):
            {name}[blocks_for(dst.size), THREADS](src, dst)
        ''')


def mark_live_steps(name) -> str:
    """flags[c // width] = 1 where g[r, c] != 0: which steps' output cotangents are not zero
    (truncated BPTT runs a short reverse sweep only from those)."""
    return _block(f'''
        @cuda.jit(cache=CACHE)
        def {name}(g, width, flags):
            ncol = g.shape[1]
            for i in range(cuda.grid(1), g.shape[0] * ncol, cuda.gridsize(1)):
                if g[i // ncol, i % ncol] != 0:
                    flags[(i % ncol) // width] = 1


        def run_{name}(g, width, flags):
            {name}[blocks_for(g.size), THREADS](g, width, flags)
        ''')


# -- data movement ----------------------------------------------------------------------

def gather_rows(name) -> str:
    """dst[r, :] = src[order[start + r], :]: a mini-batch assembled on the device.

    ``src`` and ``dst`` are 2-D views (rows, features); the index array ``order`` is
    copied to the device once per epoch, so batches cost no host↔device copies.
    """
    return _block(f'''
        @cuda.jit(cache=CACHE)
        def {name}(src, order, start, dst):
            """dst[r, :] = src[order[start + r], :]."""
            ncol = dst.shape[1]
            n = dst.shape[0] * ncol
            for i in range(cuda.grid(1), n, cuda.gridsize(1)):
                r = i // ncol
                c = i - r * ncol
                dst[r, c] = src[order[start + r], c]


        def run_{name}(src, order, start, dst):
            {name}[blocks_for(dst.size), THREADS](src, order, start, dst)
        ''')


def scale_add(name) -> str:
    """acc[0] += x[0] * w: accumulates a batch's loss into the epoch total on the device."""
    return _block(f'''
        @cuda.jit(cache=CACHE)
        def {name}(x, w, total):
            if cuda.grid(1) == 0:
                total[0] += x[0] * w


        def run_{name}(x, w, total):
            {name}[1, 1](x, w, total)
        ''')
