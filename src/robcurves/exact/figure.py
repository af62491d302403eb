"""Figure "exact vs. approximate robustness curves": the certified band and the attack curve.

For points with exact results, the robust error ``R(eps) = #{d <= eps} / n`` of the true
minimal distances ``d`` is certain to lie between two step curves:

- the curve of the exact stage's upper bounds (the distance of a witness that the float32
  checker verified, :mod:`robcurves.adversarial`; an attack's example counts only when it
  passed the same check), which lies *below* the true curve, and
- the curve of the certified lower bounds, which lies *above* it.

Misclassified points count at eps = 0 in both curves; they are reported apart and are
never "solved". The attack curve (the attack's verified distances alone) is drawn on the
same points; where it leaves the band, the attack overestimated the robustness. Every
comparison of a distance with eps is :func:`robcurves.curves.count_at_most`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robcurves.curves import count_at_most  # noqa: E402
from robcurves.figures import save_figure  # noqa: E402
from robcurves.exact.records import read_merged_json, summarize  # noqa: E402
from robcurves.norms import parse_norm  # noqa: E402
from robcurves.palette import BLACK, YELLOW, colour  # noqa: E402
from robcurves.tablewriter import csv_text  # noqa: E402

# Black is kept for the attack curve; yellow is too faint for a band on white.
_RESERVED = (BLACK, YELLOW)


def _cdf(d: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return count_at_most(d, grid) / max(len(d), 1)


def _arrays(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    pts = data["points"]

    def col(key: str) -> np.ndarray:
        return np.array([np.inf if p.get(key) is None else p[key] for p in pts], dtype=np.float64)

    verified = np.array([bool(p.get("attack_verified", False)) for p in pts], dtype=bool)
    claimed = col("attack_distance")
    return {"lower": col("lower"), "upper": col("upper"), "attack_claimed": claimed, "attack_verified": verified,
            "attack": np.where(verified, claimed, np.inf),  # an example the checker rejected bounds nothing
            "status": np.array([p["status"] for p in pts]), "time": col("solve_time"),
            "rel_tol": col("rel_tol"), "abs_tol": col("abs_tol")}


def gap_statistics(data: Mapping[str, Any]) -> dict[str, Any]:
    """Gap statistics of one merged exact file (see :func:`robcurves.exact.records.summarize`),
    plus ``max_band_width``: the largest vertical distance between the two band curves, and
    ``max_attack_excess``: the largest vertical distance by which the attack curve falls below
    the certified-lower-bound curve (how far the attack can understate the robust error)."""
    a = _arrays(data)
    stats = summarize(a["status"], a["lower"], a["upper"], a["attack_claimed"], a["time"], a["attack_verified"],
                      a["rel_tol"], a["abs_tol"])
    grid = np.unique(np.concatenate([a["lower"], a["upper"], a["attack"]]))
    grid = grid[np.isfinite(grid)]
    if len(grid):
        stats["max_band_width"] = float(np.max(_cdf(a["lower"], grid) - _cdf(a["upper"], grid)))
        stats["max_attack_excess"] = float(np.max(_cdf(a["lower"], grid) - _cdf(a["attack"], grid)))
    return stats


def solved_caption(stats: Mapping[str, Any]) -> str:
    """"k/n solved (optimal: within rel. r, abs. a), m misclassified" for a panel title."""
    rel, ab = stats.get("optimal_rel_tol"), stats.get("optimal_abs_tol")
    tol = f" to rel. {rel:.0e} + abs. {ab:.0e}" if rel is not None and ab is not None else ""
    return (f"{stats['optimal']}/{stats['n_classified']} solved{tol}; "
            f"{stats['misclassified']} misclassified")


def plot_exact_vs_approx(inputs: Sequence[str | os.PathLike | Mapping[str, Any]], out_paths: Sequence[str | os.PathLike],
                         labels: Sequence[str] | None = None, title: str = "") -> list[dict[str, Any]]:
    """One panel per merged exact file (:data:`robcurves.paths.EXACT_MERGED`).

    Each panel shows the certified band (between the upper-bound and lower-bound curves)
    and the attack curve on the same points. Writes every path in ``out_paths`` atomically
    (format from the suffix) and returns the gap statistics of every panel.
    """
    datas = [read_merged_json(p) if not isinstance(p, Mapping) else p for p in inputs]
    if not datas:
        raise ValueError("exact figure: no exact results to plot")
    labels = list(labels) if labels is not None else [str(p) for p in inputs]
    fig, axes = plt.subplots(1, len(datas), figsize=(3.6 * len(datas), 3.1), squeeze=False)
    all_stats = []
    for i, (ax, data, label) in enumerate(zip(axes[0], datas, labels)):
        a = _arrays(data)
        norm = parse_norm(data["norm"])
        finite = np.concatenate([v[np.isfinite(v)] for v in (a["lower"], a["upper"], a["attack"])] + [np.zeros(1)])
        x_max = float(finite.max()) * 1.1 if finite.max() > 0 else 1.0
        grid = np.unique(np.concatenate([np.linspace(0, x_max, 400), finite]))
        lo_curve, hi_curve = _cdf(a["upper"], grid), _cdf(a["lower"], grid)
        c = colour(i, exclude=_RESERVED)
        ax.fill_between(grid, lo_curve, hi_curve, step="post", color=c, alpha=0.3, linewidth=0,
                        label="certified band (exact)")
        ax.step(grid, hi_curve, where="post", color=c, linewidth=1.2, label="exact lower bounds")
        ax.step(grid, lo_curve, where="post", color=c, linewidth=1.2, linestyle=":", label="exact upper bounds")
        if np.isfinite(a["attack"]).any():
            ax.step(grid, _cdf(a["attack"], grid), where="post", color=BLACK, linewidth=1.2,
                    linestyle="--", label="attack (approximate)")
        stats = gap_statistics(data)
        stats["label"] = label
        stats["norm"] = norm.name
        all_stats.append(stats)
        ax.set_title(f"{label}\n{solved_caption(stats)}", fontsize=8)
        ax.set_xlim(0, x_max)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"perturbation size $\\varepsilon$ ({norm.label} norm)")
        ax.set_ylabel("robust error $R(\\varepsilon)$")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_paths)
    return all_stats


def format_gap_statistics(stats: Sequence[Mapping[str, Any]], sep: str = ",") -> str:
    """A CSV table (``sep``-separated, :func:`robcurves.tablewriter.csv_text`) of :func:`gap_statistics`
    rows (what the figure rule prints), without a final line end."""
    cols = ["label", "norm", "n", "misclassified", "n_classified", "optimal", "time_limit",
            "no_adversarial_in_domain", "optimal_rel_tol", "optimal_abs_tol", "median_lower_over_upper",
            "median_lower_over_attack", "attack_within_1pct", "n_attack_rejected", "max_band_width",
            "max_attack_excess", "median_time_s", "p90_time_s"]

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    return csv_text(cols, [[fmt(s.get(c)) for c in cols] for s in stats], delimiter=sep).rstrip("\n")
