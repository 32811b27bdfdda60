"""Default boxes (priors): the fixed boxes SSD regresses from, one set per source map.

For source map k with ``f_h x f_w`` cells, every cell (i, j) carries the same list of boxes
centred at ``((j + offset) * step_w / W, (i + offset) * step_h / H)``, in this order (the
authors' Caffe ``PriorBox`` with ``flip: true``, also ssd.pytorch and torchvision):

1. a square of size ``s_k``;
2. a square of size ``sqrt(s_k * s_{k+1})`` (the paper's ``s'_k``);
3. for each aspect ratio r of the map: a ``s_k*sqrt(r) x s_k/sqrt(r)`` box, then the same
   box turned by 90 degrees (ratio 1/r).

So a map with ratios ``(2, 3)`` has 6 boxes per location, one with ``(2,)`` has 4. Boxes are
listed map by map, row by row (i), column by column (j), box by box.

Sizes come in one of two conventions:

* ``min_sizes`` / ``max_sizes`` in **pixels** (Caffe): ``s_k = min_sizes[k]``,
  ``s_{k+1} = max_sizes[k]``; a "square" is square in pixels, so on a non-square image
  its normalised width and height differ (w / W, h / H).
* ``scales`` as **fractions of the image side** (torchvision): ``s_k = scales[k]`` (one
  more scale than maps); the normalised width and height are both ``s_k`` (so on a
  non-square image the "square" is square in normalised units).

On square images both agree (``min_sizes[k] = scales[k] * image_size``).

Output: ``make_priors(config)`` -> (P, 4) normalised centre-form boxes ``(cx, cy, w, h)``,
float32 unless asked otherwise (see ``minissd.boxes`` for the formats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The paper's encoding variances (cx, cy, w, h) (Caffe ``prior_variance``).
SSD_VARIANCES = (0.1, 0.1, 0.2, 0.2)

#: Clipping rules: "none" (Caffe for SSD300/512: ``clip: false``), "wh" (torchvision: clamp
#: w and h to [0, 1], leave the centres), "cxcywh" (ssd.pytorch: clamp all four to [0, 1]).
CLIP_MODES = ("none", "wh", "cxcywh")


def _pair(value, name: str) -> tuple[float, float]:
    """``v`` -> ``(v, v)``; ``(h, w)`` stays as it is."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or an (H, W) pair, got {value!r}")
        return (value[0], value[1])
    return (value, value)


@dataclass(frozen=True)
class PriorConfig:
    """Everything that defines a set of default boxes, with the paper's names.

    image_size: input size in pixels, ``S`` or ``(H, W)``.
    feature_maps: per source map, its size ``f`` or ``(f_h, f_w)`` in cells.
    aspect_ratios: per source map, the ratios other than 1; each r adds (r, 1/r).
    steps: per source map, the distance between cell centres in pixels, ``s`` or
        ``(s_h, s_w)``; None uses ``image_size / feature_map`` (Caffe's default).
    min_sizes, max_sizes: per source map, ``s_k`` and ``s_{k+1}`` in pixels (Caffe).
    scales: alternatively, ``len(feature_maps) + 1`` fractions of the image side
        (torchvision); give either sizes or scales.
    offset: cell-centre offset in cells (0.5: the centre of the cell).
    clip: one of ``CLIP_MODES``.
    variances: encoding variances for ``minissd.boxes.encode`` / ``decode``.
    """

    image_size: int | tuple[int, int]
    feature_maps: tuple
    aspect_ratios: tuple
    steps: tuple | None = None
    min_sizes: tuple | None = None
    max_sizes: tuple | None = None
    scales: tuple | None = None
    offset: float = 0.5
    clip: str = "none"
    variances: tuple = SSD_VARIANCES

    def __post_init__(self):
        m = len(self.feature_maps)
        if len(self.aspect_ratios) != m:
            raise ValueError(f"aspect_ratios has {len(self.aspect_ratios)} entries, expected "
                             f"one per feature map ({m})")
        if self.steps is not None and len(self.steps) != m:
            raise ValueError(f"steps has {len(self.steps)} entries, expected {m}")
        if self.scales is None:
            if self.min_sizes is None or self.max_sizes is None:
                raise ValueError("give min_sizes and max_sizes (pixels) or scales (fractions)")
            if len(self.min_sizes) != m or len(self.max_sizes) != m:
                raise ValueError(f"min_sizes and max_sizes need {m} entries each, got "
                                 f"{len(self.min_sizes)} and {len(self.max_sizes)}")
        else:
            if self.min_sizes is not None or self.max_sizes is not None:
                raise ValueError("give either min_sizes/max_sizes or scales, not both")
            if len(self.scales) != m + 1:
                raise ValueError(f"scales needs {m + 1} entries (one more than the feature "
                                 f"maps), got {len(self.scales)}")
        if self.clip not in CLIP_MODES:
            raise ValueError(f"clip must be one of {CLIP_MODES}, got {self.clip!r}")
        if len(self.variances) != 4:
            raise ValueError(f"variances needs 4 numbers, got {self.variances!r}")
        for ratios in self.aspect_ratios:
            if any(r <= 0 for r in ratios):
                raise ValueError(f"aspect ratios must be positive, got {ratios!r}")

    @property
    def image_hw(self) -> tuple[float, float]:
        """``(H, W)`` in pixels."""
        return _pair(self.image_size, "image_size")

    @property
    def boxes_per_location(self) -> list[int]:
        """Boxes per cell on each map: 2 squares + 2 per aspect ratio."""
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    @property
    def map_sizes(self) -> list[tuple[int, int]]:
        """``(f_h, f_w)`` of each source map, in cells."""
        return [_pair(f, "feature_maps") for f in self.feature_maps]

    @property
    def priors_per_map(self) -> list[int]:
        """Default boxes on each source map: ``f_h * f_w`` cells times ``boxes_per_location``.
        ``make_priors`` lists them map by map, so map ``k``'s start at
        ``sum(priors_per_map[:k])``."""
        return [int(f_h * f_w) * b for (f_h, f_w), b in zip(self.map_sizes,
                                                             self.boxes_per_location)]

    @property
    def num_priors(self) -> int:
        return sum(self.priors_per_map)

    def box_sizes(self, k: int) -> np.ndarray:
        """(B, 2) normalised ``(w, h)`` of the boxes of map k, in the order of one cell."""
        height, width = self.image_hw
        if self.scales is not None:  # fractions of each side: normalised sizes directly
            s_k, s_next = self.scales[k], self.scales[k + 1]
            side_w, side_h = 1.0, 1.0
        else:  # pixels: divide by the image side
            s_k, s_next = self.min_sizes[k], self.max_sizes[k]
            side_w, side_h = float(width), float(height)
        s_prime = math.sqrt(s_k * s_next)
        sizes = [(s_k, s_k), (s_prime, s_prime)]
        for r in self.aspect_ratios[k]:
            w, h = s_k * math.sqrt(r), s_k / math.sqrt(r)
            sizes += [(w, h), (h, w)]
        return np.array(sizes, dtype=np.float64) / np.array([side_w, side_h])


