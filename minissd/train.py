"""Training: SGD on the MultiBox loss, with progress, metrics, checkpoints and resume.

One ``TrainConfig`` holds every number (the paper's for SSD300 on VOC by default);
``TrainConfig.check`` refuses impossible values with a ``ConfigError`` naming the field. A run
writes into ``out_dir`` (a ``minissd.runfolder.RunFolder``: locked against a second writer,
every file written atomically):

* ``config.json``: the config, written when training starts (``data_root`` made absolute);
* ``metrics.csv``: one row per iteration (lr, loss and its parts, positives, images/s);
* ``loss.png``: the loss curves;
* ``checkpoint.npz``: model weights, optimiser state, iteration and the run's config, written
  every ``checkpoint_every`` iterations and at the end (no pickle);
* ``weights.npz``: the final weights alone;
* ``data-report.json``: what the dataset reader repaired or skipped, when it did anything.

Resuming (``resume=True``) continues from ``checkpoint.npz`` to the same numbers as an
uninterrupted run: the data order and augmentation of batch ``k`` depend only on
``(seed, k)`` (see ``minissd.data.loader``), so the resumed run sees exactly the batches the
uninterrupted one would have seen. Only the fields in ``RUN_FIELDS`` (how long, where, how
often to checkpoint) may change on resume; any other difference from the checkpoint's config is
refused with the list of differences. A non-finite loss stops training with
``NonFiniteLossError`` before the update, leaving the last good checkpoint in place.

Several processes: ``mpiexec -n K minissd train ...`` (or ``train()`` in K processes that
``mpiexec`` started) trains one model with K processes, the global batch ``batch_size`` split
across them, to the numbers of one process (``minissd.distributed``; batch norm synchronised
unless ``sync_batch_norm=False``). A run resumes with any number of processes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from . import distributed
from .allocator import keep_freed_memory
from .autograd import Tensor
from .autograd.functional import NonFiniteError
from .backend import gpu_unavailable_reason, to_numpy, xp_for
from .fileio import atomic_write_text
from .nn import load_npz, save_npz
from .optim import SGD, Adam, MultiStepLR
from .runfolder import RunFolder, RunFolderError
from .ssd.model import MODELS, SSD
from .ssd.multibox_loss import build_targets, multibox_loss

METRIC_COLUMNS = ("iteration", "lr", "loss", "loc_loss", "conf_loss", "positives",
                  "images_per_s", "seconds")


#: The fields a resumed run may change: how long it trains, where, and how it reports. Every
#: other field of the checkpoint's config must stay as it was.
RUN_FIELDS = ("iterations", "device", "num_workers", "checkpoint_every", "out_dir", "progress")

OPTIMIZERS = ("sgd", "adam")
DEVICES = ("cpu", "gpu")
DTYPES = ("float32", "float64")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; training stopped before applying the update."""


