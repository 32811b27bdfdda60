"""minissd: the SSD single-shot detector from scratch on NumPy/CuPy.

Importing minissd compiles nothing: Numba kernels compile (and cache) on their first call.
"""

__version__ = "0.1.0"
