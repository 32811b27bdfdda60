"""minissd.pytorch.convert without torch: layout detection, key maps against hand-written index
tables, the fc6/fc7 decimation of the ImageNet VGG16, input-normalisation folding, and clear
errors for bad state dicts. State dicts here are NumPy arrays built from the layouts' documented
keys."""

import sys

import numpy as np
import pytest

from minissd.autograd import functional as F
from minissd.nn import load_npz, save_npz
from minissd.pytorch import convert, layouts
from minissd.pytorch.reference_model import narrow_ssd300
from minissd.ssd.model import SSD, ssd300

#: VGG16 conv names and their index in ``[conv, ReLU, ..., pool]`` (ssd.pytorch's ``vgg`` and
#: torchvision's ``vgg16().features``), written out by hand.
VGG_INDEX = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
             "conv3_2": 12, "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
             "conv5_1": 24, "conv5_2": 26, "conv5_3": 28}
EXTRAS = [f"conv{i}_{j}" for i in range(8, 12) for j in (1, 2)]


def _shapes(config):
    return {k: v.shape for k, v in SSD(config).state_dict().items()}


def _fill(shapes, rng, dtype=np.float32):
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def ssd_pytorch_keys(num_sources=6):
    """minissd name -> ssd.pytorch key, from ssd.pytorch's index layout."""
    names = {f"base.{n}": f"vgg.{i}" for n, i in VGG_INDEX.items()}
    names.update({"base.fc6": "vgg.31", "base.fc7": "vgg.33"})
    names.update({f"extras.{n}": f"extras.{i}" for i, n in enumerate(EXTRAS)})
    for i in range(num_sources):
        names.update({f"heads.loc{i}": f"loc.{i}", f"heads.conf{i}": f"conf.{i}"})
    keys = {"l2norm.weight": "L2Norm.weight"}
    for ours, theirs in names.items():
        keys.update({f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"})
    return keys


def torchvision_ssd_keys():
    """minissd name -> torchvision ssd300_vgg16 key (backbone.features up to conv4_3,
    backbone.extra.0 = pool4, conv5_x at 1/3/5, fc block at 7 with fc6 at .1, fc7 at .3)."""
    names = {f"base.{n}": f"backbone.features.{i}" for n, i in VGG_INDEX.items() if i < 23}
    names.update({"base.conv5_1": "backbone.extra.0.1", "base.conv5_2": "backbone.extra.0.3",
                  "base.conv5_3": "backbone.extra.0.5", "base.fc6": "backbone.extra.0.7.1",
                  "base.fc7": "backbone.extra.0.7.3"})
    for i in range(4):
        names[f"extras.conv{8 + i}_1"] = f"backbone.extra.{i + 1}.0"
        names[f"extras.conv{8 + i}_2"] = f"backbone.extra.{i + 1}.2"
    for i in range(6):
        names[f"heads.loc{i}"] = f"head.regression_head.module_list.{i}"
        names[f"heads.conf{i}"] = f"head.classification_head.module_list.{i}"
    keys = {"l2norm.weight": "backbone.scale_weight"}
    for ours, theirs in names.items():
        keys.update({f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"})
    return keys


@pytest.fixture(scope="module")
def narrow_state():
    """A synthetic ssd.pytorch state dict of the narrow SSD300 (NumPy arrays)."""
    config = narrow_ssd300(21)
    shapes = _shapes(config)
    rng = np.random.default_rng(0)
    state = {theirs: rng.standard_normal(shapes[ours]).astype(np.float32)
             for ours, theirs in ssd_pytorch_keys().items()}
    return config, state


def test_layout_of_state_dict():
    assert convert.layout_of_state_dict({"backbone.features.0.weight": 0}) == "torchvision-ssd300"
    assert convert.layout_of_state_dict({"features.0.weight": 0, "classifier.0.weight": 0}) == \
        "torchvision-vgg16"
    assert convert.layout_of_state_dict({"vgg.0.weight": 0, "L2Norm.weight": 0}) == "ssd.pytorch"
    assert convert.layout_of_state_dict({"0.weight": 0, "31.bias": 0}) == "ssd.pytorch-vgg"
    with pytest.raises(convert.ConversionError, match="vgg16_bn"):
        convert.layout_of_state_dict({"features.0.weight": 0, "features.1.running_mean": 0,
                                      "classifier.0.weight": 0})
    with pytest.raises(convert.ConversionError, match="cannot tell the layout.*'fc.weight'"):
        convert.layout_of_state_dict({"fc.weight": 0})


def test_ssd_pytorch_keys_map_to_minissd(narrow_state):
    config, state = narrow_state
    conversion = convert.convert_state_dict(state, config=config)
    assert conversion.layout == "ssd.pytorch" and not conversion.initialised
    assert set(conversion.state) == set(ssd_pytorch_keys())
    for ours, theirs in ssd_pytorch_keys().items():
        np.testing.assert_array_equal(conversion.state[ours], state[theirs])


def test_torchvision_ssd300_keys_map_to_minissd():
    config = layouts.torchvision_ssd300_config(91)
    shapes = _shapes(config)
    rng = np.random.default_rng(1)
    keys = torchvision_ssd_keys()
    state = {theirs: rng.standard_normal(shapes[ours]).astype(np.float32)
             for ours, theirs in keys.items()}
    conversion = convert.convert_state_dict(state)
    assert conversion.layout == "torchvision-ssd300"
    assert conversion.config == config and config.num_classes == 91
    assert config.mean == pytest.approx((122.99925, 116.9991, 103.9992))
    for ours, theirs in keys.items():
        np.testing.assert_array_equal(conversion.state[ours], state[theirs])


def test_missing_key_is_named(narrow_state):
    config, state = narrow_state
    state = dict(state)
    del state["vgg.12.weight"], state["conf.3.bias"]
    with pytest.raises(convert.ConversionError,
                       match=r"missing keys \['vgg.12.weight', 'conf.3.bias'\]"):
        convert.convert_state_dict(state, config=config)


def test_wrong_shape_is_named(narrow_state):
    config, state = narrow_state
    state = dict(state)
    state["extras.3.weight"] = state["extras.3.weight"][:, :-1]
    with pytest.raises(convert.ConversionError) as info:
        convert.convert_state_dict(state, config=config)
    assert ("'extras.conv9_2.weight' <- 'extras.3.weight': (32, 15, 3, 3) in the source, "
            "(32, 16, 3, 3) in minissd SSD300/8") in str(info.value)
    assert "1 tensors" in str(info.value)


def test_unexpected_key_is_named_unless_non_strict(narrow_state):
    config, state = narrow_state
    state = dict(state, **{"vgg.40.weight": np.zeros(3, np.float32)})
    with pytest.raises(convert.ConversionError, match=r"unexpected keys \['vgg.40.weight'\]"):
        convert.convert_state_dict(state, config=config)
    conversion = convert.convert_state_dict(state, config=config, strict=False)
    assert conversion.ignored == ["vgg.40.weight"]


def test_wrong_class_count_is_caught(narrow_state):
    config, state = narrow_state
    state = dict(state)
    state["conf.0.weight"] = state["conf.0.weight"][:-1]  # 83 outputs for 4 boxes
    with pytest.raises(convert.ConversionError, match="'conf.0.weight' has 83 outputs"):
        convert.convert_state_dict(state)


def test_not_a_state_dict():
    with pytest.raises(convert.ConversionError, match="expected a state dict"):
        convert.convert_state_dict([1, 2])
    with pytest.raises(convert.ConversionError, match="'vgg.0.weight' is a str"):
        convert.as_numpy_state({"vgg.0.weight": "x"})
    with pytest.raises(ValueError, match="layout must be one of"):
        convert.convert_state_dict({"vgg.0.weight": np.zeros(1)}, layout="caffe")


@pytest.fixture(scope="module")
def vgg16_state():
    """A synthetic torchvision vgg16 (ImageNet classifier) state dict: float32, right shapes."""
    rng = np.random.default_rng(2)
    channels = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    state, c_in = {}, 3
    for index, c in zip(VGG_INDEX.values(), channels):
        state[f"features.{index}.weight"] = rng.standard_normal((c, c_in, 3, 3), np.float32)
        state[f"features.{index}.bias"] = rng.standard_normal(c, np.float32)
        c_in = c
    for key, shape in (("classifier.0", (4096, 25088)), ("classifier.3", (4096, 4096)),
                       ("classifier.6", (1000, 4096))):
        state[f"{key}.weight"] = rng.standard_normal(shape, np.float32) * 0.01
        state[f"{key}.bias"] = rng.standard_normal(shape[:1], np.float32)
    return state


def test_vgg16_imagenet_import(vgg16_state):
    state = vgg16_state
    conversion = convert.convert_state_dict(state, input_normalization=None, seed=3)
    assert conversion.layout == "torchvision-vgg16" and conversion.config == ssd300(21)
    out = conversion.state
    for name, index in VGG_INDEX.items():  # the 13 convs are copied
        np.testing.assert_array_equal(out[f"base.{name}.weight"],
                                      state[f"features.{index}.weight"])
        np.testing.assert_array_equal(out[f"base.{name}.bias"], state[f"features.{index}.bias"])
    assert conversion.ignored == ["classifier.6.bias", "classifier.6.weight"]
    # everything outside the base: exactly a fresh SSD(config, seed=3)
    fresh = SSD(ssd300(21), seed=3).state_dict()
    outside = [k for k in fresh if not k.startswith("base.")]
    assert sorted(conversion.initialised) == sorted(outside)
    for k in outside:
        np.testing.assert_array_equal(out[k], fresh[k])
    # fc6 element (o, c, i, j) is FC input c*49 + (3i)*7 + 3j of output 4o; fc7 (o, i) is (4o, 4i)
    w6, w7 = state["classifier.0.weight"], state["classifier.3.weight"]
    rng = np.random.default_rng(4)
    for o, c, i, j in zip(rng.integers(0, 1024, 50), rng.integers(0, 512, 50),
                          rng.integers(0, 3, 50), rng.integers(0, 3, 50)):
        assert out["base.fc6.weight"][o, c, i, j] == w6[4 * o, c * 49 + 21 * i + 3 * j]
    for o, i in zip(rng.integers(0, 1024, 50), rng.integers(0, 1024, 50)):
        assert out["base.fc7.weight"][o, i, 0, 0] == w7[4 * o, 4 * i]
    np.testing.assert_array_equal(out["base.fc6.bias"], state["classifier.0.bias"][::4])
    np.testing.assert_array_equal(out["base.fc7.bias"], state["classifier.3.bias"][::4])


def test_decimated_fc6_is_the_fc_layer_seen_through_a_dilated_kernel(vgg16_state):
    """On a 7x7 pool5 map that is zero off the taps {0, 3, 6}^2, the decimated fc6 run as a 3x3
    conv with dilation 3 gives exactly every 4th output of the fully connected fc6."""
    state = vgg16_state
    conversion = convert.convert_state_dict(state, input_normalization=None)
    rng = np.random.default_rng(5)
    z = np.zeros((512, 7, 7))
    z[:, 0::3, 0::3] = rng.standard_normal((512, 3, 3))
    fc = state["classifier.0.weight"].astype(np.float64) @ z.reshape(-1) \
        + state["classifier.0.bias"]
    conv = F.conv2d(z[None], conversion.state["base.fc6.weight"].astype(np.float64),
                    conversion.state["base.fc6.bias"].astype(np.float64), dilation=3).data
    assert conv.shape == (1, 1024, 1, 1)
    np.testing.assert_allclose(conv.reshape(-1), fc[0::4], rtol=1e-10, atol=1e-10)


def test_fold_input_normalization_matches_the_normalised_input():
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((8, 3, 3, 3))
    bias = rng.standard_normal(8)
    pixels = rng.uniform(0, 255, (1, 3, 12, 12))
    pixel_mean = (123.0, 117.0, 104.0)
    mean, std = layouts.IMAGENET_MEAN, layouts.IMAGENET_STD
    normalised = (pixels / 255 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    expected = F.conv2d(normalised, weight, bias, padding=1).data
    w2, b2 = convert.fold_input_normalization(weight, bias, mean, std, pixel_mean)
    got = F.conv2d(pixels - np.reshape(pixel_mean, (1, 3, 1, 1)), w2, b2, padding=1).data
    np.testing.assert_allclose(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], rtol=1e-12,
                               atol=1e-12)
    border = np.abs(got - expected).max()  # zero padding differs by the folded mean shift
    assert 0 < border < 0.05 * np.abs(expected).max()


def test_vgg16_import_folds_normalization_by_default(vgg16_state):
    folded = convert.convert_state_dict(vgg16_state)
    w, b = convert.fold_input_normalization(vgg16_state["features.0.weight"],
                                            vgg16_state["features.0.bias"],
                                            layouts.IMAGENET_MEAN, layouts.IMAGENET_STD,
                                            ssd300().mean)
    np.testing.assert_array_equal(folded.state["base.conv1_1.weight"], w)
    np.testing.assert_array_equal(folded.state["base.conv1_1.bias"], b)
    assert "fold input normalisation" in folded.summary()


def test_vgg16_decimation_needs_vgg16_widths(vgg16_state):
    with pytest.raises(convert.ConversionError,
                       match=r"decimation makes fc6 \(1024, 512, 3, 3\).*SSD300/8 has "
                             r"\(128, 64, 3, 3\)"):
        convert.convert_state_dict(vgg16_state, config=narrow_ssd300())


def test_ssd_pytorch_vgg_reducedfc_and_bgr_to_rgb():
    config = ssd300(21)
    shapes = _shapes(config)
    rng = np.random.default_rng(7)
    index = dict(VGG_INDEX, fc6=31, fc7=33)
    state = {}
    for name, i in index.items():
        state[f"{i}.weight"] = rng.standard_normal(shapes[f"base.{name}.weight"], np.float32)
        state[f"{i}.bias"] = rng.standard_normal(shapes[f"base.{name}.bias"], np.float32)
    plain = convert.convert_state_dict(state)
    assert plain.layout == "ssd.pytorch-vgg"
    for name, i in index.items():
        np.testing.assert_array_equal(plain.state[f"base.{name}.weight"], state[f"{i}.weight"])
    assert all(not k.startswith("base.") for k in plain.initialised)
    flipped = convert.convert_state_dict(state, bgr_to_rgb=True)
    np.testing.assert_array_equal(flipped.state["base.conv1_1.weight"],
                                  state["0.weight"][:, [2, 1, 0]])
    np.testing.assert_array_equal(flipped.state["base.conv1_2.weight"], state["2.weight"])
    assert "BGR->RGB" in flipped.summary()


def test_npz_source_and_cli_without_torch(tmp_path, narrow_state, capsys, monkeypatch):
    config, state = narrow_state
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" now fails
    src, dst = tmp_path / "state.npz", tmp_path / "minissd.npz"
    save_npz(src, state)
    conversion = convert.convert_file(src, dst, config=config, dtype=np.float64)
    stored = load_npz(dst)
    assert all(v.dtype == np.float64 for v in stored.values())
    np.testing.assert_array_equal(stored["heads.conf2.weight"], state["conf.2.weight"])
    assert conversion.layout == "ssd.pytorch"
    pth = tmp_path / "state.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(ImportError, match="needs torch"):
        convert.read_state_dict(pth)
    assert convert.main([str(pth), str(dst)]) == 2
    assert "needs torch" in capsys.readouterr().err
    bad = dict(state)
    del bad["L2Norm.weight"]
    save_npz(src, bad)
    assert convert.main([str(src), str(dst), "--layout", "ssd.pytorch"]) == 2
    assert "missing keys ['L2Norm.weight']" in capsys.readouterr().err
    # a full-size SSD300 in ssd.pytorch's layout through the CLI, float64 out
    shapes = _shapes(layouts.ssd_pytorch_config(21))
    full = {theirs: np.full(shapes[ours], 0.5, np.float32)
            for ours, theirs in ssd_pytorch_keys().items()}
    save_npz(src, full)
    assert convert.main([str(src), str(dst), "--dtype", "float64"]) == 0
    printed = capsys.readouterr().out
    assert "layout ssd.pytorch -> minissd SSD300-ssd.pytorch (21 classes" in printed
    assert "CONFIGS['ssd.pytorch'](21)" in printed
    assert load_npz(dst)["base.fc7.weight"].dtype == np.float64
