"""Batches from a dataset: seeded shuffling, seeded augmentation, worker processes.

A dataset is anything with ``len(dataset)`` and ``dataset[i]`` returning a tuple that
starts with ``(image, boxes, labels)`` (a :class:`minissd.data.Sample` does). The
transform is called as ``transform(image, boxes, labels, rng)`` and must return
``(image, boxes, labels)``, e.g. :class:`minissd.data.transforms.SSDAugmentation`.

Reproducibility: the order of epoch ``e`` comes from ``default_rng([SHUFFLE, seed, e])``
and sample ``i`` of epoch ``e`` is augmented with ``default_rng([AUGMENT, seed, e, i])``.
Neither depends on which process loads the sample, so the same seed gives the same
batches for any ``num_workers``.

Shards (data-parallel training, ``minissd.distributed``): with ``num_shards=K``, the loader
of process ``shard_rank`` serves its contiguous piece of every batch (``numpy.array_split``'s
rule, ``minissd.distributed.shard``), so the K loaders together serve each batch of one loader
exactly once, in the same order and with the same augmentation. Every piece must hold a
sample (each process runs every step): a batch smaller than K is refused up front.

Iteration: ``for batch in loader`` runs the next epoch (the loader counts epochs);
``loader.epoch(e)`` runs epoch ``e``; ``loader.forever()`` runs epoch after epoch and
never raises ``StopIteration`` (ssd.pytorch #214: a training loop built on ``next()``
died at the end of the first epoch).

Workers are fresh interpreters (the ``spawn`` start method), so they inherit no
threads or locks from the parent: forking a process whose image library or BLAS has
started threads can deadlock the child (ChainerCV #386). Each worker is also limited
to one thread per library (``OMP_NUM_THREADS=1`` etc., set before it starts) so that
``num_workers`` processes don't oversubscribe the cores. As with any ``spawn`` code,
a script that creates a loader with workers must guard its entry point with
``if __name__ == "__main__":``.

Errors. A sample that cannot be loaded raises :class:`DataLoaderError` in the main
process, naming the epoch and the batch's dataset indices. When the cause is bad data
(a :class:`~minissd.data.voc.VOCDataError`, which names the file) that one line is the
whole message, from a worker too: the worker's traceback, which only shows the reader's
insides, is dropped. Any other exception (a bug in a transform, say) keeps its
traceback, the worker's included, chained below. A worker that dies (e.g. killed for
memory) raises :class:`DataLoaderError` instead of hanging. Workers receive the dataset
and the transform by pickle: one that cannot be pickled (a lambda, a local function)
is named in a ``ValueError`` before any process starts.

Orphans. A worker watches the process that started it (every ``PARENT_POLL_S``
seconds) and exits when it is gone, e.g. after ``kill -9`` of the trainer: otherwise
it would wait for work forever, and so would Python's multiprocessing resource
tracker, a process that every ``spawn`` start launches and that exits once the last
process holding its pipe (the parent and each worker) is gone.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.reduction import ForkingPickler
from typing import NamedTuple

import numpy as np

from ..distributed.sharding import shard, shard_bounds
from .voc import VOCDataError

__all__ = [
    "Batch",
    "BatchShapeError",
    "DataLoader",
    "DataLoaderError",
    "sample_rng",
    "WORKER_THREAD_LIMITS",
]

#: Domain tags that keep the shuffle and augmentation random streams apart.
SHUFFLE, AUGMENT = 0, 1

#: Environment set in every worker before it starts: one thread per library.
WORKER_THREAD_LIMITS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}

#: Batches requested ahead per worker.
PREFETCH_PER_WORKER = 2

#: Seconds between a worker's checks that its parent process is still alive.
PARENT_POLL_S = 0.2


class DataLoaderError(RuntimeError):
    """A batch could not be loaded; the message names the epoch and dataset indices."""


class BatchShapeError(ValueError):
    """The samples of one batch have different image shapes (no resizing transform)."""


class Batch(NamedTuple):
    """One batch.

    images   float32 (B, 3, H, W) (whatever the transform returns, stacked)
    boxes    list of B float32 (K_i, 4) arrays (normalised corners after SSD transforms)
    labels   list of B int64 (K_i,) arrays, 0-based object classes
    indices  int64 (B,) dataset indices of the samples
    epoch    the epoch this batch belongs to

    With shards, B is this shard's part of the global batch.
    """

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    indices: np.ndarray
    epoch: int


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that augments sample ``index`` in ``epoch``."""
    return np.random.default_rng([AUGMENT, seed, epoch, index])


