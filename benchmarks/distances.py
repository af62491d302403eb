"""Benchmark: exact nearest inter-/intra-class distances on the 10,000 MNIST test points.

Times ``robcurves.scale.nearest_neighbour_distances`` (linf, l2, l1 together) and a
straightforward reference on the same data in the same run: ``scipy.spatial.distance.cdist``
in row blocks against all points, then a masked minimum. The reference is timed on the
first ``--ref-rows`` rows (default 1,000: 10% of the work) and extrapolated linearly to all
rows (its cost is exactly linear in the number of rows); ``--ref-rows 10000`` times it in
full. The reference's answers on those rows are checked against ours.

With a visible GPU, ``--tiny`` also times random Tiny-ImageNet-sized data
(98,179 x 12,288, l2 and linf) on it.

Usage:  python benchmarks/distances.py [--threads 2] [--ref-rows 1000] [--mnist DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402

from robcurves.data import read_idx  # noqa: E402
from robcurves.scale import default_threads, nearest_neighbour_distances  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_MNIST = HERE.parents[0].parent / "shared" / "reference" / "mnist"
METRICS = {"linf": "chebyshev", "l2": "euclidean", "l1": "cityblock"}


def timed(fn, *args, **kw):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - w, time.process_time() - c


def cdist_reference(x2: np.ndarray, y: np.ndarray, rows: int, metric: str, block: int = 250):
    """Nearest other-class and same-class distance of the first ``rows`` points, by cdist."""
    inter = np.empty(rows)
    intra = np.empty(rows)
    for r0 in range(0, rows, block):
        r1 = min(rows, r0 + block)
        d = cdist(x2[r0:r1], x2, metric)
        same = y[r0:r1, None] == y[None, :]
        inter[r0:r1] = np.where(same, np.inf, d).min(axis=1)
        d[np.arange(r1 - r0), np.arange(r0, r1)] = np.inf
        intra[r0:r1] = np.where(same, d, np.inf).min(axis=1)
    return inter, intra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ref-rows", type=int, default=1000)
    ap.add_argument("--tiny", action="store_true", help="also Tiny-ImageNet-sized random data (GPU only)")
    ap.add_argument("--tiny-n", type=int, default=98179)
    args = ap.parse_args()
    threads = args.threads or default_threads()

    x = read_idx(args.mnist / "t10k-images-idx3-ubyte.gz").astype(np.float32)[..., None] / np.float32(255)
    y = read_idx(args.mnist / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    x2 = x.reshape(len(x), -1)
    n = len(y)
    print(f"MNIST test set: {n} points x {x2.shape[1]} dims; threads={threads}; os.cpu_count()={os.cpu_count()}")

    nn, wall, cpu = timed(nearest_neighbour_distances, x, y, threads=threads, device="cpu")
    rows = []
    per_norm = {}
    for norm in METRICS:
        _, w1, c1 = timed(nearest_neighbour_distances, x, y, norms=(norm,), threads=threads, device="cpu")
        per_norm[norm] = (w1, c1)

    ref_rows = min(n, args.ref_rows)
    ref_total_w = ref_total_c = 0.0
    for norm, metric in METRICS.items():
        (inter, intra), w, c = timed(cdist_reference, x2.astype(np.float64), y, ref_rows, metric)
        scale = n / ref_rows
        ref_total_w += w * scale
        ref_total_c += c * scale
        err = max(np.max(np.abs(inter - nn.distance["inter"][norm][:ref_rows])),
                  np.max(np.abs(intra - nn.distance["intra"][norm][:ref_rows])))
        rows.append((norm, per_norm[norm][0], per_norm[norm][1], w * scale, c * scale, err))

    extrap = "" if ref_rows == n else f" (timed on {ref_rows} rows, x{n / ref_rows:g})"
    print()
    print(f"| norm | robcurves wall s | robcurves CPU s | cdist wall s{extrap} | cdist CPU s | ratio (wall) | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for norm, w, c, rw, rc, err in rows:
        print(f"| {norm} (alone) | {w:.1f} | {c:.1f} | {rw:.1f} | {rc:.1f} | {rw / w:.1f}x | {err:.1e} |")
    print(f"| **all three, one call** | **{wall:.1f}** | {cpu:.1f} | {ref_total_w:.1f} | {ref_total_c:.1f} | "
          f"**{ref_total_w / wall:.1f}x** | |")
    print()
    print("max abs diff: our distances vs cdist (float64 on the float32 pixels) on the timed rows.")

    if args.tiny:
        from robcurves.scale import gpu_visible

        if not gpu_visible():
            print("--tiny: no GPU visible, skipped")
            return
        rng = np.random.default_rng(0)
        xt = rng.random((args.tiny_n, 64 * 64 * 3), dtype=np.float32)
        yt = rng.integers(0, 200, args.tiny_n)
        for norm in ("l2", "linf"):
            _, w, c = timed(nearest_neighbour_distances, xt, yt, norms=(norm,), device="gpu")
            print(f"Tiny-ImageNet-sized random data {xt.shape}, {norm}, GPU: {w:.1f} s wall")


if __name__ == "__main__":
    main()
