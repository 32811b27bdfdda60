"""PyTorch weights in: convert other SSD implementations' state dicts to minissd ``.npz`` weights.

Four source layouts (``LAYOUTS``), recognised from the keys or named explicitly:

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
    preprocessed tensor and bypass torchvision's transform (``minissd.parity`` does that);
    the two resizes (torch's interpolate vs Pillow) are not bit-identical.

``torchvision-vgg16``
    torchvision's ImageNet classifier ``vgg16`` (``features.{i}``, ``classifier.{0,3,6}``): the
    backbone initialisation of the paper. The 13 convs copy unchanged (indices 0, 2, 5, 7, 10,
    12, 14, 17, 19, 21, 24, 26, 28); fc6 and fc7 are made from the fully connected layers by
    *decimation* (subsampling), the "VGG_ILSVRC_16_layers_fc_reduced" of the paper ("we
    subsample parameters from fc6 and fc7", Sec. 3; weiliu89/caffe#258: "following what
    DeepLab did"):

    * fc6: ``classifier.0.weight (4096, 25088)`` reshaped to ``(4096, 512, 7, 7)`` (torchvision
      flattens the 7x7 pool5 output channel-major), then every 4th output channel and every
      3rd spatial tap: ``W[0::4, :, 0::3, 0::3]`` -> ``(1024, 512, 3, 3)`` (taps 0, 3, 6: a 7x7
      kernel seen through a 3x3 kernel of dilation 3; SSD then runs it with dilation 6 on the
      stride-1 pool5); bias ``b[0::4]``.
    * fc7: ``classifier.3.weight (4096, 4096)`` -> ``W[0::4, 0::4]`` as ``(1024, 1024, 1, 1)``;
      bias ``b[0::4]``.
    * fc8 (``classifier.6``) is dropped.

    The authors never published the exact indices of their Caffe surgery; this is the scheme
    of the widely used PyTorch port (sgrvinod's "a-PyTorch-Tutorial-to-Object-Detection",
    ``decimate(w, m=[4, None, 3, 3])`` / ``m=[4, 4, None, None]`` with ``index_select`` over
    ``arange(0, size, step)``), so the indices start at 0. torchvision's ImageNet weights expect
    ``(pixels/255 - mean) / std`` input (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225);
    by default (``input_normalization="imagenet"``) that normalisation is folded into conv1_1
    so that the converted network takes minissd's input (pixels minus ``config.mean``):
    ``W'[:, c] = W[:, c] / (255 std_c)`` and ``b' = b + sum_{c,i,j} W[:, c, i, j] (mean'_c)``
    with ``mean'_c = (config.mean_c / 255 - mean_c) / std_c``. It is exact except on the
    one-pixel border, where the zero padding of the two inputs differs by ``mean'_c``
    (|mean'_c| < 0.02). ``input_normalization=None`` copies conv1_1 unchanged.
    Everything outside the base (L2Norm, extras, heads) is initialised as a fresh
    ``SSD(config, seed=seed)`` would be and listed in ``Conversion.initialised``.

``ssd.pytorch``
    amdegroot/ssd.pytorch's ``SSD``: ``vgg.{i}`` (the ModuleList of ``vgg(base['300'])``: conv
    at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, fc6 at 31, fc7 at 33), ``L2Norm.weight``,
    ``extras.{0..7}`` (conv8_1, conv8_2, ..., conv11_2), ``loc.{i}``, ``conf.{i}``. A
    ``module.`` prefix (``DataParallel`` checkpoints) is stripped. Its L2Norm divides by
    ``sqrt(sum x^2) + 1e-10`` (minissd: ``sqrt(sum x^2 + 1e-10)``). Its default boxes are
    ``priors.SSD300`` clipped with ``clip="cxcywh"``; its input is RGB pixels minus
    (123, 117, 104) (it subtracts the BGR means from the BGR image, then swaps to RGB;
    ssd.pytorch#44), exactly minissd's.

``ssd.pytorch-vgg``
    ssd.pytorch's ``weights/vgg16_reducedfc.pth``: the bare VGG ModuleList, keys ``{i}.weight``
    / ``{i}.bias`` with fc6 at 31 and fc7 at 33; converted from the authors' Caffe
    ``VGG_ILSVRC_16_layers_fc_reduced``, whose conv1_1 was trained on BGR input.
    ssd.pytorch feeds it RGB anyway (ssd.pytorch#44); ``bgr_to_rgb=True`` reverses conv1_1's
    input channels to undo that. The rest of the model is initialised as for
    ``torchvision-vgg16``.

Every conversion checks every shape against the target model and names each missing,
unexpected or mis-shaped key. Reading a ``.pth`` needs torch (``torch.load(...,
weights_only=True)``); a state dict saved as ``.npz`` reads without it, and so does the
converted ``.npz`` (``minissd.nn.load_weights``).

Command line (``python -m minissd.convert``)::

    python -m minissd.convert SRC.pth DST.npz [--layout L] [--config ssd300|ssd512|
        torchvision-ssd300|small] [--num-classes C] [--seed S] [--bgr-to-rgb]
        [--no-input-normalization] [--dtype float32|float64] [--non-strict]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import priors as P
from .nn import load_npz, save_npz
from .ssd.model import SSD, DetectConfig, SSDConfig, ssd300, ssd512, ssd_small

LAYOUTS = ("torchvision-ssd300", "torchvision-vgg16", "ssd.pytorch", "ssd.pytorch-vgg")

#: torchvision ``ssd300_vgg16``'s ``image_mean`` (on 0..1 images); its ``image_std`` is 1/255.
TORCHVISION_IMAGE_MEAN = (0.48235, 0.45882, 0.40784)
#: torchvision's ImageNet normalisation (``vgg16`` IMAGENET1K_V1 weights).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ssd.pytorch's default boxes: SSD300's sizes, clamped to [0, 1] (``PriorBox`` clip=True).
SSD_PYTORCH_PRIORS = dataclasses.replace(P.SSD300, clip="cxcywh")


class ConversionError(ValueError):
    """A state dict that does not fit the target model; the message names the keys."""


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


CONFIGS = {"ssd300": ssd300, "ssd512": ssd512, "small": ssd_small,
           "torchvision-ssd300": torchvision_ssd300_config, "ssd.pytorch": ssd_pytorch_config}


@dataclass
class Conversion:
    """The result of a conversion.

    state: minissd parameter name -> array, every parameter of ``SSD(config)``.
    layout: the source layout. config: the target configuration.
    mapping: ``(minissd name, source key, how)`` for every converted parameter (``how``:
        "copy", "decimate ...", "fold input normalisation", "reverse input channels").
    initialised: minissd names not in the source (backbone layouts), initialised as a fresh
        ``SSD(config, seed=seed)``.
    ignored: source keys deliberately left out (fc8 of the ImageNet classifier).
    """

    state: dict
    layout: str
    config: SSDConfig
    mapping: list = field(default_factory=list)
    initialised: list = field(default_factory=list)
    ignored: list = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"layout {self.layout} -> minissd {self.config.name} "
                 f"({self.config.num_classes} classes, priors "
                 f"{_preset_name(self.config.priors)}, input mean {self.config.mean}): "
                 f"{len(self.mapping)} tensors converted"]
        special = [m for m in self.mapping if m[2] != "copy"]
        lines += [f"  {name} <- {src}: {how}" for name, src, how in special]
        if self.initialised:
            lines.append(f"  {len(self.initialised)} tensors initialised fresh (not in the "
                         f"source): {', '.join(_compact(self.initialised))}")
        if self.ignored:
            lines.append(f"  ignored source keys: {', '.join(self.ignored)}")
        return "\n".join(lines)


def _preset_name(prior_config):
    for name, preset in P.PRESETS.items():
        if preset == prior_config:
            return name
    return "SSD300 (ssd.pytorch, clipped)" if prior_config == SSD_PYTORCH_PRIORS else "custom"


def _compact(names):
    """``["extras.conv8_1.weight", "extras.conv8_1.bias", ...]`` -> module names."""
    seen = []
    for n in names:
        m = n.rsplit(".", 1)[0]
        if m not in seen:
            seen.append(m)
    return seen


# ------------------------------------------------------------------------------------ reading


def _to_numpy(value, key):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        t = value.detach().cpu()
        if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
            t = t.float()
        return t.numpy()
    raise ConversionError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor "
                          f"or array")


def as_numpy_state(state) -> dict:
    """A state dict (torch tensors or arrays) -> ``{key: ndarray}``, unwrapping a checkpoint
    dict (``{"state_dict": ...}`` / ``{"model": ...}``) and stripping ``module.`` prefixes."""
    if not isinstance(state, dict):
        raise ConversionError(f"expected a state dict (name -> tensor), got "
                              f"{type(state).__name__}")
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    out = {}
    for key, value in state.items():
        key = str(key)
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = _to_numpy(value, key)
    return out


def read_state_dict(path) -> dict:
    """Read a state dict from ``.pth``/``.pt`` (needs torch; ``weights_only=True``: no code
    runs) or ``.npz`` (no torch) -> ``{key: ndarray}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_state_dict: no such file: {path}")
    if path.suffix == ".npz":
        return as_numpy_state(load_npz(path))
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading {path} (a PyTorch file) needs torch: pip install torch, or "
                          f"save the state dict as .npz with NumPy and convert that") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(f"could not read {path} with torch.load(weights_only=True): "
                              f"{exc}") from exc
    return as_numpy_state(state)


