"""Benchmark: our minimal-norm attacks against foolbox 3.3.4, same models, same points.

For every (model, norm) it runs each of our methods alone and the default ensemble
(the per-point minimum over :func:`robcurves.attacks.default_methods`; its time is the
sum of its members' times, which is exactly the work the ensemble does), then the
matching foolbox attacks in their own venv (see ``benchmarks/foolbox_venv.sh``). Every
distance, ours and foolbox's, is re-verified with the project's model and measured in
float32 in its norm; a candidate that does not flip the label counts as +inf.

Per (model, norm, method) it prints points/s, the median distance, the robust error at
the usual thresholds and an optimality score in the spirit of AttackBench (Cinà et al.
2024): the area under the method's robust-accuracy curve RA(eps) = P(d > eps) on
[0, eps_max] divided into the same area for the per-point best distance found by any
method, ours or foolbox's (eps_max: the largest finite per-point best). 1.0 means the
method matched the best on every point; smaller is worse.

Models:
  mmr_mnist   the MMR-Universal MNIST network of ../shared/reference (first N test points)
  digits_st   a standard-trained LeNet-small on scikit-learn digits (the default run's ST)
  digits_at   an l-inf adversarially trained LeNet-small on digits (eps = 0.1)
The digits models are taken from results/models/digits/ when the workflow made them,
otherwise trained here with the default run's settings and cached under
results/benchmarks/models/.

Example:
  bash benchmarks/foolbox_venv.sh      # once
  TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/attacks.py --models mmr_mnist digits_st digits_at --n 500
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

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
CACHE = ROOT / "results" / "benchmarks"

THRESHOLDS = {  # robust error is reported at these eps, per norm
    "mmr_mnist": {"linf": [0.1], "l2": [0.3, 2.0], "l1": [1.0, 10.0]},
    "digits": {"linf": [0.05, 0.1], "l2": [0.3, 1.0], "l1": [1.0, 3.0]},
}

FOOLBOX_ATTACKS = {
    "linf": ["linf_fmn", "linf_pgd_bisection"],
    "l2": ["l2_fmn", "l2_cw", "l2_ddn"],
    "l1": ["l1_fmn", "l1_ead"],
}


# ----------------------------------------------------------------------------- models
def load_mmr_mnist(n: int):
    from robcurves.data import read_idx
    from robcurves.models import convert_mat

    mat = REFERENCE / "mmr-universal" / "mmr_univ_mnist_gammas_1.0_0.175_lambdas_3.0_12.0.mat"
    if not mat.exists():
        raise FileNotFoundError(f"{mat} is missing: the MMR-Universal benchmark needs ../shared/reference")
    model = convert_mat(mat)
    x = read_idx(REFERENCE / "mnist" / "t10k-images-idx3-ubyte.gz")[:n].astype(np.float32) / 255.0
    y = read_idx(REFERENCE / "mnist" / "t10k-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    return model, x.reshape(-1, 28, 28, 1), y


def load_digits_model(kind: str, n: int):
    from robcurves.data import load_sklearn_digits
    from robcurves.models import lenet_small, load_model, save_model
    from robcurves.training import train_model

    train, test = load_sklearn_digits(test_size=0.3, seed=0)
    wf_name = {"st": "digits_st", "at": "digits_at_linf"}[kind]
    wf_path = ROOT / "results" / "models" / "digits" / wf_name / "model.keras"
    path = CACHE / "models" / f"digits_{kind}.keras"
    if wf_path.exists():
        model, _ = load_model(wf_path)
    elif path.exists():
        model, _ = load_model(path)
    else:
        print(f"training digits_{kind} (cached at {path})", file=sys.stderr, flush=True)
        model = lenet_small(train.input_shape, train.n_classes, seed=0)
        kw = {"eps": 0.1} if kind == "at" else {}
        made_by = train_model(model, train, "st" if kind == "st" else "at_linf", epochs=40, batch_size=64,
                              learning_rate=0.002, seed=0, **kw)
        save_model(model, path, {"dataset": "digits", "input_shape": list(train.input_shape),
                                 "bounds": [0.0, 1.0], "n_classes": train.n_classes, "made_by": made_by})
    return model, test.x[:n], test.y[:n]


def load_benchmark_model(name: str, n: int):
    if name == "mmr_mnist":
        return load_mmr_mnist(n)
    if name == "digits_st":
        return load_digits_model("st", n)
    if name == "digits_at":
        return load_digits_model("at", n)
    raise ValueError(f"unknown benchmark model {name!r}")


#: layer kinds of the network description that foolbox_worker.LayerNet builds
FOOLBOX_LAYERS = ("conv2d", "dense", "relu", "flatten", "reshape", "max_pooling2d", "average_pooling2d",
                  "global_average_pooling2d")


def export_layers(model) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The model as a plain layer list plus weights, from its network description.

    A chain of the kinds in :data:`FOOLBOX_LAYERS` (fused activations, BatchNorm and
    normalisation already split or folded by the description); anything else is rejected
    by name.
    """
    from robcurves.network import Network, from_keras

    net = model if isinstance(model, Network) else from_keras(model)
    if not net.is_chain:
        raise ValueError("the foolbox export needs a chain of layers (no residual additions)")
    layers, arrays = [], {}
    for node in net.nodes[1:]:
        layer, kind = node.layer, node.layer.kind
        if kind not in FOOLBOX_LAYERS:
            raise ValueError(f"layer {node.name!r} ({kind}) is not supported by the export; supported: "
                             f"{', '.join(FOOLBOX_LAYERS)}")
        i = len(layers)
        entry: dict = {"kind": kind}
        if kind in ("conv2d", "dense"):
            w = layer.numpy("W").astype(np.float32)
            arrays[f"w{i}"] = w
            arrays[f"b{i}"] = (layer.numpy("b") if "b" in layer.params else np.zeros(w.shape[-1])).astype(np.float32)
        if kind in ("conv2d", "max_pooling2d", "average_pooling2d"):
            if layer.padding_name is None:
                raise ValueError(f"layer {node.name!r} ({kind}): pads {layer.pads} are not TensorFlow's same/valid")
            entry.update(strides=list(layer.strides), padding=layer.padding_name)
        if kind in ("max_pooling2d", "average_pooling2d"):
            entry["pool"] = list(layer.pool)
        if kind == "reshape":
            entry["target"] = list(layer.target)
        layers.append(entry)
    return layers, arrays


