"""SSD written in ``torch.nn`` in the layout of amdegroot/ssd.pytorch: an independent oracle.

Used by the parity tests (``tests/pytorch/test_parity.py``), the parity harness
(``minissd.pytorch.parity``) and the benchmark (``benchmarks/bench_ssd.py``). Nothing here is
imported by the model itself, and torch is imported lazily inside the functions, so ``import
minissd.pytorch.reference_model`` works without torch.

The module tree and the state-dict keys are those of ssd.pytorch's ``ssd.py``:

* ``vgg``: a ``ModuleList`` built like ssd.pytorch's ``vgg(cfg)``: ``conv, ReLU`` per channel
  entry, ``MaxPool2d(2, 2)`` for ``"M"``, the same with ``ceil_mode=True`` for ``"C"``; then
  ``pool5`` (3x3/1/1), ``conv6`` (fc6: 3x3, dilation 6, padding 6), ReLU, ``conv7`` (fc7: 1x1),
  ReLU. For SSD300: 35 entries, conv4_3's ReLU at index 22, fc6 at 31 and fc7 at 33.
* ``L2Norm``: ``weight`` (C,); ssd.pytorch computes ``x / (sqrt(sum x^2) + eps) * weight`` with
  eps 1e-10 (``layers/modules/l2norm.py``); ``l2norm="caffe"`` uses Caffe's (and minissd's)
  ``x / sqrt(sum x^2 + eps)`` instead. The two differ by about ``eps / |x|`` relatively.
* ``extras``: a ``ModuleList`` of convs built like ssd.pytorch's ``add_extras(cfg)`` (an ``"S"``
  in the config makes the next conv 3x3 / stride 2 / pad 1); the forward applies ``F.relu`` to
  every one and takes every second as a source.
* ``loc``, ``conf``: ``ModuleList`` s of 3x3/pad-1 convs, one per source map.

The forward returns ``(loc (N, P, 4), conf (N, P, C))``: ssd.pytorch's ``phase="train"`` output
without the priors. ``ssd_pytorch_cfg(config)`` turns a minissd ``SSDConfig`` into ssd.pytorch's
configuration lists, so narrow test models (same topology, fewer channels) are built the same way.

``detect_reference`` is the post-processing of the authors' Caffe ``DetectionOutput`` (the rule
``minissd.ssd.detect`` implements) written again with torch ops, for comparing detections.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from ..priors import SSD_VARIANCES
from ..ssd.extras import ExtraBlock
from ..ssd.model import ssd300
from ..ssd.vgg import VGG16
from . import require_torch

#: The two L2Norm denominators: ssd.pytorch's ``sqrt(sum x^2) + eps``, Caffe's (and minissd's)
#: ``sqrt(sum x^2 + eps)``.
L2NORM_FORMS = ("ssd.pytorch", "caffe")


def narrow_ssd300(num_classes=21, divisor=8, **overrides):
    """SSD300's topology (300x300 input, the same six source maps, 8732 default boxes, the same
    kernels, strides, pads, dilation and ceil-mode pool) with every channel count divided by
    ``divisor``: the layer-by-layer parity tests run it in float64 in a fraction of a second.
    ``overrides`` go to ``dataclasses.replace`` (e.g. ``priors=...``)."""
    d = divisor
    vgg = tuple(v if isinstance(v, str) else v // d for v in VGG16)
    extras = (ExtraBlock(256 // d, 512 // d), ExtraBlock(128 // d, 256 // d),
              ExtraBlock(128 // d, 256 // d, stride=1, padding=0),
              ExtraBlock(128 // d, 256 // d, stride=1, padding=0))
    options = dict(name=f"SSD300/{d}", vgg=vgg, fc6=(1024 // d, 6), fc7=1024 // d,
                   extras=extras)
    options.update(overrides)
    return dataclasses.replace(ssd300(num_classes), **options)


def _torch():
    return require_torch("minissd.pytorch.reference_model")


def ssd_pytorch_cfg(config):
    """A minissd ``SSDConfig`` -> ssd.pytorch's configuration.

    Returns a dict with ``base`` (the VGG list), ``extras`` (the list with ``"S"`` markers),
    ``mbox`` (boxes per location), ``num_classes``, ``fc6`` (``(channels, dilation)`` or None),
    ``fc7``, ``pool5`` and ``source_conv`` (the 0-based conv index of the first source map in
    ``base``; conv4_3 of VGG16 is conv 9). Raises ``ValueError`` for an extra block that
    ssd.pytorch's ``add_extras`` cannot express (only 1x1 then 3x3/s2/p1 or 3x3/s1/p0).
    """
    extras = []
    for i, block in enumerate(config.extras):
        if (block.kernel, block.stride, block.padding) == (3, 2, 1):
            extras += [block.mid, "S", block.out]
        elif (block.kernel, block.stride, block.padding) == (3, 1, 0):
            extras += [block.mid, block.out]
        else:
            raise ValueError(f"ssd_pytorch_cfg: extra block {i} ({block}) has no ssd.pytorch "
                             f"form (add_extras makes 3x3 convs with stride 2 / pad 1 or "
                             f"stride 1 / pad 0 only)")
    conv_names = []
    block_no, index = 1, 1
    for item in config.vgg:
        if item in ("M", "C"):
            block_no, index = block_no + 1, 1
        else:
            conv_names.append(f"conv{block_no}_{index}")
            index += 1
    if config.source_layer not in conv_names:
        raise ValueError(f"ssd_pytorch_cfg: source_layer {config.source_layer!r} is not a conv "
                         f"of the base {conv_names}")
    return dict(base=tuple(config.vgg), extras=tuple(extras),
                mbox=tuple(config.boxes_per_location), num_classes=config.num_classes,
                fc6=config.fc6, fc7=config.fc7, pool5=config.pool5,
                source_conv=conv_names.index(config.source_layer))


@functools.lru_cache(maxsize=None)
def _classes():
    """The torch.nn classes, defined on first use (torch imported lazily)."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class L2Norm(nn.Module):
        """ssd.pytorch's ``L2Norm``: ``weight`` (C,) times x normalised across channels."""

        def __init__(self, n_channels, scale, form="ssd.pytorch", eps=1e-10):
            super().__init__()
            if form not in L2NORM_FORMS:
                raise ValueError(f"L2Norm: form must be one of {L2NORM_FORMS}, got {form!r}")
            self.n_channels, self.gamma, self.eps, self.form = n_channels, scale, eps, form
            self.weight = nn.Parameter(torch.full((n_channels,), float(scale)))

        def forward(self, x):
            if self.form == "ssd.pytorch":
                norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
            else:
                norm = (x.pow(2).sum(dim=1, keepdim=True) + self.eps).sqrt()
            return self.weight.view(1, -1, 1, 1) * torch.div(x, norm)

    class SSDPytorch(nn.Module):
        """ssd.pytorch's ``SSD`` (phase "train"): ``x (N, 3, H, W) -> loc, conf``."""

        def __init__(self, base, extras, mbox, num_classes, fc6=(1024, 6), fc7=1024,
                     pool5=True, source_conv=9, l2norm_scale=20.0, l2norm="ssd.pytorch"):
            super().__init__()
            self.num_classes = num_classes
            layers, c, conv_count, source_index = [], 3, 0, None
            for v in base:  # ssd.pytorch vgg()
                if v == "M":
                    layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
                elif v == "C":
                    layers += [nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)]
                else:
                    layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    if conv_count == source_conv:
                        source_index = len(layers)  # layers [0, source_index) give the source
                    conv_count, c = conv_count + 1, v
            source_channels = [layers[source_index - 2].out_channels]
            if pool5:
                layers += [nn.MaxPool2d(kernel_size=3, stride=1, padding=1)]
            if fc6 is not None:
                channels, dilation = fc6
                layers += [nn.Conv2d(c, channels, kernel_size=3, padding=dilation,
                                     dilation=dilation), nn.ReLU(inplace=True),
                           nn.Conv2d(channels, fc7, kernel_size=1), nn.ReLU(inplace=True)]
                c = fc7
            source_channels.append(c)
            self.source_index = source_index
            self.vgg = nn.ModuleList(layers)
            self.L2Norm = L2Norm(source_channels[0], l2norm_scale, form=l2norm)
            extra_layers, flag, in_c = [], False, c  # ssd.pytorch add_extras()
            for k, v in enumerate(extras):
                if in_c != "S":
                    if v == "S":
                        extra_layers += [nn.Conv2d(in_c, extras[k + 1], kernel_size=(1, 3)[flag],
                                                   stride=2, padding=1)]
                    else:
                        extra_layers += [nn.Conv2d(in_c, v, kernel_size=(1, 3)[flag])]
                    flag = not flag
                in_c = v
            self.extras = nn.ModuleList(extra_layers)
            source_channels += [m.out_channels for m in extra_layers[1::2]]
            if len(source_channels) != len(mbox):
                raise ValueError(f"SSDPytorch: {len(source_channels)} source maps but "
                                 f"{len(mbox)} mbox entries")
            self.loc = nn.ModuleList([nn.Conv2d(ch, k * 4, kernel_size=3, padding=1)
                                      for ch, k in zip(source_channels, mbox)])
            self.conf = nn.ModuleList([nn.Conv2d(ch, k * num_classes, kernel_size=3, padding=1)
                                       for ch, k in zip(source_channels, mbox)])

        def forward(self, x):
            sources, loc, conf = [], [], []
            for k in range(self.source_index):
                x = self.vgg[k](x)
            sources.append(self.L2Norm(x))
            for k in range(self.source_index, len(self.vgg)):
                x = self.vgg[k](x)
            sources.append(x)
            for k, v in enumerate(self.extras):
                x = F.relu(v(x), inplace=True)
                if k % 2 == 1:
                    sources.append(x)
            for x, lh, ch in zip(sources, self.loc, self.conf):
                loc.append(lh(x).permute(0, 2, 3, 1).contiguous())
                conf.append(ch(x).permute(0, 2, 3, 1).contiguous())
            n = loc[0].size(0)
            loc = torch.cat([o.view(n, -1) for o in loc], 1)
            conf = torch.cat([o.view(n, -1) for o in conf], 1)
            return loc.view(n, -1, 4), conf.view(n, -1, self.num_classes)

    return L2Norm, SSDPytorch


