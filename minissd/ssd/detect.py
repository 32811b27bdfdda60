"""From network outputs to detections (paper Sec. 3 and the authors' Caffe DetectionOutput).

For each image: softmax over classes; decode the offsets against the default boxes; then for
every object class separately: keep scores ``> score_threshold``, the ``pre_nms_top_k`` best of
those, and non-maximum suppression at ``nms_threshold``; finally the ``keep_top_k`` best
detections of the image over all classes. Boxes come out in pixels of the original image.

``detect_image`` is that recipe for one image, written to be read; ``detect`` gives the same
detections for a whole batch in one pass (one ``batched_nms`` call over every (image, class)
pair, on the GPU one CUDA kernel launch) and is what ``inference.predict`` uses.
Inside ``minissd.learner.use_learner_functions(nms=...)`` the learner's NMS does the suppression
of each class (the rest of the path stays the library's; ``detect`` then goes image by image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module, to_numpy
from ..boxes import batched_nms, batched_nms_reference, best_per_label, decode
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
    """Softmax over the last axis (NumPy or CuPy)."""
    e = get_array_module(x).exp(x - x.max(axis=-1, keepdims=True))
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
    """``detect_image`` for a batch, the same detections, in one pass over the whole batch.

    Args:
        loc: ``(N, P, 4)`` offsets; conf: ``(N, P, C)`` class scores (NumPy or CuPy, or Tensors).
        priors: ``(P, 4)`` default boxes, centre form, normalised.
        image_sizes: a list of N ``(height, width)`` (default: normalised coordinates).
    Returns N ``Detections`` (NumPy arrays).

    Softmax, decoding and the score threshold run on the whole ``(N, P, C)`` array, and one
    ``batched_nms`` call suppresses every (image, class) pair at once: its labels are
    ``image * (C - 1) + class``, so boxes of different images or classes never meet. Candidates
    are listed image by image, class by class, box by box, so the ties fall as in
    ``detect_image`` (the readable one-image version; ``tests/ssd/test_detect.py`` holds the two
    equal). On CuPy arrays everything stays on the GPU up to the kept detections, and the
    suppression is the CUDA kernel (``kernels/nms.cu``). A learner's NMS
    (``use_learner_functions``) goes image by image through ``detect_image``.
    """
    loc, conf = getattr(loc, "data", loc), getattr(conf, "data", conf)
    n = len(loc)
    if image_sizes is None:
        image_sizes = [(1.0, 1.0)] * n
    if len(image_sizes) != n:
        raise ValueError(f"image_sizes must give one (height, width) per image: {n} images, "
                         f"{len(image_sizes)} sizes")
    if learner_function("nms") is not None:
        loc, conf = to_numpy(loc), to_numpy(conf)
        return [detect_image(loc[i], conf[i], priors, config, variances, image_sizes[i], clip)
                for i in range(n)]
    xp = get_array_module(loc, conf)
    scores = _softmax(xp.asarray(conf).astype(xp.float64))  # (N, P, C)
    boxes = decode(xp.asarray(loc).astype(xp.float64), xp.asarray(priors).astype(xp.float64),
                   variances)  # (N, P, 4)
    if clip:
        boxes = xp.clip(boxes, 0.0, 1.0)
    scale = xp.asarray([[w, h, w, h] for h, w in image_sizes], dtype=xp.float64)
    boxes = boxes * scale[:, None, :]
    class_scores = scores[:, :, 1:].transpose(0, 2, 1)  # (N, C - 1, P): no background
    image, labels, prior = xp.nonzero(class_scores > config.score_threshold)
    candidate_scores = class_scores[image, labels, prior]
    segment = image * class_scores.shape[1] + labels
    if config.pre_nms_top_k is not None:  # cut now: only the survivors' boxes are gathered
        best = best_per_label(candidate_scores, segment, config.pre_nms_top_k)
        image, labels, prior, candidate_scores, segment = (
            a[best] for a in (image, labels, prior, candidate_scores, segment))
    # already cut to each (image, class)'s pre_nms_top_k best: no second cut inside
    keep = batched_nms(boxes[image, prior], candidate_scores, segment, config.nms_threshold)
    # image by image, each image's kept boxes still by descending score; its keep_top_k best
    keep = keep[xp.argsort(image[keep] * len(keep) + xp.arange(len(keep)))]
    kept_image = image[keep]
    if config.keep_top_k is not None:
        rank = xp.arange(len(keep)) - xp.searchsorted(kept_image, kept_image, side="left")
        keep, kept_image = keep[rank < config.keep_top_k], kept_image[rank < config.keep_top_k]
    kept_boxes = to_numpy(boxes[image[keep], prior[keep]])
    kept_labels = to_numpy(labels[keep]).astype(np.int64)
    kept_scores = to_numpy(candidate_scores[keep])
    bounds = np.searchsorted(to_numpy(kept_image), np.arange(n + 1))
    return [Detections(kept_boxes[a:b], kept_labels[a:b], kept_scores[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])]
