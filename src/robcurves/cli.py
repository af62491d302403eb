"""Command line: robustness curves for your own Keras or ONNX model and data, without Snakemake.

The flags follow the original ``generate_robustness_curves.py``::

    robcurves --dataset data.npz --model_path model.keras --n_points 100 --norms 2 1 inf --save --plot
    robcurves --dataset mnist --model_path mnist_fc1.mat --nn_type fc1 --norms inf --thresholds 0.1 0.3

``--dataset`` is an ``.npz`` file: the project's format (``x`` NHWC float32, ``y`` int64,
``meta``), or any ``.npz`` with ``x``/``y`` (or ``x_test``/``y_test``) arrays; a bare name
such as ``mnist`` means ``results/data/mnist/test.npz``. ``--model_path`` is a ``.keras``/
``.h5`` file (a sidecar is optional), an ``.onnx`` file (e.g. from ``torch.onnx.export``),
or one of Croce et al.'s ``.mat`` files, whose layout ``--nn_type`` names (``cnn`` or
``fc1``); a model that ends in a softmax is used through its logits, with a warning.
``--thresholds`` prints R(eps) with its 95% Clopper-Pearson interval per norm:
``--thresholds 8/255 0.1`` for every norm, or ``--thresholds inf:1/255,8/255 2:0.5`` per norm.

Every mistake in the input (a missing or corrupt file, NaN pixels, labels out of range,
values outside the input box, a shape mismatch, an unknown norm or flag, a layer the
network description cannot represent) ends the run with one line on stderr that names the
file or flag, and exit code 2; nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from robcurves.norms import parse_norm

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in what the user gave us: reported as one line, exit code 2."""


# What TensorFlow's C++ runtime prints on stderr while it starts (absl's pre-init banner,
# oneDNN and CUDA notices); dropped so that a user's mistake stays one line.
_NATIVE_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} [\d:.]+ +\d+ "
                           r"|To enable the following instructions:)")


