"""Tables read off robustness curves: point-wise robust error (Table 1) and crossings.

Values are read exactly off the right-continuous step function, R(eps) = #{d <= eps}/n,
not from the nearest sample of a plotted curve.
"""

from __future__ import annotations

import csv as csvlib
import io
import itertools
import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from robcurves.atomic import write_text
from robcurves.curves import RobustnessCurve, robust_error_at


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


def robust_error_table(curves: Sequence[RobustnessCurve], thresholds: dict[str, Sequence[float]],
                       alpha: float = 0.05) -> list[RobustErrorRow]:
    """R(eps) with a (1 - alpha) Clopper-Pearson interval, for every curve and its norm's thresholds."""
    rows = []
    for c in curves:
        for eps in thresholds.get(c.norm, []):
            r = robust_error_at(c, eps)
            k = int(round(r * c.n_points))
            lo, hi = clopper_pearson(k, c.n_points, alpha)
            rows.append(RobustErrorRow(c.label, c.norm, float(eps), float(r), lo, hi, c.n_points))
    return rows


@dataclass
class Crossing:
    norm: str
    model_a: str
    model_b: str
    eps: float  # where the order of the two curves changes (in the norm's units)
    significant: bool  # both orders are certain on either side, given the confidence bands
    a_below_before: bool  # True: A had the lower robust error before the crossing


def _band_half(n: int, alpha: float) -> float:
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


def find_crossings(a: RobustnessCurve, b: RobustnessCurve, alpha: float = 0.05) -> list[Crossing]:
    """Values of eps where the curves of ``a`` and ``b`` (same norm) swap order.

    The step functions are compared on every jump point of either curve. Each maximal
    run where one curve is strictly below the other is a "regime"; a crossing is the
    first eps of a regime whose sign differs from the previous regime. It is
    significant when, in the regimes on both sides, somewhere the gap exceeds the sum
    of the two DKW band half-widths (each at level alpha/2, so that the pair of bands
    holds simultaneously with probability >= 1 - alpha).
    """
    if a.norm != b.norm:
        raise ValueError(f"find_crossings: curves in different norms ({a.norm}, {b.norm})")
    grid = np.union1d(a.steps()[0], b.steps()[0])
    grid = np.union1d(grid, [0.0])
    diff = np.asarray(robust_error_at(a, grid)) - np.asarray(robust_error_at(b, grid))
    margin = _band_half(a.n_points, alpha / 2) + _band_half(b.n_points, alpha / 2)
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
        out.append(Crossing(a.norm, a.label, b.label, float(cur[1]),
                            bool(prev[2] > margin and cur[2] > margin), bool(prev[0] < 0)))
    return out


def crossings_table(curves: Sequence[RobustnessCurve], alpha: float = 0.05) -> list[Crossing]:
    """All crossings for every pair of curves that share a norm."""
    out = []
    for a, b in itertools.combinations(curves, 2):
        if a.norm == b.norm:
            out.extend(find_crossings(a, b, alpha))
    return out


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def write_table(rows: list[dict], stem: str | os.PathLike, caption: str = "") -> list[str]:
    """Write ``rows`` (dicts with the same keys) as CSV, Markdown and LaTeX; return the paths."""
    stem = str(stem)
    cols = list(rows[0]) if rows else ["(empty)"]
    cell = lambda v: _fmt(v) if isinstance(v, float) else str(v)  # noqa: E731
    buf = io.StringIO()
    writer = csvlib.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows([[cell(r[c]) for c in cols] for r in rows])
    csv = buf.getvalue()
    md = (f"{caption}\n\n" if caption else "") + "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    md += "".join("| " + " | ".join(cell(r[c]) for c in cols) + " |\n" for r in rows)
    esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%")  # noqa: E731
    tex = "\\begin{tabular}{" + "l" * len(cols) + "}\n\\hline\n" + " & ".join(esc(c) for c in cols) + " \\\\\n\\hline\n"
    tex += "".join(" & ".join(esc(cell(r[c])) for c in cols) + " \\\\\n" for r in rows) + "\\hline\n\\end{tabular}\n"
    paths = [f"{stem}.csv", f"{stem}.md", f"{stem}.tex"]
    for p, text in zip(paths, (csv, md, tex)):
        write_text(p, text)
    return paths