def load_batch(dataset, transform: Callable | None, seed: int, epoch: int, indices) -> Batch:
    """Read, transform and stack the samples ``indices`` of ``epoch``."""
    images, boxes, labels = [], [], []
    for index in indices:
        image, sample_boxes, sample_labels = dataset[int(index)][:3]
        if transform is not None:
            image, sample_boxes, sample_labels = transform(
                image, sample_boxes, sample_labels, sample_rng(seed, epoch, int(index))
            )
        images.append(image)
        boxes.append(sample_boxes)
        labels.append(sample_labels)
    shapes = {np.shape(image) for image in images}
    if len(shapes) > 1:
        raise BatchShapeError(
            f"images in one batch have different shapes {sorted(shapes)}; pass a transform "
            f"that resizes them (e.g. SSDTransformEval(size))"
        )
    return Batch(np.stack(images), boxes, labels, np.asarray(indices, dtype=np.int64), epoch)


# ----------------------------------------------------------------------------- workers


class _ThreadLimitedProcess(SpawnProcess):
    """A spawned process started with :data:`WORKER_THREAD_LIMITS` in its environment."""

    def start(self):
        saved = {name: os.environ.get(name) for name in WORKER_THREAD_LIMITS}
        os.environ.update(WORKER_THREAD_LIMITS)
        try:
            super().start()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class _ThreadLimitedSpawnContext(SpawnContext):
    Process = _ThreadLimitedProcess


_worker_state: dict = {}


def _exit_with_parent(parent_pid: int) -> None:
    """Start a daemon thread that ends this process once ``parent_pid`` is gone.

    A process whose parent dies is handed to another (init or a subreaper), so its
    ``os.getppid()`` changes; polling that works on every POSIX system, unlike Linux's
    ``PR_SET_PDEATHSIG``, which also fires when the parent *thread* that started the
    worker ends.
    """

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="minissd-parent-watch", daemon=True).start()


def _init_worker(dataset, transform, seed, parent_pid) -> None:
    os.environ.update(WORKER_THREAD_LIMITS)  # for libraries imported from here on
    _exit_with_parent(parent_pid)
    _worker_state.update(dataset=dataset, transform=transform, seed=seed)


def _worker_load_batch(epoch: int, indices: np.ndarray) -> Batch:
    s = _worker_state
    return load_batch(s["dataset"], s["transform"], s["seed"], epoch, indices)


def _is_bad_data(exc: BaseException) -> bool:
    """Errors about the data, whose message (naming the file) is the whole story."""
    return isinstance(exc, VOCDataError | BatchShapeError)


def _cause(exc: BaseException) -> BaseException | None:
    """What a DataLoaderError is chained to: nothing for bad data, else the error."""
    return None if _is_bad_data(exc) else exc


# ----------------------------------------------------------------------------- loader


