"""The same code on CuPy: autograd ops, the small SSD forward and backward, the MultiBox loss and
an SGD step agree with NumPy. Skipped (with the reason) without CuPy and a CUDA device."""

import numpy as np
import pytest

from minissd import autograd as ag
from minissd.autograd import Tensor
from minissd.backend import to_numpy
from minissd.optim import SGD
from minissd.ssd.model import SSD, ssd_small
from minissd.ssd.multibox_loss import build_targets, multibox_loss

pytestmark = pytest.mark.gpu


def both(array):
    from minissd.backend import cupy

    return Tensor(array, requires_grad=True), Tensor(cupy().asarray(array), requires_grad=True)


@pytest.mark.parametrize("op", [
    lambda x: ag.conv2d(x, Tensor(x.xp.ones((3, 2, 3, 3), x.dtype) * 0.1), stride=2, padding=1,
                        dilation=2),
    lambda x: ag.max_pool2d(x, 2, 2, ceil_mode=True),
    lambda x: ag.max_pool2d(x, 3, 1, 1),
    lambda x: ag.l2_normalize(x, axis=1),
    lambda x: ag.log_softmax(x, axis=1),
    lambda x: x[:, :, 1:, ::2].sum(axis=(2, 3)),
])
def test_ops_agree_with_numpy(op):
    x = np.random.default_rng(0).standard_normal((2, 2, 9, 9))
    cpu, gpu = both(x)
    out_c, out_g = op(cpu), op(gpu)
    np.testing.assert_allclose(to_numpy(out_g.data), out_c.data, rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(out_c.shape)
    out_c.backward(g)
    out_g.backward(gpu.xp.asarray(g))
    np.testing.assert_allclose(to_numpy(gpu.grad), cpu.grad, rtol=1e-10, atol=1e-12)


def test_winograd_conv_agrees_with_numpy():
    """A 3x3 layer wide enough for Winograd F(2x2, 3x3), with an odd output size (cropped
    tiles), forward and all three gradients."""
    from minissd.kernels import winograd as _winograd

    rng = np.random.default_rng(2)
    assert _winograd.applies((3, 3), (1, 1), (1, 1), 96, 80, (9, 9))
    arrays = [rng.standard_normal(s) for s in ((2, 96, 9, 9), (80, 96, 3, 3), (80,))]
    pairs = [both(a) for a in arrays]
    outs = [ag.conv2d(*(p[k] for p in pairs), padding=1) for k in (0, 1)]
    np.testing.assert_allclose(to_numpy(outs[1].data), outs[0].data, rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(outs[0].shape)
    outs[0].backward(g)
    outs[1].backward(pairs[0][1].xp.asarray(g))
    for cpu, gpu in pairs:
        np.testing.assert_allclose(to_numpy(gpu.grad), cpu.grad, rtol=1e-10, atol=1e-10)


def test_small_ssd_training_step_agrees_with_cpu():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 3, 128, 128)).astype(np.float32) * 50
    boxes = [np.array([[0.1, 0.1, 0.5, 0.6]], np.float32), np.array([[0.3, 0.2, 0.9, 0.7]])]
    labels = [np.array([0]), np.array([2])]
    results = []
    for device in ("cpu", "gpu"):
        model = SSD(ssd_small(4), seed=3).to(device)
        xp = model.parameters()[0].xp
        opt = SGD(model.named_parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        loc_t, lab = build_targets(boxes, labels, model.priors())
        loc, conf = model(Tensor(xp.asarray(images)))
        loss, _, _ = multibox_loss(loc, conf, xp.asarray(loc_t), xp.asarray(lab))
        loss.backward()
        opt.step()
        results.append((loss.item(), to_numpy(loc.data), model.to("cpu").state_dict()))
    (loss_c, loc_c, state_c), (loss_g, loc_g, state_g) = results
    assert loss_g == pytest.approx(loss_c, rel=1e-4)
    np.testing.assert_allclose(loc_g, loc_c, rtol=1e-3, atol=1e-4)
    for name in state_c:
        np.testing.assert_allclose(state_g[name], state_c[name], rtol=1e-3, atol=1e-5,
                                   err_msg=name)


def test_batch_detect_on_gpu_agrees_with_cpu_in_one_cuda_nms_call(monkeypatch):
    """``ssd.detect`` on CuPy outputs: the CPU's detections (the GPU's exp may differ in the last
    bit, so scores and boxes to 1e-12), every image and class suppressed by one launch of the
    CUDA NMS kernel (``kernels/nms.cu``)."""
    from minissd.backend import cupy
    from minissd.kernels import cuda
    from minissd.ssd.detect import detect
    from minissd.ssd.model import DetectConfig

    cp = cupy()
    rng = np.random.default_rng(3)
    n, p, c = 3, 60, 4
    xy = rng.uniform(0.1, 0.7, (p, 2))
    priors = np.concatenate([xy, rng.uniform(0.1, 0.3, (p, 2))], 1)
    loc = rng.normal(0, 0.5, (n, p, 4))
    conf = rng.normal(0, 2, (n, p, c))
    config = DetectConfig(score_threshold=0.05, pre_nms_top_k=20, keep_top_k=15)
    sizes = [(300, 500), (120, 80), (1.0, 1.0)]
    calls = []
    nms_keep = cuda.nms_keep
    monkeypatch.setattr(cuda, "nms_keep", lambda *a: calls.append(1) or nms_keep(*a))
    got = detect(cp.asarray(loc), cp.asarray(conf), cp.asarray(priors), config, image_sizes=sizes)
    want = detect(loc, conf, priors, config, image_sizes=sizes)
    assert len(calls) == 1
    for g, w in zip(got, want, strict=True):
        assert isinstance(g.boxes, np.ndarray)
        np.testing.assert_array_equal(g.labels, w.labels)
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-12)
        np.testing.assert_allclose(g.boxes, w.boxes, rtol=1e-12, atol=1e-9)
