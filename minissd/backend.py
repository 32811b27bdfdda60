"""The array-module switch: one place decides between NumPy (CPU) and CuPy (GPU).

Every op in minissd asks ``get_array_module(*arrays)`` for the module of its inputs, so the
same code runs on either device. CuPy is optional: without it (or without a CUDA device)
everything runs on NumPy and GPU tests skip with the reason given by ``gpu_unavailable_reason``.
"""

from __future__ import annotations

import numpy as np

try:  # CuPy is an optional extra (`pip install minissd[gpu]`).
    import cupy as _cupy
except Exception as exc:  # ImportError, or a broken CUDA install
    _cupy = None
    _CUPY_IMPORT_ERROR = f"CuPy is not importable ({type(exc).__name__}: {exc})"
else:
    _CUPY_IMPORT_ERROR = None


def gpu_unavailable_reason() -> str | None:
    """None when CuPy and a CUDA device are usable, else a sentence saying why not."""
    if _cupy is None:
        return _CUPY_IMPORT_ERROR
    try:
        count = _cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy is installed but CUDA is not usable ({type(exc).__name__}: {exc})"
    if count == 0:
        return "CuPy is installed but no CUDA device was found"
    return None


def gpu_available() -> bool:
    return gpu_unavailable_reason() is None


def cupy():
    """The CuPy module; raises a clear error when the GPU backend cannot be used."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"the GPU backend was requested but {reason}")
    return _cupy


def is_cupy_array(x) -> bool:
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (like ``cupy.get_array_module``)."""
    for a in arrays:
        if is_cupy_array(a):
            return _cupy
    return np


def xp_for(device: str):
    """The array module for a device name, ``'cpu'`` or ``'gpu'``."""
    if device == "cpu":
        return np
    if device in ("gpu", "cuda"):
        return cupy()
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")


def to_device(x, device: str):
    """Move an array to ``'cpu'`` (NumPy) or ``'gpu'`` (CuPy); a no-op when it is already there."""
    if device == "cpu":
        return _cupy.asnumpy(x) if is_cupy_array(x) else np.asarray(x)
    return xp_for(device).asarray(x)


def to_numpy(x) -> np.ndarray:
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    return _cupy.asnumpy(x) if is_cupy_array(x) else np.asarray(x)


def device_of(x) -> str:
    return "gpu" if is_cupy_array(x) else "cpu"
