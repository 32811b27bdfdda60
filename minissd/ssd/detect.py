"""From network outputs to detections (paper Sec. 3 and the authors' Caffe DetectionOutput).

For each image: softmax over classes; decode the offsets against the default boxes; then for
every object class separately: keep scores ``> score_threshold``, the ``pre_nms_top_k`` best of
those, and non-maximum suppression at ``nms_threshold``; finally the ``keep_top_k`` best
detections of the image over all classes. Boxes come out in pixels of the original image.
Inside ``minissd.learner.use_learner_functions(nms=...)`` the learner's NMS does the suppression
of each class (the rest of the path stays the library's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import to_numpy
from ..boxes import batched_nms, batched_nms_reference, decode
from ..learner import call_learner, learner_function
from ..priors import SSD_VARIANCES
from .model import DetectConfig


@dataclass
class Detections:
    """One image's detections: ``boxes (D, 4)`` corners in pixels, ``labels (D,)`` 0-based object
    classes, ``scores (D,)``, sorted by descending score."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    def __len__(self):
        return len(self.scores)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def detect_image(loc, conf, priors, config: DetectConfig, variances=SSD_VARIANCES,
                 image_size=(1.0, 1.0), clip=True) -> Detections:
    """Detections of one image.

    Args:
        loc: ``(P, 4)`` predicted offsets; conf: ``(P, C)`` class scores (class 0 background).
        priors: ``(P, 4)`` default boxes, centre form, normalised.
        image_size: ``(height, width)`` in pixels to scale the normalised boxes to.
        clip: clip boxes to the image.
    """
    loc, conf, priors = to_numpy(loc), to_numpy(conf), to_numpy(priors)
    scores = _softmax(conf.astype(np.float64))
    boxes = decode(loc.astype(np.float64), priors.astype(np.float64), variances)
    if clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    h, w = image_size
    boxes = boxes * np.array([w, h, w, h], dtype=np.float64)
    # The candidates: every (object class, default box) pair scoring above the threshold,
    # listed class by class and box by box within a class. batched_nms suppresses within each
    # class, cuts each class to its pre_nms_top_k best before suppressing (Caffe's top_k;
    # ssd.pytorch's nms cuts its top_k the same way) and returns the image's keep_top_k best
    # over all classes (Caffe's keep_top_k; ssd.pytorch's final per-image top-k does nothing,
    # #168: its `fill_(0)` writes into the copy that boolean-mask indexing makes). Equal scores
    # keep the candidates' order: the lower class first, then the lower box index.
    class_scores = scores[:, 1:].T  # (C - 1, P): class 0, the background, is never reported
    labels, prior = np.nonzero(class_scores > config.score_threshold)  # class-major order
    candidate_scores = class_scores[labels, prior]
    if (learner_nms := learner_function("nms")) is None:
        keep = batched_nms(boxes[prior], candidate_scores, labels, config.nms_threshold,
                           pre_nms_top_k=config.pre_nms_top_k, top_k=config.keep_top_k)
    else:  # the same per-class loop and cuts, the learner's suppression inside
        def suppress(b, s, threshold):
            return call_learner("nms", learner_nms, b, s, threshold, shape=(None,), kind="i",
                                where="ssd.detect.detect_image", index_range=(0, len(s)))

        keep = batched_nms_reference(boxes[prior], candidate_scores, labels,
                                     config.nms_threshold, pre_nms_top_k=config.pre_nms_top_k,
                                     top_k=config.keep_top_k, nms=suppress)
    return Detections(boxes[prior[keep]], labels[keep].astype(np.int64), candidate_scores[keep])


def detect(loc, conf, priors, config: DetectConfig, variances=SSD_VARIANCES,
           image_sizes=None, clip=True) -> list[Detections]:
    """``detect_image`` for a batch: ``loc (N, P, 4)``, ``conf (N, P, C)``; ``image_sizes`` a
    list of ``(height, width)`` (default: normalised coordinates)."""
    loc, conf = to_numpy(getattr(loc, "data", loc)), to_numpy(getattr(conf, "data", conf))
    if image_sizes is None:
        image_sizes = [(1.0, 1.0)] * len(loc)
    return [detect_image(loc[i], conf[i], priors, config, variances, image_sizes[i], clip)
            for i in range(len(loc))]
