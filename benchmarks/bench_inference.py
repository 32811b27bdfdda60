"""SSD300 inference, minissd vs torchvision's ``ssd300_vgg16`` with the same weights, on the CPU.

    python -m venv .venv-bench
    .venv-bench/bin/pip install -e . torch==2.14.1 torchvision==0.29.1   # ~5.6 GB, see README
    .venv-bench/bin/python benchmarks/bench_inference.py [--batch 1,8] [--steps 5] [--rounds 2]
        [--busy 1]

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
two warm-up steps; peak RSS from ``getrusage``. ``--busy K`` also measures each framework while K
other processes each keep one core busy (a pure-Python loop): the slowdown under contention, busy
median / quiet median. The quiet and busy steps alternate inside the same worker process (the
busy processes are paused with ``SIGSTOP`` between busy steps), in the order quiet, busy, busy,
quiet, ...: this machine's speed drifts by 20-40% within minutes (a batch-8 step of the same code
1.8-2.6 s), so quiet and busy steps measured minutes apart would mostly measure the drift. The
median of the per-pair ratios (each busy step over the quiet step next to it) is printed too.
``--rounds`` (default 2) runs each framework's worker that many times, interleaved with the
other's (torchvision, minissd, then minissd, torchvision): the two are measured side by side as
in ``bench_ssd.py`` (within one session torchvision's batch-1 median moved from 395 to 553 ms
between runs), each round's ratio printed; the statistics pool all of a framework's steps.
The load average is printed before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
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


def _time(step, steps, busy=0):
    """``(quiet times, busy times, last output)`` of ``steps`` timed calls of ``step`` after two
    warm-up calls; with ``busy`` > 0 also ``steps`` calls next to ``busy`` busy processes,
    alternating with the quiet ones (quiet, busy, busy, quiet, quiet, busy, ...)."""
    for _ in range(2):  # warm-up: Numba compiles, allocators settle
        out = step()
    times = {False: [], True: []}
    order = [False] * steps if not busy else \
        [cond for i in range(steps) for cond in ((False, True) if i % 2 == 0 else (True, False))]
    with Busy(busy) as others:
        for contended in order:
            if contended:
                others.resume()
            else:
                others.pause()
            start = time.perf_counter()
            out = step()
            times[contended].append(time.perf_counter() - start)
    return times[False], times[True], out


def worker_torchvision(batch, steps, threads, weights_path, busy):
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

    times, busy_times, out = _time(step, steps, busy)
    dets = [(d["boxes"].numpy(), d["labels"].numpy() - 1, d["scores"].numpy()) for d in out]
    return dict(times=times, busy_times=busy_times, detections=_detections_json(dets))


def worker_minissd(batch, steps, weights_path, busy):
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
    times, busy_times, out = _time(lambda: predict(model, images, batch_size=batch), steps, busy)
    dets = [(d.boxes, d.labels, d.scores) for d in out]
    return dict(times=times, busy_times=busy_times, detections=_detections_json(dets))


def run_worker(name, batch, steps, threads, weights_path, busy):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--batch", str(batch),
           "--steps", str(steps), "--threads", str(threads), "--weights", weights_path,
           "--busy", str(busy)]
    return bench_common.run_worker(name, cmd, bench_common.thread_env(threads))


class Busy:
    """``k`` processes that each keep one core busy (a pure-Python loop) while resumed, for the
    length of a ``with`` block; ``pause`` stops them (``SIGSTOP``), ``resume`` lets them run."""

    #: After resuming, wait this long before timing (the loops are running by then).
    SETTLE_S = 0.5

    def __init__(self, k):
        self.k, self.procs, self.running = k, [], False

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(self.k)]
        self.running = True
        self.pause()
        return self

    def pause(self):
        if self.running:
            for p in self.procs:
                p.send_signal(signal.SIGSTOP)
            for p in self.procs:  # returns once the child has stopped
                os.waitpid(p.pid, os.WUNTRACED)
            self.running = False

    def resume(self):
        if not self.running and self.procs:
            for p in self.procs:
                p.send_signal(signal.SIGCONT)
            time.sleep(self.SETTLE_S)
        self.running = True

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


def measure(batch, steps, threads, weights_path, busy, rounds=1):
    """Both frameworks' workers, ``rounds`` of each, interleaved (torchvision, minissd, then
    minissd, torchvision, ...; each round's quiet ratio printed), pooled per framework."""
    runs = {"torchvision": [], "minissd": []}
    for round_ in range(rounds):
        for name in bench_common.round_order(("torchvision", "minissd"), round_):
            runs[name].append(run_worker(name, batch, steps, threads, weights_path, busy))
        if rounds > 1:
            ratio = (statistics.median(runs["minissd"][-1]["times"])
                     / statistics.median(runs["torchvision"][-1]["times"]))
            print(f"  round {round_ + 1} batch {batch}: minissd / torchvision {ratio:5.2f}x")
    return {name: pooled(r) for name, r in runs.items()}