# ------------------------------------------------------------------------------ layout / config

_INDEX_KEY = re.compile(r"^\d+\.(weight|bias)$")


def detect_layout(state) -> str:
    """The layout of a state dict from its keys (see ``LAYOUTS``)."""
    keys = list(state)
    if any(k.startswith("backbone.features.") or k.startswith("head.classification_head.")
           for k in keys):
        return "torchvision-ssd300"
    if any(k.startswith("features.") for k in keys) and any(k.startswith("classifier.")
                                                            for k in keys):
        if any(k.endswith("running_mean") for k in keys):
            raise ConversionError("this looks like torchvision's vgg16_bn (batch-norm "
                                  "buffers such as 'features.1.running_mean'); SSD's base is "
                                  "the plain VGG16 ('vgg16')")
        return "torchvision-vgg16"
    if any(k.startswith("vgg.") for k in keys) and "L2Norm.weight" in keys:
        return "ssd.pytorch"
    if keys and all(_INDEX_KEY.match(k) for k in keys):
        return "ssd.pytorch-vgg"
    raise ConversionError(f"cannot tell the layout of this state dict from its keys "
                          f"(first: {keys[:6]}); name one of {LAYOUTS}")


def _num_classes(state, loc_key, conf_key):
    for k in (loc_key, conf_key):
        if k not in state:
            raise ConversionError(f"missing key {k!r} (needed to read the number of classes)")
    boxes = state[loc_key].shape[0] // 4
    if boxes == 0 or state[conf_key].shape[0] % boxes:
        raise ConversionError(f"{conf_key!r} has {state[conf_key].shape[0]} outputs, not a "
                              f"multiple of the {boxes} boxes per location of {loc_key!r}")
    return state[conf_key].shape[0] // boxes


