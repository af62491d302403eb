"""The two tiling drivers of the search, independent of how a tile's distances are computed.

- :func:`symmetric_scan` visits every pair once (``d(i, j) = d(j, i)``), row tiles in
  worker threads, with tiles that give exact distances (linf, l1);
- :func:`ranked_scan` visits every ordered pair, with tiles that give an exact distance or
  an approximation with a rigorous error bound (l2 by GEMM); every pair that the bound
  cannot rule out is recomputed directly (:func:`pair_distances`).

Both merge through :class:`robcurves.scale.merge.Best`, so the result does not depend
on the order of the tiles.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Sequence

import numpy as np

from robcurves.norms import parse_norm
from robcurves.scale.merge import Best, kind_masks, masked, row_min
from robcurves.scale.neighbours import KINDS

EPS64 = np.finfo(np.float64).eps / 2  # unit roundoff u = 2^-53


def gemm_error_factor(d: int) -> float:
    """``gamma`` with ``|fl(|a|^2 + |b|^2 - 2 a.b) - |a - b|^2| <= gamma * (|a| + |b|)^2`` in ``d``
    dimensions: ``gamma ~ (d + 3) u``, doubled for safety (blocked/FMA summation orders stay
    within this bound)."""
    return 2.0 * (d + 3) * EPS64 / (1.0 - (d + 3) * EPS64)


def pair_distances(x2: np.ndarray, rows: np.ndarray, cols: np.ndarray, norm: str) -> np.ndarray:
    """Direct float64 distances ``||x2[rows] - x2[cols]||`` in ``norm``, in bounded chunks."""
    p = parse_norm(norm)
    out = np.empty(len(rows), dtype=np.float64)
    step = max(1, (8 * 2**20) // max(1, x2.shape[1]))
    for s in range(0, len(rows), step):
        diff = x2[rows[s:s + step]].astype(np.float64) - x2[cols[s:s + step]].astype(np.float64)
        np.abs(diff, out=diff)
        if math.isinf(p.p):
            out[s:s + step] = diff.max(axis=1)
        elif p.p == 1.0:
            out[s:s + step] = diff.sum(axis=1)
        else:
            out[s:s + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def scan_progress(report: "Callable[[str], None] | bool | None", label: str, total: float):
    """A :class:`robcurves.progress.Progress` over ``total`` point pairs for one scan (or None)."""
    if not report:
        return None
    from robcurves.progress import Progress

    return Progress(int(total), label, unit="pairs", log=report if callable(report) else None, every_s=10.0)


def symmetric_scan(
    order: np.ndarray, ys: np.ndarray, norms: Sequence[str], row_block: int, col_block: int,
    threads: int, row_setup: Callable[[int, int], Any],
    tile: Callable[[Any, int, int], dict[str, np.ndarray]], progress=None,
) -> dict[str, dict[str, Best]]:
    """Every pair once: row tile ``[r0, r1)`` against columns ``[r0, n)``, both sides updated.

    Positions are in the (possibly reordered) scan order; ``order`` maps them to original
    indices and ``ys`` holds the labels in scan order. ``row_setup(r0, r1)`` prepares a
    row tile (per worker thread); ``tile(ctx, c0, c1)`` returns exact distances (or a
    strictly monotone function of them) per norm for that row tile against ``[c0, c1)``.
    Merging is lexicographic in (distance, original index), hence order-free.
    ``progress``: a callable for plain progress lines (or True for stderr), one per tile
    block at most every 10 s, in point pairs.
    """
    from concurrent.futures import ThreadPoolExecutor

    n = len(order)
    bar = scan_progress(progress, f"nearest {'+'.join(norms)}", n * (n + 1) / 2)
    lock = threading.Lock()
    next_block = iter(range(0, n, row_block))
    per_thread: list[dict[str, dict[str, Best]]] = []

    def work() -> None:
        best = {k: {nm: Best(n) for nm in norms} for k in KINDS}
        with lock:
            per_thread.append(best)
        while True:
            with lock:
                r0 = next(next_block, None)
            if r0 is None:
                return
            r1 = min(n, r0 + row_block)
            ctx = row_setup(r0, r1)
            ia = order[r0:r1]
            for c0 in range(r0, n, col_block):
                c1 = min(n, c0 + col_block)
                ib = order[c0:c1]
                masks = kind_masks(ys[r0:r1], ys[c0:c1], ia, ib, c0 < r1)
                for nm, dist in tile(ctx, c0, c1).items():
                    for kind in KINDS:
                        dm = masked(dist, masks[kind])
                        if dm is None:
                            continue
                        v, i = row_min(dm, ib, axis=1)  # rows: neighbours among columns
                        best[kind][nm].update(ia, v, i)
                        v, i = row_min(dm, ia, axis=0)  # columns: neighbours among rows
                        best[kind][nm].update(ib, v, i)
            if bar is not None:
                with lock:  # the pairs of this row block: itself (upper triangle) and the columns after it
                    bar.update((r1 - r0) * (n - r1) + (r1 - r0) * (r1 - r0 + 1) / 2)

    n_workers = max(1, min(threads, (n + row_block - 1) // row_block))
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for f in [pool.submit(work) for _ in range(n_workers)]:
            f.result()  # re-raises a worker's exception here
    if bar is not None:
        bar.close()
    out = per_thread[0]
    for other in per_thread[1:]:
        for kind in KINDS:
            for nm in norms:
                out[kind][nm].merge(other[kind][nm])
    return out


def ranked_scan(
    x2: np.ndarray,
    y: np.ndarray,
    norm: str,
    tile_fn: Callable[[int, int, int, int], np.ndarray],
    slack_fn: Callable[[int, int], np.ndarray] | None,
    row_block: int,
    col_block: int,
    progress=None,
) -> dict[str, Best]:
    """Scan all (row tile, column tile) pairs; ``tile_fn`` gives a ranking value per pair.

    If ``slack_fn`` is None the ranking value *is* the exact distance. Otherwise it is an
    approximation of a monotone function of the distance (for l2: the squared distance)
    with absolute error at most ``slack_fn(r0, r1)`` per row; every pair whose
    approximation lies within twice that of the row's running minimum is recomputed
    directly, so no pair that might be the nearest one is passed over. ``progress`` as
    for :func:`symmetric_scan` (ordered pairs here: every pair is seen from both sides).
    """
    n = len(y)
    bar = scan_progress(progress, f"nearest {norm}", n * n)
    best = {k: Best(n) for k in KINDS}
    approx_min = {k: np.full(n, np.inf) for k in KINDS}
    idx_all = np.arange(n)
    for r0 in range(0, n, row_block):
        r1 = min(n, r0 + row_block)
        ia = idx_all[r0:r1]
        slack = None if slack_fn is None else 2.0 * slack_fn(r0, r1)
        for c0 in range(0, n, col_block):
            c1 = min(n, c0 + col_block)
            ib = idx_all[c0:c1]
            rank = tile_fn(r0, r1, c0, c1)
            masks = kind_masks(y[r0:r1], y[c0:c1], ia, ib, c0 < r1 and r0 < c1)
            for kind in KINDS:
                dm = masked(rank, masks[kind])
                if dm is None:
                    continue
                if slack is None:
                    v, i = row_min(dm, ib)
                    best[kind].update(ia, v, i)
                    continue
                am = approx_min[kind][r0:r1]
                np.minimum(am, dm.min(axis=1), out=am)
                thr = np.where(np.isinf(am), -np.inf, am + slack)  # no finite pair yet: none
                rr, cc = np.nonzero(dm <= thr[:, None])
                if len(rr) == 0:
                    continue
                rows, cols = ia[rr], ib[cc]
                exact = pair_distances(x2, rows, cols, norm)
                o = np.lexsort((cols, exact, rows))
                rows, cols, exact = rows[o], cols[o], exact[o]
                first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
                best[kind].update(rows[first], exact[first], cols[first])
        if bar is not None:
            bar.update((r1 - r0) * n)
    if bar is not None:
        bar.close()
    return best
