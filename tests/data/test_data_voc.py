"""VOC reader: format, coordinate convention, unions, and every bad-data rule."""

import warnings

import numpy as np
import pytest
from PIL import Image
from voc_folders import annotation_xml, object_xml

from minissd.data import (
    VOC_CLASSES,
    ConcatDataset,
    VOCDataset,
    VOCDataWarning,
    VOCFormatError,
    VOCImageError,
)

CLASSES = ("cat", "dog")


def make(folder, **kwargs):
    kwargs.setdefault("class_names", CLASSES)
    return VOCDataset(folder.root, "train", **kwargs)


# ----------------------------------------------------------------------------- format


def test_item_format_and_coordinate_convention(voc_folder):
    f = voc_folder()
    f.add(
        "a",
        [
            object_xml("dog", (1, 1, 40, 30), difficult=0, truncated=1),
            object_xml("cat", (5, 6, 10, 20), difficult=1),
        ],
        size=(40, 30),
    )
    f.split("train", ["a"])
    ds = make(f)
    assert len(ds) == 1 and ds.ids == ["a"]
    image, boxes, labels, difficult, image_id = ds[0]
    assert image.dtype == np.uint8 and image.shape == (30, 40, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(f.image_path("a")).convert("RGB")), image)
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
    # 1-based inclusive (1, 1, 40, 30) is the whole 40x30 image: (0, 0, 40, 30).
    np.testing.assert_array_equal(boxes, [[0, 0, 40, 30], [4, 5, 10, 20]])
    # the width equals the devkit's xmax - xmin + 1
    assert boxes[1, 2] - boxes[1, 0] == 10 - 5 + 1
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0]
    assert difficult.dtype == bool and difficult.tolist() == [False, True]
    assert image_id == "a"
    ann = ds.annotation(0)
    assert ann.truncated.tolist() == [True, False] and (ann.width, ann.height) == (40, 30)
    assert ds.report.total() == 0


def test_decimal_coordinates_and_whitespace_names(voc_folder):
    f = voc_folder()
    f.add("a", [object_xml(" cat\n", (2.5, 3, 10.5, 12))]).split("train", ["a"])
    ds = make(f)
    np.testing.assert_allclose(ds.annotation(0).boxes, [[1.5, 2, 10.5, 12]])


def test_grey_and_rgba_images_become_rgb(voc_folder):
    f = voc_folder()
    f.add("g", [object_xml("cat", (1, 1, 5, 5))], mode="L")
    f.add("p", [object_xml("cat", (1, 1, 5, 5))], mode="RGBA", ext=".png")
    f.split("train", ["g", "p"])
    ds = make(f)
    for i in range(2):
        assert ds[i].image.shape == (30, 40, 3) and ds[i].image.dtype == np.uint8


def test_image_found_through_xml_filename(voc_folder):
    f = voc_folder()
    f.add("a", [object_xml("cat", (1, 1, 5, 5))], ext=".png").split("train", ["a"])
    assert make(f).annotation(0).image_path.name == "a.png"


def test_voc_class_names_default_and_indices(voc_folder):
    f = voc_folder()
    f.add("a", [object_xml("tvmonitor", (1, 1, 5, 5)), object_xml("aeroplane", (1, 1, 5, 5))])
    f.split("train", ["a"])
    ds = VOCDataset(f.root, "train")
    assert len(VOC_CLASSES) == 20 and ds.class_names == VOC_CLASSES
    assert ds.annotation(0).labels.tolist() == [19, 0]


def test_union_07_12_in_a_devkit(tmp_path, voc_folder):
    v07 = voc_folder("VOCdevkit/VOC2007").add("000001", [object_xml("cat", (1, 1, 5, 5))])
    v07.add("000002", [object_xml("dog", (1, 1, 5, 5))]).split("trainval", ["000001", "000002"])
    v12 = voc_folder("VOCdevkit/VOC2012").add("2008_000001", [object_xml("dog", (1, 1, 5, 5))])
    v12.split("trainval", ["2008_000001"])
    both = VOCDataset(tmp_path, [("2007", "trainval"), (2012, "trainval")], class_names=CLASSES)
    assert both.ids == ["000001", "000002", "2008_000001"]
    assert [both.annotation(i).labels.tolist() for i in range(3)] == [[0], [1], [1]]
    # the devkit folder itself also works as root, and VOC<year> directly
    assert len(VOCDataset(tmp_path / "VOCdevkit", "trainval", 2007, class_names=CLASSES)) == 2
    assert len(VOCDataset(tmp_path / "VOCdevkit/VOC2012", "trainval", class_names=CLASSES)) == 1
    concat = ConcatDataset(
        [
            VOCDataset(tmp_path, "trainval", 2007, class_names=CLASSES),
            VOCDataset(tmp_path, "trainval", "2012", class_names=CLASSES),
        ]
    )
    assert len(concat) == 3 and concat[2].image_id == "2008_000001"
    assert concat.annotation(-1).image_id == "2008_000001"
    with pytest.raises(IndexError):
        concat[3]


