"""Tables read off robustness curves: point-wise robust error (Table 1) and crossings.

Values are read exactly off the right-continuous step function, R(eps) = #{d <= eps}/n
(the eps convention of :func:`robcurves.curves.count_at_most`), not from the nearest
sample of a plotted curve.

What the numbers mean. An attack's distance is an upper bound of a point's minimal
adversarial perturbation, so an attack-based R(eps) is a *lower* bound of the true robust
error at eps. The intervals and bands below cover the sampling of the test points only
(the test set as a sample of the data distribution), not the weakness of the attack.

The tables are written by :func:`robcurves.tablewriter.write_table` (CSV, Markdown, LaTeX).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from robcurves.curves import RobustnessCurve, count_at_most, robust_error_at
from robcurves.tablewriter import write_table  # noqa: F401  (re-exported: its home is robcurves.tablewriter)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (conservative) binomial confidence interval for k successes out of n."""
    if n == 0:
        return (math.nan, math.nan)
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


@dataclass
class RobustErrorRow:
    model: str
    norm: str
    eps: float
    robust_error: float
    ci_low: float
    ci_high: float
    n_points: int
    # Certain bounds of the true robust error on the points with exact results (the first
    # ``certified_n`` test points): [share with a verified witness within eps, share whose
    # certified lower bound is within eps]. nan where no exact results exist.
    certified_low: float = math.nan
    certified_high: float = math.nan
    certified_n: int = 0


def robust_error_table(curves: Sequence[RobustnessCurve], thresholds: dict[str, Sequence[float]],
                       alpha: float = 0.05) -> list[RobustErrorRow]:
    """R(eps) with a (1 - alpha) Clopper-Pearson interval, for every curve and its norm's thresholds.

    Each interval holds for its own (curve, eps) at level 1 - alpha (not simultaneously);
    it covers the sampling of the test points only. For an attack curve, R(eps) is a
    lower bound of the true robust error.
    """
    rows = []
    for c in curves:
        for eps in thresholds.get(c.norm, []):
            k = int(count_at_most(c.distances, eps))
            lo, hi = clopper_pearson(k, c.n_points, alpha)
            r = k / c.n_points if c.n_points else math.nan
            rows.append(RobustErrorRow(c.label, c.norm, float(eps), float(r), lo, hi, c.n_points))
    return rows


def certified_robust_error(lower: np.ndarray, upper: np.ndarray, eps: float) -> tuple[float, float]:
    """``[low, high]`` that certainly contains the true ``R(eps)`` of points with exact brackets.

    A point certainly counts when its verified upper bound (witness; 0 for a misclassified
    point) counts at ``eps``, and possibly when its certified lower bound does
    (:func:`robcurves.curves.count_at_most` both times).
    """
    n = len(lower)
    if n == 0:
        return math.nan, math.nan
    return int(count_at_most(upper, eps)) / n, int(count_at_most(lower, eps)) / n


def add_certified_columns(rows: Sequence[RobustErrorRow], exact: dict) -> None:
    """Fill the certified columns of ``rows`` from ``exact``: ``{(model, norm): (lower, upper)}``."""
    for r in rows:
        got = exact.get((r.model, r.norm))
        if got is None:
            continue
        lower, upper = (np.asarray(a, dtype=np.float64) for a in got)
        r.certified_low, r.certified_high = certified_robust_error(lower, upper, r.eps)
        r.certified_n = int(len(lower))


@dataclass
class Crossing:
    norm: str
    model_a: str
    model_b: str
    eps: float  # where the order of the two curves changes (in the norm's units)
    significant: bool  # both orders are certain on either side, given the simultaneous bands
    a_below_before: bool  # True: A had the lower robust error before the crossing
    gap_before: float = math.nan  # the largest |R_A - R_B| in the regime before the crossing
    gap_after: float = math.nan  # ... and in the regime after it
    p_value: float = math.nan  # family-wise adjusted: the smallest alpha at which it is significant
    dataset: str = ""


def band_half_width(n: int, alpha: float) -> float:
    """Half-width of the (1 - alpha) DKW band of an empirical curve of ``n`` points:
    P(sup_eps |R_n(eps) - R(eps)| > h) <= alpha (Massart's constant)."""
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


def simultaneous_band_half_width(n: int, alpha: float, n_curves: int) -> float:
    """Half-width of each of ``n_curves`` DKW bands that hold *together* with probability
    >= 1 - alpha: each at level ``alpha / n_curves`` (Bonferroni over the curves)."""
    return band_half_width(n, alpha / n_curves)


