"""PASCAL VOC-format detection datasets (VOC2007, VOC2012, 07+12, BCCD, your own).

Layout read (the VOCdevkit layout)::

    <dataset folder>/Annotations/<id>.xml
    <dataset folder>/JPEGImages/<id>.jpg      (or the XML's <filename>)
    <dataset folder>/ImageSets/Main/<split>.txt   (one image id per line)

``root`` is either such a dataset folder itself, or a folder holding
``VOC<year>/`` or ``VOCdevkit/VOC<year>/`` (then pass ``year``).

Item format (``dataset[i]`` is a :class:`Sample`):

    image      uint8 (H, W, 3), RGB (other pixel formats converted, see the rules)
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
All annotations are parsed and checked eagerly when the dataset is built (the XML,
each image's header and each JPEG's marker structure), so problems surface before
training, not mid-epoch. Errors are collected over the whole split and raised once,
naming every file and field (up to ``MAX_LISTED`` of them). Repairs and skips are
counted in ``dataset.report`` and announced by a single :class:`VOCDataWarning`.

=============================  ==================================================
case                           rule
=============================  ==================================================
dataset folder does not exist  ``VOCFormatError``: ``<path>: no such folder``
folder without the VOC layout  ``VOCFormatError`` naming the folder and what was
                               expected: ``Annotations/``, ``JPEGImages/``,
                               ``ImageSets/Main/``, or ``VOC<year>/`` with
                               ``year`` (naming the ``VOC*`` folders found)
missing split file             ``VOCFormatError`` naming the path and the splits
                               that do exist
empty split file               ``VOCFormatError`` (an empty dataset would make a
                               training loop spin without data)
split line with >1 field       ``VOCFormatError`` naming file and line (per-class
                               files such as ``aeroplane_train.txt`` are not splits)
duplicate id in a split        kept once; counted (``duplicate_ids``)
missing XML file               ``VOCFormatError`` naming the path
malformed / truncated XML      ``VOCFormatError`` naming the file, line and column
missing, empty or non-numeric  ``VOCFormatError`` naming file, object and field
field                          (``object[3]/bndbox/xmin``). Numbers are decimal
                               (``12``, ``-3``, ``12.5``, ``1e2``): ``nan``,
                               ``inf``, ``1e999`` (overflows), ``0x10`` and
                               ``1_000`` are errors although Python's ``float``
                               takes most of them (a NaN box passes every later
                               check and silently lowers the AP). ``difficult``
                               and ``truncated`` default to 0 when absent
missing <size>                 the size is read from the image header
bad <size> field               ``VOCFormatError`` naming the field: width and
                               height are whole numbers >= 1, or both 0 (a
                               common "unknown": the size is then read from the
                               image); ``depth`` is ignored when absent or
                               blank, else a whole number >= 1 (0 in a 0 x 0 size)
<size> differs from the image  ``VOCFormatError`` naming the file and both sizes
                               (and the EXIF orientation when the XML has the
                               size of the turned image, see below)
class name with spaces around  stripped, newlines too: ``<name> cat </name>`` is ``cat``
unknown class name             ``VOCFormatError`` naming file and name, and the
                               known class differing only in case (``'Cat'``:
                               names are case-sensitive); with
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
missing image file             ``VOCImageError`` naming the id and paths tried; a
                               folder where the image should be is named as one
empty (0-byte) image file      ``VOCImageError``: ``<path>: empty file (0 bytes)``
unreadable image               ``VOCImageError`` naming the file: every image's
                               header is read at construction
damaged JPEG                   ``VOCImageError`` naming the file. Construction
                               walks every JPEG's markers (reading the file, not
                               decoding it): a missing end (truncated download)
                               and most garbage written over the compressed data
                               break that structure. Decoding also finds bytes
                               lost inside a one-scan JPEG, which libjpeg would
                               fill with grey behind a warning Pillow hides.
                               ``verify_images="full"`` decodes every image at
                               construction; otherwise a file that fails to
                               decode raises ``VOCImageError`` naming it when
                               read (one line, also from a loader worker).
                               Garbage with no stray marker that still decodes
                               cannot be told from a picture
16-bit grey image (Pillow      read faithfully: level v becomes round(v / 257),
modes ``I;16*``, and ``I``     0 -> 0 and 65535 -> 255 (Pillow's ``convert``
with values in 0..65535)       would clip every level above 255 to white); ``I``
                               values outside 0..65535: ``VOCImageError``
floating-point image (``F``)   ``VOCImageError`` at construction: such pixels
                               have no defined black and white
1-bit, grey, palette, CMYK,    converted to RGB; an alpha channel is dropped
with alpha (LA, PA, RGBA)
EXIF orientation tag (2 to 8)  pixels read as stored, like the VOC devkit, and
                               boxes refer to them; counted
                               (``exif_orientation``): a labelling tool may have
                               shown the image turned
=============================  ==================================================
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
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
    "jpeg_layout",
    "JPEGLayout",
]

#: The 20 PASCAL VOC object classes, in the devkit's (alphabetical) order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

#: At most this many problems are spelled out in one error or warning message.
MAX_LISTED = 20

_BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")

#: A number as VOC files write it: "12", "-3", "12.5", ".5", "1e2". Python's float() also
#: accepts "nan", "inf", "infinity", "1_000" and non-ASCII digits, none of which a VOC
#: field may hold: a NaN box would pass every check and silently lower the AP.
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


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
    exif_orientation: list[str] = dataclasses.field(default_factory=list)

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
    """The finite decimal number in ``elem/path``, or None after appending the problem."""
    node = elem.find(path)
    if node is None:
        problems.append(f"{where}/{path}: missing")
        return None
    text = (node.text or "").strip()
    if not text:
        problems.append(f"{where}/{path}: empty")
        return None
    if not _DECIMAL.fullmatch(text):  # float() would also take "nan", "inf", "1_0"
        problems.append(f"{where}/{path}: expected a number, got {text!r}")
        return None
    value = float(text)
    if not math.isfinite(value):  # "1e999"
        problems.append(f"{where}/{path}: expected a number, got {text!r} (too large)")
        return None
    return value


def _whole(elem: ET.Element, path: str, where: str, problems: list[str], minimum: int):
    """The whole number >= ``minimum`` in ``elem/path`` (e.g. "640" or "640.0"), or None."""
    value = _number(elem, path, where, problems)
    if value is None:
        return None
    if value != int(value) or value < minimum:
        problems.append(f"{where}/{path}: expected a whole number >= {minimum}, got {value:g}")
        return None
    return int(value)


def _flag(elem: ET.Element, path: str, where: str, problems: list[str]) -> bool:
    value = _number(elem, path, where, []) if elem.find(path) is not None else 0.0
    if value is None or value not in (0.0, 1.0):
        text = elem.findtext(path)
        problems.append(f"{where}/{path}: expected 0 or 1, got {text!r}")
        return False
    return bool(value)


def _parse_size(root: ET.Element, where: str, problems: list[str]) -> tuple[int, int] | None:
    """(width, height) from ``<size>``; None when it is absent or the 0 x 0 "unknown".

    Width and height must be whole numbers >= 1; ``<depth>`` (never used: images are
    converted to RGB) may be absent or empty, else a whole number >= 1.
    """
    if root.find("size") is None:
        return None
    width = _whole(root, "size/width", where, problems, minimum=0)
    height = _whole(root, "size/height", where, problems, minimum=0)
    unknown = width == 0 and height == 0  # a common "size not filled in" placeholder
    if (root.findtext("size/depth") or "").strip():
        _whole(root, "size/depth", where, problems, minimum=0 if unknown else 1)
    if width is None or height is None or unknown:
        return None
    if width == 0 or height == 0:
        problems.append(
            f"{where}/size: width x height is {width} x {height}; only 0 x 0 (unknown) may be 0"
        )
        return None
    return width, height


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
    size = _parse_size(root, str(xml_path), problems)
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


# ----------------------------------------------------------------------------- JPEG structure

#: The start-of-image marker every JPEG file begins with.
JPEG_START = b"\xff\xd8"
_FF, _STUFFED_ZERO = 0xFF, 0x00
_EOI, _SOS, _DRI = 0xD9, 0xDA, 0xDD  # end of image, start of scan, restart interval
_RST0, _RST7 = 0xD0, 0xD7  # restart markers, numbered 0..7 in turn inside a scan
_RESTART_CYCLE = 8
#: Frame (SOFn) markers are 0xFFC0..0xFFCF except these table markers (DHT, JPG, DAC).
_NOT_FRAMES = frozenset({0xC4, 0xC8, 0xCC})
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - _NOT_FRAMES
#: Frames a decoder reads in one pass when they have one scan: baseline, extended sequential.
_SEQUENTIAL_FRAMES = frozenset({0xC0, 0xC1})
#: Markers that may come after compressed image data: tables (DHT, DAC, DQT), DNL, DRI,
#: the next scan, a comment, application data (APP0..APP15) or the end of the image.
_AFTER_SCAN = frozenset({0xC4, 0xCC, 0xDB, 0xDC, _DRI, _SOS, 0xFE, _EOI, *range(0xE0, 0xF0)})
#: Zero bytes that replace a one-pass JPEG's end marker when decoding. When compressed
#: data runs out early (bytes lost inside the file), libjpeg meets the end marker, fills
#: the missing rows with grey and only warns, and Pillow hides the warning. Without the
#: marker the decoder asks for more data instead, which Pillow reports ("image file is
#: truncated"); an intact file needs no more than this padding (libjpeg reads at most
#: 25 bits past the last block). Multi-scan (progressive) files are read to their end
#: marker before any row is decoded, so they keep it.
JPEG_DECODE_PADDING = 16


class JPEGLayout(NamedTuple):
    """Where a JPEG's structure ends, from :func:`jpeg_layout`."""

    end: int  # byte offset of the end-of-image marker (data after it is ignored)
    one_pass: bool  # one sequential frame in one scan (most JPEGs, all of VOC's)


