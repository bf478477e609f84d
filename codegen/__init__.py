"""graphnn's Numba code generator: lowers a graph to one module of @njit functions,
caches the generated source on disk and loads it (so Numba's cache=True works)."""
from .cache import load_generated_module, cache_info, clear_cache