def crossing_p_value(gap: float, n_a: int, n_b: int, n_curves: int) -> float:
    """The smallest family level ``alpha`` at which a gap of ``gap`` on both sides is significant.

    Significant at ``alpha``: ``gap > h(n_a, alpha/K) + h(n_b, alpha/K)`` with ``K = n_curves``
    bands (:func:`simultaneous_band_half_width`, :func:`crossings_table`), i.e.
    ``alpha > 2 K exp(-(gap / c)^2)`` with
    ``c = 1/sqrt(2 n_a) + 1/sqrt(2 n_b)``.
    """
    if not gap > 0 or n_a == 0 or n_b == 0:
        return 1.0
    c = 1.0 / math.sqrt(2.0 * n_a) + 1.0 / math.sqrt(2.0 * n_b)
    return min(1.0, 2.0 * n_curves * math.exp(-((gap / c) ** 2)))


def find_crossings(a: RobustnessCurve, b: RobustnessCurve, alpha: float = 0.05, n_curves: int = 2) -> list[Crossing]:
    """Values of eps where the curves of ``a`` and ``b`` (same norm) swap order.

    The step functions are compared on every jump point of either curve. Each maximal
    run where one curve is strictly below the other is a "regime"; a crossing is the
    first eps of a regime whose sign differs from the previous regime. It is
    significant when, in the regimes on both sides, somewhere the gap exceeds the sum
    of the two curves' DKW band half-widths, each band at level ``alpha / n_curves``:
    with ``n_curves`` the number of curves of the whole family (all pairs and norms of a
    table), every band holds at once with probability >= 1 - alpha (Bonferroni over the
    curves), so the chance of flagging any crossing that is not real, anywhere in the
    family, is at most alpha. For one pair alone, ``n_curves = 2``.
    """
    if a.norm != b.norm:
        raise ValueError(f"find_crossings: curves in different norms ({a.norm}, {b.norm})")
    if n_curves < 2:
        raise ValueError(f"find_crossings: n_curves must be at least the pair's 2, got {n_curves}")
    grid = np.union1d(a.steps()[0], b.steps()[0])
    grid = np.union1d(grid, [0.0])
    diff = np.asarray(robust_error_at(a, grid)) - np.asarray(robust_error_at(b, grid))
    sign = np.sign(diff)
    regimes = []  # (sign, start eps, max |diff|)
    for s, group in itertools.groupby(zip(sign, grid, np.abs(diff)), key=lambda t: t[0]):
        if s == 0:
            continue
        g = list(group)
        if regimes and regimes[-1][0] == s:
            regimes[-1][2] = max(regimes[-1][2], max(t[2] for t in g))
        else:
            regimes.append([s, g[0][1], max(t[2] for t in g)])
    out = []
    for prev, cur in zip(regimes, regimes[1:]):
        p = crossing_p_value(min(prev[2], cur[2]), a.n_points, b.n_points, n_curves)
        out.append(Crossing(a.norm, a.label, b.label, float(cur[1]), bool(p < alpha), bool(prev[0] < 0),
                            float(prev[2]), float(cur[2]), p, str(a.config.get("dataset", ""))))
    return out


def crossings_table(curves: Sequence[RobustnessCurve], alpha: float = 0.05) -> list[Crossing]:
    """All crossings for every pair of curves that share a norm and a data set
    (``config["dataset"]``), family-wise at level ``alpha``.

    The family is every curve passed in (all pairs, norms and data sets): each curve's band is
    a DKW band at level ``alpha / K`` with ``K = len(curves)``, so that all K bands hold
    simultaneously with probability >= 1 - alpha. A flagged crossing is then real unless
    a band failed: the family-wise error over all pairs and norms is at most alpha.
    The bands cover the sampling of the test points only; for attack curves (lower bounds
    of the true robust error) a crossing may also come from the attacks' weakness.
    """
    k = max(2, len(curves))
    out = []
    for a, b in itertools.combinations(curves, 2):
        if a.norm == b.norm and a.config.get("dataset", "") == b.config.get("dataset", ""):
            out.extend(find_crossings(a, b, alpha, n_curves=k))
    return out


def crossings_caption(alpha: float, n_curves: int) -> str:
    """What the crossings table claims, in one paragraph (for its Markdown file)."""
    return (f"Crossings of robustness curves (eps in the norm's units). Significant: on both sides the gap "
            f"exceeds two simultaneous DKW bands, each at level {alpha:g}/{n_curves} (Bonferroni over the "
            f"{n_curves} curves), so the family-wise error over all pairs and norms is at most {alpha:g}; "
            f"p_value is family-wise adjusted. The bands cover the sampling of the test points only; attack "
            f"curves bound the true robust error from below.")
