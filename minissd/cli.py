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


def _parser():
    p = argparse.ArgumentParser(prog="minissd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="built-in data -> train small SSD on CPU -> AP, pictures")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=1,
                   help="data worker processes (1: augmentation overlaps training)")
    d.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    for f, v in DemoConfig().__dict__.items():
        if f == "augmentation":
            d.add_argument("--augmentation", default=v, choices=AUGMENTATION_CHOICES)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            d.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)

    t = sub.add_parser("train", help="train on a VOC-format dataset")
    t.add_argument("--data", required=True, help="VOCdevkit folder, or a VOC-layout dataset")
    t.add_argument("--year", default=None, help="2007, 2012 or 2007+2012 (for a VOCdevkit)")
    t.add_argument("--split", default="trainval")
    t.add_argument("--classes", default=None, help="comma-separated class names (default VOC)")
    t.add_argument("--model", default="ssd300", choices=["small", "ssd300", "ssd512"])
    t.add_argument("--iterations", type=int, default=120_000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--milestones", default="80000,100000")
    t.add_argument("--warmup-iters", type=int, default=0)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--augmentation", default="ssd", choices=AUGMENTATION_CHOICES,
                   help="augmentation recipe (minissd.data.transforms.AUGMENTATIONS)")
    t.add_argument("--image-size", type=int, default=None,
                   help="small model only: input size, a multiple of 32 (default 128)")
    t.add_argument("--first-box", default=None, metavar="MIN,MAX",
                   help="small model only: the first map's box sizes in %% of the image "
                        "(default 10,20; smaller for small objects)")
    t.add_argument("--drop-difficult", action="store_true")
    t.add_argument("--init-weights", default=None, help=".npz weights to start from")
    t.add_argument("--checkpoint-every", type=int, default=1000)
    t.add_argument("--out", default="runs/train")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    t.add_argument("--workers", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")

    e = sub.add_parser("eval", help="VOC AP of trained weights on a VOC-format split")
    e.add_argument("--run", required=True, help="a training output folder (config + weights)")
    e.add_argument("--data", default=None, help="dataset root (default: the training one)")
    e.add_argument("--year", default=None)
    e.add_argument("--split", default="test")
    e.add_argument("--metric", default="07", choices=["07", "area"])
    e.add_argument("--out", default=None, help="folder for ap.json, ap.txt, pr.png")
    e.add_argument("--device", default="cpu", choices=["cpu", "gpu"])

    k = sub.add_parser("detect", help="detections on images: pictures and a JSON")
    k.add_argument("images", nargs="+")
    k.add_argument("--run", required=True, help="a training output folder")
    k.add_argument("--out", default="runs/detect")
    k.add_argument("--threshold", type=float, default=0.3, help="min score to draw")
    k.add_argument("--device", default="cpu", choices=["cpu", "gpu"])

    g = sub.add_parser("make-data", help="write the built-in dataset in the VOC layout")
    g.add_argument("out")
    g.add_argument("--train", type=int, default=1000)
    g.add_argument("--test", type=int, default=200)
    g.add_argument("--size", type=int, default=128)
    g.add_argument("--seed", type=int, default=0)

    c = sub.add_parser("convert", help="PyTorch weights -> minissd .npz")
    c.add_argument("args", nargs=argparse.REMAINDER)

    w = sub.add_parser("download", help="fetch PASCAL VOC into a VOCdevkit folder")
    w.add_argument("args", nargs=argparse.REMAINDER)
    return p


def load_run(run_dir, device="cpu"):
    """The model of a training output folder (``config.json`` + ``weights.npz``)."""
    from .nn import load_weights
    from .train import TrainConfig, build_model

    run = Path(run_dir)
    for name in ("config.json", "weights.npz"):
        if not (run / name).exists():
            raise FileNotFoundError(f"{run}: no {name} (is this a `minissd train` output?)")
    config = TrainConfig.from_json((run / "config.json").read_text())
    from .data import VOC_CLASSES

    names = config.class_names or VOC_CLASSES
    model = build_model(config, len(names))
    load_weights(model, run / "weights.npz")
    return model.to(device), config, tuple(names)


def cmd_train(a):
    from .train import TrainConfig, train

    extra = {}
    if a.image_size is not None:
        extra["image_size"] = a.image_size
    if a.first_box is not None:
        try:
            extra["first_min_ratio"], extra["first_max_ratio"] = (
                float(v) for v in a.first_box.split(","))
        except ValueError:
            raise ValueError(
                f"--first-box must be MIN,MAX (percent), got {a.first_box!r}") from None
    if extra and a.model != "small":
        raise ValueError("--image-size and --first-box apply to --model small only")
    config = TrainConfig(
        data_root=a.data, year=a.year, train_split=a.split,
        class_names=tuple(a.classes.split(",")) if a.classes else None,
        keep_difficult=not a.drop_difficult, model=a.model, iterations=a.iterations,
        batch_size=a.batch_size, optimizer=a.optimizer, lr=a.lr,
        milestones=tuple(int(m) for m in a.milestones.split(",") if m),
        warmup_iters=a.warmup_iters, weight_decay=a.weight_decay, augment=not a.no_augment,
        augmentation=a.augmentation, extra=extra,
        seed=a.seed, device=a.device, num_workers=a.workers,
        checkpoint_every=a.checkpoint_every, out_dir=a.out, init_weights=a.init_weights)
    train(config, resume=a.resume)
    print(f"weights, metrics and loss curve in {a.out}")


def evaluate_and_report(model, dataset, out_dir, use_07_metric=True):
    """Evaluate, print the AP table, write ap.json, ap.txt and pr.png; returns the result."""
    from . import eval as voc_eval
    from .inference import evaluate_model

    result, dets = evaluate_model(model, dataset, use_07_metric=use_07_metric)
    table = voc_eval.format_ap_table(result, dataset.class_names)
    print(table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ap.txt").write_text(table + "\n")
    voc_eval.write_json(result, out / "ap.json", dataset.class_names)
    voc_eval.save_pr_curves(result, out / "pr.png", dataset.class_names)
    return result, dets


def cmd_eval(a):
    from .data import VOCDataset

    model, config, names = load_run(a.run, a.device)
    dataset = VOCDataset(a.data or config.data_root, a.split, year=a.year or config.year,
                         class_names=names)
    evaluate_and_report(model, dataset, a.out or Path(a.run) / f"eval-{a.split}",
                        use_07_metric=a.metric == "07")


def cmd_detect(a):
    from .data.voc import read_image
    from .inference import predict
    from .viz import draw_detections

    model, _, names = load_run(a.run, a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [read_image(p) for p in a.images]
    dets = predict(model, images, progress=True)
    records = []
    for path, image, d in zip(a.images, images, dets):
        keep = d.scores >= a.threshold
        pic = draw_detections(image, d.boxes[keep], d.labels[keep], d.scores[keep], names,
                              out / (Path(path).stem + ".png"))
        records.append({"image": str(path), "picture": str(pic), "detections": [
            {"box": [round(float(v), 2) for v in b], "label": names[int(lab)],
             "score": round(float(s), 4)} for b, lab, s in zip(d.boxes, d.labels, d.scores)]})
    (out / "detections.json").write_text(json.dumps(records, indent=1))
    print(f"{len(records)} images: pictures and detections.json in {out}")


def cmd_make_data(a):
    from .data import make_synthetic_voc

    names = make_synthetic_voc(a.out, a.train, a.test, image_size=a.size, seed=a.seed)
    print(f"wrote {a.train} train + {a.test} test images of classes {', '.join(names)} to "
          f"{a.out}")


def cmd_demo(a):
    from .data import SYNTHETIC_CLASSES, VOCDataset, make_synthetic_voc
    from .train import TrainConfig, train
    from .viz import draw_detections

    start = time.perf_counter()
    out = Path(a.out)
    data = out / "data"
    print(f"[1/4] writing the built-in dataset to {data} ({a.train_images} train, "
          f"{a.test_images} test images, {a.image_size} px)")
    make_synthetic_voc(data, a.train_images, a.test_images, image_size=a.image_size,
                       seed=a.seed)
    print(f"[2/4] training the small SSD for {a.iterations} iterations on the {a.device}")
    config = TrainConfig(
        data_root=str(data), train_split="train", class_names=SYNTHETIC_CLASSES, model="small",
        iterations=a.iterations, batch_size=a.batch_size, optimizer="adam", lr=a.lr,
        milestones=(int(a.iterations * 2 / 3), int(a.iterations * 13 / 15)),
        warmup_iters=min(a.warmup_iters, a.iterations // 10), weight_decay=a.weight_decay,
        augmentation=a.augmentation,
        seed=a.seed, device=a.device, num_workers=a.workers,
        checkpoint_every=max(100, a.iterations // 5), out_dir=str(out / "train"))
    model, _ = train(config)
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


def main(argv=None):
    from .train import NonFiniteLossError

    args = _parser().parse_args(argv)
    if args.command == "convert":
        from . import convert

        return convert.main(args.args)
    if args.command == "download":
        from .data import download

        return download.main(args.args)
    handlers = {"demo": cmd_demo, "train": cmd_train, "eval": cmd_eval, "detect": cmd_detect,
                "make-data": cmd_make_data}
    try:
        handlers[args.command](args)
    except (FileNotFoundError, ValueError, NonFiniteLossError) as exc:
        print(f"minissd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "DemoConfig", "load_run"]
