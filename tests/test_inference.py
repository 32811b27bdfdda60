"""Running a trained model: ``minissd/inference.py``."""

import numpy as np
import pytest

from minissd.inference import load_weights_file, predict
from minissd.nn import save_npz
from minissd.ssd.model import SSD, ssd_small


@pytest.fixture(scope="module")
def model():
    return SSD(ssd_small(3))


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (40, 50, 3), dtype=np.uint8)


@pytest.mark.parametrize("training", [True, False])
def test_predict_leaves_the_model_in_the_callers_mode(model, training):
    model.train(training)
    dets = predict(model, [_image()])
    assert len(dets) == 1
    assert all(m.training is training for _, m in model.named_modules())


def test_predict_restores_each_modules_own_mode_even_after_an_error(model):
    model.train()
    bn = next(m for _, m in model.named_modules() if type(m).__name__ == "BatchNorm2d")
    bn.eval()  # a frozen batch norm inside a training model
    predict(model, [_image()])
    assert model.training and not bn.training
    with pytest.raises(ValueError):
        predict(model, [np.zeros((4, 4), np.uint8)])  # not an (H, W, 3) image
    assert model.training and not bn.training
    assert sum(not m.training for _, m in model.named_modules()) == 1


def test_predict_runs_in_eval_mode(model):
    model.train()
    twice = [predict(model, [_image(1)])[0] for _ in range(2)]
    # eval mode: batch norm uses its running statistics, so repeated calls agree
    np.testing.assert_array_equal(twice[0].scores, twice[1].scores)


def test_load_weights_file_builds_the_named_model(model, tmp_path):
    path = tmp_path / "w.npz"
    save_npz(path, model.state_dict())
    loaded, names = load_weights_file(path, "small", ("a", "b"))
    assert names == ("a", "b") and loaded.config.num_classes == 3
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)
    with pytest.raises(ValueError, match=r"w.npz: .*\(model small, 4 classes\)"):
        load_weights_file(path, "small", ("a", "b", "c", "d"))
