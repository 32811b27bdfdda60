"""Parity with torchvision's ``ssd300_vgg16`` and import of torchvision's ``vgg16``.

torchvision is not in the CI environment (only torch is), so these tests skip there; run them
where torchvision is installed::

    python -m pytest tests/pytorch/test_parity_torchvision.py -p no:cacheprovider

Weights are random (``weights=None, weights_backbone=None``): nothing is downloaded.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")
tv_detection = pytest.importorskip(
    "torchvision.models.detection",
    reason="torchvision is not installed (CI has torch only); run in an env with torchvision")
tv_models = pytest.importorskip("torchvision.models")

from minissd.autograd import functional as F  # noqa: E402
from minissd.priors import TORCHVISION_SSD300  # noqa: E402
from minissd.pytorch import convert, layouts  # noqa: E402
from minissd.pytorch.parity import compare  # noqa: E402

pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("torch_threads")]


def _ssd(seed=0, num_classes=91, dtype=torch.float32):
    torch.manual_seed(seed)
    model = tv_detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                      num_classes=num_classes)
    return model.to(dtype).eval()


def _input(n=1, seed=0):
    return np.random.default_rng(seed).uniform(-120.0, 130.0, (n, 3, 300, 300))


def test_state_dict_converts_strictly_with_the_class_count():
    model = _ssd(num_classes=7)
    conversion = convert.convert_state_dict(model.state_dict())
    assert conversion.layout == "torchvision-ssd300"
    assert conversion.config == layouts.torchvision_ssd300_config(7)
    assert conversion.config.priors == TORCHVISION_SSD300
    assert not conversion.initialised and not conversion.ignored
    assert len(conversion.mapping) == len(model.state_dict())
    # the input convention: torchvision's normalisation in pixel units is config.mean
    mean = 255 * np.array(model.transform.image_mean)
    np.testing.assert_allclose(conversion.config.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(model.transform.image_std, 1 / 255)


def test_float64_every_layer_heads_and_detections():
    """Same tensor in, torchvision's transform bypassed: every activation, loc/conf, the decoded
    boxes and torchvision's own post-processing agree to float64 rounding (with torchvision's
    anchors; its default box sizes are float32 even in a float64 model)."""
    model = _ssd(seed=1, dtype=torch.float64)
    report = compare(model, _input(1, seed=1), priors="reference")
    worst = {d.name: d.rel for d in report.layers if d.rel > 1e-10}
    assert not worst, worst
    assert len(report.layers) == 41
    assert all(d.rel <= 1e-10 for d in report.heads)
    assert report.boxes.rel <= 1e-10
    assert report.priors.rel <= 1e-6  # TORCHVISION_SSD300 vs torchvision's float32 box sizes
    (dets,) = report.detections
    assert dets.ok and dets.matched == dets.num_reference > 0 and dets.max_box_error < 1e-6
    assert report.ok, report.text()


def test_float32_with_the_preset_priors():
    model = _ssd(seed=2)
    report = compare(model, _input(2, seed=2))
    assert report.first_divergent is None, report.text()
    assert all(d.rel <= 1e-5 for d in report.heads)
    for dets in report.detections:
        assert dets.ok and dets.matched > 0, report.text()
    assert report.ok


def test_planted_divergence_in_torchvision():
    model = _ssd(seed=3)
    conversion = convert.convert_state_dict(model.state_dict())
    minissd_model = convert.build_model(conversion)
    with torch.no_grad():
        model.backbone.extra[0][3].weight.mul_(1 + 1e-3)  # conv5_2
    report = compare(model, _input(1, seed=3), model=minissd_model)
    assert report.first_divergent == "conv5_2", report.text()


def test_vgg16_imagenet_state_dict():
    torch.manual_seed(4)
    vgg = tv_models.vgg16(weights=None).eval()
    state = vgg.state_dict()
    conversion = convert.convert_state_dict(state, input_normalization=None)
    assert conversion.layout == "torchvision-vgg16"
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, torch.nn.Conv2d)]
    names = [o[len("base."):-len(".weight")] for o, t, _ in conversion.mapping
             if o.endswith(".weight") and t.startswith("features.")]
    assert names == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2",
                     "conv3_3", "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    for name, i in zip(names, convs):
        np.testing.assert_array_equal(conversion.state[f"base.{name}.weight"],
                                      vgg.features[i].weight.detach().numpy())
    # torchvision's own fc6 (Linear on the flattened 7x7 map) vs the decimated dilated conv
    z = torch.zeros(1, 512, 7, 7, dtype=torch.float64)
    z[:, :, 0::3, 0::3] = torch.randn(1, 512, 3, 3, dtype=torch.float64)
    fc6 = vgg.classifier[0].double()
    with torch.no_grad():
        expected = fc6(torch.flatten(z, 1))[0, 0::4].numpy()
    got = F.conv2d(z.numpy(), conversion.state["base.fc6.weight"].astype(np.float64),
                   conversion.state["base.fc6.bias"].astype(np.float64), dilation=3).data
    np.testing.assert_allclose(got.reshape(-1), expected, rtol=1e-10, atol=1e-10)
    fc7 = vgg.classifier[3].double()
    h = torch.zeros(1, 4096, dtype=torch.float64)
    h[:, 0::4] = torch.randn(1, 1024, dtype=torch.float64)
    with torch.no_grad():
        expected7 = fc7(h)[0, 0::4].numpy()
    got7 = F.conv2d(h[:, 0::4].numpy().reshape(1, 1024, 1, 1),
                    conversion.state["base.fc7.weight"].astype(np.float64),
                    conversion.state["base.fc7.bias"].astype(np.float64)).data
    np.testing.assert_allclose(got7.reshape(-1), expected7, rtol=1e-10, atol=1e-10)
