"""Data-set scale: Table 2 and Figure 5 of Risse et al. (ICLR 2021).

Both summarise, per data set, the nearest-neighbour distances of
:mod:`robcurves.distances`: for each point, the distance to the nearest point of another
class (inter-class) and of its own class (intra-class), in linf, l2 and l1.

As in the paper, nearest distances below ``min_distance`` (default 1e-4: exact or near
duplicates with different labels) are dropped before the statistics and the plot, and
the table says how many were dropped. Points with no neighbour of the kind asked for
(a class with one member; a data set with one class) have distance ``+inf``; they are
left out too and counted separately.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robcurves.atomic import write_text  # noqa: E402
from robcurves.figures import save_figure  # noqa: E402
from robcurves.distances import KINDS, NearestNeighbours  # noqa: E402
from robcurves.norms import NORMS, parse_norm  # noqa: E402

# Okabe-Ito: distinguishable with colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
STATS = ("min", "median", "max")
NORM_ORDER = tuple(NORMS)  # linf, l2, l1
_TEX_NORM = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$", "l1": r"$\ell_1$"}
_MD_NORM = {"linf": "ℓ∞", "l2": "ℓ2", "l1": "ℓ1"}


def kept_distances(values: np.ndarray, min_distance: float = 1e-4) -> np.ndarray:
    """Finite distances at least ``min_distance``, sorted ascending (what is summarised)."""
    v = np.asarray(values, dtype=np.float64)
    return np.sort(v[np.isfinite(v) & (v >= min_distance)])


def distance_summary(values: np.ndarray, min_distance: float = 1e-4) -> dict[str, float | int]:
    """``min``/``median``/``max`` of the kept distances, with the counts left out.

    ``n_dropped``: finite distances below ``min_distance``; ``n_no_neighbour``: ``+inf``.
    The statistics are NaN when nothing is kept.
    """
    v = np.asarray(values, dtype=np.float64)
    kept = kept_distances(v, min_distance)
    finite = np.isfinite(v)
    out: dict[str, float | int] = {
        "n_kept": int(len(kept)),
        "n_dropped": int(np.sum(finite & (v < min_distance))),
        "n_no_neighbour": int(np.sum(~finite)),
    }
    for s, f in zip(STATS, (np.min, np.median, np.max)):
        out[s] = float(f(kept)) if len(kept) else math.nan
    return out


def dimensionality(input_shape: Sequence[int]) -> str:
    """``"28x28x1"`` for images, ``"561"`` for tabular data (stored with H = W = 1)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and shape[0] == 1 and shape[1] == 1:
        return str(shape[2])
    return "x".join(str(s) for s in shape)


def table2_rows(
    results: Mapping[str, NearestNeighbours], min_distance: float = 1e-4,
) -> list[dict[str, Any]]:
    """One row per data set (in the mapping's order), as plain values.

    Keys: ``dataset``, ``samples``, ``classes``, ``dimensionality``,
    ``duplicate_points`` (points with an identical twin of another label), and for each
    kind (``inter``, ``intra``) and norm: ``{kind}_{norm}_{min,median,max}`` (distances in
    that norm), ``{kind}_{norm}_dropped`` and ``{kind}_{norm}_no_neighbour``.
    """
    rows = []
    for name, nn in results.items():
        row: dict[str, Any] = {
            "dataset": name,
            "samples": len(nn),
            "classes": nn.n_classes,
            "dimensionality": dimensionality(nn.input_shape),
            "duplicate_points": nn.n_duplicate_points,
            "min_distance": float(min_distance),
        }
        for kind in KINDS:
            for norm in NORM_ORDER:
                if norm not in nn.norms:
                    continue
                summ = distance_summary(nn.distance[kind][norm], min_distance)
                for s in STATS:
                    row[f"{kind}_{norm}_{s}"] = summ[s]
                row[f"{kind}_{norm}_dropped"] = summ["n_dropped"]
                row[f"{kind}_{norm}_no_neighbour"] = summ["n_no_neighbour"]
        rows.append(row)
    return rows


def _norms_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [n for n in NORM_ORDER if any(f"inter_{n}_min" in r for r in rows)]


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _dropped(row: Mapping[str, Any], kind: str, norms: Sequence[str]) -> str:
    counts = [row.get(f"{kind}_{n}_dropped") for n in norms if f"{kind}_{n}_dropped" in row]
    if not counts:
        return "–"
    return str(counts[0]) if len(set(counts)) == 1 else "/".join(str(c) for c in counts)


