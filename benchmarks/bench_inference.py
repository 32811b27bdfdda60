"""SSD300 inference, minissd vs torchvision's ``ssd300_vgg16`` with the same weights, on the CPU.

    python -m venv .venv-bench
    .venv-bench/bin/pip install -e . torch==2.14.1 torchvision==0.29.1   # ~5.6 GB, see README
    .venv-bench/bin/python benchmarks/bench_inference.py [--batch 1,8] [--steps 5] [--busy 1]

What is timed: images in, detections out. torchvision: ``model(images)`` in eval mode under
``torch.no_grad()`` on a list of ``(3, 300, 300)`` float images in 0..1 (its transform, backbone,
head, anchors and ``postprocess_detections``). minissd: ``minissd.inference.predict(model,
images)`` on the same images as ``uint8 (300, 300, 3)`` (its transform, forward, ``detect``). The
weights are torchvision's seeded random initialisation of ``ssd300_vgg16(num_classes=21)``,
converted with ``minissd.pytorch.convert`` (layout ``torchvision-ssd300``), so both compute the
same function; the last step's detections of the two are matched (label, score within 1e-4,
corners within 0.01 px) and the matches are printed. Random weights make the scores of a few
classes saturate: torchvision's float32 softmax rounds many to exactly 1.0, where minissd's
float64 one keeps them apart, so the two NMS walks take those tied boxes in different orders
and a few percent of the detections differ (the network outputs agree to float32 rounding:
``minissd.pytorch.parity``).

Each framework runs in its own fresh subprocess with the same thread count (``--threads``,
default all CPUs: ``torch.set_num_threads``, the OpenMP / OpenBLAS / MKL / Numba variables, and
``MINISSD_NUM_THREADS``); times are the median, minimum and maximum over ``--steps`` steps after
two warm-up steps; peak RSS from ``getrusage``. ``--busy K`` runs everything a second time while
K other processes each keep one core busy (a pure-Python loop): the slowdown under contention of
each framework, busy median / quiet median. The load average is printed before and after: the
machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import bench_common
import numpy as np

SEED = 0
NUM_CLASSES = 21  # VOC: 20 classes and the background
IMAGE = 300


def _images(batch):
    rng = np.random.default_rng(SEED)
    return rng.integers(0, 256, (batch, IMAGE, IMAGE, 3), dtype=np.uint8)


def _detections_json(dets):
    """``[(boxes, labels, scores)]`` per image as lists; labels 0-based object classes."""
    return [[np.asarray(b, np.float64).tolist(), np.asarray(lab).astype(int).tolist(),
             np.asarray(s, np.float64).tolist()] for b, lab, s in dets]


def _time(step, steps):
    for _ in range(2):  # warm-up: Numba compiles, allocators settle
        out = step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - start)
    return times, out


def worker_torchvision(batch, steps, threads, weights_path):
    import torch
    from torchvision.models.detection import ssd300_vgg16

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES).eval()
    np.savez(weights_path, **{k: v.numpy() for k, v in model.state_dict().items()})
    images = [torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in _images(batch)]

    def step():
        with torch.no_grad():
            return model(images)

    times, out = _time(step, steps)
    dets = [(d["boxes"].numpy(), d["labels"].numpy() - 1, d["scores"].numpy()) for d in out]
    return dict(times=times, detections=_detections_json(dets))


def worker_minissd(batch, steps, weights_path):
    from minissd.inference import predict
    from minissd.pytorch.convert import convert_state_dict
    from minissd.pytorch.layouts import torchvision_ssd300_config
    from minissd.ssd.model import SSD

    config = torchvision_ssd300_config(NUM_CLASSES)
    with np.load(weights_path) as f:
        state = {k: f[k] for k in f.files}
    model = SSD(config)
    model.load_state_dict(convert_state_dict(state, "torchvision-ssd300", config).state)
    model.eval()
    images = list(_images(batch))
    times, out = _time(lambda: predict(model, images, batch_size=batch), steps)
    return dict(times=times, detections=_detections_json([(d.boxes, d.labels, d.scores)
                                                          for d in out]))


def run_worker(name, batch, steps, threads, weights_path):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--batch", str(batch),
           "--steps", str(steps), "--threads", str(threads), "--weights", weights_path]
    return bench_common.run_worker(name, cmd, bench_common.thread_env(threads))


class Busy:
    """``k`` processes that each keep one core busy, for the length of a ``with`` block."""

    def __init__(self, k):
        self.k, self.procs = k, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(self.k)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def same_detections(ours, ref):
    """``(matched, total minissd, total torchvision)`` over the batch (``parity.match_detections``:
    same label, score within 1e-4, every corner within 0.01 px)."""
    from minissd.pytorch.parity import match_detections

    matched = total_ours = total_ref = 0
    for (ob, ol, os_), (rb, rl, rs) in zip(ours, ref, strict=True):
        d = match_detections((np.reshape(ob, (-1, 4)), ol, os_),
                             (np.reshape(rb, (-1, 4)), rl, rs), box_atol=0.01, score_atol=1e-4)
        matched, total_ours, total_ref = (matched + d.matched, total_ours + len(os_),
                                          total_ref + len(rs))
    return matched, total_ours, total_ref


def _stats(times):
    return statistics.median(times), min(times), max(times)


def measure(batch, steps, threads, weights_path):
    results = {}
    for name in ("torchvision", "minissd"):
        results[name] = run_worker(name, batch, steps, threads, weights_path)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", default="1,8", help="batch sizes, comma-separated (default 1,8)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per framework and batch")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--busy", type=int, default=0,
                   help="also measure while this many processes keep a core busy each")
    p.add_argument("--worker", choices=("minissd", "torchvision"), help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        batch = int(args.batch)
        if args.worker == "minissd":
            result = worker_minissd(batch, args.steps, args.weights)
        else:
            result = worker_torchvision(batch, args.steps, args.threads, args.weights)
        result["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(result))
        return 0

    batches = [int(b) for b in args.batch.split(",")]
    print(f"SSD300 inference (images in, detections out), float32, 300x300, {NUM_CLASSES} "
          f"classes, {args.threads} threads, median [min, max] of {args.steps} steps after 2 "
          f"warm-up; load average before: {os.getloadavg()[0]:.2f}")
    conditions = [("quiet", 0)] + ([(f"{args.busy} busy", args.busy)] if args.busy else [])
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = os.path.join(tmp, "torchvision_ssd300.npz")
        for label, busy in conditions:
            for batch in batches:
                with Busy(busy):
                    r = measure(batch, args.steps, args.threads, weights_path)
                for name in ("torchvision", "minissd"):
                    med, lo, hi = _stats(r[name]["times"])
                    medians[label, batch, name] = med
                    print(f"  {label:>7} batch {batch}: {name:>11} {1000 * med:8.0f} ms "
                          f"[{1000 * lo:.0f}, {1000 * hi:.0f}]  peak RSS "
                          f"{r[name]['rss_peak'] / 1024:5.0f} MiB")
                ratio = medians[label, batch, "minissd"] / medians[label, batch, "torchvision"]
                matched, ours, ref = same_detections(r["minissd"]["detections"],
                                                     r["torchvision"]["detections"])
                print(f"  {label:>7} batch {batch}: minissd / torchvision {ratio:5.2f}x; "
                      f"detections matched {matched} of {ours} (torchvision {ref})")
    if args.busy:
        for batch in batches:
            slow = {name: medians[conditions[1][0], batch, name] / medians["quiet", batch, name]
                    for name in ("torchvision", "minissd")}
            print(f"slowdown with {args.busy} busy, batch {batch}: torchvision "
                  f"{slow['torchvision']:.2f}x, minissd {slow['minissd']:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