def test_root_and_year_errors(tmp_path, voc_folder):
    voc_folder("VOCdevkit/VOC2007").add("a", []).split("train", ["a"])
    with pytest.raises(VOCFormatError, match="pass year"):
        VOCDataset(tmp_path, "train", class_names=CLASSES)
    with pytest.raises(VOCFormatError, match="VOC2012"):
        VOCDataset(tmp_path, "train", 2012, class_names=CLASSES)
    with pytest.raises(ValueError, match="year=None"):
        VOCDataset(tmp_path / "VOCdevkit/VOC2007", "train", 2012, class_names=CLASSES)


def test_split_union_in_one_folder_counts_duplicates(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))]).add("b", [])
    f.split("train", ["a"]).split("val", ["a", "b"])
    with pytest.warns(VOCDataWarning, match="duplicate_ids"):
        ds = VOCDataset(f.root, ["train", "val"], class_names=CLASSES)
    assert ds.ids == ["a", "b"] and ds.report.counts()["duplicate_ids"] == 1


# ----------------------------------------------------------------------------- bad data


def test_missing_split_file_lists_available_splits(voc_folder):
    f = voc_folder().add("a", []).split("trainval", ["a"])
    with pytest.raises(VOCFormatError, match=r"train\.txt: split file not found.*trainval"):
        make(f)


def test_empty_split_file(voc_folder):
    f = voc_folder()
    (f.root / "ImageSets/Main/train.txt").write_text("\n  \n")
    with pytest.raises(VOCFormatError, match=r"train\.txt: split file lists no image ids"):
        make(f)


def test_split_file_with_two_columns(voc_folder):
    f = voc_folder().add("a", [])
    (f.root / "ImageSets/Main/train.txt").write_text("a  1\n")
    with pytest.raises(VOCFormatError, match="line 1 has 2 fields"):
        make(f)


def test_missing_xml(voc_folder):
    f = voc_folder().add("a", []).split("train", ["a", "ghost"])
    with pytest.raises(VOCFormatError, match=r"ghost\.xml: annotation file not found"):
        make(f)


@pytest.mark.parametrize(
    "xml, match",
    [
        ("<annotation><object><name>cat</name>", r"a\.xml: malformed XML at line 1"),
        ("<annotation><size><width>40</wid", r"a\.xml: malformed XML"),
        ("", r"a\.xml: malformed XML"),
        (
            annotation_xml(
                "a",
                (40, 30),
                [
                    "<object><name>cat</name><bndbox><xmin>1</xmin>"
                    "<ymin>1</ymin><xmax>5</xmax></bndbox></object>"
                ],
            ),
            r"a\.xml: object\[0\]/bndbox/ymax: missing",
        ),
        (
            annotation_xml("a", (40, 30), [object_xml("cat", (1, "one", 5, 5))]),
            r"object\[0\]/bndbox/ymin: expected a number, got 'one'",
        ),
        (
            annotation_xml("a", (40, 30), [object_xml("", (1, 1, 5, 5))]),
            r"object\[0\]/name: missing",
        ),
        (
            annotation_xml("a", (40, 30), [object_xml("cat", (1, 1, 5, 5), difficult="yes")]),
            r"object\[0\]/difficult: expected 0 or 1, got 'yes'",
        ),
        (annotation_xml("a", ("forty", 30), []), r"a\.xml/size/width: expected a number"),
    ],
    ids=[
        "unclosed",
        "truncated",
        "empty",
        "missing-field",
        "non-numeric",
        "no-name",
        "bad-difficult",
        "bad-size",
    ],
)
def test_malformed_annotation_names_file_and_field(voc_folder, xml, match):
    f = voc_folder().add("a", [], xml=xml).split("train", ["a"])
    with pytest.raises(VOCFormatError, match=match):
        make(f)


