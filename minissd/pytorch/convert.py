"""PyTorch weights in: convert other SSD implementations' state dicts to minissd ``.npz`` weights.

The source layouts and where each keeps every layer are ``minissd.pytorch.layouts`` (``LAYOUTS``,
the table ``layouts.layers``); a state dict's layout is recognised from its keys
(``layout_of_state_dict``) or named explicitly. Whole models (``torchvision-ssd300``,
``ssd.pytorch``) convert completely, their class count read from the heads; the backbone layouts
(``torchvision-vgg16``, ``ssd.pytorch-vgg``) give the base, and everything else (L2Norm, extras,
heads) is initialised as a fresh ``SSD(config, seed=seed)`` would be and listed in
``Conversion.initialised``.

**fc6/fc7 decimation** (``torchvision-vgg16``). fc6 and fc7 are made from the ImageNet
classifier's fully connected layers by *decimation* (subsampling), the
"VGG_ILSVRC_16_layers_fc_reduced" of the paper ("we subsample parameters from fc6 and fc7",
Sec. 3; weiliu89/caffe#258: "following what DeepLab did"):

* fc6: ``classifier.0.weight (4096, 25088)`` reshaped to ``(4096, 512, 7, 7)`` (torchvision
  flattens the 7x7 pool5 output channel-major), then every 4th output channel and every
  3rd spatial tap: ``W[0::4, :, 0::3, 0::3]`` -> ``(1024, 512, 3, 3)`` (taps 0, 3, 6: a 7x7
  kernel seen through a 3x3 kernel of dilation 3; SSD then runs it with dilation 6 on the
  stride-1 pool5); bias ``b[0::4]``.
* fc7: ``classifier.3.weight (4096, 4096)`` -> ``W[0::4, 0::4]`` as ``(1024, 1024, 1, 1)``;
  bias ``b[0::4]``.
* fc8 (``classifier.6``) is dropped.

The authors never published the exact indices of their Caffe surgery; this is the scheme
of the widely used PyTorch port (sgrvinod's "a-PyTorch-Tutorial-to-Object-Detection",
``decimate(w, m=[4, None, 3, 3])`` / ``m=[4, 4, None, None]`` with ``index_select`` over
``arange(0, size, step)``), so the indices start at 0.

**Input normalisation** (``torchvision-vgg16``). torchvision's ImageNet weights expect
``(pixels/255 - mean) / std`` input (``layouts.IMAGENET_MEAN``, ``IMAGENET_STD``); by default
(``input_normalization="imagenet"``) that normalisation is folded into conv1_1 so that the
converted network takes minissd's input (pixels minus ``config.mean``):
``W'[:, c] = W[:, c] / (255 std_c)`` and ``b' = b + sum_{c,i,j} W[:, c, i, j] (mean'_c)``
with ``mean'_c = (config.mean_c / 255 - mean_c) / std_c``. It is exact except on the
one-pixel border, where the zero padding of the two inputs differs by ``mean'_c``
(|mean'_c| < 0.02). ``input_normalization=None`` copies conv1_1 unchanged.

**BGR weights** (``ssd.pytorch-vgg``, Caffe-trained): ``bgr_to_rgb=True`` reverses conv1_1's
input channels.

Every conversion checks every shape against the target model and names each missing,
unexpected or mis-shaped key. Reading a ``.pth`` needs torch (``torch.load(...,
weights_only=True)``); a state dict saved as ``.npz`` reads without it, and so does the
converted ``.npz`` (``minissd.nn.load_weights``).

Command line (``minissd convert`` or ``python -m minissd.pytorch.convert``)::

    python -m minissd.pytorch.convert SRC.pth DST.npz [--layout L] [--config ssd300|ssd512|
        torchvision-ssd300|small] [--num-classes C] [--seed S] [--bgr-to-rgb]
        [--no-input-normalization] [--dtype float32|float64] [--non-strict]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import priors as P
from ..nn import load_npz, save_npz
from ..ssd.model import SSD, SSDConfig, ssd300
from . import require_torch
from .layouts import (
    CONFIGS,
    DROPPED,
    HEADS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYOUTS,
    SSD_PYTORCH_PRIORS,
    ConversionError,
    layers,
)


@dataclass
class Conversion:
    """The result of a conversion.

    state: minissd parameter name -> array, every parameter of ``SSD(config)``.
    layout: the source layout. config: the target configuration.
    mapping: ``(minissd name, source key, how)`` for every converted parameter (``how``:
        "copy", "decimate ...", "fold input normalisation", "reverse input channels").
    initialised: minissd names not in the source (backbone layouts), initialised as a fresh
        ``SSD(config, seed=seed)``.
    ignored: source keys deliberately left out (fc8 of the ImageNet classifier).
    """

    state: dict
    layout: str
    config: SSDConfig
    mapping: list = field(default_factory=list)
    initialised: list = field(default_factory=list)
    ignored: list = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"layout {self.layout} -> minissd {self.config.name} "
                 f"({self.config.num_classes} classes, priors "
                 f"{_preset_name(self.config.priors)}, input mean {self.config.mean}): "
                 f"{len(self.mapping)} tensors converted"]
        special = [m for m in self.mapping if m[2] != "copy"]
        lines += [f"  {name} <- {src}: {how}" for name, src, how in special]
        if self.initialised:
            lines.append(f"  {len(self.initialised)} tensors initialised fresh (not in the "
                         f"source): {', '.join(_compact(self.initialised))}")
        if self.ignored:
            lines.append(f"  ignored source keys: {', '.join(self.ignored)}")
        return "\n".join(lines)


def _preset_name(prior_config):
    for name, preset in P.PRESETS.items():
        if preset == prior_config:
            return name
    return "SSD300 (ssd.pytorch, clipped)" if prior_config == SSD_PYTORCH_PRIORS else "custom"


def _compact(names):
    """``["extras.conv8_1.weight", "extras.conv8_1.bias", ...]`` -> module names."""
    seen = []
    for n in names:
        m = n.rsplit(".", 1)[0]
        if m not in seen:
            seen.append(m)
    return seen


# ------------------------------------------------------------------------------------ reading


def _to_numpy(value, key):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        t = value.detach().cpu()
        if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
            t = t.float()
        return t.numpy()
    raise ConversionError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor "
                          f"or array")


def as_numpy_state(state) -> dict:
    """A state dict (torch tensors or arrays) -> ``{key: ndarray}``, unwrapping a checkpoint
    dict (``{"state_dict": ...}`` / ``{"model": ...}``) and stripping ``module.`` prefixes."""
    if not isinstance(state, dict):
        raise ConversionError(f"expected a state dict (name -> tensor), got "
                              f"{type(state).__name__}")
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    out = {}
    for key, value in state.items():
        key = str(key)
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = _to_numpy(value, key)
    return out


def read_state_dict(path) -> dict:
    """Read a state dict from ``.pth``/``.pt`` (needs torch; ``weights_only=True``: no code
    runs) or ``.npz`` (no torch) -> ``{key: ndarray}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_state_dict: no such file: {path}")
    if path.suffix == ".npz":
        return as_numpy_state(load_npz(path))
    torch = require_torch(f"reading {path} (a PyTorch file)",
                          "or save the state dict as .npz with NumPy and convert that")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(f"could not read {path} with torch.load(weights_only=True): "
                              f"{exc}") from exc
    return as_numpy_state(state)