class ConfigError(ValueError):
    """A ``TrainConfig`` value that cannot work; ``field`` names it (the CLI turns it into
    the flag's name)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class TrainConfig:
    """Every number of a training run. Defaults: SSD300 on VOC (paper, authors' Caffe code)."""

    data_root: str = "VOCdevkit"
    year: str | None = None  # "2007", "2012", "2007+2012" (07+12), or None: data_root is the set
    train_split: str = "trainval"
    class_names: tuple | None = None  # None: the 20 VOC classes
    keep_difficult: bool = True  # the authors' Caffe code trains on difficult objects
    model: str = "ssd300"  # a name in minissd.ssd.model.MODELS: "small", "ssd300", "ssd512"
    iterations: int = 120_000
    batch_size: int = 32
    optimizer: str = "sgd"  # the paper's; "adam" for the small model trained from scratch
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_biases: bool = True
    milestones: tuple = (80_000, 100_000)
    gamma: float = 0.1
    warmup_iters: int = 0
    warmup_factor: float = 1.0 / 3
    augment: bool = True
    augmentation: str = "ssd"  # a recipe of minissd.data.transforms.AUGMENTATIONS
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    checkpoint_every: int = 1000
    out_dir: str = "runs/train"
    init_weights: str | None = None  # .npz of (some) weights to start from, e.g. a VGG base
    progress: bool = True
    dtype: str = "float32"  # the model's; "float64" for reference runs (e.g. the parity tests)
    sync_batch_norm: bool = True  # several processes: batch norm over the global batch
    extra: dict = field(default_factory=dict)  # model config overrides

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def check(self) -> TrainConfig:
        """Refuse values that cannot work (``ConfigError`` naming the field); returns self."""
        _need_int(self, "iterations", 1)
        _need_int(self, "batch_size", 1)
        _need_int(self, "checkpoint_every", 1)
        _need_int(self, "warmup_iters", 0)
        _need_int(self, "num_workers", 0)
        _need_int(self, "seed", 0)
        _need_number(self, "lr", lambda v: v > 0, "a number > 0")
        _need_number(self, "momentum", lambda v: 0 <= v < 1, "in [0, 1)")
        _need_number(self, "weight_decay", lambda v: v >= 0, "a number >= 0")
        _need_number(self, "gamma", lambda v: v > 0, "a number > 0")
        _need_number(self, "warmup_factor", lambda v: 0 < v <= 1, "in (0, 1]")
        ms = self.milestones
        if not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in ms) \
                or any(a >= b for a, b in zip(ms, ms[1:])):
            raise ConfigError("milestones", f"must be increasing iterations > 0, got {ms!r}")
        for name, allowed in (("model", tuple(MODELS)), ("optimizer", OPTIMIZERS),
                              ("device", DEVICES), ("dtype", DTYPES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, f"must be one of {', '.join(allowed)}, got "
                                        f"{getattr(self, name)!r}")
        from .data.transforms import AUGMENTATIONS

        if self.augmentation not in AUGMENTATIONS:
            raise ConfigError("augmentation", f"must be one of {', '.join(AUGMENTATIONS)}, "
                                              f"got {self.augmentation!r}")
        if self.class_names is not None and (
                not self.class_names or len(set(self.class_names)) != len(self.class_names)
                or not all(isinstance(c, str) and c.strip() for c in self.class_names)):
            raise ConfigError("class_names", f"must be distinct non-empty names, got "
                                             f"{self.class_names!r}")
        try:
            MODELS[self.model](2, **self.extra)  # the model config alone: cheap
        except (TypeError, ValueError) as exc:
            raise ConfigError("extra", f"{self.model} model: {exc}") from None
        if self.device == "gpu" and (reason := gpu_unavailable_reason()):
            raise ConfigError("device", f"gpu was asked for but {reason}")
        return self

    def resolved(self) -> TrainConfig:
        """The same config with ``data_root`` and ``init_weights`` as absolute paths, so that
        the saved config works from any folder."""
        return replace(self, data_root=_absolute(self.data_root),
                       init_weights=self.init_weights and _absolute(self.init_weights))

    def differences(self, other: TrainConfig, ignore=RUN_FIELDS) -> list[str]:
        """``"field: mine -> other's"`` for every field that differs (paths compared
        absolute), leaving out ``ignore``."""
        a, b = asdict(self.resolved()), asdict(other.resolved())
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in ignore
                and _comparable(a[k]) != _comparable(b[k])]

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        for key in ("milestones", "class_names"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        return cls(**{k: v for k, v in raw.items() if k in known})


def _need_int(config, name, minimum):
    v = getattr(config, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ConfigError(name, f"must be a whole number >= {minimum}, got {v!r}")


def _need_number(config, name, ok, what):
    v = getattr(config, name)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not ok(v):
        raise ConfigError(name, f"must be {what}, got {v!r}")


def _absolute(path):
    return str(Path(path).expanduser().resolve())


def _comparable(value):
    return list(value) if isinstance(value, tuple) else value


def build_model(config: TrainConfig, num_classes: int) -> SSD:
    if config.model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {config.model!r}")
    return SSD(MODELS[config.model](num_classes + 1, **config.extra), seed=config.seed,
               dtype=np.dtype(config.dtype))


def build_optimizer(config: TrainConfig, model):
    common = dict(lr=config.lr, weight_decay=config.weight_decay,
                  decay_biases=config.decay_biases)
    if config.optimizer == "sgd":
        return SGD(model.named_parameters(), momentum=config.momentum, **common)
    if config.optimizer == "adam":
        return Adam(model.named_parameters(), **common)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {config.optimizer!r}")


def load_dataset(config: TrainConfig, split: str, report_path=None):
    """The VOC-format dataset of ``config`` (``year`` "2007+2012" joins both). With
    ``report_path``, what the reader repaired or skipped is written there as JSON and announced
    by one warning line that says where (instead of the reader's multi-line warning)."""
    from .data import VOC_CLASSES, VOCDataset, VOCDataWarning

    names = tuple(config.class_names) if config.class_names else VOC_CLASSES
    common = dict(class_names=names, keep_difficult=config.keep_difficult)
    years = config.year.split("+") if config.year else [None]
    if report_path is not None:
        common["warn"] = False
    if len(years) == 1:
        dataset = VOCDataset(config.data_root, split, year=years[0], **common)
    else:
        dataset = VOCDataset(config.data_root, [(y, split) for y in years], **common)  # 07+12
    report = dataset.report
    if report_path is not None and report.total():
        atomic_write_text(report_path, json.dumps(
            {"counts": report.counts(), "entries": asdict(report)}, indent=1))
        counts = ", ".join(f"{k} {v}" for k, v in report.counts().items() if v)
        warnings.warn(f"the data reader repaired or skipped {report.total()} objects or "
                      f"images ({counts}); the list: {report_path}", VOCDataWarning,
                      stacklevel=2)
    return dataset


# ------------------------------------------------------------------ checkpoints

def save_checkpoint(path, model, optimizer, iteration: int, config: TrainConfig):
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays["meta/iteration"] = np.asarray(iteration, dtype=np.int64)
    arrays["meta/seed"] = np.asarray(config.seed, dtype=np.int64)
    arrays["meta/config"] = np.asarray(config.to_json())  # a str array: no pickle needed
    return save_npz(path, arrays)


def read_checkpoint_config(path) -> TrainConfig:
    """The ``TrainConfig`` saved in a checkpoint (reads that entry alone)."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            return TrainConfig.from_json(str(z["meta/config"]))
    except KeyError:
        raise ValueError(f"{path}: not a minissd checkpoint (no 'meta/config')") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None


def load_checkpoint(path):
    """``(model_state, optimizer_state, iteration, config)`` from ``save_checkpoint``'s file."""
    arrays = load_npz(path)
    for key in ("meta/iteration", "meta/config"):
        if key not in arrays:
            raise ValueError(f"{path}: not a minissd checkpoint (no {key!r})")
    model = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    return model, optim, int(arrays["meta/iteration"]), TrainConfig.from_json(
        str(arrays["meta/config"]))


# ------------------------------------------------------------------ metrics

def _read_metrics(path, up_to):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["iteration"]) < up_to]


