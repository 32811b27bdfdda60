"""A built-in detection dataset of drawn shapes, written in the VOC layout.

``make_synthetic_voc(root, num_train, num_test)`` draws images of
:data:`SYNTHETIC_CLASSES` (filled circle, filled square, triangle, ring, cross) and
writes them as a real VOC-format dataset, so it is read back with the same
:class:`minissd.data.VOCDataset` as PASCAL VOC::

    root/JPEGImages/000001.jpg ...
    root/Annotations/000001.xml ...
    root/ImageSets/Main/{train,test,trainval}.txt   (and val.txt if num_val > 0)

    names = make_synthetic_voc("data/shapes", 2000, 500)
    train = VOCDataset("data/shapes", "train", class_names=names)

What makes it not trivial: 1 to 4 objects per image, sides from 12% to 70% of the
image, aspect ratios 0.7 to 1.4, random colours at a guaranteed minimum contrast to
the local background, partial overlaps (IoU up to 0.3; a later shape may cover at
most 25% of an earlier one's box), backgrounds with a colour gradient, Gaussian
noise, and distractor strokes (thin lines and arcs), all saved as JPEG. What keeps
it learnable: the shapes are large, opaque and distinct.

Boxes are exact: each shape is drawn inside whole-pixel bounds [x1, x2) x [y1, y2),
and its XML stores xmin = x1 + 1, xmax = x2 (VOC's 1-based inclusive pixels), which
the reader turns back into (x1, y1, x2, y2).

Everything random comes from ``numpy.random.default_rng(seed)``: the same seed (and
Pillow version, for the JPEG encoder) writes byte-identical files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from minissd.boxes import box_area, box_intersection, iou_elementwise

__all__ = ["SYNTHETIC_CLASSES", "SyntheticConfig", "make_synthetic_voc", "draw_scene"]

#: Object classes, in label order.
SYNTHETIC_CLASSES = ("circle", "square", "triangle", "ring", "cross")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Every number that shapes the synthetic images."""

    min_objects: int = 1
    max_objects: int = 4
    min_side: float = 0.12  # object side, fraction of the image side
    max_side: float = 0.70
    min_aspect: float = 0.7  # width / height
    max_aspect: float = 1.4
    max_overlap_iou: float = 0.3  # between any two objects of one image
    max_occlusion: float = 0.25  # of an object's box that later objects may cover
    placement_trials: int = 50  # attempts to place each object before giving up
    min_contrast: float = 100.0  # L1 RGB distance between an object and the background
    noise_std: float = 8.0  # Gaussian pixel noise
    max_distractors: int = 6  # thin lines and arcs
    distractor_width: tuple[int, int] = (1, 3)  # pixels, inclusive range
    ring_thickness: tuple[float, float] = (0.15, 0.3)  # of the ring's smaller side
    cross_thickness: tuple[float, float] = (0.25, 0.4)  # of the cross's smaller side
    jpeg_quality: int = 90


