"""VOC reader, issue 11: every bad input is one clear error (or a counted rule).

Numbers Python's float() takes but a VOC file must not hold, <size> fields, pixel
formats (16-bit, float, 1-bit, alpha), damaged JPEGs, missing folders, and a few
neighbours: case-only class mismatches, a folder or a 0-byte file as the image, EXIF
orientation.
"""

import io

import numpy as np
import pytest
from PIL import Image
from voc_folders import annotation_xml, object_xml

from minissd.data import VOCDataset, VOCDataWarning, VOCFormatError, VOCImageError
from minissd.data.voc import JPEG_START, jpeg_layout, read_image

CLASSES = ("cat", "dog")


def make(folder, **kwargs):
    kwargs.setdefault("class_names", CLASSES)
    return VOCDataset(folder.root, "train", **kwargs)


def size_xml(width, height, depth="3"):
    """An annotation with one cat and a <size> block written verbatim."""
    depth_xml = "" if depth is None else f"<depth>{depth}</depth>"
    return (
        f"<annotation><filename>a.jpg</filename><size><width>{width}</width>"
        f"<height>{height}</height>{depth_xml}</size>{object_xml('cat', (1, 1, 5, 5))}"
        f"</annotation>"
    )


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "text, problem",
    [
        ("nan", "expected a number, got 'nan'"),
        ("NaN", "expected a number, got 'NaN'"),
        ("inf", "expected a number, got 'inf'"),
        ("-inf", "expected a number, got '-inf'"),
        ("Infinity", "expected a number, got 'Infinity'"),
        ("1e999", r"expected a number, got '1e999' \(too large\)"),
        ("0x10", "expected a number, got '0x10'"),
        ("1_0", "expected a number, got '1_0'"),
        ("\u0661\u0662", "expected a number, got '\u0661\u0662'"),  # Arabic-Indic digits
        ("12px", "expected a number, got '12px'"),
        ("", "empty"),
        ("  \n ", "empty"),
    ],
)
def test_box_coordinate_must_be_a_finite_decimal(voc_folder, text, problem):
    """Regression: 'nan' was read as a NaN box, kept, and silently lowered the AP."""
    f = voc_folder().add("a", [object_xml("cat", (1, 1, text, 5))]).split("train", ["a"])
    with pytest.raises(VOCFormatError, match=rf"a\.xml: object\[0\]/bndbox/xmax: {problem}$"):
        make(f)


def test_decimal_forms_a_voc_file_may_hold(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", ("+2", "3.", ".5e1", "1.2E1"))])
    ds = make(f.split("train", ["a"]))
    np.testing.assert_allclose(ds.annotation(0).boxes, [[1, 2, 5, 12]])


@pytest.mark.parametrize(
    "width, height, depth, problem",
    [
        ("nan", 30, 3, r"size/width: expected a number, got 'nan'"),
        (40, "inf", 3, r"size/height: expected a number, got 'inf'"),
        ("1e999", 30, 3, r"size/width: expected a number, got '1e999' \(too large\)"),
        (0, 30, 3, r"size: width x height is 0 x 30; only 0 x 0 \(unknown\) may be 0"),
        (-40, 30, 3, r"size/width: expected a whole number >= 0, got -40"),
        (40.5, 30, 3, r"size/width: expected a whole number >= 0, got 40.5"),
        (40, 30, "nan", r"size/depth: expected a number, got 'nan'"),
        (40, 30, 0, r"size/depth: expected a whole number >= 1, got 0"),
        (40, 30, -3, r"size/depth: expected a whole number >= 1, got -3"),
        (40, 30, 2.5, r"size/depth: expected a whole number >= 1, got 2.5"),
        (40, 30, "inf", r"size/depth: expected a number, got 'inf'"),
    ],
)
def test_size_fields_are_checked(voc_folder, width, height, depth, problem):
    f = voc_folder().add("a", [], xml=size_xml(width, height, depth)).split("train", ["a"])
    with pytest.raises(VOCFormatError, match=rf"a\.xml/{problem}"):
        make(f)


@pytest.mark.parametrize(
    "width, height, depth",
    [(40, 30, 3), ("40.0", 30, 1), (40, 30, None), (40, 30, " "), (0, 0, 0), (0, 0, 3)],
)
def test_size_fields_accepted(voc_folder, width, height, depth):
    f = voc_folder().add("a", [], xml=size_xml(width, height, depth)).split("train", ["a"])
    ann = make(f).annotation(0)
    assert (ann.width, ann.height) == (40, 30)  # 0 x 0 "unknown": read from the image


# ----------------------------------------------------------------------------- pixel formats


def write_image(folder, image, name="a.png"):
    """Replace the image of id 'a' (added with ext .png) by ``image`` (a PIL image)."""
    image.save(folder.root / "JPEGImages" / name)
    return folder.root / "JPEGImages" / name


def png_folder(voc_folder, size=(40, 30)):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))], size=size, ext=".png")
    return f.split("train", ["a"])


