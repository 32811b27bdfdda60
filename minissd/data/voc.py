"""PASCAL VOC-format detection datasets (VOC2007, VOC2012, 07+12, BCCD, your own).

Layout read (the VOCdevkit layout)::

    <dataset folder>/Annotations/<id>.xml
    <dataset folder>/JPEGImages/<id>.jpg      (or the XML's <filename>)
    <dataset folder>/ImageSets/Main/<split>.txt   (one image id per line)

``root`` is either such a dataset folder itself, or a folder holding
``VOC<year>/`` or ``VOCdevkit/VOC<year>/`` (then pass ``year``).

Item format (``dataset[i]`` is a :class:`Sample`):

    image      uint8 (H, W, 3), RGB (grey, CMYK, palette and RGBA files are converted)
    boxes      float32 (K, 4), corners (x1, y1, x2, y2) in pixels
    labels     int64 (K,), 0-based index into ``dataset.class_names``
    difficult  bool (K,)
    image_id   str

Box coordinate convention
-------------------------
VOC XML stores 1-based, inclusive pixel indices: ``xmin=1, xmax=W`` covers the whole
width. We return 0-based *continuous* corners, where pixel column ``j`` covers
``[j, j + 1)``::

    x1 = xmin - 1,  y1 = ymin - 1,  x2 = xmax,  y2 = ymax

So the whole image is ``(0, 0, W, H)``, and ``x2 - x1 = xmax - xmin + 1`` is exactly
the width the VOC devkit computes (its "+1"). An IoU computed on these boxes
without any +1 therefore equals the devkit's IoU. (ChainerCV subtracts 1 from all
four values instead, which makes boxes one pixel narrower than the devkit's.)
Coordinates may be written as decimals ("12.5"); they are read as floats.

Bad data: one rule per case
---------------------------
All annotations are parsed and checked eagerly when the dataset is built (XML only,
plus each image's header), so problems surface before training, never mid-epoch.
Errors are collected over the whole split and raised once, naming every file and
field (up to ``MAX_LISTED`` of them). Repairs and skips are counted in
``dataset.report`` and announced by a single :class:`VOCDataWarning`.

=============================  ==================================================
case                           rule
=============================  ==================================================
missing split file             ``VOCFormatError`` naming the path and the splits
                               that do exist
empty split file               ``VOCFormatError`` (an empty dataset would make a
                               training loop spin without data)
split line with >1 field       ``VOCFormatError`` naming file and line (per-class
                               files such as ``aeroplane_train.txt`` are not splits)
duplicate id in a split        kept once; counted (``duplicate_ids``)
missing XML file               ``VOCFormatError`` naming the path
malformed / truncated XML      ``VOCFormatError`` naming the file, line and column
missing or non-numeric field   ``VOCFormatError`` naming file, object and field
                               (``object[3]/bndbox/xmin``); ``difficult`` and
                               ``truncated`` default to 0 when absent
missing <size>                 the size is read from the image header
<size> differs from the image  ``VOCFormatError`` naming the file and both sizes
unknown class name             ``VOCFormatError`` naming file and name; with
                               ``unknown_classes="skip"`` (train on a subset of
                               classes) the object is dropped and counted
                               (``unknown_class``)
inverted box (xmax < xmin)     ``VOCFormatError`` naming file, object and values:
                               a swapped or differently ordered format must not
                               be guessed
zero-size box (xmax == xmin    dropped; counted (``zero_size``). In VOC's
or ymax == ymin)               inclusive convention this is a 1-pixel box, which
                               is what a labelling tool writes for a click
                               without a drag (BCCD BloodImage_00338 and
                               BloodImage_00343); the smallest real box in
                               VOC2007 test is 5 pixels wide
box partly outside the image   clipped to the image; counted (``clipped``)
box entirely outside image     dropped; counted (``outside``)
difficult object               kept and flagged (``keep_difficult=True``, the
                               authors' Caffe training); dropped and counted
                               (``difficult_dropped``) with ``keep_difficult=False``
image left with no objects     kept as a pure-background image; counted
                               (``empty_images``)
missing image file             ``VOCImageError`` naming the id and paths tried
unreadable image               ``VOCImageError`` naming the file: header checked
                               for every image at construction, plus a missing
                               JPEG end marker (a truncated download);
                               ``verify_images="full"`` decodes every image. A
                               file that still fails later raises
                               ``VOCImageError`` naming it
=============================  ==================================================
"""

from __future__ import annotations

import dataclasses
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

