"""DataLoader: seeded order and augmentation, workers, endless iteration, errors."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

from minissd.data import VOCDataset
from minissd.data.loader import DataLoader, DataLoaderError, sample_rng
from minissd.data.synthetic import make_synthetic_voc
from minissd.data.transforms import SSDAugmentation, SSDTransformEval


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    names = make_synthetic_voc(root, 10, 2, image_size=48, seed=0)
    return VOCDataset(root, "train", class_names=names)


def same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.indices, y.indices)
        assert x.epoch == y.epoch
        for p, q in zip(x.boxes + x.labels, y.boxes + y.labels):
            np.testing.assert_array_equal(p, q)


def test_batch_format(shapes):
    loader = DataLoader(shapes, 4, transform=SSDTransformEval(32))
    batches = list(loader)
    assert len(loader) == len(batches) == 3  # 4 + 4 + 2
    first = batches[0]
    assert first.images.shape == (4, 3, 32, 32) and first.images.dtype == np.float32
    assert len(first.boxes) == len(first.labels) == 4
    assert all(b.dtype == np.float32 and b.shape[1] == 4 for b in first.boxes)
    assert all(lab.dtype == np.int64 for lab in first.labels)
    assert first.indices.tolist() == [0, 1, 2, 3] and first.epoch == 0
    assert batches[-1].images.shape[0] == 2
    assert len(DataLoader(shapes, 4, drop_last=True)) == 2


def test_shuffle_is_seeded_and_changes_per_epoch(shapes):
    a = DataLoader(shapes, 3, shuffle=True, seed=5)
    b = DataLoader(shapes, 3, shuffle=True, seed=5)
    c = DataLoader(shapes, 3, shuffle=True, seed=6)
    assert a.order(0).tolist() == b.order(0).tolist()
    assert a.order(0).tolist() != a.order(1).tolist()
    assert a.order(0).tolist() != c.order(0).tolist()
    assert sorted(a.order(3).tolist()) == list(range(10))
    assert DataLoader(shapes, 3).order(2).tolist() == list(range(10))


def test_same_seed_same_augmented_batches(shapes):
    aug = SSDAugmentation(32)
    first = list(DataLoader(shapes, 4, shuffle=True, seed=1, transform=aug))
    again = list(DataLoader(shapes, 4, shuffle=True, seed=1, transform=aug).epoch(0))
    same_batches(first, again)
    other = list(DataLoader(shapes, 4, shuffle=True, seed=2, transform=aug))
    assert not np.array_equal(first[0].images, other[0].images)
    # sample i of epoch e is augmented by sample_rng(seed, e, i), whoever loads it
    index = int(first[0].indices[0])
    sample = shapes[index]
    direct = aug(sample.image, sample.boxes, sample.labels, sample_rng(1, 0, index))
    np.testing.assert_array_equal(direct[0], first[0].images[0])


def test_forever_never_stops_regression_ssd_pytorch_214(shapes):
    loader = DataLoader(
        shapes, 4, shuffle=True, seed=0, drop_last=True, transform=SSDTransformEval(16)
    )
    stream = loader.forever()
    batches = [next(stream) for _ in range(3 * len(loader) + 1)]
    assert [b.epoch for b in batches] == [0, 0, 1, 1, 2, 2, 3]
    for epoch in range(3):
        seen = np.concatenate([b.indices for b in batches if b.epoch == epoch])
        assert seen.tolist() == loader.order(epoch)[:8].tolist()
    # plain iteration counts epochs too
    counted = DataLoader(shapes, 5, shuffle=True, seed=0, transform=SSDTransformEval(16))
    assert [next(iter(counted)).epoch for _ in range(3)] == [0, 1, 2]


def test_workers_give_the_same_batches(shapes):
    aug = SSDAugmentation(32)
    serial = list(DataLoader(shapes, 3, shuffle=True, seed=4, transform=aug))
    with DataLoader(shapes, 3, shuffle=True, seed=4, num_workers=2, transform=aug) as loader:
        parallel = list(loader)
        stream = loader.forever(start_epoch=0)
        endless = [next(stream) for _ in range(len(loader) + 1)]
        stream.close()
    same_batches(serial, parallel)
    same_batches(serial, endless[: len(serial)])
    assert endless[-1].epoch == 1


def test_errors_name_the_file_serial_and_in_workers(tmp_path):
    names = make_synthetic_voc(tmp_path, 4, 1, image_size=32, seed=0)
    dataset = VOCDataset(tmp_path, "train", class_names=names)
    path = dataset.annotation(2).image_path
    path.write_bytes(path.read_bytes()[:200])
    for workers in (0, 2):
        with DataLoader(dataset, 2, num_workers=workers, transform=SSDTransformEval(16)) as loader:
            batches = iter(loader)
            next(batches)
            with pytest.raises(
                DataLoaderError, match=r"epoch 0, dataset indices \[2, 3\].*000003\.jpg"
            ):
                next(batches)


def test_different_shapes_without_transform_is_a_clear_error(tmp_path):
    from voc_folders import VOCFolder, object_xml

    f = VOCFolder(tmp_path)
    f.add("a", [object_xml("cat", (1, 1, 5, 5))], size=(20, 10))
    f.add("b", [object_xml("cat", (1, 1, 5, 5))], size=(10, 20)).split("train", ["a", "b"])
    dataset = VOCDataset(f.root, "train", class_names=("cat",))
    with pytest.raises(DataLoaderError, match="different shapes.*pass a transform"):
        next(iter(DataLoader(dataset, 2)))
    assert next(iter(DataLoader(dataset, 1))).images.shape == (1, 10, 20, 3)


def test_argument_errors(shapes):
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(shapes, 0)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(shapes, 2, num_workers=-1)
    with pytest.raises(ValueError, match="no batches"):
        DataLoader(shapes, 11, drop_last=True)
    from_generator = DataLoader(shapes, 2, shuffle=True, seed=np.random.default_rng(3))
    again = DataLoader(shapes, 2, shuffle=True, seed=np.random.default_rng(3))
    assert from_generator.seed == again.seed
    assert isinstance(DataLoader(shapes, 2, seed=None).seed, int)


WORKER_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from minissd.data.loader import DataLoader, DataLoaderError

    class Probe:
        '''Reports each worker's OMP_NUM_THREADS; index 5 kills its worker.'''
        def __len__(self):
            return 8
        def __getitem__(self, i):
            if i == 5 and os.environ.get("PROBE_KILL"):
                os._exit(3)
            threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
            return np.full((2, 2), threads, np.float32), np.zeros((0, 4)), np.zeros(0)

    if __name__ == "__main__":
        with DataLoader(Probe(), 2, num_workers=2) as loader:
            print("threads", sorted({int(b.images.max()) for b in loader}), flush=True)
        os.environ["PROBE_KILL"] = "1"
        with DataLoader(Probe(), 2, num_workers=2) as loader:
            try:
                list(loader)
            except DataLoaderError as exc:
                print("died:", exc, flush=True)
        print("main OMP", os.environ.get("OMP_NUM_THREADS"), flush=True)
    """
)