def table2_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """All columns, full precision (``repr`` of floats), one line per data set."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def table2_markdown(rows: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """Two Markdown tables (inter-class, intra-class): min, median and max per norm."""
    norms = _norms_of(rows)
    min_d = rows[0]["min_distance"] if rows else 1e-4
    out = []
    for kind, title in (("inter", "Nearest other-class (inter-class) distance"),
                        ("intra", "Nearest same-class (intra-class) distance")):
        head = ["Dataset", "Samples", "Classes", "Dimensionality"]
        head += [f"{s} {_MD_NORM[n]}" for s in STATS for n in norms]
        head += [f"dropped (< {min_d:g})"]
        if kind == "intra":
            head += ["no neighbour"]
        lines = [f"**{title}** (distances below {min_d:g} dropped, as in the paper)", "",
                 "| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for r in rows:
            cells = [str(r["dataset"]), str(r["samples"]), str(r["classes"]), str(r["dimensionality"])]
            cells += [_fmt(r.get(f"{kind}_{n}_{s}"), digits) for s in STATS for n in norms]
            cells += [_dropped(r, kind, norms)]
            if kind == "intra":
                nb = [r.get(f"intra_{n}_no_neighbour", 0) for n in norms]
                cells += [str(max(nb) if nb else 0)]
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def table2_latex(rows: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """A LaTeX ``tabular`` per kind (needs ``booktabs``), laid out like the paper's Table 2."""
    norms = _norms_of(rows)
    min_d = rows[0]["min_distance"] if rows else 1e-4
    parts = []
    for kind, title in (("inter", "inter-class"), ("intra", "intra-class")):
        k = len(norms)
        spec = "lrrr" + ("r" * k) * len(STATS) + "r"
        lines = [f"% Nearest {title} distances; values below {min_d:g} dropped (last column: how many).",
                 r"\begin{tabular}{" + spec + "}", r"\toprule"]
        groups = " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{s} {title}}}" for s in STATS)
        lines.append(rf" & & & & {groups} & \\")
        rules = " ".join(rf"\cmidrule(lr){{{5 + i * k}-{4 + (i + 1) * k}}}" for i in range(len(STATS)))
        lines.append(rules)
        sub = " & ".join(_TEX_NORM[n] for _ in STATS for n in norms)
        lines.append(rf"Dataset & Samples & Classes & Dimensionality & {sub} & dropped \\")
        lines.append(r"\midrule")
        for r in rows:
            dim = str(r["dimensionality"])
            dim_tex = "$" + dim.replace("x", r" \times ") + "$"
            vals = " & ".join(_fmt(r.get(f"{kind}_{n}_{s}"), digits) for s in STATS for n in norms)
            lines.append(rf"{_tex_escape(str(r['dataset']))} & {r['samples']} & {r['classes']} & {dim_tex} & "
                         rf"{vals} & {_dropped(r, kind, norms)} \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_table2(
    results: Mapping[str, NearestNeighbours],
    csv_path: str | os.PathLike,
    md_path: str | os.PathLike,
    tex_path: str | os.PathLike,
    min_distance: float = 1e-4,
) -> list[dict[str, Any]]:
    """Build Table 2 and write it as CSV, Markdown and LaTeX (each atomically)."""
    rows = table2_rows(results, min_distance)
    write_text(csv_path, table2_csv(rows))
    write_text(md_path, table2_markdown(rows))
    write_text(tex_path, table2_latex(rows))
    return rows


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
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            curves = [("inter", "-", name)]
            if intra:
                curves.append(("intra", "--", f"{name} (intra)"))
            for kind, ls, label in curves:
                v = kept_distances(nn.distance[kind][norm], min_distance)
                if len(v) == 0:
                    continue
                frac = np.arange(1, len(v) + 1) / len(v)
                ax.step(np.r_[0.0, v], np.r_[0.0, frac], where="post", color=colour, linestyle=ls,
                        linewidth=1.5, label=label)
                x_max = max(x_max, float(v[-1]))
        for t in thresholds.get(norm, []):
            ax.axvline(t, color="0.4", linestyle=":", linewidth=1.0)
            ax.annotate(_threshold_label(t), (t, 0.99), xytext=(1, 0), textcoords="offset points",
                        fontsize=7, color="0.25", rotation=90, va="top", ha="left",
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


def load_results(paths: Mapping[str, str | os.PathLike]) -> dict[str, NearestNeighbours]:
    """``{name: path}`` of :func:`robcurves.distances.save_nearest` files, loaded in order."""
    from robcurves.distances import load_nearest

    return {name: load_nearest(p) for name, p in paths.items()}
