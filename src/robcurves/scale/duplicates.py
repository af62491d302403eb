"""Exact duplicates with different labels (listed apart: their distance is 0 in every norm)."""

from __future__ import annotations

import numpy as np


def cross_class_duplicates(x2: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of identical feature vectors with different labels.

    ``x2`` is ``(N, d)``; comparison is exact on float32 values (-0.0 equals 0.0).
    Rows are hashed (BLAKE2b, 8 bytes) and equal hashes are confirmed by comparing values.
    """
    import hashlib

    n = len(x2)
    digests = np.empty(n, dtype=np.uint64)
    step = max(1, (2 * 2**20) // max(1, x2.shape[1]))
    for r in range(0, n, step):
        chunk = np.ascontiguousarray(x2[r:r + step], dtype=np.float32) + np.float32(0.0)
        for i, row in enumerate(chunk):
            digests[r + i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
    _, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
    pairs = []
    for g in np.flatnonzero(counts > 1):
        by_value: dict[bytes, list[int]] = {}  # equal digests: confirm on the values
        for m in np.flatnonzero(inverse == g):
            by_value.setdefault((x2[m] + np.float32(0.0)).tobytes(), []).append(int(m))
        for members in map(np.asarray, by_value.values()):
            if len(members) < 2 or np.all(y[members] == y[members[0]]):
                continue
            i, j = np.triu_indices(len(members), k=1)
            keep = y[members[i]] != y[members[j]]
            pairs.append(np.stack([members[i][keep], members[j][keep]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    out = np.concatenate(pairs).astype(np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))]
