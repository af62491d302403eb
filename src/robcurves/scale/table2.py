"""Table 2 of Risse et al. (ICLR 2021): the scale of each data set, as CSV, Markdown and LaTeX.

Per data set: samples, classes, dimensionality, cross-label duplicates and, per kind
(inter-/intra-class) and norm, the min/median/max of the kept nearest distances
(:mod:`robcurves.scale.summary`). Written through :mod:`robcurves.tablewriter`.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

from robcurves.scale.neighbours import KINDS, NearestNeighbours
from robcurves.scale.summary import NORM_ORDER, STATS, dimensionality, distance_summary
from robcurves.tablewriter import csv_text, markdown_table, tex_escape, tex_row, write_tables

_TEX_NORM = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$", "l1": r"$\ell_1$"}
_MD_NORM = {"linf": "ℓ∞", "l2": "ℓ2", "l1": "ℓ1"}


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
    cell = lambda v: repr(v) if isinstance(v, float) else v  # noqa: E731
    return csv_text(keys, [[cell(r.get(k, "")) for k in keys] for r in rows])


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
        body = []
        for r in rows:
            cells = [str(r["dataset"]), str(r["samples"]), str(r["classes"]), str(r["dimensionality"])]
            cells += [_fmt(r.get(f"{kind}_{n}_{s}"), digits) for s in STATS for n in norms]
            cells += [_dropped(r, kind, norms)]
            if kind == "intra":
                nb = [r.get(f"intra_{n}_no_neighbour", 0) for n in norms]
                cells += [str(max(nb) if nb else 0)]
            body.append(cells)
        lines = [f"**{title}** (distances below {min_d:g} dropped, as in the paper)", ""]
        lines += markdown_table(head, body, align=["l"] + ["r"] * (len(head) - 1))
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


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
        lines.append(tex_row(["Dataset", "Samples", "Classes", "Dimensionality", sub, "dropped"]))
        lines.append(r"\midrule")
        for r in rows:
            dim = str(r["dimensionality"])
            dim_tex = "$" + dim.replace("x", r" \times ") + "$"
            vals = " & ".join(_fmt(r.get(f"{kind}_{n}_{s}"), digits) for s in STATS for n in norms)
            lines.append(tex_row([tex_escape(r["dataset"]), str(r["samples"]), str(r["classes"]), dim_tex, vals,
                                  _dropped(r, kind, norms)]))
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
    write_tables({csv_path: table2_csv(rows), md_path: table2_markdown(rows), tex_path: table2_latex(rows)})
    return rows
