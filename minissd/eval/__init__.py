"""Evaluation with the PASCAL VOC devkit semantics: AP per class, mAP, tables, PR curves.

The rules are listed in :mod:`minissd.eval.voc`.
"""

from minissd.eval.detfiles import load_detection_txt, load_detection_txt_dir
from minissd.eval.plot import pr_curves_figure, save_pr_curves
from minissd.eval.report import atomic_write_bytes, format_ap_table, result_to_dict, write_json
from minissd.eval.voc import VOCEvalResult, devkit_iou, eval_detection_voc, voc_ap

__all__ = [
    "VOCEvalResult",
    "atomic_write_bytes",
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
