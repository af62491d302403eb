"""Figure 5 of Risse et al. (ICLR 2021): CDFs of the nearest inter-class distances, per norm and data set."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robcurves.figures import save_figure  # noqa: E402
from robcurves.norms import NORMS, parse_norm  # noqa: E402
from robcurves.palette import GUIDE, GUIDE_TEXT, colour  # noqa: E402
from robcurves.scale.neighbours import NearestNeighbours  # noqa: E402
from robcurves.scale.summary import NORM_ORDER, kept_distances  # noqa: E402


def _threshold_label(t: float) -> str:
    """``8/255`` for thresholds on the 8-bit grid, else a short decimal."""
    k = t * 255
    if 0 < t < 1 and abs(k - round(k)) < 1e-4 and abs(t * 10 - round(t * 10)) > 1e-9:
        return f"{int(round(k))}/255"
    return f"{t:.3g}"


def plot_fig5(
    results: Mapping[str, NearestNeighbours],
    out_paths: Sequence[str | os.PathLike],
    min_distance: float = 1e-4,
    intra: bool = False,
    thresholds: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """Empirical CDFs of nearest inter-class distances: one panel per norm, one line per set.

    ``intra`` overlays the intra-class CDF of each data set (dashed, same colour);
    ``thresholds`` maps a norm name to distances drawn as dotted vertical lines (e.g.
    linf 0.1, 0.3, 8/255). Writes every path in ``out_paths`` (format from the suffix)
    atomically.
    """
    if not results:
        raise ValueError("plot_fig5: no data sets to plot")
    norms = [n for n in NORM_ORDER if any(n in nn.norms for nn in results.values())]
    thresholds = {parse_norm(k).name: list(v) for k, v in (thresholds or {}).items()}
    n_lines = len(results) * (2 if intra else 1)
    height = 3.0 + 0.2 * -(-n_lines // 4)
    fig, axes = plt.subplots(1, len(norms), figsize=(3.6 * len(norms), height), squeeze=False, sharey=True)
    for ax, norm in zip(axes[0], norms):
        x_max = 0.0
        for i, (name, nn) in enumerate(results.items()):
            if norm not in nn.norms:
                continue
            line_colour = colour(i)
            curves = [("inter", "-", name)]
            if intra:
                curves.append(("intra", "--", f"{name} (intra)"))
            for kind, ls, label in curves:
                v = kept_distances(nn.distance[kind][norm], min_distance)
                if len(v) == 0:
                    continue
                frac = np.arange(1, len(v) + 1) / len(v)
                ax.step(np.r_[0.0, v], np.r_[0.0, frac], where="post", color=line_colour, linestyle=ls,
                        linewidth=1.5, label=label)
                x_max = max(x_max, float(v[-1]))
        for t in thresholds.get(norm, []):
            ax.axvline(t, color=GUIDE, linestyle=":", linewidth=1.0)
            ax.annotate(_threshold_label(t), (t, 0.99), xytext=(1, 0), textcoords="offset points",
                        fontsize=7, color=GUIDE_TEXT, rotation=90, va="top", ha="left",
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        ax.set_xlim(left=0.0, right=(x_max * 1.03) if x_max > 0 else None)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel(f"distance in {NORMS[norm].label}")
        ax.set_title(f"{NORMS[norm].label} distances")
        ax.grid(alpha=0.3, linewidth=0.5)
    axes[0][0].set_ylabel("fraction of points")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:  # data sets may lack a norm: collect every label once
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    ncol = 4 if len(labels) > 4 else max(1, len(labels))
    n_rows = -(-len(labels) // ncol)
    bottom = min(0.45, 0.06 + 0.055 * n_rows)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    save_figure(fig, out_paths)
