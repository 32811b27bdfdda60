"""Fixtures for the evaluation tests: the real data under ``../shared/data`` beside the checkout.

The ground truth is read here with a tiny ``xml.etree`` helper so that these tests do not wait on
``minissd.data``; it can later be replaced by the dataset's annotation reader. It keeps the
devkit's pixel convention: ``bndbox`` values exactly as written (1-based, inclusive corners).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

# tests/eval/conftest.py -> parents[2] is the checkout; ../shared/data sits beside it.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VOC2012_SAMPLE = SHARED_DATA / "voc2012-sample"
VOC2007_TEST_GT = SHARED_DATA / "voc2007-test-gt" / "test_anno.mat"


def parse_voc_xml(path: Path):
    """One VOC annotation file as a list of ``{"name", "bbox", "difficult"}`` dicts.

    ``bbox`` is ``[xmin, ymin, xmax, ymax]`` as written in the file (VOC pixels, 1-based and
    inclusive); a missing ``difficult`` tag counts as 0, as in the devkit's reader.
    """
    objects = []
    for obj in ET.parse(path).getroot().findall("object"):
        box = obj.find("bndbox")
        difficult = obj.find("difficult")
        objects.append(
            {
                "name": obj.find("name").text.strip(),
                "bbox": [float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")],
                "difficult": int(difficult.text) if difficult is not None else 0,
            }
        )
    return objects


@pytest.fixture(scope="session")
def voc2012_sample():
    """The voc2012-sample data: ids, class names, raw XML records and per-image GT arrays."""
    if not VOC2012_SAMPLE.is_dir():
        pytest.skip(
            f"real-data test: {VOC2012_SAMPLE} is absent (no ../shared/data beside the repo)"
        )
    root = VOC2012_SAMPLE / "VOCdevkit" / "VOC2012"
    ids = (root / "ImageSets" / "Main" / "val.txt").read_text().split()
    class_names = (VOC2012_SAMPLE / "detections" / "classes.txt").read_text().split()
    records = {i: parse_voc_xml(root / "Annotations" / f"{i}.xml") for i in ids}
    gt_boxes, gt_labels, gt_difficults = [], [], []
    for i in ids:
        objs = records[i]
        gt_boxes.append(np.array([o["bbox"] for o in objs], dtype=np.float64).reshape(-1, 4))
        gt_labels.append(np.array([class_names.index(o["name"]) for o in objs], dtype=np.int64))
        gt_difficults.append(np.array([o["difficult"] for o in objs], dtype=bool))
    return {
        "ids": ids,
        "class_names": class_names,
        "records": records,
        "detections_dir": VOC2012_SAMPLE / "detections",
        "gt": (gt_boxes, gt_labels, gt_difficults),
    }


@pytest.fixture(scope="session")
def voc2007_test_gt():
    """The full VOC2007 test ground truth: ids, class names and per-image GT arrays."""
    if not VOC2007_TEST_GT.is_file():
        pytest.skip(
            f"real-data test: {VOC2007_TEST_GT} is absent (no ../shared/data beside the repo)"
        )
    scipy_io = pytest.importorskip("scipy.io", reason="reading the VOC2007 .mat needs scipy")
    mat = scipy_io.loadmat(VOC2007_TEST_GT, squeeze_me=True, struct_as_record=False)
    per_image = []
    for rec in mat["recs"]:
        objs = np.atleast_1d(rec.objects)  # one object squeezes to a bare struct
        per_image.append(
            (
                [str(o.__dict__["class"]) for o in objs],
                np.array([o.bbox for o in objs], dtype=np.float64).reshape(-1, 4),
                np.array([o.difficult for o in objs], dtype=bool),
            )
        )
    class_names = sorted({name for names, _, _ in per_image for name in names})
    index = {n: c for c, n in enumerate(class_names)}
    return {
        "ids": [str(i) for i in mat["gtids"]],
        "class_names": class_names,
        "gt": (
            [boxes for _, boxes, _ in per_image],
            [np.array([index[n] for n in names], dtype=np.int64) for names, _, _ in per_image],
            [difficult for _, _, difficult in per_image],
        ),
    }