def make_priors(config: PriorConfig, dtype=np.float32, xp=np):
    """The default boxes of ``config``: (P, 4) normalised centre form ``(cx, cy, w, h)``.

    Computed in float64 and cast to ``dtype``. ``xp`` (numpy or cupy) picks the device.
    """
    height, width = config.image_hw
    per_map = []
    for k, (f_h, f_w) in enumerate(config.map_sizes):
        if config.steps is None:
            step_h, step_w = height / f_h, width / f_w
        else:
            step_h, step_w = _pair(config.steps[k], "steps")
        cy = (np.arange(f_h) + config.offset) * step_h / height  # (f_h,)
        cx = (np.arange(f_w) + config.offset) * step_w / width  # (f_w,)
        sizes = config.box_sizes(k)  # (B, 2)
        boxes = np.empty((f_h, f_w, len(sizes), 4))
        boxes[..., 0] = cx[None, :, None]
        boxes[..., 1] = cy[:, None, None]
        boxes[..., 2:] = sizes[None, None, :, :]
        per_map.append(boxes.reshape(-1, 4))
    priors = np.concatenate(per_map, axis=0)
    if config.clip == "wh":
        priors[:, 2:] = np.clip(priors[:, 2:], 0.0, 1.0)
    elif config.clip == "cxcywh":
        priors = np.clip(priors, 0.0, 1.0)
    return xp.asarray(priors.astype(dtype))


def caffe_sizes(min_dim, num_maps, min_ratio, max_ratio, first_min_ratio, first_max_ratio):
    """``(min_sizes, max_sizes)`` in pixels, derived as in the authors' ``ssd_pascal*.py``.

    Ratios are percentages of ``min_dim``. Maps 2..m get min sizes at ``min_ratio``,
    ``min_ratio + step``, ... with ``step = floor((max_ratio - min_ratio) / (m - 2))``, and
    max sizes one step higher; the first map (conv4_3) gets ``first_min_ratio`` /
    ``first_max_ratio``. SSD300: (300, 6, 20, 90, 10, 20) -> 30, 60, 111, 162, 213, 264 and
    60, 111, 162, 213, 264, 315.
    """
    if not 0 < min_ratio < max_ratio <= 100:
        raise ValueError(f"caffe_sizes: need 0 < min_ratio < max_ratio <= 100 (percent of the "
                         f"image), got min_ratio={min_ratio}, max_ratio={max_ratio}")
    if not 0 < first_min_ratio < first_max_ratio <= min_ratio:
        raise ValueError(
            f"caffe_sizes: the first map's boxes must be the smallest: need 0 < "
            f"first_min_ratio < first_max_ratio <= min_ratio ({min_ratio}), got "
            f"first_min_ratio={first_min_ratio}, first_max_ratio={first_max_ratio}")
    step = int(math.floor((max_ratio - min_ratio) / (num_maps - 2)))
    min_sizes = [min_dim * first_min_ratio / 100.0]
    max_sizes = [min_dim * first_max_ratio / 100.0]
    for ratio in range(min_ratio, max_ratio + 1, step):
        min_sizes.append(min_dim * ratio / 100.0)
        max_sizes.append(min_dim * (ratio + step) / 100.0)
    if len(min_sizes) != num_maps:
        raise ValueError(f"these ratios give {len(min_sizes)} sizes for {num_maps} maps")
    return tuple(min_sizes), tuple(max_sizes)