def build_ssd_pytorch(config=None, *, seed=0, dtype=None, l2norm="ssd.pytorch",
                      init="xavier_uniform"):
    """A torch.nn SSD in ssd.pytorch's layout for a minissd ``SSDConfig`` (default SSD300/VOC).

    Weights: ``init="xavier_uniform"`` (ssd.pytorch's ``weights_init`` for the extras and heads;
    here every conv, biases zero, then biases drawn small so that they are tested too), seeded by
    ``seed`` through ``torch.Generator``; L2Norm weights at ``config.l2norm_scale``.
    ``dtype``: a torch dtype (default float32).
    """
    torch = _torch()
    if config is None:
        config = ssd300()
    cfg = ssd_pytorch_cfg(config)
    _, SSDPytorch = _classes()
    model = SSDPytorch(cfg["base"], cfg["extras"], cfg["mbox"], cfg["num_classes"],
                       fc6=cfg["fc6"], fc7=cfg["fc7"], pool5=cfg["pool5"],
                       source_conv=cfg["source_conv"], l2norm_scale=config.l2norm_scale,
                       l2norm=l2norm)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                if init == "xavier_uniform":
                    fan_in = m.weight[0].numel()
                    fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                else:
                    raise ValueError(f"build_ssd_pytorch: unknown init {init!r}")
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 2 * bound - bound)
                m.bias.copy_((torch.rand(m.bias.shape, generator=gen) - 0.5) * 0.02)
    model.eval()
    return model.to(dtype) if dtype is not None else model


