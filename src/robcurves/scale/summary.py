"""What Table 2 and Fig. 5 summarise: the kept nearest distances and their statistics.

As in the paper, nearest distances below ``min_distance`` (default 1e-4: exact or near
duplicates with different labels) are dropped before the statistics and the plot, and
counted. Points with no neighbour of the kind asked for (a class with one member; a data
set with one class) have distance ``+inf``; they are left out too and counted separately.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from robcurves.norms import NORMS

STATS = ("min", "median", "max")
NORM_ORDER = tuple(NORMS)  # linf, l2, l1


def kept_distances(values: np.ndarray, min_distance: float = 1e-4) -> np.ndarray:
    """Finite distances at least ``min_distance``, sorted ascending (what is summarised)."""
    v = np.asarray(values, dtype=np.float64)
    return np.sort(v[np.isfinite(v) & (v >= min_distance)])


def distance_summary(values: np.ndarray, min_distance: float = 1e-4) -> dict[str, float | int]:
    """``min``/``median``/``max`` of the kept distances, with the counts left out.

    ``n_dropped``: finite distances below ``min_distance``; ``n_no_neighbour``: ``+inf``.
    The statistics are NaN when nothing is kept.
    """
    v = np.asarray(values, dtype=np.float64)
    kept = kept_distances(v, min_distance)
    finite = np.isfinite(v)
    out: dict[str, float | int] = {
        "n_kept": int(len(kept)),
        "n_dropped": int(np.sum(finite & (v < min_distance))),
        "n_no_neighbour": int(np.sum(~finite)),
    }
    for s, f in zip(STATS, (np.min, np.median, np.max)):
        out[s] = float(f(kept)) if len(kept) else math.nan
    return out


def dimensionality(input_shape: Sequence[int]) -> str:
    """``"28x28x1"`` for images, ``"561"`` for tabular data (stored with H = W = 1)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and shape[0] == 1 and shape[1] == 1:
        return str(shape[2])
    return "x".join(str(s) for s in shape)