def default_config(state, layout) -> SSDConfig:
    """The target configuration a layout implies: the class count read from the heads."""
    if layout == "torchvision-ssd300":
        p = "head.{}_head.module_list.0.weight"
        return torchvision_ssd300_config(_num_classes(state, p.format("regression"),
                                                      p.format("classification")))
    if layout == "ssd.pytorch":
        return ssd_pytorch_config(_num_classes(state, "loc.0.weight", "conf.0.weight"))
    return ssd300(21)  # backbone layouts: the heads are new, VOC by default


# ------------------------------------------------------------------------------------- mapping


def _base_indices(model):
    """minissd base conv name -> index in a VGG ``[conv, ReLU, ..., pool, ...]`` list (the
    indexing of ssd.pytorch's ``vgg`` and torchvision's ``vgg16().features``); also the list
    index of every pool."""
    convs, pools, idx = {}, {}, 0
    for kind, name in model.base.plan:
        if kind == "pool":
            pools[name] = idx
            idx += 1
        else:
            convs[name] = idx
            idx += 2
    return convs, pools


def _extras(model):
    return list(model.extras.names)


def key_map(model, layout) -> list:
    """``[(minissd module, source module)]`` for the convs (weight and bias) and the L2Norm
    (weight only) of a layout, on the model ``model`` (``SSD``). Backbone layouts map the base
    only; fc6/fc7 of ``torchvision-vgg16`` are made by ``_decimate_fc``, not listed here."""
    convs, pools = _base_indices(model)
    pairs = []
    if layout in ("ssd.pytorch", "ssd.pytorch-vgg"):
        prefix = "vgg." if layout == "ssd.pytorch" else ""
        pairs += [(f"base.{n}", f"{prefix}{i}") for n, i in convs.items()]
        if layout == "ssd.pytorch":
            pairs.append(("l2norm", "L2Norm"))
            for i, (first, second) in enumerate(_extras(model)):
                pairs += [(f"extras.{first}", f"extras.{2 * i}"),
                          (f"extras.{second}", f"extras.{2 * i + 1}")]
            for i in range(model.heads.num_sources):
                pairs += [(f"heads.loc{i}", f"loc.{i}"), (f"heads.conf{i}", f"conf.{i}")]
    elif layout == "torchvision-vgg16":
        pairs += [(f"base.{n}", f"features.{i}") for n, i in convs.items()
                  if n not in ("fc6", "fc7")]
    elif layout == "torchvision-ssd300":
        cfg = model.config
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
        for n, i in convs.items():
            if n == "fc6":
                src = f"backbone.extra.0.{p5 - p4}.1"
            elif n == "fc7":
                src = f"backbone.extra.0.{p5 - p4}.3"
            elif i < p4:
                src = f"backbone.features.{i}"
            else:
                src = f"backbone.extra.0.{i - p4}"
            pairs.append((f"base.{n}", src))
        pairs.append(("l2norm", "backbone.scale_weight"))
        for i, (first, second) in enumerate(_extras(model)):
            pairs += [(f"extras.{first}", f"backbone.extra.{i + 1}.0"),
                      (f"extras.{second}", f"backbone.extra.{i + 1}.2")]
        for i in range(model.heads.num_sources):
            pairs += [(f"heads.loc{i}", f"head.regression_head.module_list.{i}"),
                      (f"heads.conf{i}", f"head.classification_head.module_list.{i}")]
    else:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return pairs