# ------------------------------------------------------------------------------- detection


def decode_reference(loc, priors, variances=SSD_VARIANCES, max_log_scale=None):
    """ssd.pytorch's ``box_utils.decode`` in torch: ``loc (P, 4)``, centre-form ``priors (P, 4)``
    -> corners ``(P, 4)``. ``max_log_scale`` caps ``v * t_w``, ``v * t_h`` (torchvision)."""
    torch = _torch()
    log_scale = loc[:, 2:] * variances[2]
    if max_log_scale is not None:
        log_scale = torch.clamp(log_scale, max=max_log_scale)
    boxes = torch.cat((priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:],
                       priors[:, 2:] * torch.exp(log_scale)), 1)
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def _nms_reference(boxes, scores, threshold, top_k):
    """Greedy NMS in torch: the best remaining box suppresses those with IoU > threshold.
    Candidates ranked by a stable descending sort (ties: lower index first), the best
    ``top_k`` kept before suppression. Returns indices into ``boxes``."""
    torch = _torch()
    order = torch.sort(scores, descending=True, stable=True).indices[:top_k]
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx1 = torch.maximum(boxes[rest, 0], boxes[i, 0])
        yy1 = torch.maximum(boxes[rest, 1], boxes[i, 1])
        xx2 = torch.minimum(boxes[rest, 2], boxes[i, 2])
        yy2 = torch.minimum(boxes[rest, 3], boxes[i, 3])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        union = area[rest] + area[i] - inter
        iou = torch.where(union > 0, inter / union, torch.zeros_like(inter))
        order = rest[iou <= threshold]
    return torch.as_tensor(keep, dtype=torch.int64)


def detect_reference(loc, conf, priors, *, score_threshold=0.01, pre_nms_top_k=400,
                     nms_threshold=0.45, keep_top_k=200, variances=SSD_VARIANCES,
                     clip=True, max_log_scale=None):
    """Caffe ``DetectionOutput`` in torch, one image: ``loc (P, 4)``, ``conf (P, C)`` logits,
    ``priors (P, 4)`` centre form -> ``(boxes (D, 4) normalised corners, labels (D,) 0-based
    object classes, scores (D,))``, sorted by descending score (stable)."""
    torch = _torch()
    scores = torch.softmax(conf, dim=-1)
    boxes = decode_reference(loc, priors, variances, max_log_scale)
    if clip:
        boxes = boxes.clamp(0.0, 1.0)
    out_b, out_l, out_s = [], [], []
    for c in range(1, scores.shape[1]):
        cand = torch.nonzero(scores[:, c] > score_threshold).flatten()
        if cand.numel() == 0:
            continue
        keep = cand[_nms_reference(boxes[cand], scores[cand, c], nms_threshold, pre_nms_top_k)]
        out_b.append(boxes[keep])
        out_s.append(scores[keep, c])
        out_l.append(torch.full((keep.numel(),), c - 1, dtype=torch.int64))
    if not out_s:
        return boxes[:0], torch.zeros(0, dtype=torch.int64), scores[:0, 0]
    b, lab, s = torch.cat(out_b), torch.cat(out_l), torch.cat(out_s)
    order = torch.sort(s, descending=True, stable=True).indices[:keep_top_k]
    return b[order], lab[order], s[order]
