"""Parity harness: run minissd and another SSD implementation on the same input, layer by layer.

Given a PyTorch SSD in ssd.pytorch's layout (``minissd.pytorch.reference_model`` builds one; a
real ssd.pytorch ``SSD`` in ``phase="train"`` works the same) or torchvision's ``ssd300_vgg16``,
and an input batch, ``compare`` converts the weights (``minissd.pytorch.convert``) unless a
minissd model is given, runs both networks on identical tensors and reports, in forward order:

1. every layer's activations (minissd's ``taps`` names: conv1_1 ... pool5, fc6, fc7, l2norm,
   conv8_1 ... conv11_2, loc0/conf0 ... the NCHW head outputs) against the torch side's, taken
   with forward hooks on the modules that ``minissd.pytorch.layouts`` names for each layer
   (post-ReLU, as minissd taps them); the first layer whose relative error
   exceeds ``rtol`` is named: with both sides run end to end, errors propagate forward, so the
   first layer beyond tolerance is where the implementations part;
2. the head outputs ``loc (N, P, 4)`` and ``conf (N, P, C)``;
3. for torchvision, the default boxes: ``make_priors(config.priors)`` against torchvision's
   ``anchor_generator`` output;
4. the decoded boxes: minissd's ``boxes.decode`` against ssd.pytorch's ``decode`` formula (written
   in torch) or torchvision's ``BoxCoder.decode_single`` (with its ``log(1000/16)`` cap);
5. the final detections of each image, as sets: minissd's ``ssd.detect`` against
   ``reference_model.detect_reference`` (Caffe ``DetectionOutput`` in torch, the same numbers)
   or torchvision's own ``postprocess_detections`` (labels shifted: torchvision's 1..C-1 are
   minissd's 0..C-2). Detections match when label equal, score within ``score_atol`` and every
   corner within ``box_atol`` pixels.

Error measure: ``rel = max|a - b| / max|b|`` over the whole tensor (``b`` the reference), which
stays meaningful where single elements are near zero.

The inputs are fed as given: both networks get the same preprocessed NCHW tensor (torchvision's
``GeneralizedRCNNTransform`` is bypassed; see ``minissd.pytorch.layouts`` for the input
conventions).

    python -m minissd.pytorch.parity --layout ssd.pytorch --weights ssd300_mAP_77.43_v2.pth \
        --image x.jpg
    python -m minissd.pytorch.parity --layout torchvision-ssd300 --dtype float64  # random weights
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field

import numpy as np

from .. import boxes as B
from ..autograd import no_grad
from ..priors import make_priors
from ..ssd.detect import detect
from . import reference_model as RM
from . import require_torch
from .convert import (
    as_numpy_state,
    build_model,
    convert_state_dict,
    default_config,
    read_state_dict,
)
from .layouts import MODEL_LAYOUTS, MODULES, layers

#: default relative tolerance of activations, by dtype.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
#: torchvision's cap on ``v * t_w`` / ``v * t_h`` before ``exp`` (``BoxCoder.bbox_xform_clip``).
TORCHVISION_MAX_LOG_SCALE = math.log(1000.0 / 16)
#: torchvision's ``DefaultBoxGenerator`` makes its box widths and heights in float32 whatever
#: the model's dtype (``_generate_wh_pairs(dtype=torch.float32)``), so its default boxes carry
#: float32 rounding (relative ~6e-8) even in a float64 model: the floor of the priors / decoded
#: boxes tolerance, and of the detection box tolerance (pixels), against the preset priors.
TORCHVISION_PRIORS_RTOL = 1e-6
TORCHVISION_PRIORS_BOX_ATOL = 1e-2


@dataclass
class Diff:
    """One tensor pair: ``rel = max_abs / ref_max``; ``ok`` when ``rel <= rtol``."""

    name: str
    shape: tuple
    max_abs: float
    ref_max: float
    rel: float
    ok: bool
    rtol: float = 0.0


@dataclass
class DetectionDiff:
    """One image's detections: ``matched`` pairs, the detections only one side has (each
    ``(label, score, box)``, minissd's 0-based labels), and the worst matched errors."""

    image: int
    num_minissd: int
    num_reference: int
    matched: int
    only_minissd: list = field(default_factory=list)
    only_reference: list = field(default_factory=list)
    max_box_error: float = 0.0
    max_score_error: float = 0.0

    @property
    def ok(self):
        return not self.only_minissd and not self.only_reference


