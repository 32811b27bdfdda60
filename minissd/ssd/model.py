"""The SSD model and its configurations (SSD300, SSD512, and a small CPU model).

Every number of a configuration lives in ``SSDConfig`` under the paper's names; the default boxes
come from ``minissd.priors`` (the ``priors`` field), and the network is checked against them: the
heads must produce exactly one prediction per default box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import nn, priors
from ..imagenet import VGG_MEAN
from .extras import SSD300_EXTRAS, SSD512_EXTRAS, ExtraBlock, Extras
from .heads import MultiboxHeads
from .vgg import VGG16, VGGBase


@dataclass(frozen=True)
class LossConfig:
    """MultiBox loss (paper Sec. 2.2): ``L = (L_conf + alpha L_loc) / N``."""

    alpha: float = 1.0
    neg_pos_ratio: int = 3
    iou_threshold: float = 0.5  # a default box matches a ground truth at IoU >= this
    smooth_l1_beta: float = 1.0


@dataclass(frozen=True)
class DetectConfig:
    """Inference (paper Sec. 3 and the authors' Caffe code)."""

    score_threshold: float = 0.01
    pre_nms_top_k: int = 400  # per class, by score, before NMS (CF 400; SP 200)
    nms_threshold: float = 0.45
    keep_top_k: int = 200  # per image, after NMS


@dataclass(frozen=True)
class SSDConfig:
    name: str
    num_classes: int  # including background (class 0)
    priors: priors.PriorConfig
    vgg: tuple = VGG16
    source_layer: str = "conv4_3"
    fc6: tuple | None = (1024, 6)  # (channels, dilation)
    fc7: int = 1024
    pool5: bool = True
    extras: tuple = SSD300_EXTRAS
    l2norm_scale: float = 20.0
    batch_norm: bool = False  # BN in the base: not the paper's; the small model uses it
    mean: tuple = VGG_MEAN  # RGB, subtracted from the input pixels
    loss: LossConfig = field(default_factory=LossConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    weight_init: str = "xavier_uniform"

    @property
    def image_size(self):
        return self.priors.image_size

    @property
    def boxes_per_location(self):
        """Default boxes per cell of each source map (``PriorConfig.boxes_per_location``)."""
        return self.priors.boxes_per_location


def ssd300(num_classes=21, **overrides) -> SSDConfig:
    return SSDConfig("SSD300", num_classes, priors.SSD300, **overrides)


def ssd512(num_classes=21, **overrides) -> SSDConfig:
    return SSDConfig("SSD512", num_classes, priors.SSD512, extras=SSD512_EXTRAS, **overrides)


#: The small model: a narrow VGG-style base on small inputs, trained from scratch on a CPU.
SMALL_VGG = (16, 16, "M", 32, 32, "M", 64, 64, "M", 128, 128)
SMALL_EXTRAS = (ExtraBlock(64, 128), ExtraBlock(64, 128), ExtraBlock(64, 128),
                ExtraBlock(64, 128))


def ssd_small(num_classes, image_size=128, first_min_ratio=10, first_max_ratio=20,
              **overrides) -> SSDConfig:
    """The small model; ``image_size`` (a multiple of 32) and the first map's box sizes (in %
    of the image) pick its priors (``priors.small_priors``): 128 px and 10/20 % by default,
    a larger input and smaller first boxes for datasets of small objects (BCCD's platelets)."""
    options = dict(vgg=SMALL_VGG, source_layer="conv3_2", fc6=None, pool5=False,
                   extras=SMALL_EXTRAS, batch_norm=True)
    options.update(overrides)
    prior_config = priors.small_priors(image_size, first_min_ratio, first_max_ratio)
    return SSDConfig("SSD-small", num_classes, prior_config, **options)


#: minissd's models by name: the one registry (``minissd train --model``, the CLI's other
#: commands and the PyTorch conversion all build their configs from it). Each maker takes
#: ``num_classes`` (background included) and keyword overrides.
MODELS = {"small": ssd_small, "ssd300": ssd300, "ssd512": ssd512}


class SSD(nn.Module):
    """``images (N, 3, H, W)`` float, mean-subtracted -> ``loc (N, P, 4)``, ``conf (N, P, C)``.

    ``loc`` are offsets relative to the default boxes (encoded with the variances), ``conf``
    unnormalised class scores, class 0 the background.
    """

    def __init__(self, config: SSDConfig, *, rng: np.random.Generator | None = None,
                 seed: int = 0, dtype=np.float32):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(seed)
        self.config = config
        init = dict(rng=rng, weight_init=config.weight_init, dtype=dtype)
        self.base = VGGBase(config.vgg, config.source_layer, config.fc6, config.fc7,
                            config.pool5, batch_norm=config.batch_norm, **init)
        self.l2norm = nn.L2Norm(self.base.source_channels[0], scale=config.l2norm_scale,
                                dtype=dtype)
        self.extras = Extras(self.base.source_channels[-1], config.extras, **init)
        channels = self.base.source_channels + self.extras.source_channels
        if len(channels) != len(config.priors.feature_maps):
            raise ValueError(f"{config.name}: the network has {len(channels)} source maps but "
                             f"the priors config has {len(config.priors.feature_maps)}")
        self.heads = MultiboxHeads(channels, config.boxes_per_location, config.num_classes,
                                   **init)
        self._priors = None

    def sources(self, x, taps=None):
        """The source feature maps, conv4_3 L2-normalised first."""
        first, last = self.base(x, taps)
        first = self.l2norm(first)
        if taps is not None:
            taps["l2norm"] = first
        return [first, last] + self.extras(last, taps)

    def forward(self, x, taps=None):
        srcs = self.sources(x, taps)
        expected = self.config.priors.map_sizes
        got = [tuple(s.shape[2:]) for s in srcs]
        if got != expected:
            raise ValueError(f"{self.config.name}: input {x.shape} gives source maps {got}, "
                             f"the priors expect {expected} (image size "
                             f"{self.config.image_size})")
        return self.heads(srcs, taps)

    def priors(self, dtype=np.float32):
        """The default boxes ``(P, 4)``, centre form, normalised (cached)."""
        if self._priors is None or self._priors.dtype != dtype:
            self._priors = priors.make_priors(self.config.priors).astype(dtype)
        return self._priors