def _marker_at(data: bytes, pos: int) -> int:
    """Offset of the marker that must start at ``pos`` (after any 0xFF fill bytes)."""
    while pos + 1 < len(data) and data[pos] == _FF and data[pos + 1] == _FF:
        pos += 1
    if pos + 1 >= len(data):
        raise ValueError("the file ends before the end-of-image marker (truncated)")
    if data[pos] != _FF:
        raise ValueError(f"expected a marker at byte {pos}, found 0x{data[pos]:02x}")
    return pos


def _scan_end(data: bytes, pos: int, restart_interval: int) -> int:
    """Offset of the marker that ends the compressed data starting at ``pos``.

    Inside compressed data a 0xFF byte is followed by 0x00 (a stuffed 0xFF value), by
    another 0xFF (fill) or by the next restart marker in turn; anything else ends it.
    """
    expected_restart = 0
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise ValueError("the compressed data runs to the end of the file (truncated)")
        code = data[pos + 1]
        if code in (_STUFFED_ZERO, _FF):
            pos += 2 if code == _STUFFED_ZERO else 1
        elif _RST0 <= code <= _RST7:
            if not restart_interval or code - _RST0 != expected_restart:
                raise ValueError(f"restart marker 0xff{code:02x} out of sequence at byte {pos}")
            expected_restart = (expected_restart + 1) % _RESTART_CYCLE
            pos += 2
        else:
            return pos