@dataclass
class ParityReport:
    """Everything ``compare`` measured; ``text()`` prints it."""

    layout: str
    dtype: str
    reference_dtype: str
    input_shape: tuple
    rtol: float
    layers: list  # [Diff], forward order
    first_divergent: str | None
    heads: list  # [Diff] loc, conf
    priors: Diff | None
    boxes: Diff | None
    detections: list  # [DetectionDiff]
    box_atol: float = 0.0
    score_atol: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return (self.first_divergent is None and all(d.ok for d in self.heads)
                and (self.priors is None or self.priors.ok)
                and (self.boxes is None or self.boxes.ok)
                and all(d.ok for d in self.detections))

    def layer(self, name) -> Diff:
        for d in self.layers:
            if d.name == name:
                return d
        raise KeyError(f"no layer {name!r} in the report (have {[d.name for d in self.layers]})")

    def text(self) -> str:
        lines = [f"minissd parity vs {self.layout}: input {self.input_shape}, minissd "
                 f"{self.dtype}, reference {self.reference_dtype}, rtol {self.rtol:g}",
                 f"{'layer':<12} {'shape':<22} {'max |diff|':>11} {'max |ref|':>11} "
                 f"{'rel':>10}"]

        def row(d):
            flag = "" if d.ok else f"  <-- beyond rtol {d.rtol:g}"
            if d.ok and d.rtol != self.rtol:
                flag = f"  (rtol {d.rtol:g})"
            if d.name == self.first_divergent:
                flag = "  <-- FIRST DIVERGENT LAYER"
            return (f"{d.name:<12} {str(d.shape):<22} {d.max_abs:11.3e} {d.ref_max:11.3e} "
                    f"{d.rel:10.2e}{flag}")

        lines += [row(d) for d in self.layers]
        lines.append("-" * 70)
        lines += [row(d) for d in self.heads]
        if self.priors is not None:
            lines.append(row(self.priors))
        if self.boxes is not None:
            lines.append(row(self.boxes))
        lines.append(f"detections (box_atol {self.box_atol:g} px, score_atol "
                     f"{self.score_atol:g}):")
        for d in self.detections:
            lines.append(f"  image {d.image}: minissd {d.num_minissd}, reference "
                         f"{d.num_reference}, matched {d.matched}, max box error "
                         f"{d.max_box_error:.3e} px, max score error {d.max_score_error:.3e}"
                         + ("" if d.ok else "  <-- MISMATCH"))
            for side, dets in (("minissd only", d.only_minissd),
                               ("reference only", d.only_reference)):
                for label, score, box in dets[:5]:
                    lines.append(f"    {side}: label {label} score {score:.6g} box "
                                 f"{np.round(box, 3).tolist()}")
                if len(dets) > 5:
                    lines.append(f"    {side}: ... {len(dets) - 5} more")
        lines += [f"note: {n}" for n in self.notes]
        verdict = "PARITY" if self.ok else "MISMATCH"
        where = f" (first divergent layer: {self.first_divergent})" if self.first_divergent else ""
        lines.append(f"{verdict}{where}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ helpers


def diff(name, ours, ref, rtol) -> Diff:
    """Compare two arrays of the same shape (``ref`` the reference)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return Diff(name, f"{ours.shape} vs {ref.shape}", math.inf, math.inf, math.inf, False,
                    rtol)
    max_abs = float(np.abs(ours - ref).max()) if ours.size else 0.0
    ref_max = float(np.abs(ref).max()) if ref.size else 0.0
    rel = max_abs / ref_max if ref_max > 0 else (0.0 if max_abs == 0 else math.inf)
    if not (np.isfinite(ours).all() and np.isfinite(ref).all()):
        rel = math.inf if not np.array_equal(ours, ref, equal_nan=True) else rel
    return Diff(name, tuple(ours.shape), max_abs, ref_max, rel, bool(rel <= rtol), rtol)


def match_detections(ours, ref, box_atol, score_atol, image=0) -> DetectionDiff:
    """Match two detection sets ``(boxes (D, 4), labels (D,), scores (D,))``: greedy in minissd's
    score order, each minissd detection takes the closest unused reference detection of the same
    label within the tolerances."""
    ob, ol, os_ = (np.asarray(a) for a in ours)
    rb, rl, rs = (np.asarray(a) for a in ref)
    used = np.zeros(len(rs), bool)
    out = DetectionDiff(image, len(os_), len(rs), 0)
    for i in np.argsort(-os_, kind="stable"):
        cand = np.flatnonzero(~used & (rl == ol[i]) & (np.abs(rs - os_[i]) <= score_atol))
        if cand.size:
            err = np.abs(rb[cand] - ob[i]).max(axis=1)
            j = cand[np.argmin(err)]
            if err.min() <= box_atol:
                used[j] = True
                out.matched += 1
                out.max_box_error = max(out.max_box_error, float(err.min()))
                out.max_score_error = max(out.max_score_error, float(abs(rs[j] - os_[i])))
                continue
        out.only_minissd.append((int(ol[i]), float(os_[i]), ob[i]))
    out.only_reference = [(int(rl[j]), float(rs[j]), rb[j]) for j in np.flatnonzero(~used)]
    return out


def layout_of_torch_module(reference) -> str:
    """The whole-model layout (one of ``MODEL_LAYOUTS``) of a torch module, from its
    submodules (``layouts.MODULES``)."""
    for layout, names in MODULES.items():
        if all(hasattr(reference, name) for name in names):
            return layout
    expected = " or ".join(f"{layout} ({', '.join(names)})" for layout, names in MODULES.items())
    raise ValueError(f"cannot tell the layout of {type(reference).__name__}: expected the "
                     f"submodules of {expected}")


def hooks(model, layout) -> list:
    """``[(torch module path, tap name, read)]``: where to hook each of minissd's taps, from the
    table of layouts (``layouts.Layer``: ``read`` is how the module's output becomes the
    tap)."""
    return [(row.output, row.tap, row.read) for row in layers(model, layout)
            if row.output is not None]


def run_reference(reference, layout, x, model):
    """Run the torch model ``reference`` on ``x`` (a torch tensor) with forward hooks at the
    modules of ``model``'s layers (``hooks``) -> ``(taps, loc, conf, extra)``: the taps as NumPy
    arrays by minissd's names, the head outputs as torch tensors, and for torchvision what
    its post-processing needs (``head``, ``anchors``, ``sizes``)."""
    torch = require_torch("minissd.pytorch.parity")
    taps, handles = {}, []

    def make_hook(name, read):
        def hook(_module, _inputs, output):
            if read == "source0":
                output = list(output.values())[0]
            value = output.detach().clone()  # in-place ReLUs would change it later
            if read == "relu":
                value = torch.relu(value)
            taps[name] = value.cpu().numpy()
        return hook

    for path, name, read in hooks(model, layout):
        handles.append(reference.get_submodule(path).register_forward_hook(make_hook(name, read)))
    extra = {}
    try:
        with torch.no_grad():
            if layout == "torchvision-ssd300":
                from torchvision.models.detection.image_list import ImageList

                features = list(reference.backbone(x).values())
                head = reference.head(features)
                loc, conf = head["bbox_regression"], head["cls_logits"]
                sizes = [tuple(x.shape[-2:])] * x.shape[0]
                anchors = reference.anchor_generator(ImageList(x, sizes), features)
                extra.update(head=head, anchors=anchors, sizes=sizes)
            else:
                out = reference(x)
                if not isinstance(out, (tuple, list)) or out[0].dim() != 3 or out[0].shape[-1] != 4:
                    raise ValueError("the ssd.pytorch model must return (loc (N, P, 4), conf "
                                     "(N, P, C), ...): build it with phase='train'")
                loc, conf = out[0], out[1]
    finally:
        for h in handles:
            h.remove()
    return taps, loc, conf, extra


# ------------------------------------------------------------------------------------ compare


def compare(reference, x, *, layout=None, model=None, config=None, rtol=None, box_atol=None,
            score_atol=None, clip=True, priors="preset") -> ParityReport:
    """Run minissd and ``reference`` (a torch module) on ``x`` and compare them.

    Args:
        reference: ssd.pytorch-layout SSD (returns ``(loc, conf, ...)``) or torchvision's SSD.
        x: ``(N, 3, H, W)`` preprocessed input (array or torch tensor); each side gets it in its
            own parameters' dtype.
        layout: ``"ssd.pytorch"`` / ``"torchvision-ssd300"`` (default: from the module).
        model: the minissd ``SSD`` to test; None converts ``reference.state_dict()`` (in the
            reference's dtype) with ``config`` (default: the layout's, see
            ``minissd.pytorch.convert.default_config``).
        rtol: relative tolerance of activations (default ``RTOL`` by minissd's dtype).
        box_atol, score_atol: detection matching tolerances (pixels; probability); default
            ``100 * rtol * image side`` and ``100 * rtol`` (float32 at 300 px: 0.3 px, 1e-3).
        clip: clip decoded boxes to the image (both sides; torchvision always clips).
        priors: the default boxes minissd decodes with: ``"preset"`` (``config.priors``, what a
            minissd user runs) or, for torchvision, ``"reference"`` (torchvision's own anchors,
            which isolates decoding and post-processing from the float32 rounding of
            torchvision's box sizes; see ``TORCHVISION_PRIORS_RTOL``).
    """
    torch = require_torch("minissd.pytorch.parity.compare")
    layout = layout or layout_of_torch_module(reference)
    if layout not in MODEL_LAYOUTS:
        raise ValueError(f"compare: layout must be one of {MODEL_LAYOUTS}, got {layout!r}")
    ref_dtype = next(reference.parameters()).dtype
    if model is None:
        state = as_numpy_state(reference.state_dict())
        model = build_model(convert_state_dict(state, layout,
                                               config or default_config(state, layout)))
    config = model.config
    dtype = np.dtype(model.parameters()[0].dtype)
    rtol = RTOL.get(dtype, 1e-5) if rtol is None else rtol
    x_np = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if x_np.ndim != 4 or x_np.shape[1] != 3:
        raise ValueError(f"compare: x must be (N, 3, H, W), got {x_np.shape}")
    n, _, height, width = x_np.shape
    side = float(max(height, width))
    if priors not in ("preset", "reference"):
        raise ValueError(f"compare: priors must be 'preset' or 'reference', got {priors!r}")
    if priors == "reference" and layout != "torchvision-ssd300":
        raise ValueError("compare: priors='reference' needs torchvision (ssd.pytorch's model "
                         "has no anchors of its own; both sides decode with config.priors)")
    tv_preset = layout == "torchvision-ssd300" and priors == "preset"
    box_rtol = max(rtol, TORCHVISION_PRIORS_RTOL) if tv_preset else rtol
    if box_atol is None:
        box_atol = 1e2 * rtol * side
        box_atol = max(box_atol, TORCHVISION_PRIORS_BOX_ATOL) if tv_preset else box_atol
    score_atol = 1e2 * rtol if score_atol is None else score_atol
    x_ref = torch.from_numpy(np.ascontiguousarray(x_np)).to(ref_dtype)
    notes = []
    if np.dtype(str(ref_dtype).replace("torch.", "")) != dtype:
        notes.append(f"dtypes differ: minissd {dtype}, reference {ref_dtype}")

    reference.eval()
    ref_taps, ref_loc, ref_conf, extra = run_reference(reference, layout, x_ref, model)
    taps = {}
    with no_grad():
        loc, conf = model(np.asarray(x_np, dtype=dtype), taps)
    loc, conf = np.asarray(loc.data), np.asarray(conf.data)

    layers = []
    for name, value in taps.items():
        if name not in ref_taps:
            notes.append(f"layer {name}: no torch-side activation hooked")
            continue
        layers.append(diff(name, np.asarray(getattr(value, "data", value)), ref_taps[name],
                           rtol))
    first = next((d.name for d in layers if not d.ok), None)
    heads = [diff("loc", loc, ref_loc.numpy(), rtol), diff("conf", conf, ref_conf.numpy(), rtol)]

    prior_boxes = make_priors(config.priors, dtype=np.float64)
    variances = config.priors.variances
    scale = np.array([width, height, width, height], np.float64)
    priors_diff, boxes_ref, dets_ref = None, [], []
    if layout == "torchvision-ssd300":
        anchors = [a.double().numpy() for a in extra["anchors"]]
        priors_diff = diff("priors(px)", B.centre_to_corners(prior_boxes) * scale, anchors[0],
                           max(rtol, TORCHVISION_PRIORS_RTOL))
        if priors == "reference":
            prior_boxes = B.corners_to_centre(anchors[0] / scale)
        else:
            notes.append(f"torchvision makes its default box sizes in float32 (relative error "
                         f"~6e-8 in any dtype): priors and decoded boxes are held to rtol "
                         f"{box_rtol:g}, detection boxes to {box_atol:g} px; "
                         f"priors='reference' decodes with torchvision's anchors instead")
        for i in range(n):
            boxes_ref.append(reference.box_coder.decode_single(
                ref_loc[i], extra["anchors"][i]).double().numpy())
        max_log = TORCHVISION_MAX_LOG_SCALE
        for d in reference.postprocess_detections(extra["head"], extra["anchors"],
                                                  extra["sizes"]):
            dets_ref.append((d["boxes"].double().numpy(), d["labels"].numpy() - 1,
                             d["scores"].double().numpy()))
        notes.append("torchvision: decode caps v*t_w, v*t_h at log(1000/16) (applied to "
                     "minissd's loc before detect); labels shown 0-based (torchvision's - 1)")
    else:
        max_log = None
        priors_t = torch.from_numpy(prior_boxes).to(ref_dtype)
        det = config.detect
        for i in range(n):
            boxes_ref.append(RM.decode_reference(ref_loc[i], priors_t, variances).double()
                             .numpy() * scale)
            b, lab, s = RM.detect_reference(
                ref_loc[i], ref_conf[i], priors_t, score_threshold=det.score_threshold,
                pre_nms_top_k=det.pre_nms_top_k, nms_threshold=det.nms_threshold,
                keep_top_k=det.keep_top_k, variances=variances, clip=clip)
            dets_ref.append((b.double().numpy() * scale, lab.numpy(), s.double().numpy()))
    ours_boxes = B.decode(loc.astype(np.float64), prior_boxes, variances,
                          max_log_scale=max_log) * scale
    boxes_diff = diff("boxes(px)", ours_boxes, np.stack(boxes_ref), box_rtol)

    loc_for_detect = loc
    if max_log is not None:  # torchvision's cap, expressed on the offsets
        loc_for_detect = loc.copy()
        loc_for_detect[..., 2:] = np.minimum(loc[..., 2:],
                                             max_log / np.asarray(variances[2:], loc.dtype))
    ours_dets = detect(loc_for_detect, conf, prior_boxes, config.detect, variances,
                       image_sizes=[(height, width)] * n,
                       clip=True if layout == "torchvision-ssd300" else clip)
    detections = [match_detections((d.boxes, d.labels, d.scores), r, box_atol, score_atol, i)
                  for i, (d, r) in enumerate(zip(ours_dets, dets_ref))]
    return ParityReport(layout, str(dtype), str(ref_dtype).replace("torch.", ""),
                        tuple(x_np.shape), rtol, layers, first, heads, priors_diff, boxes_diff,
                        detections, box_atol, score_atol, notes)


def build_reference(layout, config=None, *, seed=0, dtype=None):
    """A torch model in ``layout`` with seeded random weights, in eval mode: ssd.pytorch's
    layout from ``reference_model.build_ssd_pytorch`` (``config`` default SSD300), torchvision's
    ``torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)`` with
    ``config.num_classes`` classes (default 91). ``dtype``: a torch dtype (default float32)."""
    torch = require_torch("minissd.pytorch.parity.build_reference")
    if layout == "ssd.pytorch":
        return RM.build_ssd_pytorch(config, seed=seed, dtype=dtype)
    if layout != "torchvision-ssd300":
        raise ValueError(f"build_reference: layout must be one of {MODEL_LAYOUTS}, got "
                         f"{layout!r}")
    try:
        from torchvision.models.detection import ssd300_vgg16
    except ImportError:
        raise ImportError("the torchvision-ssd300 reference needs torchvision: pip install "
                          "torchvision") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = ssd300_vgg16(weights=None, weights_backbone=None,
                           num_classes=91 if config is None else config.num_classes)
    ref.eval()
    return ref.to(dtype) if dtype is not None else ref


def reference_from_state_dict(state, layout, config=None, dtype=None):
    """A torch reference module (``build_reference``) carrying ``state`` (a path or a dict)."""
    torch = require_torch("minissd.pytorch.parity.reference_from_state_dict")
    if isinstance(state, (str, bytes)) or hasattr(state, "__fspath__"):
        state = read_state_dict(state)
    state = as_numpy_state(state)
    ref = build_reference(layout, config or default_config(state, layout))
    ref.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    return ref.to(dtype) if dtype is not None else ref


# ---------------------------------------------------------------------------------------- CLI


def _read_image(path, config, dtype):
    from PIL import Image

    from ..data.transforms import resize, to_chw

    image = np.asarray(Image.open(path).convert("RGB"))
    size = config.priors.image_hw
    chw = to_chw(resize(image, (int(size[0]), int(size[1]))), config.mean)
    return chw[None].astype(dtype)


def main(argv=None) -> int:
    """``python -m minissd.pytorch.parity``: exit status 0 on parity, 1 on a mismatch, 2 on an
    error."""
    p = argparse.ArgumentParser(prog="python -m minissd.pytorch.parity", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", choices=MODEL_LAYOUTS, default="ssd.pytorch")
    p.add_argument("--weights", help="state dict (.pth/.npz) in that layout; default: random "
                                     "weights (a self-check)")
    p.add_argument("--image", help="image file (resized, mean subtracted); default: random "
                                   "input")
    p.add_argument("--batch", type=int, default=1, help="random inputs per batch (default 1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--rtol", type=float, help="default: 1e-5 (float32), 1e-10 (float64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        torch_dtype = getattr(require_torch("python -m minissd.pytorch.parity"), args.dtype)
        if args.weights:
            reference = reference_from_state_dict(args.weights, args.layout, dtype=torch_dtype)
        else:
            reference = build_reference(args.layout, seed=args.seed, dtype=torch_dtype)
        config = default_config(as_numpy_state(reference.state_dict()), args.layout)
        if args.image:
            x = _read_image(args.image, config, args.dtype)
        else:
            h, w = config.priors.image_hw
            x = np.random.default_rng(args.seed).uniform(
                -128, 128, (args.batch, 3, int(h), int(w))).astype(args.dtype)
        report = compare(reference, x, layout=args.layout, config=config, rtol=args.rtol)
    except (ImportError, ValueError, FileNotFoundError) as exc:
        print(f"minissd parity: error: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