LEVELS16 = np.array([[0, 128, 129, 257, 385, 386], [32767, 32896, 65278, 65279, 65534, 65535]])
EXPECTED8 = np.array([[0, 0, 1, 1, 1, 2], [127, 128, 254, 254, 255, 255]])  # round(v / 257)


@pytest.mark.parametrize(
    "mode, name",
    [("I;16", "a.png"), ("I;16B", "a.tif"), ("I;16", "a.tif"), ("I", "a.pgm")],
)
def test_16_bit_grey_is_read_faithfully(voc_folder, mode, name):
    """Regression: a 16-bit PNG came out all white (Pillow's convert clips at 255)."""
    f = png_folder(voc_folder, size=(6, 2))
    if mode == "I;16B":
        image = Image.frombytes(mode, (6, 2), LEVELS16.astype(">u2").tobytes())
    else:
        image = Image.fromarray(LEVELS16.astype(np.uint16))
    path = write_image(f, image, name)
    with Image.open(path) as check:
        assert check.mode == mode  # Pillow opens a 16-bit PGM as "I"
    if name != "a.png":
        (f.root / "JPEGImages" / "a.png").unlink()
    xml = annotation_xml("a", (6, 2), [object_xml("cat", (1, 1, 2, 2))], filename=name)
    (f.root / "Annotations" / "a.xml").write_text(xml)
    image = make(f, verify_images="full")[0].image
    assert image.dtype == np.uint8 and image.shape == (2, 6, 3)
    np.testing.assert_array_equal(image[..., 0], EXPECTED8)
    assert (image[..., 0] == image[..., 2]).all()


def test_32_bit_integer_outside_16_bits_is_refused(voc_folder):
    f = png_folder(voc_folder, size=(6, 2))
    levels = LEVELS16.astype(np.int32) * 4
    write_image(f, Image.fromarray(levels), "a.tif")
    (f.root / "JPEGImages" / "a.png").unlink()
    xml = annotation_xml("a", (6, 2), [object_xml("cat", (1, 1, 2, 2))], filename="a.tif")
    (f.root / "Annotations" / "a.xml").write_text(xml)
    ds = make(f)
    with pytest.raises(VOCImageError, match=r"a\.tif: mode I values span 0\.\.262140, outside"):
        ds[0]


def test_floating_point_image_is_refused_at_construction(voc_folder):
    f = png_folder(voc_folder)
    write_image(f, Image.fromarray(np.ones((30, 40), np.float32)), "a.tif")
    (f.root / "JPEGImages" / "a.png").unlink()
    xml = annotation_xml("a", (40, 30), [object_xml("cat", (1, 1, 5, 5))], filename="a.tif")
    (f.root / "Annotations" / "a.xml").write_text(xml)
    with pytest.raises(VOCImageError, match=r"a\.tif: mode F: 32-bit floating-point pixels"):
        make(f)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "P-transparent", "RGBA", "I;16"])
