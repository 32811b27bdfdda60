"""What the benchmark scripts share: each framework's side runs in a fresh process (so that its
memory and threads cannot hide in the other's) with the same thread count, and reports one line
of JSON."""

from __future__ import annotations

import json
import os
import subprocess

#: The thread counts a worker process gets: OpenMP (torch), OpenBLAS (NumPy), MKL, Numba, and
#: minissd's batch threads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS", "MINISSD_NUM_THREADS")


def thread_env(threads: int) -> dict:
    """This process's environment with every thread count set to ``threads``."""
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARIABLES})
    return env


def run_worker(name: str, cmd: list, env: dict) -> dict:
    """Run ``cmd`` (a benchmark script in its worker mode) and return the JSON of its last line
    of output; a failed worker raises with its error output."""
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{name} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def round_order(names: tuple, round_: int) -> tuple:
    """The order the workers of round ``round_`` (from 0) run in: ``names``, then reversed, and
    so on (a, b, b, a, ...): this machine's speed drifts by 20-40% within minutes, so the
    frameworks are measured interleaved, and a linear drift favours neither."""
    return names if round_ % 2 == 0 else names[::-1]