def _write_metrics(path, rows):
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, METRIC_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def plot_metrics(csv_path, png_path):
    from .viz import plot_loss_curves

    rows = _read_metrics(Path(csv_path), up_to=np.iinfo(np.int64).max)
    if not rows:
        return None
    it = [int(r["iteration"]) for r in rows]
    series = {k: [float(r[k]) for r in rows] for k in ("loss", "loc_loss", "conf_loss")}
    return plot_loss_curves(it, series, png_path, smooth=min(20, max(1, len(rows) // 20)))


# ------------------------------------------------------------------ the loop

def train(config: TrainConfig, resume: bool = False, dataset=None, overwrite: bool = False,
          comm=None):
    """Train a model; returns ``(model, rows)`` where rows are this run's metric dicts.

    ``resume``: continue ``out_dir``'s checkpoint (``config`` may change only ``RUN_FIELDS``).
    ``overwrite``: start afresh in a folder that already holds a run (refused otherwise).

    Several processes (``minissd.distributed``): in a process that ``mpiexec -n K`` started
    (or given ``comm``), the K processes train one model together. Every process calls
    ``train`` with the same arguments; ``batch_size`` is the global batch, split across them;
    rank 0 alone reads and writes the run folder (its lock, checkpoints, metrics, plots and the
    progress bar) and hands its starting weights to the others. Every process returns the same
    model and rows. An error in the setup raises on every process (a ``PeerError`` naming the
    failing rank on the others); an error on one process during training prints
    ``minissd: rank r of K: <error>`` and ends every process (``MPI_Abort``).
    """
    comm = distributed.world() if comm is None else comm
    folder = RunFolder(config.out_dir)
    with contextlib.ExitStack() as held:  # rank 0's folder lock and the loader, to the end
        start, states = 0, None
        with comm.all_or_none():  # an error on any process stops every process, in order
            config = _check_for_processes(config.check(), comm)
            if comm.is_root:
                folder.create()
                held.enter_context(folder.lock())
                folder.remove_temporaries()  # left by a kill during an atomic write
                config, start, states = _start_point(folder, config, resume, overwrite)
        config, start = comm.bcast((config, start))  # a resumed run's settings, to every process
        if config.device == "cpu":
            distributed.share_cpu_cores(comm)
        with comm.all_or_none():
            if dataset is None:
                dataset = _load_dataset_once(config, folder, comm)
            setup = _setup(config, dataset, states, comm)
            held.enter_context(setup.loader)
        with comm.stop_all_on_error():  # with collectives: one failing process ends them all
            _share_rank0_state(setup, comm, start)
            rows = _train_loop(config, folder, setup, start, comm)
        with comm.all_or_none():
            if comm.is_root:
                save_npz(folder.weights, setup.model.state_dict())
                plot_metrics(folder.metrics, folder.loss_plot)
        return setup.model, rows


def _check_for_processes(config: TrainConfig, comm) -> TrainConfig:
    """Refuse a global batch that cannot give every process an image."""
    if config.batch_size < comm.size:
        raise ConfigError("batch_size", f"must be at least the number of processes "
                                        f"({comm.size}), each of which takes a part of every "
                                        f"batch; got {config.batch_size}")
    return config


def _start_point(folder: RunFolder, config: TrainConfig, resume: bool, overwrite: bool):
    """``(config, start iteration, states or None)`` of the run in ``folder`` (rank 0, lock
    held); writes ``config.json``."""
    start, states = 0, None
    if resume:
        config, start, states = _resume_point(folder, config)
    elif folder.checkpoint.exists() and not overwrite:
        raise RunFolderError(
            f"{folder.path} already holds a training run ({folder.checkpoint.name}); "
            f"resume it (--resume) or start afresh (--overwrite), or choose another --out")
    else:
        for stale in (folder.checkpoint, folder.weights, folder.loss_plot, folder.data_report):
            stale.unlink(missing_ok=True)
    config = config.resolved()
    atomic_write_text(folder.config, config.to_json())
    return config, start, states


def _load_dataset_once(config: TrainConfig, folder: RunFolder, comm):
    """The training set, on every process; rank 0 alone reports what the reader repaired."""
    if comm.is_root:
        return load_dataset(config, config.train_split, folder.data_report)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same warnings as rank 0's
        return load_dataset(config, config.train_split)


def _resume_point(folder: RunFolder, config: TrainConfig):
    """``(config, start iteration, (model state, optimiser state))`` to resume ``folder``'s run;
    refuses a config that differs from the checkpoint's beyond ``RUN_FIELDS``."""
    if not folder.checkpoint.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {folder.checkpoint}")
    model_state, optim_state, start, saved = load_checkpoint(folder.checkpoint)
    if folder.config.exists():
        recorded = TrainConfig.from_json(folder.config.read_text())
        if diff := recorded.differences(saved):
            raise RunFolderError(
                f"--resume: {folder.checkpoint} does not belong to the run in "
                f"{folder.config} ({'; '.join(diff)}); restore that run's checkpoint or "
                f"start a new run in another folder")
    if diff := saved.differences(config):
        raise RunFolderError(
            f"--resume: these settings differ from the checkpoint's (checkpoint -> now): "
            f"{'; '.join(diff)}. A resumed run keeps its settings; only its length, device, "
            f"workers and checkpoint interval may change")
    if config.iterations <= start:
        raise ConfigError("iterations", f"the checkpoint is already at iteration {start}; "
                                        f"to train on, ask for more than {start}")
    return replace(saved, **{k: getattr(config, k) for k in RUN_FIELDS}), start, (
        model_state, optim_state)


@dataclass
class _Setup:
    """What the loop works with, made once per run (on every process)."""

    model: SSD
    optimizer: object  # SGD or Adam
    schedule: MultiStepLR
    priors: np.ndarray  # (P, 4) default boxes in the model's dtype (matching runs on the CPU)
    variances: tuple
    xp: object  # numpy or cupy
    loader: object  # DataLoader of this process's shards
    sum_gradients: distributed.GradientAllreduce


def _setup(config: TrainConfig, dataset, states, comm) -> _Setup:
    """The model, optimiser, schedule and loader. Only rank 0 reads weights (``init_weights``
    or the checkpoint's ``states``); ``_share_rank0_state`` hands them to the others."""
    from .data import DataLoader
    from .data.transforms import AUGMENTATIONS, SSDAugmentation, SSDTransformEval

    keep_freed_memory()  # big temporaries without page faults (see minissd.allocator)
    if config.device == "gpu":
        comm.select_gpu()  # one GPU per process: device = rank on this machine
    model = build_model(config, len(dataset.class_names))
    size = model.config.image_size
    if config.init_weights and states is None and comm.is_root:
        _load_init_weights(model, config.init_weights)
    model.to(config.device)
    optimizer = build_optimizer(config, model)
    if states is not None:
        model.load_state_dict(states[0])
        optimizer.load_state_dict(states[1])
    if config.sync_batch_norm and comm.size > 1:
        distributed.synchronise_batch_norm(model, comm)
    schedule = MultiStepLR(config.lr, tuple(config.milestones), config.gamma,
                           config.warmup_iters, config.warmup_factor)
    transform = (SSDAugmentation(size, model.config.mean, AUGMENTATIONS[config.augmentation])
                 if config.augment else SSDTransformEval(size, mean=model.config.mean))
    loader = DataLoader(dataset, config.batch_size, shuffle=True, seed=config.seed,
                        num_workers=config.num_workers, transform=transform,
                        drop_last=len(dataset) >= config.batch_size,
                        shard_rank=comm.rank, num_shards=comm.size)
    return _Setup(model, optimizer, schedule, model.priors(np.dtype(config.dtype)),
                  model.config.priors.variances, xp_for(config.device), loader,
                  distributed.GradientAllreduce(model.parameters(), comm))


def _share_rank0_state(setup: _Setup, comm, start: int) -> None:
    """Rank 0's weights, buffers and optimiser state on every process (a collective): rank 0
    read the checkpoint or the initial weights, the others built the model from the seed."""
    if comm.size == 1:
        return
    model, optimizer = setup.model, setup.optimizer
    state = comm.bcast((model.state_dict(), optimizer.state_dict()) if comm.is_root else None)
    if not comm.is_root:
        model.load_state_dict(state[0])
        optimizer.load_state_dict(state[1])
    distributed.check_identical(model, comm, iteration=start)


def _train_loop(config: TrainConfig, folder: RunFolder, setup: _Setup, start: int, comm):
    """Iterations ``start`` to ``config.iterations``; returns their metric rows. Rank 0 writes
    the metrics, the checkpoints and the progress bar."""
    root = comm.is_root
    if root:
        _write_metrics(folder.metrics, _read_metrics(folder.metrics, up_to=start))
    new_rows = []
    per_epoch = len(setup.loader)
    batches = setup.loader.forever(start_epoch=start // per_epoch)
    for _ in range(start % per_epoch):  # the batches the checkpointed run already used
        next(batches)
    bar = _progress(config, start) if root else None
    try:
        with (open(folder.metrics, "a", newline="") if root else contextlib.nullcontext()) \
                as metrics_file:
            writer = csv.DictWriter(metrics_file, METRIC_COLUMNS) if root else None
            for it in range(start, config.iterations):
                row = _step(it, setup, next(batches), folder.checkpoint, comm)
                new_rows.append(row)
                done = it + 1
                if comm.size > 1 and (done == start + 1 or done % distributed.CHECK_EVERY == 0
                                      or done == config.iterations):
                    distributed.check_identical(setup.model, comm, done)
                if not root:
                    continue
                writer.writerow(row)
                metrics_file.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", loc=f"{row['loc_loss']:.3f}",
                                    conf=f"{row['conf_loss']:.3f}",
                                    img_s=f"{row['images_per_s']:.1f}")
                if done % config.checkpoint_every == 0 or done == config.iterations:
                    save_checkpoint(folder.checkpoint, setup.model, setup.optimizer, done,
                                    config)
    finally:
        if bar is not None:  # an error is then printed on its own line, not on the bar's
            bar.close()
    return new_rows


def _step(it, setup: _Setup, batch, ckpt_path, comm) -> dict:
    """One SGD step on ``batch``, this process's shard of the global batch; returns its row of
    ``metrics.csv``, with the global batch's loss, positives and images per second.

    With several processes: the loss is divided by the global batch's positives and the
    gradients are summed over the processes, so every process applies the update one process
    would compute on the whole batch (``minissd.distributed``)."""
    tic = time.perf_counter()
    model, optimizer, xp = setup.model, setup.optimizer, setup.xp
    optimizer.lr = setup.schedule(it)
    loc_t, labels = build_targets(batch.boxes, batch.labels, setup.priors,
                                  model.config.loss.iou_threshold, setup.variances)
    positives, images = (int(v) for v in comm.allreduce(
        np.array([(to_numpy(labels) > 0).sum(), len(batch.images)], dtype=np.int64)))
    try:
        loc, conf = model(Tensor(xp.asarray(batch.images, dtype=setup.priors.dtype)))
    except NonFiniteError as exc:  # activations overflowed inside the network
        raise NonFiniteLossError(f"iteration {it}: {exc}; training stopped. "
                                 + _last_good(ckpt_path)) from None
    loss, loc_loss, conf_loss = multibox_loss(
        loc, conf, xp.asarray(loc_t), xp.asarray(labels), model.config.loss,
        num_positives=positives)
    value, loc_value, conf_value = (float(v) for v in comm.allreduce(
        np.array([loss.item(), loc_loss.item(), conf_loss.item()])))
    if not np.isfinite(value):  # the global loss: every process stops here
        raise distributed.on_every_rank(NonFiniteLossError(
            f"iteration {it}: loss is {value} (loc {loc_value}, conf {conf_value}); training "
            f"stopped before the update. " + _last_good(ckpt_path)))
    optimizer.zero_grad()
    loss.backward()
    setup.sum_gradients()
    optimizer.step()
    bad = [n for n, p in model.named_parameters() if not xp.isfinite(p.data).all()]
    if bad:  # the same weights on every process: every process stops here
        raise distributed.on_every_rank(NonFiniteLossError(
            f"iteration {it}: the update made {len(bad)} parameters non-finite "
            f"(first: {bad[0]}; loss was {value:.4g}). " + _last_good(ckpt_path)))
    seconds = time.perf_counter() - tic
    return dict(iteration=it, lr=optimizer.lr, loss=value, loc_loss=loc_value,
                conf_loss=conf_value, positives=positives, images_per_s=images / seconds,
                seconds=seconds)


def _load_init_weights(model, path):
    """Load the tensors of ``path`` that the model has (e.g. a VGG base into an SSD), saying
    how many; refuse a file that matches nothing or has a wrongly shaped tensor."""
    state = load_npz(path)
    own = model.state_dict()
    used = sorted(set(state) & set(own))
    if not used:
        raise ValueError(f"--init-weights {path}: none of its {len(state)} tensors is a "
                         f"tensor of the {model.config.name} model (its first key: "
                         f"{next(iter(state))!r}; the model's: {next(iter(own))!r}); convert "
                         f"PyTorch weights with `minissd convert`")
    for k in used:
        if state[k].shape != own[k].shape:
            raise ValueError(f"--init-weights {path}: {k!r} has shape {state[k].shape}, the "
                             f"model's is {own[k].shape}")
    model.load_state_dict({k: state[k] for k in used}, strict=False)
    print(f"init weights: {len(used)} of the model's {len(own)} tensors from {path}"
          + (f" ({len(state) - len(used)} of the file's tensors unused)"
             if len(used) < len(state) else ""))


def _last_good(ckpt_path):
    where = ckpt_path if ckpt_path.exists() else "none was written yet"
    return f"The last good checkpoint: {where}. Try a lower lr or a longer warm-up."


def _progress(config, start):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.iterations, initial=start, desc="train", unit="it",
                dynamic_ncols=True)
