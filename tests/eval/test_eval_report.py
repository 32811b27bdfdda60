"""The text table, the JSON writer, the PR-curve picture and the detection-file loader."""

import json
import math
import os

import numpy as np
import pytest

from minissd import fileio
from minissd.eval import (
    eval_detection_voc,
    format_ap_table,
    load_detection_txt,
    load_detection_txt_dir,
    result_to_dict,
    save_pr_curves,
    write_json,
)

G0, G1, FAR = [0, 0, 9, 9], [20, 0, 29, 9], [100, 100, 109, 109]
NAMES = ["cat", "dog", "horse"]


def small_result(use_07_metric=True):
    """Class 0: TP, FP, TP over 3 positives. Class 1: a detection but no ground truth.
    Class 2: one positive, no detection."""
    pred = (
        [np.array([G0, FAR, G1, G0], float)],
        [np.array([0, 0, 0, 1])],
        [np.array([0.9, 0.8, 0.7, 0.6])],
    )
    gt = (
        [np.array([G0, G1, [40, 0, 49, 9], FAR], float)],
        [np.array([0, 0, 0, 2])],
        [np.zeros(4, bool)],
    )
    return eval_detection_voc(*pred, *gt, use_07_metric=use_07_metric, n_classes=3)


def test_table_lists_every_class_and_the_map():
    result = small_result(use_07_metric=False)
    # class 0: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3 -> AP 1/3 + 1/3 * 2/3 = 5/9.
    lines = format_ap_table(result, NAMES).splitlines()
    assert lines[0] == "VOC AP, IoU >= 0.5, VOC2010+ area metric"
    assert lines[1].split() == ["class", "AP", "(%)", "gt", "det"]
    assert lines[2].split() == ["cat", f"{100 * 5 / 9:.2f}", "3", "3"]
    assert lines[3].split() == ["dog", "n/a", "0", "1"]
    assert lines[4].split() == ["horse", "0.00", "1", "0"]
    # mAP over cat and horse only: (5/9 + 0) / 2.
    assert lines[5].split()[:2] == ["mAP", f"{100 * 5 / 18:.2f}"]
    assert "over 2 of 3 classes" in lines[5]


def test_table_default_names_and_name_count_check():
    result = small_result()
    assert "class 2" in format_ap_table(result)
    assert "VOC2007 11-point" in format_ap_table(result)
    with pytest.raises(ValueError, match="name the 3 classes"):
        format_ap_table(result, ["cat"])


def test_json_round_trip_is_strict_json_with_nulls(tmp_path):
    result = small_result()
    path = write_json(result, tmp_path / "ap.json", NAMES)
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["metric"] == "VOC2007 11-point" and data["iou_threshold"] == 0.5
    assert data["plus_one"] is True and data["use_07_metric"] is True
    assert data["map"] == pytest.approx(result.map)
    cat, dog, horse = data["classes"]
    assert cat["name"] == "cat" and cat["ap"] == pytest.approx(result.ap[0])
    assert cat["precision"] == pytest.approx([1, 1 / 2, 2 / 3])
    assert cat["recall"] == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    assert cat["scores"] == pytest.approx([0.9, 0.8, 0.7])
    assert dog["ap"] is None and dog["recall"] == [None] and dog["n_positives"] == 0
    assert horse["ap"] == 0.0 and horse["n_detections"] == 0 and horse["precision"] == []
    assert sorted(os.listdir(tmp_path)) == ["ap.json"]  # no temporary file left behind


def test_json_without_curves():
    data = result_to_dict(small_result(), include_curves=False)
    assert set(data["classes"][0]) == {"id", "name", "ap", "n_positives", "n_detections"}


def test_json_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ap.json"
    path.write_text("old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", failing_replace)  # the one atomic write
    with pytest.raises(OSError, match="disk full"):
        write_json(small_result(), path)
    # The old file is intact and the temporary file is gone.
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["ap.json"]


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_pr_curves_png(tmp_path, use_07_metric):
    path = save_pr_curves(small_result(use_07_metric), tmp_path / "pr.png", NAMES)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # 3 classes in one row of 3 panels at 100 dpi: 960 x 350 pixels (PNG IHDR width, height).
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (960, 350)
    assert sorted(os.listdir(tmp_path)) == ["pr.png"]


def test_pr_curves_figure_titles():
    from minissd.eval import pr_curves_figure

    fig = pr_curves_figure(small_result(use_07_metric=False), NAMES, ncols=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["cat: AP 55.6", "dog: no ground truth", "horse: AP 0.0"]
    assert not fig.axes[3].axison  # the unused fourth panel of the 2 x 2 grid
    assert any("mAP 27.78" in t.get_text() for t in fig.texts)  # the suptitle


def test_pr_curves_11_level_dots_average_to_the_ap():
    from minissd.eval import pr_curves_figure

    # 10 positives, 3 found first: recall exactly 3/10, below the devkit's 0.3 level
    # (0.30000000000000004), so the dots are 1 at t = 0, 0.1, 0.2 and 0 from t = 0.3 on.
    gts = np.array([[20 * k, 0, 20 * k + 9, 9] for k in range(10)], float)
    result = eval_detection_voc([gts[:3]], [np.zeros(3, int)], [np.array([0.9, 0.8, 0.7])],
                                [gts], [np.zeros(10, int)], use_07_metric=True)
    fig = pr_curves_figure(result, ["cat"], ncols=1)
    (dots,) = [line for line in fig.axes[0].get_lines() if line.get_label() == "11 levels"]
    assert np.mean(dots.get_ydata()) == pytest.approx(result.ap[0]) == pytest.approx(3 / 11)


def test_load_detection_txt(tmp_path):
    path = tmp_path / "img1.txt"
    path.write_text("3 0.5 1 2 30 40\n\n0 0.25 5.5 6 7 8.25\n")
    boxes, labels, scores = load_detection_txt(path)
    np.testing.assert_array_equal(boxes, [[1, 2, 30, 40], [5.5, 6, 7, 8.25]])
    assert labels.dtype == np.int64 and labels.tolist() == [3, 0]
    assert scores.tolist() == [0.5, 0.25]


def test_load_detection_txt_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("3 0.5 1 2 30 40\n3 0.5 1 2 30\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 6 fields"):
        load_detection_txt(path)
    path.write_text("cat 0.5 1 2 30 40\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: .*'cat'"):
        load_detection_txt(path)


def test_load_detection_txt_dir_order_and_missing_files(tmp_path):
    (tmp_path / "b.txt").write_text("1 0.9 0 0 9 9\n")
    (tmp_path / "a.txt").write_text("")
    boxes, labels, scores = load_detection_txt_dir(tmp_path, ["b", "a", "c"])
    assert [len(b) for b in boxes] == [1, 0, 0]
    assert boxes[1].shape == (0, 4) and boxes[2].shape == (0, 4)
    assert labels[0].tolist() == [1] and scores[0].tolist() == [0.9]
    with pytest.raises(FileNotFoundError, match="no detection file for image 'c'"):
        load_detection_txt_dir(tmp_path, ["b", "c"], missing="error")
    with pytest.raises(FileNotFoundError, match="no detection folder"):
        load_detection_txt_dir(tmp_path / "nope", ["b"])
    # The loaded lists feed the evaluation directly.
    result = eval_detection_voc(
        boxes, labels, scores, [np.array([G0], float)] * 3, [np.array([1])] * 3
    )
    assert result.n_positives[1] == 3 and math.isclose(result.ap[1], 4 / 11)
