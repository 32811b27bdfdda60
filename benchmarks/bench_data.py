"""The data pipeline: JPEG decode, the paper's augmentation and batching, minissd vs torchvision's
transforms v2 on the same images and recipe, on the CPU; and whether the loader keeps a training
step fed.

    python benchmarks/bench_data.py [--data ../shared/data/voc2012-sample/VOCdevkit/VOC2012]
    # torchvision's side needs torch and torchvision (the environment of bench_inference.py):
    .venv-bench/bin/python benchmarks/bench_data.py

**Pipeline speed** (``--repeats`` passes over the images, median, minimum and maximum of the
passes; one process each, one thread: the work a loader worker does). Per image: read the JPEG
file, decode it, the SSD augmentation, and a batch of ``--batch`` stacked into one float32
``(N, 3, 300, 300)`` array.

* minissd: ``minissd.data.load_batch`` with ``VOCDataset`` (Pillow decode, the annotation
  already parsed) and ``SSDAugmentation(300)``: photometric distortions, zoom out (up to 4x,
  mean fill), the paper's IoU crops, flip, resize, mean subtraction.
* torchvision: ``torchvision.io.decode_jpeg`` (libjpeg-turbo), then the v2 transforms of
  torchvision's own SSD recipe (``references/detection/presets.py``, policy "ssd"):
  ``RandomPhotometricDistort(p=1)``, ``RandomZoomOut(fill=mean)``, ``RandomIoUCrop()``,
  ``RandomHorizontalFlip()``, then ``Resize((300, 300))``, ``SanitizeBoundingBoxes()``,
  ``ToDtype(float32)`` and the mean subtracted (what minissd's transform ends with), and
  ``torch.stack``. The boxes come from the same parsed annotations.

**Fed or not.** A training step needs ``batch / step seconds`` images per second; the loader
delivers what ``DataLoader(num_workers=W)`` serves with the same augmentation, for W = 0, 1, 2.
The step is timed here on the network alone (forward, a linear loss, backward: what
``bench_ssd.py`` times), for the small model (128 px, batch 16) and SSD300 (batch 8).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import bench_common
import numpy as np

SEED = 0
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/voc2012-sample/VOCdevkit/VOC2012"


def _dataset(root, split=None, classes=None):
    from minissd.data import VOC_CLASSES, VOCDataset

    if split is None:
        split = "val" if (Path(root) / "ImageSets/Main/val.txt").exists() else "trainval"
    return VOCDataset(root, split, class_names=classes.split(",") if classes else VOC_CLASSES)


def worker_minissd(root, batch, repeats, split=None, classes=None):
    from minissd.data.loader import load_batch
    from minissd.data.transforms import SSDAugmentation

    dataset = _dataset(root, split, classes)
    transform = SSDAugmentation(300)
    n = len(dataset)
    passes = []
    for epoch in range(repeats + 1):
        start = time.perf_counter()
        for lo in range(0, n, batch):
            load_batch(dataset, transform, SEED, epoch, range(lo, min(n, lo + batch)))
        if epoch:  # the first pass warms the file cache
            passes.append(time.perf_counter() - start)
    return dict(passes=passes, images=n)


def worker_torchvision(root, batch, repeats, split=None, classes=None):
    import torch
    from torchvision import tv_tensors
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2

    from minissd.imagenet import VGG_MEAN

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    dataset = _dataset(root, split, classes)
    items = [(dataset.annotation(i).image_path, dataset.annotation(i).boxes,
              dataset.annotation(i).labels) for i in range(len(dataset))]
    mean = torch.tensor(VGG_MEAN, dtype=torch.float32).view(3, 1, 1)
    transform = v2.Compose([
        v2.RandomPhotometricDistort(p=1),
        v2.RandomZoomOut(fill={tv_tensors.Image: [round(m) for m in VGG_MEAN], "others": 0}),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(p=0.5),
        v2.Resize((300, 300), antialias=False),
        v2.SanitizeBoundingBoxes(),
        v2.ToDtype(torch.float32),
    ])

    def load(path, boxes, labels):
        image = tv_tensors.Image(decode_jpeg(read_file(str(path))))
        target = {"boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY",
                                                    canvas_size=image.shape[-2:]),
                  "labels": torch.from_numpy(labels)}
        image, target = transform(image, target)
        return image - mean, target

    n = len(items)
    passes = []
    for epoch in range(repeats + 1):
        start = time.perf_counter()
        for lo in range(0, n, batch):
            samples = [load(*item) for item in items[lo: lo + batch]]
            torch.stack([image for image, _ in samples])
        if epoch:
            passes.append(time.perf_counter() - start)
    return dict(passes=passes, images=n)


def worker_fed(root, split=None, classes=None):
    """Images per second a training step needs (the network's step timed) and the loader serves."""
    from minissd.autograd import Tensor
    from minissd.data import DataLoader
    from minissd.data.transforms import SSDAugmentation
    from minissd.ssd.model import SSD, ssd300, ssd_small

    dataset = _dataset(root, split, classes)
    out = {}
    for name, config, batch in (("small", ssd_small(21), 16), ("SSD300", ssd300(21), 8)):
        model = SSD(config, seed=SEED)
        model.train()
        rng = np.random.default_rng(SEED)
        size = config.image_size
        x = rng.uniform(-120, 130, (batch, 3, size, size)).astype(np.float32)
        steps = []
        for step in range(3 if name == "small" else 2):
            model.zero_grad()
            start = time.perf_counter()
            loc, conf = model(x)
            ((loc * Tensor(rng.standard_normal(loc.shape).astype(np.float32))).sum()
             + (conf * Tensor(rng.standard_normal(conf.shape).astype(np.float32))).sum()
             ).backward()
            if step:
                steps.append(time.perf_counter() - start)
        served = {}
        for workers in (0, 1, 2):
            with DataLoader(dataset, batch, shuffle=True, seed=SEED, num_workers=workers,
                            transform=SSDAugmentation(size), drop_last=True) as loader:
                it = loader.forever()
                next(it)  # start-up (worker spawn) is not the steady rate
                start, count = time.perf_counter(), 0
                while time.perf_counter() - start < 6.0:
                    count += len(next(it).images)
                served[workers] = count / (time.perf_counter() - start)
        out[name] = dict(batch=batch, step=statistics.median(steps),
                         needed=batch / statistics.median(steps), served=served)
    return out


def run_worker(name, root, batch, repeats, split=None, classes=None):
    """A worker process: the pipelines on one thread each; the loader and the step on all."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--data", str(root),
           "--batch", str(batch), "--repeats", str(repeats)]
    cmd += ["--split", split] if split else []
    cmd += ["--classes", classes] if classes else []
    threads = (os.cpu_count() or 1) if name == "fed" else 1
    return bench_common.run_worker(name, cmd, bench_common.thread_env(threads))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="a VOC folder (default: %(default)s)")
    p.add_argument("--split", help="the image set (default: val if the folder has it, else "
                   "trainval)")
    p.add_argument("--classes", help="comma-separated class names (default: VOC's 20)")
    p.add_argument("--batch", type=int, default=8, help="images per stacked batch (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the images")
    p.add_argument("--no-fed", action="store_true", help="skip the needed-vs-served part")
    p.add_argument("--worker", choices=("minissd", "torchvision", "fed"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"--data: {args.data}: no such folder", file=sys.stderr)
        return 2
    if args.worker:
        fn = {"minissd": worker_minissd, "torchvision": worker_torchvision}.get(args.worker)
        result = (fn(args.data, args.batch, args.repeats, args.split, args.classes) if fn
                  else worker_fed(args.data, args.split, args.classes))
        print(json.dumps(result))
        return 0

    print(f"Data pipeline (read, decode, SSD augmentation to 300x300, batches of {args.batch}), "
          f"one thread each, {args.repeats} passes over {args.data}; load average before: "
          f"{os.getloadavg()[0]:.2f}")
    rates = {}
    for name in ("torchvision", "minissd"):
        try:
            r = run_worker(name, args.data, args.batch, args.repeats, args.split, args.classes)
        except RuntimeError as exc:
            if name == "torchvision" and "ModuleNotFoundError" in str(exc):
                print("  torchvision: not installed here (see this script's docstring)")
                continue
            raise
        per_pass = [r["images"] / t for t in r["passes"]]
        rates[name] = statistics.median(per_pass)
        print(f"  {name:>11}: {rates[name]:6.1f} images/s  [{min(per_pass):.1f}, "
              f"{max(per_pass):.1f}] over {len(per_pass)} passes of {r['images']} images")
    if len(rates) == 2:
        print(f"  minissd / torchvision: {rates['minissd'] / rates['torchvision']:.2f}x the "
              f"images per second")
    if not args.no_fed:
        fed = run_worker("fed", args.data, args.batch, args.repeats, args.split, args.classes)
        for name, r in fed.items():
            served = ", ".join(f"{w} workers {v:.1f}" for w, v in r["served"].items())
            print(f"  {name}: a step of batch {r['batch']} takes {r['step']:.2f} s, so it "
                  f"needs {r['needed']:.1f} images/s; the loader serves {served} images/s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
