"""Weights on disk: ``.npz`` archives, written atomically, read without pickle."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def save_npz(path, arrays: dict) -> Path:
    """Write ``{name: array}`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``. A crash mid-write never leaves a truncated file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_npz(path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by ``save_npz`` (``allow_pickle=False``: object arrays refused)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_npz: no such file: {path}")
    if not zipfile.is_zipfile(path):  # NumPy would otherwise try to unpickle it
        raise ValueError(f"load_npz: {path} is not a readable .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:  # object arrays need pickle
        raise ValueError(f"load_npz: {path} holds pickled objects, which minissd never loads "
                         f"({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"load_npz: {path} is not a readable .npz archive ({exc})") from None


def save_weights(module, path) -> Path:
    """Save a Module's ``state_dict`` as ``.npz``."""
    return save_npz(path, module.state_dict())


def load_weights(module, path, strict: bool = True):
    """Load ``.npz`` weights into a Module (see ``Module.load_state_dict``)."""
    return module.load_state_dict(load_npz(path), strict=strict)
