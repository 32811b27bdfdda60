"""The ``minissd`` command: demo, train, eval, detect, convert, download, make-data.

``minissd demo`` is the whole path on a fresh clone: it writes the built-in dataset, trains the
small model on the CPU, evaluates it on held-out images and leaves an AP table, a loss curve and
detection pictures in ``runs/demo``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .fileio import atomic_write_text


@dataclass(frozen=True)
class DemoConfig:
    """The demo's numbers: the built-in data and a short CPU schedule for the small model
    (trained from scratch with Adam; the lr drops x0.1 at 2/3 and 13/15 of the iterations).
    Augmentation is colour and flips only: the built-in objects already come at every size,
    and without zoom-out and crops the model learns several times faster."""

    train_images: int = 1000
    test_images: int = 200
    image_size: int = 128
    iterations: int = 800
    batch_size: int = 16
    lr: float = 3e-3
    warmup_iters: int = 50
    weight_decay: float = 0.0
    augmentation: str = "flip"
    pictures: int = 8


#: The recipes of ``minissd.data.transforms.AUGMENTATIONS`` (a test keeps the two in step;
#: importing the data package here would slow every command's start).
AUGMENTATION_CHOICES = ("ssd", "no-expand", "flip")

DEMO_HELP = {
    "train_images": "images in the built-in training set",
    "test_images": "held-out images for the evaluation",
    "image_size": "image and model input size in pixels",
    "iterations": "training iterations",
    "batch_size": "images per iteration",
    "lr": "Adam's learning rate (x0.1 at 2/3 and 13/15 of the iterations)",
    "warmup_iters": "iterations of linear lr warm-up (at most a tenth of the run)",
    "weight_decay": "L2 weight decay",
    "pictures": "test images drawn with their detections",
}

#: ``TrainConfig`` fields and the ``train`` flags that set them (errors name the flag).
FLAG_OF_FIELD = {"data_root": "--data", "train_split": "--split", "class_names": "--classes",
                 "keep_difficult": "--drop-difficult", "augment": "--no-augment",
                 "extra": "--image-size/--first-box", "num_workers": "--workers",
                 "out_dir": "--out", "init_weights": "--init-weights"}

DEBUG_ENV = "MINISSD_DEBUG"


class _Options:
    """Adds options whose help ends with their default; with ``given_only`` the defaults are
    left out of the namespace, so that it holds only the flags typed on the command line."""

    def __init__(self, parser, given_only=False):
        self.parser, self.given_only = parser, given_only

    def __call__(self, *flags, help, default=None, **kw):
        if default is not None and kw.get("action") not in ("store_true", "store_false"):
            help += f" (default: {default})"
        if self.given_only:
            default = argparse.SUPPRESS
        self.parser.add_argument(*flags, help=help, default=default, **kw)


def _int_list(text):
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated iterations such as 80000,100000, got {text!r}") from None


def _percent_pair(text):
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MIN,MAX in percent of the image such as 5,10, got {text!r}") from None
    return low, high


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _names(text):
    names = tuple(n.strip() for n in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated class names, got "
                                         f"{text!r}")
    return names


def _add_model_source(p, what):
    p.add_argument("--run", help=f"a `minissd train` output folder: its config and its final "
                                 f"weights, or the last checkpoint of an unfinished run ({what})")
    p.add_argument("--weights", help="a weights .npz instead of --run (e.g. from `minissd "
                                     "convert`); give its --model and --classes")
    p.add_argument("--model", choices=_weight_configs(),
                   help="with --weights: the model the weights are for (default: ssd300)")
    p.add_argument("--classes", type=_names,
                   help="with --weights: comma-separated class names, without background "
                        "(default: the 20 VOC classes)")


def _weight_configs():
    """``--model`` with ``--weights``: minissd's models and the PyTorch layouts."""
    from .pytorch.convert import CONFIGS

    return tuple(CONFIGS)


