"""conv2d and max_pool2d, forward + backward: minissd (NumPy) against torch.nn.functional (CPU).

The layers are VGG16 as used in SSD300 (batch 8, float32; ``--quick``: a few of them at batch 2).
For every layer both frameworks run the same inputs: forward, then backward with a fixed random
upstream gradient, with input, weight and bias all requiring gradients. Runs alternate between
the two frameworks (so that load from other processes hits both alike); the table shows the
median over the repeats after one warm-up each, and ratio = minissd median / torch median.

Threads: torch gets as many threads as NumPy's BLAS uses (read from OpenBLAS when it can be).

Peak memory: every layer also runs in a fresh subprocess per framework (Linux only): after a
warm-up run, the peak resident set size during one forward + backward (VmHWM, reset just before)
minus the resident size before it, with the inputs and the upstream gradient already allocated:
the memory the op itself needs (output, gradients, workspaces), measured alike for both.

    python benchmarks/bench_conv.py            # full table (a few minutes on 2 cores)
    python benchmarks/bench_conv.py --quick    # smoke test, seconds

OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE from the environment; a forced core type can
make NumPy's GEMMs much slower, so the header prints them. To measure without them, unset them
for the one command: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/...``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# name, C_in, C_out, H (= W), kernel, padding, dilation: VGG16 in SSD300, stride 1 throughout
CONVS = [
    ("conv1_1", 3, 64, 300, 3, 1, 1),
    ("conv1_2", 64, 64, 300, 3, 1, 1),
    ("conv2_1", 64, 128, 150, 3, 1, 1),
    ("conv2_2", 128, 128, 150, 3, 1, 1),
    ("conv3_1", 128, 256, 75, 3, 1, 1),
    ("conv3_2", 256, 256, 75, 3, 1, 1),
    ("conv4_1", 256, 512, 38, 3, 1, 1),
    ("conv4_2", 512, 512, 38, 3, 1, 1),
    ("conv5_x", 512, 512, 19, 3, 1, 1),
    ("fc6", 512, 1024, 19, 3, 6, 6),
    ("fc7", 1024, 1024, 19, 1, 0, 1),
]
# name, C, H (= W), kernel, stride, padding, ceil_mode
POOLS = [
    ("pool1", 64, 300, 2, 2, 0, False),
    ("pool2", 128, 150, 2, 2, 0, False),
    ("pool3", 256, 75, 2, 2, 0, True),
    ("pool4", 512, 38, 2, 2, 0, False),
    ("pool5", 512, 19, 3, 1, 1, False),
]
QUICK = {"conv3_2", "conv5_x", "fc6", "fc7", "pool3", "pool5"}


def blas_info():
    """(core name, threads) of the OpenBLAS that NumPy loaded, or (None, None)."""
    from minissd.kernels.batch_threads import blas_controls, openblas_function

    corename, controls = openblas_function("get_corename"), blas_controls()
    if corename is None or controls is None:
        return None, None
    corename.restype = ctypes.c_char_p
    return corename().decode(), int(controls[0]())


def make_case(kind, spec, batch, seed=0):
    """Inputs (NumPy, float32) of one layer: a dict of arrays plus the op's keyword arguments."""
    rng = np.random.default_rng(seed)
    if kind == "conv":
        _, c, o, hw, k, p, d = spec
        ho = hw + 2 * p - d * (k - 1)
        arrays = dict(x=rng.standard_normal((batch, c, hw, hw), dtype=np.float32),
                      w=rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.05,
                      b=rng.standard_normal(o, dtype=np.float32),
                      g=rng.standard_normal((batch, o, ho, ho), dtype=np.float32))
        return arrays, dict(stride=1, padding=p, dilation=d)
    _, c, hw, k, s, p, ceil = spec
    from minissd.autograd.functional import pool_output_size

    ho = pool_output_size(hw, k, s, p, ceil)
    arrays = dict(x=rng.standard_normal((batch, c, hw, hw), dtype=np.float32),
                  g=rng.standard_normal((batch, c, ho, ho), dtype=np.float32))
    return arrays, dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil)