# ----------------------------------------------------------------------------- metrics
def robust_error(d: np.ndarray, eps: float) -> float:
    return float(np.mean(d <= eps))


def area_under_ra(d: np.ndarray, eps_max: float) -> float:
    """Integral over [0, eps_max] of RA(eps) = P(d > eps) = mean(min(d, eps_max))."""
    return float(np.mean(np.minimum(d, eps_max)))


def optimality(d: np.ndarray, best: np.ndarray) -> float:
    finite = best[np.isfinite(best)]
    eps_max = float(finite.max()) if finite.size else 0.0
    a_best, a = area_under_ra(best, eps_max), area_under_ra(d, eps_max)
    return 1.0 if a == 0 else a_best / a


# ----------------------------------------------------------------------------- runs
def ours_label(m: dict) -> str:
    return "ours " + m["name"] + "".join(f" {k}={v}" for k, v in m.items() if k != "name")


def ensemble_label(methods: list[dict]) -> str:
    return "ours DEFAULT ensemble (" + " + ".join(ours_label(m)[5:] for m in methods) + ")"


def run_ours(model, x, y, norm: str, batch_size: int, seed: int, methods: list[dict] | None):
    from robcurves.attacks import default_methods, minimal_perturbations

    ensemble = default_methods(norm)
    singles = methods if methods is not None else ensemble
    # every method appearing in the ensemble is run once; the ensemble reuses them
    plan, seen = [], set()
    for m in [*singles, *ensemble]:
        key = json.dumps(m, sort_keys=True)
        if key not in seen:
            seen.add(key)
            plan.append(m)
    rows = {}
    for m in plan:
        t0 = time.perf_counter()
        res = minimal_perturbations(model, x, y, norm, methods=[m], batch_size=batch_size, seed=seed,
                                    progress=False)
        dt = time.perf_counter() - t0
        rows[json.dumps(m, sort_keys=True)] = (ours_label(m), res.distances, dt)
    out = {label: (d, dt) for label, d, dt in rows.values()}
    members = [rows[json.dumps(m, sort_keys=True)] for m in ensemble]
    d_ens = np.min(np.stack([r[1] for r in members]), axis=0)
    out[ensemble_label(ensemble)] = (
        d_ens, sum(r[2] for r in members))
    return out