def _param_pairs(model, layout):
    """``[(minissd parameter, source key)]``."""
    out = []
    for ours, theirs in key_map(model, layout):
        if ours == "l2norm":
            out.append(("l2norm.weight", theirs if "scale_weight" in theirs
                        else f"{theirs}.weight"))
        else:
            out += [(f"{ours}.weight", f"{theirs}.weight"), (f"{ours}.bias", f"{theirs}.bias")]
    return out


def _decimate_fc(state, model, target_shapes):
    """fc6/fc7 of the ImageNet VGG16 classifier -> SSD's reduced fc6/fc7 (module docstring)."""
    cfg = model.config
    c6, c7 = target_shapes["base.fc6.weight"], target_shapes["base.fc7.weight"]
    if c6 != (1024, 512, 3, 3) or c7 != (1024, 1024, 1, 1):
        raise ConversionError(f"the fc_reduced decimation makes fc6 (1024, 512, 3, 3) and fc7 "
                              f"(1024, 1024, 1, 1); config {cfg.name} has {c6} and {c7}")
    w6, b6 = state["classifier.0.weight"], state["classifier.0.bias"]
    w7, b7 = state["classifier.3.weight"], state["classifier.3.bias"]
    for key, value, shape in (("classifier.0.weight", w6, (4096, 25088)),
                              ("classifier.0.bias", b6, (4096,)),
                              ("classifier.3.weight", w7, (4096, 4096)),
                              ("classifier.3.bias", b7, (4096,))):
        if value.shape != shape:
            raise ConversionError(f"{key!r} has shape {value.shape}, expected {shape} (VGG16's "
                                  f"fully connected layers)")
    how6 = "decimate: reshape (4096, 512, 7, 7), [0::4, :, 0::3, 0::3]"
    how7 = "decimate: [0::4, 0::4] as (1024, 1024, 1, 1)"
    out = {
        "base.fc6.weight": np.ascontiguousarray(w6.reshape(4096, 512, 7, 7)[0::4, :, 0::3, 0::3]),
        "base.fc6.bias": np.ascontiguousarray(b6[0::4]),
        "base.fc7.weight": np.ascontiguousarray(w7[0::4, 0::4].reshape(1024, 1024, 1, 1)),
        "base.fc7.bias": np.ascontiguousarray(b7[0::4]),
    }
    mapping = [("base.fc6.weight", "classifier.0.weight", how6),
               ("base.fc6.bias", "classifier.0.bias", "decimate: [0::4]"),
               ("base.fc7.weight", "classifier.3.weight", how7),
               ("base.fc7.bias", "classifier.3.bias", "decimate: [0::4]")]
    return out, mapping