def test_all_problems_reported_at_once(voc_folder):
    f = voc_folder()
    f.add("a", [object_xml("horse", (1, 1, 5, 5))])
    f.add("b", [], xml="<annotation>")
    f.split("train", ["a", "b"])
    with pytest.raises(VOCFormatError) as info:
        make(f)
    assert len(info.value.problems) == 2
    assert "'horse'" in str(info.value) and "b.xml: malformed XML" in str(info.value)


def test_unknown_class_is_an_error_naming_file_and_class(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5)), object_xml("horse", (1, 1, 5, 5))])
    f.split("train", ["a"])
    with pytest.raises(VOCFormatError, match=r"a\.xml: object\[1\]/name: unknown class 'horse'"):
        make(f)


def test_unknown_class_skip_mode_counts(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5)), object_xml("horse", (1, 1, 5, 5))])
    f.split("train", ["a"])
    with pytest.warns(VOCDataWarning, match="unknown_class: 1"):
        ds = make(f, unknown_classes="skip")
    assert ds.annotation(0).labels.tolist() == [0]
    assert "horse" in ds.report.unknown_class[0]


def test_missing_image(voc_folder):
    f = voc_folder().add("a", [])
    f.image_path("a").unlink()
    f.split("train", ["a"])
    with pytest.raises(VOCImageError, match=r"image 'a' not found \(tried .*a\.jpg"):
        make(f)


def test_unreadable_jpeg(voc_folder):
    f = voc_folder().add("a", [])
    f.image_path("a").write_bytes(b"this is not a jpeg")
    f.split("train", ["a"])
    with pytest.raises(VOCImageError, match=r"a\.jpg: not a readable image"):
        make(f)


def test_truncated_jpeg_found_at_construction(voc_folder):
    f = voc_folder().add("a", [], size=(64, 48))
    data = f.image_path("a").read_bytes()
    f.image_path("a").write_bytes(data[: len(data) // 2])
    f.split("train", ["a"])
    with pytest.raises(VOCImageError, match=r"a\.jpg: image data is truncated or corrupt"):
        make(f)


def test_truncated_png_found_by_full_verification(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))], size=(64, 48), ext=".png")
    data = f.image_path("a", ".png").read_bytes()
    f.image_path("a", ".png").write_bytes(data[: len(data) // 2])
    f.split("train", ["a"])
    make(f)  # the header is intact: only a full decode sees it
    with pytest.raises(VOCImageError, match=r"a\.png: cannot decode image \(image file is trunc"):
        make(f, verify_images="full")


def test_image_corrupted_after_construction_names_file(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))], size=(64, 48))
    ds = make(f.split("train", ["a"]))
    data = f.image_path("a").read_bytes()
    f.image_path("a").write_bytes(data[: len(data) // 2])
    with pytest.raises(VOCImageError, match=r"a\.jpg: cannot decode image"):
        ds[0]


def test_size_mismatch_and_missing_size(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))], xml_size=(50, 30))
    f.split("train", ["a"])
    with pytest.raises(VOCFormatError, match=r"a\.xml/size: says 50x30 but image a\.jpg is 40x30"):
        make(f)
    g = voc_folder("g").add("a", [object_xml("cat", (1, 1, 5, 5))], xml_size=None)
    g.split("train", ["a"])
    ann = make(g).annotation(0)
    assert (ann.width, ann.height) == (40, 30)


def test_boxes_outside_image_are_clipped_or_dropped_and_counted(voc_folder):
    f = voc_folder()
    f.add(
        "a",
        [
            object_xml("cat", (0, -3, 45, 20)),  # partly outside: clipped
            object_xml("dog", (50, 5, 60, 10)),  # entirely outside: dropped
            object_xml("dog", (2, 2, 8, 8)),
        ],
        size=(40, 30),
    )
    f.split("train", ["a"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = make(f)
    assert len([w for w in caught if issubclass(w.category, VOCDataWarning)]) == 1
    ann = ds.annotation(0)
    np.testing.assert_array_equal(ann.boxes, [[0, 0, 40, 20], [1, 1, 8, 8]])
    assert ann.labels.tolist() == [0, 1]
    assert ds.report.counts()["clipped"] == 1 and ds.report.counts()["outside"] == 1
    assert "a.xml object[1]" in ds.report.outside[0]


def test_zero_size_boxes_dropped_and_counted(voc_folder):
    f = voc_folder()
    f.add(
        "a",
        [
            object_xml("cat", (7, 7, 7, 7)),
            object_xml("dog", (3, 4, 9, 4)),
            object_xml("dog", (2, 2, 8, 8)),
        ],
    )
    f.split("train", ["a"])
    with pytest.warns(VOCDataWarning, match="zero_size: 2"):
        ds = make(f)
    assert ds.annotation(0).labels.tolist() == [1]
    assert ds.report.zero_size[0].startswith("a.xml object[0]")


def test_inverted_box_is_an_error(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (9, 2, 3, 8))]).split("train", ["a"])
    with pytest.raises(VOCFormatError, match=r"object\[0\]/bndbox: inverted box xmin=9"):
        make(f)


