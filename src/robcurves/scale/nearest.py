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

import os
from typing import Any, Callable, Iterable

import numpy as np

from robcurves.norms import parse_norm
from robcurves.scale.duplicates import cross_class_duplicates
from robcurves.scale.grid import grid_scale, quantise
from robcurves.scale.inputs import validate_inputs
from robcurves.scale.kernels_numpy import elementwise_scan, l2_scan
from robcurves.scale.kernels_tf import gpu_visible, tf_scan
from robcurves.scale.neighbours import KINDS, NearestNeighbours

TILE_BYTES = 64 * 2**20  # target size of one float64 column tile (block_size x d)


def default_threads() -> int:
    """The CPUs this process may use (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


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
        block_size = int(min(4096, max(256, TILE_BYTES // (8 * d))))
        if backend == "tensorflow" and device == "gpu":
            block_size *= 2
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if isinstance(grid, str) and grid != "auto":
        raise ValueError(f"grid must be 'auto', an int scale or None, got {grid!r}")
    scale = grid_scale(x2) if grid == "auto" else (int(grid) if grid else None)
    if scale is not None and grid != "auto" and not (1 <= scale <= 255 and grid_scale(x2, (scale,)) == scale):
        raise ValueError(f"grid={grid}: the values are not integers over {grid} (or it exceeds 255)")
    q = quantise(x2, scale) if scale is not None else None
    if backend == "tensorflow":
        best = tf_scan(x2, yy, names, block_size, device, q, scale, progress)
    else:
        best = {k: {} for k in KINDS}
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads):
            elem = [nm for nm in names if nm in ("linf", "l1")]
            if elem:
                got = elementwise_scan(x2 if q is None else q, yy, elem, block_size, threads, scale, progress)
                for k in KINDS:
                    best[k].update(got[k])
            if "l2" in names:
                got = l2_scan(x2, yy, block_size, q, scale, progress)
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