def jpeg_layout(data: bytes) -> JPEGLayout:
    """Walk a JPEG file's markers without decoding; ValueError names the first damage.

    Header segments are skipped by their lengths; compressed data is checked with the
    rules of :func:`_scan_end`, and each scan must end at a marker allowed after image
    data. Random bytes written over compressed data contain, every ~280 bytes on
    average, a 0xFF followed by a byte these rules reject; a gap (bytes removed) keeps
    the structure and is found when decoding (:func:`read_image`).
    """
    if not data.startswith(JPEG_START):
        raise ValueError("no JPEG start-of-image marker")
    pos, restart_interval, frame, scans = len(JPEG_START), 0, None, 0
    while True:
        pos = _marker_at(data, pos)
        marker = data[pos + 1]
        if scans and marker not in _AFTER_SCAN:
            raise ValueError(
                f"invalid marker 0xff{marker:02x} in the compressed data at byte {pos}"
            )
        if marker == _EOI:
            return JPEGLayout(pos, frame in _SEQUENTIAL_FRAMES and scans == 1)
        if _RST0 <= marker <= _RST7:
            raise ValueError(f"restart marker 0xff{marker:02x} outside image data at byte {pos}")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise ValueError(
                f"segment 0xff{marker:02x} at byte {pos} runs past the end of the file"
            )
        if marker in _FRAME_MARKERS:
            frame = marker
        elif marker == _DRI:
            restart_interval = int.from_bytes(data[pos + 4 : pos + 6], "big")
        elif marker == _SOS:
            scans += 1
            end = _scan_end(data, end, restart_interval)
        pos = end


