"""A training run's output folder, kept safe: one writer at a time, nothing half-written.

What a run folder holds (``minissd train --out DIR``)::

    config.json        the run's TrainConfig, written when training starts (paths absolute)
    checkpoint.npz     weights, optimiser state, iteration, config; every N iterations, atomic
    weights.npz        the final weights alone, written when training ends
    metrics.csv        one row per iteration
    loss.png           the loss curves, drawn when training ends
    data-report.json   what the dataset reader repaired or skipped (when it did anything)

The rules:

* **One writer.** ``RunFolder.lock()`` takes an exclusive ``flock`` on the folder itself, so a
  second ``minissd train`` into the same folder stops at once with a message, and a killed run
  leaves no stale lock behind (the kernel releases it with the process). POSIX only.
* **Nothing half-written.** Every file above is written through ``minissd.fileio.atomic_write``
  (a temporary beside it, then a rename). A kill -9 in the middle of a write can leave its
  temporary (``.checkpoint.npz.XXXX.tmp``); the next run to take the lock removes them.
* **Usable after a kill.** ``config.json`` exists from the start, so ``minissd eval`` and
  ``minissd detect`` can use the last checkpoint of a run that never reached its end
  (``latest_weights``).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from .fileio import TMP_SUFFIX

CONFIG = "config.json"
CHECKPOINT = "checkpoint.npz"
WEIGHTS = "weights.npz"
METRICS = "metrics.csv"
LOSS_PLOT = "loss.png"
DATA_REPORT = "data-report.json"


class RunFolderError(ValueError):
    """A run folder cannot be used (busy, unwritable, or not a run's output)."""


class RunFolder:
    """The files of one run folder (see the module docstring)."""

    def __init__(self, path):
        self.path = Path(path)

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def loss_plot(self) -> Path:
        return self.path / LOSS_PLOT

    @property
    def data_report(self) -> Path:
        return self.path / DATA_REPORT

    def create(self) -> None:
        """Make the folder, or say in one line why it cannot be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RunFolderError(f"{self.path} exists and is not a folder") from None
        except OSError as exc:
            raise RunFolderError(f"cannot create the output folder {self.path}: "
                                 f"{exc.strerror}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunFolderError(f"the output folder {self.path} is not writable")

    @contextlib.contextmanager
    def lock(self):
        """Hold the folder's exclusive lock for the ``with`` block; refuse if another process
        holds it."""
        import fcntl

        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunFolderError(
                        f"{self.path} is in use by another training run (its folder is "
                        f"locked); wait for it to finish or choose another --out") from None
                raise
            yield self
        finally:
            os.close(fd)  # releases the lock

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporaries that a kill during an atomic write left behind (call with the
        lock held, so no live writer owns them). Returns the removed paths."""
        stale = [p for p in self.path.glob(".*" + TMP_SUFFIX) if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def latest_weights(self) -> tuple[Path, str]:
        """``(path, description)`` of the newest weights: ``weights.npz`` of a finished run,
        else the last checkpoint of an interrupted one."""
        if self.weights.exists() and (not self.checkpoint.exists() or
                                      self.weights.stat().st_mtime_ns
                                      >= self.checkpoint.stat().st_mtime_ns):
            return self.weights, "final weights"
        if self.checkpoint.exists():
            return self.checkpoint, "last checkpoint (the run did not finish)"
        raise RunFolderError(f"{self.path}: no {WEIGHTS} or {CHECKPOINT} (is this a "
                             f"`minissd train` output? a run killed before its first "
                             f"checkpoint has no weights)")


__all__ = ["RunFolder", "RunFolderError", "CONFIG", "CHECKPOINT", "WEIGHTS", "METRICS",
           "LOSS_PLOT", "DATA_REPORT"]
