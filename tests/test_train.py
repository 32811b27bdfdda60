"""The trainer end to end on a tiny built-in dataset: resume reproduces an uninterrupted run,
a diverging run stops with a clear message and keeps its last good checkpoint, the CLI works."""

import csv

import numpy as np
import pytest

from minissd.data import SYNTHETIC_CLASSES
from minissd.nn import load_npz
from minissd.train import NonFiniteLossError, TrainConfig, load_checkpoint, train


def config(root, out, **kw):
    base = dict(data_root=str(root), train_split="train", class_names=SYNTHETIC_CLASSES,
                model="small", iterations=4, batch_size=4, lr=1e-3, milestones=(3,),
                checkpoint_every=2, out_dir=str(out), progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_continues_to_the_same_numbers(tiny_data, tmp_path):
    # 4 iterations over 6 images at batch 4: crosses an epoch boundary (1 batch per epoch)
    full, _ = train(config(tiny_data, tmp_path / "full"))
    train(config(tiny_data, tmp_path / "split", iterations=3))
    _, _, it, _ = load_checkpoint(tmp_path / "split" / "checkpoint.npz")
    assert it == 3
    resumed, rows = train(config(tiny_data, tmp_path / "split", iterations=4), resume=True)
    assert [r["iteration"] for r in rows] == [3]
    for (name, p), (_, q) in zip(full.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    with open(tmp_path / "split" / "metrics.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]
    for name in ("loss.png", "weights.npz", "config.json"):
        assert (tmp_path / "full" / name).exists()


def test_checkpoint_is_plain_npz_without_pickle(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path, iterations=2))
    arrays = load_npz(tmp_path / "checkpoint.npz")  # allow_pickle=False inside
    assert int(arrays["meta/iteration"]) == 2 and int(arrays["meta/seed"]) == 1
    assert any(k.startswith("optim/velocity.") for k in arrays)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_divergence_stops_with_a_clear_message_and_keeps_last_checkpoint(tiny_data, tmp_path):
    # the lr jumps by 1e14 at iteration 2: the weights blow up there
    cfg = config(tiny_data, tmp_path, iterations=6, checkpoint_every=1, milestones=(2,),
                 gamma=1e14)
    with pytest.raises(NonFiniteLossError, match=r"iteration \d+: .*last good checkpoint"):
        train(cfg)
    arrays = load_npz(tmp_path / "checkpoint.npz")
    assert int(arrays["meta/iteration"]) >= 2
    assert all(np.isfinite(v).all() for k, v in arrays.items() if k.startswith("model/"))


def test_resume_without_checkpoint_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        train(config(tiny_data, tmp_path), resume=True)


def test_cli_train_eval_detect(tiny_data, tmp_path, capsys):
    from minissd.cli import main

    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--split", "train", "--classes",
                 ",".join(SYNTHETIC_CLASSES), "--model", "small", "--iterations", "2",
                 "--batch-size", "2", "--out", str(out), "--milestones", ""]) == 0
    assert main(["eval", "--run", str(out), "--split", "test"]) == 0
    assert "mAP" in capsys.readouterr().out
    assert (out / "eval-test" / "ap.json").exists() and (out / "eval-test" / "pr.png").exists()
    image = next((tiny_data / "JPEGImages").iterdir())
    assert main(["detect", str(image), "--run", str(out), "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "detections.json").exists()
    assert main(["eval", "--run", str(tmp_path / "nowhere")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_unknown_augmentation_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="augmentation: must be one of"):
        train(config(tiny_data, tmp_path, augmentation="heavy"))


def test_cli_choices_are_the_augmentation_recipes():
    from minissd.cli import _parser
    from minissd.data.transforms import AUGMENTATIONS

    for command in ("train", "demo"):
        sub = _parser()._subparsers._group_actions[0].choices[command]
        action = next(a for a in sub._actions if a.dest == "augmentation")
        assert set(action.choices) == set(AUGMENTATIONS)


def test_cli_small_model_options_reach_the_model(tiny_data, tmp_path, capsys):
    """--image-size and --first-box build the small model at another input size (the run's
    config remembers them, so eval rebuilds the same model); they are refused for SSD300."""
    from minissd.cli import main
    from minissd.inference import load_run

    out = tmp_path / "run192"
    assert main(["train", "--data", str(tiny_data), "--split", "train", "--classes",
                 ",".join(SYNTHETIC_CLASSES), "--model", "small", "--image-size", "192",
                 "--first-box", "5,10", "--augmentation", "no-expand", "--iterations", "1",
                 "--batch-size", "2", "--out", str(out), "--milestones", ""]) == 0
    model, cfg, _ = load_run(out)
    assert model.config.image_size == 192 and cfg.augmentation == "no-expand"
    assert model.config.priors.min_sizes[0] == pytest.approx(0.05 * 192)
    assert main(["train", "--data", str(tiny_data), "--model", "ssd300", "--image-size", "192",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "--model small only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tiny_data), "--model", "small", "--first-box", "5",
              "--out", str(tmp_path / "bad")])
    assert "argument --first-box: expected MIN,MAX" in capsys.readouterr().err


def test_cli_demo_runs_end_to_end_at_toy_size(tmp_path, capsys):
    """The demo's whole path (data, training with its recipe, AP table, pictures) at toy size;
    its real numbers are measured and quoted in the README."""
    from minissd.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--train-images", "8", "--test-images", "4",
                 "--iterations", "3", "--batch-size", "4", "--pictures", "2"]) == 0
    printed = capsys.readouterr().out
    assert "demo finished" in printed and "mAP@0.5" in printed
    for name in ("ap.txt", "ap.json", "pr.png", "train/loss.png", "train/weights.npz"):
        assert (out / name).exists(), name
    assert len(list((out / "detections").glob("*.png"))) == 2
    assert '"augmentation": "flip"' in (out / "train" / "config.json").read_text()
