"""Robustness curves: R(eps) = fraction of points whose minimal perturbation is <= eps.

The curve is the empirical CDF of per-point minimal adversarial distances, all in
one norm. It is a right-continuous step function: R(eps) jumps at each distance, and
a point with distance d counts for every eps >= d. Misclassified points have
distance 0 and so count at eps = 0. Points for which no adversarial example was found
have distance +inf and never count, so R stays below 1.0 while any remain.

The eps convention
------------------
Distances are measured in float32 (the model's arithmetic: :mod:`robcurves.adversarial`),
thresholds are written by people in decimal or as fractions (8/255, 0.1, 0.3). The
float32 number nearest to 8/255 is *larger* than 8/255, so a perturbation of exactly
"8/255" in float32 would not count at eps = 8/255 if the two were compared as float64.
Therefore a distance ``d`` counts at ``eps`` exactly when

    float32(d) <= float32(eps)            (both rounded to nearest)

:func:`count_at_most` is that comparison; every table, figure and the command line read
R(eps) through it. A float32 distance equal to a threshold as written counts at that
threshold; anything that counts under the plain float64 comparison ``d <= eps`` counts
here too (rounding is monotone); the two differ only within one float32 rounding step of
eps (relative 2^-24, about 6e-8).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from robcurves.atomic import write_json
from robcurves.norms import parse_norm


@dataclass
class RobustnessCurve:
    """Per-point minimal distances in one norm, and the step function they define.

    ``distances`` are in the curve's norm (``norm``: "linf", "l2" or "l1"), one per
    point, in the order of ``indices`` (the points' positions in the test split);
    +inf marks a point that no attack could break.
    """

    norm: str
    distances: np.ndarray
    indices: np.ndarray | None = None
    label: str = ""
    status: np.ndarray | None = None
    method: np.ndarray | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.norm = parse_norm(self.norm).name
        d = np.asarray(self.distances, dtype=np.float64).reshape(-1)
        if np.isnan(d).any():
            raise ValueError("robustness curve: distances contain NaN (a failed point must be +inf or dropped)")
        if (d < 0).any():
            raise ValueError("robustness curve: distances must be >= 0")
        self.distances = d
        n = len(d)
        self.indices = np.arange(n, dtype=np.int64) if self.indices is None else np.asarray(self.indices, dtype=np.int64)
        for name in ("indices", "status", "method"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"robustness curve: {name} has {len(arr)} entries for {n} distances")

    @property
    def n_points(self) -> int:
        return len(self.distances)

    @property
    def sorted_distances(self) -> np.ndarray:
        return np.sort(self.distances)

    def robust_error_at(self, eps: "float | Sequence[float] | np.ndarray") -> "float | np.ndarray":
        return robust_error_at(self, eps)

    def steps(self) -> tuple[np.ndarray, np.ndarray]:
        """The jump points of the step function and R just after each jump.

        Returns ``(eps, r)`` with ``eps`` the distinct finite distances in increasing
        order and ``r[i] = R(eps[i])``; distances that are equal in float32 (the eps
        convention) are one jump, at the smallest of them. R is 0 left of ``eps[0]`` and
        constant between jumps.
        """
        finite = np.sort(self.distances[np.isfinite(self.distances)])
        if finite.size == 0:
            return np.zeros(0), np.zeros(0)
        _, first, counts = np.unique(_as_float32(finite), return_index=True, return_counts=True)
        return finite[first], np.cumsum(counts) / self.n_points

    # ----------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        eps, r = self.steps()
        return {
            "format": "robcurves.curve/1",
            "norm": self.norm,
            "label": self.label,
            "n_points": self.n_points,
            "n_not_found": int(np.isinf(self.distances).sum()),
            "n_misclassified": int((self.distances == 0).sum()),
            # null encodes +inf (no adversarial example found): JSON has no infinity.
            "points": {
                "index": self.indices.tolist(),
                "distance": [None if math.isinf(v) else float(v) for v in self.distances],
                **({"status": [str(s) for s in self.status]} if self.status is not None else {}),
                **({"method": [str(s) for s in self.method]} if self.method is not None else {}),
            },
            "steps": {"eps": eps.tolist(), "robust_error": r.tolist()},
            "config": self.config,
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "RobustnessCurve":
        if obj.get("format") != "robcurves.curve/1":
            raise ValueError(f"not a robcurves curve (format={obj.get('format')!r})")
        pts = obj["points"]
        d = np.array([math.inf if v is None else v for v in pts["distance"]], dtype=np.float64)
        return cls(
            norm=obj["norm"], distances=d, indices=np.asarray(pts["index"], dtype=np.int64),
            label=obj.get("label", ""),
            status=np.asarray(pts["status"]) if "status" in pts else None,
            method=np.asarray(pts["method"]) if "method" in pts else None,
            config=obj.get("config", {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RobustnessCurve":
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


def robustness_curve(distances: np.ndarray, norm: str, **kwargs: Any) -> RobustnessCurve:
    """Build the robustness curve of per-point minimal distances in ``norm``."""
    return RobustnessCurve(norm=norm, distances=distances, **kwargs)


def _as_float32(values) -> np.ndarray:
    """float64 values rounded to the nearest float32 (kept as float64 arrays)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def count_at_most(distances, eps) -> np.ndarray:
    """How many of ``distances`` count at each threshold ``eps`` (same norm): the eps convention.

    ``d`` counts at ``eps`` iff ``float32(d) <= float32(eps)`` (module docstring); +inf
    distances never count, whatever ``eps``. Returns int64 counts shaped like ``eps``.
    """
    e = np.asarray(eps, dtype=np.float64)
    if np.isnan(e).any():
        raise ValueError("eps must not be NaN")
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    finite = np.isfinite(d)
    d32 = np.sort(_as_float32(d[finite]))
    # A finite distance beyond float32's range rounds to +inf: it counts only at eps = +inf.
    counts = np.searchsorted(d32, _as_float32(e), side="right")
    return np.minimum(counts, int(finite.sum())).astype(np.int64)


def robust_error_at(curve: RobustnessCurve, eps: "float | Sequence[float] | np.ndarray") -> "float | np.ndarray":
    """R(eps): the fraction of points whose distance counts at eps, read exactly off the step function.

    ``eps`` is in the curve's norm. Ties count (``<=``, after rounding both to float32:
    :func:`count_at_most`); +inf distances never count.
    """
    e = np.asarray(eps, dtype=np.float64)
    if np.isnan(e).any():
        raise ValueError("robust_error_at: eps must not be NaN")
    n = curve.n_points
    out = np.full(e.shape, np.nan) if n == 0 else count_at_most(curve.distances, e) / n
    return float(out) if out.ndim == 0 else out


def dkw_band(curve: RobustnessCurve, eps: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """A simultaneous (1 - alpha) confidence band for the true curve (Dvoretzky-Kiefer-Wolfowitz).

    Returns lower and upper R at ``eps``: R(eps) -/+ sqrt(ln(2/alpha) / (2n)), clipped
    to [0, 1]. It covers sampling error of the test points only, not attack weakness.
    """
    if curve.n_points == 0:
        raise ValueError("dkw_band: empty curve")
    half = math.sqrt(math.log(2.0 / alpha) / (2.0 * curve.n_points))
    r = np.asarray(robust_error_at(curve, eps), dtype=np.float64)
    return np.clip(r - half, 0.0, 1.0), np.clip(r + half, 0.0, 1.0)