__all__ = [
    "VOC_CLASSES",
    "VOCDataset",
    "ConcatDataset",
    "Sample",
    "Annotation",
    "DataReport",
    "VOCDataError",
    "VOCFormatError",
    "VOCImageError",
    "VOCDataWarning",
    "parse_voc_xml",
    "ParsedXML",
    "read_image",
]

#: The 20 PASCAL VOC object classes, in the devkit's (alphabetical) order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

#: At most this many problems are spelled out in one error or warning message.
MAX_LISTED = 20

#: Bytes at the end of a JPEG searched for the end-of-image marker.
JPEG_TAIL_BYTES = 4096
JPEG_END_MARKER = b"\xff\xd9"

_BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


# ----------------------------------------------------------------------------- errors


class VOCDataError(ValueError):
    """Base class: a VOC-format dataset cannot be read. ``problems`` lists each one."""

    def __init__(self, problems: str | Sequence[str], header: str = ""):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = self.problems[:MAX_LISTED]
        more = len(self.problems) - len(lines)
        text = "\n  ".join(lines) + (f"\n  ... and {more} more" if more > 0 else "")
        if header or len(self.problems) > 1:
            text = f"{header or f'{len(self.problems)} problems'}:\n  {text}"
        super().__init__(text)


class VOCFormatError(VOCDataError):
    """A split file or an annotation is missing or malformed."""


class VOCImageError(VOCDataError):
    """An image file is missing, unreadable, or not the size its annotation says."""


class VOCDataWarning(UserWarning):
    """Some objects were repaired or skipped; the details are in ``dataset.report``."""


# ----------------------------------------------------------------------------- records


class Sample(NamedTuple):
    """One dataset item (see the module docstring for shapes and conventions)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    image_id: str


@dataclasses.dataclass(frozen=True)
class Annotation:
    """Everything known about one image without decoding it.

    ``boxes`` float32 (K, 4) pixel corners (0-based continuous, see module docstring),
    ``labels`` int64 (K,), ``difficult`` and ``truncated`` bool (K,).
    """

    image_id: str
    image_path: Path
    xml_path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    truncated: np.ndarray


@dataclasses.dataclass
class DataReport:
    """What was repaired or skipped while reading, per case (see the rule table).

    Each case maps to a list of human-readable entries naming file and object.
    """

    zero_size: list[str] = dataclasses.field(default_factory=list)
    clipped: list[str] = dataclasses.field(default_factory=list)
    outside: list[str] = dataclasses.field(default_factory=list)
    unknown_class: list[str] = dataclasses.field(default_factory=list)
    difficult_dropped: list[str] = dataclasses.field(default_factory=list)
    duplicate_ids: list[str] = dataclasses.field(default_factory=list)
    empty_images: list[str] = dataclasses.field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of entries per case, e.g. ``{"zero_size": 2, "clipped": 0, ...}``."""
        return {f.name: len(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def total(self) -> int:
        return sum(self.counts().values())

    def merge(self, other: DataReport) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))

    def summary(self, listed: int = 3) -> str:
        """One line per non-empty case with a few examples, or ``"nothing skipped"``."""
        lines = []
        for case, entries in ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self)):
            if entries:
                examples = "; ".join(entries[:listed]) + ("; ..." if len(entries) > listed else "")
                lines.append(f"{case}: {len(entries)} ({examples})")
        return "\n".join(lines) if lines else "nothing skipped"

    def __str__(self) -> str:
        return self.summary()


# ----------------------------------------------------------------------------- XML parsing


@dataclasses.dataclass
class _RawObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written (1-based)
    difficult: bool
    truncated: bool


def _number(elem: ET.Element, path: str, where: str, problems: list[str]) -> float | None:
    node = elem.find(path)
    if node is None or node.text is None or not node.text.strip():
        problems.append(f"{where}/{path}: missing")
        return None
    try:
        return float(node.text.strip())
    except ValueError:
        problems.append(f"{where}/{path}: expected a number, got {node.text.strip()!r}")
        return None


def _flag(elem: ET.Element, path: str, where: str, problems: list[str]) -> bool:
    value = _number(elem, path, where, []) if elem.find(path) is not None else 0.0
    if value is None or value not in (0.0, 1.0):
        text = elem.findtext(path)
        problems.append(f"{where}/{path}: expected 0 or 1, got {text!r}")
        return False
    return bool(value)


class ParsedXML(NamedTuple):
    size: tuple[int, int] | None  # (width, height), None when the file has no <size>
    filename: str | None  # the <filename> element
    objects: list[_RawObject]  # boxes as written: 1-based inclusive pixels