# ------------------------------------------------------------------------------ layout / config

_INDEX_KEY = re.compile(r"^\d+\.(weight|bias)$")


def layout_of_state_dict(state) -> str:
    """The layout (one of ``LAYOUTS``) of a state dict, from its keys."""
    keys = list(state)
    if any(k.startswith("backbone.features.") or k.startswith("head.classification_head.")
           for k in keys):
        return "torchvision-ssd300"
    if any(k.startswith("features.") for k in keys) and any(k.startswith("classifier.")
                                                            for k in keys):
        if any(k.endswith("running_mean") for k in keys):
            raise ConversionError("this looks like torchvision's vgg16_bn (batch-norm "
                                  "buffers such as 'features.1.running_mean'); SSD's base is "
                                  "the plain VGG16 ('vgg16')")
        return "torchvision-vgg16"
    if any(k.startswith("vgg.") for k in keys) and "L2Norm.weight" in keys:
        return "ssd.pytorch"
    if keys and all(_INDEX_KEY.match(k) for k in keys):
        return "ssd.pytorch-vgg"
    raise ConversionError(f"cannot tell the layout of this state dict from its keys "
                          f"(first: {keys[:6]}); name one of {LAYOUTS}")


def _num_classes(state, loc_key, conf_key):
    for k in (loc_key, conf_key):
        if k not in state:
            raise ConversionError(f"missing key {k!r} (needed to read the number of classes)")
    boxes = state[loc_key].shape[0] // 4
    if boxes == 0 or state[conf_key].shape[0] % boxes:
        raise ConversionError(f"{conf_key!r} has {state[conf_key].shape[0]} outputs, not a "
                              f"multiple of the {boxes} boxes per location of {loc_key!r}")
    return state[conf_key].shape[0] // boxes


