"""Which ReLU to split: BaBSR scores, refined by filtered smart branching (FSB).

For an unstable neuron ``j`` (bounds ``l < 0 < u``, slope ``s = u / (u - l)``) with
coefficient ``lam_j`` on its output in a subdomain's lower bound, the upper relaxation
line costs the bound ``min(lam_j, 0) (-s l)`` (its intercept), and splitting also moves
the contribution of the neuron's bias ``b_j`` by ``lam_j b_j (1 - s)`` (active side) or
``-lam_j b_j s`` (inactive side). BaBSR (Bunel et al. 2020) ranks neurons by
``|max(lam b (s - 1), lam b s) + min(lam, 0) (-s l)|``. FSB (De Palma et al. 2021) takes
the top candidates of that score, bounds both children of each candidate cheaply (one
CROWN pass with the parent's parameters) and keeps the candidate whose worse child is
best.
"""

from __future__ import annotations

import numpy as np


def babsr_scores(lams: list[np.ndarray], lows: list[np.ndarray], ups: list[np.ndarray], biases: list[np.ndarray],
                 unstable_idx: list[np.ndarray], signs_c: np.ndarray) -> np.ndarray:
    """BaBSR score of every root-unstable neuron, per row: ``(R, U)`` (0 where split).

    ``lams[k]``: (R, n_k) coefficients on ReLU layer ``k``'s outputs; ``lows``/``ups``:
    the root bounds (n_k,); ``unstable_idx[k]``: the layer's root-unstable neurons (the
    columns of ``signs_c``, concatenated over layers).
    """
    out = []
    for lam, lo, hi, b, idx in zip(lams, lows, ups, biases, unstable_idx):
        if len(idx) == 0:
            continue
        la = lam[:, idx]
        lo_i, hi_i, b_i = lo[idx], hi[idx], b[idx]
        s = hi_i / (hi_i - lo_i)
        intercept = np.minimum(la, 0.0) * (-s * lo_i)
        bias_move = np.maximum(la * b_i * (s - 1.0), la * b_i * s)
        out.append(np.abs(bias_move + intercept))
    score = np.concatenate(out, axis=1) if out else np.zeros((len(signs_c), 0))
    return np.where(signs_c != 0, -1.0, score)


def intercept_scores(lams, lows, ups, unstable_idx, signs_c) -> np.ndarray:
    """The intercept part alone (a backup score: larger is better here)."""
    out = []
    for lam, lo, hi, idx in zip(lams, lows, ups, unstable_idx):
        if len(idx) == 0:
            continue
        la = lam[:, idx]
        s = hi[idx] / (hi[idx] - lo[idx])
        out.append(-np.minimum(la, 0.0) * (-s * lo[idx]))
    score = np.concatenate(out, axis=1) if out else np.zeros((len(signs_c), 0))
    return np.where(signs_c != 0, -1.0, score)


def top_candidates(score: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores per row, best first: ``(R, k)`` (-1 where none)."""
    R, U = score.shape
    k = max(1, min(k, U))
    if U == 0:
        return np.full((R, 1), -1)
    part = np.argpartition(-score, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(score, part, axis=1)
    order = np.argsort(-vals, axis=1)
    cand = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    return np.where(vals >= 0, cand, -1)
