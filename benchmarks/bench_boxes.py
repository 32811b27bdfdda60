"""Side-by-side timings of the box hot paths: IoU and NMS.

    python benchmarks/bench_boxes.py [--repeats 15] [--threads N]

Each case times, in the same run and on the same data:
* minissd (``minissd.boxes.iou`` / ``nms``: the Numba kernels, inputs validated),
* the vectorised NumPy peer (IoU: ``iou_reference``, float64 broadcasting; NMS: a greedy
  loop whose inner step is one vectorised NumPy IoU row, the classic py-faster-rcnn way;
  the pure-Python ``nms_reference`` is far too slow at these sizes and is not timed),
* ``torchvision.ops.box_iou`` / ``nms`` on CPU, when torchvision is importable,
and prints median times and ratios. Torch gets ``torch.set_num_threads`` equal to Numba's
thread count, for fairness. Also measured, each in a fresh process: the first-call cost
(Numba JIT compile with an empty cache) and the cached cost (a new process loading the
compiled kernels from the cache).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from minissd import boxes as B
from minissd import priors as P

IMAGE_SIDE = 1000.0  # pixels: the canvas the random boxes live on
BOXES_PER_CLUSTER = 50  # ~ detections around one object
CLUSTER_SIZE = (20.0, 200.0)  # object width/height range, pixels
NMS_THRESHOLD = 0.5


def median_seconds(repeats, fn, *args):
    """Median wall time of ``fn(*args)`` over ``repeats`` calls, after one warm-up call."""
    fn(*args)  # warm up (and compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def random_boxes(n, rng):
    """(n, 4) float32 corner boxes, uniformly placed."""
    xy = rng.uniform(0, IMAGE_SIDE, (n, 2))
    wh = rng.uniform(*CLUSTER_SIZE, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def clustered_boxes(n, rng):
    """(n, 4) float32 boxes jittered around n / 50 objects, and (n,) random scores."""
    num_objects = max(1, n // BOXES_PER_CLUSTER)
    centres = rng.uniform(0, IMAGE_SIDE, (num_objects, 2))
    sizes = rng.uniform(*CLUSTER_SIZE, (num_objects, 2))
    which = rng.integers(0, num_objects, n)
    centre = centres[which] + rng.normal(0, 0.1, (n, 2)) * sizes[which]
    size = sizes[which] * rng.uniform(0.7, 1.3, (n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32)


def nms_numpy(boxes, scores, threshold):
    """Greedy NMS, one vectorised IoU row per kept box (same rule as ``nms_reference``)."""
    boxes = boxes.astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        union = area[i] + area[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[iou <= threshold]
    return np.array(keep, dtype=np.int64)


def report(name, times):
    """Print one case: each contender's time and minissd's speed-up over it."""
    ours = times["minissd"]
    print(f"\n{name}")
    for who, t in times.items():
        ratio = "" if who == "minissd" else f"   minissd is {t / ours:6.1f}x faster"
        print(f"  {who:<22s} {t * 1e3:9.3f} ms{ratio}")


def jit_costs():
    """First call with an empty Numba cache, then a fresh process with the cache filled."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import numpy as np\n"
        "from minissd import boxes as B\n"
        "t1 = time.perf_counter()\n"
        "a = np.zeros((2, 4), np.float32)\n"
        "B.iou(a, a); t2 = time.perf_counter()\n"
        "B.nms(a, np.zeros(2, np.float32), 0.5); t3 = time.perf_counter()\n"
        "print(f'{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f}')\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            runs.append([float(v) for v in out])
    (imp0, iou0, nms0), (imp1, iou1, nms1) = runs
    print("\nJIT costs (fresh processes, float32 kernels)")
    print(f"  import minissd.boxes          {imp0 * 1e3:8.1f} ms (numba is not imported yet)")
    print(f"  first iou(), empty cache      {iou0 * 1e3:8.1f} ms (imports numba, compiles)")
    print(f"  first nms(), empty cache      {nms0 * 1e3:8.1f} ms (compiles)")
    print(f"  first iou(), cached           {iou1 * 1e3:8.1f} ms (imports numba, loads)")
    print(f"  first nms(), cached           {nms1 * 1e3:8.1f} ms (loads)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None,
                        help="Numba and torch threads (default: Numba's default)")
    args = parser.parse_args()

    import numba

    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    try:
        import torch
        import torchvision.ops
    except ImportError as exc:
        torch = None
        print(f"torchvision not importable ({exc}); timing minissd and NumPy only")
    else:
        torch.set_num_threads(threads)
        print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: "
              f"torch.set_num_threads({threads}) to match Numba's {threads} threads")
    print(f"numpy {np.__version__}, numba {numba.__version__}, {os.cpu_count()} CPUs, "
          f"median of {args.repeats} runs")

    rng = np.random.default_rng(0)
    priors = B.centre_to_corners(P.make_priors(P.SSD300)) * np.float32(IMAGE_SIDE)
    iou_cases = [
        ("IoU 2000 x 2000, float32", random_boxes(2000, rng), random_boxes(2000, rng)),
        ("IoU 50 x 8732 (SSD300 priors), float32", random_boxes(50, rng), priors),
    ]
    r = args.repeats
    for name, a, b in iou_cases:
        times = {"minissd": median_seconds(r, B.iou, a, b),
                 "numpy (float64 ref)": median_seconds(r, B.iou_reference, a, b)}
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            times["torchvision box_iou"] = median_seconds(r, torchvision.ops.box_iou, ta, tb)
            diff = np.abs(B.iou(a, b) - torchvision.ops.box_iou(ta, tb).numpy()).max()
            name += f"  (max |minissd - torchvision| = {diff:.1e})"
        report(name, times)

    for n in (5000, 20000):
        boxes, scores = clustered_boxes(n, rng)
        keep = B.nms(boxes, scores, NMS_THRESHOLD)
        assert np.array_equal(keep, nms_numpy(boxes, scores, NMS_THRESHOLD))
        name = f"NMS {n} clustered boxes, float32, IoU > {NMS_THRESHOLD} ({len(keep)} kept)"
        times = {"minissd": median_seconds(r, B.nms, boxes, scores, NMS_THRESHOLD),
                 "numpy (vectorised row)": median_seconds(max(3, r // 5), nms_numpy, boxes,
                                                          scores, NMS_THRESHOLD)}
        if torch is not None:
            tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
            same = np.array_equal(torchvision.ops.nms(tb, ts, NMS_THRESHOLD).numpy(), keep)
            times["torchvision nms"] = median_seconds(r, torchvision.ops.nms, tb, ts,
                                                      NMS_THRESHOLD)
            name += f"  (same indices as torchvision: {same})"
        report(name, times)

    jit_costs()


if __name__ == "__main__":
    main()
