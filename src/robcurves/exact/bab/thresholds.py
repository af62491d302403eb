"""Robust or not at fixed thresholds: certified intervals of the robust error, for many points.

For each point and each threshold ``eps`` (in one norm) the answer is

- ``"not_robust"``: a verified witness (or the point itself, misclassified) counts at
  ``eps`` by the project's convention (:func:`robcurves.curves.count_at_most`: its float32
  distance is at most ``float32(eps)``);
- ``"robust"``: proven for the float32 model: no float32 input whose float32 distance is at
  most ``float32(eps)`` is adversarial (the real radius proven is
  :func:`robcurves.exact.bab.rounding.radius_for_threshold` of it);
- ``"unknown"``: neither within the time given.

The robust error ``R(eps)`` then lies in ``[#not_robust, n - #robust] / n``: a certified
interval (it covers what the attack curve can only bound from below).

Cheap first, for all points together: the attack's witnesses, then CROWN at the root for
every (point, class) row in shared batches (:meth:`BoundEngine.root_bounds_batch`), then
alpha-CROWN for the rows of the points CROWN leaves open,
then branch and bound (:class:`robcurves.exact.bab.domains.Query`) only for the pairs left,
each with ``time_limit`` seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from robcurves.adversarial import is_adversarial
from robcurves.exact.bab import rounding
from robcurves.exact.bab.bounds import BoundEngine, InputBall, RootGroup
from robcurves.exact.bab.domains import BabSettings, Query
from robcurves.exact.bab.network import bound_graph
from robcurves.exact.bab.search import WitnessChecker
from robcurves.norms import parse_norm

THRESHOLD_VERDICTS = ("robust", "not_robust", "unknown")


@dataclass
class ThresholdResults:
    """Answers per point and threshold (``status`` (n, m) strings) in the norm ``norm``."""

    norm: str
    eps: np.ndarray  # (m,)
    index: np.ndarray  # (n,)
    status: np.ndarray  # (n, m)
    upper: np.ndarray  # (n,) float32 distance of the closest verified witness (inf without one)
    solve_time: np.ndarray  # (n,) seconds
    info: dict = field(default_factory=dict)

    def robust_error_interval(self) -> np.ndarray:
        """``(m, 2)``: certified [lower, upper] robust error per threshold (fractions)."""
        n = len(self.index)
        lo = np.sum(self.status == "not_robust", axis=0) / n
        hi = (n - np.sum(self.status == "robust", axis=0)) / n
        return np.stack([lo, hi], axis=1)

    def to_json(self) -> dict:
        iv = self.robust_error_interval()
        return {"norm": self.norm, "eps": self.eps.tolist(), "n": int(len(self.index)),
                "robust_error_interval": iv.tolist(),
                "counts": {s: np.sum(self.status == s, axis=0).tolist() for s in THRESHOLD_VERDICTS},
                "points": [{"index": int(i), "status": list(map(str, s)),
                            "upper": (float(u) if math.isfinite(u) else None), "solve_time": float(t)}
                           for i, s, u, t in zip(self.index, self.status, self.upper, self.solve_time)],
                "meta": self.info}


def union_robust_error_interval(results: Sequence[ThresholdResults], col: Sequence[int] | None = None) -> tuple:
    """Certified [lower, upper] robust error of the union of the threat models: a point counts
    if it is not robust in *some* norm (at that norm's threshold ``results[j].eps[col[j]]``)."""
    col = list(col) if col is not None else [0] * len(results)
    idx = results[0].index
    for r in results[1:]:
        if not np.array_equal(r.index, idx):
            raise ValueError("bab: union over results of different points")
    st = np.stack([r.status[:, c] for r, c in zip(results, col)], axis=1)
    n = len(idx)
    return int(np.sum(np.any(st == "not_robust", axis=1))) / n, (n - int(np.sum(np.all(st == "robust", axis=1)))) / n


def robust_at_thresholds(model, x: np.ndarray, y: np.ndarray, norm, eps: Sequence[float],
                         attack_distances: np.ndarray | None = None, x_adv: np.ndarray | None = None,
                         time_limit: float = 10.0, indices: Sequence[int] | None = None,
                         bounds: Sequence[float] = (0.0, 1.0), settings: BabSettings | None = None,
                         batch: int = 64, progress: Callable[[str], None] | None = None,
                         net=None) -> ThresholdResults:
    """Robust / not robust / unknown for every point of ``x`` (NHWC) at every ``eps`` (in ``norm``).

    ``attack_distances``/``x_adv``: the attack's results (re-verified here). ``time_limit``:
    seconds of branch and bound per (point, threshold) that the root bounds leave open.
    """
    from robcurves.exact.bab.solve import logits_function

    t_all = time.perf_counter()
    norm = parse_norm(norm)
    notes = rounding.check_float32_kernels()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    eps = np.asarray(sorted(float(e) for e in eps), dtype=np.float64)
    n, m = len(x), len(eps)
    graph = bound_graph(net if net is not None else model, tuple(bounds))
    engine = BoundEngine(graph, norm)
    logits_fn = logits_function(model)
    checker = WitnessChecker(logits_fn, x.shape[1:], norm, graph.bounds)
    indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    status = np.full((n, m), "unknown", dtype="U16")
    upper = np.full(n, np.inf)
    times = np.zeros(n)
    clean = np.concatenate([logits_fn(x[i:i + 1024]) for i in range(0, n, 1024)]) if n else np.zeros((0, 1))
    mis = is_adversarial(clean, y)
    upper[mis] = 0.0
    if attack_distances is not None and x_adv is not None:
        ok, dist, _ = verify_witnesses_batched(checker, x, x_adv, y)
        upper = np.where(ok & ~mis, np.minimum(upper, dist), upper)

    def settle_witnesses():
        for j, e in enumerate(eps):
            status[count_le(upper, e), j] = "not_robust"

    settle_witnesses()
    stats = {"root_proven": [0] * m, "root_crown_proven": [0] * m, "bab_proven": [0] * m, "bab_witness": [0] * m}
    for j in range(m - 1, -1, -1):  # largest threshold first: a proof there holds below it
        e32 = float(np.float32(eps[j]))
        r = rounding.radius_for_threshold(e32, norm.name, graph.n_inputs)
        todo = np.flatnonzero(status[:, j] == "unknown")
        kept = {}  # root bounds of the points the root leaves open, by point
        # Root: CROWN, then alpha-CROWN where CROWN leaves a point open, rows in shared batches.
        for s in range(0, len(todo), batch):
            pts = todo[s:s + batch]
            t0 = time.perf_counter()
            roots = engine.root_bounds_batch([InputBall.make(x[i].reshape(-1), norm, r, graph.bounds) for i in pts])
            rows_p, rows_c = [], []
            for a, i in enumerate(pts):
                for k in range(graph.n_classes):
                    if k != y[i]:
                        rows_p.append(a)
                        rows_c.append(k)
            rows_p = np.array(rows_p)
            C = np.zeros((len(rows_p), graph.n_classes))
            C[np.arange(len(rows_p)), y[pts][rows_p]] = 1.0
            C[np.arange(len(rows_p)), rows_c] -= 1.0
            # CROWN first: alpha's ascent starts from CROWN's slopes and keeps the best iterate,
            # so a point CROWN proves alpha proves too; alpha only runs for the others.
            lb0 = engine.bound(RootGroup(roots, rows_p), engine.output, C)
            crown = np.array([np.all(lb0[rows_p == a] > 0) for a in range(len(pts))])
            proven = crown.copy()
            open_rows = np.flatnonzero(~proven[rows_p])
            xs = np.zeros((len(rows_p), graph.n_inputs))
            if len(open_rows):
                open_pts = np.flatnonzero(~proven)
                sub = RootGroup([roots[a] for a in open_pts], np.searchsorted(open_pts, rows_p[open_rows]))
                lb, _, _, xs_o, _ = engine.optimise(sub, engine.output, C[open_rows], iters=20, stop_at=0.0, full=True)
                xs[open_rows] = xs_o
                for a in open_pts:
                    proven[a] = np.all(lb[rows_p[open_rows] == a] > 0)
            stats["root_crown_proven"][j] += int(crown.sum())
            for a, i in enumerate(pts):
                if proven[a]:
                    status[i, : j + 1] = "robust"
                    stats["root_proven"][j] += 1
                else:
                    kept[i] = roots[a]  # branch and bound starts from these bounds
            # The bound minimisers are attack candidates.
            for a, i in enumerate(pts):
                if proven[a]:
                    continue
                cand = xs[rows_p == a]
                ok, dist, xc = checker.verify(x[i], int(y[i]), cand)
                if ok.any():
                    upper[i] = min(upper[i], float(dist[ok].min()))
            times[pts] += (time.perf_counter() - t0) / max(len(pts), 1)
        settle_witnesses()
        # Branch and bound for what is left.
        for i in np.flatnonzero(status[:, j] == "unknown"):
            t0 = time.perf_counter()
            root = kept.pop(i, None) or engine.root_bounds(InputBall.make(x[i].reshape(-1), norm, r, graph.bounds))
            q = Query(engine, root, int(y[i]), logits_fn, x.shape[1:], settings or BabSettings())
            res = q.run([k for k in range(graph.n_classes) if k != y[i]], time.perf_counter() + time_limit)
            if res.robust:
                status[i, : j + 1] = "robust"
                stats["bab_proven"][j] += 1
            elif res.witness is not None:
                got = checker.shrink(x[i], int(y[i]), res.witness)
                if got is not None:
                    upper[i] = min(upper[i], got[1])
                    stats["bab_witness"][j] += 1
            times[i] += time.perf_counter() - t0
            settle_witnesses()
        if progress is not None:
            c = {s_: int(np.sum(status[:, j] == s_)) for s_ in THRESHOLD_VERDICTS}
            progress(f"thresholds {norm.name} eps {eps[j]:g}: {c} ({time.perf_counter() - t_all:.0f} s so far)")
    info = {"float32_checks": notes, "stats": stats, "seconds": time.perf_counter() - t_all,
            "time_limit": time_limit, "misclassified": int(mis.sum())}
    return ThresholdResults(norm.name, eps, indices, status, upper, times, info)


def count_le(distances: np.ndarray, eps: float) -> np.ndarray:
    """Mask of the distances that count at ``eps``: ``float32(d) <= float32(eps)``, finite ``d``
    (the convention of :func:`robcurves.curves.count_at_most`, elementwise)."""
    d = np.asarray(distances, dtype=np.float64)
    fin = np.isfinite(d)
    with np.errstate(over="ignore"):
        d32 = np.where(fin, d, 0.0).astype(np.float32)
    return fin & (d32 <= np.float32(eps))


def verify_witnesses_batched(checker: WitnessChecker, x: np.ndarray, x_adv: np.ndarray, y: np.ndarray):
    """The attack's examples re-checked on the float32 model, in batches."""
    from robcurves.adversarial import verify_witnesses

    oks, dists = [], []
    for s in range(0, len(x), 1024):
        ok, dist, _ = verify_witnesses(checker.logits_fn, x[s:s + 1024], x_adv[s:s + 1024], y[s:s + 1024],
                                       checker.norm, checker.bounds)
        oks.append(ok)
        dists.append(dist)
    return np.concatenate(oks), np.concatenate(dists).astype(np.float64), None