def test_other_pixel_formats_become_rgb(voc_folder, mode):
    f = png_folder(voc_folder)
    grey = np.tile(np.arange(40, dtype=np.uint8) * 6, (30, 1))
    source, save_args = Image.fromarray(grey), {}
    if mode == "I;16":
        source = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode == "P-transparent":
        source, save_args = source.convert("P"), {"transparency": 0}
    elif mode != "L":
        source = source.convert(mode)
    source.save(f.root / "JPEGImages" / "a.png", **save_args)
    image = make(f, verify_images="full")[0].image
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    if mode == "1":  # dithered to black and white
        assert set(np.unique(image).tolist()) <= {0, 255}
    else:  # grey levels kept, alpha dropped
        np.testing.assert_array_equal(image[..., 1], grey)


# ----------------------------------------------------------------------------- damaged JPEG


def photo_jpeg(size=(160, 120), **save_args) -> bytes:
    """A JPEG of gradients with some noise: compressed data like a photo's (~7 KB).

    (Pure noise would not do for the lost-bytes test: a decoder thrown out of step reads
    random bits as short blocks, so it can finish before the data ends.)
    """
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    noise = np.random.default_rng(0).normal(0, 12, (size[1], size[0], 3))
    pixels = np.stack([x, y, (x + y) / 2], axis=-1) + noise
    buffer = io.BytesIO()
    save_args = {"quality": 90, **save_args}
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", **save_args)
    return buffer.getvalue()


