"""Multibox heads: on every source map, a 3x3 conv predicts 4 offsets and ``num_classes`` scores
for each of the ``k`` default boxes at each location (paper Sec. 2.1)."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import concatenate


class MultiboxHeads(nn.Module):
    """Source maps ``[(N, C_s, H_s, W_s)]`` -> ``loc (N, P, 4)``, ``conf (N, P, num_classes)``.

    ``P = sum_s H_s W_s k_s``. Predictions are flattened location by location (row-major over
    H, W) and, within a location, box by box: the order of ``minissd.priors``.
    """

    def __init__(self, source_channels, boxes_per_location, num_classes, *,
                 rng: np.random.Generator, weight_init="xavier_uniform", dtype=np.float32):
        super().__init__()
        if len(source_channels) != len(boxes_per_location):
            raise ValueError(f"MultiboxHeads: {len(source_channels)} source maps but "
                             f"{len(boxes_per_location)} boxes_per_location entries")
        self.num_classes = num_classes
        for i, (c, k) in enumerate(zip(source_channels, boxes_per_location)):
            setattr(self, f"loc{i}", nn.Conv2d(c, k * 4, 3, padding=1, rng=rng,
                                               weight_init=weight_init, dtype=dtype))
            setattr(self, f"conf{i}", nn.Conv2d(c, k * num_classes, 3, padding=1, rng=rng,
                                                weight_init=weight_init, dtype=dtype))
        self.num_sources = len(source_channels)

    def forward(self, sources, taps=None):
        locs, confs = [], []
        for i, x in enumerate(sources):
            n = x.shape[0]
            loc = getattr(self, f"loc{i}")(x)  # (N, k*4, H, W)
            conf = getattr(self, f"conf{i}")(x)
            if taps is not None:
                taps[f"loc{i}"], taps[f"conf{i}"] = loc, conf
            locs.append(loc.transpose(0, 2, 3, 1).reshape(n, -1, 4))
            confs.append(conf.transpose(0, 2, 3, 1).reshape(n, -1, self.num_classes))
        return concatenate(locs, axis=1), concatenate(confs, axis=1)
