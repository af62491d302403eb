"""Benchmark: our minimal-norm attacks against foolbox 3.3.4, same model, same points.

For every norm it runs our presets (``robcurves.attacks.default_methods(norm, strength)``:
``default`` and ``fast``; ``--strengths`` adds ``thorough``) on the default Keras backend
(TensorFlow) and, each in its own process, on the backends of ``--backends`` (JAX), then
the matching foolbox attacks in their own venv (``benchmarks/foolbox_venv.sh``). Every
distance, ours and foolbox's, is re-verified with the project's model and measured in
float32 in its norm; a candidate that does not flip the label counts as +inf.

Per (norm, method) it prints points/s, the ratio of points/s to the peer (foolbox's FMN
for linf and l1, DDN for l2), gradients per point (ours: counted; foolbox's: its
configured steps), the median distance, the robust error at the usual thresholds, the
share of points where the method is worse than foolbox's FMN by more than 0.1%, and an
optimality score in the spirit of AttackBench (Cinà et al. 2024): the area under the
method's robust-accuracy curve RA(eps) = P(d > eps) on [0, eps_max] divided into the
same area for the per-point best distance found by any method, ours or foolbox's
(eps_max: the largest finite per-point best). 1.0 means the method matched the best on
every point. Our rows are timed after a warm-up call (tracing and compiling are a
once-per-process cost).

Models:
  mmr_mnist   the MMR-Universal MNIST network of ../shared/reference (first N test points)
  digits_st   a standard-trained LeNet-small on scikit-learn digits (the default run's ST)
  digits_at   an l-inf adversarially trained LeNet-small on digits (eps = 0.1)

Example (the issue's table; about 25 minutes on 2 busy cores):
  bash benchmarks/foolbox_venv.sh      # once
  .venv/bin/python benchmarks/attacks.py --n 1000 --foolbox-attacks linf_fmn l2_fmn l2_ddn l1_fmn \
      --save results/benchmarks/attacks_1000
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
def ours_label(m: "dict | list[dict]") -> str:
    if isinstance(m, list):  # an ensemble
        return "ours [" + "; ".join(ours_label(e)[5:] for e in m) + "]"
    return "ours " + m["name"] + "".join(f" {k}={v}" for k, v in m.items() if k != "name")


def _ours_once(model, x, y, norm, methods, strength, batch_size, seed):
    """(distances, seconds, gradients per point): warm-up calls first (tracing and
    compiling are a once-per-process cost, not per point), then the timed run."""
    from robcurves.attacks import minimal_perturbations

    kw = dict(methods=methods, strength=strength, batch_size=batch_size, seed=seed, progress=False)
    minimal_perturbations(model, x[: min(len(x), 16)], y[: min(len(y), 16)], norm, **kw)
    minimal_perturbations(model, x[: min(len(x), 40)], y[: min(len(y), 40)], norm, **kw)
    t0 = time.perf_counter()
    res = minimal_perturbations(model, x, y, norm, **kw)
    return res.distances, time.perf_counter() - t0, res.config["gradients_per_point"]["mean"]


def run_ours(model, x, y, norm: str, batch_size: int, seed: int, methods: list[dict] | None,
             strengths=("default", "fast")):
    """Our presets (and any single methods asked for): label -> (distances, seconds, gradients/point)."""
    from robcurves import backend

    out = {}
    for s in strengths:
        out[f"ours {s} ({backend.name()})"] = _ours_once(model, x, y, norm, None, s, batch_size, seed)
    for m in methods or []:
        out[ours_label(m)] = _ours_once(model, x, y, norm, m if isinstance(m, list) else [m], "default",
                                        batch_size, seed)
    return out


def run_backend_worker(backend: str, model_name: str, n: int, norms, batch_size: int, seed: int, strengths):
    """Our presets under another Keras backend, in a child process (Keras fixes its backend
    at import): per norm, label -> (distances, seconds, gradients/point)."""
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "out.npz"
        cmd = [sys.executable, str(Path(__file__)), "--worker", str(dst), "--models", model_name, "--n", str(n),
               "--norms", *norms, "--batch-size", str(batch_size), "--seed", str(seed), "--strengths", *strengths]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run(cmd, check=True, env=env)
        with np.load(dst, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            return {norm: {label: (f[f"{norm}__{i}"], t, g) for i, (label, t, g) in enumerate(rows)}
                    for norm, rows in meta.items()}


def worker(dst: Path, model_name: str, n: int, norms, batch_size: int, seed: int, strengths) -> None:
    model, x, y = load_benchmark_model(model_name, n)
    meta, arrays = {}, {}
    for norm in norms:
        rows = run_ours(model, x, y, norm, batch_size, seed, None, strengths)
        meta[norm] = [(label, t, g) for label, (_, t, g) in rows.items()]
        arrays.update({f"{norm}__{i}": d for i, (d, _, _) in enumerate(rows.values())})
    np.savez(dst, meta=np.array(json.dumps(meta)), **arrays)


def foolbox_runtime(venv: Path) -> str:
    py = venv / "bin" / "python"
    if not py.exists():
        return "foolbox venv missing"
    out = subprocess.run([str(py), "-c", "import foolbox, tensorflow as tf, numpy; "
                          "print(f'foolbox {foolbox.__version__}, its TensorFlow {tf.__version__}, NumPy {numpy.__version__}')"],
                         capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return out.stdout.strip() or out.stderr.strip()[-200:]


def run_foolbox(model, x, y, norm: str, venv: Path, batch_size: int, options: dict, only=None):
    from robcurves.attacks import predict_logits, verify_adversarial

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
    clean_wrong = np.argmax(predict_logits(model, x), axis=1) != y
    grads = timing.get("_gradients_per_point", {})
    out = {}
    for a in attacks:
        ok, d = verify_adversarial(model, x, advs[a], y, norm)
        d = np.where(clean_wrong, 0.0, np.where(ok, d, np.inf)).astype(np.float32)
        out[f"foolbox {a}"] = (d, timing[a], float(grads.get(a, float("nan"))))
    return out


PEER = {"linf": "foolbox linf_fmn", "l2": "foolbox l2_ddn", "l1": "foolbox l1_fmn"}


def table(model_name: str, norm: str, results: dict, n: int, thresholds: list[float], best=None) -> list[str]:
    """One row per method: points/s, its ratio to the peer's (foolbox's FMN for linf and
    l1, DDN for l2), gradients per point, quality (median, robust error, optimality
    against the per-point best of everything run) and the share of points where it is
    worse than foolbox's FMN by more than 0.1%."""
    if best is None:
        best = np.min(np.stack([d for d, _, _ in results.values()]), axis=0)
    peer = results.get(PEER[norm])
    fmn = results.get(f"foolbox {norm}_fmn")
    head = (f"| {model_name} | {norm} | method | points/s | x peer | gradients/point | median | "
            + " | ".join(f"RE@{t:g}" for t in thresholds) + " | optimality | worse than fb FMN | not found |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, (d, dt, g) in results.items():
        speed = n / dt
        ratio = f"{speed / (n / peer[1]):.2f}" if peer is not None else "-"
        worse = f"{float(np.mean(d > fmn[0] * (1 + 1e-3))):.3f}" if fmn is not None and label != PEER["linf"] \
            and not label.endswith("_fmn") else "-"
        lines.append(
            f"| {model_name} | {norm} | {label} | {speed:.1f} | {ratio} | {g:.0f} | {np.median(d):.4f} | "
            + " | ".join(f"{robust_error(d, t):.3f}" for t in thresholds)
            + f" | {optimality(d, best):.4f} | {worse} | {int(np.sum(~np.isfinite(d)))} |"
        )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mmr_mnist"])
    ap.add_argument("--norms", nargs="+", default=["linf", "l2", "l1"])
    ap.add_argument("--n", type=int, default=1000, help="points per model (the first n test points)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strengths", nargs="+", default=["default", "fast"], choices=["fast", "default", "thorough"])
    ap.add_argument("--backends", nargs="*", default=["jax"],
                    help="more Keras backends to time our presets on, each in its own process (default: jax)")
    ap.add_argument("--methods", default=None,
                    help='JSON list of our single methods (or ensembles: lists of methods) to run too, '
                         'e.g. \'[{"name": "fmn"}]\'')
    ap.add_argument("--no-foolbox", action="store_true")
    ap.add_argument("--foolbox-attacks", nargs="+", default=None,
                    help=f"run only these foolbox attacks (default: all of {sorted(a for v in FOOLBOX_ATTACKS.values() for a in v)})")
    ap.add_argument("--foolbox-venv", type=Path, default=Path(__file__).with_name(".venv-foolbox"))
    ap.add_argument("--foolbox-options", default="{}",
                    help='JSON per-attack options, e.g. \'{"l2_cw": {"steps": 1000}}\'')
    ap.add_argument("--save", type=Path, default=None, help="also write the table (markdown) and distances here")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from robcurves.norms import parse_norm

    norms = [parse_norm(v).name for v in args.norms]
    if args.worker:
        worker(args.worker, args.models[0], args.n, norms, args.batch_size, args.seed, args.strengths)
        return 0
    from robcurves import backend

    methods = json.loads(args.methods) if args.methods else None
    load = os.getloadavg()
    all_lines = [f"command: {' '.join(['benchmarks/attacks.py', *(argv if argv is not None else sys.argv[1:])])}",
                 f"n = {args.n} points per model, batch size {args.batch_size}, seed {args.seed}; our default "
                 f"backend {backend.requested()}; {foolbox_runtime(args.foolbox_venv)}; load average at the start "
                 f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs", ""]
    print("\n".join(all_lines), flush=True)
    dump, times = {}, {}
    for model_name in args.models:
        model, x, y = load_benchmark_model(model_name, args.n)
        thr = THRESHOLDS["mmr_mnist" if model_name == "mmr_mnist" else "digits"]
        others = {b: run_backend_worker(b, model_name, args.n, norms, args.batch_size, args.seed, args.strengths)
                  for b in args.backends if b != backend.requested()}
        for norm in norms:
            print(f"== {model_name} {norm}", file=sys.stderr, flush=True)
            results = run_ours(model, x, y, norm, args.batch_size, args.seed, methods, args.strengths)
            for rows in others.values():
                results.update(rows[norm])
            if not args.no_foolbox:
                results.update(run_foolbox(model, x, y, norm, args.foolbox_venv, args.batch_size,
                                           json.loads(args.foolbox_options), args.foolbox_attacks))
            lines = table(model_name, norm, results, len(x), thr[norm])
            print("\n".join(lines), flush=True)
            all_lines += lines + [""]
            dump.update({f"{model_name}/{norm}/{k}": d for k, (d, _, _) in results.items()})
            times.update({f"{model_name}/{norm}/{k}": [t, g] for k, (_, t, g) in results.items()})
    load = os.getloadavg()
    all_lines.append(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(all_lines[-1])
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.with_suffix(".md").write_text("\n".join(all_lines) + "\n")
        np.savez_compressed(args.save.with_suffix(".npz"), times=np.array(json.dumps(times)),
                            **{k.replace("/", "__"): v for k, v in dump.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
