"""Training: SGD on the MultiBox loss, with progress, metrics, checkpoints and resume.

One ``TrainConfig`` holds every number (the paper's for SSD300 on VOC by default). A run writes
into ``out_dir``:

* ``metrics.csv``: one row per iteration (lr, loss and its parts, positives, images/s);
* ``loss.png``: the loss curves;
* ``checkpoint.npz``: model weights, optimiser state, iteration and the run's seed, written
  atomically every ``checkpoint_every`` iterations and at the end (no pickle);
* ``weights.npz``: the final weights alone.

Resuming (``resume=True``) continues from ``checkpoint.npz`` to the same numbers as an
uninterrupted run: the data order and augmentation of batch ``k`` depend only on
``(seed, k)`` (see ``minissd.data.loader``), so the resumed run sees exactly the batches the
uninterrupted one would have seen. A non-finite loss stops training with ``NonFiniteLossError``
before the update, leaving the last good checkpoint in place.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .allocator import keep_freed_memory
from .autograd import Tensor
from .autograd.functional import NonFiniteError
from .backend import to_numpy, xp_for
from .nn import load_npz, save_npz
from .optim import SGD, Adam, MultiStepLR
from .ssd.model import SSD, ssd300, ssd512, ssd_small
from .ssd.multibox_loss import build_targets, multibox_loss

MODELS = {"small": ssd_small, "ssd300": ssd300, "ssd512": ssd512}
METRIC_COLUMNS = ("iteration", "lr", "loss", "loc_loss", "conf_loss", "positives",
                  "images_per_s", "seconds")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; training stopped before applying the update."""


@dataclass
class TrainConfig:
    """Every number of a training run. Defaults: SSD300 on VOC (paper, authors' Caffe code)."""

    data_root: str = "VOCdevkit"
    year: str | None = None  # "2007", "2012", "2007+2012" (07+12), or None: data_root is the set
    train_split: str = "trainval"
    class_names: tuple | None = None  # None: the 20 VOC classes
    keep_difficult: bool = True  # the authors' Caffe code trains on difficult objects
    model: str = "ssd300"  # "small", "ssd300", "ssd512"
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

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        for key in ("milestones", "class_names"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        return cls(**{k: v for k, v in raw.items() if k in known})


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


def load_dataset(config: TrainConfig, split: str):
    from .data import VOC_CLASSES, VOCDataset

    names = tuple(config.class_names) if config.class_names else VOC_CLASSES
    common = dict(class_names=names, keep_difficult=config.keep_difficult)
    years = config.year.split("+") if config.year else [None]
    if len(years) == 1:
        return VOCDataset(config.data_root, split, year=years[0], **common)
    return VOCDataset(config.data_root, [(y, split) for y in years], **common)  # e.g. 07+12


# ------------------------------------------------------------------ checkpoints

def save_checkpoint(path, model, optimizer, iteration: int, config: TrainConfig):
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays["meta/iteration"] = np.asarray(iteration, dtype=np.int64)
    arrays["meta/seed"] = np.asarray(config.seed, dtype=np.int64)
    arrays["meta/config"] = np.asarray(config.to_json())  # a str array: no pickle needed
    return save_npz(path, arrays)


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
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def plot_metrics(csv_path, png_path):
    from .viz import plot_loss_curves

    rows = _read_metrics(Path(csv_path), up_to=np.iinfo(np.int64).max)
    if not rows:
        return None
    it = [int(r["iteration"]) for r in rows]
    series = {k: [float(r[k]) for r in rows] for k in ("loss", "loc_loss", "conf_loss")}
    return plot_loss_curves(it, series, png_path, smooth=min(20, max(1, len(rows) // 20)))


# ------------------------------------------------------------------ the loop

def train(config: TrainConfig, resume: bool = False, dataset=None):
    """Train a model; returns ``(model, rows)`` where rows are this run's metric dicts."""
    from .data import DataLoader
    from .data.transforms import AUGMENTATIONS, SSDAugmentation, SSDTransformEval

    if config.augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {sorted(AUGMENTATIONS)}, got "
                         f"{config.augmentation!r}")
    keep_freed_memory()  # big temporaries without page faults (see minissd.allocator)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.npz"
    start = 0
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        model_state, optim_state, start, saved = load_checkpoint(ckpt_path)
        # the saved run's numbers win, except how long to train and where it runs
        config = TrainConfig(**{**asdict(saved), "iterations": config.iterations,
                                "device": config.device, "num_workers": config.num_workers,
                                "progress": config.progress, "out_dir": config.out_dir})
    dataset = dataset if dataset is not None else load_dataset(config, config.train_split)
    model = build_model(config, len(dataset.class_names))
    size = model.config.image_size
    if config.init_weights and not resume:
        model.load_state_dict(load_npz(config.init_weights), strict=False)
    xp = xp_for(config.device)
    model.to(config.device)
    optimizer = build_optimizer(config, model)
    if resume:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
    schedule = MultiStepLR(config.lr, tuple(config.milestones), config.gamma,
                           config.warmup_iters, config.warmup_factor)
    priors = model.priors()  # matching runs on the CPU (Numba kernels)
    variances = model.config.priors.variances
    transform = (SSDAugmentation(size, model.config.mean, AUGMENTATIONS[config.augmentation])
                 if config.augment else SSDTransformEval(size, mean=model.config.mean))
    metrics_path = out / "metrics.csv"
    rows = _read_metrics(metrics_path, up_to=start)
    _write_metrics(metrics_path, rows)
    new_rows = []
    with DataLoader(dataset, config.batch_size, shuffle=True, seed=config.seed,
                    num_workers=config.num_workers, transform=transform,
                    drop_last=len(dataset) >= config.batch_size) as loader:
        per_epoch = len(loader)
        batches = loader.forever(start_epoch=start // per_epoch)
        for _ in range(start % per_epoch):  # the batches the checkpointed run already used
            next(batches)
        bar = _progress(config, start)
        with open(metrics_path, "a", newline="") as metrics_file:
            writer = csv.DictWriter(metrics_file, METRIC_COLUMNS)
            for it in range(start, config.iterations):
                tic = time.perf_counter()
                batch = next(batches)
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
                row = dict(iteration=it, lr=optimizer.lr, loss=value,
                           loc_loss=loc_loss.item(), conf_loss=conf_loss.item(),
                           positives=int(to_numpy(labels > 0).sum()),
                           images_per_s=len(batch.images) / seconds, seconds=seconds)
                writer.writerow(row)
                metrics_file.flush()
                new_rows.append(row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.3f}", loc=f"{row['loc_loss']:.3f}",
                                    conf=f"{row['conf_loss']:.3f}",
                                    img_s=f"{row['images_per_s']:.1f}")
                done = it + 1
                if done % config.checkpoint_every == 0 or done == config.iterations:
                    save_checkpoint(ckpt_path, model, optimizer, done, config)
        if bar is not None:
            bar.close()
    save_npz(out / "weights.npz", model.state_dict())
    plot_metrics(metrics_path, out / "loss.png")
    (out / "config.json").write_text(config.to_json())
    return model, new_rows


def _last_good(ckpt_path):
    where = ckpt_path if ckpt_path.exists() else "none was written yet"
    return f"The last good checkpoint: {where}. Try a lower lr or a longer warm-up."


def _progress(config, start):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.iterations, initial=start, desc="train", unit="it",
                dynamic_ncols=True)