def _background(size: int, rng: np.random.Generator, cfg: SyntheticConfig) -> Image.Image:
    """A two-colour linear gradient in a random direction, with distractor strokes."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = np.clip(0.5 + (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle), 0, 1)[..., None]
    image = Image.fromarray(np.rint(c0 * (1 - t) + c1 * t).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(0, cfg.max_distractors + 1)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        width = int(rng.integers(cfg.distractor_width[0], cfg.distractor_width[1] + 1))
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(-0.1 * size, 1.1 * size, 4))
        if rng.random() < 0.5:
            draw.line((x0, y0, x1, y1), fill=colour, width=width)
        else:
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            start = float(rng.uniform(0, 360))
            draw.arc(box, start, start + float(rng.uniform(30, 180)), fill=colour, width=width)
    return image


def _colour(background_rgb: np.ndarray, rng: np.random.Generator, cfg: SyntheticConfig):
    """A random colour at least ``min_contrast`` (L1) away from the background colour."""
    for _ in range(100):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background_rgb).sum() >= cfg.min_contrast:
            return tuple(int(v) for v in colour)
    return tuple(int(v) for v in np.where(background_rgb < 128, 255, 0))


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, box, colour, rng, cfg):
    """Draw ``name`` filling exactly the pixels [x1, x2) x [y1, y2) of ``box``."""
    x1, y1, x2, y2 = box
    right, bottom = x2 - 1, y2 - 1  # Pillow's bounds are inclusive
    short = min(x2 - x1, y2 - y1)
    if name == "circle":
        draw.ellipse((x1, y1, right, bottom), fill=colour)
    elif name == "square":
        draw.rectangle((x1, y1, right, bottom), fill=colour)
    elif name == "ring":  # the background shows through the hole
        thickness = max(2, int(round(short * rng.uniform(*cfg.ring_thickness))))
        draw.ellipse((x1, y1, right, bottom), outline=colour, width=thickness)
    elif name == "triangle":
        corners = {
            "up": [(x1, bottom), ((x1 + right) / 2, y1), (right, bottom)],
            "down": [(x1, y1), ((x1 + right) / 2, bottom), (right, y1)],
            "left": [(right, y1), (x1, (y1 + bottom) / 2), (right, bottom)],
            "right": [(x1, y1), (right, (y1 + bottom) / 2), (x1, bottom)],
        }
        draw.polygon(corners[("up", "down", "left", "right")[rng.integers(4)]], fill=colour)
    elif name == "cross":
        half = max(1, int(round(short * rng.uniform(*cfg.cross_thickness) / 2)))
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        draw.rectangle((x1, cy - half, right, cy + half - 1), fill=colour)
        draw.rectangle((cx - half, y1, cx + half - 1, bottom), fill=colour)
    else:
        raise ValueError(f"unknown shape {name!r}; known: {SYNTHETIC_CLASSES}")


def draw_scene(size: int, rng: np.random.Generator, cfg: SyntheticConfig = SyntheticConfig()):
    """One image and its objects.

    Returns ``image`` uint8 (size, size, 3), ``boxes`` int64 (K, 4) pixel corners
    (x1, y1, x2, y2) with the shape inside [x1, x2) x [y1, y2), ``labels`` int64 (K,)
    indexing :data:`SYNTHETIC_CLASSES`.
    """
    image = _background(size, rng, cfg)
    draw = ImageDraw.Draw(image)
    boxes, labels = [], []
    for _ in range(rng.integers(cfg.min_objects, cfg.max_objects + 1)):
        for _ in range(cfg.placement_trials):
            side = rng.uniform(cfg.min_side, cfg.max_side) * size
            aspect = rng.uniform(cfg.min_aspect, cfg.max_aspect)
            w = int(np.clip(round(side * np.sqrt(aspect)), 4, size))
            h = int(np.clip(round(side / np.sqrt(aspect)), 4, size))
            x1, y1 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            box = (x1, y1, x1 + w, y1 + h)
            placed = np.array(boxes, dtype=np.float64).reshape(-1, 4)
            covered = box_intersection(placed, box) / box_area(placed)  # of each placed box
            if ((iou_elementwise(placed, box) <= cfg.max_overlap_iou).all()
                    and (covered <= cfg.max_occlusion).all()):
                break
        else:
            continue  # no room left for this object
        label = int(rng.integers(len(SYNTHETIC_CLASSES)))
        pixels = np.asarray(image)
        local = pixels[box[1] : box[3], box[0] : box[2]].reshape(-1, 3).mean(axis=0)
        colour = _colour(local, rng, cfg)
        _draw_shape(draw, SYNTHETIC_CLASSES[label], box, colour, rng, cfg)
        boxes.append(box)
        labels.append(label)
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels + rng.normal(0.0, cfg.noise_std, pixels.shape)
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return (
        image,
        np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
    )


def _annotation_xml(image_id: str, size: int, boxes, labels) -> str:
    objects = "".join(
        f"  <object>\n    <name>{SYNTHETIC_CLASSES[label]}</name>\n"
        f"    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
        f"    <bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>\n  </object>\n"
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist())
    )
    return (
        f"<annotation>\n  <folder>synthetic</folder>\n  <filename>{image_id}.jpg</filename>\n"
        f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n"
        f"{objects}</annotation>\n"
    )


def make_synthetic_voc(
    root: str | Path,
    num_train: int,
    num_test: int,
    image_size: int = 128,
    seed: int = 0,
    num_val: int = 0,
    config: SyntheticConfig = SyntheticConfig(),
) -> tuple[str, ...]:
    """Write the synthetic dataset in the VOC layout under ``root``; return the class names.

    Images are ``image_size`` x ``image_size``. Ids are consecutive ("000001", ...): the
    first ``num_train`` go to train.txt, the next ``num_val`` to val.txt (written only
    when ``num_val > 0``), the last ``num_test`` to test.txt; trainval.txt lists train
    and val. Existing files with the same names are overwritten.
    """
    for name, value in (("num_train", num_train), ("num_test", num_test), ("num_val", num_val)):
        if not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
    if num_train + num_val == 0 or num_test == 0:
        raise ValueError("num_train + num_val and num_test must be >= 1 (no empty split files)")
    if not isinstance(image_size, int | np.integer) or image_size < 16:
        raise ValueError(f"image_size: expected an int >= 16, got {image_size!r}")
    root = Path(root)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"{i:06d}" for i in range(1, num_train + num_val + num_test + 1)]
    for image_id in ids:
        image, boxes, labels = draw_scene(int(image_size), rng, config)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg",
                                    quality=config.jpeg_quality)  # fmt: skip
        xml = _annotation_xml(image_id, int(image_size), boxes, labels)
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    splits = {
        "train": ids[:num_train],
        "val": ids[num_train : num_train + num_val],
        "trainval": ids[: num_train + num_val],
        "test": ids[num_train + num_val :],
    }
    for name, members in splits.items():
        if members:
            (root / "ImageSets" / "Main" / f"{name}.txt").write_text(
                "".join(f"{i}\n" for i in members)
            )
    return SYNTHETIC_CLASSES
