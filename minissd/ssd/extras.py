"""SSD's extra feature layers after the base (paper Fig. 2: conv8_2 ... conv11_2).

Each extra block is a 1x1 conv that squeezes channels, then a 3x3 (or 4x4 for SSD512's last)
conv that shrinks the map; both with ReLU. The output of every block's second conv is a source
map for the heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import nn
from ..autograd import relu


@dataclass(frozen=True)
class ExtraBlock:
    """``conv{n}_1``: 1x1 -> ``mid`` channels; ``conv{n}_2``: ``kernel`` x ``kernel``,
    ``stride``, ``padding`` -> ``out`` channels."""

    mid: int
    out: int
    kernel: int = 3
    stride: int = 2
    padding: int = 1


#: SSD300: 19 -> 10 -> 5 -> 3 -> 1 (CF, CCV, TV, SP).
SSD300_EXTRAS = (ExtraBlock(256, 512), ExtraBlock(128, 256),
                 ExtraBlock(128, 256, stride=1, padding=0),
                 ExtraBlock(128, 256, stride=1, padding=0))
#: SSD512: 32 -> 16 -> 8 -> 4 -> 2 -> 1, the last with a 4x4 kernel (CCV).
SSD512_EXTRAS = (ExtraBlock(256, 512), ExtraBlock(128, 256), ExtraBlock(128, 256),
                 ExtraBlock(128, 256), ExtraBlock(128, 256, kernel=4, stride=1, padding=1))


class Extras(nn.Module):
    """``(N, C, H, W)`` -> one source map per block, named ``conv{first_index + i}_2``."""

    def __init__(self, in_channels, blocks, first_index=8, *, rng: np.random.Generator,
                 weight_init="xavier_uniform", dtype=np.float32):
        super().__init__()
        self.names = []
        c = in_channels
        for i, b in enumerate(blocks):
            n = first_index + i
            setattr(self, f"conv{n}_1", nn.Conv2d(c, b.mid, 1, rng=rng, weight_init=weight_init,
                                                  dtype=dtype))
            setattr(self, f"conv{n}_2", nn.Conv2d(b.mid, b.out, b.kernel, stride=b.stride,
                                                  padding=b.padding, rng=rng,
                                                  weight_init=weight_init, dtype=dtype))
            self.names.append((f"conv{n}_1", f"conv{n}_2"))
            c = b.out
        self.source_channels = [b.out for b in blocks]

    def forward(self, x, taps=None):
        sources = []
        for first, second in self.names:
            squeezed = relu(getattr(self, first)(x), inplace=True)
            x = relu(getattr(self, second)(squeezed), inplace=True)
            if taps is not None:
                taps[first], taps[second] = squeezed, x
            sources.append(x)
        return sources
