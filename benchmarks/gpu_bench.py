"""GPU benchmark: our presets on 10,000 points, JAX and PyTorch backends, one table.

Run by ``benchmarks/gpu.sh`` on a borrowed GPU machine (no TensorFlow, no Snakemake, no
registry): ``KERAS_BACKEND`` is set per backend by the script, which starts this once
per backend with ``--part`` and then once more with ``--table`` to print the table.

Rows: the MMR-Universal MNIST network of the reference data (the first ``--n`` MNIST
test points) in linf, l2 and l1 with the ``default`` and ``fast`` presets, and a
CIFAR-sized LeNet-small (32x32x3, random weights, seed 0) on ``--n`` random points
(labelled by the model itself, so every point is attacked), default preset, linf.
Every row is timed after a warm-up call on a few points (compiling is a
once-per-process cost). ``--budget-s`` stops starting new rows when the time is spent
(the table says which rows were skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    env = os.environ.get("ROBCURVES_REFERENCE")
    return Path(env) if env else ROOT.parent / "shared" / "reference"


def load_mmr(n: int):
    from robcurves.data import read_idx
    from robcurves.models import convert_mat

    ref = reference_dir()
    model = convert_mat(ref / "mmr-universal" / "mmr_univ_mnist_gammas_1.0_0.175_lambdas_3.0_12.0.mat")
    x = read_idx(ref / "mnist" / "t10k-images-idx3-ubyte.gz")[:n].astype(np.float32) / 255.0
    y = read_idx(ref / "mnist" / "t10k-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    return model, x.reshape(-1, 28, 28, 1), y


def load_lenet_cifar(n: int):
    from robcurves import backend as B
    from robcurves.attacks import predict_logits
    from robcurves.models import lenet_small

    model = lenet_small((32, 32, 3), 10, seed=0)
    x = np.random.default_rng(0).uniform(0.0, 1.0, size=(n, 32, 32, 3)).astype(np.float32)
    y = np.argmax(predict_logits(model, x), axis=1).astype(np.int64)
    del B
    return model, x, y


def part(out: Path, n: int, batch_size: int, budget_s: float, strengths) -> None:
    from robcurves import backend as B
    from robcurves.attacks import minimal_perturbations

    B.configure_devices(memory_growth=True)
    t_start = time.perf_counter()
    rows = []
    plan = [("mmr_mnist", norm, s) for s in strengths for norm in ("linf", "l2", "l1")]
    plan.append(("lenet_cifar_random", "linf", "default"))
    cache = {}
    for model_name, norm, strength in plan:
        if time.perf_counter() - t_start > budget_s:
            rows.append({"model": model_name, "norm": norm, "strength": strength, "skipped": "time budget spent"})
            continue
        if model_name not in cache:
            cache[model_name] = load_mmr(n) if model_name == "mmr_mnist" else load_lenet_cifar(n)
        model, x, y = cache[model_name]
        kw = dict(strength=strength, batch_size=batch_size, progress=False)
        t0 = time.perf_counter()
        minimal_perturbations(model, x[:64], y[:64], norm, **kw)  # warm-up: compiling
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = minimal_perturbations(model, x, y, norm, **kw)
        dt = time.perf_counter() - t0
        d = res.distances
        rows.append({"model": model_name, "norm": norm, "strength": strength, "n": int(len(x)), "seconds": dt,
                     "warmup_s": warm, "points_per_s": len(x) / dt,
                     "gradients_per_point": res.config["gradients_per_point"]["mean"],
                     "median": float(np.median(d)), "not_found": int(np.sum(~np.isfinite(d))),
                     "misclassified": int(np.sum(d == 0))})
        print(f"[{B.name()}] {model_name} {norm} {strength}: {len(x)} points in {dt:.1f} s "
              f"(warm-up {warm:.1f} s), {rows[-1]['gradients_per_point']:.0f} gradients/point", flush=True)
    device = "cpu"
    try:
        if B.name() == "jax":
            import jax

            device = str(jax.devices()[0])
        elif B.name() == "torch":
            import torch

            device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception as exc:  # noqa: BLE001 - only for the table's label
        device = f"unknown ({exc})"
    out.write_text(json.dumps({"backend": B.name(), "device": device, "rows": rows}))


def table(parts: list[Path]) -> str:
    lines = ["| backend | device | model | norm | preset | points | seconds | points/s | gradients/point | median | not found |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    totals = {}
    for p in parts:
        if not p.exists():
            lines.append(f"| (missing: {p.name}) | | | | | | | | | | |")
            continue
        rec = json.loads(p.read_text())
        for r in rec["rows"]:
            if "skipped" in r:
                lines.append(f"| {rec['backend']} | {rec['device']} | {r['model']} | {r['norm']} | {r['strength']} | "
                             f"skipped: {r['skipped']} | | | | | |")
                continue
            key = (rec["backend"], r["model"], r["strength"])
            totals[key] = totals.get(key, 0.0) + r["seconds"]
            lines.append(f"| {rec['backend']} | {rec['device']} | {r['model']} | {r['norm']} | {r['strength']} | {r['n']} | "
                         f"{r['seconds']:.1f} | {r['points_per_s']:.0f} | {r['gradients_per_point']:.0f} | "
                         f"{r['median']:.4f} | {r['not_found']} |")
    lines.append("")
    for (b, m, s), t in totals.items():
        lines.append(f"- {b}, {m}, {s}: all norms run in {t:.1f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", type=Path, help="run the rows for the active backend, write JSON here")
    ap.add_argument("--table", type=Path, nargs="+", help="print the table of these parts")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=10000)
    ap.add_argument("--budget-s", type=float, default=200.0)
    ap.add_argument("--strengths", nargs="+", default=["default", "fast"])
    args = ap.parse_args(argv)
    if args.part:
        part(args.part, args.n, args.batch_size, args.budget_s, args.strengths)
    if args.table:
        print(table(args.table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