def _parser(given_only=False):
    from .ssd.model import MODELS  # here, not at the top: `import minissd.cli` stays light

    p = argparse.ArgumentParser(
        prog="minissd", description="SSD (Liu et al. 2016) from scratch on NumPy/CuPy: train, "
                                    "evaluate, detect, convert weights, fetch data.",
        epilog=f"Errors are one line; --debug (or {DEBUG_ENV}=1) shows the Python traceback.")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks of errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="built-in data -> train small SSD on CPU -> AP, pictures",
                       description="Write the built-in dataset, train the small SSD on it, "
                                   "evaluate on held-out images, draw detections.")
    opt = _Options(d, given_only)
    opt("--out", default="runs/demo", help="output folder")
    opt("--seed", type=int, default=0, help="seed of the data and the training")
    opt("--workers", type=int, default=1,
        help="data worker processes (1: augmentation overlaps training)")
    opt("--device", default="cpu", choices=["cpu", "gpu"], help="where to train")
    for f, v in DemoConfig().__dict__.items():
        if f == "augmentation":
            opt("--augmentation", default=v, choices=AUGMENTATION_CHOICES,
                help="augmentation recipe")
        elif isinstance(v, int | float) and not isinstance(v, bool):
            opt("--" + f.replace("_", "-"), type=type(v), default=v, help=DEMO_HELP[f])

    t = sub.add_parser("train", help="train on a VOC-format dataset",
                       description="Train an SSD on a VOC-format dataset. With --resume, the "
                                   "run continues from OUT/checkpoint.npz with the settings it "
                                   "was started with; only --iterations, --device, --workers "
                                   "and --checkpoint-every may change.")
    opt = _Options(t, given_only)
    opt("--data", help="VOCdevkit folder (with --year), or one VOC-layout dataset folder "
                       "(holding Annotations/, JPEGImages/, ImageSets/Main/); required "
                       "unless --resume")
    opt("--year", help="2007, 2012 or 2007+2012, for a VOCdevkit folder (default: none, "
                       "--data is the dataset)")
    opt("--split", default="trainval", help="image set of ImageSets/Main/")
    opt("--classes", type=_names, help="comma-separated class names (default: the 20 VOC "
                                       "classes)")
    opt("--model", default="ssd300", choices=tuple(MODELS), help="the network")
    opt("--iterations", type=int, default=120_000, help="training iterations in all")
    opt("--batch-size", type=int, default=32, help="images per iteration")
    opt("--optimizer", default="sgd", choices=["sgd", "adam"], help="optimiser")
    opt("--lr", type=float, default=1e-3, help="learning rate")
    opt("--milestones", type=_int_list, default="80000,100000",
        help="iterations at which the lr drops x0.1 (comma-separated; '' for none)")
    opt("--warmup-iters", type=int, default=0, help="iterations of linear lr warm-up")
    opt("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    opt("--no-augment", action="store_true", help="no augmentation (resize only)")
    opt("--augmentation", default="ssd", choices=AUGMENTATION_CHOICES,
        help="augmentation recipe: ssd (the paper's), no-expand (no zoom-out), flip (colour "
             "and flips only)")
    opt("--image-size", type=int, help="small model only: input size, a multiple of 32 "
                                       "(default: 128)")
    opt("--first-box", type=_percent_pair, metavar="MIN,MAX",
        help="small model only: the first map's box sizes in %% of the image, MIN < MAX <= 20 "
             "(default: 10,20; smaller for small objects)")
    opt("--drop-difficult", action="store_true",
        help="leave out objects marked difficult (default: train on them, as the paper)")
    opt("--init-weights", help=".npz weights to start from, e.g. a converted VGG16 base "
                               "(default: random initialisation)")
    opt("--checkpoint-every", type=int, default=1000, help="iterations between checkpoints")
    opt("--out", default="runs/train", help="output folder (locked while training)")
    opt("--seed", type=int, default=0, help="seed of the initialisation, data order and "
                                            "augmentation")
    opt("--device", default="cpu", choices=["cpu", "gpu"], help="where to train")
    opt("--workers", type=int, default=0, help="data worker processes (0: load in the "
                                               "training process)")
    opt("--resume", action="store_true", help="continue OUT/checkpoint.npz")
    opt("--overwrite", action="store_true",
        help="start afresh in an OUT that already holds a run (its checkpoint is deleted)")

    e = sub.add_parser("eval", help="VOC AP of trained weights on a VOC-format split",
                       description="Per-class AP and mAP with the VOC devkit's rules.")
    _add_model_source(e, "--run or --weights is required")
    opt = _Options(e, given_only)
    opt("--data", help="dataset root (default: the run's training data; required with "
                       "--weights)")
    opt("--year", help="year, for a VOCdevkit folder (default: the run's)")
    opt("--split", default="test", help="image set to evaluate")
    opt("--metric", default="07", choices=["07", "area"],
        help="VOC2007 11-point AP, or the area under the monotone PR curve (VOC2010+)")
    opt("--out", help="folder for ap.json, ap.txt, pr.png (default: RUN/eval-SPLIT, or "
                      "eval-SPLIT beside the weights)")
    opt("--device", default="cpu", choices=["cpu", "gpu"], help="where to run the model")

    k = sub.add_parser("detect", help="detections on images: pictures and a JSON",
                       description="Detect objects in images; writes one picture per image "
                                   "and detections.json.")
    k.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    _add_model_source(k, "--run or --weights is required")
    opt = _Options(k, given_only)
    opt("--out", default="runs/detect", help="folder for the pictures and detections.json")
    opt("--threshold", type=_fraction, default=0.3,
        help="min score to draw, in [0, 1] (the JSON has all)")
    opt("--device", default="cpu", choices=["cpu", "gpu"], help="where to run the model")

    g = sub.add_parser("make-data", help="write the built-in dataset in the VOC layout",
                       description="Write the built-in dataset (shapes on cluttered "
                                   "backgrounds) in the VOC layout.")
    g.add_argument("out", help="output folder")
    opt = _Options(g, given_only)
    opt("--train", type=int, default=1000, help="training images")
    opt("--test", type=int, default=200, help="test images")
    opt("--size", type=int, default=128, help="image size in pixels")
    opt("--seed", type=int, default=0, help="seed")

    from .data import download
    from .pytorch import convert

    c = sub.add_parser("convert", help="PyTorch weights -> minissd .npz",
                       description=convert.DESCRIPTION)
    convert.add_arguments(c)
    w = sub.add_parser("download", help="fetch PASCAL VOC into a VOCdevkit folder",
                       description=download.__doc__.splitlines()[0])
    download.add_arguments(w)
    return p


def _model_from_args(a):
    """``(model, class names, config or None, default output folder)`` from --run or
    --weights."""
    if (a.run is None) == (a.weights is None):
        raise ValueError("give either --run (a training output folder) or --weights (an .npz "
                         "file)")
    from .inference import load_run, load_weights_file

    if a.run is not None:
        if a.model or a.classes:
            raise ValueError("--model and --classes go with --weights; a --run knows its own")
        model, config, names = load_run(a.run, a.device)
        return model, names, config, Path(a.run)
    model, names = load_weights_file(a.weights, a.model, a.classes, a.device)
    return model, names, None, Path(a.weights).parent


def _check_device(device):
    from .backend import gpu_unavailable_reason

    if device == "gpu" and (reason := gpu_unavailable_reason()):
        raise ValueError(f"--device gpu: {reason}")


def _train_fields(a) -> dict:
    """``TrainConfig`` fields from the parsed ``train`` flags present in ``a``."""
    direct = {"data": "data_root", "year": "year", "split": "train_split",
              "classes": "class_names", "model": "model", "iterations": "iterations",
              "batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr",
              "milestones": "milestones", "warmup_iters": "warmup_iters",
              "weight_decay": "weight_decay", "augmentation": "augmentation",
              "init_weights": "init_weights", "checkpoint_every": "checkpoint_every",
              "out": "out_dir", "seed": "seed", "device": "device", "workers": "num_workers"}
    given = vars(a)
    fields = {field: given[dest] for dest, field in direct.items() if dest in given}
    if given.get("no_augment"):
        fields["augment"] = False
    if given.get("drop_difficult"):
        fields["keep_difficult"] = False
    extra = {}
    if given.get("image_size") is not None:
        extra["image_size"] = given["image_size"]
    if given.get("first_box") is not None:
        extra["first_min_ratio"], extra["first_max_ratio"] = given["first_box"]
    if extra:
        fields["extra"] = extra
    return fields


def cmd_train(a, argv):
    from dataclasses import replace

    from .distributed import world
    from .runfolder import RunFolder
    from .train import TrainConfig, read_checkpoint_config, train

    fields = _train_fields(a)
    if fields.get("extra") and fields.get("model", "ssd300") != "small" and not a.resume:
        raise ValueError("--image-size and --first-box apply to --model small only")
    if a.resume:
        # the checkpoint's settings, changed only by the flags typed now (train() refuses any
        # change but how long, where and how often to checkpoint)
        typed = _train_fields(_parser(given_only=True).parse_args(argv))
        folder = RunFolder(a.out)
        comm = world()  # several processes (mpiexec): rank 0 reads, the others are told
        saved = None
        with comm.all_or_none():
            if comm.is_root:
                if not folder.checkpoint.exists():
                    raise FileNotFoundError(f"--resume: no checkpoint at {folder.checkpoint}")
                saved = read_checkpoint_config(folder.checkpoint)
        saved = comm.bcast(saved)
        if "extra" in typed:
            typed["extra"] = {**saved.extra, **typed["extra"]}
        config = replace(saved, **typed)
    else:
        if "data_root" not in fields or fields["data_root"] is None:
            raise ValueError("--data is required (the dataset folder), unless --resume")
        config = TrainConfig(**fields)
    train(config, resume=a.resume, overwrite=a.overwrite)
    if world().is_root:
        print(f"weights, metrics and loss curve in {a.out}")


def cmd_eval(a, argv):
    from dataclasses import replace

    from .inference import evaluate_and_report
    from .train import TrainConfig, load_dataset

    _check_device(a.device)
    model, names, config, home = _model_from_args(a)
    if config is None:
        if a.data is None:
            raise ValueError("--data is required with --weights (the dataset to evaluate on)")
        config = TrainConfig(data_root=a.data, class_names=names)
    config = replace(config, data_root=a.data or config.data_root, year=a.year or config.year,
                     keep_difficult=True)  # difficult objects are ignored by the metric
    out = Path(a.out) if a.out else home / f"eval-{a.split}"
    dataset = load_dataset(config, a.split, report_path=out / "data-report.json")
    evaluate_and_report(model, dataset, out, use_07_metric=a.metric == "07")


def _picture_names(paths) -> list[str]:
    """One distinct picture name per image path: the file's stem, numbered where two images
    share one (``a/img.jpg``, ``b/img.jpg`` -> ``img.png``, ``img-2.png``)."""
    names, used = [], set()
    for path in paths:
        stem = name = Path(path).stem
        number = 1
        while name in used:
            number += 1
            name = f"{stem}-{number}"
        used.add(name)
        names.append(name + ".png")
    return names


def cmd_detect(a, argv):
    from .data.voc import read_image
    from .inference import predict
    from .viz import draw_detections

    _check_device(a.device)
    model, names, _, _ = _model_from_args(a)
    paths = list(dict.fromkeys(a.images))  # an image given twice is done once
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [read_image(p) for p in paths]
    dets = predict(model, images, progress=True)
    records = []
    for path, picture, image, d in zip(paths, _picture_names(paths), images, dets):
        keep = d.scores >= a.threshold
        pic = draw_detections(image, d.boxes[keep], d.labels[keep], d.scores[keep], names,
                              out / picture)
        records.append({"image": str(path), "picture": str(pic), "detections": [
            {"box": [round(float(v), 2) for v in b], "label": names[int(lab)],
             "score": round(float(s), 4)} for b, lab, s in zip(d.boxes, d.labels, d.scores)]})
    atomic_write_text(out / "detections.json", json.dumps(records, indent=1))
    print(f"{len(records)} images: pictures and detections.json in {out}")


def cmd_make_data(a, argv):
    from .data import make_synthetic_voc

    names = make_synthetic_voc(a.out, a.train, a.test, image_size=a.size, seed=a.seed)
    print(f"wrote {a.train} train + {a.test} test images of classes {', '.join(names)} to "
          f"{a.out}")


def cmd_demo(a, argv):
    from .data import SYNTHETIC_CLASSES, VOCDataset, make_synthetic_voc
    from .inference import evaluate_and_report
    from .train import TrainConfig, train
    from .viz import draw_detections

    start = time.perf_counter()
    out = Path(a.out)
    data = out / "data"
    config = TrainConfig(
        data_root=str(data), train_split="train", class_names=SYNTHETIC_CLASSES, model="small",
        iterations=a.iterations, batch_size=a.batch_size, optimizer="adam", lr=a.lr,
        milestones=tuple(sorted({m for m in (a.iterations * 2 // 3, a.iterations * 13 // 15)
                                 if m > 0})),
        warmup_iters=min(a.warmup_iters, a.iterations // 10), weight_decay=a.weight_decay,
        augmentation=a.augmentation,
        seed=a.seed, device=a.device, num_workers=a.workers,
        checkpoint_every=max(100, a.iterations // 5), out_dir=str(out / "train")).check()
    print(f"[1/4] writing the built-in dataset to {data} ({a.train_images} train, "
          f"{a.test_images} test images, {a.image_size} px)")
    make_synthetic_voc(data, a.train_images, a.test_images, image_size=a.image_size,
                       seed=a.seed)
    print(f"[2/4] training the small SSD for {a.iterations} iterations on the {a.device}")
    model, _ = train(config, overwrite=True)  # the demo always starts afresh
    print("[3/4] evaluating on the held-out test images")
    test = VOCDataset(data, "test", class_names=SYNTHETIC_CLASSES)
    result, dets = evaluate_and_report(model, test, out)
    print(f"[4/4] drawing detections of {a.pictures} test images")
    for i in range(min(a.pictures, len(test))):
        s = test[i]
        d = dets[i]
        keep = d.scores >= 0.3
        draw_detections(s.image, d.boxes[keep], d.labels[keep], d.scores[keep],
                        SYNTHETIC_CLASSES, out / "detections" / f"{s.image_id}.png",
                        gt_boxes=s.boxes)
    minutes = (time.perf_counter() - start) / 60
    print(f"demo finished in {minutes:.1f} min: mAP@0.5 (VOC07 11-point) = {result.map:.4f}\n"
          f"  AP table {out / 'ap.txt'}, loss curve {out / 'train' / 'loss.png'}, "
          f"PR curves {out / 'pr.png'}, pictures {out / 'detections'}")
    return result


HANDLERS = {"demo": cmd_demo, "train": cmd_train, "eval": cmd_eval, "detect": cmd_detect,
            "make-data": cmd_make_data}


def _error_text(exc, command) -> str:
    """One line (or, for a data error, one line per problem) saying what went wrong."""
    from .train import ConfigError

    if isinstance(exc, ConfigError) and command in ("train", "demo"):
        flag = FLAG_OF_FIELD.get(exc.field, "--" + exc.field.replace("_", "-"))
        return f"{flag}: {exc.message}"
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, FileNotFoundError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    if isinstance(exc, KeyError):  # str() of a KeyError is the repr of its key
        return f"missing key {exc.args[0]!r}" if exc.args else "missing key"
    return str(exc)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one readable line each (not Python's file:line format)."""
    text = "; ".join(" ".join(ln.split()) for ln in str(message).splitlines() if ln.strip())
    print(f"minissd: warning: {text}", file=sys.stderr)


def _close_progress_bars():
    """Close open tqdm bars, so that an error is printed on its own line."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            bar.close()


def _launched_rank():
    from .distributed.communicator import launched_rank

    return launched_rank()


def main(argv=None):
    """Run ``minissd ARGV``; returns the exit status (0, 2 for an error, 130 interrupted)."""
    import os
    import warnings

    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        try:
            if args.command in ("convert", "download"):
                from .data import download
                from .pytorch import convert

                status = {"convert": convert, "download": download}[args.command].run(args)
                if status:
                    return status
            else:
                HANDLERS[args.command](args, argv)
        except KeyboardInterrupt:
            _close_progress_bars()
            print(f"minissd {args.command}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if debug:
                raise
            _close_progress_bars()
            if args.command == "train" and _launched_rank() not in (None, 0):
                return 2  # several processes: rank 0 reports the error (naming the rank)
            from .train import NonFiniteLossError

            expected = isinstance(exc, ValueError | OSError | RuntimeError | NonFiniteLossError
                                  | KeyError)
            print(f"minissd {args.command}: error: {_error_text(exc, args.command)}"
                  + ("" if expected else f" ({type(exc).__name__}; this looks like a bug in "
                                         f"minissd: rerun with --debug for the traceback)"),
                  file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "DemoConfig"]