def test_difficult_kept_or_dropped(voc_folder):
    f = voc_folder()
    f.add("a", [object_xml("cat", (1, 1, 5, 5), difficult=1), object_xml("dog", (1, 1, 5, 5))])
    f.add("b", [object_xml("cat", (1, 1, 5, 5), difficult=1)])
    f.split("train", ["a", "b"])
    kept = make(f)
    assert kept.annotation(0).difficult.tolist() == [True, False] and kept.report.total() == 0
    with pytest.warns(VOCDataWarning):
        dropped = make(f, keep_difficult=False)
    assert dropped.annotation(0).labels.tolist() == [1]
    assert len(dropped.annotation(1).boxes) == 0  # kept as a background image
    assert dropped.report.counts()["difficult_dropped"] == 2
    assert dropped.report.empty_images == ["VOCtiny/b"]
    assert dropped[1].boxes.shape == (0, 4) and dropped[1].labels.shape == (0,)


def test_argument_errors(voc_folder):
    f = voc_folder().add("a", [object_xml("cat", (1, 1, 5, 5))]).split("train", ["a"])
    with pytest.raises(ValueError, match="unknown_classes"):
        make(f, unknown_classes="ignore")
    with pytest.raises(ValueError, match="verify_images"):
        make(f, verify_images="none")
    with pytest.raises(ValueError, match="unique"):
        make(f, class_names=("cat", "cat"))
    with pytest.raises(IndexError):
        make(f)[1]


# ----------------------------------------------------------------------------- real data


def test_bccd_zero_size_boxes(shared_data):
    root = shared_data / "bccd" / "BCCD"
    with pytest.warns(VOCDataWarning, match="zero_size: 2"):
        ds = VOCDataset(root, ["trainval", "test"], class_names=("RBC", "WBC", "Platelets"))
    assert len(ds) == 364
    dropped = sorted(entry.split(".xml")[0] for entry in ds.report.zero_size)
    assert dropped == ["BloodImage_00338", "BloodImage_00343"]
    counts = np.bincount(np.concatenate([ds.annotation(i).labels for i in range(len(ds))]))
    assert counts.tolist() == [4155 - 2, 372, 361]  # both zero-size boxes are RBCs
    for i in range(len(ds)):
        a = ds.annotation(i)
        assert (a.boxes[:, 2] > a.boxes[:, 0]).all() and (a.boxes[:, 3] > a.boxes[:, 1]).all()
        assert (a.boxes >= 0).all() and (a.boxes[:, 2] <= a.width).all()
        assert (a.boxes[:, 3] <= a.height).all()
    sample = ds[0]
    assert sample.image.shape == (480, 640, 3) and sample.image.dtype == np.uint8


def test_voc2012_sample(shared_data):
    root = shared_data / "voc2012-sample" / "VOCdevkit"
    ds = VOCDataset(root, "val", year="2012")
    assert len(ds) == 100 and ds.report.total() == 0
    anns = [ds.annotation(i) for i in range(len(ds))]
    assert sum(len(a.boxes) for a in anns) == 273
    assert sum(int(a.difficult.sum()) for a in anns) == 38
    assert set(np.concatenate([a.labels for a in anns]).tolist()) == set(range(20))
    first = ds.ids.index("2007_000027")
    np.testing.assert_array_equal(anns[first].boxes, [[173, 100, 349, 351]])
    assert anns[first].labels.tolist() == [VOC_CLASSES.index("person")]
    assert ds[first].image.shape == (500, 486, 3)
    with pytest.warns(VOCDataWarning, match="difficult_dropped: 38"):
        train = VOCDataset(root, "val", year="2012", keep_difficult=False)
    assert sum(len(train.annotation(i).boxes) for i in range(100)) == 273 - 38
