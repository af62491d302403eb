"""The integer grid of quantised data (8-bit images: k/255; scikit-learn's digits: k/16).

On the grid every linf/l1 distance is an integer over the scale and every squared l2
distance an integer over its square, so the kernels compute them exactly in integers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def grid_scale(x2: np.ndarray, scales: Sequence[int] = (255, 16)) -> int | None:
    """The ``s`` for which every value is (the float32 rounding of) an integer over ``s``.

    8-bit images scaled by 1/255 give 255, scikit-learn's digits give 16; None if the
    data are not on such a grid. Checked exactly, in row chunks to bound memory.
    """
    step = max(1, (2 * 2**20) // max(1, x2.shape[1]))
    for s in scales:
        ok = True
        for r in range(0, len(x2), step):
            v = x2[r:r + step].astype(np.float64) * s
            q = np.rint(v)
            if q.min() < 0 or q.max() > s or np.max(np.abs(v - q)) > s * 2.0**-23:
                ok = False
                break
        if ok:
            return int(s)
    return None


def quantise(x2: np.ndarray, s: int) -> np.ndarray:
    """``round(x2 * s)`` as int16 (the grid integers), in row chunks."""
    out = np.empty(x2.shape, dtype=np.int16)
    step = max(1, (2 * 2**20) // max(1, x2.shape[1]))
    for r in range(0, len(x2), step):
        out[r:r + step] = np.rint(x2[r:r + step].astype(np.float64) * s)
    return out