def fold_input_normalization(weight, bias, mean, std, pixel_mean):
    """conv1_1 for inputs ``(pixels/255 - mean)/std`` -> the same conv for ``pixels - pixel_mean``.

    ``weight (O, 3, kh, kw)``, ``bias (O,)`` -> new ``(weight, bias)`` (float64 arithmetic, cast
    back). Exact away from the zero-padded border (module docstring)."""
    std = np.asarray(std, np.float64)
    shift = (np.asarray(pixel_mean, np.float64) / 255.0 - np.asarray(mean, np.float64)) / std
    w = weight.astype(np.float64)
    new_w = w / (255.0 * std)[None, :, None, None]
    new_b = bias.astype(np.float64) + np.einsum("ocij,c->o", w, shift)
    return new_w.astype(weight.dtype), new_b.astype(bias.dtype)


def convert_state_dict(state, layout=None, config=None, *, seed=0, dtype=None, strict=True,
                       bgr_to_rgb=False, input_normalization="imagenet") -> Conversion:
    """Convert a state dict to minissd parameters.

    Args:
        state: ``{key: tensor or array}`` (or a checkpoint dict around it).
        layout: one of ``LAYOUTS``; None detects it from the keys.
        config: the target ``SSDConfig``; None: ``default_config(state, layout)``.
        seed: seed of the fresh initialisation of what a backbone layout lacks.
        dtype: output dtype (default: the source's, e.g. float32; float64 sources stay float64).
        strict: raise on source keys that the layout does not use (``ConversionError``
            naming them); missing and mis-shaped keys always raise.
        bgr_to_rgb: reverse conv1_1's input channels (Caffe-trained weights, BGR input).
        input_normalization: ``torchvision-vgg16`` only: ``"imagenet"`` folds torchvision's
            ImageNet normalisation into conv1_1, None copies it unchanged.
    Returns:
        a ``Conversion`` whose ``state`` loads with ``SSD(config).load_state_dict``.
    """
    state = as_numpy_state(state)
    layout = layout or detect_layout(state)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    config = config or default_config(state, layout)
    model = SSD(config, seed=seed)  # the target: names, shapes, and the fresh initialisation
    target = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in target.items()}

    out, mapping = {}, []
    pairs = _param_pairs(model, layout)
    missing = [theirs for _, theirs in pairs if theirs not in state]
    if layout == "torchvision-vgg16":
        missing += [k for k in ("classifier.0.weight", "classifier.0.bias", "classifier.3.weight",
                                "classifier.3.bias") if k not in state]
    if missing:
        raise ConversionError(f"{layout} state dict for {config.name}: missing keys {missing}")
    for ours, theirs in pairs:
        out[ours] = state[theirs]
        mapping.append((ours, theirs, "copy"))
    if layout == "torchvision-vgg16":
        fc, fc_mapping = _decimate_fc(state, model, shapes)
        out.update(fc)
        mapping += fc_mapping
    bad = [f"{ours!r} <- {theirs!r}: {tuple(out[ours].shape)} in the source, {shapes[ours]} in "
           f"minissd {config.name}" for ours, theirs, _ in mapping
           if tuple(out[ours].shape) != shapes[ours]]
    if bad:
        more = f"; ... and {len(bad) - 6} more" if len(bad) > 6 else ""
        raise ConversionError(f"shape mismatch ({len(bad)} tensors): " + "; ".join(bad[:6])
                              + more)

    used = {theirs for _, theirs, _ in mapping}
    ignored = sorted(k for k in state if layout == "torchvision-vgg16"
                     and k.startswith("classifier.6."))
    unexpected = sorted(set(state) - used - set(ignored))
    if unexpected and strict:
        raise ConversionError(f"{layout} state dict for {config.name}: unexpected keys "
                              f"{unexpected} (pass strict=False to ignore them)")
    ignored += unexpected

    first = "base.conv1_1"
    if layout == "torchvision-vgg16" and input_normalization is not None:
        if input_normalization != "imagenet":
            raise ValueError(f"input_normalization must be 'imagenet' or None, got "
                             f"{input_normalization!r}")
        out[f"{first}.weight"], out[f"{first}.bias"] = fold_input_normalization(
            out[f"{first}.weight"], out[f"{first}.bias"], IMAGENET_MEAN, IMAGENET_STD,
            config.mean)
        mapping = [(o, t, "fold input normalisation (ImageNet mean/std -> pixels - "
                          "config.mean)" if o.startswith(first) else h)
                   for o, t, h in mapping]
    if bgr_to_rgb:
        out[f"{first}.weight"] = np.ascontiguousarray(out[f"{first}.weight"][:, ::-1])
        mapping = [(o, t, (h + "; " if h != "copy" else "") + "reverse input channels (BGR->RGB)"
                    if o == f"{first}.weight" else h) for o, t, h in mapping]

    initialised = [k for k in target if k not in out]
    src_dtype = np.result_type(*[v.dtype for v in out.values()])
    dtype = np.dtype(dtype) if dtype is not None else src_dtype
    full = {k: np.asarray(out.get(k, target[k]), dtype=dtype) for k in target}
    return Conversion(full, layout, config, mapping, initialised, ignored)


