"""The Julia backend: MIPVerify.jl (Tjeng et al.) through ``workflow/julia/exact_mipverify.jl``.

The Python side writes the network in MIPVerify's ``.mat`` naming (``{layer}/weight``,
``{layer}/bias``; conv kernels HWIO, dense matrices (in, out)) plus a JSON description of
the layer chain and the points, runs Julia, and turns its answer into the same records as
the HiGHS backend. Every witness MIPVerify returns is re-checked on the TensorFlow model in
float32 before it may count, exactly as for the Python backend.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from robcurves.adversarial import is_adversarial
from robcurves.exact.records import ExactResult, ExactResults, save_results
from robcurves.norms import parse_norm

_log = logging.getLogger("robcurves.exact")

SCRIPT = "exact_mipverify.jl"


def julia_executable() -> str | None:
    """Path of ``julia`` (``$JULIA`` first), or None if it is not installed."""
    exe = os.environ.get("JULIA")
    if exe and Path(exe).exists():
        return exe
    return shutil.which("julia")


#: the layer kinds of the network description that workflow/julia/exact_mipverify.jl builds
MIPVERIFY_LAYERS = ("conv2d", "dense", "relu", "flatten")


def export_mipverify(model, path: str | os.PathLike) -> list[dict[str, Any]]:
    """Write the network's parameters in MIPVerify's ``.mat`` naming; return the layer chain.

    ``model`` is a Keras model or a :class:`robcurves.network.Network`. The chain is a list
    of ``{"type": "conv2d"|"dense"|"relu"|"flatten", ...}`` entries in order; conv entries
    carry ``name``, ``stride``, ``padding`` and the kernel ``shape`` (HWIO), dense entries
    ``name`` and ``shape`` (in, out). Activations inside Conv2D or Dense layers are separate
    ReLU entries (the description splits them). Anything MIPVerify's side does not build
    (residual additions, pooling, unfolded scalings, ...) is rejected by name.
    """
    import scipy.io

    from robcurves.network import Network, from_keras

    net = model if isinstance(model, Network) else from_keras(model)
    params: dict[str, np.ndarray] = {}
    chain: list[dict[str, Any]] = []
    if not net.is_chain:
        adds = [f"{n.name!r} ({n.layer.kind})" for i, n in enumerate(net.nodes[1:], start=1) if n.inputs != (i - 1,)]
        raise ValueError(f"mipverify: the network is not a chain of layers (at {', '.join(adds[:3])}); "
                         f"the MIPVerify backend supports {', '.join(MIPVERIFY_LAYERS)}")
    for i, node in enumerate(net.nodes[1:], start=1):
        layer = node.layer
        what = f"layer {node.name!r} ({layer.kind})"
        if layer.kind not in MIPVERIFY_LAYERS:
            raise ValueError(f"mipverify: {what} cannot be exported; the MIPVerify backend supports "
                             f"{', '.join(MIPVERIFY_LAYERS)}")
        key = node.name.replace("/", "_") or f"layer{i}"
        if layer.kind == "conv2d":
            strides, padding = layer.strides, layer.padding_name
            if strides[0] != strides[1] or padding is None:
                raise ValueError(f"mipverify: {what} has strides {strides} and pads {layer.pads}; "
                                 "only equal strides with TensorFlow's same/valid padding are exported")
            k = layer.numpy("W")
            params[f"{key}/weight"] = k
            params[f"{key}/bias"] = layer.numpy("b") if "b" in layer.params else np.zeros(k.shape[3])
            chain.append({"type": "conv2d", "name": key, "stride": strides[0], "padding": padding,
                          "shape": list(k.shape)})
        elif layer.kind == "dense":
            k = layer.numpy("W")
            params[f"{key}/weight"] = k
            params[f"{key}/bias"] = layer.numpy("b") if "b" in layer.params else np.zeros(k.shape[1])
            chain.append({"type": "dense", "name": key, "shape": list(k.shape)})
        else:
            chain.append({"type": layer.kind})
    scipy.io.savemat(str(path), params)
    return chain


def mipverify_shard(model_path: str, data_path: str, out_path: str, norm: str, shard: int, n_shards: int,
                    n_points: int, exact: dict[str, Any], attack_paths: Sequence[str] = (),
                    julia_project: str | os.PathLike = "workflow/julia", log: logging.Logger = _log) -> ExactResults:
    """The MIPVerify counterpart of :func:`robcurves.exact.pipeline.exact_shard` (same outputs, same rules).

    Points the model already misclassifies (:func:`robcurves.adversarial.is_adversarial`)
    are recorded ``misclassified`` and never sent to Julia. An attack's example counts
    (as an upper bound and as the domain's radius) only after the same float32 check as
    every witness. For l1, MIPVerify searches an unrestricted family (the whole [0, 1] box),
    so those records have no finite ``domain_radius``.
    """
    from robcurves import models
    from robcurves.data import load_dataset
    from robcurves.exact.pipeline import config_from_dict, load_attack_warm_start, shard_indices
    from robcurves.exact.records import BracketTally
    from robcurves.exact.solve import keras_checker
    from robcurves.pipeline import check_bounds_agree, model_bounds
    from robcurves.progress import Progress

    exe = julia_executable()
    if exe is None:
        raise RuntimeError("exact.backend is 'mipverify' but `julia` is not on PATH (see workflow/julia/README.md)")
    norm = parse_norm(norm)
    if norm.name not in ("linf", "l1"):
        raise ValueError(f"mipverify backend: norm {norm.name} is not supported here (linf, l1)")
    model, sidecar = models.load_model(model_path)
    test = load_dataset(data_path)
    bounds = model_bounds(sidecar)
    check_bounds_agree(test.bounds, bounds, f"data set {data_path}", f"model {model_path}")
    if bounds != (0.0, 1.0):
        raise ValueError(f"mipverify backend: MIPVerify's perturbation families keep inputs in [0, 1], but model "
                         f"{model_path} takes inputs in [{bounds[0]:g}, {bounds[1]:g}]; use exact.backend: highs")
    n = min(int(n_points), len(test))
    idx = shard_indices(n, n_shards, shard)
    cfg = config_from_dict(exact, norm.name)
    x, y = test.x[idx], test.y[idx]
    dist, adv = (load_attack_warm_start(attack_paths, idx, norm.name, test.x.shape[1:]) if attack_paths
                 else (np.full(len(idx), np.inf), None))
    checker = keras_checker(model, norm, bounds)
    clean = np.asarray(checker.logits_fn(x), dtype=np.float32) if len(x) else np.zeros((0, 2), np.float32)
    mis = is_adversarial(clean, y) if len(x) else np.zeros(0, bool)
    # The attack's examples, re-checked like every witness; only verified ones bound anything.
    verified: list[tuple[np.ndarray, float, int] | None] = []
    for i in range(len(x)):
        ok = adv is not None and np.isfinite(dist[i]) and not mis[i]
        verified.append(checker.check(adv[i], x[i], int(y[i])) if ok else None)
    unrestricted = norm.name == "l1"  # exact_mipverify.jl: UnrestrictedPerturbationFamily for l1
    default_r = cfg.max_radius if cfg.max_radius is not None else checker.default_radius()
    radius = np.array([v[1] * (1 + 1e-6) + 1e-7 if v is not None else default_r for v in verified], dtype=np.float64)
    todo = np.flatnonzero(~mis)
    answers: dict[int, dict[str, Any]] = {}
    if len(todo):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            chain = export_mipverify(model, tmp / "model.mat")
            spec = {"layers": chain, "input_shape": list(x.shape[1:]), "norm": norm.name,
                    "time_limit": float(cfg.time_limit),
                    "tightening": "lp" if "lp" in cfg.tightening else "interval_arithmetic",
                    "labels": [int(y[i]) + 1 for i in todo], "radius": [float(radius[i]) for i in todo],
                    # Flat NHWC inputs and their float32 logits (the Julia side checks its network on them).
                    "x": [[float(v) for v in x[i].reshape(-1)] for i in todo],
                    "logits": [[float(v) for v in clean[i]] for i in todo]}
            (tmp / "spec.json").write_text(json.dumps(spec))
            t0 = time.perf_counter()
            cmd = [exe, f"--project={julia_project}", str(Path(julia_project) / SCRIPT), str(tmp / "model.mat"),
                   str(tmp / "spec.json"), str(tmp / "out.json")]
            log.info("running %s", " ".join(cmd))
            subprocess.run(cmd, check=True)
            log.info("MIPVerify finished in %.1f s", time.perf_counter() - t0)
            answers = dict(zip(todo.tolist(), json.loads((tmp / "out.json").read_text())["points"]))
    records = []
    tally = BracketTally(norm.name)
    bar = Progress(len(x), f"exact (mipverify) {norm.name}", log=log.info, every_s=0.0)
    for i in range(len(x)):
        if mis[i]:
            rec = ExactResult(int(idx[i]), int(y[i]), norm.name, "misclassified", 0.0, 0.0, x[i].copy(),
                              int(np.argmax(clean[i])), 0.0, 0.0, {"misclassified": True}, float(dist[i]),
                              attack_verified=bool(dist[i] == 0.0), rel_tol=cfg.rel_gap, abs_tol=cfg.abs_gap)
        else:
            rec = record_from_mipverify(answers[i], checker, x[i], int(y[i]), norm.name, int(idx[i]),
                                        math.inf if unrestricted else float(radius[i]), float(dist[i]),
                                        cfg.rel_gap, cfg.abs_gap, attack_witness=verified[i])
        records.append(rec)
        bar.update(1, tally.add(rec))
    res = ExactResults.from_records(records, x.shape[1:], norm.name,
                                    {"backend": "mipverify", "model": str(model_path), "shard": int(shard),
                                     "n_shards": int(n_shards), "n_points": n, "bounds": list(bounds),
                                     "data_sha256": test.meta["sha256"]})
    save_results(out_path, res)
    log.info("exact (mipverify) shard %d/%d: %s", shard, n_shards, res.summary())
    return res


def record_from_mipverify(ans: dict[str, Any], checker, x0: np.ndarray, y: int, norm: str, index: int,
                          radius: float, attack: float, rel_gap: float, abs_gap: float,
                          attack_witness: "tuple[np.ndarray, float, int] | None" = None) -> ExactResult:
    """One Julia answer -> :class:`ExactResult`, by the same rules as the HiGHS backend.

    ``ans``: ``{"status": JuMP termination status, "objective": value or null,
    "bound": objective bound or null, "perturbed": flat input (NHWC order) or null,
    "seconds": ...}``. MIPVerify's example counts only after the float32 check
    (:meth:`Checker.check`, i.e. :func:`robcurves.adversarial.is_adversarial`); so does the
    attack's (``attack_witness``: what that check returned for it, None if it failed or there
    was none; ``attack`` is the attack's claimed distance, kept for the record only).
    ``radius``: the radius searched, ``inf`` for MIPVerify's unrestricted family (the whole
    input box). A clean point that is already misclassified is recorded ``misclassified``.
    """
    seconds = float(ans.get("seconds", 0.0))
    status_j = str(ans.get("status", ""))
    info: dict[str, Any] = {"julia_status": status_j}
    logits = np.asarray(checker.logits_fn(np.asarray(x0, np.float32).reshape(1, *checker.input_shape)), np.float32)
    if is_adversarial(logits, y)[0]:
        return ExactResult(index, y, norm, "misclassified", 0.0, 0.0, np.asarray(x0, np.float32).copy(),
                           int(np.argmax(logits[0])), seconds, 0.0, {**info, "misclassified": True}, attack,
                           attack_verified=attack == 0.0, rel_tol=rel_gap, abs_tol=abs_gap)
    lower = ans.get("bound")
    lower = 0.0 if lower is None or not math.isfinite(lower) else max(0.0, float(lower))
    if status_j == "INFEASIBLE":
        lower = radius  # proven: nothing adversarial in the domain searched (inf: the whole box)
    upper, witness, wclass = math.inf, None, -1
    if ans.get("perturbed") is not None:
        found = checker.check(np.asarray(ans["perturbed"], dtype=np.float64), x0, y)
        if found is not None:
            witness, upper, wclass = found
        else:
            info["witness_rejected"] = "MIPVerify's example is not adversarial on the float32 model"
    if attack_witness is not None and attack_witness[1] < upper:
        witness, upper, wclass = attack_witness  # the verified attack example is the better witness
    if status_j == "INFEASIBLE" and not math.isfinite(upper):
        # Proven: nothing adversarial within the radius (or, unrestricted, anywhere in the box).
        return ExactResult(index, y, norm, "no_adversarial_in_domain", radius, math.inf, None, -1, seconds, radius,
                           info, attack, attack_verified=attack_witness is not None, rel_tol=rel_gap,
                           abs_tol=abs_gap)
    if status_j == "INFEASIBLE":
        # A verified witness inside a domain proven empty: it lies within the solver's
        # tolerance of the decision boundary, so its distance is the minimum (to that tolerance).
        info["infeasible_with_witness"] = True
    lower = min(lower, upper)
    ok = math.isfinite(upper) and witness is not None and upper - lower <= rel_gap * upper + abs_gap
    status = "optimal" if ok else "time_limit"
    return ExactResult(index, y, norm, status, lower, upper, witness, wclass, seconds, radius, info, attack,
                       attack_verified=attack_witness is not None, rel_tol=rel_gap, abs_tol=abs_gap)