def default_config(state, layout) -> SSDConfig:
    """The target configuration a layout implies: for a whole model, ``CONFIGS[layout]`` with
    the class count read from the heads; for a backbone, SSD300 for VOC (the heads are new)."""
    if layout in HEADS:
        loc, conf = (f"{module.format(0)}.weight" for module in HEADS[layout])
        return CONFIGS[layout](_num_classes(state, loc, conf))
    return ssd300(21)


# ----------------------------------------------------------------------------------- weights


def decimate_fc(fc, config, target_shapes):
    """fc6/fc7 of the ImageNet VGG16 classifier -> SSD's reduced fc6/fc7 (module docstring).

    ``fc``: ``{minissd parameter: (source key, array)}`` for ``base.fc6.*`` and ``base.fc7.*``
    (the table's ``decimate`` rows). Returns ``({minissd parameter: array}, mapping)``."""
    c6, c7 = target_shapes["base.fc6.weight"], target_shapes["base.fc7.weight"]
    if c6 != (1024, 512, 3, 3) or c7 != (1024, 1024, 1, 1):
        raise ConversionError(f"the fc_reduced decimation makes fc6 (1024, 512, 3, 3) and fc7 "
                              f"(1024, 1024, 1, 1); config {config.name} has {c6} and {c7}")
    for ours, shape in (("base.fc6.weight", (4096, 25088)), ("base.fc6.bias", (4096,)),
                        ("base.fc7.weight", (4096, 4096)), ("base.fc7.bias", (4096,))):
        key, value = fc[ours]
        if value.shape != shape:
            raise ConversionError(f"{key!r} has shape {value.shape}, expected {shape} (VGG16's "
                                  f"fully connected layers)")
    subsample = {
        "base.fc6.weight": ("decimate: reshape (4096, 512, 7, 7), [0::4, :, 0::3, 0::3]",
                            lambda w: w.reshape(4096, 512, 7, 7)[0::4, :, 0::3, 0::3]),
        "base.fc6.bias": ("decimate: [0::4]", lambda b: b[0::4]),
        "base.fc7.weight": ("decimate: [0::4, 0::4] as (1024, 1024, 1, 1)",
                            lambda w: w[0::4, 0::4].reshape(1024, 1024, 1, 1)),
        "base.fc7.bias": ("decimate: [0::4]", lambda b: b[0::4]),
    }
    out = {ours: np.ascontiguousarray(take(fc[ours][1]))
           for ours, (_, take) in subsample.items()}
    mapping = [(ours, fc[ours][0], how) for ours, (how, _) in subsample.items()]
    return out, mapping


def fold_input_normalization(weight, bias, mean, std, pixel_mean):
    """conv1_1 for inputs ``(pixels/255 - mean)/std`` -> the same conv for ``pixels - pixel_mean``.

    ``weight (O, 3, kh, kw)``, ``bias (O,)`` -> new ``(weight, bias)`` (float64 arithmetic, cast
    back). Exact away from the zero-padded border (module docstring)."""
    std = np.asarray(std, np.float64)
    shift = (np.asarray(pixel_mean, np.float64) / 255.0 - np.asarray(mean, np.float64)) / std
    w = weight.astype(np.float64)
    new_w = w / (255.0 * std)[None, :, None, None]
    new_b = bias.astype(np.float64) + np.einsum("ocij,c->o", w, shift)
    return new_w.astype(weight.dtype), new_b.astype(bias.dtype)


