"""Running a trained model: ``minissd/inference.py``."""

import numpy as np
import pytest

from minissd.inference import predict
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
