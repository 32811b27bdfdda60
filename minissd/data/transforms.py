"""SSD data augmentation, as in the paper (sec. 2.2, 3.6) and the authors' Caffe code.

Training pipeline (:class:`SSDAugmentation`), in the order of Caffe's data layer::

    (shrink a large image) -> photometric distortion -> zoom out (expand)
        -> IoU-constrained crop -> horizontal flip -> resize -> mean subtraction, HWC -> CHW

Every random step takes an explicit ``rng: numpy.random.Generator``; the same
generator state gives the same output.

Formats. Inputs are what :class:`minissd.data.VOCDataset` returns: ``image`` uint8
(H, W, 3) RGB, ``boxes`` float32 (K, 4) pixel corners (x1, y1, x2, y2) in continuous
coordinates (the whole image is (0, 0, W, H)), ``labels`` int64 (K,). Both composed
transforms return ``image`` float32 (3, size_h, size_w) with the mean subtracted,
``boxes`` float32 (K', 4) corners normalised to [0, 1] by the image width and height,
``labels`` int64 (K',). K' <= K: the crop drops boxes whose centre leaves the patch.

Choices, and where they come from
---------------------------------
- Photometric (Caffe ``ApplyDistort``, ``ssd_pascal.py`` ``distort_param``): brightness
  +-32, contrast x[0.5, 1.5], saturation x[0.5, 1.5], hue +-18, each applied with
  probability 0.5; brightness first, then contrast either before or after
  saturation/hue (probability 0.5 each order). Values are clipped to [0, 255] after
  every step (Caffe saturates to uint8 after each step; ssd.pytorch does not clip) and
  rounded once at the end. Hue is in degrees and wraps around (ssd.pytorch; Caffe
  adds 18 to OpenCV's half-degree hue and saturates instead of wrapping).
- Zoom out (Caffe ``ExpandImage``): probability 0.5, ratio uniform in [1, 4], the
  image pasted at a uniform random integer offset on a canvas filled with the mean.
- Crop (Caffe ``GenerateBatchSamples`` + ``annotated_data_layer``): each
  :class:`PatchSampler` in turn draws up to ``max_trials`` patches and keeps the first
  ``max_sample`` that satisfy its constraint; one patch is then chosen uniformly among
  all kept ones. The constraint holds when ANY ground-truth box has a Jaccard overlap
  with the patch inside [min_jaccard_overlap, max_jaccard_overlap] (Caffe
  ``SatisfySampleConstraint``). ssd.pytorch instead requires ALL boxes to pass and,
  through an ``and``/``or`` slip, never rejects a patch at all (its issues #68, #119);
  it also lacks the 0.5 option. Patches are drawn in normalised units (scale in
  [0.3, 1] of each side, aspect ratio in [0.5, 2], clamped so the patch fits), rounded
  to whole pixels, and the constraint is checked on the rounded patch. Boxes are kept
  iff their centre lies in the patch (inclusive, Caffe ``emit_type: CENTER``), then
  clipped to it. As in Caffe, the "any overlap" sampler may return a patch with no
  box centre in it: the image then trains as pure background.
- Resize: Pillow bilinear to a square (or given) size, a warp like Caffe's
  ``resize_mode: WARP``. Pillow's bilinear filter widens its support when shrinking
  (antialiasing), unlike OpenCV's. Caffe also picks a random interpolation mode; we
  don't.
- Flip: probability 0.5. Caffe flips after the resize; flipping just before it gives
  the same result (a warp commutes with a mirror) and keeps boxes in pixels.
- Mean: the VGG ImageNet means, RGB (123, 117, 104); Caffe's BGR (104, 117, 123).
- Memory: a large image is first shrunk (:func:`shrink`), each side to at most
  ``ceil(size / f)`` pixels, ``f`` the smallest fraction of a side a crop patch can keep
  (:func:`smallest_patch_fraction`; 0.3 * sqrt(0.5) = 0.212 for SSD's samplers): 1415
  pixels for a 300-pixel model (:meth:`SSDAugmentation.max_input_size`). Every patch
  the crop can draw then still spans at least ``size`` pixels, so the final resize
  still only shrinks and the output is the same augmentation up to interpolation; the
  random draws are unchanged, and an image within the limit (any VOC image at size 300)
  is not touched. Without it an 8000 x 8000 photo peaked at 7.3 GB (issue 11): float32
  colour steps on 64 M pixels, then a zoom-out canvas up to 16 times the image (a
  4000 x 3000 image: 1007 MiB of NumPy arrays, now 13 MiB at size 64). With it the
  canvas is at most ``(4 * 1415)**2 * 3`` bytes = 96 MB at size 300. The sides shrink
  independently (the final resize warps anyway; patches are drawn in fractions of each
  side and IoU is unchanged by scaling an axis), one channel at a time, so that only
  one channel of the input is ever copied.
- Recipes (:data:`AUGMENTATIONS`): "ssd" is all of the above; "no-expand" and "flip" drop
  stages for short runs, and "flip" distorts colours after the resize (cheaper on big
  images; ``AugmentationConfig.photometric_after_resize``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from minissd.boxes import iou_elementwise
from minissd.imagenet import VGG_MEAN

__all__ = [
    "VGG_MEAN",
    "PhotometricConfig",
    "ExpandConfig",
    "PatchSampler",
    "SSD_PATCH_SAMPLERS",
    "AugmentationConfig",
    "AUGMENTATIONS",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "photometric_distort",
    "expand",
    "jaccard",
    "sample_patch",
    "satisfies_constraint",
    "generate_patches",
    "crop",
    "random_crop",
    "hflip",
    "resize",
    "shrink",
    "smallest_patch_fraction",
    "normalize_boxes",
    "to_chw",
    "SSDAugmentation",
    "SSDTransformEval",
]

PIXEL_MAX = 255.0
HUE_PERIOD = 360.0  # degrees
HUE_SECTOR = 60.0  # degrees per RGB sector of the hue hexagon


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class PhotometricConfig:
    """Caffe ``distort_param`` of ``ssd_pascal.py``; each ``*_prob`` is per image."""

    brightness_prob: float = 0.5
    brightness_delta: float = 32.0
    contrast_prob: float = 0.5
    contrast_lower: float = 0.5
    contrast_upper: float = 1.5
    saturation_prob: float = 0.5
    saturation_lower: float = 0.5
    saturation_upper: float = 1.5
    hue_prob: float = 0.5
    hue_delta: float = 18.0  # degrees
    contrast_last_prob: float = 0.5  # Caffe: contrast after saturation/hue half the time
    channel_shuffle_prob: float = 0.0  # Caffe random_order_prob (0 for SSD on VOC)


@dataclasses.dataclass(frozen=True)
class ExpandConfig:
    """Caffe ``expand_param``: zoom out onto a mean-filled canvas."""

    prob: float = 0.5
    max_expand_ratio: float = 4.0


@dataclasses.dataclass(frozen=True)
class PatchSampler:
    """One Caffe ``BatchSampler``. The defaults describe the whole image.

    Scales are the patch side relative to the image side; aspect ratios are
    width/height in normalised units. A bound left ``None`` is not checked; with both
    overlap bounds ``None`` every patch is accepted.
    """

    min_scale: float = 1.0
    max_scale: float = 1.0
    min_aspect_ratio: float = 1.0
    max_aspect_ratio: float = 1.0
    min_jaccard_overlap: float | None = None
    max_jaccard_overlap: float | None = None
    max_trials: int = 1
    max_sample: int = 1

    @property
    def constrained(self) -> bool:
        return self.min_jaccard_overlap is not None or self.max_jaccard_overlap is not None


def _ssd_sampler(**constraint) -> PatchSampler:
    return PatchSampler(
        min_scale=0.3, max_scale=1.0, min_aspect_ratio=0.5, max_aspect_ratio=2.0,
        max_trials=50, max_sample=1, **constraint,
    )  # fmt: skip


#: ``ssd_pascal.py``'s batch samplers: the whole image; a patch overlapping some box by
#: at least 0.1, 0.3, 0.5, 0.7, 0.9; a patch with any overlap (max 1.0).
SSD_PATCH_SAMPLERS = (
    PatchSampler(),
    *(_ssd_sampler(min_jaccard_overlap=t) for t in (0.1, 0.3, 0.5, 0.7, 0.9)),
    _ssd_sampler(max_jaccard_overlap=1.0),
)


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """All training-augmentation numbers. ``None`` disables a stage."""

    photometric: PhotometricConfig | None = PhotometricConfig()
    expand: ExpandConfig | None = ExpandConfig()
    samplers: tuple[PatchSampler, ...] = SSD_PATCH_SAMPLERS
    flip_prob: float = 0.5
    #: Distort colours after the resize instead of first (Caffe's order): the same up to
    #: interpolation (brightness and contrast are affine and commute with a bilinear resize;
    #: saturation and hue nearly), and much cheaper on large images (BCCD's 640 x 480).
    photometric_after_resize: bool = False


#: Named recipes (``TrainConfig.augmentation``). "ssd" is the paper's. "no-expand" drops the
#: zoom-out: on 128 px inputs a 4x zoom-out shrinks objects below the smallest default box,
#: which short runs cannot afford. "flip" keeps only colour and flips: for data whose objects
#: already come at the sizes seen at test time (the built-in set, microscope images) it learns
#: far faster (the demo: mAP 0.93 against 0.71 for "no-expand" after 600 iterations).
AUGMENTATIONS = {
    "ssd": AugmentationConfig(),
    "no-expand": AugmentationConfig(expand=None),
    "flip": AugmentationConfig(expand=None, samplers=(), photometric_after_resize=True),
}


# ----------------------------------------------------------------------------- colour


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 255] -> (..., 3) HSV: hue degrees [0, 360), S [0, 1], V [0, 255]."""
    rgb = np.asarray(rgb, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    chroma = v - rgb.min(axis=-1)
    s = np.where(v > 0, chroma / np.where(v > 0, v, 1), 0)
    c = np.where(chroma > 0, chroma, 1)  # avoid 0/0; hue is 0 where chroma is 0
    h = np.where(v == r, ((g - b) / c) % 6, np.where(v == g, (b - r) / c + 2, (r - g) / c + 4))
    h = np.where(chroma > 0, h * HUE_SECTOR, 0)
    return np.stack([h, s, v], axis=-1).astype(np.float32)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`; hue taken modulo 360."""
    hsv = np.asarray(hsv, dtype=np.float32)
    h = (hsv[..., 0] % HUE_PERIOD) / HUE_SECTOR
    s, v = hsv[..., 1], hsv[..., 2]
    chroma = v * s
    x = chroma * (1 - np.abs(h % 2 - 1))
    zero = np.zeros_like(v)
    sector = np.floor(h).astype(np.int64) % 6
    r = np.choose(sector, [chroma, x, zero, zero, x, chroma])
    g = np.choose(sector, [x, chroma, chroma, x, zero, zero])
    b = np.choose(sector, [zero, zero, x, chroma, chroma, x])
    return (np.stack([r, g, b], axis=-1) + (v - chroma)[..., None]).astype(np.float32)


def adjust_saturation_hue_reference(img: np.ndarray, scale: float | None,
                                    shift: float | None) -> np.ndarray:
    """(H, W, 3) RGB in 0..255 (float) with the saturation times ``scale`` (clipped to [0, 1])
    and the hue plus ``shift`` degrees; None leaves that one alone. Through HSV and back,
    clipped to 0..255: the readable definition."""
    hsv = rgb_to_hsv(img)
    if scale is not None:
        hsv[..., 1] = np.clip(hsv[..., 1] * scale, 0, 1)
    if shift is not None:
        hsv[..., 0] = (hsv[..., 0] + shift) % HUE_PERIOD
    return np.clip(hsv_to_rgb(hsv), 0, PIXEL_MAX)


def adjust_saturation_hue(img: np.ndarray, scale: float | None,
                          shift: float | None) -> np.ndarray:
    """``adjust_saturation_hue_reference``'s numbers to the bit: a float32 image goes through
    the one-pass Numba kernel ``minissd.kernels.colour`` (about half of the augmentation's time
    otherwise), anything else through the reference."""
    if img.dtype != np.float32 or img.ndim != 3 or img.shape[2] != 3:
        return adjust_saturation_hue_reference(img, scale, shift)
    from minissd.kernels import colour  # imported here: importing minissd compiles nothing

    f = np.float32
    return colour.saturation_hue(
        np.ascontiguousarray(img), f(scale or 0), f(shift or 0), scale is not None,
        shift is not None, f(HUE_SECTOR), f(HUE_PERIOD), f(PIXEL_MAX), np.empty_like(img))


def photometric_distort(
    image: np.ndarray, rng: np.random.Generator, config: PhotometricConfig = PhotometricConfig()
) -> np.ndarray:
    """Random brightness, contrast, saturation, hue (and channel order): uint8 (H, W, 3)."""
    out = image.astype(np.float32)

    def contrast(img):
        if rng.random() < config.contrast_prob:
            img = np.clip(img * rng.uniform(config.contrast_lower, config.contrast_upper),
                          0, PIXEL_MAX)  # fmt: skip
        return img

    def saturation_and_hue(img):
        scale = None
        if rng.random() < config.saturation_prob:
            scale = rng.uniform(config.saturation_lower, config.saturation_upper)
        shift = None
        if rng.random() < config.hue_prob:
            shift = rng.uniform(-config.hue_delta, config.hue_delta)
        if scale is None and shift is None:
            return img
        return adjust_saturation_hue(img, scale, shift)

    if rng.random() < config.brightness_prob:
        delta = rng.uniform(-config.brightness_delta, config.brightness_delta)
        out = np.clip(out + delta, 0, PIXEL_MAX)
    if rng.random() < config.contrast_last_prob:
        out = contrast(saturation_and_hue(out))
    else:
        out = saturation_and_hue(contrast(out))
    if rng.random() < config.channel_shuffle_prob:
        out = out[..., rng.permutation(3)]
    return np.rint(out).astype(np.uint8)


# ----------------------------------------------------------------------------- geometry


def expand(
    image: np.ndarray,
    boxes: np.ndarray,
    rng: np.random.Generator,
    fill: Sequence[float] = VGG_MEAN,
    max_expand_ratio: float = ExpandConfig.max_expand_ratio,
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom out: paste ``image`` (H, W, 3) on a canvas ``ratio`` times larger.

    ``ratio`` ~ U(1, max_expand_ratio); the canvas is filled with ``fill`` (rounded to
    uint8) and the offset is a uniform random integer. Boxes (K, 4) pixel corners are
    shifted by the offset, so they still frame the same pixels.
    """
    height, width = image.shape[:2]
    ratio = rng.uniform(1.0, max_expand_ratio)
    new_h, new_w = int(height * ratio), int(width * ratio)
    top = int(np.floor(rng.uniform(0, new_h - height)))
    left = int(np.floor(rng.uniform(0, new_w - width)))
    canvas = np.empty((new_h, new_w, image.shape[2]), dtype=image.dtype)
    canvas[0] = np.rint(np.asarray(fill, dtype=np.float64)).astype(image.dtype)
    canvas[1:] = canvas[0]  # row by row: a pixel at a time is several times slower
    canvas[top : top + height, left : left + width] = image
    shift = np.array([left, top, left, top], dtype=np.float32)
    return canvas, (boxes + shift).astype(np.float32)


def jaccard(patch: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box (4,) with each of ``boxes`` (K, 4): float64 (K,), no +1.

    Caffe's ``JaccardOverlap``: :func:`minissd.boxes.iou_elementwise`, the project's one IoU
    formula, without input checks (the crop sampler calls this some 200 times per image).
    """
    return iou_elementwise(np.reshape(patch, 4), np.reshape(boxes, (-1, 4)))


def sample_patch(
    sampler: PatchSampler, width: int, height: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw one patch as Caffe's ``SampleBBox``: int64 (4,) pixel corners inside the image.

    scale ~ U(min_scale, max_scale), aspect ~ U(min_aspect_ratio, max_aspect_ratio)
    clamped to [scale^2, 1/scale^2] so the patch fits; normalised side lengths
    scale*sqrt(aspect) and scale/sqrt(aspect); uniform top-left corner.
    """
    scale = rng.uniform(sampler.min_scale, sampler.max_scale)
    aspect = rng.uniform(sampler.min_aspect_ratio, sampler.max_aspect_ratio)
    aspect = min(max(aspect, scale**2), 1.0 / scale**2)
    w = min(scale * np.sqrt(aspect), 1.0)
    h = min(scale / np.sqrt(aspect), 1.0)
    x0 = rng.uniform(0.0, 1.0 - w)
    y0 = rng.uniform(0.0, 1.0 - h)
    x1p, y1p = int(round(x0 * width)), int(round(y0 * height))
    x2p = min(max(int(round((x0 + w) * width)), x1p + 1), width)
    y2p = min(max(int(round((y0 + h) * height)), y1p + 1), height)
    return np.array([x1p, y1p, x2p, y2p], dtype=np.int64)


def satisfies_constraint(patch: np.ndarray, boxes: np.ndarray, sampler: PatchSampler) -> bool:
    """Caffe ``SatisfySampleConstraint``: ANY box has IoU within the sampler's bounds.

    Unconstrained samplers accept every patch; constrained ones reject all patches of
    an image without boxes.
    """
    if not sampler.constrained:
        return True
    overlap = jaccard(patch, boxes)
    ok = np.ones(overlap.shape, dtype=bool)
    if sampler.min_jaccard_overlap is not None:
        ok &= overlap >= sampler.min_jaccard_overlap
    if sampler.max_jaccard_overlap is not None:
        ok &= overlap <= sampler.max_jaccard_overlap
    return bool(ok.any())


def generate_patches(
    boxes: np.ndarray,
    width: int,
    height: int,
    samplers: Sequence[PatchSampler],
    rng: np.random.Generator,
) -> list[tuple[PatchSampler, np.ndarray]]:
    """Caffe ``GenerateBatchSamples``: the accepted ``(sampler, patch)`` pairs."""
    accepted = []
    for sampler in samplers:
        found = 0
        for _ in range(sampler.max_trials):
            if found >= sampler.max_sample:
                break
            patch = sample_patch(sampler, width, height, rng)
            if satisfies_constraint(patch, boxes, sampler):
                accepted.append((sampler, patch))
                found += 1
    return accepted


def crop(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, patch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``patch`` (4,) int pixel corners out of the image.

    Keeps the boxes whose centre lies in the patch (borders included), clips them to
    it and moves them into the patch's coordinates. Returns image
    (y2-y1, x2-x1, 3), boxes (K', 4), labels (K',).
    """
    x1, y1, x2, y2 = (int(v) for v in patch)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = (
        (centres[:, 0] >= x1) & (centres[:, 0] <= x2)
        & (centres[:, 1] >= y1) & (centres[:, 1] <= y2)
    )  # fmt: skip
    kept = boxes[keep].astype(np.float32)
    kept[:, 0::2] = np.clip(kept[:, 0::2], x1, x2) - x1
    kept[:, 1::2] = np.clip(kept[:, 1::2], y1, y2) - y1
    return image[y1:y2, x1:x2], kept, labels[keep]


def random_crop(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    samplers: Sequence[PatchSampler] = SSD_PATCH_SAMPLERS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop a patch chosen uniformly among those :func:`generate_patches` accepts.

    If no patch is accepted (possible only without an unconstrained sampler), the
    inputs come back unchanged.
    """
    height, width = image.shape[:2]
    accepted = generate_patches(boxes, width, height, samplers, rng)
    if not accepted:
        return image, boxes, labels
    _, patch = accepted[rng.integers(len(accepted))]
    return crop(image, boxes, labels, patch)


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: x -> W - x for the image (H, W, C) and boxes (K, 4)."""
    width = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow bilinear resize of uint8 (H, W, 3) or (H, W) to ``size`` = (height, width)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def smallest_patch_fraction(samplers: Sequence[PatchSampler]) -> tuple[float, float]:
    """The smallest (width, height) fraction of an image that a crop patch can keep.

    A patch is ``scale * sqrt(aspect)`` wide and ``scale / sqrt(aspect)`` high (see
    :func:`sample_patch`): narrowest at the smallest scale and aspect, lowest at the
    smallest scale and largest aspect. 1.0 when there is no sampler (no crop).
    """
    widths, heights = [1.0], [1.0]
    for s in samplers:
        scale = s.min_scale
        narrowest = min(max(s.min_aspect_ratio, scale**2), 1.0 / scale**2)
        flattest = min(max(s.max_aspect_ratio, scale**2), 1.0 / scale**2)
        widths.append(min(scale * math.sqrt(narrowest), 1.0))
        heights.append(min(scale / math.sqrt(flattest), 1.0))
    return min(widths), min(heights)


def shrink(
    image: np.ndarray, boxes: np.ndarray, max_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink each side of ``image`` (H, W, C) longer than ``max_size`` = (height, width).

    Boxes (K, 4) pixel corners are scaled alike. Each channel is resized on its own (the
    same numbers as :func:`resize` on the whole image) so that only one channel of a
    large input is copied at a time.
    """
    height, width = image.shape[:2]
    new_h, new_w = min(height, max_size[0]), min(width, max_size[1])
    if (new_h, new_w) == (height, width):
        return image, boxes
    channels = [
        resize(np.ascontiguousarray(image[:, :, c]), (new_h, new_w)) for c in range(image.shape[2])
    ]
    scale = np.array([new_w / width, new_h / height] * 2, dtype=np.float32)
    return np.stack(channels, axis=-1), (boxes * scale).astype(np.float32)


def normalize_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel corners (K, 4) -> corners in [0, 1] of an image ``width`` x ``height``."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(boxes / scale, 0.0, 1.0).astype(np.float32)


def to_chw(image: np.ndarray, mean: Sequence[float] = VGG_MEAN) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W) with ``mean`` (per channel, RGB) subtracted."""
    out = image.astype(np.float32) - np.asarray(mean, dtype=np.float32)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """An int or (height, width) -> (height, width); ValueError unless both are >= 1."""
    pair = (size, size) if np.isscalar(size) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and v >= 1 for v in pair):
        raise ValueError(f"size: expected a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


# ----------------------------------------------------------------------------- composed


@dataclasses.dataclass(frozen=True)
class SSDAugmentation:
    """The SSD training transform (see the module docstring).

    ``size``: model input, an int (square) or (height, width). Call as
    ``transform(image, boxes, labels, rng)`` -> (float32 (3, h, w), float32 (K', 4) in
    [0, 1], int64 (K',)).
    """

    size: int | tuple[int, int]
    mean: tuple[float, float, float] = VGG_MEAN
    config: AugmentationConfig = AugmentationConfig()

    def __post_init__(self):
        _as_size(self.size)

    def max_input_size(self) -> tuple[int, int]:
        """(height, width) beyond which an input is shrunk first (module docstring)."""
        size_h, size_w = _as_size(self.size)
        frac_w, frac_h = smallest_patch_fraction(self.config.samplers)
        return math.ceil(size_h / frac_h), math.ceil(size_w / frac_w)

    def __call__(self, image, boxes, labels, rng: np.random.Generator):
        cfg = self.config
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64)
        image, boxes = shrink(image, boxes, self.max_input_size())
        late_photometric = cfg.photometric is not None and cfg.photometric_after_resize
        if cfg.photometric is not None and not late_photometric:
            image = photometric_distort(image, rng, cfg.photometric)
        if cfg.expand is not None and rng.random() < cfg.expand.prob:
            image, boxes = expand(image, boxes, rng, self.mean, cfg.expand.max_expand_ratio)
        if cfg.samplers:
            image, boxes, labels = random_crop(image, boxes, labels, rng, cfg.samplers)
        if rng.random() < cfg.flip_prob:
            image, boxes = hflip(image, boxes)
        height, width = image.shape[:2]
        boxes = normalize_boxes(boxes, width, height)
        image = resize(image, _as_size(self.size))
        if late_photometric:
            image = photometric_distort(image, rng, cfg.photometric)
        return to_chw(image, self.mean), boxes, labels


@dataclasses.dataclass(frozen=True)
class SSDTransformEval:
    """The test-time transform: resize, subtract the mean; boxes normalised, none dropped.

    ``transform(image, boxes, labels, rng=None)``, same outputs as :class:`SSDAugmentation`.
    """

    size: int | tuple[int, int]
    mean: tuple[float, float, float] = VGG_MEAN

    def __post_init__(self):
        _as_size(self.size)

    def __call__(self, image, boxes, labels, rng: np.random.Generator | None = None):
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        height, width = image.shape[:2]
        out = to_chw(resize(image, _as_size(self.size)), self.mean)
        return out, normalize_boxes(boxes, width, height), np.asarray(labels, dtype=np.int64)
