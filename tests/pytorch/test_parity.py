"""Weight import and layer-by-layer parity against a torch.nn SSD in ssd.pytorch's layout.

The reference (``minissd.pytorch.reference_model``) is built with random weights, converted with
``minissd.pytorch.convert`` and run side by side through ``minissd.pytorch.parity``: every layer,
the heads, the decoded boxes and the final detections must agree (float64: relative error
<= 1e-10; float32: <= 1e-5). Most cases use ``narrow_ssd300`` (SSD300's exact topology at 300x300
with 1/8 of the channels) to stay fast; one runs the full-width SSD300 in float32.
"""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")

from minissd.autograd import no_grad  # noqa: E402
from minissd.nn import load_npz, load_weights  # noqa: E402
from minissd.pytorch import convert, layouts  # noqa: E402
from minissd.pytorch.parity import compare  # noqa: E402
from minissd.pytorch.reference_model import build_ssd_pytorch, narrow_ssd300  # noqa: E402
from minissd.ssd.model import SSD  # noqa: E402

pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("torch_threads")]


def _input(n=2, seed=0):
    """Mean-subtracted pixels in [-120, 130]: the range of real inputs."""
    return np.random.default_rng(seed).uniform(-120.0, 130.0, (n, 3, 300, 300))


def _narrow(num_classes=21):
    return dataclasses.replace(narrow_ssd300(num_classes), priors=layouts.SSD_PYTORCH_PRIORS)


@pytest.fixture(scope="module")
def narrow64():
    """(config, float64 reference with Caffe's L2Norm form, its conversion's minissd model)."""
    config = _narrow()
    ref = build_ssd_pytorch(config, seed=1, dtype=torch.float64, l2norm="caffe")
    model = convert.build_model(convert.convert_state_dict(ref.state_dict(), config=config))
    return config, ref, model


def test_every_layer_float64(narrow64, ssd300_taps):
    config, ref, model = narrow64
    report = compare(ref, _input(2), model=model)
    assert [d.name for d in report.layers] == ssd300_taps
    worst = {d.name: d.rel for d in report.layers if d.rel > 1e-10}
    assert not worst, worst
    assert report.first_divergent is None
    assert [d.name for d in report.heads] == ["loc", "conf"]
    assert all(d.rel <= 1e-10 for d in report.heads), report.heads
    assert report.boxes.rel <= 1e-10
    for d in report.detections:
        assert d.ok and d.matched == d.num_minissd == d.num_reference > 0, d
    assert report.ok, report.text()
    assert "PARITY" in report.text()


def test_full_ssd300_float32(ssd300_taps):
    """Full-width SSD300 with ssd.pytorch's own L2Norm, float32, batch 1."""
    config = layouts.ssd_pytorch_config(21)
    ref = build_ssd_pytorch(config, seed=2)
    report = compare(ref, _input(1, seed=3).astype(np.float32))
    assert report.dtype == "float32" and report.reference_dtype == "float32"
    assert [d.name for d in report.layers] == ssd300_taps
    worst = {d.name: d.rel for d in report.layers if d.rel > 1e-5}
    assert not worst, worst
    assert max(d.rel for d in report.heads) <= 1e-5
    (dets,) = report.detections
    assert dets.ok and dets.matched > 0, report.text()


def test_ssd_pytorch_l2norm_form_differs_by_its_eps_term(ssd300_taps):
    """ssd.pytorch divides by sqrt(sum x^2) + eps, minissd (Caffe) by sqrt(sum x^2 + eps): in
    float64 the harness sees exactly that difference at l2norm and nothing before it."""
    config = _narrow()
    ref = build_ssd_pytorch(config, seed=4, dtype=torch.float64, l2norm="ssd.pytorch")
    x = _input(1, seed=5) * 0.05  # small activations make the eps term visible
    report = compare(ref, x, config=config, rtol=1e-13)
    before = report.layers[:ssd300_taps.index("l2norm")]
    assert all(d.rel <= 1e-13 for d in before), [(d.name, d.rel) for d in before]
    assert report.first_divergent == "l2norm"
    # predicted |difference| per element: |w x| * |1/(n + eps) - 1/sqrt(n^2 + eps)|
    taps = {}
    model = convert.build_model(convert.convert_state_dict(ref.state_dict(), config=config))
    with no_grad():
        model(x, taps)
    c43 = taps["conv4_3"].data
    n = np.sqrt((c43 ** 2).sum(axis=1, keepdims=True))
    w = model.l2norm.weight.data.reshape(1, -1, 1, 1)
    predicted = np.abs(w * c43 * (1 / (n + 1e-10) - 1 / np.sqrt(n ** 2 + 1e-10))).max()
    assert predicted > 1e-12
    assert report.layer("l2norm").max_abs == pytest.approx(predicted, rel=1e-3)


