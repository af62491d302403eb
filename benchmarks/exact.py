"""Benchmark of the exact stage (robcurves.exact); not a timed test.

Cases (``--cases``, comma-separated):

- ``mmr``: the MMR-Universal MNIST network of ``../shared/reference/`` (Croce & Hein 2020)
  on the first ``--points`` MNIST test points;
- ``fc1``: a one-hidden-layer ReLU network (1,024 units) trained here on the first 5,000
  MNIST test images, evaluated on the next ``--points`` (indices 5000, 5001, ...);
- ``fc1-digits``: the same architecture trained on the default data (scikit-learn digits),
  evaluated on the first ``--points`` digits test points.

Every point is warm-started with the project's attack (robcurves.attacks, default methods).
Prints one table row per (case, norm) and, with ``--out``, writes the rows as JSON.

    python benchmarks/exact.py --cases mmr --points 10 --time-limit 60 --norms linf
"""

from __future__ import annotations

import argparse
import json
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


def train_fc1(x: np.ndarray, y: np.ndarray, n_classes: int, epochs: int, seed: int = 0,
              training: str = "plain", eps: float = 0.1):
    """fc1 (1,024 hidden units). ``training``: ``plain`` (Keras fit, cross-entropy) or a
    method of :mod:`robcurves.training` (e.g. ``mmr_at_linf``, as Croce et al. trained the
    fc1 networks they verified with MIPVerify) at radius ``eps``."""
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
        rec = train_model(m, Dataset(x, y, "bench", "train", [str(c) for c in range(n_classes)], "benchmark"), training, epochs=epochs, batch_size=64,
                          learning_rate=1e-3, seed=seed, eps=None if training == "st" else eps)
        print(f"  fc1 {training} eps {eps}: train accuracy {rec['train_accuracy']:.4f} in {rec['time_s']:.0f} s",
              flush=True)
    return m


def case_data(case: str, n: int, epochs: int, training: str = "plain", eps: float = 0.1, first: int = 0):
    if case == "mmr":
        from robcurves.models import convert_mat

        x, y = mnist_test()
        return convert_mat(MMR), x[first:first + n], y[first:first + n], np.arange(first, first + n)
    if case == "fc1":
        x, y = mnist_test()
        m = train_fc1(x[:5000], y[:5000], 10, epochs, training=training, eps=eps)
        a = 5000 + first
        return m, x[a:a + n], y[a:a + n], np.arange(a, a + n)
    if case == "fc1-digits":
        from robcurves.data import load_sklearn_digits

        tr, te = load_sklearn_digits()
        m = train_fc1(tr.x, tr.y, 10, epochs, training=training, eps=eps)
        return m, te.x[first:first + n], te.y[first:first + n], np.arange(first, first + n)
    raise SystemExit(f"unknown case {case!r}")


def run_case(case: str, norm: str, args) -> dict:
    from robcurves import attacks
    from robcurves.exact import ExactConfig, minimal_perturbations

    model, x, y, idx = case_data(case, args.points, args.epochs, args.fc1_training, args.fc1_eps, args.first)
    t0 = time.perf_counter()
    att = attacks.minimal_perturbations(model, x, y, norm, progress=False)
    t_attack = time.perf_counter() - t0
    cfg = ExactConfig(time_limit=args.time_limit, tightening=args.tightening.split(","), method=args.method,
                      heuristics=args.heuristics)
    res = minimal_perturbations(model, x, y, norm, cfg, attack_distances=att.distances, x_adv=att.x_adv,
                                indices=idx, progress=(lambda s: print(f"  {case} {s}", flush=True)))
    s = res.summary()
    if case.startswith("fc1"):
        case = f"{case} ({args.fc1_training})"
    row = {"case": case, "norm": norm, "points": int(len(x)), "time_limit_s": args.time_limit,
           "method": args.method + (" +heur" if args.heuristics else ""), "tightening": args.tightening, "attack_s": round(t_attack, 1), **s}
    if args.out_dir:
        from robcurves.exact import save_results

        save_results(Path(args.out_dir) / f"{case}_{norm}.npz", res)
    return row


def fmt_row(r: dict) -> str:
    def f(v, p=3):
        return "-" if v is None else (f"{v:.{p}g}" if isinstance(v, float) else str(v))

    return (f"| {r['case']} | {r['norm']} | {r['points']} | {r['time_limit_s']:g} | {r['method']} | "
            f"{r['optimal']}/{r['n']} | {r['time_limit']} | {r['no_adversarial_in_domain']} | "
            f"{f(r['median_time_s'])} | {f(r['p90_time_s'])} | {f(r['median_lower_over_upper'])} | "
            f"{f(r['attack_within_1pct'])} |")


HEADER = ("| case | norm | points | limit (s) | method | optimal | time-outs | no adv. in domain | "
          "median s | p90 s | median lower/upper | attack within 1% |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="mmr,fc1")
    p.add_argument("--norms", default="linf")
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--first", type=int, default=0, help="skip this many points (to split a run over processes)")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds per point")
    p.add_argument("--method", default="auto", choices=["minimize", "bisect", "auto"])
    p.add_argument("--tightening", default="interval,symbolic")
    p.add_argument("--heuristics", action="store_true", help="switch HiGHS's primal heuristics on (off by default)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs of the fc1 networks")
    p.add_argument("--fc1-training", default="plain",
                   help="plain, or a robcurves.training method such as mmr_at_linf (Croce et al.'s fc1 models)")
    p.add_argument("--fc1-eps", type=float, default=0.1, help="training radius of --fc1-training")
    p.add_argument("--out", help="write the rows as JSON here")
    p.add_argument("--out-dir", help="also save the per-point records (.npz) here")
    args = p.parse_args(argv)
    if "mmr" in args.cases or "fc1," in args.cases + ",":
        if not (REF / "mnist").is_dir():
            print(f"reference data missing at {REF}", file=sys.stderr)
            return 2
    rows = []
    for case in args.cases.split(","):
        for norm in args.norms.split(","):
            print(f"== {case} {norm}", flush=True)
            rows.append(run_case(case, norm, args))
            print(HEADER)
            print(fmt_row(rows[-1]), flush=True)
    print()
    print(HEADER)
    for r in rows:
        print(fmt_row(r))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
