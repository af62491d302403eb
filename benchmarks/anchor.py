"""Anchor of issue 12: our CROWN / alpha-CROWN margin bounds against auto_LiRPA 0.3's, side by side.

On the MMR-Universal MNIST network (``../shared/reference``, the loader of
``benchmarks/exact.py``) and the first ``--points`` MNIST test points, per norm (ℓ∞, ℓ2,
ℓ1) and method, the lower bounds of the margins ``z_y - z_k`` (all ``k != y``) over the
norm ball ∩ [0, 1] box from

- **ours**: :class:`robcurves.exact.bab.BoundEngine` (float64, with the float32 rounding
  term: a certificate for the float32 model). ``crown``: CROWN intermediate bounds
  (``root_bounds``) and CROWN on the margins (``bound``); ``alpha``: the same
  intermediate bounds, ``--iters`` Adam steps on the margins' slopes (``optimise``, our
  lr 0.1); ``alpha_all``: also ``--iters`` steps per intermediate node
  (``root_bounds(optimise_intermediate=iters)``);
- **theirs**: auto_LiRPA 0.3 in its own venv (``bash benchmarks/lirpa_venv.sh``;
  ``benchmarks/lirpa_worker.py``, through an .npz), ``--dtype`` (float32, its default):
  ``crown`` (``method="backward"``) and ``alpha`` (``"CROWN-Optimized"``, ``--iters``
  steps, its defaults otherwise: lr 0.5; every step re-optimises the intermediate bounds
  too, so it is compared with both our ``alpha`` and ``alpha_all``). For ℓ2/ℓ1 it
  ignores the box (see the worker): its bound is over the whole p-ball. No rounding term.

alpha-CROWN (both tools, all three of our variants' rows) runs on the first
``--alpha-points`` points only: auto_LiRPA's costs ~30 s a query here.

Radii per point: ``d``, the project attack's verified distance (default attack,
cached in ``--cache``), and ``r_ours``, our alpha-CROWN certified radius by bisection of
``[0, d]`` with bounds only. Also the certified radius by bisection (``--bisect-steps``)
of CROWN for both tools (``--their-bisect crown,alpha`` adds auto_LiRPA's alpha-CROWN). Soundness sanity: at ``d`` the attack's witness lies in the ball, so no
lower bound may exceed its float32 margin for any class.

Prints one table per norm; ``--out`` writes one JSON row per (norm, method).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/anchor.py --points 50 --out anchor.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BOUND_METHODS = ("crown", "alpha", "alpha_all")
#: bounds within this of each other count as equal ("ours >= theirs - TOL"): the size of
#: our float32 rounding term on this network's margins is ~1e-4 (see the README section)
TOL = 1e-4


def lirpa_versions(venv: Path) -> str:
    py = venv / "bin" / "python"
    out = subprocess.run([str(py), "-c", "import torch, numpy; from importlib.metadata import version; "
                          "print(f'auto_LiRPA {version(\"auto_LiRPA\")}, torch {torch.__version__}, "
                          "NumPy {numpy.__version__}')"], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()[-200:]


def export_npz(path: Path, model, x, y, norm: str, radii, bisect_hi, args) -> None:
    """The network (``attacks.export_layers``), points, labels, radii and settings for the worker."""
    from attacks import export_layers

    layers, arrays = export_layers(model)
    spec = {"layers": layers, "input_shape": list(x.shape[1:]), "bounds": [0.0, 1.0], "methods": ["crown", "alpha"],
            "bisect_methods": list(args.their_bisect), "bisect_steps": args.bisect_steps, "iters": args.iters,
            "dtype": args.dtype, "points_of": {"alpha": args.alpha_points}}
    np.savez(path, x=np.asarray(x, np.float32), y=np.asarray(y, np.int64), radii=np.asarray(radii, np.float64),
             bisect_hi=np.asarray(bisect_hi, np.float64), norm=np.array(norm), spec=np.array(json.dumps(spec)),
             **arrays)


def run_worker(venv: Path, src: Path, dst: Path) -> dict:
    py = venv / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"{py} not found: run `bash benchmarks/lirpa_venv.sh` first")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run([str(py), str(HERE / "lirpa_worker.py"), str(src), str(dst)], check=True, env=env)
    with np.load(dst, allow_pickle=False) as f:
        return {k: (json.loads(str(f[k])) if k == "info" else f[k]) for k in f.files}


class Ours:
    """Our margin lower bounds at one (point, radius), per method, timed."""

    def __init__(self, model, norm: str, iters: int):
        from robcurves.exact.bab import BoundEngine
        from robcurves.exact.bab.network import bound_graph

        self.graph = bound_graph(model, (0.0, 1.0))
        self.eng = BoundEngine(self.graph, norm)
        self.norm = norm
        self.iters = int(iters)

    def lower(self, x0: np.ndarray, y: int, r: float, method: str) -> np.ndarray:
        from robcurves.exact.bab import InputBall

        eng = self.eng
        ball = InputBall.make(np.asarray(x0).reshape(-1), self.norm, r, (0.0, 1.0))
        C = eng.margin_rows(int(y), [k for k in range(eng.n_classes) if k != int(y)])
        if method == "crown":
            return eng.bound(eng.root_bounds(ball), eng.output, C)
        root = eng.root_bounds(ball, optimise_intermediate=self.iters if method == "alpha_all" else 0)
        lb, _, _ = eng.optimise(root, eng.output, C, iters=self.iters)
        return lb

    def certified_radius(self, x0, y, hi: float, method: str, steps: int) -> float:
        lo = 0.0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            if float(np.min(self.lower(x0, y, mid, method))) > 0:
                lo = mid
            else:
                hi = mid
        return lo


def run_norm(norm: str, model, x, y, args, venv: Path) -> tuple[list[dict], dict]:
    import exact as bench_exact
    from robcurves.adversarial import margin
    from robcurves.attacks import predict_logits

    ns = argparse.Namespace(cache=args.cache, fc1_training="", first=0)
    dist, xadv, t_att = bench_exact.attack_results("mmr", norm, model, x, y, ns)
    logits = predict_logits(model, x)
    ok = (np.argmax(logits, 1) == y) & np.isfinite(dist) & (dist > 0)
    idx = np.nonzero(ok)[0]
    print(f"{norm}: {len(idx)}/{len(x)} points correctly classified with a verified attack distance "
          f"(attack {t_att:.0f} s, cached in {args.cache})", flush=True)
    ours = Ours(model, norm, args.iters)
    K = ours.eng.n_classes - 1
    n = len(idx)
    n_alpha = min(n, args.alpha_points)
    n_of = {"crown": n, "alpha": n_alpha, "alpha_all": n_alpha}
    t0 = time.perf_counter()  # untimed warm-up of our compiled functions
    for m in args.methods:
        ours.lower(x[idx[0]], y[idx[0]], 0.5 * float(dist[idx[0]]), m)
    print(f"  ours warm-up (compile) {time.perf_counter() - t0:.1f} s", flush=True)
    ours_bis = ["crown", "alpha"]
    rad = {m: np.full(n, np.nan) for m in ours_bis}
    rad_s = {m: np.full(n, np.nan) for m in ours_bis}
    t_all = time.perf_counter()
    for a, i in enumerate(idx):
        for m in ours_bis:
            if a < n_of[m] or m == "alpha":  # our alpha radius is every point's second radius
                t0 = time.perf_counter()
                rad[m][a] = ours.certified_radius(x[i], y[i], float(dist[i]), m, args.bisect_steps)
                rad_s[m][a] = time.perf_counter() - t0
    print(f"  ours {norm}: bisections {time.perf_counter() - t_all:.0f} s", flush=True)
    # radii asked of both: the attack's distance and our alpha-CROWN certified radius
    radii = np.stack([dist[idx], np.maximum(rad["alpha"], 1e-6 * dist[idx])], axis=1)
    lb = {m: np.full((n, 2, K), np.nan) for m in args.methods}
    sec = {m: np.full((n, 2), np.nan) for m in args.methods}
    for a, i in enumerate(idx):
        for j in range(2):
            for m in args.methods:
                if a < n_of[m]:
                    t0 = time.perf_counter()
                    lb[m][a, j] = ours.lower(x[i], y[i], float(radii[a, j]), m)
                    sec[m][a, j] = time.perf_counter() - t0
    print(f"  ours {norm}: all {time.perf_counter() - t_all:.0f} s; auto_LiRPA next", flush=True)
    t_w = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        export_npz(src, model, x[idx], y[idx], norm, radii, dist[idx], args)
        try:
            th = run_worker(venv, src, dst)
        except subprocess.CalledProcessError as e:
            # keep our side (minutes of work): the worker's traceback is above
            keep = Path(args.cache) / f"ours_{norm}_{len(x)}.npz"
            keep.parent.mkdir(parents=True, exist_ok=True)
            np.savez(keep, idx=idx, radii=radii, **{f"lb_{m}": v for m, v in lb.items()},
                     **{f"s_{m}": v for m, v in sec.items()}, **{f"rad_{m}": v for m, v in rad.items()})
            raise SystemExit(f"auto_LiRPA worker failed ({norm}, exit {e.returncode}); our bounds kept in {keep}")
    print(f"  auto_LiRPA {norm}: {time.perf_counter() - t_w:.0f} s", flush=True)
    logit_err = float(np.max(np.abs(th["logits"] - logits[idx])))
    if logit_err > 1e-3 * (1 + np.max(np.abs(logits))):
        raise SystemExit(f"the torch model's logits differ from ours by {logit_err:.3g}: the export is wrong")
    # the witnesses' float32 margins z_y - z_k (the model's own logits), every k != y
    wl = predict_logits(model, xadv[idx])
    wm = np.stack([wl[a, y[i]] - np.delete(wl[a], y[i]) for a, i in enumerate(idx)])  # (n, K)
    assert np.allclose(wm.min(1), margin(wl, y[idx]))
    rows = []
    for m in args.methods:
        peer = "crown" if m == "crown" else "alpha"
        k = n_of[m]
        row = {"case": "mmr", "norm": norm, "method": f"ours {m} vs auto_LiRPA {peer}", "ours": m, "theirs": peer,
               "points": int(k), "iters": args.iters, "tol": TOL, "dtype_theirs": args.dtype}
        for j, name in enumerate(("d_attack", "r_ours")):
            o = lb[m][:k, j].min(1)
            t = th[f"lb_{peer}"][:k, j].min(1)
            row[name] = {
                "median_ours_over_theirs": float(np.median(o / t)),
                "median_ours_minus_theirs": float(np.median(o - t)),
                "frac_ours_ge_theirs": float(np.mean(o >= t - TOL)),
                "certified_ours": float(np.mean(o > 0)), "certified_theirs": float(np.mean(t > 0)),
            }
        so = sec[m][:k].reshape(-1)
        st = th[f"s_{peer}"][:k].reshape(-1)
        row.update(median_s_ours=float(np.median(so)), median_s_theirs=float(np.median(st)),
                   median_time_ratio=float(np.median(so / st)))
        row.update(witness_violations_ours=int(np.sum(lb[m][:k, 0] > wm[:k] + 1e-9)),
                   witness_violations_theirs=int(np.sum(th[f"lb_{peer}"][:k, 0] > wm[:k] + 1e-9)))
        if m == peer and f"rad_{peer}" in th and np.isfinite(th[f"rad_{peer}"][:k]).all():
            ro, rt = rad[m][:k], th[f"rad_{peer}"][:k]
            good = rt > 0
            row.update(median_radius_ours=float(np.median(ro)), median_radius_theirs=float(np.median(rt)),
                       median_radius_ratio=float(np.median(ro[good] / rt[good])) if good.any() else float("nan"),
                       frac_radius_ours_ge_theirs=float(np.mean(ro >= rt * (1 - 2.0 ** -args.bisect_steps))),
                       median_bisect_s_ours=float(np.median(rad_s[m][:k])),
                       median_bisect_s_theirs=float(np.median(th[f"rad_s_{peer}"][:k])))
        rows.append(row)
    return rows, {"info": th["info"], "max_logit_diff": logit_err, "median_attack_distance": float(np.median(dist[idx])),
                  "median_radius_ours_alpha": float(np.median(rad["alpha"]))}


def fmt(rows: list[dict], norm: str) -> list[str]:
    out = [f"### {norm}", "",
           "| method | at d: ours/theirs (worst margin) | ours−theirs | ours ≥ theirs−tol | cert. ours / theirs "
           "| at r_ours: ours/theirs | ours ≥ theirs−tol | cert. ours / theirs | s/query ours | theirs "
           "| time ours/theirs | radius ours | theirs | radius ours/theirs | witness viol. |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, q = r["d_attack"], r["r_ours"]
        rad = (f"{r['median_radius_ours']:.4g} | {r['median_radius_theirs']:.4g} | {r['median_radius_ratio']:.3f}"
               if "median_radius_ours" in r else "– | – | –")
        out.append(
            f"| {r['method']} | {d['median_ours_over_theirs']:.3f} | {d['median_ours_minus_theirs']:+.3g} | "
            f"{d['frac_ours_ge_theirs']:.2f} | {d['certified_ours']:.2f} / {d['certified_theirs']:.2f} | "
            f"{q['median_ours_over_theirs']:.3f} | {q['frac_ours_ge_theirs']:.2f} | "
            f"{q['certified_ours']:.2f} / {q['certified_theirs']:.2f} | {r['median_s_ours']:.3f} | "
            f"{r['median_s_theirs']:.3f} | {r['median_time_ratio']:.2f} | {rad} | "
            f"{r['witness_violations_ours']} / {r['witness_violations_theirs']} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--norms", default="linf,l2,l1")
    ap.add_argument("--methods", default=",".join(BOUND_METHODS))
    ap.add_argument("--alpha-points", type=int, default=8,
                    help="alpha-CROWN (both tools) on the first this many of the points only: it is costly")
    ap.add_argument("--their-bisect", default="crown", help="auto_LiRPA methods whose certified radius is bisected "
                    "(ours: crown and alpha always)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="auto_LiRPA's precision")
    ap.add_argument("--bisect-steps", type=int, default=10)
    ap.add_argument("--iters", type=int, default=20, help="alpha-CROWN Adam steps (both tools)")
    ap.add_argument("--venv", type=Path, default=HERE / ".venv-lirpa")
    ap.add_argument("--cache", default=str(HERE / "runs" / "anchor"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    args.their_bisect = [m for m in args.their_bisect.split(",") if m]
    bad = [m for m in args.methods if m not in BOUND_METHODS] + [m for m in args.their_bisect if m not in ("crown", "alpha")]
    if bad or "alpha" not in args.methods:
        raise SystemExit(f"--methods among {', '.join(BOUND_METHODS)} with alpha; --their-bisect among crown, alpha: {bad}")
    import exact as bench_exact
    from robcurves.models import convert_mat

    if not bench_exact.MMR.exists():
        raise SystemExit(f"{bench_exact.MMR} is missing: the anchor needs ../shared/reference")
    x, y = bench_exact.mnist_test()
    x, y = x[:args.points], y[:args.points]
    model = convert_mat(bench_exact.MMR)
    versions = lirpa_versions(args.venv)
    print(f"MMR-Universal MNIST, points 0-{args.points - 1}; {versions}; iters {args.iters}, "
          f"bisection {args.bisect_steps} steps; uptime: {os.popen('uptime').read().strip()}", flush=True)
    rows, lines, meta = [], [], {}
    t0 = time.perf_counter()
    for norm in [s for s in args.norms.split(",") if s]:
        r, meta[norm] = run_norm(norm, model, x, y, args, args.venv)
        rows += r
        lines += fmt(r, norm) + ["", f"max |logits torch - ours| {meta[norm]['max_logit_diff']:.2e}; median attack "
                                 f"distance {meta[norm]['median_attack_distance']:.4g}; auto_LiRPA shims: "
                                 f"{'; '.join(meta[norm]['info']['shims']) or 'none'}", ""]
        print("\n".join(lines[-len(r) - 6:]), flush=True)
        if args.out:  # after every norm: a cut-off run keeps what it measured
            from robcurves.atomic import write_text

            write_text(args.out, json.dumps({"rows": rows, "meta": meta, "versions": versions,
                                             "args": {k: (str(v) if isinstance(v, Path) else v)
                                                      for k, v in vars(args).items()}}, indent=1))
    print("\n## all norms\n\n" + "\n".join(lines))
    print(f"total {time.perf_counter() - t0:.0f} s; uptime: {os.popen('uptime').read().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
