"""The running nearest neighbour of every point, merged from tiles in any order.

Updates are lexicographic in (distance, index): among neighbours at the same distance
the smallest index wins, whatever the order of the tiles or threads.
"""

from __future__ import annotations

import numpy as np

NO_INDEX = np.iinfo(np.int64).max  # placeholder while merging; becomes -1 at the end


class Best:
    """Running nearest neighbour (value, index) per point, for one norm and one kind.

    Updates are lexicographic in (distance, index), so the result does not depend on the
    order in which tiles arrive.
    """

    def __init__(self, n: int):
        self.value = np.full(n, np.inf)
        self.index = np.full(n, NO_INDEX, dtype=np.int64)

    def update(self, at: np.ndarray | slice, value: np.ndarray, index: np.ndarray) -> None:
        cur_v, cur_i = self.value[at], self.index[at]
        better = (value < cur_v) | ((value == cur_v) & (index < cur_i))
        if better.any():
            cur_v[better] = value[better]
            cur_i[better] = index[better]
            self.value[at], self.index[at] = cur_v, cur_i

    def merge(self, other: "Best") -> None:
        self.update(slice(None), other.value, other.index)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        idx = np.where(np.isinf(self.value), -1, self.index)
        return self.value.copy(), idx.astype(np.int64)


def row_min(d: np.ndarray, col_index: np.ndarray, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Minimum along ``axis`` and the smallest ``col_index`` that attains it."""
    m = d.min(axis=axis)
    hit = d == (m[:, None] if axis == 1 else m[None, :])
    ci = col_index[None, :] if axis == 1 else col_index[:, None]
    idx = np.where(hit, ci, NO_INDEX).min(axis=axis)
    return m, idx


def kind_masks(ya: np.ndarray, yb: np.ndarray, ia: np.ndarray, ib: np.ndarray, overlap: bool):
    """Masks of the inter and intra pairs of a tile: an array, or True (all) / False (none).

    ``overlap`` says whether the row and column tiles may share points (self pairs).
    """
    same = ya[:, None] == yb[None, :]
    n_same = int(same.sum())
    if n_same == 0:
        return {"inter": True, "intra": False}
    if overlap:
        intra = same & (ia[:, None] != ib[None, :])
    else:
        intra = True if n_same == same.size else same
    inter = False if n_same == same.size else ~same
    return {"inter": inter, "intra": intra}


def masked(d: np.ndarray, mask) -> np.ndarray | None:
    if mask is False:
        return None
    if mask is True:
        return d
    return np.where(mask, d, np.inf)
