"""SSD300 training step, minissd vs the same network in torch.nn, on the CPU.

    python benchmarks/bench_ssd.py [--batch 8] [--steps 3] [--rounds 2] [--threads N] [--quick]

What is timed: one training step of SSD300 (VOC, 21 classes, 8732 default boxes) in float32 on
a batch of 300x300 inputs: forward through the whole network, a loss, backward to every
parameter (no optimiser update). The loss is a fixed random linear functional of the outputs,
``sum(loc * G_loc) + sum(conf * G_conf)`` with ``G`` drawn once from a seeded generator (the same
in both frameworks), so backward starts from a dense random gradient as it would with the
MultiBox loss, while the cost measured is the network's alone: the MultiBox loss (matching,
hard-negative mining) is a different code path with no torch counterpart here. The torch model
is ``minissd.pytorch.reference_model.build_ssd_pytorch`` (ssd.pytorch's layout) carrying exactly
minissd's weights, so both compute the same function.

Each framework runs in its own fresh subprocess (``--worker``), so that the peak memory of one
cannot hide in the other's: peak resident set size from ``resource.getrusage(RUSAGE_SELF)
.ru_maxrss`` (Linux: KiB). tracemalloc is not used because torch's CPU allocator bypasses it,
so it would under-count torch. Besides the peak, the RSS after building the model (weights,
libraries) is reported and "working memory" = peak minus that: activations saved for backward,
gradients and workspace. Both workers get the same thread count (``torch.set_num_threads`` and
the OpenMP / OpenBLAS / MKL / Numba thread variables). Each worker times ``--steps`` steps after
one warm-up step (which also JIT-compiles minissd's Numba kernels), and the workers run in
``--rounds`` rounds, in the order torch, minissd, then minissd, torch, and so on (this machine's
speed drifts by 20-40% within minutes, so the two frameworks are measured interleaved rather than
one after the other): the time is the median over all of a framework's timed steps, the peak the
largest of its workers'. Each round's ratio is printed too.

``--keep-freed-memory`` gives both workers the allocator setting that ``minissd train`` uses
(``minissd.allocator``: glibc reuses freed big blocks instead of mapping fresh pages); without
it, both run with glibc's defaults, as any library user would.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import bench_common
import numpy as np

SEED = 0


def _rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _current_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _data(batch):
    from minissd.ssd.model import ssd300

    config = ssd300(21)
    rng = np.random.default_rng(SEED)
    x = rng.uniform(-120, 130, (batch, 3, 300, 300)).astype(np.float32)
    p = config.priors.num_priors
    g_loc = rng.standard_normal((batch, p, 4)).astype(np.float32)
    g_conf = rng.standard_normal((batch, p, config.num_classes)).astype(np.float32)
    return config, x, g_loc, g_conf


def worker_minissd(batch, steps):
    from minissd.autograd import Tensor
    from minissd.ssd.model import SSD

    config, x, g_loc, g_conf = _data(batch)
    model = SSD(config, seed=SEED)
    model.train()
    rss_model = _current_rss_kib()
    times = []
    for step in range(steps + 1):
        model.zero_grad()
        start = time.perf_counter()
        loc, conf = model(x)
        loss = (loc * Tensor(g_loc)).sum() + (conf * Tensor(g_conf)).sum()
        loss.backward()
        elapsed = time.perf_counter() - start
        if step:  # step 0 warms up
            times.append(elapsed)
    grad_norm = float(np.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum())
                                  for p in model.parameters())))
    return dict(times=times, rss_model=rss_model, loss=float(loss.data), grad_norm=grad_norm)


def worker_torch(batch, steps, threads):
    import torch

    from minissd.pytorch.layouts import parameter_keys
    from minissd.pytorch.reference_model import build_ssd_pytorch
    from minissd.ssd.model import SSD

    torch.set_num_threads(threads)
    config, x, g_loc, g_conf = _data(batch)
    model = build_ssd_pytorch(config)
    ours = SSD(config, seed=SEED)  # the same weights as the minissd worker
    weights = ours.state_dict()
    model.load_state_dict({theirs: torch.from_numpy(weights[name])
                           for name, theirs in parameter_keys(ours, "ssd.pytorch")})
    del ours, weights
    model.train()
    x, g_loc, g_conf = (torch.from_numpy(a) for a in (x, g_loc, g_conf))
    rss_model = _current_rss_kib()
    times = []
    for step in range(steps + 1):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loc, conf = model(x)
        loss = (loc * g_loc).sum() + (conf * g_conf).sum()
        loss.backward()
        elapsed = time.perf_counter() - start
        if step:
            times.append(elapsed)
    grad_norm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())))
    return dict(times=times, rss_model=rss_model, loss=float(loss.detach()), grad_norm=grad_norm)


def run_worker(name, batch, steps, threads, keep_freed=False):
    cmd = [sys.executable, __file__, "--worker", name, "--batch", str(batch), "--steps",
           str(steps), "--threads", str(threads)] + (["--keep-freed-memory"] if keep_freed else [])
    return bench_common.run_worker(name, cmd, bench_common.thread_env(threads))


def round_ratio(ours, theirs):
    """minissd's median step time over torch's, within one round."""
    return statistics.median(ours["times"]) / statistics.median(theirs["times"])


def pooled(runs):
    """One framework's workers together: every timed step, the largest peak RSS (with that
    worker's RSS after model build), the loss and gradient norm of the last (all equal: the
    same seeded step)."""
    top = max(runs, key=lambda r: r["rss_peak"])
    return dict(times=[t for r in runs for t in r["times"]], rss_peak=top["rss_peak"],
                rss_model=top["rss_model"], loss=runs[-1]["loss"],
                grad_norm=runs[-1]["grad_norm"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per worker")
    p.add_argument("--rounds", type=int, default=2,
                   help="workers per framework, interleaved (torch, minissd, minissd, torch, ...)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true", help="batch 2, 1 timed step (smoke test)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="both workers keep freed memory (minissd.allocator), as minissd train")
    p.add_argument("--worker", choices=("minissd", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.rounds = 2, 1, 1
    if args.worker:
        if args.keep_freed_memory:
            from minissd.allocator import keep_freed_memory

            keep_freed_memory()
        if args.worker == "minissd":
            result = worker_minissd(args.batch, args.steps)
        else:
            result = worker_torch(args.batch, args.steps, args.threads)
        result["rss_peak"] = _rss_kib()
        print(json.dumps(result))
        return 0

    print(f"SSD300 training step (forward + linear loss + backward), float32, batch "
          f"{args.batch}, 300x300, {args.threads} threads, {args.rounds} round(s) of "
          f"{args.steps} timed steps after 1 warm-up per framework; allocator: "
          f"{'keeps freed memory' if args.keep_freed_memory else 'glibc defaults'}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    results = {"torch": [], "minissd": []}
    for round_ in range(args.rounds):
        for name in bench_common.round_order(("torch", "minissd"), round_):
            r = run_worker(name, args.batch, args.steps, args.threads, args.keep_freed_memory)
            results[name].append(r)
            steps = ", ".join(f"{t:.2f}" for t in r["times"])
            print(f"  round {round_ + 1} {name:>7}: steps {steps} s; peak RSS "
                  f"{r['rss_peak'] / 1024:5.0f} MiB")
        print(f"  round {round_ + 1} minissd / torch: "
              f"{round_ratio(results['minissd'][-1], results['torch'][-1]):5.2f}x")
    results = {name: pooled(runs) for name, runs in results.items()}
    for name, r in results.items():
        med = statistics.median(r["times"])
        working = (r["rss_peak"] - r["rss_model"]) / 1024
        print(f"{name:>8}: median {med:7.2f} s/step  ({len(r['times'])} steps, "
              f"{min(r['times']):.2f}-{max(r['times']):.2f}); peak RSS "
              f"{r['rss_peak'] / 1024:7.0f} MiB, after model build {r['rss_model'] / 1024:6.0f} "
              f"MiB, working {working:7.0f} MiB; loss {r['loss']:.6g}, |grad| "
              f"{r['grad_norm']:.6g}")
    t, m = results["torch"], results["minissd"]
    time_ratio = statistics.median(m["times"]) / statistics.median(t["times"])
    peak_ratio = m["rss_peak"] / t["rss_peak"]
    work_ratio = (m["rss_peak"] - m["rss_model"]) / max(t["rss_peak"] - t["rss_model"], 1)
    agree = abs(m["loss"] - t["loss"]) / max(abs(t["loss"]), 1e-30)
    print(f"time ratio   minissd / torch: {time_ratio:5.2f}x  (target <= 1.0x, issue 15)")
    print(f"peak RSS     minissd / torch: {peak_ratio:5.2f}x  (target <= 1.0x, issue 15)")
    print(f"working mem  minissd / torch: {work_ratio:5.2f}x")
    print(f"same function: relative loss difference {agree:.1e}, |grad| "
          f"{m['grad_norm']:.6g} vs {t['grad_norm']:.6g}; load average after: "
          f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
