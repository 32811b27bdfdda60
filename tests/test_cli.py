"""The ``minissd`` command as a user meets it: every mistake a user can make is one line that
names the flag, file or cause (never a traceback), every option has help with its default,
and ``detect``/``eval`` take a run folder or a weights file."""

import argparse
import errno
import json
import re
from pathlib import Path

import numpy as np
import pytest

from minissd.backend import gpu_available
from minissd.cli import _parser, main
from minissd.data import SYNTHETIC_CLASSES

CLASSES = ",".join(SYNTHETIC_CLASSES)


def train_args(data, out, *extra):
    return ["train", "--data", str(data), "--split", "train", "--classes", CLASSES, "--model",
            "small", "--iterations", "1", "--batch-size", "2", "--milestones", "",
            "--out", str(out), *extra]


def one_error_line(capsys, command="train"):
    """The command's stderr, which must be one error line (after any progress bar)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.startswith(f"minissd {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """A finished one-iteration run of the small model."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(train_args(tiny_data, out)) == 0
    return out


# ----------------------------------------------------------------- bad training flags

@pytest.mark.parametrize("flags, named", [
    (["--checkpoint-every", "0"], "--checkpoint-every: must be a whole number >= 1, got 0"),
    (["--lr", "-1"], "--lr: must be a number > 0, got -1.0"),
    (["--lr", "nan"], "--lr: must be a number > 0, got nan"),
    (["--weight-decay", "-1"], "--weight-decay: must be a number >= 0"),
    (["--iterations", "0"], "--iterations: must be a whole number >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size: must be a whole number >= 1"),
    (["--workers", "-1"], "--workers: must be a whole number >= 0"),
    (["--warmup-iters", "-5"], "--warmup-iters: must be a whole number >= 0"),
    (["--milestones", "500,100"], "--milestones: must be increasing iterations > 0"),
    (["--milestones", "0"], "--milestones: must be increasing iterations > 0"),
    (["--first-box=-5,10"], "--first-box: small model: caffe_sizes: the first map's boxes"),
    (["--first-box", "50,10"], "first_min_ratio=50.0, first_max_ratio=10.0"),
    (["--first-box", "150,200"], "first_max_ratio <= min_ratio (20)"),
    (["--image-size", "100"], "image_size must be a multiple of 32"),
])
def test_bad_training_flag_is_one_line_naming_it(tiny_data, tmp_path, capsys, flags, named):
    assert main(train_args(tiny_data, tmp_path / "out", *flags)) == 2
    assert named in one_error_line(capsys)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("flags, named", [
    (["--milestones", "abc"], "argument --milestones: expected comma-separated iterations"),
    (["--first-box", "5"], "argument --first-box: expected MIN,MAX in percent"),
    (["--classes", "a,,b"], "argument --classes: expected distinct comma-separated"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
])
def test_unparsable_flag_is_argparse_one_line(tiny_data, tmp_path, capsys, flags, named):
    with pytest.raises(SystemExit) as exit_:
        main(train_args(tiny_data, tmp_path / "out", *flags))
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err


@pytest.mark.skipif(gpu_available(), reason="a GPU is usable here")
def test_gpu_without_cupy_or_device_is_one_line(tiny_data, tmp_path, capsys):
    assert main(train_args(tiny_data, tmp_path / "out", "--device", "gpu")) == 2
    assert "--device: gpu was asked for but" in one_error_line(capsys)
    image = next((tiny_data / "JPEGImages").iterdir())
    assert main(["detect", str(image), "--weights", "w.npz", "--device", "gpu"]) == 2
    assert "--device gpu: " in one_error_line(capsys, "detect")


def test_missing_data_folder_is_named(tmp_path, capsys):
    assert main(train_args(tmp_path / "nowhere", tmp_path / "out")) == 2
    line = one_error_line(capsys)
    assert str(tmp_path / "nowhere") in line and "no such folder" in line
    assert "Annotations" not in line


def test_data_required_unless_resume(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "--data is required" in one_error_line(capsys)


# ----------------------------------------------------------------- output folder

def test_output_that_cannot_be_created_is_one_line(tiny_data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(train_args(tiny_data, tmp_path / "file")) == 2
    assert "exists and is not a folder" in one_error_line(capsys)
    assert main(train_args(tiny_data, tmp_path / "file" / "run")) == 2
    assert "cannot create the output folder" in one_error_line(capsys)


def test_full_disk_is_one_line_and_leaves_no_temporary(tiny_data, tmp_path, capsys,
                                                       monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    assert main(train_args(tiny_data, tmp_path / "out")) == 2
    assert one_error_line(capsys).endswith("error: No space left on device")
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_error_after_the_progress_bar_starts_is_on_its_own_line(tiny_data, tmp_path, capsys):
    # lr 1e9: the first update makes the weights non-finite
    assert main(train_args(tiny_data, tmp_path / "out", "--lr", "1e9", "--iterations",
                           "3")) == 2
    err = capsys.readouterr().err
    assert "\nminissd train: error: iteration " in err and "Traceback" not in err


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, tmp_path,
                                                                    capsys):
    import minissd.cli as cli

    def broken(a, argv):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(cli.HANDLERS, "make-data", broken)
    assert main(["make-data", str(tmp_path)]) == 2
    line = one_error_line(capsys, "make-data")
    assert "ZeroDivisionError" in line and "--debug" in line
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "make-data", str(tmp_path)])
    monkeypatch.setenv("MINISSD_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["make-data", str(tmp_path)])


# ----------------------------------------------------------------- weights

def test_init_weights_that_match_nothing_are_refused(tiny_data, tmp_path, capsys):
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    assert main(train_args(tiny_data, tmp_path / "out", "--init-weights",
                           str(tmp_path / "other.npz"))) == 2
    assert "none of its 1 tensors is a tensor of the SSD-small model" in one_error_line(capsys)


def test_init_weights_say_how_much_was_loaded(tiny_data, tmp_path, capsys, run):
    from minissd.nn import load_npz

    part = {k: v for k, v in load_npz(run / "weights.npz").items() if k.startswith("base.")}
    part["unused.weight"] = np.zeros(2)
    np.savez(tmp_path / "base.npz", **part)
    assert main(train_args(tiny_data, tmp_path / "out", "--init-weights",
                           str(tmp_path / "base.npz"))) == 0
    assert re.search(rf"init weights: {len(part) - 1} of the model's \d+ tensors from .*"
                     rf"\(1 of the file's tensors unused\)", capsys.readouterr().out)


def test_zip_without_arrays_as_weights_is_one_line(tmp_path, capsys, run, tiny_data):
    import zipfile

    with zipfile.ZipFile(tmp_path / "w.npz", "w") as z:
        z.writestr("readme.txt", "not weights")
    image = next((tiny_data / "JPEGImages").iterdir())
    assert main(["detect", str(image), "--weights", str(tmp_path / "w.npz"), "--out",
                 str(tmp_path / "d")]) == 2
    assert "is a zip file but not an .npz archive" in one_error_line(capsys, "detect")


def test_weights_of_another_architecture_are_one_short_line(tmp_path, capsys, run,
                                                           tiny_data):
    image = next((tiny_data / "JPEGImages").iterdir())
    assert main(["detect", str(image), "--weights", str(run / "weights.npz"), "--model",
                 "ssd300", "--out", str(tmp_path / "d")]) == 2
    line = one_error_line(capsys, "detect")
    assert "does not fit this model" in line and "missing keys" in line
    assert len(line) < 500
    assert main(["detect", str(image), "--weights", str(run / "weights.npz"), "--model",
                 "small", "--out", str(tmp_path / "d")]) == 2  # 20 VOC classes, not 5
    assert "'heads.conf0.weight' has shape" in one_error_line(capsys, "detect")


def test_detect_and_eval_take_a_weights_file(tmp_path, capsys, run, tiny_data):
    image = next((tiny_data / "JPEGImages").iterdir())
    common = ["--weights", str(run / "weights.npz"), "--model", "small", "--classes", CLASSES]
    assert main(["detect", str(image), *common, "--out", str(tmp_path / "d")]) == 0
    records = json.loads((tmp_path / "d" / "detections.json").read_text())
    assert records[0]["image"] == str(image)
    assert main(["eval", *common, "--split", "test", "--out", str(tmp_path / "e")]) == 2
    assert "--data is required with --weights" in one_error_line(capsys, "eval")
    assert main(["eval", *common, "--data", str(tiny_data), "--split", "test", "--out",
                 str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "ap.json").exists()
    assert main(["detect", str(image), "--run", str(run), *common]) == 2
    assert "either --run" in one_error_line(capsys, "detect")


def test_detect_gives_each_image_its_own_picture(tmp_path, run, tiny_data):
    from PIL import Image

    first, second = sorted((tiny_data / "JPEGImages").iterdir())[:2]
    for folder, source in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        Image.open(source).save(tmp_path / folder / "img.jpg")
    a, b = tmp_path / "a" / "img.jpg", tmp_path / "b" / "img.jpg"
    assert main(["detect", str(a), str(b), str(a), "--run", str(run), "--out",
                 str(tmp_path / "d")]) == 0
    records = json.loads((tmp_path / "d" / "detections.json").read_text())
    assert [r["image"] for r in records] == [str(a), str(b)]  # the repeat is done once
    pictures = [r["picture"] for r in records]
    assert len(set(pictures)) == 2 and all(Path(p).exists() for p in pictures)


def test_detect_threshold_outside_0_1_is_refused(tmp_path, capsys, run):
    with pytest.raises(SystemExit):
        main(["detect", "x.jpg", "--run", str(run), "--threshold", "2"])
    assert "argument --threshold: expected a number in [0, 1], got '2'" in \
        capsys.readouterr().err


def test_unreadable_image_is_one_line(tmp_path, capsys, run):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    assert main(["detect", str(tmp_path / "bad.jpg"), "--run", str(run), "--out",
                 str(tmp_path / "d")]) == 2
    assert str(tmp_path / "bad.jpg") in one_error_line(capsys, "detect")


# ----------------------------------------------------------------- warnings

def test_data_warning_is_one_line_saying_where_the_report_is(tiny_data, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    xml = sorted((data / "Annotations").iterdir())[0]
    text = xml.read_text()
    xmin = re.search(r"<xmin>(\d+)</xmin>", text).group(1)
    xml.write_text(re.sub(r"<xmax>\d+</xmax>", f"<xmax>{xmin}</xmax>", text, count=1))
    assert main(train_args(data, tmp_path / "out")) == 0
    err = capsys.readouterr().err
    warning = [ln for ln in err.splitlines() if ln.startswith("minissd: warning: ")]
    assert len(warning) == 1 and "VOCDataWarning" not in err
    report = tmp_path / "out" / "data-report.json"
    assert str(report) in warning[0] and "zero_size 1" in warning[0]
    assert json.loads(report.read_text())["counts"]["zero_size"] == 1


# ----------------------------------------------------------------- help

def _subparsers():
    return _parser()._subparsers._group_actions[0].choices


def test_every_option_has_help_with_its_default():
    for name, sub in _subparsers().items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default not in (None, False, [],
                                                                argparse.SUPPRESS):
                assert "default" in action.help, f"{name} {action.option_strings}"


@pytest.mark.parametrize("command, option", [("convert", "--layout"),
                                             ("download", "--archives"),
                                             ("train", "--checkpoint-every")])
def test_subcommand_help_shows_its_options(capsys, command, option):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert option in out and "args" not in out.split("\n")[0]


def test_top_level_help_has_no_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "--debug" in out


def test_model_choices_are_the_one_registry():
    from minissd.cli import _parser
    from minissd.ssd.model import MODELS

    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    choices = {name: next(a.choices for a in sub._actions if a.dest == "model")
               for name, sub in commands.items() if name in ("train", "eval", "detect")}
    assert list(choices["train"]) == list(MODELS)
    assert set(MODELS) <= set(choices["eval"]) and choices["eval"] == choices["detect"]
