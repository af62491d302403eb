"""Benchmark of the exact stage (robcurves.exact): branch and bound against the MILP; not a timed test.

Cases (``--cases``, comma-separated):

- ``mmr``: the MMR-Universal MNIST network of ``../shared/reference/`` (Croce & Hein 2020)
  on the first ``--points`` MNIST test points;
- ``fc1``: a one-hidden-layer ReLU network (1,024 units) trained here on the first 5,000
  MNIST test images, evaluated on the next ``--points`` (indices 5000, 5001, ...); by
  default with MMR + AT linf at eps 0.1 and ``--fc1-recipe croce``, the hyperparameters of
  the fc1 that Croce et al. verified with MIPVerify (lambda 1, gamma_rb = gamma_db = eps,
  PGD-40, batch 128; they trained 100 epochs on the 60,000 MNIST training images);
- ``fc1-digits``: the same architecture trained on the default data (scikit-learn digits),
  evaluated on the first ``--points`` digits test points.

Every point is warm-started with the project's attack (robcurves.attacks, default
methods). ``--cache DIR`` keeps the attack's results and the trained fc1 model there, so
that two processes run side by side (``--method bab`` and ``--method milp``, one thread
each) on exactly the same points, warm starts and load. Prints one row per
(case, norm, method); ``--out`` writes the rows as JSON with the keys ``case``, ``norm``,
``method``, ``points``, ``time_limit_s``, ``optimal``, ``within_1pct``,
``median_lower_over_upper``, ``median_time_s`` and ``p90_time_s`` (plus the full summary).
Ratios use the best verified upper bound of the point (the method's witness or the
attack's); misclassified points are left out of them.

``--thresholds linf:0.1,l2:0.3,l1:1.0``: instead of minimal distances, robust / not robust /
unknown per point at fixed thresholds (``robcurves.exact.bab.thresholds``), with the
certified robust-error interval per norm and for their union, and the total time.

    python benchmarks/exact.py --cases mmr --points 100 --time-limit 60 --norms linf,l2,l1 --method bab
    python benchmarks/exact.py --cases mmr --points 1000 --thresholds linf:0.1,l2:0.3,l1:1.0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "reference"
MMR = REF / "mmr-universal" / "mmr_univ_mnist_gammas_1.0_0.175_lambdas_3.0_12.0.mat"


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    from robcurves.data import read_idx

    x = read_idx(REF / "mnist" / "t10k-images-idx3-ubyte.gz").astype(np.float32).reshape(-1, 28, 28, 1) / 255.0
    y = read_idx(REF / "mnist" / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


#: How fc1 is trained with an MMR method (``--fc1-recipe``): batch size and the
#: robcurves.training options, as functions of the training radius eps (linf).
FC1_RECIPES = {
    # The fc1 that Croce et al. verified with MIPVerify and that Risse et al.'s exact
    # experiment uses: "mmr+at/... dataset=mnist nn_type=fc1 p_norm=inf lmbd=1.0
    # gamma_rb=0.1 gamma_db=0.1 ae_frac=0.5 epoch=100" (their file names are the training
    # hyperparameters), trained by their train.py: batch 128, Adam 1e-3, PGD 40 iterations of
    # step 2 eps / 40 on half of each batch (MNIST), n_rb 10% -> 2%, lr / 10 for the last 10%.
    "croce": lambda eps: (128, {"lmbd": 1.0, "gamma_rb": eps, "gamma_db": eps, "pgd_steps": 40}),
    # The first sessions' fc1 (benchmarks/README.md, exact stage 3): robcurves.training's
    # defaults, i.e. Croce et al.'s recipe for their MNIST *CNN* (lambda 0.5, gamma 2 eps),
    # PGD 10 steps, batch 64.
    "v1": lambda eps: (64, {}),
}


def train_fc1(x: np.ndarray, y: np.ndarray, n_classes: int, epochs: int, seed: int = 0,
              training: str = "plain", eps: float = 0.1, recipe: str = "croce"):
    """fc1 (1,024 hidden units). ``training``: ``plain`` (Keras fit, cross-entropy, batch 64)
    or a method of :mod:`robcurves.training` (e.g. ``mmr_at_linf``) at radius ``eps`` (in the
    method's norm), with the batch size and options of ``recipe`` (:data:`FC1_RECIPES`)."""
    import keras

    from robcurves.data import Dataset
    from robcurves.models import fc1
    from robcurves.training import train_model

    keras.utils.set_random_seed(seed)
    m = fc1(x.shape[1:], n_classes, hidden=1024, seed=seed)
    if training == "plain":
        m.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        m.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    else:
        if training == "st":
            batch, opts = 64, {}
        else:
            batch, opts = FC1_RECIPES[recipe](float(eps))
            if not training.startswith("mmr_at"):  # AT takes no MMR options
                opts = {k: v for k, v in opts.items() if k in ("pgd_steps",)}
        rec = train_model(m, Dataset(x, y, "bench", "train", [str(c) for c in range(n_classes)], "benchmark"), training,
                          epochs=epochs, batch_size=batch, learning_rate=1e-3, seed=seed,
                          eps=None if training == "st" else eps, log=lambda s: print(f"  {s}", flush=True), **opts)
        print(f"  fc1 {training} eps {eps} recipe {recipe} (batch {batch}, {opts}): train accuracy "
              f"{rec['train_accuracy']:.4f} in {rec['time_s']:.0f} s", flush=True)
    return m


def _fc1_tag(args) -> str:
    """The trained model's name: training, eps, epochs and (for MMR/AT) the recipe; the
    first sessions' ``v1`` model keeps its old name."""
    tag = f"{args.fc1_training}_{args.fc1_eps}_{args.epochs}"
    if args.fc1_training not in ("plain", "st") and args.fc1_recipe != "v1":
        tag += f"_{args.fc1_recipe}"
    return tag


def _fc1_cached(x, y, args, tag: str):
    """The trained fc1 model from ``--model-cache`` (default ``results/benchmarks/``), or
    trained now (1 thread: see the README for its time) and saved there atomically."""
    import keras

    from robcurves.atomic import atomic_path

    cache = Path(args.model_cache)
    path = cache / f"fc1_{tag}_{_fc1_tag(args)}.keras"
    if path.exists():
        print(f"  fc1: loading {path}", flush=True)
        return keras.models.load_model(path)
    t0 = time.perf_counter()
    m = train_fc1(x, y, 10, args.epochs, training=args.fc1_training, eps=args.fc1_eps, recipe=args.fc1_recipe)
    print(f"  fc1: trained in {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        m.save(tmp)
    return m


def fc1_report(model, x, y, dist, held_out) -> dict:
    """What makes an fc1 hard to verify in linf: clean accuracy on ``held_out`` (x, y) and,
    per point, the number of hidden ReLUs that are unstable (pre-activation range over the
    ball of radius ``dist`` (linf) in [0, 1] contains 0) at 0.5x and 1x the attack's distance.
    One hidden layer: the range of each pre-activation over a box is exact (interval)."""
    w, b = model.get_layer("fc1").get_weights()
    xf = x.reshape(len(x), -1).astype(np.float64)
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    out = {}
    for frac in (0.5, 1.0):
        r = frac * np.where(np.isfinite(dist), dist, 0.0)[:, None]
        lo, hi = np.clip(xf - r, 0, 1), np.clip(xf + r, 0, 1)
        zlo, zhi = lo @ wp + hi @ wn + b, hi @ wp + lo @ wn + b
        out[f"unstable_at_{frac:g}x"] = [int(v) for v in ((zlo < 0) & (zhi > 0)).sum(axis=1)]
    xh, yh = held_out
    pred = np.concatenate([model(xh[i:i + 1000], training=False).numpy().argmax(1) for i in range(0, len(xh), 1000)])
    return {"held_out_accuracy": float(np.mean(pred == yh)), "n_held_out": int(len(yh)),
            "attack_linf": [round(float(v), 5) for v in dist], **out}


def case_data(case: str, n: int, args, first: int = 0):
    if case == "mmr":
        from robcurves.models import convert_mat

        x, y = mnist_test()
        return convert_mat(MMR), x[first:first + n], y[first:first + n], np.arange(first, first + n)
    if case == "fc1":
        x, y = mnist_test()
        m = _fc1_cached(x[:5000], y[:5000], args, "mnist")
        a = 5000 + first
        return m, x[a:a + n], y[a:a + n], np.arange(a, a + n)
    if case == "fc1-digits":
        from robcurves.data import load_sklearn_digits

        tr, te = load_sklearn_digits()
        m = _fc1_cached(tr.x, tr.y, args, "digits")
        return m, te.x[first:first + n], te.y[first:first + n], np.arange(first, first + n)
    raise SystemExit(f"unknown case {case!r}")


def attack_results(case: str, norm: str, model, x, y, args):
    """The default attack's (distances, x_adv), from ``--cache`` when it is there."""
    from robcurves import attacks

    # fc1: one cache entry per trained model (training, eps, epochs, recipe)
    path = Path(args.cache) / f"attack_{case}_{_fc1_tag(args) if case.startswith('fc1') else ''}_{norm}_" \
                              f"{args.first}_{len(x)}.npz" if args.cache else None
    if path is not None and path.exists():
        with np.load(path) as f:
            return f["distances"], f["x_adv"], float(f["seconds"])
    t0 = time.perf_counter()
    att = attacks.minimal_perturbations(model, x, y, norm, progress=False)
    sec = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, distances=att.distances, x_adv=att.x_adv, seconds=sec)
    return att.distances, att.x_adv, sec


def bench_row(res, case: str, norm: str, method: str, time_limit: float, attack_s: float) -> dict:
    """The row the issue asks for, from the records of one run."""
    s = res.summary()
    classified = res.status != "misclassified"
    best_upper = np.minimum(res.upper, np.where(res.attack_verified, res.attack_distance, np.inf))
    ok = classified & np.isfinite(best_upper) & (best_upper > 0)
    ratio = np.where(ok, res.lower / np.where(ok, best_upper, 1.0), np.nan)
    t = res.solve_time[classified]
    r = ratio[ok]
    return {"case": case, "norm": norm, "method": method, "points": int(len(res)),
            "classified": int(classified.sum()), "time_limit_s": time_limit,
            "optimal": int(np.sum(res.status == "optimal")),
            "within_1pct": int(np.sum(r >= 0.99)),
            "ratio_ge_0.95": int(np.sum(r >= 0.95)),
            "median_lower_over_upper": float(np.median(r)) if len(r) else None,
            "median_time_s": float(np.median(t)) if len(t) else None,
            "p90_time_s": float(np.percentile(t, 90)) if len(t) else None,
            "attack_s": round(attack_s, 1), "ratios": [None if not np.isfinite(v) else round(float(v), 5)
                                                        for v in ratio], "summary": s}


def _solve(args, model, x, y, norm, dist, xadv, idx, progress):
    """One method (``args.method``) on the points: ``(records, method label)``."""
    if args.method == "bab":
        from robcurves.exact.bab import BabConfig, bab_brackets

        from robcurves.exact.bab import BabSettings

        low = getattr(args, "low_start_value", None)
        it = getattr(args, "iters_int_value", None)
        cfg = BabConfig(time_limit=args.time_limit, rel_tol=args.rel_tol, strategy=args.strategy,
                        low_start=None if low is None else {norm: low}, bab=BabSettings(iters_intermediate=it))
        res = bab_brackets(model, x, y, norm, cfg, attack_distances=dist, x_adv=xadv, indices=idx,
                           progress=progress)
        extra = ([] if low is None else [f"low_start {low:g}"]) + ([] if it is None else [f"iters_intermediate {it}"])
        return res, "bab" if not extra else f"bab ({', '.join(extra)})"
    from robcurves.exact import ExactConfig, milp_brackets

    cfg = ExactConfig(time_limit=args.time_limit, tightening=args.tightening.split(","),
                      method=args.milp_strategy, heuristics=args.heuristics)
    res = milp_brackets(model, x, y, norm, cfg, attack_distances=dist, x_adv=xadv, indices=idx,
                        progress=progress)
    return res, f"milp ({args.milp_strategy}{', +heur' if args.heuristics else ''})"


def run_case(case: str, norm: str, args) -> dict:
    """One (case, norm, method) row; ``args.method`` is one method."""
    model, x, y, idx = case_data(case, args.points, args, args.first)
    dist, xadv, t_attack = attack_results(case, norm, model, x, y, args)
    if case == "fc1" and norm == "linf" and args.method == args.methods[0]:
        xa, ya = mnist_test()
        rep = fc1_report(model, x, y, dist, (xa[5000:], ya[5000:]))
        print(f"  fc1 report: {json.dumps(rep)}", flush=True)
    progress = (lambda s: print(f"  {case} {args.method} {s}", flush=True))
    if args.warmup > 0:
        # Compile the bound functions once, untimed (the workflow pays it once per shard);
        # the same for both methods, on the last point.
        w = argparse.Namespace(**{**vars(args), "time_limit": args.warmup})
        t0 = time.perf_counter()
        _solve(w, model, x[-1:], y[-1:], norm, dist[-1:], xadv[-1:], idx[-1:], None)
        print(f"  warm-up (point {idx[-1]}, {args.warmup:g} s limit): {time.perf_counter() - t0:.1f} s", flush=True)
    res, method = _solve(args, model, x, y, norm, dist, xadv, idx, progress)
    if case.startswith("fc1"):
        case = f"{case} ({_fc1_tag(args)})"
    if args.out_dir:
        from robcurves.exact import save_results

        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        low = getattr(args, "low_start_value", None)
        tag = args.method if low is None else f"{args.method}{low:g}"
        it = getattr(args, "iters_int_value", None)
        tag += "" if it is None else f"_it{it}"
        save_results(Path(args.out_dir) / f"{case.replace(' ', '_')}_{norm}_{tag}_{args.first}.npz", res)
    return bench_row(res, case, norm, method, args.time_limit, t_attack)


def run_thresholds(case: str, args) -> list[dict]:
    from robcurves.exact.bab.thresholds import robust_at_thresholds, union_robust_error_interval

    model, x, y, idx = case_data(case, args.points, args, args.first)
    pairs = [(p.split(":")[0], float(p.split(":")[1])) for p in args.thresholds.split(",")]
    rows, results = [], []
    t_all = time.perf_counter()
    for norm, eps in pairs:
        dist, xadv, t_attack = attack_results(case, norm, model, x, y, args)
        t0 = time.perf_counter()
        r = robust_at_thresholds(model, x, y, norm, [eps], dist, xadv, time_limit=args.threshold_time,
                                 indices=idx, progress=lambda s: print(f"  {case} {s}", flush=True))
        lo, hi = r.robust_error_interval()[0]
        rows.append({"case": case, "norm": norm, "method": "bab thresholds", "points": int(len(x)), "eps": eps,
                     "robust_error_lower": float(lo), "robust_error_upper": float(hi),
                     "width_pp": 100 * float(hi - lo), "counts": r.to_json()["counts"],
                     "seconds": round(time.perf_counter() - t0, 1), "attack_s": round(t_attack, 1),
                     "stats": r.info["stats"]})
        results.append(r)
        print(rows[-1], flush=True)
    lo, hi = union_robust_error_interval(results)
    rows.append({"case": case, "norm": "union(" + ",".join(n for n, _ in pairs) + ")", "method": "bab thresholds",
                 "points": int(len(x)), "robust_error_lower": lo, "robust_error_upper": hi,
                 "width_pp": 100 * (hi - lo), "seconds": round(time.perf_counter() - t_all, 1),
                 "attack_s": round(sum(r_["attack_s"] for r_ in rows), 1)})
    return rows


def fmt_row(r: dict) -> str:
    def f(v, p=3):
        return "-" if v is None else (f"{v:.{p}g}" if isinstance(v, float) else str(v))

    return (f"| {r['case']} | {r['norm']} | {r['method']} | {r['points']} | {r['time_limit_s']:g} | "
            f"{r['optimal']}/{r['classified']} | {r['within_1pct']} | {r['ratio_ge_0.95']} | "
            f"{f(r['median_lower_over_upper'])} | {f(r['median_time_s'])} | {f(r['p90_time_s'])} |")


HEADER = ("| case | norm | method | points | limit (s) | optimal | within 1% | lower/upper >= 0.95 | "
          "median lower/upper | median s | p90 s |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="mmr,fc1")
    p.add_argument("--norms", default="linf")
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--first", type=int, default=0, help="skip this many points (to split a run over processes)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per point (every radius it tries)")
    p.add_argument("--method", default="bab",
                   help="bab, milp, or both (bab,milp): one row per method, run one after the other on the same "
                        "points and attack warm starts (the MILP skips l2, which HiGHS cannot solve)")
    p.add_argument("--rel-tol", type=float, default=0.01, help="bab: stop a point at this relative bracket")
    p.add_argument("--strategy", default="top_down", choices=["top_down", "bisect"], help="bab: the radius search")
    p.add_argument("--milp-strategy", default="auto", choices=["minimize", "bisect", "auto"])
    p.add_argument("--tightening", default="interval,symbolic")
    p.add_argument("--heuristics", action="store_true", help="milp: switch HiGHS's primal heuristics on")
    p.add_argument("--epochs", type=int, default=12,
                   help="training epochs of the fc1 networks (12: the croce model of benchmarks/README.md, exact stage 5)")
    p.add_argument("--fc1-training", default="mmr_at_linf",
                   help="plain, or a robcurves.training method such as mmr_at_linf (Croce et al.'s fc1 models)")
    p.add_argument("--fc1-eps", type=float, default=0.1, help="training radius of --fc1-training")
    p.add_argument("--fc1-recipe", default="croce", choices=sorted(FC1_RECIPES),
                   help="batch size and MMR/AT options of --fc1-training: croce (the fc1 Croce et al. verified: "
                        "lambda 1, gamma eps, PGD-40, batch 128) or v1 (the first sessions': the training defaults, "
                        "batch 64)")
    p.add_argument("--thresholds", help="norm:eps,... : fixed thresholds instead of minimal distances")
    p.add_argument("--threshold-time", type=float, default=10.0, help="branch and bound seconds per open pair")
    p.add_argument("--low-start", help="bab in l1/l2: comma-separated fractions of the attack's distance where "
                                       "the bounds phase starts, one bab row each (default: search.LOW_START)")
    p.add_argument("--iters-intermediate", help="bab: comma-separated alpha-CROWN steps for the root's "
                   "intermediate bounds (0 = CROWN), one bab row per value (default: the norm's default)")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="seconds: solve the last point once, untimed, before the timed run (compiles the bounds)")
    p.add_argument("--cache", help="keep attack results here (shared by side-by-side runs)")
    p.add_argument("--model-cache", default=str(ROOT / "results" / "benchmarks"),
                   help="trained fc1 models are kept (and looked up) here")
    p.add_argument("--train-only", action="store_true", help="train (or load) the fc1 model of the cases and stop")
    p.add_argument("--out", help="write the rows as JSON here")
    p.add_argument("--out-dir", help="also save the per-point records (.npz) here")
    args = p.parse_args(argv)
    if not (REF / "mnist").is_dir():
        print(f"reference data missing at {REF}", file=sys.stderr)
        return 2
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows = []
    if args.train_only:
        for case in args.cases.split(","):
            if case.startswith("fc1"):
                case_data(case, 1, args)
        return 0
    if args.thresholds:
        for case in args.cases.split(","):
            rows += run_thresholds(case, args)
    else:
        methods = args.method.split(",")
        if set(methods) - {"bab", "milp"}:
            raise SystemExit(f"--method: bab, milp or bab,milp, got {args.method!r}")
        for case in args.cases.split(","):
            for norm in args.norms.split(","):
                lows = [None] if not args.low_start or norm == "linf" else [float(v) for v in args.low_start.split(",")]
                its = [None] if not args.iters_intermediate else [int(v) for v in args.iters_intermediate.split(",")]
                runs = [(m, low, it) for m in methods for low in (lows if m == "bab" else [None])
                        for it in (its if m == "bab" else [None])]
                for method, low, it in runs:
                    if method == "milp" and norm == "l2" and len(methods) > 1:
                        continue
                    print(f"== {case} {norm} {method}{'' if low is None else f' low_start {low:g}'}"
                          f"{'' if it is None else f' iters_intermediate {it}'}  "
                          f"({time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.1f})", flush=True)
                    row_args = {**vars(args), "method": method, "methods": methods, "low_start_value": low,
                                "iters_int_value": it}
                    rows.append(run_case(case, norm, argparse.Namespace(**row_args)))
                    rows[-1]["load_1min"] = round(os.getloadavg()[0], 1)
                    print(HEADER)
                    print(fmt_row(rows[-1]), flush=True)
        print()
        print(HEADER)
        for r in rows:
            print(fmt_row(r))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2, default=lambda v: None if isinstance(v, float) and
                                             not math.isfinite(v) else v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
