"""Command line: robustness curves for your own Keras or ONNX model and data, without Snakemake.

The flags follow the original ``generate_robustness_curves.py``::

    robcurves --dataset data.npz --model_path model.keras --n_points 100 --norms 2 1 inf --save --plot

``--dataset`` is an ``.npz`` file: the project's format (``x`` NHWC float32 in [0, 1],
``y`` int64, ``meta``), or any ``.npz`` with ``x``/``y`` (or ``x_test``/``y_test``)
arrays; a bare name such as ``mnist`` means ``results/data/mnist/test.npz``.
``--model_path`` is a ``.keras``/``.h5`` file (a sidecar is optional), an ``.onnx`` file
(e.g. from ``torch.onnx.export``), or one of Croce et al.'s ``.mat`` files, whose layout
``--nn_type`` names (``cnn`` or ``fc1``). A model that ends in a softmax is used through
its logits, with a warning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from robcurves.norms import parse_norm


def _load_points(spec: str) -> tuple[np.ndarray, np.ndarray, str]:
    path = Path(spec)
    if not path.exists() and not spec.endswith(".npz"):
        path = Path("results") / "data" / spec / "test.npz"
    if not path.exists():
        raise SystemExit(f"robcurves: data file not found: {spec} (looked at {path})")
    with np.load(path, allow_pickle=False) as f:
        if "meta" in f.files:
            from robcurves.data import load_dataset

            ds = load_dataset(path)
            return ds.x, ds.y, ds.name
        for kx, ky in (("x", "y"), ("x_test", "y_test")):
            if kx in f.files and ky in f.files:
                x, y = f[kx].astype(np.float32), f[ky].astype(np.int64)
                break
        else:
            raise SystemExit(f"robcurves: {path} holds {f.files}; expected arrays x and y (or x_test and y_test)")
    if x.ndim == 3:  # (N, H, W): grey images
        x = x[..., None]
    if x.ndim == 2:  # (N, F): tabular
        x = x[:, None, None, :]
    if y.ndim == 2:  # one-hot
        y = np.argmax(y, axis=1)
    from robcurves.data import validate_arrays

    validate_arrays(x, y, what=str(path))
    return x, y, path.stem


def _load_model(path: str, nn_type: str | None, input_shape):
    from robcurves import models

    if not Path(path).is_file():
        raise SystemExit(f"robcurves: model file not found: {path}")
    try:
        if path.endswith(".mat"):
            layout = {"cnn": "cnn_lenet_small", "fc": "fc1", None: "auto"}.get(nn_type, nn_type)
            return models.convert_mat(path, layout=layout, input_shape=input_shape)
        if path.endswith(".keras") and models.sidecar_path(path).exists():
            return models.load_model(path)[0]
        # your own .keras/.h5 or .onnx: read as its network description (a softmax output
        # is removed with a warning: the curves are computed on the logits)
        return models.read_model_file(path, log=lambda msg: print(f"robcurves: warning: {msg}", file=sys.stderr))[0]
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"robcurves: {err}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robcurves", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="an .npz file of test points, or a prepared data set's name")
    p.add_argument("--model_path", required=True, help="a .keras/.h5 or .onnx model, or a Croce et al. .mat file")
    p.add_argument("--nn_type", default=None, help="layout of a .mat model: cnn (cnn_lenet_small) or fc1")
    p.add_argument("--n_points", type=int, default=None, help="use the first n points (default: all)")
    p.add_argument("--norms", nargs="+", default=["inf", "2", "1"], help="norms, e.g. --norms 2 1 inf")
    p.add_argument("--batch_size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", action="store_true", help="write one curve JSON per norm to --out")
    p.add_argument("--plot", action="store_true", help="write a figure (PDF and PNG) to --out")
    p.add_argument("--out", default="robustness_curves", help="output folder (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        norms = [parse_norm(n) for n in args.norms]
    except ValueError as err:
        raise SystemExit(f"robcurves: {err}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from robcurves.attacks import default_methods, minimal_perturbations
    from robcurves.curves import RobustnessCurve

    x, y, data_name = _load_points(args.dataset)
    if args.n_points is not None:
        x, y = x[: args.n_points], y[: args.n_points]
    model = _load_model(args.model_path, args.nn_type, x.shape[1:])
    from robcurves.models import check_model_fits

    try:
        check_model_fits(model, None, x)
    except ValueError as err:
        raise SystemExit(f"robcurves: {err}")
    out = Path(args.out)
    label = Path(args.model_path).stem
    curves = []
    for norm in norms:
        res = minimal_perturbations(model, x, y, norm, methods=default_methods(norm.name),
                                    batch_size=args.batch_size, seed=args.seed, progress=True)
        d = np.where(res.status == "error", np.inf, res.distances).astype(np.float64)
        curve = RobustnessCurve(norm=norm.name, distances=d, label=label, status=res.status, method=res.method,
                                config={"model_path": args.model_path, "dataset": args.dataset,
                                        "n_points": len(y), "seed": args.seed, "attack": res.config})
        curves.append(curve)
        fin = d[np.isfinite(d)]
        summary = {"norm": norm.name, "n_points": curve.n_points,
                   "misclassified": int((d == 0).sum()), "not_broken": int(np.isinf(d).sum()),
                   "median_distance": float(np.median(d)) if len(d) else None,
                   "max_finite_distance": float(fin.max()) if len(fin) else None}
        print(json.dumps(summary))
        if args.save:
            curve.save(out / f"{data_name}_{label}_{norm.name}.json")
    if args.plot:
        from robcurves.figures import plot_robustness_curves

        plot_robustness_curves(curves, [out / f"{data_name}_{label}.pdf", out / f"{data_name}_{label}.png"],
                               title=f"{label} on {data_name}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
