"""Exact nearest-neighbour distances within and between classes, in linf, l2 and l1.

For every point ``x_i`` of a labelled set this module finds

- the nearest point of *another* class (the inter-class distance, Table 2 and Figure 5
  of Risse et al., ICLR 2021), and
- the nearest *other* point of the *same* class (the intra-class distance),

in each requested norm, together with the index of that neighbour.

Exactness. Two arithmetic paths, both exact:

- *Grid data* (every value is an integer over 255, e.g. 8-bit images, or over 16, e.g.
  scikit-learn's digits; detected automatically, see ``grid``): the integers are used.
  linf and l1 are computed in int16/int64, l2 as a float64 GEMM whose partial sums are
  all integers below 2^53, so every distance is exact for the quantised data and is
  reported as ``integer distance / scale`` (``sqrt(integer) / scale`` for l2). These
  differ from arithmetic on the float32 copies (k/255 rounded) by < 1e-6 relative.
- *Other data*: linf and l1 are computed directly in float64. l2 pairs are ranked by a
  float64 GEMM (``|a|^2 + |b|^2 - 2 a.b``); every pair that a rigorous bound on the GEMM's
  rounding error cannot rule out is recomputed directly, so the neighbour is the true
  nearest one and its distance is exact up to float64 rounding.

Ties. Among neighbours at exactly the same distance the one with the smallest index
wins. Exact duplicates of ``x_i`` are neighbours at distance 0; duplicates with a
*different* label are also listed in :attr:`NearestNeighbours.duplicate_pairs`.

Edge cases. A point whose class has no other member has intra-class distance ``+inf``
and index ``-1``; if the set has a single class, every inter-class distance is ``+inf``
with index ``-1``. ``N = 1`` is allowed (both are ``+inf``). ``N = 0``, labels of the
wrong shape and NaN/inf features raise ``ValueError``.

Cost and memory. Work is done in tiles of at most ``block_size`` points per side; no
``N x N`` matrix is ever built. Memory beyond the input is an int16 copy (grid data),
O(threads x block_size x d) for tiles and O(N) for the results, so N = 98,179 points of
12,288 dimensions (Tiny-ImageNet) fit in about 3 times the data's float32 size.
linf and l1 share one pass over the pairs, visit each pair once (``d(i, j) = d(j, i)``),
skip per tile the dimensions that are constant over the tile's 64 rows (for images: the
blank border) and run in ``threads`` worker threads (NumPy releases the GIL). l2 uses
BLAS with ``threads`` threads. With a visible GPU the tiles are computed by TensorFlow
(XLA-compiled; float32 on grid integers, else float64; TF32 switched off).
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from robcurves.atomic import save_npz
from robcurves.norms import parse_norm

KINDS = ("inter", "intra")
_NO_INDEX = np.iinfo(np.int64).max  # placeholder while merging; becomes -1 at the end
_EPS64 = np.finfo(np.float64).eps / 2  # unit roundoff u = 2^-53
_TILE_BYTES = 64 * 2**20  # target size of one float64 column tile (block_size x d)
_ELEM_ROWS = 64  # rows per linf/l1 tile: few enough to share blank dimensions (measured)
_TF_JIT_ON_CPU = False  # tests set this to run the GPU's XLA-compiled tile on the CPU


@dataclass
class NearestNeighbours:
    """Per-point nearest inter- and intra-class neighbours, per norm.

    ``distance[kind][norm]`` is a float64 array of shape ``(N,)`` (``kind`` is ``"inter"``
    or ``"intra"``, ``norm`` is ``"linf"``, ``"l2"`` or ``"l1"``), measured in that norm
    on the flattened inputs; ``+inf`` where no such neighbour exists.
    ``index[kind][norm]`` is the int64 index of the neighbour, ``-1`` where none exists.
    ``duplicate_pairs`` is an ``(K, 2)`` int64 array of index pairs ``i < j`` whose
    features are identical but whose labels differ.
    """

    y: np.ndarray
    norms: tuple[str, ...]
    distance: dict[str, dict[str, np.ndarray]]
    index: dict[str, dict[str, np.ndarray]]
    duplicate_pairs: np.ndarray
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_classes(self) -> int:
        return int(len(np.unique(self.y)))

    def inter(self, norm: str) -> np.ndarray:
        """Nearest other-class distance of every point, in ``norm``."""
        return self.distance["inter"][parse_norm(norm).name]

    def intra(self, norm: str) -> np.ndarray:
        """Nearest same-class distance of every point (itself excluded), in ``norm``."""
        return self.distance["intra"][parse_norm(norm).name]

    @property
    def n_duplicate_points(self) -> int:
        """Number of points that have an exact duplicate with another label."""
        return int(len(np.unique(self.duplicate_pairs))) if self.duplicate_pairs.size else 0


# ----------------------------------------------------------------------------- inputs


def validate_inputs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Flatten ``x`` to ``(N, d)`` float32 and check ``y``; raise ``ValueError`` if bad.

    ``x`` is an NHWC array (as in :class:`robcurves.data.Dataset`) or any ``(N, ...)``
    array; ``y`` holds one integer label per point.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1:
        raise ValueError(f"x must have a leading point axis, got a scalar of shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("x holds no points (N = 0)")
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels y must have shape ({n},) to match x {x.shape}, got {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"labels y must be integers, got dtype {y.dtype}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"x must be numeric, got dtype {x.dtype}")
    x2 = np.ascontiguousarray(x.reshape(n, -1), dtype=np.float32)
    if x2.shape[1] == 0:
        raise ValueError(f"x has no features: shape {x.shape}")
    step = max(1, (16 * 2**20) // x2.shape[1])
    for r in range(0, n, step):  # in chunks: no N x d temporary
        bad = ~np.isfinite(x2[r:r + step])
        if bad.any():
            first = r + int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"x contains NaN or infinite values, first in the point at index {first}")
    return x2, y.astype(np.int64), tuple(int(s) for s in x.shape[1:])


def cross_class_duplicates(x2: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of identical feature vectors with different labels.

    ``x2`` is ``(N, d)``; comparison is exact on float32 values (-0.0 equals 0.0).
    Rows are hashed (BLAKE2b, 8 bytes) and equal hashes are confirmed by comparing values.
    """
    import hashlib

    n = len(x2)
    digests = np.empty(n, dtype=np.uint64)
    step = max(1, (2 * 2**20) // max(1, x2.shape[1]))
    for r in range(0, n, step):
        chunk = np.ascontiguousarray(x2[r:r + step], dtype=np.float32) + np.float32(0.0)
        for i, row in enumerate(chunk):
            digests[r + i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
    _, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
    pairs = []
    for g in np.flatnonzero(counts > 1):
        by_value: dict[bytes, list[int]] = {}  # equal digests: confirm on the values
        for m in np.flatnonzero(inverse == g):
            by_value.setdefault((x2[m] + np.float32(0.0)).tobytes(), []).append(int(m))
        for members in map(np.asarray, by_value.values()):
            if len(members) < 2 or np.all(y[members] == y[members[0]]):
                continue
            i, j = np.triu_indices(len(members), k=1)
            keep = y[members[i]] != y[members[j]]
            pairs.append(np.stack([members[i][keep], members[j][keep]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    out = np.concatenate(pairs).astype(np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


# ----------------------------------------------------------------------------- merging


class _Best:
    """Running nearest neighbour (value, index) per point, for one norm and one kind.

    Updates are lexicographic in (distance, index), so the result does not depend on the
    order in which tiles arrive.
    """

    def __init__(self, n: int):
        self.value = np.full(n, np.inf)
        self.index = np.full(n, _NO_INDEX, dtype=np.int64)

    def update(self, at: np.ndarray | slice, value: np.ndarray, index: np.ndarray) -> None:
        cur_v, cur_i = self.value[at], self.index[at]
        better = (value < cur_v) | ((value == cur_v) & (index < cur_i))
        if better.any():
            cur_v[better] = value[better]
            cur_i[better] = index[better]
            self.value[at], self.index[at] = cur_v, cur_i

    def merge(self, other: "_Best") -> None:
        self.update(slice(None), other.value, other.index)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        idx = np.where(np.isinf(self.value), -1, self.index)
        return self.value.copy(), idx.astype(np.int64)


def _row_min(d: np.ndarray, col_index: np.ndarray, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Minimum along ``axis`` and the smallest ``col_index`` that attains it."""
    m = d.min(axis=axis)
    hit = d == (m[:, None] if axis == 1 else m[None, :])
    ci = col_index[None, :] if axis == 1 else col_index[:, None]
    idx = np.where(hit, ci, _NO_INDEX).min(axis=axis)
    return m, idx


def _kind_masks(ya: np.ndarray, yb: np.ndarray, ia: np.ndarray, ib: np.ndarray, overlap: bool):
    """Masks of the inter and intra pairs of a tile: an array, or True (all) / False (none).

    ``overlap`` says whether the row and column tiles may share points (self pairs).
    """
    same = ya[:, None] == yb[None, :]
    n_same = int(same.sum())
    if n_same == 0:
        return {"inter": True, "intra": False}
    if overlap:
        intra = same & (ia[:, None] != ib[None, :])
    else:
        intra = True if n_same == same.size else same
    inter = False if n_same == same.size else ~same
    return {"inter": inter, "intra": intra}


def _masked(d: np.ndarray, mask) -> np.ndarray | None:
    if mask is False:
        return None
    if mask is True:
        return d
    return np.where(mask, d, np.inf)


# ----------------------------------------------------------------------------- exact pair distances


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


# ----------------------------------------------------------------------------- CPU: linf and l1

_INT_CHUNK = 128  # int16 l1 partial sums over 128 dims stay below 128 * 255 < 2^15


def grid_scale(x2: np.ndarray, scales: Sequence[int] = (255, 16)) -> int | None:
    """The ``s`` for which every value is (the float32 rounding of) an integer over ``s``.

    8-bit images scaled by 1/255 give 255, scikit-learn's digits give 16; None if the
    data are not on such a grid. Checked exactly, in row chunks to bound memory.
    """
    step = max(1, (2 * 2**20) // max(1, x2.shape[1]))
    for s in scales:
        ok = True
        for r in range(0, len(x2), step):
            v = x2[r:r + step].astype(np.float64) * s
            q = np.rint(v)
            if q.min() < 0 or q.max() > s or np.max(np.abs(v - q)) > s * 2.0**-23:
                ok = False
                break
        if ok:
            return int(s)
    return None


def _quantise(x2: np.ndarray, s: int) -> np.ndarray:
    out = np.empty(x2.shape, dtype=np.int16)
    step = max(1, (2 * 2**20) // max(1, x2.shape[1]))
    for r in range(0, len(x2), step):
        out[r:r + step] = np.rint(x2[r:r + step].astype(np.float64) * s)
    return out


def _scan_progress(report: "Callable[[str], None] | bool | None", label: str, total: float):
    """A :class:`robcurves.progress.Progress` over ``total`` point pairs for one scan (or None)."""
    if not report:
        return None
    from robcurves.progress import Progress

    return Progress(int(total), label, unit="pairs", log=report if callable(report) else None, every_s=10.0)


def _symmetric_scan(
    order: np.ndarray, ys: np.ndarray, norms: Sequence[str], row_block: int, col_block: int,
    threads: int, row_setup: Callable[[int, int], Any],
    tile: Callable[[Any, int, int], dict[str, np.ndarray]], progress=None,
) -> dict[str, dict[str, _Best]]:
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
    bar = _scan_progress(progress, f"nearest {'+'.join(norms)}", n * (n + 1) / 2)
    lock = threading.Lock()
    next_block = iter(range(0, n, row_block))
    per_thread: list[dict[str, dict[str, _Best]]] = []

    def work() -> None:
        best = {k: {nm: _Best(n) for nm in norms} for k in KINDS}
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
                masks = _kind_masks(ys[r0:r1], ys[c0:c1], ia, ib, c0 < r1)
                for nm, dist in tile(ctx, c0, c1).items():
                    for kind in KINDS:
                        dm = _masked(dist, masks[kind])
                        if dm is None:
                            continue
                        v, i = _row_min(dm, ib, axis=1)  # rows: neighbours among columns
                        best[kind][nm].update(ia, v, i)
                        v, i = _row_min(dm, ia, axis=0)  # columns: neighbours among rows
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


def _elementwise_scan(
    xs_in: np.ndarray, y: np.ndarray, norms: Sequence[str], block_size: int, threads: int,
    scale: int | None, progress=None,
) -> dict[str, dict[str, _Best]]:
    """All pairs for linf and/or l1, symmetric, in tiles of ``_ELEM_ROWS`` rows, with worker threads.

    ``xs_in`` is float32 (computed in float64) or, when ``scale`` is given, int16 grid
    values ``round(x * scale)`` (computed exactly in integers, then divided by ``scale``).
    Points are reordered by label (stable) so that a tile's rows tend to share their
    blank dimensions; results carry original indices.
    """
    order = np.argsort(y, kind="stable")
    xs = xs_in[order]
    row_block = _ELEM_ROWS
    col_block = max(row_block, block_size)
    work_dtype = np.int16 if scale is not None else np.float64
    local = threading.local()

    def row_setup(r0, r1):
        if not hasattr(local, "tmp"):
            local.tmp = np.empty((row_block, col_block), dtype=work_dtype)
        a = xs[r0:r1].astype(work_dtype)
        const = np.all(a == a[0], axis=0)
        var, cdims = np.flatnonzero(~const), np.flatnonzero(const)
        return np.ascontiguousarray(a[:, var].T), a[0, cdims], var, cdims, local.tmp

    def tile(ctx, c0, c1):
        a_t, a_const, var, cdims, tmp = ctx
        return _tile_elementwise(a_t, a_const, xs[c0:c1], var, cdims, norms, tmp, scale)

    return _symmetric_scan(order, y[order], norms, row_block, col_block, threads, row_setup, tile, progress)


def _tile_elementwise(a_t, a_const, b, var, cdims, norms, tmp, scale) -> dict[str, np.ndarray]:
    """linf and/or l1 distances (float64) of a row tile (``a_t``: var-dims x rows) to ``b``.

    Dimensions constant over the row tile contribute ``|c_k - b_jk|`` independently of
    the row, so they are reduced once per column instead of once per pair. On the int16
    grid every operation is exact; l1 is accumulated in int16 over chunks of
    ``_INT_CHUNK`` dimensions and flushed into int64.
    """
    nr, nc = a_t.shape[1], len(b)
    want_inf, want_1 = "linf" in norms, "l1" in norms
    grid = scale is not None
    acc1 = np.int64 if grid else np.float64
    base_inf = np.zeros(nc, dtype=acc1)
    base_1 = np.zeros(nc, dtype=acc1)
    if len(cdims):
        step = max(1, (8 * 2**20) // max(1, nc))
        for s in range(0, len(cdims), step):
            bb = b[:, cdims[s:s + step]].astype(acc1)
            diff = np.abs(bb - a_const[s:s + step].astype(acc1))
            if want_inf:
                np.maximum(base_inf, diff.max(axis=1), out=base_inf)
            if want_1:
                base_1 += diff.sum(axis=1)
    t = tmp[:nr, :nc]
    d_inf = np.empty_like(t) if want_inf else None
    if want_inf:
        d_inf[:] = base_inf[None, :]  # fits: |c_k - b_jk| <= scale on the grid
    d_1 = np.repeat(base_1[None, :], nr, axis=0) if want_1 else None
    part = np.zeros_like(t) if (want_1 and grid) else None
    if len(var):
        b_t = np.ascontiguousarray(b[:, var].T, dtype=t.dtype)
        for k in range(len(var)):
            np.subtract(a_t[k][:, None], b_t[k][None, :], out=t)
            np.abs(t, out=t)
            if want_inf:
                np.maximum(d_inf, t, out=d_inf)
            if want_1:
                if grid:
                    np.add(part, t, out=part)
                    if k % _INT_CHUNK == _INT_CHUNK - 1:
                        d_1 += part
                        part[:] = 0
                else:
                    np.add(d_1, t, out=d_1)
        if want_1 and grid:
            d_1 += part
    out = {}
    if want_inf:
        out["linf"] = d_inf / scale if grid else d_inf
    if want_1:
        out["l1"] = d_1 / scale if grid else d_1
    return out


# ----------------------------------------------------------------------------- l2 (and GPU tiles)


def _ranked_scan(
    x2: np.ndarray,
    y: np.ndarray,
    norm: str,
    tile_fn: Callable[[int, int, int, int], np.ndarray],
    slack_fn: Callable[[int, int], np.ndarray] | None,
    row_block: int,
    col_block: int,
    progress=None,
) -> dict[str, _Best]:
    """Scan all (row tile, column tile) pairs; ``tile_fn`` gives a ranking value per pair.

    If ``slack_fn`` is None the ranking value *is* the exact distance. Otherwise it is an
    approximation of a monotone function of the distance (for l2: the squared distance)
    with absolute error at most ``slack_fn(r0, r1)`` per row; every pair whose
    approximation lies within twice that of the row's running minimum is recomputed
    directly, so no pair that might be the nearest one is passed over. ``progress`` as
    for :func:`_symmetric_scan` (ordered pairs here: every pair is seen from both sides).
    """
    n = len(y)
    bar = _scan_progress(progress, f"nearest {norm}", n * n)
    best = {k: _Best(n) for k in KINDS}
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
            masks = _kind_masks(y[r0:r1], y[c0:c1], ia, ib, c0 < r1 and r0 < c1)
            for kind in KINDS:
                dm = _masked(rank, masks[kind])
                if dm is None:
                    continue
                if slack is None:
                    v, i = _row_min(dm, ib)
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


def _l2_scan_numpy(x2: np.ndarray, y: np.ndarray, block_size: int, q: np.ndarray | None = None,
                   scale: int | None = None, progress=None) -> dict[str, _Best]:
    """l2 by float64 GEMM tiles.

    On the integer grid (``q``, ``scale``) the GEMM is exact (every partial sum is an
    integer below 2^53), so squared distances rank exactly and the result is
    ``sqrt(integer) / scale``. Otherwise candidates are re-checked directly.
    """
    n, d = x2.shape
    src = x2 if q is None else q
    src64 = lambda r0, r1: src[r0:r1].astype(np.float64)  # noqa: E731
    sq = np.empty(n)
    for r in range(0, n, 256):
        chunk = src64(r, r + 256)
        sq[r:r + 256] = np.einsum("ij,ij->i", chunk, chunk)
    cache: dict[str, Any] = {}

    def tile(r0, r1, c0, c1):
        if cache.get("rows") != (r0, r1):
            cache["rows"] = (r0, r1)
            cache["a"] = src64(r0, r1)
        g = cache["a"] @ src64(c0, c1).T
        g *= -2.0
        g += sq[r0:r1, None]
        g += sq[None, c0:c1]
        return g

    row_block = max(64, min(1024, block_size))
    if q is not None:
        if d * scale * scale >= 2**53:
            raise ValueError("l2 on the grid: dimension too large for an exact float64 GEMM")

        def grid_tile(a, c0, c1):  # exact integer squared distances; each pair once
            return {"l2": tile(a[0], a[1], c0, c1)}

        # one Python thread: the GEMM itself uses the BLAS threads
        best = _symmetric_scan(np.arange(n), y, ["l2"], row_block, block_size, 1,
                               lambda r0, r1: (r0, r1), grid_tile, progress)
        for b in best.values():
            b["l2"].value = np.sqrt(b["l2"].value) / scale
        return {k: best[k]["l2"] for k in KINDS}
    norms_ = np.sqrt(sq)
    # |fl(|a|^2 + |b|^2 - 2 a.b) - |a - b|^2| <= gamma * (|a| + |b|)^2, gamma ~ (d + 3) u;
    # doubled for safety (blocked/FMA summation orders stay within this bound).
    gamma = 2.0 * (d + 3) * _EPS64 / (1.0 - (d + 3) * _EPS64)
    nmax = float(norms_.max())

    def slack(r0, r1):
        return gamma * (norms_[r0:r1] + nmax) ** 2

    return _ranked_scan(x2, y, "l2", tile, slack, row_block, block_size, progress)


def _tf_scan(
    x2: np.ndarray, y: np.ndarray, norms: Sequence[str], block_size: int, device: str,
    q: np.ndarray | None = None, scale: int | None = None, progress=None,
) -> dict[str, dict[str, _Best]]:
    """Tiles computed by TensorFlow on ``device``; masking and merging on the host.

    On the integer grid (``q``, ``scale``) linf and l1 run in float32 on integer values
    (exact: every partial sum stays below 2^24) and l2 as an exact float64 GEMM.
    Otherwise everything is float64 and l2 candidates are re-checked directly. On a GPU
    the linf/l1 tile is compiled with XLA, so the (rows x cols x dims) difference is
    never materialised in memory.
    """
    import tensorflow as tf

    try:
        tf.config.experimental.enable_tensor_float_32_execution(False)  # TF32 would not be exact
    except Exception:  # pragma: no cover - older TF
        pass
    n, d = x2.shape
    grid = q is not None
    if grid and d * scale >= 2**24:
        raise ValueError("grid path: too many dimensions for exact float32 l1 sums")
    dev = "/GPU:0" if device == "gpu" else "/CPU:0"
    elem_dtype = tf.float32 if grid else tf.float64
    with tf.device(dev):
        xt = tf.constant(q if grid else x2)
        sq = tf.reduce_sum(tf.square(tf.cast(xt, tf.float64)), axis=1)
    sq_np = sq.numpy()
    gamma = 2.0 * (d + 3) * _EPS64 / (1.0 - (d + 3) * _EPS64)
    nmax = float(np.sqrt(sq_np.max()))
    elem_rows = max(1, min(block_size, 256))
    # Dimensions in chunks of ``dc``, padded with zeros (|0 - 0| adds nothing to a max or a
    # sum): the (rows x cols x dc) difference stays below ~256 MiB even if not fused.
    dc = max(1, min(d, (64 * 2**20) // max(1, block_size * elem_rows)))
    n_chunks = -(-d // dc)
    with tf.device(dev):
        padded = tf.pad(tf.cast(xt, elem_dtype), [[0, 0], [0, n_chunks * dc - d]])
        chunked = tf.transpose(tf.reshape(padded, (n, n_chunks, dc)), (1, 0, 2))  # (chunks, n, dc)
        del padded
    jit = device == "gpu" or _TF_JIT_ON_CPU

    mat64 = tf.TensorSpec([None, d], tf.float64)
    vec = tf.TensorSpec([None], tf.float64)
    chunks_e = tf.TensorSpec([n_chunks, None, dc], elem_dtype)

    @tf.function(input_signature=[mat64, mat64, vec, vec])
    def tile_l2(a, b, sa, sb):
        g = tf.matmul(a, b, transpose_b=True)
        return sa[:, None] + sb[None, :] - 2.0 * g

    def elementwise(p_inf: bool):
        @tf.function(input_signature=[chunks_e, chunks_e], jit_compile=jit)
        def tile_elem(a, b):
            acc = tf.zeros((tf.shape(a)[1], tf.shape(b)[1]), elem_dtype)
            for k in tf.range(n_chunks):  # a while loop, not unrolled
                diff = tf.abs(a[k][:, None, :] - b[k][None, :, :])
                acc = tf.maximum(acc, tf.reduce_max(diff, axis=2)) if p_inf else acc + tf.reduce_sum(diff, axis=2)
            return acc

        return tile_elem

    tile_fns = {"linf": elementwise(True), "l1": elementwise(False)}
    out = {}
    for nm in norms:
        def tile(r0, r1, c0, c1, nm=nm):
            with tf.device(dev):
                if nm == "l2":
                    a, b = tf.cast(xt[r0:r1], tf.float64), tf.cast(xt[c0:c1], tf.float64)
                    return tile_l2(a, b, sq[r0:r1], sq[c0:c1]).numpy()
                t = tile_fns[nm](chunked[:, r0:r1], chunked[:, c0:c1]).numpy().astype(np.float64)
                return t / scale if grid else t

        if nm == "l2" and grid:
            out[nm] = _ranked_scan(x2, y, nm, tile, None, min(block_size, 4096), block_size, progress)
            for b in out[nm].values():
                b.value = np.sqrt(b.value) / scale
        elif nm == "l2":
            slack = lambda r0, r1: gamma * (np.sqrt(sq_np[r0:r1]) + nmax) ** 2  # noqa: E731
            out[nm] = _ranked_scan(x2, y, nm, tile, slack, min(block_size, 4096), block_size, progress)
        else:
            out[nm] = _ranked_scan(x2, y, nm, tile, None, elem_rows, block_size, progress)
    return {kind: {nm: out[nm][kind] for nm in norms} for kind in KINDS}


# ----------------------------------------------------------------------------- public entry point


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def gpu_visible() -> bool:
    """True if TensorFlow is installed and sees a GPU.

    Importing TensorFlow takes seconds, so unless it is already imported, a machine
    without NVIDIA device nodes (or with ``CUDA_VISIBLE_DEVICES`` empty or ``-1``) is
    answered without it.
    """
    import glob
    import sys

    if "tensorflow" not in sys.modules:
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None and cvd.strip() in ("", "-1"):
            return False
        if not glob.glob("/dev/nvidia[0-9]*"):
            return False
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return False
    return bool(tf.config.list_physical_devices("GPU"))


def nearest_neighbour_distances(
    x: Any,
    y: Any,
    norms: Iterable[str] = ("linf", "l2", "l1"),
    block_size: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    backend: str | None = None,
    grid: "str | int | None" = "auto",
    progress: "Callable[[str], None] | bool | None" = None,
) -> NearestNeighbours:
    """Exact nearest inter-class and intra-class neighbour of every point, per norm.

    Parameters
    ----------
    x : array ``(N, ...)``, e.g. NHWC images in [0, 1]; flattened to ``(N, d)`` float32.
    y : int array ``(N,)`` of labels.
    norms : norm names (``linf``/``l2``/``l1`` or ``inf``/``2``/``1``).
    block_size : points per column tile; default: as many as fit 64 MiB of float64
        (at most 4096).
    threads : worker / BLAS threads; default: the CPUs this process may use.
    device : ``"cpu"`` (NumPy), ``"gpu"`` (TensorFlow on the first GPU) or None (GPU if
        TensorFlow sees one, else CPU).
    backend : ``"numpy"`` or ``"tensorflow"`` to override the choice made from ``device``
        (``backend="tensorflow", device="cpu"`` runs the TensorFlow code on the CPU).
    grid : ``"auto"`` (default): if every value is an integer over 255 or over 16 (8-bit
        images, scikit-learn's digits), both backends compute on those integers,
        exactly, and divides by the scale: distances are then exact for the quantised
        data (they differ from float32 arithmetic by < 1e-6 relative). An int forces that
        scale (values must be on it); None or 0 always uses float64 arithmetic.
    progress : a callable that takes progress lines (e.g. a logger's ``info``: work done in
        point pairs, rate and ETA per tile block, at most one line every 10 s per scan),
        True for lines on stderr (a tqdm bar on a terminal), or None for none.

    Returns a :class:`NearestNeighbours`; distances are float64 in the norm they are
    labelled with, measured on the flattened float32 inputs.
    """
    x2, yy, shape = validate_inputs(x, y)
    names = tuple(dict.fromkeys(parse_norm(nm).name for nm in norms))
    if not names:
        raise ValueError("norms must name at least one of linf, l2, l1")
    n, d = x2.shape
    threads = default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be positive, got {threads}")
    if device not in (None, "cpu", "gpu"):
        raise ValueError(f"device must be 'cpu', 'gpu' or None, got {device!r}")
    if backend not in (None, "numpy", "tensorflow"):
        raise ValueError(f"backend must be 'numpy', 'tensorflow' or None, got {backend!r}")
    if device is None:
        device = "gpu" if backend != "numpy" and gpu_visible() else "cpu"
    if device == "gpu" and not gpu_visible():
        raise ValueError("device='gpu' but TensorFlow sees no GPU")
    if backend is None:
        backend = "tensorflow" if device == "gpu" else "numpy"
    if backend == "numpy" and device == "gpu":
        raise ValueError("backend='numpy' runs on the CPU only; use device='cpu' or backend='tensorflow'")
    if block_size is None:
        block_size = int(min(4096, max(256, _TILE_BYTES // (8 * d))))
        if backend == "tensorflow" and device == "gpu":
            block_size *= 2
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if isinstance(grid, str) and grid != "auto":
        raise ValueError(f"grid must be 'auto', an int scale or None, got {grid!r}")
    scale = grid_scale(x2) if grid == "auto" else (int(grid) if grid else None)
    if scale is not None and grid != "auto" and not (1 <= scale <= 255 and grid_scale(x2, (scale,)) == scale):
        raise ValueError(f"grid={grid}: the values are not integers over {grid} (or it exceeds 255)")
    q = _quantise(x2, scale) if scale is not None else None
    if backend == "tensorflow":
        best = _tf_scan(x2, yy, names, block_size, device, q, scale, progress)
    else:
        best = {k: {} for k in KINDS}
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads):
            elem = [nm for nm in names if nm in ("linf", "l1")]
            if elem:
                got = _elementwise_scan(x2 if q is None else q, yy, elem, block_size, threads, scale, progress)
                for k in KINDS:
                    best[k].update(got[k])
            if "l2" in names:
                got = _l2_scan_numpy(x2, yy, block_size, q, scale, progress)
                for k in KINDS:
                    best[k]["l2"] = got[k]
    del q
    distance: dict[str, dict[str, np.ndarray]] = {k: {} for k in KINDS}
    index: dict[str, dict[str, np.ndarray]] = {k: {} for k in KINDS}
    for k in KINDS:
        for nm in names:
            distance[k][nm], index[k][nm] = best[k][nm].result()
    return NearestNeighbours(
        y=yy, norms=names, distance=distance, index=index,
        duplicate_pairs=cross_class_duplicates(x2, yy), input_shape=shape,
        meta={"device": device, "backend": backend, "threads": threads, "block_size": block_size,
              "grid_scale": scale},
    )


# ----------------------------------------------------------------------------- files


def save_nearest(path: str | os.PathLike, nn: NearestNeighbours, meta: dict[str, Any] | None = None) -> None:
    """Write ``nn`` atomically as ``.npz`` (arrays ``{kind}_{norm}_distance`` / ``_index``)."""
    arrays: dict[str, np.ndarray] = {"y": nn.y, "duplicate_pairs": nn.duplicate_pairs}
    for k in KINDS:
        for nm in nn.norms:
            arrays[f"{k}_{nm}_distance"] = nn.distance[k][nm]
            arrays[f"{k}_{nm}_index"] = nn.index[k][nm]
    info = {**nn.meta, **(meta or {}), "norms": list(nn.norms), "input_shape": list(nn.input_shape)}
    arrays["meta"] = np.array(json.dumps(info, sort_keys=True))
    save_npz(path, **arrays)


def load_nearest(path: str | os.PathLike) -> NearestNeighbours:
    """Read a file written by :func:`save_nearest`."""
    with np.load(path, allow_pickle=False) as f:
        if "meta" not in f.files or "y" not in f.files:
            raise ValueError(f"{path}: not a robcurves nearest-distance file")
        info = json.loads(str(f["meta"]))
        norms = tuple(info["norms"])
        distance = {k: {nm: f[f"{k}_{nm}_distance"] for nm in norms} for k in KINDS}
        index = {k: {nm: f[f"{k}_{nm}_index"] for nm in norms} for k in KINDS}
        y, dup = f["y"], f["duplicate_pairs"]
    shape = tuple(int(s) for s in info.pop("input_shape"))
    info.pop("norms")
    return NearestNeighbours(y=y, norms=norms, distance=distance, index=index,
                             duplicate_pairs=dup, input_shape=shape, meta=info)