@pytest.mark.parametrize("tap, key", [("conv2_2", "vgg.7.weight"), ("fc7", "vgg.33.weight"),
                                      ("l2norm", "L2Norm.weight"),
                                      ("conv9_2", "extras.3.weight"),
                                      ("conf3", "conf.3.weight")])
def test_planted_divergence_is_found_at_that_layer(narrow64, ssd300_taps, tap, key):
    config, ref, model = narrow64
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    perturbed = build_ssd_pytorch(config, dtype=torch.float64, l2norm="caffe")
    state[key] = state[key] * (1 + 1e-6)
    perturbed.load_state_dict(state)
    report = compare(perturbed, _input(1, seed=6), model=model)
    assert report.first_divergent == tap, report.text()
    index = ssd300_taps.index(tap)
    assert all(d.ok for d in report.layers[:index])
    assert 1e-9 < report.layers[index].rel < 1e-4
    assert not report.ok and "FIRST DIVERGENT LAYER" in report.text()


def test_planted_divergence_on_the_minissd_side(narrow64):
    config, ref, _ = narrow64
    model = convert.build_model(convert.convert_state_dict(ref.state_dict(), config=config))
    model.base.conv4_1.bias.data = model.base.conv4_1.bias.data + 1e-5
    report = compare(ref, _input(1, seed=7), model=model)
    assert report.first_divergent == "conv4_1"


def test_round_trip_through_pth_and_npz(tmp_path, narrow64):
    config, ref, model = narrow64
    src, dst = tmp_path / "ssd.pth", tmp_path / "ssd.npz"
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, src)  # DataParallel
    conversion = convert.convert_file(src, dst, config=config)
    assert conversion.layout == "ssd.pytorch" and not conversion.initialised
    stored = load_npz(dst)
    assert set(stored) == set(model.state_dict())
    assert all(v.dtype == np.float64 for v in stored.values())
    torch_state = ref.state_dict()
    for ours, theirs, how in conversion.mapping:
        assert how == "copy"
        np.testing.assert_array_equal(stored[ours], torch_state[theirs].numpy())
    loaded = load_weights(SSD(config, seed=99, dtype=np.float64), dst)
    x = _input(1, seed=8)
    with no_grad():
        a, b = loaded(x), model(x)
    np.testing.assert_array_equal(a[0].data, b[0].data)
    np.testing.assert_array_equal(a[1].data, b[1].data)


def test_float32_source_stays_float32_and_cli(tmp_path, capsys):
    config = _narrow(num_classes=5)
    ref = build_ssd_pytorch(config, seed=9)
    src, dst = tmp_path / "ssd.pth", tmp_path / "out" / "ssd.npz"
    torch.save(ref.state_dict(), src)
    # the CLI infers the classes (5) but cannot infer the narrow widths: shapes must clash
    assert convert.main([str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert "shape mismatch" in err and "'base.conv1_1.weight' <- 'vgg.0.weight'" in err
    conversion = convert.convert_file(src, dst, config=config)
    assert conversion.config.num_classes == 5
    assert all(v.dtype == np.float32 for v in load_npz(dst).values())
    # python -m minissd.pytorch.convert on a full-size SSD300 state dict
    full = build_ssd_pytorch(layouts.ssd_pytorch_config(21), seed=10)
    torch.save(full.state_dict(), src)
    run = subprocess.run([sys.executable, "-m", "minissd.pytorch.convert", str(src), str(dst)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "layout ssd.pytorch -> minissd SSD300-ssd.pytorch (21 classes" in run.stdout
    np.testing.assert_array_equal(load_npz(dst)["heads.conf5.bias"],
                                  full.state_dict()["conf.5.bias"].numpy())


def test_parity_rejects_a_model_in_test_phase():
    class TestPhase(torch.nn.Module):  # ssd.pytorch's phase="test" returns detections
        def __init__(self, inner):
            super().__init__()
            self.vgg, self.L2Norm, self.extras = inner.vgg, inner.L2Norm, inner.extras
            self.loc, self.conf, self.inner = inner.loc, inner.conf, inner

        def forward(self, x):
            return torch.zeros(x.shape[0], 21, 200, 5)

    config = _narrow()
    inner = build_ssd_pytorch(config, dtype=torch.float64)
    model = convert.build_model(convert.convert_state_dict(inner.state_dict(), config=config))
    with pytest.raises(ValueError, match="phase='train'"):
        compare(TestPhase(inner), _input(1), model=model, layout="ssd.pytorch")