# ----------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------

_SSD300_SIZES = caffe_sizes(300, 6, min_ratio=20, max_ratio=90, first_min_ratio=10,
                            first_max_ratio=20)

#: SSD300 exactly as the authors' Caffe ``ssd_pascal.py``: 8732 boxes.
SSD300 = PriorConfig(
    image_size=300,
    feature_maps=(38, 19, 10, 5, 3, 1),
    steps=(8, 16, 32, 64, 100, 300),
    min_sizes=_SSD300_SIZES[0],
    max_sizes=_SSD300_SIZES[1],
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    clip="none",
)

_SSD512_SIZES = caffe_sizes(512, 7, min_ratio=15, max_ratio=90, first_min_ratio=7,
                            first_max_ratio=15)

#: SSD512 as the authors' Caffe ``ssd_pascal_512.py``: 24564 boxes; sizes 35.84, 76.8,
#: 153.6, ..., 537.6 pixels (ChainerCV lists the same).
SSD512 = PriorConfig(
    image_size=512,
    feature_maps=(64, 32, 16, 8, 4, 2, 1),
    steps=(8, 16, 32, 64, 128, 256, 512),
    min_sizes=_SSD512_SIZES[0],
    max_sizes=_SSD512_SIZES[1],
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    clip="none",
)

#: torchvision's ``ssd300_vgg16`` default boxes (``DefaultBoxGenerator`` with these scales,
#: steps and ``clip=True``): the same maps and ratios as SSD300 with ssd.pytorch's COCO
#: scales. ``make_priors(TORCHVISION_SSD300)`` equals torchvision's boxes in centre form.
TORCHVISION_SSD300 = PriorConfig(
    image_size=300,
    feature_maps=(38, 19, 10, 5, 3, 1),
    steps=(8, 16, 32, 64, 100, 300),
    scales=(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    clip="wh",
)

def small_priors(image_size=128, first_min_ratio=10, first_max_ratio=20, min_ratio=20,
                 max_ratio=90) -> PriorConfig:
    """The small model's default boxes: SSD300's recipe scaled to ``image_size`` (a multiple
    of 32).

    Six source maps at strides 4, 8, 16, 32, 64, 128 (a VGG-style base with three 2x2 pools
    gives stride 4 at its third block and 8 after the fourth, then four stride-2 extra blocks,
    each ``ceil(n / 2)``), steps ``image_size / map``, sizes from the Caffe ratio rule
    (``caffe_sizes``) and SSD300's aspect ratios. At 128 px: maps 32 ... 1 and 6132 boxes. A
    smaller ``first_min_ratio`` gives the first map smaller boxes, for small objects.
    """
    if image_size % 32 or image_size < 128:
        raise ValueError(f"small_priors: image_size must be a multiple of 32 and >= 128, "
                         f"got {image_size}")
    maps = [image_size // 4]
    while len(maps) < 6:
        maps.append(-(-maps[-1] // 2))
    sizes = caffe_sizes(image_size, 6, min_ratio=min_ratio, max_ratio=max_ratio,
                        first_min_ratio=first_min_ratio, first_max_ratio=first_max_ratio)
    return PriorConfig(
        image_size=image_size,
        feature_maps=tuple(maps),
        steps=tuple(image_size / m for m in maps),
        min_sizes=sizes[0],
        max_sizes=sizes[1],
        aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
        clip="none",
    )


#: A small preset for a CPU model on 128 x 128 inputs: maps 32, 16, 8, 4, 2, 1, steps 4 ...
#: 128 pixels, sizes 12.8, 25.6, 47.36, ... pixels: 6132 boxes.
SMALL = small_priors(128)

PRESETS = {"SSD300": SSD300, "SSD512": SSD512, "TORCHVISION_SSD300": TORCHVISION_SSD300,
           "SMALL": SMALL}