@contextlib.contextmanager
def _native_stderr_filtered():
    """Capture file descriptor 2 (where TensorFlow's C++ code writes) and pass on what is
    not start-up noise."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded use): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not _NATIVE_NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        raise UsageError(f"{message} (see robcurves --help)")


# ---------------------------------------------------------------------- reading inputs

def _load_points(spec: str) -> tuple[np.ndarray, np.ndarray, str, tuple[float, float] | None]:
    """``(x, y, name, bounds or None)`` from ``--dataset``; every problem is a :class:`UsageError`."""
    path = Path(spec)
    if not path.exists() and not spec.endswith(".npz"):
        from robcurves.targets import data_file

        path = Path(data_file(spec))
    if not path.is_file():
        where = f" (also looked at {path})" if str(path) != spec else ""
        raise UsageError(f"--dataset: file not found: {spec}{where}")
    try:
        with np.load(path, allow_pickle=False) as f:
            files = list(f.files)
            if "meta" in files and "x" in files and "y" in files:
                from robcurves.data import load_dataset

                try:
                    ds = load_dataset(path)
                except (ValueError, KeyError) as err:
                    raise UsageError(f"--dataset {path}: {_strip_path(err, path)}") from None
                return ds.x, ds.y, ds.name, ds.bounds
            for kx, ky in (("x", "y"), ("x_test", "y_test")):
                if kx in files and ky in files:
                    x, y = f[kx], f[ky]
                    break
            else:
                raise UsageError(f"--dataset {path}: holds arrays {files}; expected x and y (or x_test and y_test)")
    except UsageError:
        raise
    except Exception as err:  # zip/format errors of a truncated or foreign file
        raise UsageError(f"--dataset {path}: not a valid .npz file ({type(err).__name__}: {err})") from None
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise UsageError(f"--dataset {path}: x must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if x.ndim == 3:  # (N, H, W): grey images
        x = x[..., None]
    elif x.ndim == 2:  # (N, F): tabular
        x = x[:, None, None, :]
    elif x.ndim != 4:
        raise UsageError(f"--dataset {path}: x must be N×H×W×C, N×H×W or N×F, got shape {x.shape}")
    if y.ndim == 2:  # one-hot
        y = np.argmax(y, axis=1)
    if y.ndim != 1 or len(y) != len(x):
        raise UsageError(f"--dataset {path}: y must hold one label per point ({len(x)}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        yf = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(yf)) or np.any(yf != np.round(yf)):
            raise UsageError(f"--dataset {path}: labels must be integers, got dtype {y.dtype}")
    y = np.asarray(y).astype(np.int64)
    bad = np.flatnonzero(~np.all(np.isfinite(x.reshape(len(x), -1)), axis=1)) if len(x) else []
    if len(bad):
        raise UsageError(f"--dataset {path}: x contains NaN or infinite values ({len(bad)} point(s), first at "
                         f"index {int(bad[0])})")
    return x, y, path.stem, None


def _strip_path(err: Exception, path: Path) -> str:
    text = str(err)
    for prefix in (f"{path}: ", f"{path.stem}/test: ", f"{path.stem}/train: "):
        text = text.removeprefix(prefix)
    return text


def _load_model(path: str, nn_type: str | None, input_shape) -> tuple[object, dict | None]:
    """``(model, sidecar or None)`` from ``--model_path``; every problem is a :class:`UsageError`."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--model_path: file not found: {path}")
    from robcurves import models

    suffix = p.suffix.lower()
    if suffix == ".keras" and not zipfile.is_zipfile(p):
        raise UsageError(f"--model_path {path}: not a valid model file (not a .keras zip archive: truncated, "
                         "or another format)")
    try:
        if suffix == ".mat":
            layout = {"cnn": "cnn_lenet_small", "fc": "fc1", None: "auto"}.get(nn_type, nn_type)
            return models.convert_mat(path, layout=layout, input_shape=input_shape), None
        if suffix == ".keras" and models.sidecar_path(path).exists():
            return models.load_model(path)
    except Exception as err:  # a truncated zip, a foreign file, a sidecar of another model
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"--model_path {path}: not a valid model file ({_strip_path(Exception(detail), p)})") from None
    if suffix in (".keras", ".h5", ".onnx"):
        # your own model: read as its network description (a softmax output is removed with
        # a warning: the curves are computed on the logits); unsupported layers are named
        try:
            return models.read_model_file(path, log=lambda msg: print(f"robcurves: warning: {msg}",
                                                                      file=sys.stderr))[0], None
        except (ValueError, FileNotFoundError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(f"--model_path {path}: {_strip_path(Exception(detail), p)}") from None
    raise UsageError(f"--model_path {path}: expected a .keras/.h5 or .onnx model or a Croce et al. .mat file, "
                     f"got '{p.suffix}'")


def parse_eps(text: str) -> float:
    """A threshold as written: a decimal (``0.1``, ``3e-2``) or a fraction (``8/255``), >= 0."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot read {text!r} as a number or a fraction such as 8/255") from None
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"a threshold must be a finite number >= 0, got {text!r}")
    return value


def parse_thresholds(tokens: list[str] | None, norms: list[str]) -> dict[str, list[tuple[str, float]]]:
    """``--thresholds`` tokens -> norm name -> [(as written, value)], for the ``norms`` run.

    A bare token (``8/255``) applies to every norm; ``inf:1/255,8/255`` or ``l2:0.5`` to one.
    """
    out: dict[str, list[tuple[str, float]]] = {n: [] for n in norms}
    for tok in tokens or []:
        if ":" in tok:
            name, _, values = tok.partition(":")
            try:
                norm = parse_norm(name).name
            except ValueError as err:
                raise UsageError(f"--thresholds {tok}: {err}") from None
            if norm not in out:
                raise UsageError(f"--thresholds {tok}: norm {norm} is not among --norms ({', '.join(norms)})")
            targets = [norm]
        else:
            values, targets = tok, list(norms)
        for v in filter(None, values.split(",")):
            try:
                eps = parse_eps(v)
            except ValueError as err:
                raise UsageError(f"--thresholds {tok}: {err}") from None
            for n in targets:
                out[n].append((v.strip(), eps))
    return out


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "y"):
        return True
    if t in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="robcurves", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True,
                   help="an .npz file of test points, or a prepared data set's name (mnist, fmnist, gts, cifar10, ...)")
    p.add_argument("--model_path", required=True, help="a .keras/.h5 or .onnx model, or a Croce et al. .mat file")
    p.add_argument("--nn_type", default=None, choices=["cnn", "fc1", "cnn_lenet_small"],
                   help="layout of a .mat model: cnn (cnn_lenet_small) or fc1")
    p.add_argument("--n_points", type=int, default=-1, help="number of points of the data set to use (-1: all)")
    p.add_argument("--norms", nargs="+", default=["inf", "2", "1"],
                   help="give multiple norms, e.g. --norms 2 1 inf (also linf, l2, l1)")
    p.add_argument("--thresholds", nargs="+", default=None, metavar="EPS",
                   help="print R(eps) with its 95%% interval at these eps, e.g. 8/255 0.1 (every norm) or "
                        "inf:1/255,8/255 2:0.5 (per norm)")
    p.add_argument("--bounds", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                   help="the box the inputs live in (default: the model's sidecar, the data file's meta, else 0 1)")
    p.add_argument("--strength", choices=["fast", "default", "thorough"], default="default",
                   help="the attack preset (README, 'Strength of the search'; default: %(default)s)")
    p.add_argument("--backend", choices=["auto", "tensorflow", "jax", "torch"], default="auto",
                   help="Keras backend (auto: KERAS_BACKEND, else tensorflow)")
    p.add_argument("--masking_check", type=_bool, default=True, metavar="True|False",
                   help="gradient-free check for gradient masking on the points never broken, those far above "
                        "their first-order estimate and a random 1%% of the others (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", nargs="?", const=True, default=False, type=_bool,
                   help="write one curve JSON per norm (and the thresholds' table) to --out; --save True works too")
    p.add_argument("--plot", nargs="?", const=True, default=False, type=_bool,
                   help="write a figure (PDF and PNG) to --out; --plot True works too")
    p.add_argument("--out", default="robustness_curves", help="output folder (default: %(default)s)")
    p.add_argument("--exact", type=int, default=0, metavar="N",
                   help="also bracket the exact minimal distances of the first N points (certified lower bound, "
                        "verified upper bound), warm-started from the attack")
    p.add_argument("--exact_time_limit", type=float, default=60.0, metavar="S",
                   help="--exact: seconds per point (default: %(default)s)")
    p.add_argument("--exact_method", default="auto", choices=["auto", "bab", "milp"],
                   help="--exact: branch and bound, the MILP, or bab where it supports the model (default)")
    return p


# ---------------------------------------------------------------------- the run

def _checked_inputs(args) -> tuple:
    """Everything read and checked before any attack work starts."""
    from robcurves import backend

    try:  # before anything imports Keras, which fixes its backend then
        backend.select(args.backend)
    except ValueError as err:
        raise UsageError(f"--backend: {err}") from None
    try:
        norms = [parse_norm(n).name for n in args.norms]
    except ValueError as err:
        raise UsageError(f"--norms: {err}") from None
    norms = list(dict.fromkeys(norms))
    thresholds = parse_thresholds(args.thresholds, norms)
    if args.n_points == 0 or args.n_points < -1:
        raise UsageError(f"--n_points must be a positive number of points or -1 (all), got {args.n_points}")
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.exact < 0:
        raise UsageError(f"--exact must be a number of points (0: none), got {args.exact}")
    if not args.exact_time_limit > 0:
        raise UsageError(f"--exact_time_limit must be positive seconds, got {args.exact_time_limit:g}")
    if args.bounds is not None and not args.bounds[0] < args.bounds[1]:
        raise UsageError(f"--bounds must be LOW HIGH with LOW < HIGH, got {args.bounds[0]:g} {args.bounds[1]:g}")
    x, y, data_name, data_bounds = _load_points(args.dataset)
    if args.n_points > 0:
        x, y = x[: args.n_points], y[: args.n_points]
    if len(x) == 0:
        raise UsageError(f"--dataset {args.dataset}: holds no points")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_stderr_filtered():
        model, sidecar = _load_model(args.model_path, args.nn_type, x.shape[1:])
        import robcurves.attacks  # noqa: F401  (TensorFlow starts here: its start-up notices are filtered)
    from robcurves.models import check_model_fits
    from robcurves.stages import model_bounds

    try:
        check_model_fits(model, None, x)
    except ValueError as err:
        raise UsageError(f"--model_path {args.model_path} does not fit --dataset {args.dataset}: {err}") from None
    try:
        n_classes = int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError):
        raise UsageError(f"--model_path {args.model_path}: the model has no single (batch, n_classes) output") from None
    if y.min() < 0 or y.max() >= n_classes:
        raise UsageError(f"--dataset {args.dataset}: labels must lie in 0..{n_classes - 1} (the model has "
                         f"{n_classes} outputs), got {int(y.min())}..{int(y.max())}")
    if args.bounds is not None:
        bounds = (float(args.bounds[0]), float(args.bounds[1]))
    elif sidecar is not None:
        bounds = model_bounds(sidecar)
        if data_bounds is not None and tuple(data_bounds) != bounds:
            raise UsageError(f"--dataset {args.dataset} lies in [{data_bounds[0]:g}, {data_bounds[1]:g}] but the "
                             f"sidecar of --model_path {args.model_path} says [{bounds[0]:g}, {bounds[1]:g}]")
    else:
        bounds = tuple(data_bounds) if data_bounds is not None else (0.0, 1.0)
    lo, hi = bounds
    if x.min() < lo or x.max() > hi:
        raise UsageError(f"--dataset {args.dataset}: values must lie in the input box [{lo:g}, {hi:g}] (--bounds), "
                         f"got [{float(x.min()):g}, {float(x.max()):g}]")
    return norms, thresholds, x, y, data_name, model, bounds


def _threshold_rows(curve, thresholds: list[tuple[str, float]]) -> list[dict]:
    from robcurves.curves import count_at_most
    from robcurves.tables import clopper_pearson

    rows = []
    for written, eps in thresholds:
        k = int(count_at_most(curve.distances, eps))
        lo, hi = clopper_pearson(k, curve.n_points, 0.05)
        rows.append({"norm": curve.norm, "eps": written, "eps_value": eps, "robust_error": k / curve.n_points,
                     "ci95_low": lo, "ci95_high": hi, "n_points": curve.n_points})
    return rows


def run(args) -> int:
    norms, thresholds, x, y, data_name, model, bounds = _checked_inputs(args)
    from robcurves.attacks import default_methods, masking_check, minimal_perturbations
    from robcurves.curves import RobustnessCurve

    out = Path(args.out)
    label = Path(args.model_path).stem
    curves, table = [], []
    for name in norms:
        print(f"Starting {name} attack on {len(y)} points.", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            res = minimal_perturbations(model, x, y, name, methods=default_methods(name, args.strength),
                                        batch_size=args.batch_size, seed=args.seed, bounds=bounds, progress=True)
        except ValueError as err:  # e.g. a model that returns non-finite logits on the clean points
            raise UsageError(f"--model_path {args.model_path}: {err}") from None
        masking = masking_check(model, x, y, res, enabled=args.masking_check, seed=args.seed, bounds=bounds)
        if masking["beaten"]:
            print(f"robcurves: warning: gradient masking suspected in {name}: the gradient-free check beat "
                  f"the gradient attacks on {masking['beaten']} of {masking['checked']} checked points",
                  file=sys.stderr, flush=True)
        print(f"Took {time.perf_counter() - t0:.2f} seconds to run.", file=sys.stderr, flush=True)
        d = np.where(res.status == "error", np.inf, res.distances).astype(np.float64)
        curve = RobustnessCurve(norm=name, distances=d, label=label, status=res.status, method=res.method,
                                config={"model_path": args.model_path, "dataset": args.dataset,
                                        "n_points": len(y), "seed": args.seed, "bounds": list(bounds),
                                        "strength": args.strength, "attack": res.config,
                                        "masking_check": masking})
        curves.append(curve)
        fin = d[np.isfinite(d)]
        summary = {"norm": name, "n_points": curve.n_points,
                   "misclassified": int((res.status == "misclassified").sum()), "not_broken": int(np.isinf(d).sum()),
                   "median_distance": float(np.median(d)) if len(d) else None,
                   "max_finite_distance": float(fin.max()) if len(fin) else None}
        print(json.dumps(summary), flush=True)
        rows = _threshold_rows(curve, thresholds.get(name, []))
        for r in rows:  # R(eps) of an attack: a lower bound of the true robust error; the interval: sampling only
            print(json.dumps(r), flush=True)
        table += rows
        if args.save:
            curve.save(out / f"{data_name}_{label}_{name}.json")
        if args.exact:
            _exact(args, model, x, y, name, res, bounds, out / f"{data_name}_{label}_{name}_exact.json")
    if args.save and table:
        from robcurves.tables import write_table

        write_table(table, out / f"{data_name}_{label}_robust_error",
                    caption="R(eps) of the attack (a lower bound of the true robust error) with 95% "
                            "Clopper-Pearson intervals (sampling of the test points only)")
    if args.plot:
        from robcurves.figures import plot_robustness_curves

        by_norm = {n: [e for _, e in ts] for n, ts in thresholds.items() if ts}
        plot_robustness_curves(curves, [out / f"{data_name}_{label}.pdf", out / f"{data_name}_{label}.png"],
                               title=f"{label} on {data_name}", thresholds=by_norm or None)
    return 0


def _exact(args, model, x, y, norm: str, att, bounds, path: Path) -> None:
    """``--exact N``: certified brackets of the first N points (robcurves.exact), one JSON line."""
    from robcurves.exact.stage import choose_method

    n = min(int(args.exact), len(y))
    sl = slice(0, n)
    try:
        method, why = choose_method({"method": args.exact_method}, model, norm, bounds)
    except ValueError as err:
        raise UsageError(f"--exact_method {args.exact_method}: {err}") from None
    print(f"Starting exact {norm} ({method}) on {n} points, {args.exact_time_limit:g} s each.", file=sys.stderr,
          flush=True)
    if method == "bab":
        from robcurves.exact.bab import BabConfig
        from robcurves.exact.bab import bab_brackets as exact_brackets

        cfg = BabConfig(time_limit=args.exact_time_limit)
    else:
        from robcurves.exact import ExactConfig
        from robcurves.exact import milp_brackets as exact_brackets

        cfg = ExactConfig(time_limit=args.exact_time_limit)
    res = exact_brackets(model, x[sl], y[sl], norm, cfg, attack_distances=att.distances[sl], x_adv=att.x_adv[sl],
                         bounds=bounds)
    s = res.summary()
    print(json.dumps({"norm": norm, "exact_method": method, "exact_points": n, **{k: s.get(k) for k in (
        "optimal", "time_limit", "misclassified", "median_lower_over_upper", "median_time_s")}}), flush=True)
    if args.save:
        from robcurves.exact import write_merged_json

        write_merged_json(path, res)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except UsageError as err:
        print(f"robcurves: error: {err}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("robcurves: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
