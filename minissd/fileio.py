"""Files that are never half-written: write to a temporary file beside the target, then rename.

Used for everything a run folder holds (weights, checkpoints, configs, reports), so a crash or a
kill mid-write leaves either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Suffix of the temporary files ``atomic_write`` renames into place.
TMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


#: Mode of the files ``atomic_write`` makes: what ``open(path, "w")`` would give.
FILE_MODE = 0o666 & ~_read_umask()


def atomic_write(path, write) -> Path:
    """Write ``path`` atomically: ``write(file)`` fills a temporary file in the same folder,
    which is flushed to disk and renamed over ``path`` (``os.replace``). A crash mid-write never
    leaves a truncated file under ``path``; the temporary (``.<name>.*.tmp``) is removed on any
    error (a kill -9 can still leave one: ``minissd.runfolder`` sweeps them). The file gets the
    mode a plain ``open(path, "w")`` would (0666 less the umask), not ``mkstemp``'s 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """``atomic_write`` of a UTF-8 text file."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
