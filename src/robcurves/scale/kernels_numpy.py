"""The NumPy kernels: linf and l1 tiles (int16 on the grid, else float64) and l2 by float64 GEMM."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from robcurves.scale.merge import Best
from robcurves.scale.neighbours import KINDS
from robcurves.scale.scan import gemm_error_factor, ranked_scan, symmetric_scan

ELEM_ROWS = 64  # rows per linf/l1 tile: few enough to share blank dimensions (measured)
INT_CHUNK = 128  # int16 l1 partial sums over 128 dims stay below 128 * 255 < 2^15


def elementwise_scan(
    xs_in: np.ndarray, y: np.ndarray, norms: Sequence[str], block_size: int, threads: int,
    scale: int | None, progress=None,
) -> dict[str, dict[str, Best]]:
    """All pairs for linf and/or l1, symmetric, in tiles of ``ELEM_ROWS`` rows, with worker threads.

    ``xs_in`` is float32 (computed in float64) or, when ``scale`` is given, int16 grid
    values ``round(x * scale)`` (computed exactly in integers, then divided by ``scale``).
    Points are reordered by label (stable) so that a tile's rows tend to share their
    blank dimensions; results carry original indices.
    """
    order = np.argsort(y, kind="stable")
    xs = xs_in[order]
    row_block = ELEM_ROWS
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
        return tile_elementwise(a_t, a_const, xs[c0:c1], var, cdims, norms, tmp, scale)

    return symmetric_scan(order, y[order], norms, row_block, col_block, threads, row_setup, tile, progress)


def tile_elementwise(a_t, a_const, b, var, cdims, norms, tmp, scale) -> dict[str, np.ndarray]:
    """linf and/or l1 distances (float64) of a row tile (``a_t``: var-dims x rows) to ``b``.

    Dimensions constant over the row tile contribute ``|c_k - b_jk|`` independently of
    the row, so they are reduced once per column instead of once per pair. On the int16
    grid every operation is exact; l1 is accumulated in int16 over chunks of
    ``INT_CHUNK`` dimensions and flushed into int64.
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
                    if k % INT_CHUNK == INT_CHUNK - 1:
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


def l2_scan(x2: np.ndarray, y: np.ndarray, block_size: int, q: np.ndarray | None = None,
            scale: int | None = None, progress=None) -> dict[str, Best]:
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
        best = symmetric_scan(np.arange(n), y, ["l2"], row_block, block_size, 1,
                              lambda r0, r1: (r0, r1), grid_tile, progress)
        for b in best.values():
            b["l2"].value = np.sqrt(b["l2"].value) / scale
        return {k: best[k]["l2"] for k in KINDS}
    norms_ = np.sqrt(sq)
    gamma = gemm_error_factor(d)  # the GEMM's rounding error, relative to (|a| + |b|)^2
    nmax = float(norms_.max())

    def slack(r0, r1):
        return gamma * (norms_[r0:r1] + nmax) ** 2

    return ranked_scan(x2, y, "l2", tile, slack, row_block, block_size, progress)
