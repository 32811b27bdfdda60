"""The one table of PyTorch layouts: where each source keeps every layer of minissd's SSD.

``layers(model, layout)`` lists, in forward order, every layer of ``model`` (an ``SSD``) that
the layout holds, as ``Layer`` rows: minissd's tap name, the state-dict keys of its parameters
and the torch module whose output that tap is. ``minissd.pytorch.convert`` copies weights by the
keys; ``minissd.pytorch.parity`` hooks the modules. The four layouts (``LAYOUTS``):

``torchvision-ssd300``
    torchvision's ``ssd300_vgg16`` (``torchvision/models/detection/ssd.py``). The VGG16 base is
    ``backbone.features.{i}`` up to conv4_3 (indices 0..21 as in torchvision's ``vgg16``), then
    ``backbone.extra.0`` = [pool4, conv5_1 (1), conv5_2 (3), conv5_3 (5), ..., the fc block (7):
    [pool5, fc6 (7.1), fc7 (7.3)]]; ``backbone.extra.{1..4}.{0,2}`` the extras conv8_1/conv8_2
    ... conv11_1/conv11_2; ``backbone.scale_weight`` the L2Norm weight;
    ``head.regression_head.module_list.{i}`` / ``head.classification_head.module_list.{i}`` the
    loc / conf convs. torchvision's heads flatten ``(N, A*K, H, W)`` as ``view(N, A, K, H, W)``
    then ``permute(0, 3, 4, 1, 2)``, i.e. channel ``a*K + k`` is box ``a``, value ``k`` of a
    location, locations row-major: the same order as minissd (``(N, H, W, A, K)``), so the head
    weights copy unchanged. Class 0 is background in both (torchvision's labels are 1..C-1,
    minissd's 0-based object classes are those minus one). Its default boxes are
    ``priors.TORCHVISION_SSD300`` (scales 0.07 ... 1.05, w/h clipped), its box coder uses
    weights (10, 10, 5, 5) = our variances (0.1, 0.1, 0.2, 0.2) and caps ``dw, dh`` at
    ``log(1000/16)`` before ``exp``; use ``torchvision_ssd300_config(num_classes)``.
    Its L2Norm is ``scale_weight * F.normalize(x)`` = ``x / max(|x|, 1e-12)``; minissd's is
    ``x / sqrt(|x|^2 + 1e-10)``: a relative difference below ``1e-10 / |x|^2``.

    **Input.** torchvision's model applies ``GeneralizedRCNNTransform``: bilinear resize to
    300x300, then ``(x - image_mean) / image_std`` on 0..1 images with ``image_mean = (0.48235,
    0.45882, 0.40784)`` and ``image_std = 1/255``, i.e. RGB pixels 0..255 minus
    ``255 * image_mean = (122.999, 116.999, 103.999)``. minissd's input is float32 NCHW RGB
    0..255 pixels minus ``config.mean``; ``torchvision_ssd300_config`` sets ``mean`` to
    ``255 * image_mean`` so the two agree. To compare the networks, feed both the same
    preprocessed tensor and bypass torchvision's transform (``minissd.pytorch.parity`` does
    that); the two resizes (torch's interpolate vs Pillow) are not bit-identical.

``torchvision-vgg16``
    torchvision's ImageNet classifier ``vgg16`` (``features.{i}``, ``classifier.{0,3,6}``): the
    backbone initialisation of the paper. The 13 convs copy unchanged (indices 0, 2, 5, 7, 10,
    12, 14, 17, 19, 21, 24, 26, 28); fc6 and fc7 are made from the fully connected layers
    ``classifier.0`` and ``classifier.3`` by decimation (``minissd.pytorch.convert``); fc8
    (``classifier.6``) is dropped. Its weights expect ``(pixels/255 - mean) / std`` input
    (``IMAGENET_MEAN``, ``IMAGENET_STD``), which the conversion folds into conv1_1 by default.

``ssd.pytorch``
    amdegroot/ssd.pytorch's ``SSD``: ``vgg.{i}`` (the ModuleList of ``vgg(base['300'])``: conv
    at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, fc6 at 31, fc7 at 33), ``L2Norm.weight``,
    ``extras.{0..7}`` (conv8_1, conv8_2, ..., conv11_2), ``loc.{i}``, ``conf.{i}``. Its forward
    applies ``F.relu`` to every extra conv (no ReLU module). Its L2Norm divides by
    ``sqrt(sum x^2) + 1e-10`` (minissd: ``sqrt(sum x^2 + 1e-10)``). Its default boxes are
    ``priors.SSD300`` clipped with ``clip="cxcywh"``; its input is RGB pixels minus
    (123, 117, 104) (it subtracts the BGR means from the BGR image, then swaps to RGB;
    ssd.pytorch#44), exactly minissd's.

``ssd.pytorch-vgg``
    ssd.pytorch's ``weights/vgg16_reducedfc.pth``: the bare VGG ModuleList, keys ``{i}.weight``
    / ``{i}.bias`` with fc6 at 31 and fc7 at 33; converted from the authors' Caffe
    ``VGG_ILSVRC_16_layers_fc_reduced``, whose conv1_1 was trained on BGR input.
    ssd.pytorch feeds it RGB anyway (ssd.pytorch#44); the conversion's ``bgr_to_rgb=True``
    reverses conv1_1's input channels to undo that.

The two backbone layouts hold the base only; the rest of the model is initialised fresh.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import priors as P
from ..ssd.model import MODELS, DetectConfig, SSDConfig, ssd300

LAYOUTS = ("torchvision-ssd300", "torchvision-vgg16", "ssd.pytorch", "ssd.pytorch-vgg")

#: Where the whole-model layouts keep the multibox heads: the (loc, conf) convs of source map
#: ``i`` (``.format(i)``). The other layouts are VGG16 backbones without heads.
HEADS = {
    "torchvision-ssd300": ("head.regression_head.module_list.{}",
                           "head.classification_head.module_list.{}"),
    "ssd.pytorch": ("loc.{}", "conf.{}"),
}
MODEL_LAYOUTS = tuple(HEADS)

#: The top-level submodules a torch model of each whole-model layout has (how
#: ``parity.layout_of_torch_module`` tells them apart).
MODULES = {
    "torchvision-ssd300": ("backbone", "head", "anchor_generator"),
    "ssd.pytorch": ("vgg", "L2Norm", "extras", "loc", "conf"),
}

#: Source keys a layout has and the conversion leaves out on purpose (prefixes): the ImageNet
#: classifier's fc8.
DROPPED = {"torchvision-vgg16": ("classifier.6.",)}

#: torchvision ``ssd300_vgg16``'s ``image_mean`` (on 0..1 images); its ``image_std`` is 1/255.
TORCHVISION_IMAGE_MEAN = (0.48235, 0.45882, 0.40784)
#: torchvision's ImageNet normalisation (``vgg16`` IMAGENET1K_V1 weights).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ssd.pytorch's default boxes: SSD300's sizes, clamped to [0, 1] (``PriorBox`` clip=True).
SSD_PYTORCH_PRIORS = dataclasses.replace(P.SSD300, clip="cxcywh")


class ConversionError(ValueError):
    """A state dict or model that does not fit a layout; the message names the keys."""


# ----------------------------------------------------------------------------- configurations


def torchvision_ssd300_config(num_classes=91) -> SSDConfig:
    """The minissd configuration of torchvision's ``ssd300_vgg16``: SSD300's network with
    ``priors.TORCHVISION_SSD300`` default boxes, ``mean = 255 * image_mean`` and torchvision's
    post-processing numbers (score > 0.01, 400 per class before NMS, NMS 0.45, 200 per image:
    the same as minissd's defaults)."""
    return dataclasses.replace(
        ssd300(num_classes), name="SSD300-torchvision", priors=P.TORCHVISION_SSD300,
        mean=tuple(255.0 * m for m in TORCHVISION_IMAGE_MEAN),
        detect=DetectConfig(score_threshold=0.01, pre_nms_top_k=400, nms_threshold=0.45,
                            keep_top_k=200))


def ssd_pytorch_config(num_classes=21) -> SSDConfig:
    """The minissd configuration of ssd.pytorch's SSD300: SSD300 with clipped default boxes
    and ssd.pytorch's ``Detect`` numbers (score > 0.01, 200 per class before NMS, NMS 0.45);
    ssd.pytorch has no working per-image limit (its keep-top-k is a no-op, #168), kept at 200
    here."""
    return dataclasses.replace(ssd300(num_classes), name="SSD300-ssd.pytorch",
                               priors=SSD_PYTORCH_PRIORS,
                               detect=DetectConfig(pre_nms_top_k=200))


#: Model configurations by name: minissd's own models (``ssd.model.MODELS``) and the
#: whole-model PyTorch layouts (named as the layout). Each takes ``num_classes``.
CONFIGS = {**MODELS, "torchvision-ssd300": torchvision_ssd300_config,
           "ssd.pytorch": ssd_pytorch_config}


# ------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Layer:
    """One row of the table: a layer of minissd's SSD and where a layout keeps it.

    tap: minissd's name of the layer's output (a key of the ``taps`` that ``SSD.forward``
        fills: ``conv1_1``, ``pool1``, ..., ``fc7``, ``l2norm``, ``conv8_1``, ..., ``loc0``,
        ``conf0``).
    params: ``((minissd parameter, source key), ...)``; empty for a pool.
    output: the torch module (a ``get_submodule`` path) whose forward output is that tap, i.e.
        the ReLU after a conv; None where the layout has no such module.
    read: how that output becomes the tap: ``"out"`` as it is, ``"relu"`` through a ReLU
        (ssd.pytorch applies ``F.relu`` to the extras in its forward), ``"source0"`` the first
        feature map of the dict that torchvision's backbone returns.
    decimate: the parameters are the ImageNet classifier's fully connected layer, to be
        subsampled into this conv (``convert.decimate_fc``), not copied.
    """

    tap: str
    params: tuple
    output: str | None
    read: str = "out"
    decimate: bool = False


def _conv(tap, module, source, output, read="out", decimate=False):
    """A conv row: minissd's ``module.weight``/``.bias`` from the source's ``source.weight``/
    ``.bias``."""
    params = tuple((f"{module}.{p}", f"{source}.{p}") for p in ("weight", "bias"))
    return Layer(tap, params, output, read, decimate)


def _vgg_list_indices(model) -> list:
    """``[(kind, name, index)]``: minissd's base layers in forward order (kind ``"conv"`` or
    ``"pool"``) with their index in a VGG ``[conv, ReLU, ..., pool, ...]`` list, the indexing of
    ssd.pytorch's ``vgg`` and torchvision's ``vgg16().features`` (a conv and its ReLU take two
    places, a pool one)."""
    out, index = [], 0
    for kind, name in model.base.plan:
        out.append((kind, name, index))
        index += 1 if kind == "pool" else 2
    return out


def _base(model, where):
    """The base's rows, ``where(index)`` the module path of VGG list position ``index``."""
    rows = []
    for kind, name, i in _vgg_list_indices(model):
        if kind == "pool":
            rows.append(Layer(name, (), where(i)))
        else:
            rows.append(_conv(name, f"base.{name}", where(i), where(i + 1)))
    return rows


def _torchvision_ssd300_where(model):
    """torchvision's split of the VGG list: ``backbone.features`` up to conv4_3's ReLU, then
    ``backbone.extra.0`` from pool4 on, whose last entry is the fc block [pool5, fc6, ReLU, fc7,
    ReLU]. Checks that ``model`` has that shape."""
    cfg = model.config
    convs = {n: i for kind, n, i in _vgg_list_indices(model) if kind == "conv"}
    pools = {n: i for kind, n, i in _vgg_list_indices(model) if kind == "pool"}
    if "pool4" not in pools or "pool5" not in pools or cfg.fc6 is None:
        raise ConversionError(f"torchvision's ssd300_vgg16 layout needs a VGG base with "
                              f"pool4, SSD's pool5 and fc6/fc7; config {cfg.name} has "
                              f"pools {sorted(pools)} and fc6={cfg.fc6}")
    p4, p5 = pools["pool4"], pools["pool5"]
    last_before_pool4 = max((i, n) for n, i in convs.items() if i < p4)[1]
    if cfg.source_layer != last_before_pool4:
        raise ConversionError(f"torchvision's ssd300_vgg16 takes the first source map "
                              f"after {last_before_pool4}, config {cfg.name} after "
                              f"{cfg.source_layer}")

    def where(i):
        if i < p4:
            return f"backbone.features.{i}"
        if i < p5:
            return f"backbone.extra.0.{i - p4}"
        return f"backbone.extra.0.{p5 - p4}.{i - p5}"

    return where


def layers(model, layout) -> list:
    """The table: ``[Layer]`` of ``model`` (an ``SSD``) in ``layout``, in forward order.

    Whole-model layouts (``MODEL_LAYOUTS``) list every layer; the backbone layouts the base
    only (``torchvision-vgg16``: the 13 convs, then fc6/fc7 to be decimated from the
    classifier; its pools are not SSD's pool5 and it has none of SSD's own)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "torchvision-vgg16":
        rows = [r for r in _base(model, "features.{}".format)
                if r.tap not in ("pool5", "fc6", "fc7")]
        return rows + [_conv("fc6", "base.fc6", "classifier.0", None, decimate=True),
                       _conv("fc7", "base.fc7", "classifier.3", None, decimate=True)]
    if layout == "ssd.pytorch-vgg":
        return _base(model, "{}".format)
    if layout == "ssd.pytorch":
        rows = _base(model, "vgg.{}".format)
        rows.append(Layer("l2norm", (("l2norm.weight", "L2Norm.weight"),), "L2Norm"))

        def extra(i, j):  # conv j of extra block i: (parameters, output, read)
            return f"extras.{2 * i + j}", f"extras.{2 * i + j}", "relu"
    else:  # torchvision-ssd300
        rows = _base(model, _torchvision_ssd300_where(model))
        rows.append(Layer("l2norm", (("l2norm.weight", "backbone.scale_weight"),), "backbone",
                          "source0"))

        def extra(i, j):  # [conv, ReLU, conv, ReLU] per block
            return f"backbone.extra.{i + 1}.{2 * j}", f"backbone.extra.{i + 1}.{2 * j + 1}", "out"
    for i, block in enumerate(model.extras.names):
        rows += [_conv(name, f"extras.{name}", *extra(i, j)) for j, name in enumerate(block)]
    loc, conf = HEADS[layout]
    for i in range(model.heads.num_sources):
        rows += [_conv(f"loc{i}", f"heads.loc{i}", loc.format(i), loc.format(i)),
                 _conv(f"conf{i}", f"heads.conf{i}", conf.format(i), conf.format(i))]
    return rows


def parameter_keys(model, layout) -> list:
    """``[(minissd parameter, source key)]`` of ``layout`` for ``model``, in forward order."""
    return [pair for row in layers(model, layout) for pair in row.params]
