"""Running a trained model: loading it (a ``minissd train`` run folder, or a bare weights file),
detections for images, and VOC evaluation over a dataset (with its AP report).

Pixel convention: the dataset reader returns continuous corners (``x1 = xmin - 1``,
``x2 = xmax``; see ``minissd.data.voc``), and detections are in the same coordinates, so
IoU needs no "+1" here (``plus_one=False``) and equals the VOC devkit's IoU on its 1-based
inclusive boxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .autograd import Tensor, no_grad
from .backend import get_array_module
from .fileio import atomic_write_text
from .ssd.detect import Detections, detect


def load_run(run_dir, device="cpu"):
    """The model of a training output folder: ``(model, config, class names)``, with the final
    weights, or the last checkpoint of a run that did not finish (announced)."""
    from .runfolder import RunFolder, RunFolderError
    from .train import TrainConfig, load_checkpoint

    folder = RunFolder(run_dir)
    if not folder.config.exists():
        raise RunFolderError(f"{folder.path}: no config.json (is this a `minissd train` "
                             f"output?)")
    config = TrainConfig.from_json(folder.config.read_text())
    path, what = folder.latest_weights()
    if path == folder.checkpoint:
        state, _, iteration, _ = load_checkpoint(path)
        print(f"{folder.path}: no final weights; using the last checkpoint (iteration "
              f"{iteration} of {config.iterations})")
    else:
        from .nn import load_npz

        state = load_npz(path)
    return _model_with_state(config.model, config.class_names, state, path, device,
                             config.extra, config.seed), config, _class_names(config.class_names)


def load_weights_file(path, model="ssd300", class_names=None, device="cpu"):
    """A model from a bare weights ``.npz`` (e.g. ``minissd convert``'s output), given the
    model name and class names: ``(model, class names)``."""
    from .nn import load_npz

    return (_model_with_state(model or "ssd300", class_names, load_npz(path), path, device),
            _class_names(class_names))


def _class_names(names):
    from .data import VOC_CLASSES

    return tuple(names) if names else VOC_CLASSES


def _model_with_state(model_name, class_names, state, path, device, extra=None, seed=0):
    from .pytorch.layouts import CONFIGS  # minissd's models and the PyTorch layouts
    from .ssd.model import SSD

    config = CONFIGS[model_name](len(_class_names(class_names)) + 1, **(extra or {}))
    model = SSD(config, seed=seed)
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc} (model {model_name}, "
                         f"{config.num_classes - 1} classes)") from None
    return model.to(device)


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


def evaluate_and_report(model, dataset, out_dir, use_07_metric=True):
    """Evaluate, print the AP table, write ap.json, ap.txt and pr.png; returns the result."""
    from . import eval as voc_eval

    result, dets = evaluate_model(model, dataset, use_07_metric=use_07_metric)
    table = voc_eval.format_ap_table(result, dataset.class_names)
    print(table)
    out = Path(out_dir)
    atomic_write_text(out / "ap.txt", table + "\n")
    voc_eval.write_json(result, out / "ap.json", dataset.class_names)
    voc_eval.save_pr_curves(result, out / "pr.png", dataset.class_names)
    return result, dets
