"""The one table of layouts (``minissd.pytorch.layouts``), without torch: for each layout, every
layer's state-dict keys and hooked module against paths written out by hand from torchvision's
``ssd.py`` / ``vgg.py`` and ssd.pytorch's ``ssd.py``."""

import pytest

from minissd.pytorch import layouts
from minissd.pytorch.reference_model import narrow_ssd300
from minissd.ssd.model import MODELS, SSD, ssd_small

#: VGG16 layer -> index in ``[conv, ReLU, ..., pool]`` (ssd.pytorch's ``vgg``, torchvision's
#: ``vgg16().features``); SSD's pool5, fc6 and fc7 as in ssd.pytorch's list.
VGG_INDEX = {"conv1_1": 0, "conv1_2": 2, "pool1": 4, "conv2_1": 5, "conv2_2": 7, "pool2": 9,
             "conv3_1": 10, "conv3_2": 12, "conv3_3": 14, "pool3": 16, "conv4_1": 17,
             "conv4_2": 19, "conv4_3": 21, "pool4": 23, "conv5_1": 24, "conv5_2": 26,
             "conv5_3": 28, "pool5": 30, "fc6": 31, "fc7": 33}


@pytest.fixture(scope="module")
def model():
    return SSD(narrow_ssd300(21))


def _outputs(model, layout):
    return {row.tap: (row.output, row.read) for row in layouts.layers(model, layout)}


def test_ssd_pytorch_hooks(model, ssd300_taps):
    expected = {n: (f"vgg.{i + (0 if n.startswith('pool') else 1)}", "out")
                for n, i in VGG_INDEX.items()}
    expected["l2norm"] = ("L2Norm", "out")
    expected.update({f"conv{8 + k // 2}_{1 + k % 2}": (f"extras.{k}", "relu") for k in range(8)})
    expected.update({f"{h}{i}": (f"{h}.{i}", "out") for i in range(6) for h in ("loc", "conf")})
    assert list(_outputs(model, "ssd.pytorch")) == ssd300_taps
    assert _outputs(model, "ssd.pytorch") == expected


def test_torchvision_ssd300_hooks(model, ssd300_taps):
    """``backbone.features`` = vgg16's features up to conv4_3's ReLU (22); ``backbone.extra.0`` =
    [pool4, conv5_1, ReLU, conv5_2, ReLU, conv5_3, ReLU, fc block [pool5, fc6, ReLU, fc7, ReLU]];
    ``backbone.extra.{1..4}`` = [conv, ReLU, conv, ReLU]."""
    expected = {n: (f"backbone.features.{i + (0 if n.startswith('pool') else 1)}", "out")
                for n, i in VGG_INDEX.items() if i < 23}
    extra0 = {"pool4": "0", "conv5_1": "2", "conv5_2": "4", "conv5_3": "6", "pool5": "7.0",
              "fc6": "7.2", "fc7": "7.4"}
    expected.update({n: (f"backbone.extra.0.{i}", "out") for n, i in extra0.items()})
    expected["l2norm"] = ("backbone", "source0")
    for i in range(4):
        expected[f"conv{8 + i}_1"] = (f"backbone.extra.{i + 1}.1", "out")
        expected[f"conv{8 + i}_2"] = (f"backbone.extra.{i + 1}.3", "out")
    for i in range(6):
        expected[f"loc{i}"] = (f"head.regression_head.module_list.{i}", "out")
        expected[f"conf{i}"] = (f"head.classification_head.module_list.{i}", "out")
    assert list(_outputs(model, "torchvision-ssd300")) == ssd300_taps
    assert _outputs(model, "torchvision-ssd300") == expected


def test_every_parameter_of_a_whole_model_has_one_key(model):
    for layout in layouts.MODEL_LAYOUTS:
        keys = layouts.parameter_keys(model, layout)
        assert sorted(ours for ours, _ in keys) == sorted(model.state_dict()), layout
        assert len({theirs for _, theirs in keys}) == len(keys), layout


def test_backbone_layouts(model):
    vgg16 = layouts.layers(model, "torchvision-vgg16")
    convs = [n for n, i in VGG_INDEX.items() if n.startswith("conv")]
    assert [row.tap for row in vgg16 if row.params] == convs + ["fc6", "fc7"]
    for row in vgg16:
        if row.tap in convs:
            assert row.params[0] == (f"base.{row.tap}.weight",
                                     f"features.{VGG_INDEX[row.tap]}.weight")
    fc = [row for row in vgg16 if row.decimate]
    assert [(row.tap, row.params[0][1], row.output) for row in fc] == [
        ("fc6", "classifier.0.weight", None), ("fc7", "classifier.3.weight", None)]
    assert "pool5" not in [row.tap for row in vgg16]  # vgg16's last pool is not SSD's pool5
    reduced = dict(layouts.parameter_keys(model, "ssd.pytorch-vgg"))
    assert reduced == {f"base.{n}.{p}": f"{i}.{p}" for n, i in VGG_INDEX.items()
                       if not n.startswith("pool") for p in ("weight", "bias")}


def test_torchvision_needs_ssds_vgg_base():
    with pytest.raises(layouts.ConversionError, match="needs a VGG base with pool4"):
        layouts.layers(SSD(ssd_small(3)), "torchvision-ssd300")
    with pytest.raises(ValueError, match="layout must be one of"):
        layouts.layers(SSD(ssd_small(3)), "caffe")


def test_configs_are_minissds_models_and_the_whole_model_layouts():
    assert set(layouts.CONFIGS) == set(MODELS) | set(layouts.MODEL_LAYOUTS)
    assert layouts.CONFIGS["ssd.pytorch"](5).priors == layouts.SSD_PYTORCH_PRIORS
