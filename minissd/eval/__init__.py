"""Evaluation with the PASCAL VOC devkit semantics: AP per class, mAP, tables, PR curves.

The rules are listed in :mod:`minissd.eval.voc`. A typical run, with per-image lists of arrays
(boxes ``(K, 4)`` as ``x1, y1, x2, y2`` VOC pixels, 0-based labels, scores)::

    from minissd import eval as voc_eval

    dets = voc_eval.load_detection_txt_dir("detections", image_ids)  # (boxes, labels, scores)
    result = voc_eval.eval_detection_voc(*dets, gt_boxes, gt_labels, gt_difficults)
    print(voc_eval.format_ap_table(result, class_names))  # AP per class and mAP, in %
    voc_eval.write_json(result, "ap.json", class_names)
    voc_eval.save_pr_curves(result, "pr.png", class_names)
"""

from minissd.eval.detfiles import load_detection_txt, load_detection_txt_dir
from minissd.eval.plot import pr_curves_figure, save_pr_curves
from minissd.eval.report import format_ap_table, result_to_dict, write_json
from minissd.eval.voc import (
    VOC07_RECALL_LEVELS,
    VOCEvalResult,
    devkit_iou,
    eval_detection_voc,
    voc_ap,
)

__all__ = [
    "VOC07_RECALL_LEVELS",
    "VOCEvalResult",
    "devkit_iou",
    "eval_detection_voc",
    "format_ap_table",
    "load_detection_txt",
    "load_detection_txt_dir",
    "pr_curves_figure",
    "result_to_dict",
    "save_pr_curves",
    "voc_ap",
    "write_json",
]