def run_foolbox(model, x, y, norm: str, venv: Path, batch_size: int, options: dict, only=None):
    from robcurves.attacks import verify_adversarial

    py = venv / "bin" / "python"
    if not py.exists():
        raise FileNotFoundError(f"{py} not found: run `bash benchmarks/foolbox_venv.sh` first")
    layers, arrays = export_layers(model)
    attacks = [a for a in FOOLBOX_ATTACKS[norm] if only is None or a in only]
    if not attacks:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, x=x, y=y, spec=np.array(json.dumps({"layers": layers, "bounds": [0.0, 1.0]})),
                 options=np.array(json.dumps({"batch_size": batch_size, **options})), **arrays)
        cmd = [str(py), str(Path(__file__).with_name("foolbox_worker.py")), str(src), str(dst), *attacks]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)
        subprocess.run(cmd, check=True, env=env)
        with np.load(dst, allow_pickle=False) as f:
            timing = json.loads(str(f["timing"]))
            advs = {a: f[a] for a in attacks}
    z = np.asarray(model(x, training=False))
    clean_wrong = np.argmax(z, axis=1) != y
    out = {}
    for a in attacks:
        ok, d = verify_adversarial(model, x, advs[a], y, norm)
        d = np.where(clean_wrong, 0.0, np.where(ok, d, np.inf)).astype(np.float32)
        out[f"foolbox {a}"] = (d, timing[a])
    return out