def minissd_step(kind, arrays, kwargs):
    """A closure running forward + backward once in minissd."""
    from minissd.autograd import Tensor
    from minissd.autograd import functional as F

    def step():
        x = Tensor(arrays["x"], requires_grad=True)
        if kind == "conv":
            w = Tensor(arrays["w"], requires_grad=True)
            b = Tensor(arrays["b"], requires_grad=True)
            y = F.conv2d(x, w, b, **kwargs)
        else:
            y = F.max_pool2d(x, **kwargs)
        y.backward(arrays["g"])

    return step


def torch_step(kind, arrays, kwargs):
    import torch

    x = torch.from_numpy(arrays["x"]).requires_grad_()
    g = torch.from_numpy(arrays["g"])
    if kind == "conv":
        w = torch.from_numpy(arrays["w"]).requires_grad_()
        b = torch.from_numpy(arrays["b"]).requires_grad_()

    def step():
        x.grad = None
        if kind == "conv":
            w.grad = b.grad = None
            y = torch.nn.functional.conv2d(x, w, b, **kwargs)
        else:
            y = torch.nn.functional.max_pool2d(x, **kwargs)
        y.backward(g)

    return step


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def measure_memory(framework, kind, name, batch, threads):
    """In this (fresh) process: peak RSS growth of one forward + backward, in bytes.

    The step runs once first, so that one-time costs (BLAS buffers, thread pools, lazy imports)
    are not counted; then the kernel's high-water mark is reset (``/proc/self/clear_refs``) and
    the second run's peak is compared with the resident size just before it."""
    spec = next(s for s in (CONVS if kind == "conv" else POOLS) if s[0] == name)
    arrays, kwargs = make_case(kind, spec, batch)
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        step = torch_step(kind, arrays, kwargs)
    else:
        from minissd.autograd import functional as F

        F.CHECK_FINITE = False
        step = minissd_step(kind, arrays, kwargs)
    step()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    step()
    return (_status_kib("VmHWM") - before) * 1024