def convert_state_dict(state, layout=None, config=None, *, seed=0, dtype=None, strict=True,
                       bgr_to_rgb=False, input_normalization="imagenet") -> Conversion:
    """Convert a state dict to minissd parameters.

    Args:
        state: ``{key: tensor or array}`` (or a checkpoint dict around it).
        layout: one of ``LAYOUTS``; None detects it from the keys.
        config: the target ``SSDConfig``; None: ``default_config(state, layout)``.
        seed: seed of the fresh initialisation of what a backbone layout lacks.
        dtype: output dtype (default: the source's, e.g. float32; float64 sources stay float64).
        strict: raise on source keys that the layout does not use (``ConversionError``
            naming them); missing and mis-shaped keys always raise.
        bgr_to_rgb: reverse conv1_1's input channels (Caffe-trained weights, BGR input).
        input_normalization: ``torchvision-vgg16`` only: ``"imagenet"`` folds torchvision's
            ImageNet normalisation into conv1_1, None copies it unchanged.
    Returns:
        a ``Conversion`` whose ``state`` loads with ``SSD(config).load_state_dict``.
    """
    state = as_numpy_state(state)
    layout = layout or layout_of_state_dict(state)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    config = config or default_config(state, layout)
    model = SSD(config, seed=seed)  # the target: names, shapes, and the fresh initialisation
    target = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in target.items()}

    table = layers(model, layout)
    missing = [theirs for row in table for _, theirs in row.params if theirs not in state]
    if missing:
        raise ConversionError(f"{layout} state dict for {config.name}: missing keys {missing}")
    mapping = [(ours, theirs, "copy") for row in table if not row.decimate
               for ours, theirs in row.params]
    out = {ours: state[theirs] for ours, theirs, _ in mapping}
    fc = {ours: (theirs, state[theirs]) for row in table if row.decimate
          for ours, theirs in row.params}
    if fc:
        decimated, fc_mapping = decimate_fc(fc, config, shapes)
        out.update(decimated)
        mapping += fc_mapping
    bad = [f"{ours!r} <- {theirs!r}: {tuple(out[ours].shape)} in the source, {shapes[ours]} in "
           f"minissd {config.name}" for ours, theirs, _ in mapping
           if tuple(out[ours].shape) != shapes[ours]]
    if bad:
        more = f"; ... and {len(bad) - 6} more" if len(bad) > 6 else ""
        raise ConversionError(f"shape mismatch ({len(bad)} tensors): " + "; ".join(bad[:6])
                              + more)

    used = {theirs for _, theirs, _ in mapping}
    ignored = sorted(k for k in state if k.startswith(DROPPED.get(layout, ())))
    unexpected = sorted(set(state) - used - set(ignored))
    if unexpected and strict:
        raise ConversionError(f"{layout} state dict for {config.name}: unexpected keys "
                              f"{unexpected} (pass strict=False to ignore them)")
    ignored += unexpected

    first = "base.conv1_1"
    if layout == "torchvision-vgg16" and input_normalization is not None:
        if input_normalization != "imagenet":
            raise ValueError(f"input_normalization must be 'imagenet' or None, got "
                             f"{input_normalization!r}")
        out[f"{first}.weight"], out[f"{first}.bias"] = fold_input_normalization(
            out[f"{first}.weight"], out[f"{first}.bias"], IMAGENET_MEAN, IMAGENET_STD,
            config.mean)
        mapping = [(o, t, "fold input normalisation (ImageNet mean/std -> pixels - "
                          "config.mean)" if o.startswith(first) else h)
                   for o, t, h in mapping]
    if bgr_to_rgb:
        out[f"{first}.weight"] = np.ascontiguousarray(out[f"{first}.weight"][:, ::-1])
        mapping = [(o, t, (h + "; " if h != "copy" else "") + "reverse input channels (BGR->RGB)"
                    if o == f"{first}.weight" else h) for o, t, h in mapping]

    initialised = [k for k in target if k not in out]
    src_dtype = np.result_type(*[v.dtype for v in out.values()])
    dtype = np.dtype(dtype) if dtype is not None else src_dtype
    full = {k: np.asarray(out.get(k, target[k]), dtype=dtype) for k in target}
    return Conversion(full, layout, config, mapping, initialised, ignored)


