"""The VGG16 base of SSD, reduced as in the paper (Sec. 3, "Base network").

Layers are named as in VGG: ``conv{block}_{i}``; ``fc6`` is the 3x3 dilated conv (1024 channels,
dilation 6, padding 6) and ``fc7`` the 1x1 conv that replace VGG's fully connected layers;
``pool5`` is 3x3 / stride 1 / padding 1; the pool before conv4 uses ceil rounding (75 -> 38).
The forward returns the two source maps the heads read: conv4_3 (after ReLU) and fc7 (after ReLU).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import relu

#: VGG16 configuration: channels per conv, "M" a 2x2/2 max-pool, "C" the same with ceil rounding.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512)


class VGGBase(nn.Module):
    """``(N, 3, H, W) -> [conv4_3 (N, C4, H/8, W/8), fc7 (N, C7, H/16, W/16)]`` for SSD300/512.

    Args:
        layers: a VGG configuration like ``VGG16``.
        source_layer: the conv whose ReLU output is the first source map ("conv4_3").
        fc6: ``(channels, dilation)`` of the dilated fc6, or None for a base without fc6/fc7
            (then the last conv block's output is the second source).
        fc7: channels of the 1x1 fc7.
        pool5: add the 3x3/1/1 pool after the last block (SSD's modified pool5).
        rng: generator for the initial weights.
        batch_norm: a BatchNorm2d between every base conv and its ReLU (the small model).
    """

    def __init__(self, layers=VGG16, source_layer="conv4_3", fc6=(1024, 6), fc7=1024,
                 pool5=True, in_channels=3, *, rng: np.random.Generator,
                 weight_init="xavier_uniform", batch_norm=False, dtype=np.float32):
        super().__init__()
        self.plan = []  # (kind, name) in forward order
        block, index, c = 1, 1, in_channels
        for item in layers:
            if item in ("M", "C"):
                name = f"pool{block}"
                setattr(self, name, nn.MaxPool2d(2, 2, ceil_mode=item == "C"))
                self.plan.append(("pool", name))
                block, index = block + 1, 1
                continue
            name = f"conv{block}_{index}"
            setattr(self, name, nn.Conv2d(c, item, 3, padding=1, rng=rng,
                                          weight_init=weight_init, dtype=dtype))
            if batch_norm:  # not in the paper: for a small base trained from scratch
                setattr(self, f"bn{block}_{index}", nn.BatchNorm2d(item, dtype=dtype))
            self.plan.append(("conv", name))
            c, index = item, index + 1
        if source_layer not in {n for _, n in self.plan}:
            raise ValueError(f"VGGBase: source_layer {source_layer!r} is not a conv of the base "
                             f"(have {[n for k, n in self.plan if k == 'conv']})")
        self.source_layer = source_layer
        self.source_channels = [dict(self._conv_channels())[source_layer]]
        if pool5:
            self.pool5 = nn.MaxPool2d(3, 1, padding=1)
            self.plan.append(("pool", "pool5"))
        if fc6 is not None:
            channels, dilation = fc6
            self.fc6 = nn.Conv2d(c, channels, 3, padding=dilation, dilation=dilation, rng=rng,
                                 weight_init=weight_init, dtype=dtype)
            self.fc7 = nn.Conv2d(channels, fc7, 1, rng=rng, weight_init=weight_init, dtype=dtype)
            self.plan += [("conv", "fc6"), ("conv", "fc7")]
            c = fc7
        self.source_channels.append(c)

    def _conv_channels(self):
        for kind, name in self.plan:
            if kind == "conv":
                yield name, getattr(self, name).weight.shape[0]

    def forward(self, x, taps=None):
        """Returns ``[source_layer output, last output]``; ``taps`` (a dict), when given, receives
        every layer's output by name (for layer-by-layer comparisons)."""
        sources = []
        for kind, name in self.plan:
            x = getattr(self, name)(x)
            if kind == "conv":
                bn = self._modules.get(name.replace("conv", "bn", 1)) if name[:4] == "conv" \
                    else None
                x = relu(bn(x) if bn is not None else x, inplace=True)  # keeps one array
            if taps is not None:
                taps[name] = x
            if name == self.source_layer:
                sources.append(x)
        sources.append(x)
        return sources
