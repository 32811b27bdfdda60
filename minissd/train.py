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
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

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
                              ("device", DEVICES)):
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
    return SSD(MODELS[config.model](num_classes + 1, **config.extra), seed=config.seed)


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

def train(config: TrainConfig, resume: bool = False, dataset=None, overwrite: bool = False):
    """Train a model; returns ``(model, rows)`` where rows are this run's metric dicts.

    ``resume``: continue ``out_dir``'s checkpoint (``config`` may change only ``RUN_FIELDS``).
    ``overwrite``: start afresh in a folder that already holds a run (refused otherwise).
    """
    config = config.check()
    folder = RunFolder(config.out_dir)
    folder.create()
    with folder.lock():
        folder.remove_temporaries()  # left by a kill during an atomic write
        start, states = 0, None
        if resume:
            config, start, states = _resume_point(folder, config)
        elif folder.checkpoint.exists() and not overwrite:
            raise RunFolderError(
                f"{folder.path} already holds a training run ({folder.checkpoint.name}); "
                f"resume it (--resume) or start afresh (--overwrite), or choose another --out")
        else:
            for stale in (folder.checkpoint, folder.weights, folder.loss_plot,
                          folder.data_report):
                stale.unlink(missing_ok=True)
        config = config.resolved()
        atomic_write_text(folder.config, config.to_json())
        if dataset is None:
            dataset = load_dataset(config, config.train_split, folder.data_report)
        return _train_loop(config, folder, dataset, start, states)


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


def _train_loop(config: TrainConfig, folder: RunFolder, dataset, start: int, states):
    from .data import DataLoader
    from .data.transforms import AUGMENTATIONS, SSDAugmentation, SSDTransformEval

    keep_freed_memory()  # big temporaries without page faults (see minissd.allocator)
    model = build_model(config, len(dataset.class_names))
    size = model.config.image_size
    if config.init_weights and states is None:
        _load_init_weights(model, config.init_weights)
    xp = xp_for(config.device)
    model.to(config.device)
    optimizer = build_optimizer(config, model)
    if states is not None:
        model.load_state_dict(states[0])
        optimizer.load_state_dict(states[1])
    schedule = MultiStepLR(config.lr, tuple(config.milestones), config.gamma,
                           config.warmup_iters, config.warmup_factor)
    priors = model.priors()  # matching runs on the CPU (Numba kernels)
    variances = model.config.priors.variances
    transform = (SSDAugmentation(size, model.config.mean, AUGMENTATIONS[config.augmentation])
                 if config.augment else SSDTransformEval(size, mean=model.config.mean))
    ckpt_path = folder.checkpoint
    metrics_path = folder.metrics
    rows = _read_metrics(metrics_path, up_to=start)
    _write_metrics(metrics_path, rows)
    new_rows = []
    bar = None
    with DataLoader(dataset, config.batch_size, shuffle=True, seed=config.seed,
                    num_workers=config.num_workers, transform=transform,
                    drop_last=len(dataset) >= config.batch_size) as loader:
        per_epoch = len(loader)
        batches = loader.forever(start_epoch=start // per_epoch)
        for _ in range(start % per_epoch):  # the batches the checkpointed run already used
            next(batches)
        bar = _progress(config, start)
        try:
            with open(metrics_path, "a", newline="") as metrics_file:
                writer = csv.DictWriter(metrics_file, METRIC_COLUMNS)
                for it in range(start, config.iterations):
                    row = _step(it, model, optimizer, schedule, next(batches), priors,
                                variances, xp, ckpt_path)
                    writer.writerow(row)
                    metrics_file.flush()
                    new_rows.append(row)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{row['loss']:.3f}", loc=f"{row['loc_loss']:.3f}",
                                        conf=f"{row['conf_loss']:.3f}",
                                        img_s=f"{row['images_per_s']:.1f}")
                    done = it + 1
                    if done % config.checkpoint_every == 0 or done == config.iterations:
                        save_checkpoint(ckpt_path, model, optimizer, done, config)
        finally:
            if bar is not None:  # an error is then printed on its own line, not on the bar's
                bar.close()
    save_npz(folder.weights, model.state_dict())
    plot_metrics(metrics_path, folder.loss_plot)
    return model, new_rows


def _step(it, model, optimizer, schedule, batch, priors, variances, xp, ckpt_path) -> dict:
    """One SGD step on ``batch``; returns its row of ``metrics.csv``."""
    tic = time.perf_counter()
    optimizer.lr = schedule(it)
    loc_t, labels = build_targets(batch.boxes, batch.labels, priors,
                                  model.config.loss.iou_threshold, variances)
    try:
        loc, conf = model(Tensor(xp.asarray(batch.images)))
    except NonFiniteError as exc:  # activations overflowed inside the network
        raise NonFiniteLossError(f"iteration {it}: {exc}; training stopped. "
                                 + _last_good(ckpt_path)) from None
    loss, loc_loss, conf_loss = multibox_loss(
        loc, conf, xp.asarray(loc_t), xp.asarray(labels), model.config.loss)
    value = loss.item()
    if not np.isfinite(value):
        raise NonFiniteLossError(
            f"iteration {it}: loss is {value} (loc {loc_loss.item()}, conf "
            f"{conf_loss.item()}); training stopped before the update. "
            + _last_good(ckpt_path))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    bad = [n for n, p in model.named_parameters() if not xp.isfinite(p.data).all()]
    if bad:
        raise NonFiniteLossError(
            f"iteration {it}: the update made {len(bad)} parameters non-finite "
            f"(first: {bad[0]}; loss was {value:.4g}). " + _last_good(ckpt_path))
    seconds = time.perf_counter() - tic
    return dict(iteration=it, lr=optimizer.lr, loss=value, loc_loss=loc_loss.item(),
                conf_loss=conf_loss.item(), positives=int(to_numpy(labels > 0).sum()),
                images_per_s=len(batch.images) / seconds, seconds=seconds)


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