def parse_voc_xml(xml_path: str | Path) -> ParsedXML:
    """Parse one VOC annotation file, checking every field.

    Objects keep the XML's 1-based inclusive coordinates; no class or geometry rule is
    applied here. Raises :class:`VOCFormatError` naming the file and every bad field.
    """
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        raise VOCFormatError(
            f"{xml_path}: malformed XML at line {line}, column {column} ({exc})"
        ) from None
    except OSError as exc:
        raise VOCFormatError(f"{xml_path}: cannot read annotation ({exc.strerror})") from None
    problems: list[str] = []
    size = None
    if root.find("size") is not None:
        width = _number(root, "size/width", str(xml_path), problems)
        height = _number(root, "size/height", str(xml_path), problems)
        if width is not None and height is not None:
            if width >= 1 and height >= 1 and width == int(width) and height == int(height):
                size = (int(width), int(height))
            elif width != 0 or height != 0:  # 0 x 0 is a common "unknown" placeholder
                problems.append(f"{xml_path}/size: invalid width x height {width} x {height}")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"{xml_path}: object[{k}]"
        name = (obj.findtext("name") or "").strip()
        if not name:
            problems.append(f"{where}/name: missing")
        coords = [_number(obj, f"bndbox/{field}", where, problems) for field in _BOX_FIELDS]
        difficult = _flag(obj, "difficult", where, problems)
        truncated = _flag(obj, "truncated", where, problems)
        if name and None not in coords:
            objects.append(_RawObject(name, tuple(coords), difficult, truncated))
    if problems:
        raise VOCFormatError(problems)
    filename = (root.findtext("filename") or "").strip() or None
    return ParsedXML(size, filename, objects)


# ----------------------------------------------------------------------------- images


def _image_header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header; raises VOCImageError naming the file."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise VOCImageError(f"{path}: not a readable image ({exc})") from None


def _jpeg_has_end_marker(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - JPEG_TAIL_BYTES))
        return JPEG_END_MARKER in f.read()


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB; VOCImageError names the file."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # raises on truncated pixel data
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise VOCImageError(f"{path}: cannot decode image ({exc})") from None


def _check_image(path: Path, verify: str) -> tuple[int, int]:
    """Header check (and full decode for verify='full' or a JPEG without end marker)."""
    size = _image_header_size(path)
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    if verify == "full" or (is_jpeg and not _jpeg_has_end_marker(path)):
        try:
            with Image.open(path) as img:
                img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise VOCImageError(f"{path}: image data is truncated or corrupt ({exc})") from None
    return size


# ----------------------------------------------------------------------------- folders


