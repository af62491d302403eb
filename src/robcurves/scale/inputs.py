"""Checks on the points given to the nearest-neighbour search: one clear ``ValueError`` each."""

from __future__ import annotations

from typing import Any

import numpy as np


def validate_inputs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Flatten ``x`` to ``(N, d)`` float32 and check ``y``; raise ``ValueError`` if bad.

    ``x`` is an NHWC array (as in :class:`robcurves.data.Dataset`) or any ``(N, ...)``
    array; ``y`` holds one integer label per point.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1:
        raise ValueError(f"x must have a leading point axis, got a scalar of shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("x holds no points (N = 0)")
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels y must have shape ({n},) to match x {x.shape}, got {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"labels y must be integers, got dtype {y.dtype}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"x must be numeric, got dtype {x.dtype}")
    x2 = np.ascontiguousarray(x.reshape(n, -1), dtype=np.float32)
    if x2.shape[1] == 0:
        raise ValueError(f"x has no features: shape {x.shape}")
    step = max(1, (16 * 2**20) // x2.shape[1])
    for r in range(0, n, step):  # in chunks: no N x d temporary
        bad = ~np.isfinite(x2[r:r + step])
        if bad.any():
            first = r + int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"x contains NaN or infinite values, first in the point at index {first}")
    return x2, y.astype(np.int64), tuple(int(s) for s in x.shape[1:])