# ----------------------------------------------------------------------------- images

#: Pillow modes of 16-bit grey images (PNG, TIFF, PGM), by byte order.
_GREY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
#: Mode "I" (32-bit signed) is read as 16-bit grey when its values fit 0..GREY16_MAX.
GREY16_MAX = 65535
#: A 16-bit level v becomes round(v / 257): 0 -> 0 and 65535 -> 255, linear in between
#: (65535 = 255 * 257), the same brightness as the file shows.
GREY16_PER_LEVEL = 257
#: Modes refused by name: floating-point pixels have no defined black and white.
_REFUSED_MODES = {"F": "32-bit floating-point pixels have no defined range"}
#: The EXIF tag holding how a viewer should rotate or mirror the stored pixels.
EXIF_ORIENTATION = 0x0112
_ORIENTATIONS = {
    2: "mirrored", 3: "rotated 180 degrees", 4: "flipped upside down",
    5: "transposed", 6: "rotated 90 degrees", 7: "transversed", 8: "rotated 270 degrees",
}  # fmt: skip
#: Orientations whose displayed image is the stored one turned a quarter: W and H swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


class ImageHeader(NamedTuple):
    """What an image file's header says, read without decoding the pixels."""

    width: int
    height: int
    format: str  # Pillow's name of the file format: "JPEG", "PNG", ...
    orientation: int  # EXIF orientation, 1 (show as stored) when there is none


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; VOCImageError for a folder, an unreadable or an empty file."""
    if path.is_dir():
        raise VOCImageError(f"{path}: is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VOCImageError(f"{path}: cannot read image ({exc.strerror})") from None
    if not data:
        raise VOCImageError(f"{path}: empty file (0 bytes)")
    return data


def _image_header(path: Path) -> ImageHeader:
    """Size, pixel format and EXIF orientation from the header; VOCImageError names the file."""
    if path.is_file() and path.stat().st_size == 0:
        raise VOCImageError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            # PNG may keep EXIF after the pixels: read it only where the header has it
            exif = img.getexif() if "exif" in img.info else {}
            mode = img.mode
            header = ImageHeader(*img.size, img.format, int(exif.get(EXIF_ORIENTATION, 1)))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise VOCImageError(f"{path}: not a readable image ({exc})") from None
    if mode in _REFUSED_MODES:
        raise VOCImageError(f"{path}: mode {mode}: {_REFUSED_MODES[mode]}")
    return header


def _to_rgb(img: Image.Image, path: Path) -> np.ndarray:
    """Decoded ``img`` as uint8 (H, W, 3) RGB (see the rule table for each mode)."""
    if img.mode in _GREY16_MODES or img.mode == "I":
        levels = np.asarray(img)  # (H, W) uint16, big-endian uint16 or int32
        if levels.min() < 0 or levels.max() > GREY16_MAX:
            raise VOCImageError(
                f"{path}: mode {img.mode} values span {levels.min()}..{levels.max()}, "
                f"outside the 16-bit range 0..{GREY16_MAX}"
            )
        rounded = (levels.astype(np.uint32) + GREY16_PER_LEVEL // 2) // GREY16_PER_LEVEL
        return np.repeat(rounded.astype(np.uint8)[:, :, None], 3, axis=2)
    if img.mode in _REFUSED_MODES:
        raise VOCImageError(f"{path}: mode {img.mode}: {_REFUSED_MODES[img.mode]}")
    try:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)  # alpha is dropped
    except ValueError as exc:
        raise VOCImageError(f"{path}: mode {img.mode} cannot be converted to RGB ({exc})") from None


def _decode(data: bytes, path: Path) -> Image.Image:
    """Pillow image with its pixels loaded from ``data``; VOCImageError names ``path``."""
    one_pass_jpeg = False
    try:
        if data.startswith(JPEG_START):
            layout = jpeg_layout(data)  # ValueError names structural damage
            one_pass_jpeg = layout.one_pass
            if one_pass_jpeg:  # so that lost bytes are noticed (JPEG_DECODE_PADDING)
                data = data[: layout.end] + bytes(JPEG_DECODE_PADDING)
        img = Image.open(io.BytesIO(data))
        img.load()  # raises on truncated or broken pixel data
        return img
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        problem = str(exc)
        if one_pass_jpeg and problem.startswith("image file is truncated"):
            problem = "the compressed data is shorter than the image: bytes lost inside the file"
        raise VOCImageError(f"{path}: cannot decode image ({problem})") from None


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB; VOCImageError names the file.

    JPEGs are checked for damage (:func:`jpeg_layout`) and decoded so that lost bytes
    are noticed (:data:`JPEG_DECODE_PADDING`). Pixels are as stored: an EXIF orientation
    is not applied. (A program that sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` also
    silences Pillow's truncation errors here; the marker check still runs.)
    """
    path = Path(path)
    with _decode(_read_bytes(path), path) as img:
        return _to_rgb(img, path)


