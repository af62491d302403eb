"""Gallery figure: what minimal adversarial examples look like, next to the curves.

For every model of a figure entry and every norm, a few test points are shown at several
quantiles of their minimal (attack) distance: the clean input, the adversarial example and
the perturbation between them. Every example is re-checked on the model before it is drawn
(:func:`robcurves.adversarial.verify_witnesses`: clipped into the model's input box,
misclassified by the strict margin rule, its float32 distance in the row's norm); one
that fails is not drawn as adversarial.

Quantiles are over the points the attack broke (status ``adversarial``, distance > 0):
misclassified points (distance 0) and points that no attack broke (+inf) have nothing
to show. The point at quantile ``q`` is the one of rank ``floor(q * (k - 1))`` among the
``k`` broken points sorted by distance (ties by index).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robcurves.figures import save_figure  # noqa: E402
from robcurves.norms import parse_norm  # noqa: E402
from robcurves.palette import DIVERGING_CMAP, IMAGE_CMAP  # noqa: E402

DEFAULT_QUANTILES = (0.1, 0.5, 0.9)


@dataclass
class Example:
    """One drawn example: test point ``index``, its label and the adversarial example's class,
    the ``norm`` distance of the verified example (float32), and the arrays (NHWC, one point)."""

    quantile: float
    index: int
    label: int
    adv_class: int
    distance: float
    x: np.ndarray
    x_adv: np.ndarray
    verified: bool


@dataclass
class GalleryRow:
    """The examples of one model in one norm (``examples`` may be empty)."""

    model: str
    norm: str
    bounds: tuple[float, float]
    examples: list[Example] = field(default_factory=list)
    n_broken: int = 0
    n_points: int = 0


def quantile_points(distances: np.ndarray, status: np.ndarray, quantiles: Sequence[float]) -> list[tuple[float, int]]:
    """``(q, position)`` per quantile: positions (into ``distances``) of broken points at those quantiles."""
    d = np.asarray(distances, dtype=np.float64)
    ok = (np.asarray(status).astype(str) == "adversarial") & np.isfinite(d) & (d > 0)
    pos = np.flatnonzero(ok)
    if not len(pos):
        return []
    order = pos[np.lexsort((pos, d[pos]))]
    out = []
    for q in quantiles:
        if not 0.0 <= float(q) <= 1.0:
            raise ValueError(f"gallery: quantiles must lie in [0, 1], got {q}")
        out.append((float(q), int(order[int(np.floor(float(q) * (len(order) - 1)))])))
    return out


def gallery_row(model, label: str, norm: str, x: np.ndarray, y: np.ndarray, shards: Sequence[dict[str, Any]],
                bounds: tuple[float, float], quantiles: Sequence[float] = DEFAULT_QUANTILES) -> GalleryRow:
    """Pick and re-check the examples of one model in ``norm``.

    ``x``, ``y``: the test split (all points; shards hold indices into it); ``shards``: the
    loaded attack shards (:func:`robcurves.shards.load_attack_shard`) of this model and norm.
    """
    from robcurves.adversarial import verify_witnesses

    norm = parse_norm(norm).name
    idx = np.concatenate([s["indices"] for s in shards]) if shards else np.zeros(0, np.int64)
    dist = np.concatenate([s["distances"] for s in shards]) if shards else np.zeros(0, np.float32)
    status = np.concatenate([s["status"] for s in shards]) if shards else np.zeros(0, str)
    row = GalleryRow(label, norm, (float(bounds[0]), float(bounds[1])), n_points=len(idx),
                     n_broken=int(np.sum((status.astype(str) == "adversarial") & np.isfinite(dist))))
    picks = quantile_points(dist, status, quantiles)
    if not picks:
        return row
    offsets = np.cumsum([0] + [len(s["indices"]) for s in shards])
    x_adv = []
    for _, p in picks:
        k = int(np.searchsorted(offsets, p, side="right") - 1)
        x_adv.append(shards[k]["x_adv"][p - offsets[k]])
    x_adv = np.stack(x_adv).astype(np.float32)
    pts = idx[[p for _, p in picks]]
    x0, y0 = x[pts], y[pts]

    def logits_fn(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model(np.asarray(batch, np.float32), training=False), np.float32)

    ok, d, xc = verify_witnesses(logits_fn, x0, x_adv, y0, norm, bounds)
    classes = np.argmax(logits_fn(xc), axis=1)
    for (q, _), i, good, dd, xa, c in zip(picks, range(len(picks)), ok, d, xc, classes):
        row.examples.append(Example(q, int(pts[i]), int(y0[i]), int(c), float(dd), x0[i], xa, bool(good)))
    return row


def _display(img: np.ndarray, bounds: tuple[float, float]) -> tuple[np.ndarray, dict]:
    """An NHWC point as something ``imshow`` draws: grey or RGB in [0, 1]; tabular as a strip."""
    lo, hi = bounds
    a = (np.asarray(img, np.float64) - lo) / (hi - lo)
    h, w, c = a.shape
    if c == 3:
        return np.clip(a, 0, 1), {}
    if c == 1:
        return a[..., 0], {"cmap": IMAGE_CMAP, "vmin": 0.0, "vmax": 1.0}
    return a.reshape(1, -1), {"cmap": IMAGE_CMAP, "vmin": 0.0, "vmax": 1.0, "aspect": "auto"}


def _display_delta(delta: np.ndarray) -> tuple[np.ndarray, dict]:
    """A perturbation on a diverging scale, symmetric about 0 (RGB: 0.5 + delta / (2 max|delta|))."""
    m = float(np.max(np.abs(delta))) or 1.0
    h, w, c = delta.shape
    if c == 3:
        return np.clip(0.5 + delta / (2 * m), 0, 1), {}
    a = delta[..., 0] if c == 1 else delta.reshape(1, -1)
    return a, {"cmap": DIVERGING_CMAP, "vmin": -m, "vmax": m, **({"aspect": "auto"} if c != 1 else {})}


def plot_gallery(rows: Sequence[GalleryRow], out_paths: Sequence[str | os.PathLike], title: str = "",
                 quantiles: Sequence[float] = DEFAULT_QUANTILES, class_names: dict[str, list[str]] | None = None
                 ) -> dict[str, Any]:
    """Draw the gallery: one row per (model, norm), per quantile the clean point, the verified
    adversarial example and the perturbation. Writes every path atomically; returns what it drew."""
    if not rows:
        raise ValueError("gallery: nothing to draw")
    nq = len(quantiles)
    fig, axes = plt.subplots(len(rows), 3 * nq, figsize=(1.25 * 3 * nq + 1.2, 1.45 * len(rows) + 0.8),
                             squeeze=False)
    drawn = []
    for r, row in enumerate(rows):
        norm = parse_norm(row.norm)
        by_q = {e.quantile: e for e in row.examples}
        for j, q in enumerate(quantiles):
            ax_x, ax_a, ax_d = axes[r][3 * j: 3 * j + 3]
            e = by_q.get(float(q))
            for ax in (ax_x, ax_a, ax_d):
                ax.set_xticks([])
                ax.set_yticks([])
            if r == 0:
                ax_a.set_title(f"quantile {q:g} of the distance\nclean | adversarial | perturbation", fontsize=7)
            if e is None:
                ax_a.text(0.5, 0.5, "no adversarial\nexample found" if not row.n_broken else "-",
                          ha="center", va="center", fontsize=7, transform=ax_a.transAxes)
                for ax in (ax_x, ax_a, ax_d):
                    ax.axis("off")
                continue
            img, kw = _display(e.x, row.bounds)
            ax_x.imshow(img, **kw)
            ax_x.set_xlabel(f"test #{e.index}, class {e.label}", fontsize=6)
            if e.verified:
                img, kw = _display(e.x_adv, row.bounds)
                ax_a.imshow(img, **kw)
                ax_a.set_xlabel(f"{norm.label} {e.distance:.3g} → class {e.adv_class}", fontsize=6)
                img, kw = _display_delta(np.asarray(e.x_adv, np.float64) - np.asarray(e.x, np.float64))
                ax_d.imshow(img, **kw)
            else:  # never drawn as adversarial: the check on the model rejected it
                ax_a.text(0.5, 0.5, "not verified", ha="center", va="center", fontsize=7, transform=ax_a.transAxes)
                ax_d.axis("off")
            drawn.append({"model": row.model, "norm": row.norm, "quantile": e.quantile, "index": e.index,
                          "distance": e.distance, "label": e.label, "adv_class": e.adv_class,
                          "verified": e.verified})
        axes[r][0].set_ylabel(f"{row.model}\n{norm.label} ({row.n_broken}/{row.n_points} broken)", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97 if title else 1))
    save_figure(fig, out_paths)
    return {"examples": drawn}


def gallery_figure(entries: Sequence[dict[str, Any]], out_paths: Sequence[str | os.PathLike], title: str = "",
                   quantiles: Sequence[float] = DEFAULT_QUANTILES) -> dict[str, Any]:
    """The workflow's gallery of one figure entry.

    ``entries``: per model, ``{"label", "model" (path of model.keras), "data" (test.npz),
    "shards": {norm: [shard paths]}}``. Models are loaded with their sidecars; the input
    box is the sidecar's ``bounds``.
    """
    from robcurves import models
    from robcurves.data import load_dataset
    from robcurves.stages import model_bounds
    from robcurves.shards import load_attack_shard

    rows = []
    for e in entries:
        model, sidecar = models.load_model(e["model"])
        test = load_dataset(e["data"], verify=False)
        for norm, paths in e["shards"].items():
            shards = [load_attack_shard(p) for p in paths]
            rows.append(gallery_row(model, e["label"], norm, test.x, test.y, shards, model_bounds(sidecar), quantiles))
    return plot_gallery(rows, out_paths, title=title, quantiles=quantiles)
