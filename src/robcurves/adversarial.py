"""What "adversarial" means: one rule for the attacks, the exact stage, MIPVerify records,
the curves and the figures.

The rule
--------
Let ``z = f(x)`` be the logits of the float32 model, run as users run it (inference
mode, float32 input, the configured Keras backend). For a point with label ``y`` the
*margin* is

    m(x) = z_y - max_{k != y} z_k        (computed in float32 from the float32 logits)

and ``x`` is **adversarial** (misclassified) exactly when all logits are finite and
``m(x) < 0``: some other class scores *strictly* higher than ``y``.

- **Ties are not adversarial.** ``z_k == z_y`` leaves the point correctly classified,
  whatever ``argmax`` would pick; a clean point counts as misclassified (distance 0 on
  every curve) by the same rule.
- **Non-finite logits are never adversarial** (and never count as correct either:
  the stages report them as errors).
- **A verified witness** is a candidate ``x_adv`` that was clipped into the model's
  input box ``[lo, hi]`` in float32, evaluated on the model, and found adversarial by
  this rule; its distance is the norm of ``x_adv - x`` computed in float32
  (:meth:`robcurves.norms.Norm.distance`). Every reported distance is such a distance.

Certified lower bounds (the exact stage) prove the opposite statement for the same
float32 model: no ``x`` in the ball has ``m(x) < 0``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from robcurves.norms import Norm, parse_norm

__all__ = ["margin", "is_adversarial", "verify_witnesses"]


def margin(logits: np.ndarray, y: "np.ndarray | int") -> np.ndarray:
    """``z_y - max_{k != y} z_k`` per row, in float32 (NaN where a logit is not finite).

    ``logits``: ``(N, C)`` with ``C >= 2``; ``y``: ``(N,)`` labels or one int for all rows.
    """
    z = np.asarray(logits, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, n_classes >= 2), got {z.shape}")
    yy = np.broadcast_to(np.asarray(y, dtype=np.int64), (len(z),))
    if len(z) and (yy.min() < 0 or yy.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in 0..{z.shape[1] - 1}, got {int(yy.min())}..{int(yy.max())}")
    rows = np.arange(len(z))
    z_true = z[rows, yy]
    other = z.copy()
    other[rows, yy] = -np.inf
    m = (z_true - other.max(axis=1)).astype(np.float32)
    m[~np.all(np.isfinite(z), axis=1)] = np.nan
    return m


def is_adversarial(logits: np.ndarray, y: "np.ndarray | int") -> np.ndarray:
    """True where some class ``k != y`` has a strictly larger finite logit than ``y``."""
    m = margin(logits, y)
    return np.isfinite(m) & (m < 0)


def verify_witnesses(
    logits_fn: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    x_adv: np.ndarray,
    y: np.ndarray,
    norm: "Norm | str",
    bounds: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check candidates on the float32 model: ``(is_adv, distances, x_clipped)``.

    ``x_adv`` is clipped into ``bounds`` in float32 and evaluated with ``logits_fn``
    (a batch of float32 inputs shaped like ``x`` -> ``(N, C)`` logits). ``distances`` is
    the float32 ``norm`` distance of the clipped candidate from ``x``, whatever the verdict.
    """
    norm = parse_norm(norm)
    x = np.asarray(x, dtype=np.float32)
    xc = np.clip(np.asarray(x_adv, dtype=np.float32).reshape(x.shape), np.float32(bounds[0]), np.float32(bounds[1]))
    if len(x) == 0:
        return np.zeros(0, bool), np.zeros(0, np.float32), xc
    z = np.asarray(logits_fn(xc), dtype=np.float32)
    return is_adversarial(z, np.asarray(y, dtype=np.int64)), norm.distance(xc, x), xc