def memory_in_subprocess(framework, kind, name, batch, threads):
    """``measure_memory`` in a fresh interpreter. Every allocation above 64 KiB is its own mmap
    there (glibc ``MALLOC_MMAP_THRESHOLD_``), so freed buffers go back to the system at once and
    the peak is not hidden by memory that malloc kept from the warm-up run."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory", framework, kind, name,
           "--batch", str(batch), "--_threads", str(threads)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


class OtherLoad:
    """The share of all CPUs that *other* processes used during a block (Linux /proc/stat minus
    this process's own CPU time): the benchmark shares the machine, and a busy neighbour slows
    the multi-threaded GEMMs of both frameworks, OpenBLAS's more than torch's."""

    def _busy(self):
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:9]]
        return sum(v) - v[3] - v[4]  # all minus idle and iowait, in clock ticks

    def _own(self):
        t = os.times()
        return (t.user + t.system) * os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self.start = (self._busy(), self._own(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = self.start
        ticks = (self._busy() - busy) - (self._own() - own)
        capacity = (time.perf_counter() - wall) * os.sysconf("SC_CLK_TCK") * os.cpu_count()
        self.share = max(0.0, ticks / capacity)


def time_pair(steps, repeats, min_seconds=0.0):
    """Median seconds of each step, the steps alternating repeat by repeat (after a warm-up).
    Fast layers get more repeats (up to 25), so that each step runs ``min_seconds`` in all: their
    medians are the noisiest."""
    times = [[] for _ in steps]
    warm = []
    for step in steps:
        start = time.perf_counter()
        step()
        warm.append(time.perf_counter() - start)
    repeats = max(repeats, min(25, math.ceil(min_seconds / max(min(warm), 1e-9))))
    for _ in range(repeats):
        for t, step in zip(times, steps):
            start = time.perf_counter()
            step()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], repeats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="a few layers at batch 2, 2 repeats, no memory column (seconds)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 8, quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5)")
    ap.add_argument("--min-seconds", type=float, default=None,
                    help="more repeats (up to 25) for fast layers, to time each step this long "
                         "in all (default 2; quick 0)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    ap.add_argument("--_memory", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    batch = args.batch or (2 if args.quick else 8)

    if args._memory:
        framework, kind, name = args._memory
        peak = measure_memory(framework, kind, name, batch, args._threads)
        print(json.dumps({"peak_bytes": peak}))
        return 0

    import torch

    from minissd.autograd import functional as F

    F.CHECK_FINITE = False  # the finiteness scan is an input check, not part of the op
    repeats = args.repeats or (2 if args.quick else 5)
    min_seconds = args.min_seconds if args.min_seconds is not None else (0 if args.quick else 2)
    memory = not (args.quick or args.no_memory)
    corename, threads = blas_info()
    threads = threads or os.cpu_count()
    torch.set_num_threads(threads)
    env = {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                     "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"numpy {np.__version__}, OpenBLAS core {corename or 'unknown'}, {threads} BLAS "
          f"threads; torch {torch.__version__} with torch.set_num_threads({threads}); "
          f"{os.cpu_count()} CPUs")
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(f"float32, batch {batch}, forward + backward (grads of input, weight, bias), median "
          f"of n alternating repeats after a warm-up (n >= {repeats}, and enough for "
          f"{min_seconds:g} s per step, at most 25); ratio = minissd / torch")
    print("others: share of all CPUs used by other processes while the layer was timed")
    if memory:
        print("peak MB: peak RSS growth (VmHWM - VmRSS before) of one forward + backward, "
              "after a warm-up run, in a fresh subprocess per framework and layer; inputs and "
              "upstream gradient allocated beforehand; MALLOC_MMAP_THRESHOLD_=65536")
    wanted = set(args.layers.split(",")) if args.layers else (QUICK if args.quick else None)

    header = (f"{'layer':8s} {'input shape':>20s} {'op':>18s} {'minissd ms':>11s} "
              f"{'torch ms':>9s} {'ratio':>6s} {'n':>3s} {'others':>7s}")
    if memory:
        header += f" {'minissd MB':>11s} {'torch MB':>9s}"
    print(header)
    print("-" * len(header))
    totals = {"conv": [0.0, 0.0], "pool": [0.0, 0.0]}
    for kind, specs in (("conv", CONVS), ("pool", POOLS)):
        for spec in specs:
            name = spec[0]
            if wanted is not None and name not in wanted:
                continue
            arrays, kwargs = make_case(kind, spec, batch)
            steps = [minissd_step(kind, arrays, kwargs), torch_step(kind, arrays, kwargs)]
            with OtherLoad() as load:
                (ours, theirs), n_timed = time_pair(steps, repeats, min_seconds)
            totals[kind][0] += ours
            totals[kind][1] += theirs
            shape = "x".join(map(str, arrays["x"].shape))
            if kind == "conv":
                o, k, p, d = spec[2], spec[4], spec[5], spec[6]
                op = f"{k}x{k} ->{o} p{p}" + (f" d{d}" if d > 1 else "")
            else:
                k, s, p, ceil = spec[3:]
                op = f"max {k}x{k}/{s} p{p}" + (" ceil" if ceil else "")
            line = (f"{name:8s} {shape:>20s} {op:>18s} {ours * 1e3:11.1f} {theirs * 1e3:9.1f} "
                    f"{ours / theirs:6.2f} {n_timed:3d} {load.share:7.0%}")
            if memory:
                mem = [memory_in_subprocess(fw, kind, name, batch, threads) / 2**20
                       for fw in ("minissd", "torch")]
                line += f" {mem[0]:11.0f} {mem[1]:9.0f}"
            print(line, flush=True)
    for kind, (ours, theirs) in totals.items():
        if theirs:
            print(f"{'all ' + kind + ' layers':47s} {ours * 1e3:11.1f} {theirs * 1e3:9.1f} "
                  f"{ours / theirs:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
