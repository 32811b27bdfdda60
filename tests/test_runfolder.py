"""Run folders are safe: one writer at a time, a kill leaves a usable run and no debris,
resume refuses changed settings, files have ordinary modes, paths work from anywhere."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from minissd.cli import main
from minissd.data import SYNTHETIC_CLASSES
from minissd.fileio import FILE_MODE
from minissd.runfolder import RunFolder, RunFolderError
from minissd.train import TrainConfig, load_checkpoint, read_checkpoint_config, train


def config(root, out, **kw):
    base = dict(data_root=str(root), train_split="train", class_names=SYNTHETIC_CLASSES,
                model="small", iterations=2, batch_size=2, milestones=(), checkpoint_every=1,
                out_dir=str(out), progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def _wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_second_writer_is_refused_and_a_kill_leaves_a_usable_run(tiny_data, tmp_path,
                                                                   capsys):
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        from minissd.train import TrainConfig, train
        train(TrainConfig(data_root={str(tiny_data)!r}, train_split="train",
                          class_names={SYNTHETIC_CLASSES!r}, model="small", iterations=10**6,
                          batch_size=2, milestones=(), checkpoint_every=1,
                          out_dir={str(out)!r}, progress=False))
    """)
    first = subprocess.Popen([sys.executable, "-c", script])
    try:
        _wait_for(lambda: (out / "checkpoint.npz").exists(), 120, "the first checkpoint")
        with pytest.raises(RunFolderError, match="in use by another training run"):
            train(config(tiny_data, out), resume=True)
        assert main(["train", "--resume", "--out", str(out), "--iterations", "10"]) == 2
        assert "in use by another training run" in capsys.readouterr().err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the killed run: config.json from the start, eval uses its last checkpoint
    assert not (out / "weights.npz").exists()
    saved = json.loads((out / "config.json").read_text())
    assert saved["data_root"] == str(tiny_data.resolve()) and saved["iterations"] == 10**6
    assert main(["eval", "--run", str(out), "--split", "test"]) == 0
    assert "using the last checkpoint (iteration" in capsys.readouterr().out
    # the kernel released the lock with the process: the run can be resumed
    _, _, done, _ = load_checkpoint(out / "checkpoint.npz")
    assert main(["train", "--resume", "--out", str(out), "--iterations", str(done + 1)]) == 0
    assert (out / "weights.npz").exists()


def test_a_kill_during_a_write_leaves_nothing_once_the_folder_is_used(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_data, out))
    debris = [out / ".checkpoint.npz.k2j4.tmp", out / ".weights.npz.abcd.tmp"]
    for p in debris:
        p.write_bytes(b"half a file")
    train(config(tiny_data, out, iterations=3), resume=True)
    assert not any(p.exists() for p in debris)
    assert not list(out.glob(".*.tmp"))


def test_resume_refuses_changed_settings(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(config(tiny_data, out))
    with pytest.raises(RunFolderError, match=r"batch_size: 2 -> 4; lr: 0.001 -> 0.01"):
        train(config(tiny_data, out, iterations=3, lr=0.01, batch_size=4), resume=True)
    assert main(["train", "--resume", "--out", str(out), "--iterations", "3", "--optimizer",
                 "adam"]) == 2
    assert "optimizer: 'sgd' -> 'adam'" in capsys.readouterr().err
    # how long, where and how often to checkpoint may change
    assert main(["train", "--resume", "--out", str(out), "--iterations", "3", "--workers",
                 "0", "--checkpoint-every", "5"]) == 0
    assert read_checkpoint_config(out / "checkpoint.npz").lr == 0.001


def test_resume_refuses_a_checkpoint_of_another_run(tiny_data, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    train(config(tiny_data, one))
    train(config(tiny_data, two, lr=0.01))
    (two / "checkpoint.npz").write_bytes((one / "checkpoint.npz").read_bytes())
    before = (two / "config.json").read_text()
    assert main(["train", "--resume", "--out", str(two), "--iterations", "3"]) == 2
    assert "does not belong to the run in" in capsys.readouterr().err
    assert (two / "config.json").read_text() == before


def test_a_new_run_into_a_used_folder_is_refused_unless_overwrite(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_data, out))
    with pytest.raises(RunFolderError, match="already holds a training run"):
        train(config(tiny_data, out, lr=0.01))
    train(config(tiny_data, out, lr=0.01), overwrite=True)
    assert read_checkpoint_config(out / "checkpoint.npz").lr == 0.01


def test_files_get_ordinary_modes(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_data, out))
    for name in ("weights.npz", "checkpoint.npz", "config.json", "metrics.csv"):
        assert (out / name).stat().st_mode & 0o777 == FILE_MODE, name
    assert FILE_MODE == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_relative_data_root_works_from_another_folder(tiny_data, tmp_path, monkeypatch,
                                                        capsys):
    monkeypatch.chdir(tiny_data.parent)
    out = tmp_path / "run"
    train(config(tiny_data.name, out))
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--run", str(out), "--split", "test"]) == 0
    assert "mAP" in capsys.readouterr().out


def test_latest_weights_prefers_the_newer_file(tmp_path):
    folder = RunFolder(tmp_path)
    with pytest.raises(RunFolderError, match="no weights.npz or checkpoint.npz"):
        folder.latest_weights()
    np.savez(folder.weights, a=np.zeros(1))
    np.savez(folder.checkpoint, a=np.zeros(1))
    os.utime(folder.weights, ns=(1, 1))
    assert folder.latest_weights()[0] == folder.checkpoint  # a resumed run killed midway
    os.utime(folder.weights, ns=(2 * 10**18, 2 * 10**18))
    assert folder.latest_weights()[0] == folder.weights