def _check_image(path: Path, verify: str) -> ImageHeader:
    """Header check plus a JPEG's marker structure, or a full decode for verify='full'."""
    header = _image_header(path)
    if verify == "full":
        read_image(path)
    elif header.format == "JPEG":
        try:
            jpeg_layout(_read_bytes(path))
        except ValueError as exc:
            raise VOCImageError(f"{path}: image data is truncated or corrupt ({exc})") from None
    return header


# ----------------------------------------------------------------------------- folders


#: The sub-folders of a VOC-layout dataset folder.
_LAYOUT = ("Annotations/", "JPEGImages/", "ImageSets/Main/")


def _resolve_folder(root: Path, year: str | int | None) -> Path:
    """The folder that holds Annotations/ (see the module docstring)."""
    if not root.exists():
        raise VOCFormatError(f"{root}: no such folder")
    if not root.is_dir():
        raise VOCFormatError(f"{root}: not a folder")
    if (root / "Annotations").is_dir():
        if year is not None and root.name != f"VOC{year}":
            raise ValueError(
                f"year={year!r} was given but root {root} is itself a dataset folder "
                f"(it has Annotations/); pass year=None"
            )
        return root
    if year is None:
        found = (*root.glob("VOC[0-9]*"), *root.glob("VOCdevkit/VOC[0-9]*"))
        years = sorted(str(p.relative_to(root)) for p in found if p.is_dir())
        hint = f"found {', '.join(years)}: pass year" if years else "or VOC<year>/ with year"
        raise VOCFormatError(
            f"{root}: not a VOC dataset folder (expected {', '.join(_LAYOUT)}; {hint})"
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
    for path in tried:
        if path.is_dir():
            raise VOCImageError(f"{path}: is a folder, not an image file (id {image_id!r})")
    raise VOCImageError(
        f"{folder}: image {image_id!r} not found (tried {', '.join(str(p) for p in tried)})"
    )


# ----------------------------------------------------------------------------- conversion


def _closest_class(name: str, class_index: dict[str, int]) -> str:
    """The hint in an unknown-class error: a case-insensitive match, else the known names."""
    same_letters = [known for known in class_index if known.lower() == name.lower()]
    if same_letters:
        return f"class names are case-sensitive: did you mean {same_letters[0]!r}?"
    return f"known: {', '.join(class_index)}"


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
                    f"({_closest_class(obj.name, class_index)})"
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


def _orientation_hint(header: ImageHeader, size: tuple[int, int]) -> str:
    """Why an XML size may be the image's turned size: its EXIF orientation."""
    if header.orientation not in _QUARTER_TURNS or size != (header.height, header.width):
        return ""
    return (
        f" as stored; its EXIF orientation ({_ORIENTATIONS[header.orientation]}) shows it as "
        f"{header.height}x{header.width}, so the boxes were drawn on the turned image: "
        f"save the image turned (PIL.ImageOps.exif_transpose) and keep the annotation"
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
                f"{self!r}: {self.report.total()} objects or images repaired, skipped, empty "
                f"or flagged; "
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
        header = _check_image(image_path, verify)
        width, height = header.width, header.height
        if size is not None and size != (width, height):
            raise VOCFormatError(
                f"{xml_path}/size: says {size[0]}x{size[1]} but image {image_path.name} "
                f"is {width}x{height}{_orientation_hint(header, size)}"
            )
        report = DataReport()
        if header.orientation != 1:
            turn = _ORIENTATIONS.get(header.orientation, f"value {header.orientation}")
            report.exif_orientation.append(f"{image_path.name} (EXIF orientation: {turn})")
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
