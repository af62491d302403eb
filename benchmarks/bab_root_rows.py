"""Root bounds of branch and bound on MMR-Universal MNIST: the first layer's CROWN rows on the
kernel support (``BoundEngine._direct_rows``) against the full rows (the generic pass), side by
side in one process, warm (the first call, which traces the compiled passes, is timed apart).

    OMP_NUM_THREADS=1 python benchmarks/bab_root_rows.py --points 20

Prints per norm: the first call's seconds, seconds per point of ``root_bounds_batch`` with the
full rows and with the support rows (mean of two alternating repeats), their ratio, and the
largest difference of the bounds (the two are the same bound; it should be ~1e-14).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=20)
    p.add_argument("--first", type=int, default=0)
    args = p.parse_args(argv)
    import exact as E

    if not E.MMR.exists():
        print(f"skipped: {E.MMR} missing")
        return 0
    from robcurves.exact.bab import bounds as Bd, rounding
    from robcurves.exact.bab.network import bound_graph
    from robcurves.models import convert_mat

    x, _ = E.mnist_test()
    g = bound_graph(convert_mat(E.MMR), (0.0, 1.0))
    P = args.points
    print("| norm, eps | first call s | full rows s/point | support rows s/point | ratio | max bound diff |")
    print("|---|---|---|---|---|---|")
    for norm, eps in (("l1", 1.0), ("l2", 0.3), ("linf", 0.1)):
        eng = Bd.BoundEngine(g, norm)
        r = rounding.radius_for_threshold(float(np.float32(eps)), norm, g.n_inputs)

        def balls(s):
            return [Bd.InputBall.make(x[i].reshape(-1), norm, r, g.bounds) for i in range(s, s + P)]

        t0 = time.perf_counter()
        eng.root_bounds_batch(balls(args.first + P))  # warm-up on other points
        t_first = time.perf_counter() - t0
        t = {"full": 0.0, "support": 0.0}
        got = {}
        for _ in range(2):
            for mode in ("support", "full"):
                if mode == "full":
                    eng._fns[("direct", 1)] = None  # the generic pass for every row
                t0 = time.perf_counter()
                got[mode] = eng.root_bounds_batch(balls(args.first))
                t[mode] += time.perf_counter() - t0
                if mode == "full":
                    eng._fns.pop(("direct", 1))
        diff = max(float(np.max(np.abs(a - b))) for ra, rb in zip(got["support"], got["full"])
                   for a, b in zip(ra.lower + ra.upper, rb.lower + rb.upper))
        print(f"| {norm} {eps:g} | {t_first:.1f} | {t['full'] / 2 / P:.3f} | {t['support'] / 2 / P:.3f} | "
              f"{t['full'] / t['support']:.2f} | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