class DataLoader:
    """Seeded batches of ``dataset`` (see the module docstring).

    Args:
        dataset: ``len()`` and ``[i] -> (image, boxes, labels, ...)``.
        batch_size: samples per batch.
        shuffle: a new seeded permutation each epoch; False keeps dataset order.
        seed: int, a ``numpy.random.Generator`` (an int is drawn from it), or None
            (fresh OS entropy; the value drawn is kept in ``loader.seed``).
        num_workers: 0 loads in this process; N > 0 uses N spawned worker processes.
        transform: ``transform(image, boxes, labels, rng) -> (image, boxes, labels)``.
        drop_last: drop the last batch of an epoch when it is smaller than batch_size.
        shard_rank, num_shards: serve only piece ``shard_rank`` of ``num_shards`` of every
            batch (see the module docstring); ``batch_size`` stays the whole batch's.

    Call :meth:`close` (or use ``with DataLoader(...) as loader:``) to stop workers.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        shuffle: bool = False,
        seed: int | np.random.Generator | None = None,
        num_workers: int = 0,
        transform: Callable | None = None,
        drop_last: bool = False,
        shard_rank: int = 0,
        num_shards: int = 1,
    ):
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if not isinstance(num_workers, int | np.integer) or num_workers < 0:
            raise ValueError(f"num_workers: expected an int >= 0, got {num_workers!r}")
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(2**63))
        elif seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**63)
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.transform = transform
        self.drop_last = drop_last
        self.next_epoch = 0
        self._executor: ProcessPoolExecutor | None = None
        if len(self) == 0:
            raise ValueError(
                f"no batches: dataset has {len(dataset)} samples, batch_size={batch_size}, "
                f"drop_last={drop_last}"
            )
        self.shard_rank, self.num_shards = int(shard_rank), int(num_shards)
        shard_bounds(0, self.shard_rank, self.num_shards)  # ValueError for a bad pair
        smallest = min(self.batch_size, len(dataset) - (len(self) - 1) * self.batch_size)
        if smallest < self.num_shards:
            raise ValueError(
                f"num_shards={num_shards}: every batch must hold at least one sample per "
                f"shard, but a batch of this loader holds {smallest} (dataset of "
                f"{len(dataset)} samples, batch_size={batch_size}, drop_last={drop_last})"
            )

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The dataset indices of ``epoch`` in the order they are served: int64 (N,)."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([SHUFFLE, self.seed, epoch]).permutation(n)

    def _batches_of(self, epoch: int) -> Iterator[tuple[int, np.ndarray]]:
        order = self.order(epoch)
        for b in range(len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield epoch, shard(batch, self.shard_rank, self.num_shards)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch."""
        return self._run(self._batches_of(epoch))

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.next_epoch = self.next_epoch, self.next_epoch + 1
        return self.epoch(epoch)

    def forever(self, start_epoch: int | None = None) -> Iterator[Batch]:
        """Batches of epoch after epoch, without end (and prefetching across epochs)."""
        first = self.next_epoch if start_epoch is None else start_epoch

        def specs():
            epoch = first
            while True:
                self.next_epoch = epoch + 1
                yield from self._batches_of(epoch)
                epoch += 1

        return self._run(specs())

    # -- execution

    def _run(self, specs: Iterator[tuple[int, np.ndarray]]) -> Iterator[Batch]:
        if self.num_workers == 0:
            for epoch, indices in specs:
                yield self._load_here(epoch, indices)
            return
        executor = self._workers()
        pending: collections.deque[tuple[int, np.ndarray, Future]] = collections.deque()
        try:
            for epoch, indices in specs:
                pending.append(
                    (epoch, indices, executor.submit(_worker_load_batch, epoch, indices))
                )
                if len(pending) >= PREFETCH_PER_WORKER * self.num_workers:
                    yield self._result(*pending.popleft())
            while pending:
                yield self._result(*pending.popleft())
        finally:
            for _, _, future in pending:
                future.cancel()

    def _load_here(self, epoch: int, indices: np.ndarray) -> Batch:
        try:
            return load_batch(self.dataset, self.transform, self.seed, epoch, indices)
        except Exception as exc:
            raise DataLoaderError(self._describe(epoch, indices, exc)) from _cause(exc)

    def _result(self, epoch: int, indices: np.ndarray, future: Future) -> Batch:
        try:
            return future.result()
        except BrokenProcessPool:
            self.close()
            raise DataLoaderError(
                self._describe(epoch, indices, "a worker process died (killed or out of memory?)")
            ) from None
        except Exception as exc:
            raise DataLoaderError(self._describe(epoch, indices, exc)) from _cause(exc)

    @staticmethod
    def _describe(epoch: int, indices: np.ndarray, problem) -> str:
        shown = ", ".join(str(i) for i in indices[:8]) + (", ..." if len(indices) > 8 else "")
        if isinstance(problem, Exception) and not _is_bad_data(problem):
            problem = f"{type(problem).__name__}: {problem}"
        return f"loading epoch {epoch}, dataset indices [{shown}] failed: {problem}"

    def _check_picklable(self) -> None:
        """ValueError naming the dataset or transform if it cannot reach the workers.

        (Otherwise the pickling error surfaces from deep inside multiprocessing.)
        """
        for name, value in (("dataset", self.dataset), ("transform", self.transform)):
            try:
                ForkingPickler.dumps(value)
            except Exception as exc:
                raise ValueError(
                    f"num_workers={self.num_workers}: the {name} is sent to each worker "
                    f"process by pickle and cannot be pickled ({exc}); define it at module "
                    f"level (no lambda or local function), or use num_workers=0"
                ) from None

    def _workers(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._check_picklable()
            self._executor = ProcessPoolExecutor(
                max_workers=self.num_workers,
                mp_context=_ThreadLimitedSpawnContext(),
                initializer=_init_worker,
                initargs=(self.dataset, self.transform, self.seed, os.getpid()),
            )
        return self._executor

    def close(self) -> None:
        """Stop the worker processes (a later iteration starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> DataLoader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