def test_workers_start_limit_threads_and_survive_a_dead_worker(tmp_path):
    """Regression (ChainerCV #386): a loader with workers must yield, not hang."""
    script = tmp_path / "probe.py"
    script.write_text(WORKER_SCRIPT)
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "7"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "threads [1]"
    assert lines[1].startswith("died:") and "worker process died" in lines[1]
    assert lines[2] == "main OMP 7"  # the parent's environment is left as it was


def damage_middle(path):
    """Write garbage holding a stray marker over the middle of a JPEG's compressed data."""
    data = bytearray(path.read_bytes())
    middle = len(data) * 3 // 4
    data[middle : middle + 8] = b"\x12\x34\xff\xc0\x56\x78\x9a\xbc"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_data_is_one_line_naming_the_file_regression_issue_11(tmp_path, workers):
    """A JPEG damaged after construction failed inside a worker with a 20-line traceback."""
    names = make_synthetic_voc(tmp_path, 4, 1, image_size=64, seed=0)
    dataset = VOCDataset(tmp_path, "train", class_names=names)
    damage_middle(dataset.annotation(3).image_path)
    with DataLoader(dataset, 2, num_workers=workers, transform=SSDTransformEval(16)) as loader:
        batches = iter(loader)
        next(batches)
        with pytest.raises(DataLoaderError) as info:
            next(batches)
    error = info.value
    assert error.__cause__ is None and error.__suppress_context__
    assert "\n" not in str(error)
    assert str(error).startswith("loading epoch 0, dataset indices [2, 3] failed: /")
    assert "000004.jpg: cannot decode image (invalid marker 0xffc0" in str(error)
    shown = "".join(traceback.format_exception(error))
    assert shown.count("Traceback") == 1 and "_RemoteTraceback" not in shown


class Buggy:
    """A dataset whose item 1 has a bug (not bad data)."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return np.zeros((2, 2), np.float32), np.zeros((0, 4)), np.zeros(0), 1 // (1 - i)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bug_keeps_its_traceback(workers):
    with DataLoader(Buggy(), 2, num_workers=workers) as loader:
        with pytest.raises(DataLoaderError, match=r"failed: ZeroDivisionError: int") as info:
            next(iter(loader))
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    if workers:  # the worker's own traceback comes along
        assert "in __getitem__" in str(info.value.__cause__.__cause__)


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from minissd.data import DataLoader, VOCDataset
    from minissd.data.synthetic import make_synthetic_voc
    from minissd.data.transforms import SSDTransformEval

    if __name__ == "__main__":
        names = make_synthetic_voc(sys.argv[1], 4, 1, image_size=32, seed=0)
        dataset = VOCDataset(sys.argv[1], "train", class_names=names)
        loader = DataLoader(dataset, 2, num_workers=1, transform=SSDTransformEval(16))
        next(iter(loader))
        print("ready", flush=True)
        time.sleep(60)
    """
)


def children_of(pid):
    """Pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def running(pid):
    """True while ``pid`` exists and is not a zombie (a dead child nobody reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_9_of_the_trainer_leaves_no_orphans_regression_issue_11(tmp_path):
    """Each kill -9 of a trainer left its loader worker and Python's resource tracker
    alive forever (~63 MB). The worker now exits with its parent, and the tracker then
    sees its pipe close and exits too."""
    script = tmp_path / "trainer.py"
    script.write_text(ORPHAN_SCRIPT)
    trainer = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the tracker reports the semaphores it cleans up
        text=True,
    )
    try:
        assert trainer.stdout.readline().strip() == "ready"
        children = children_of(trainer.pid)
        assert len(children) == 2  # the worker and the resource tracker
    finally:
        trainer.kill()
        trainer.wait()
    deadline = time.monotonic() + 5
    while any(running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in children if running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "orphans survived the trainer"


def test_unpicklable_transform_with_workers_is_named(shapes):
    """A lambda transform failed deep inside multiprocessing with a PicklingError."""
    loader = DataLoader(shapes, 2, num_workers=1, transform=lambda im, b, lab, rng: (im, b, lab))
    with pytest.raises(ValueError, match=r"num_workers=1: the transform is sent to each worker"):
        next(iter(loader))
    assert loader._executor is None  # no process was started
    serial = DataLoader(shapes, 2, transform=lambda im, b, lab, rng: (im, b, lab))
    assert len(next(iter(serial)).indices) == 2