def pooled(runs):
    """One framework's workers together: every quiet and busy step (in worker order, so that the
    pairs of quiet and busy steps stay side by side), the largest peak RSS, the last detections
    (all workers compute the same ones)."""
    return dict(times=[t for r in runs for t in r["times"]],
                busy_times=[t for r in runs for t in r["busy_times"]],
                rss_peak=max(r["rss_peak"] for r in runs), detections=runs[-1]["detections"])


def pair_ratios(quiet, busy):
    """Each busy step's time over that of the quiet step next to it (``_time``'s order)."""
    return [b / q for q, b in zip(quiet, busy, strict=True)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", default="1,8", help="batch sizes, comma-separated (default 1,8)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per framework and batch")
    p.add_argument("--rounds", type=int, default=2,
                   help="workers per framework and batch, interleaved (default 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--busy", type=int, default=0,
                   help="also measure while this many processes keep a core busy each")
    p.add_argument("--worker", choices=("minissd", "torchvision"), help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        batch = int(args.batch)
        if args.worker == "minissd":
            result = worker_minissd(batch, args.steps, args.weights, args.busy)
        else:
            result = worker_torchvision(batch, args.steps, args.threads, args.weights,
                                        args.busy)
        result["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(result))
        return 0

    batches = [int(b) for b in args.batch.split(",")]
    print(f"SSD300 inference (images in, detections out), float32, 300x300, {NUM_CLASSES} "
          f"classes, {args.threads} threads, median [min, max] of {args.rounds} round(s) of "
          f"{args.steps} steps after 2 warm-up per framework; load average before: "
          f"{os.getloadavg()[0]:.2f}")
    if args.busy:
        print(f"  (quiet and busy steps alternate in each worker, {args.busy} busy process(es) "
              f"paused between busy steps)")
    slowdowns = []
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = os.path.join(tmp, "torchvision_ssd300.npz")
        for batch in batches:
            r = measure(batch, args.steps, args.threads, weights_path, args.busy, args.rounds)
            medians = {}
            busy_label = f"{args.busy} busy"
            conditions = [("quiet", "times")] + ([(busy_label, "busy_times")] if args.busy else [])
            for label, key in conditions:
                for name in ("torchvision", "minissd"):
                    med, lo, hi = _stats(r[name][key])
                    medians[label, name] = med
                    print(f"  {label:>7} batch {batch}: {name:>11} {1000 * med:8.0f} ms "
                          f"[{1000 * lo:.0f}, {1000 * hi:.0f}]" + (
                              f"  peak RSS {r[name]['rss_peak'] / 1024:5.0f} MiB"
                              if label == "quiet" else ""))
                ratio = medians[label, "minissd"] / medians[label, "torchvision"]
                print(f"  {label:>7} batch {batch}: minissd / torchvision {ratio:5.2f}x")
            matched, ours, ref = same_detections(r["minissd"]["detections"],
                                                 r["torchvision"]["detections"])
            print(f"  batch {batch}: detections matched {matched} of {ours} (torchvision {ref})")
            if args.busy:
                slowdowns.append((batch, {
                    name: (medians[busy_label, name] / medians["quiet", name],
                           statistics.median(pair_ratios(r[name]["times"],
                                                         r[name]["busy_times"])))
                    for name in ("torchvision", "minissd")}))
    for batch, slow in slowdowns:
        print(f"slowdown with {args.busy} busy, batch {batch} (busy median / quiet median; "
              f"median of the pairs): torchvision {slow['torchvision'][0]:.2f}x "
              f"({slow['torchvision'][1]:.2f}x), minissd {slow['minissd'][0]:.2f}x "
              f"({slow['minissd'][1]:.2f}x)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