def table(model_name: str, norm: str, results: dict, n: int, thresholds: list[float], best=None) -> list[str]:
    if best is None:
        best = np.min(np.stack([d for d, _ in results.values()]), axis=0)
    head = (f"| {model_name} | {norm} | method | points/s | median | "
            + " | ".join(f"RE@{t:g}" for t in thresholds) + " | optimality | not found |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, (d, dt) in results.items():
        lines.append(
            f"| {model_name} | {norm} | {label} | {n / dt:.1f} | {np.median(d):.4f} | "
            + " | ".join(f"{robust_error(d, t):.3f}" for t in thresholds)
            + f" | {optimality(d, best):.4f} | {int(np.sum(~np.isfinite(d)))} |"
        )
    return lines


def report(paths: list[Path]) -> list[str]:
    """Tables from saved runs: each method's distances and times, the current default
    ensemble recomputed as the per-point minimum of its members (time: their sum)."""
    from robcurves.attacks import default_methods

    dists, times, n_points = {}, {}, {}
    for p in paths:
        with np.load(p, allow_pickle=False) as f:
            t = json.loads(str(f["times"]))
            for k in f.files:
                if k == "times":
                    continue
                model_name, norm, label = k.split("__", 2)
                if label.startswith("ours DEFAULT"):
                    continue
                dists[(model_name, norm, label)] = f[k]
                times[(model_name, norm, label)] = t[f"{model_name}/{norm}/{label}"]
                n_points[model_name] = len(f[k])
    lines = []
    for model_name, norm in dict.fromkeys((m, n) for m, n, _ in dists):
        members = default_methods(norm)
        keys = [(model_name, norm, ours_label(m)) for m in members]
        results = {}
        here = sorted((label for m, n, label in dists if (m, n) == (model_name, norm)),
                      key=lambda lb: (lb.startswith("foolbox"), lb))
        for label in (lb for lb in here if not lb.startswith("foolbox")):
            results[label] = (dists[(model_name, norm, label)], times[(model_name, norm, label)])
        if all(k in dists for k in keys):
            results[ensemble_label(members)] = (np.min(np.stack([dists[k] for k in keys]), axis=0),
                                                sum(times[k] for k in keys))
        for label in (lb for lb in here if lb.startswith("foolbox")):
            results[label] = (dists[(model_name, norm, label)], times[(model_name, norm, label)])
        # optimality against everything that was run, ours and foolbox's
        everything = np.min(np.stack([d for (m, n, _), d in dists.items() if (m, n) == (model_name, norm)]), axis=0)
        thr = THRESHOLDS["mmr_mnist" if model_name == "mmr_mnist" else "digits"][norm]
        lines += table(model_name, norm, results, n_points[model_name], thr, best=everything) + [""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mmr_mnist", "digits_st", "digits_at"])
    ap.add_argument("--norms", nargs="+", default=["linf", "l2", "l1"])
    ap.add_argument("--n", type=int, default=500, help="points per model (the first n test points)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=None,
                    help='JSON list of our methods to run alone, e.g. \'[{"name": "fmn"}]\' (default: the ensemble members)')
    ap.add_argument("--no-foolbox", action="store_true")
    ap.add_argument("--foolbox-attacks", nargs="+", default=None,
                    help=f"run only these foolbox attacks (default: all of {sorted(a for v in FOOLBOX_ATTACKS.values() for a in v)})")
    ap.add_argument("--foolbox-venv", type=Path, default=Path(__file__).with_name(".venv-foolbox"))
    ap.add_argument("--foolbox-options", default="{}",
                    help='JSON per-attack options, e.g. \'{"l2_cw": {"steps": 1000}}\'')
    ap.add_argument("--save", type=Path, default=None, help="also write the table (markdown) and distances here")
    ap.add_argument("--report", type=Path, nargs="+", default=None,
                    help="no runs: rebuild the tables from saved .npz files (later files win), with the "
                         "current default ensemble composed from its saved members")
    args = ap.parse_args(argv)
    if args.report:
        print("\n".join(report(args.report)))
        return 0

    from robcurves.norms import parse_norm

    methods = json.loads(args.methods) if args.methods else None
    all_lines = [f"command: {' '.join(['benchmarks/attacks.py', *(argv if argv is not None else sys.argv[1:])])}",
                 f"n = {args.n} points per model, batch size {args.batch_size}, seed {args.seed}", ""]
    dump, times = {}, {}
    for model_name in args.models:
        model, x, y = load_benchmark_model(model_name, args.n)
        thr = THRESHOLDS["mmr_mnist" if model_name == "mmr_mnist" else "digits"]
        for norm in (parse_norm(v).name for v in args.norms):
            print(f"== {model_name} {norm}", file=sys.stderr, flush=True)
            results = run_ours(model, x, y, norm, args.batch_size, args.seed, methods)
            if not args.no_foolbox:
                results.update(run_foolbox(model, x, y, norm, args.foolbox_venv, args.batch_size,
                                           json.loads(args.foolbox_options), args.foolbox_attacks))
            lines = table(model_name, norm, results, len(x), thr[norm])
            print("\n".join(lines), flush=True)
            all_lines += lines + [""]
            dump.update({f"{model_name}/{norm}/{k}": d for k, (d, _) in results.items()})
            times.update({f"{model_name}/{norm}/{k}": t for k, (_, t) in results.items()})
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.with_suffix(".md").write_text("\n".join(all_lines) + "\n")
        np.savez_compressed(args.save.with_suffix(".npz"), times=np.array(json.dumps(times)),
                            **{k.replace("/", "__"): v for k, v in dump.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
