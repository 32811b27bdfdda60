"""Weights on disk: ``.npz`` archives, written atomically, read without pickle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..fileio import atomic_write


def save_npz(path, arrays: dict) -> Path:
    """Write ``{name: array}`` to ``path`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v)
                                                        for k, v in arrays.items()}))


def load_npz(path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by ``save_npz`` (``allow_pickle=False``: object arrays refused)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_npz: no such file: {path}")
    if not zipfile.is_zipfile(path):  # NumPy would otherwise try to unpickle it
        raise ValueError(f"load_npz: {path} is not a readable .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:  # object arrays need pickle
        raise ValueError(f"load_npz: {path} holds pickled objects, which minissd never loads "
                         f"({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"load_npz: {path} is not a readable .npz archive ({exc})") from None
    not_arrays = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if not_arrays:  # np.load hands other zip members back as raw bytes
        raise ValueError(f"load_npz: {path} is a zip file but not an .npz archive: "
                         f"{len(not_arrays)} member(s) are not NumPy arrays (first: "
                         f"{not_arrays[0]!r})")
    if not arrays:
        raise ValueError(f"load_npz: {path} holds no arrays")
    return arrays


def save_weights(module, path) -> Path:
    """Save a Module's ``state_dict`` as ``.npz``."""
    return save_npz(path, module.state_dict())


def load_weights(module, path, strict: bool = True):
    """Load ``.npz`` weights into a Module (see ``Module.load_state_dict``)."""
    return module.load_state_dict(load_npz(path), strict=strict)