def convert_file(src, dst, layout=None, config=None, **options) -> Conversion:
    """Read ``src`` (``.pth`` or ``.npz``), convert, write minissd weights to ``dst`` (``.npz``,
    atomically). ``options`` go to ``convert_state_dict``."""
    conversion = convert_state_dict(read_state_dict(src), layout, config, **options)
    save_npz(dst, conversion.state)
    return conversion


def build_model(conversion: Conversion, dtype=None) -> SSD:
    """An ``SSD`` carrying the converted weights (``dtype`` default: the conversion's)."""
    dtype = dtype or next(iter(conversion.state.values())).dtype
    model = SSD(conversion.config, dtype=dtype)
    model.load_state_dict(conversion.state)
    return model


# ----------------------------------------------------------------------------------------- CLI


DESCRIPTION = "Convert PyTorch SSD / VGG16 weights to minissd .npz weights."


def _parser():
    p = argparse.ArgumentParser(prog="minissd convert", description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p):
    """The ``convert`` options (shared by ``minissd convert`` and ``python -m
    minissd.pytorch.convert``)."""
    p.add_argument("src", help="state dict: .pth/.pt (needs torch) or .npz")
    p.add_argument("dst", help="output .npz (minissd weights)")
    p.add_argument("--layout", choices=LAYOUTS, help="source layout (default: from the keys)")
    p.add_argument("--config", choices=sorted(CONFIGS),
                   help="target model (default: from the layout: torchvision-ssd300 -> "
                        "torchvision-ssd300, ssd.pytorch -> ssd.pytorch, backbones -> ssd300)")
    p.add_argument("--num-classes", type=int,
                   help="classes incl. background (default: from the heads; 21 for backbones)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the layers a backbone file lacks (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), help="default: the source's")
    p.add_argument("--bgr-to-rgb", action="store_true",
                   help="reverse conv1_1's input channels (Caffe-trained BGR weights)")
    p.add_argument("--no-input-normalization", action="store_true",
                   help="torchvision-vgg16: copy conv1_1 as is instead of folding the ImageNet "
                        "mean/std into it")
    p.add_argument("--non-strict", action="store_true",
                   help="ignore source keys the layout does not use (default: error)")


def main(argv=None) -> int:
    """``python -m minissd.pytorch.convert SRC DST [options]``; returns the exit status."""
    return run(_parser().parse_args(argv))


def run(args) -> int:
    """Convert as ``args`` (from ``add_arguments``) say; returns the exit status."""
    try:
        state = read_state_dict(args.src)
        layout = args.layout or layout_of_state_dict(state)
        config = None
        if args.config or args.num_classes:
            name = args.config or (layout if layout in HEADS else "ssd300")
            num_classes = args.num_classes or default_config(state, layout).num_classes
            config = CONFIGS[name](num_classes)
        conversion = convert_state_dict(
            state, layout, config, seed=args.seed, dtype=args.dtype, strict=not args.non_strict,
            bgr_to_rgb=args.bgr_to_rgb,
            input_normalization=None if args.no_input_normalization else "imagenet")
        save_npz(args.dst, conversion.state)
    except (ConversionError, FileNotFoundError, ImportError, ValueError) as exc:
        print(f"minissd convert: error: {exc}", file=sys.stderr)
        return 2
    print(conversion.summary())
    print(f"wrote {args.dst}: load with SSD(config).load_state_dict(load_npz(path)) where config "
          f"is minissd.pytorch.layouts.CONFIGS[{_config_key(conversion.config)!r}]"
          f"({conversion.config.num_classes})")
    return 0


def _config_key(config):
    for key, make in CONFIGS.items():
        try:
            if make(config.num_classes) == config:
                return key
        except (TypeError, ValueError):
            continue
    return config.name


if __name__ == "__main__":
    sys.exit(main())