def scan_start(data: bytes) -> int:
    """Offset of the first compressed byte (after the start-of-scan segment)."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")


def jpeg_folder(voc_folder, data: bytes):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))], size=(160, 120))
    f.image_path("a").write_bytes(data)
    return f.split("train", ["a"])


def test_garbage_written_over_the_middle_is_found_at_construction(voc_folder):
    """Regression: header and end marker intact, Pillow decoded this silently (or failed
    later, inside a loader worker, with a 20-line traceback)."""
    data = bytearray(photo_jpeg())
    middle = (scan_start(data) + len(data)) // 2
    garbage = np.random.default_rng(1).integers(0, 255, 300, dtype=np.uint8).tobytes()
    data[middle : middle + 300] = garbage[:100] + b"\xff\xc0" + garbage[102:]
    f = jpeg_folder(voc_folder, bytes(data))
    with pytest.raises(
        VOCImageError, match=r"a\.jpg: image data is truncated or corrupt \(invalid marker 0xffc0"
    ):
        make(f)


def test_bytes_lost_in_the_middle_are_found_when_decoding(voc_folder):
    """libjpeg fills the rows it lacks data for with grey, and Pillow hides its warning."""
    data = photo_jpeg()
    start = (scan_start(data) + len(data)) // 2
    while data[start - 1] == 0xFF or data[start + 200] == 0x00:  # keep 0xFF 0x00 pairs whole
        start += 1
    damaged = data[:start] + data[start + 200 :]
    jpeg_layout(damaged)  # the marker structure is intact
    f = jpeg_folder(voc_folder, damaged)
    ds = make(f)  # construction reads no pixels
    message = r"a\.jpg: cannot decode image \(the compressed data is shorter than the image"
    with pytest.raises(VOCImageError, match=message):
        ds[0]
    with pytest.raises(VOCImageError, match=message):
        make(f, verify_images="full")


@pytest.mark.parametrize(
    "save_args",
    [
        {},
        {"progressive": True},
        {"restart_marker_blocks": 3},
        {"progressive": True, "restart_marker_rows": 1},
        {"subsampling": 0, "quality": 100},
        {"exif": Image.Exif().tobytes()},
        {"comment": b"\xff\xd9 looks like an end marker"},
    ],
    ids=["baseline", "progressive", "restarts", "progressive-restarts", "444", "exif", "comment"],
)
def test_intact_jpegs_decode_exactly_as_pillow_decodes_them(tmp_path, save_args):
    data = photo_jpeg(**save_args) + b"trailing bytes after the end marker"
    layout = jpeg_layout(data)
    assert data[layout.end : layout.end + 2] == b"\xff\xd9"
    assert layout.one_pass == (not save_args.get("progressive"))
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_image(path), np.asarray(Image.open(path)))
    for mode in ("L", "CMYK"):  # one and four components
        converted = tmp_path / f"{mode}.jpg"
        Image.open(path).convert(mode).save(converted, "JPEG", **save_args)
        jpeg_layout(converted.read_bytes())
        expected = np.asarray(Image.open(converted).convert("RGB"))
        np.testing.assert_array_equal(read_image(converted), expected)


def test_truncated_jpeg_names_the_damage(voc_folder):
    data = photo_jpeg()
    with pytest.raises(ValueError, match="compressed data runs to the end of the file"):
        jpeg_layout(data[: len(data) // 2])
    with pytest.raises(ValueError, match="no JPEG start-of-image marker"):
        jpeg_layout(b"GIF89a" + data)
    assert data.startswith(JPEG_START)


def test_real_jpegs_pass_the_structure_check(shared_data):
    """Every real image in the shared data (464 files) is intact, and decodes as Pillow
    decodes it."""
    paths = sorted(shared_data.glob("*/**/JPEGImages/*.jpg"))
    assert len(paths) >= 464
    for path in paths:
        jpeg_layout(path.read_bytes())
    for path in paths[::50]:
        np.testing.assert_array_equal(read_image(path), np.asarray(Image.open(path)))


# ----------------------------------------------------------------------------- folders


def test_missing_dataset_folder_is_one_line(tmp_path):
    """Regression: the message talked about Annotations/ and years."""
    missing = tmp_path / "no" / "such" / "folder"
    for year in (None, "2007"):
        with pytest.raises(VOCFormatError) as info:
            VOCDataset(missing, "train", year=year)
        assert str(info.value) == f"{missing}: no such folder"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(VOCFormatError, match=r"file\.txt: not a folder$"):
        VOCDataset(a_file, "train")


def test_folder_without_voc_layout_says_what_was_expected(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(VOCFormatError) as info:
        VOCDataset(tmp_path, "train")
    assert str(info.value) == (
        f"{tmp_path}: not a VOC dataset folder (expected Annotations/, JPEGImages/, "
        f"ImageSets/Main/; or VOC<year>/ with year)"
    )
    (tmp_path / "VOCdevkit" / "VOC2012").mkdir(parents=True)
    with pytest.raises(VOCFormatError, match=r"; found VOCdevkit/VOC2012: pass year\)$"):
        VOCDataset(tmp_path, "train")


# ----------------------------------------------------------------------------- neighbours


def test_class_name_differing_in_case_gets_a_hint(voc_folder):
    f = voc_folder().add("a", [object_xml("Cat", (1, 1, 5, 5))]).split("train", ["a"])
    with pytest.raises(
        VOCFormatError, match=r"unknown class 'Cat' \(class names are case-sensitive: did you "
    ):
        make(f)


def test_image_that_is_a_folder(voc_folder):
    f = voc_folder().add("a", [])
    f.image_path("a").unlink()
    f.image_path("a").mkdir()
    with pytest.raises(VOCImageError, match=r"a\.jpg: is a folder, not an image file"):
        make(f.split("train", ["a"]))


def test_zero_byte_image(voc_folder):
    f = voc_folder().add("a", [])
    f.image_path("a").write_bytes(b"")
    with pytest.raises(VOCImageError, match=r"a\.jpg: empty file \(0 bytes\)"):
        make(f.split("train", ["a"]))


def exif_jpeg(path, width, height, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", (width, height), (200, 10, 10)).save(path, exif=exif)


def test_exif_orientation_is_read_as_stored_and_counted(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))], size=(40, 30))
    exif_jpeg(f.image_path("a"), 40, 30, orientation=3)
    with pytest.warns(VOCDataWarning, match=r"exif_orientation: 1 \(a\.jpg \(EXIF orientation: "):
        ds = make(f.split("train", ["a"]))
    assert ds[0].image.shape == (30, 40, 3)  # not turned
    assert ds.report.exif_orientation == ["a.jpg (EXIF orientation: rotated 180 degrees)"]


def test_size_of_the_turned_image_names_the_exif_orientation(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))], xml_size=(30, 40))
    exif_jpeg(f.image_path("a"), 40, 30, orientation=6)
    with pytest.raises(
        VOCFormatError,
        match=r"says 30x40 but image a\.jpg is 40x30 as stored; its EXIF orientation \(rotated "
        r"90 degrees\) shows it as 30x40.*exif_transpose",
    ):
        make(f.split("train", ["a"]))
