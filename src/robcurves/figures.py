"""Figures of robustness curves (matplotlib, Agg backend, no LaTeX needed), and the writer
every figure uses (:func:`save_figure`). Colours and line styles: :mod:`robcurves.palette`.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robcurves.atomic import atomic_path  # noqa: E402
from robcurves.curves import RobustnessCurve, dkw_band  # noqa: E402
from robcurves.norms import NORMS, parse_norm  # noqa: E402
from robcurves.palette import GUIDE, GUIDE_TEXT, line_style  # noqa: E402


def draw_curve(ax, curve: RobustnessCurve, x_max: float, band: bool = True, **kw) -> None:
    """Draw one right-continuous step curve from eps = 0 to ``x_max``, with its DKW band."""
    eps, r = curve.steps()
    r0 = float(curve.robust_error_at(0.0))
    xs = np.concatenate([[0.0], eps[eps > 0], [x_max]])
    ys = np.concatenate([[r0], r[eps > 0], [r[-1] if len(r) else r0]])
    ax.step(xs, ys, where="post", linewidth=1.6, label=curve.label or None, **kw)
    if band and curve.n_points > 0:
        grid = np.unique(np.concatenate([xs, np.linspace(0, x_max, 200)]))
        lo, hi = dkw_band(curve, grid)
        ax.fill_between(grid, lo, hi, step="post", alpha=0.15, color=kw.get("color"), linewidth=0)


def plot_robustness_curves(
    curves: Sequence[RobustnessCurve],
    out_paths: Sequence[str | os.PathLike],
    title: str = "",
    thresholds: Mapping[str, Sequence[float]] | None = None,
    band: bool = True,
) -> None:
    """One panel per norm present in ``curves``; one line per model.

    ``thresholds`` maps a norm name to eps values drawn as dashed vertical lines.
    Writes every path in ``out_paths`` (format from the suffix) atomically.
    """
    norms = [n for n in NORMS if any(c.norm == n for c in curves)]
    if not norms:
        raise ValueError("plot_robustness_curves: no curves to plot")
    if len({c.config.get("dataset") for c in curves}) > 1:  # curves of several data sets: say which is which
        curves = [_with_dataset_label(c) for c in curves]
    labels = list(dict.fromkeys(c.label for c in curves))  # first-seen order: the config's order
    fig, axes = plt.subplots(1, len(norms), figsize=(max(3.4 * len(norms), 5.0), 3.6), squeeze=False)
    for ax, norm_name in zip(axes[0], norms):
        norm = parse_norm(norm_name)
        sel = [c for c in curves if c.norm == norm_name]
        finite = np.concatenate([c.distances[np.isfinite(c.distances)] for c in sel] + [np.zeros(1)])
        x_max = float(np.quantile(finite, 0.995)) * 1.05 if finite.max() > 0 else 1.0
        x_max = max(x_max, max((t for t in (thresholds or {}).get(norm_name, [])), default=0.0) * 1.1)
        for c in sel:
            draw_curve(ax, c, x_max, band=band, **line_style(labels.index(c.label)))
        for t in (thresholds or {}).get(norm_name, []):
            ax.axvline(t, color=GUIDE, linestyle="--", linewidth=0.8)
        ax.set_xlim(0, x_max)
        ax.set_ylim(0, 1.0)
        ax.set_xlabel(f"perturbation size $\\varepsilon$ ({norm.label} norm)")
        ax.set_ylabel(f"robust error $R(\\varepsilon)$")
        ax.grid(alpha=0.3)
    handles, names = axes[0][-1].get_legend_handles_labels()
    for ax in axes[0][:-1]:  # a label missing from the last panel still gets an entry
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    ncol = min(3 if len(norms) > 1 else 2, max(1, len(names)))
    rows = -(-len(names) // ncol)
    bottom = 0.02 + 0.065 * rows
    fig.legend(handles, names, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    save_figure(fig, out_paths)


def _with_dataset_label(c: RobustnessCurve) -> RobustnessCurve:
    import copy

    ds = c.config.get("dataset")
    if not ds or ds in c.label:
        return c
    out = copy.copy(c)
    out.label = f"{c.label}, {ds}" if c.label else ds
    return out


def save_figure(fig, out_paths: Sequence[str | os.PathLike]) -> None:
    """Save ``fig`` to every path atomically, then close it."""
    try:
        for p in out_paths:
            with atomic_path(p) as tmp:
                fig.savefig(tmp, format=os.path.splitext(str(p))[1].lstrip(".") or None, dpi=200)
    finally:
        plt.close(fig)


def plot_toy_crossing(out_paths: Sequence[str | os.PathLike], n: int = 1000, seed: int = 0) -> dict:
    """Fig. 1: two synthetic classifiers whose robustness curves cross.

    Model A has small but non-zero minimal perturbations everywhere (distances
    concentrated around 0.3); model B is very robust on most points but has a tail of
    fragile ones (a 20% mass near 0.05, the rest spread around 0.6). At eps = 0.1, B
    looks worse; at eps = 0.4, A does. Returns the crossing points it drew.
    """
    from robcurves.curves import robustness_curve
    from robcurves.tables import find_crossings

    rng = np.random.default_rng(seed)
    a = np.clip(rng.normal(0.3, 0.06, n), 0.0, None)
    b = np.where(rng.random(n) < 0.2, np.abs(rng.normal(0.05, 0.02, n)), rng.normal(0.6, 0.12, n).clip(0.0))
    ca = robustness_curve(a, "linf", label="model A")
    cb = robustness_curve(b, "linf", label="model B")
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for i, c in enumerate((ca, cb)):
        draw_curve(ax, c, 1.0, band=False, **line_style(i))
    crossings = find_crossings(ca, cb)
    for t, y, txt in ((0.1, 0.55, "at 0.1: A looks\nmore robust"), (0.4, 0.1, "at 0.4: B looks\nmore robust")):
        ax.axvline(t, color=GUIDE, linestyle="--", linewidth=0.8)
        ax.text(t + 0.01, y, txt, fontsize=7, color=GUIDE_TEXT, va="bottom")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel(r"perturbation size $\varepsilon$ ($\ell_\infty$ norm)")
    ax.set_ylabel(r"robust error $R(\varepsilon)$")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("Robust error at one threshold can rank models either way", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_paths)
    return {"crossings": [c.eps for c in crossings]}