def _resolve_folder(root: Path, year: str | int | None) -> Path:
    """The folder that holds Annotations/ (see the module docstring)."""
    if (root / "Annotations").is_dir():
        if year is not None and root.name != f"VOC{year}":
            raise ValueError(
                f"year={year!r} was given but root {root} is itself a dataset folder "
                f"(it has Annotations/); pass year=None"
            )
        return root
    if year is None:
        raise VOCFormatError(
            f"{root}: no Annotations/ folder here; for a VOCdevkit folder pass year "
            f"(e.g. year='2007')"
        )
    for candidate in (root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"):
        if (candidate / "Annotations").is_dir():
            return candidate
    raise VOCFormatError(
        f"{root}: found neither VOC{year}/Annotations nor VOCdevkit/VOC{year}/Annotations"
    )


def _read_split(folder: Path, split: str) -> list[str]:
    path = folder / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt") if "_" not in p.stem)
        raise VOCFormatError(
            f"{path}: split file not found (splits here: {', '.join(available) or 'none'})"
        )
    ids, problems = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if len(fields) > 1:
            problems.append(
                f"{path}: line {number} has {len(fields)} fields {fields!r}; a split file "
                f"lists one image id per line"
            )
        elif fields:
            ids.append(fields[0])
    if problems:
        raise VOCFormatError(problems)
    if not ids:
        raise VOCFormatError(f"{path}: split file lists no image ids")
    return ids


def _find_image(folder: Path, image_id: str, xml_filename: str | None) -> Path:
    tried = [folder / "JPEGImages" / f"{image_id}.jpg"]
    if xml_filename:
        tried.append(folder / "JPEGImages" / Path(xml_filename).name)
    for path in tried:
        if path.is_file():
            return path
    raise VOCImageError(
        f"{folder}: image {image_id!r} not found (tried {', '.join(str(p) for p in tried)})"
    )


# ----------------------------------------------------------------------------- conversion


def _convert_objects(
    xml_path: Path,
    raw: list[_RawObject],
    width: int,
    height: int,
    class_index: dict[str, int],
    keep_difficult: bool,
    unknown_classes: str,
    report: DataReport,
    problems: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply the rule table to one image's objects; pixel corners out."""
    boxes, labels, difficult, truncated = [], [], [], []
    for k, obj in enumerate(raw):
        where = f"{xml_path.name} object[{k}]"
        xmin, ymin, xmax, ymax = obj.box
        if obj.name not in class_index:
            if unknown_classes == "skip":
                report.unknown_class.append(f"{where} {obj.name!r}")
            else:
                problems.append(
                    f"{xml_path}: object[{k}]/name: unknown class {obj.name!r} "
                    f"(known: {', '.join(class_index)})"
                )
            continue
        if xmax < xmin or ymax < ymin:
            problems.append(
                f"{xml_path}: object[{k}]/bndbox: inverted box xmin={xmin:g} ymin={ymin:g} "
                f"xmax={xmax:g} ymax={ymax:g}"
            )
            continue
        if xmax == xmin or ymax == ymin:
            report.zero_size.append(f"{where} ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})")
            continue
        x1, y1, x2, y2 = xmin - 1.0, ymin - 1.0, xmax, ymax
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        described = f"{where} ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) in {width}x{height}"
        if cx2 <= cx1 or cy2 <= cy1:
            report.outside.append(described)
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            report.clipped.append(described)
        if obj.difficult and not keep_difficult:
            report.difficult_dropped.append(where)
            continue
        boxes.append((cx1, cy1, cx2, cy2))
        labels.append(class_index[obj.name])
        difficult.append(obj.difficult)
        truncated.append(obj.truncated)
    return (
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.asarray(difficult, dtype=bool),
        np.asarray(truncated, dtype=bool),
    )


# ----------------------------------------------------------------------------- dataset


class VOCDataset:
    """A VOC-format detection dataset, validated at construction.

    Args:
        root: a dataset folder (holding ``Annotations/``, ``JPEGImages/``,
            ``ImageSets/Main/``), or a folder holding ``VOC<year>/`` or
            ``VOCdevkit/VOC<year>/``.
        split: a split name (``"trainval"``, ``"test"``...), or a list whose entries are
            split names or ``(year, split)`` pairs, read as their union; e.g. VOC 07+12:
            ``VOCDataset(devkit, [("2007", "trainval"), ("2012", "trainval")])``.
        year: the VOC year for a devkit ``root`` (``"2007"``, ``"2012"``).
        class_names: object class names; ``labels`` index into it (0-based).
        keep_difficult: keep objects marked difficult (flagged in ``difficult``), as the
            authors' Caffe training does; False drops them (counted in the report).
        unknown_classes: ``"error"`` (default) or ``"skip"`` objects whose class is not in
            ``class_names`` (counted), e.g. to train on a subset of classes.
        verify_images: ``"header"`` (default: open every image's header, check its size
            and a JPEG's end marker) or ``"full"`` (decode every image once).
        warn: emit one :class:`VOCDataWarning` if anything was repaired or skipped.

    ``dataset[i]`` is a :class:`Sample`; ``dataset.annotation(i)`` the
    :class:`Annotation` without decoding the image; ``dataset.report`` the
    :class:`DataReport`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str | tuple[str | int, str]] = "trainval",
        year: str | int | None = None,
        *,
        class_names: Sequence[str] = VOC_CLASSES,
        keep_difficult: bool = True,
        unknown_classes: str = "error",
        verify_images: str = "header",
        warn: bool = True,
    ):
        if unknown_classes not in ("error", "skip"):
            raise ValueError(f"unknown_classes must be 'error' or 'skip', got {unknown_classes!r}")
        if verify_images not in ("header", "full"):
            raise ValueError(f"verify_images must be 'header' or 'full', got {verify_images!r}")
        self.root = Path(root)
        self.class_names = tuple(class_names)
        if len(set(self.class_names)) != len(self.class_names) or not self.class_names:
            raise ValueError(f"class_names must be unique and non-empty, got {self.class_names}")
        self.keep_difficult = keep_difficult
        parts = [split] if isinstance(split, str) else list(split)
        self.splits = [
            (None if year is None else str(year), p) if isinstance(p, str) else (str(p[0]), p[1])
            for p in parts
        ]
        if not self.splits:
            raise ValueError("split: expected a split name or a non-empty list of splits")

        class_index = {name: i for i, name in enumerate(self.class_names)}
        self.report = DataReport()
        self._annotations: list[Annotation] = []
        problems: list[str] = []
        only_image_problems = True
        seen: set[tuple[Path, str]] = set()
        for part_year, part_split in self.splits:
            folder = _resolve_folder(self.root, part_year)
            for image_id in _read_split(folder, part_split):
                if (folder, image_id) in seen:
                    self.report.duplicate_ids.append(f"{folder.name}/{image_id} ({part_split})")
                    continue
                seen.add((folder, image_id))
                try:
                    self._annotations.append(
                        self._load_annotation(
                            folder, image_id, class_index, unknown_classes, verify_images, problems
                        )
                    )
                except VOCDataError as exc:
                    problems.extend(exc.problems)
                    only_image_problems &= isinstance(exc, VOCImageError)
        if problems:
            kind = VOCImageError if only_image_problems else VOCFormatError
            raise kind(problems, header=f"{self!r}: {len(problems)} problem(s) in the data")
        if warn and self.report.total():
            warnings.warn(
                f"{self!r}: {self.report.total()} objects or images repaired, skipped or empty; "
                f"see dataset.report:\n{self.report.summary()}",
                VOCDataWarning,
                stacklevel=2,
            )

    def _load_annotation(self, folder, image_id, class_index, unknown_classes, verify, problems):
        xml_path = folder / "Annotations" / f"{image_id}.xml"
        if not xml_path.is_file():
            raise VOCFormatError(f"{xml_path}: annotation file not found (id {image_id!r})")
        size, xml_filename, raw = parse_voc_xml(xml_path)
        image_path = _find_image(folder, image_id, xml_filename)
        width, height = _check_image(image_path, verify)
        if size is not None and size != (width, height):
            raise VOCFormatError(
                f"{xml_path}/size: says {size[0]}x{size[1]} but image {image_path.name} "
                f"is {width}x{height}"
            )
        report = DataReport()
        local_problems: list[str] = []
        boxes, labels, difficult, truncated = _convert_objects(
            xml_path, raw, width, height, class_index, self.keep_difficult,
            unknown_classes, report, local_problems,
        )  # fmt: skip
        if local_problems:
            raise VOCFormatError(local_problems)
        if len(boxes) == 0:
            report.empty_images.append(f"{folder.name}/{image_id}")
        self.report.merge(report)
        return Annotation(
            image_id, image_path, xml_path, width, height, boxes, labels, difficult, truncated
        )

    # -- access

    def __len__(self) -> int:
        return len(self._annotations)

    @property
    def ids(self) -> list[str]:
        return [a.image_id for a in self._annotations]

    def annotation(self, index: int) -> Annotation:
        """The checked annotation of image ``index`` (no image decoding)."""
        return self._annotations[index]

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        a = self._annotations[index]
        image = read_image(a.image_path)
        if image.shape[:2] != (a.height, a.width):
            raise VOCImageError(
                f"{a.image_path}: decoded as {image.shape[1]}x{image.shape[0]}, "
                f"annotation says {a.width}x{a.height}"
            )
        return Sample(image, a.boxes.copy(), a.labels.copy(), a.difficult.copy(), a.image_id)

    def __repr__(self) -> str:
        splits = "+".join(f"{y}/{s}" if y is not None else s for y, s in self.splits)
        n = f", {len(self._annotations)} images" if hasattr(self, "_annotations") else ""
        return f"VOCDataset({str(self.root)!r}, {splits}{n})"


class ConcatDataset:
    """Several datasets back to back (e.g. a VOC set and a synthetic set).

    All parts must share ``class_names`` (when they have them) so labels mean the same.
    """

    def __init__(self, datasets: Sequence):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets: expected at least one dataset")
        names = {tuple(d.class_names) for d in self.datasets if hasattr(d, "class_names")}
        if len(names) > 1:
            raise ValueError(f"datasets have different class_names: {sorted(names)}")
        self.class_names = names.pop() if names else None
        self._offsets = np.cumsum([0] + [len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, index: int) -> tuple[object, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        index %= len(self)
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.datasets[part], index - int(self._offsets[part])

    def __getitem__(self, index: int):
        dataset, local = self._locate(index)
        return dataset[local]

    def annotation(self, index: int) -> Annotation:
        dataset, local = self._locate(index)
        return dataset.annotation(local)
