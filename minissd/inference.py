"""Running a trained model: detections for images, and VOC evaluation over a dataset.

Pixel convention: the dataset reader returns continuous corners (``x1 = xmin - 1``,
``x2 = xmax``; see ``minissd.data.voc``), and detections are in the same coordinates, so
IoU needs no "+1" here (``plus_one=False``) and equals the VOC devkit's IoU on its 1-based
inclusive boxes.
"""

from __future__ import annotations

import numpy as np

from .autograd import Tensor, no_grad
from .backend import get_array_module
from .ssd.detect import Detections, detect


def predict(model, images, batch_size=8, detect_config=None, progress=False):
    """Detections for a list of ``uint8 (H, W, 3)`` RGB images (any sizes), in their pixels.

    Returns a list of ``Detections`` (boxes ``(D, 4)`` corners, 0-based labels, scores). The
    model runs in eval mode and is left in the mode it came in (training or eval).
    """
    from .data.transforms import SSDTransformEval

    transform = SSDTransformEval(model.config.image_size, mean=model.config.mean)
    xp = get_array_module(model.parameters()[0].data)
    cfg = detect_config or model.config.detect
    priors = model.priors()
    modes = [(m, m.training) for _, m in model.named_modules()]  # the caller's, module by module
    model.eval()
    out: list[Detections] = []
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="detect", unit="batch")
    try:
        for start in starts:
            chunk = images[start:start + batch_size]
            batch = np.stack([transform(im, np.zeros((0, 4)), np.zeros(0, np.int64))[0]
                              for im in chunk])
            with no_grad():
                loc, conf = model(Tensor(xp.asarray(batch)))
            sizes = [im.shape[:2] for im in chunk]
            out += detect(loc, conf, priors, cfg, model.config.priors.variances, sizes)
    finally:
        for m, training in modes:
            m.training = training
    return out


def evaluate_model(model, dataset, batch_size=8, use_07_metric=True, iou_threshold=0.5,
                   progress=True, detect_config=None):
    """Detect on every image of ``dataset`` and score with VOC AP.

    Returns ``(result, detections)``: a ``minissd.eval.VOCEvalResult`` and the per-image
    ``Detections``.
    """
    from .eval import eval_detection_voc

    indices = range(len(dataset))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="eval", unit="img")
    dets, gt_boxes, gt_labels, gt_difficult = [], [], [], []
    pending = []
    for i in indices:
        sample = dataset[i]
        pending.append(sample.image)
        gt_boxes.append(sample.boxes)
        gt_labels.append(sample.labels)
        gt_difficult.append(sample.difficult)
        if len(pending) == batch_size or i == len(dataset) - 1:
            dets += predict(model, pending, batch_size, detect_config)
            pending = []
    result = eval_detection_voc(
        [d.boxes for d in dets], [d.labels for d in dets], [d.scores for d in dets],
        gt_boxes, gt_labels, gt_difficult, iou_threshold=iou_threshold,
        use_07_metric=use_07_metric, n_classes=len(dataset.class_names), plus_one=False)
    return result, dets
