"""Hot-path kernels (installed as ``minissd.kernels``): Numba CPU kernels and CUDA C sources
(``*.cu``) compiled by CuPy's ``RawKernel`` on first use. Nothing here compiles at import.
"""