def convert_file(src, dst, layout=None, config=None, **options) -> Conversion:
    """Read ``src`` (``.pth`` or ``.npz``), convert, write minissd weights to ``dst`` (``.npz``,
    atomically). ``options`` go to ``convert_state_dict``."""
    conversion = convert_state_dict(read_state_dict(src), layout, config, **options)
    save_npz(dst, conversion.state)
    return conversion


def build_model(conversion: Conversion, dtype=None) -> SSD:
    """An ``SSD`` carrying the converted weights (``dtype`` default: the conversion's)."""
    dtype = dtype or next(iter(conversion.state.values())).dtype
    model = SSD(conversion.config, dtype=dtype)
    model.load_state_dict(conversion.state)
    return model


# ----------------------------------------------------------------------------------------- CLI


DESCRIPTION = "Convert PyTorch SSD / VGG16 weights to minissd .npz weights."


def _parser():
    p = argparse.ArgumentParser(prog="minissd convert", description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p):
    """The ``convert`` options (shared by ``minissd convert`` and ``python -m
    minissd.convert``)."""
    p.add_argument("src", help="state dict: .pth/.pt (needs torch) or .npz")
    p.add_argument("dst", help="output .npz (minissd weights)")
    p.add_argument("--layout", choices=LAYOUTS, help="source layout (default: from the keys)")
    p.add_argument("--config", choices=sorted(CONFIGS),
                   help="target model (default: from the layout: torchvision-ssd300 -> "
                        "torchvision-ssd300, ssd.pytorch -> ssd.pytorch, backbones -> ssd300)")
    p.add_argument("--num-classes", type=int,
                   help="classes incl. background (default: from the heads; 21 for backbones)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the layers a backbone file lacks (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), help="default: the source's")
    p.add_argument("--bgr-to-rgb", action="store_true",
                   help="reverse conv1_1's input channels (Caffe-trained BGR weights)")
    p.add_argument("--no-input-normalization", action="store_true",
                   help="torchvision-vgg16: copy conv1_1 as is instead of folding the ImageNet "
                        "mean/std into it")
    p.add_argument("--non-strict", action="store_true",
                   help="ignore source keys the layout does not use (default: error)")


def main(argv=None) -> int:
    """``python -m minissd.convert SRC DST [options]``; returns the exit status."""
    return run(_parser().parse_args(argv))


def run(args) -> int:
    """Convert as ``args`` (from ``add_arguments``) say; returns the exit status."""
    try:
        state = read_state_dict(args.src)
        layout = args.layout or detect_layout(state)
        config = None
        if args.config or args.num_classes:
            name = args.config or {"torchvision-ssd300": "torchvision-ssd300",
                                   "ssd.pytorch": "ssd.pytorch"}.get(layout, "ssd300")
            num_classes = args.num_classes or default_config(state, layout).num_classes
            config = CONFIGS[name](num_classes)
        conversion = convert_state_dict(
            state, layout, config, seed=args.seed, dtype=args.dtype, strict=not args.non_strict,
            bgr_to_rgb=args.bgr_to_rgb,
            input_normalization=None if args.no_input_normalization else "imagenet")
        save_npz(args.dst, conversion.state)
    except (ConversionError, FileNotFoundError, ImportError, ValueError) as exc:
        print(f"minissd convert: error: {exc}", file=sys.stderr)
        return 2
    print(conversion.summary())
    print(f"wrote {args.dst}: load with SSD(config).load_state_dict(load_npz(path)) where config "
          f"is minissd.convert.CONFIGS[{_config_key(conversion.config)!r}]"
          f"({conversion.config.num_classes})")
    return 0


def _config_key(config):
    for key, make in CONFIGS.items():
        try:
            if make(config.num_classes) == config:
                return key
        except (TypeError, ValueError):
            continue
    return config.name


if __name__ == "__main__":
    sys.exit(main())
