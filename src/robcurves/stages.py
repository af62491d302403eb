"""The workflow's stages as plain functions: prepare data, build a model, attack a shard, merge a curve.

Snakemake scripts call these; so can anyone without Snakemake.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from robcurves.config import attack_section, model_section, with_defaults
from robcurves.curves import RobustnessCurve
from robcurves.data import load_dataset
from robcurves.norms import parse_norm
from robcurves.shards import merge_attack_shards, save_attack_shard, shard_indices

_log = logging.getLogger("robcurves")


def test_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Share of points the model classifies correctly: not adversarial by
    :func:`robcurves.adversarial.is_adversarial` (a tie counts as correct)."""
    from robcurves.adversarial import is_adversarial
    from robcurves.models import predict_logits

    return float(np.mean(~is_adversarial(predict_logits(model, x), y))) if len(y) else float("nan")


def model_bounds(sidecar: dict | None) -> tuple[float, float]:
    """The input box ``[lo, hi]`` of a model: its sidecar's ``bounds`` ([0, 1] without one)."""
    from robcurves.models import DEFAULT_BOUNDS

    lo, hi = (sidecar or {}).get("bounds", DEFAULT_BOUNDS)
    return float(lo), float(hi)


def check_bounds_agree(data_bounds: tuple[float, float], bounds: tuple[float, float], data_what: str,
                       model_what: str) -> None:
    """Raise ``ValueError`` unless the data set's box is the model's box (both come from their files)."""
    if tuple(map(float, data_bounds)) != tuple(map(float, bounds)):
        raise ValueError(f"{data_what} lies in [{data_bounds[0]:g}, {data_bounds[1]:g}] but {model_what} says its "
                         f"inputs lie in [{bounds[0]:g}, {bounds[1]:g}] (sidecar 'bounds')")


def open_model_and_data(model_path: str, data_path: str):
    """``(model, sidecar, test, bounds)``: a stage's model and data set, checked to fit each
    other (input shape, classes) and to share one input box (returned as ``bounds``)."""
    from robcurves import models

    model, sidecar = models.load_model(model_path)
    test = load_dataset(data_path)
    models.check_model_fits(model, sidecar, test.x)
    bounds = model_bounds(sidecar)
    check_bounds_agree(test.bounds, bounds, f"data set {data_path}", f"model {model_path}")
    return model, sidecar, test, bounds


def rescale_to_bounds(ds, bounds: "tuple[float, float] | list[float] | None"):
    """A data set whose [0, 1] values are mapped affinely onto ``bounds`` (e.g. [-1, 1]).

    Its metadata records the new box (``meta["bounds"]``), so that every later stage
    (the model's sidecar, the attacks, the exact stage, the checks) uses it.
    """
    from dataclasses import replace

    if bounds is None or tuple(map(float, bounds)) == ds.bounds:
        return ds
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must be [low, high] with low < high, got {list(bounds)}")
    old_lo, old_hi = ds.bounds
    x = (ds.x.astype(np.float64) - old_lo) / (old_hi - old_lo) * (hi - lo) + lo
    x = np.clip(x, lo, hi).astype(np.float32)
    return replace(ds, x=x, extra={**ds.extra, "bounds": [lo, hi]})


def prepare_dataset(name: str, spec: dict, raw_dir) -> tuple[Any, Any]:
    """:func:`robcurves.data.prepare_dataset`, then mapped onto the config's ``bounds`` if it has them."""
    from robcurves.data import prepare_dataset as prepare

    train, test = prepare(name, {k: v for k, v in spec.items() if k != "bounds"}, raw_dir)
    return rescale_to_bounds(train, spec.get("bounds")), rescale_to_bounds(test, spec.get("bounds"))


def build_model(spec: dict, name: str, out_path: str, train_path: str | None = None,
                test_path: str | None = None, model_file: str | None = None,
                log: logging.Logger = _log) -> dict:
    """Train (``source: train``), convert (``source: convert``, a Croce et al. ``.mat``) or read
    (``source: keras`` or ``onnx``) the model ``spec`` describes.

    Writes ``out_path`` (Keras) and its JSON sidecar; returns the sidecar. The sidecar's
    ``bounds`` are the data set's (its ``meta["bounds"]``, [0, 1] by default). A model read
    from a file is saved as the plain Keras model of its network description; the sidecar
    records the file's SHA-256 and whether a softmax was removed.
    """
    from robcurves import models

    spec = model_section(spec)
    test = load_dataset(test_path) if test_path else None
    if spec["source"] == "convert":
        layout = spec["layout"]
        model = models.convert_mat(model_file, layout=layout,
                                   input_shape=test.input_shape if test is not None else None)
        sidecar = models.mat_sidecar(model_file, model, spec["dataset"], layout=layout, name=name)
        if test is not None:
            sidecar["bounds"] = list(test.bounds)
    elif spec["source"] in ("keras", "onnx"):
        box = list(test.bounds) if test is not None else list(models.DEFAULT_BOUNDS)
        model, made_by = models.read_model_file(model_file, spec["source"], spec["input_layout"],
                                                bounds=box, log=log.warning)
        sidecar = {"name": name, "dataset": spec["dataset"], "bounds": box, "made_by": made_by}
        log.info("%s: read %s (SHA-256 %s): %s", name, made_by["source"], made_by["sha256"][:16],
                 ", ".join(f"{k} x{v}" for k, v in made_by["layers"].items()))
    else:
        from robcurves.training import train_model

        train = load_dataset(train_path)
        if train.bounds != (0.0, 1.0) and spec["method"] != "st":
            raise ValueError(f"training method {spec['method']!r} keeps its adversarial inputs in [0, 1], but "
                             f"{train_path} lies in {list(train.bounds)}; use method st")
        model = models.build_model(spec["arch"], train.input_shape, train.n_classes, seed=spec["seed"])
        t0 = time.perf_counter()
        history = train_model(
            model, train, spec["method"], epochs=spec["epochs"], batch_size=spec["batch_size"],
            learning_rate=spec["learning_rate"], seed=spec["seed"], eps=spec.get("eps"),
            log=log.info, **spec.get("options", {}),
        )
        sidecar = {
            "name": name,
            "dataset": train.name,
            "bounds": list(train.bounds),
            "made_by": {"kind": "train", "arch": spec["arch"], **history,
                        "wall_s": round(time.perf_counter() - t0, 2)},
        }
    if test is not None:
        models.check_model_fits(model, None, test.x)
        sidecar["test_accuracy"] = test_accuracy(model, test.x, test.y)
        log.info("%s: test accuracy %.4f on %d points", name, sidecar["test_accuracy"], len(test))
    return models.save_model(model, out_path, sidecar)


def weights_sha256(model) -> str:
    """SHA-256 of a model's weights (not of its file, whose zip metadata holds a save date)."""
    import hashlib

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return h.hexdigest()


def resolved_methods(norm: str, attack: dict) -> list[dict[str, Any]]:
    """The attack methods a shard of ``norm`` runs: the config's, or the package's preset
    (``attack["strength"]``), each with every option filled in (so that a changed default
    changes the digest)."""
    from robcurves import attacks

    attack = attack_section(attack)
    methods = attack.get("methods") or attacks.default_methods(norm, attack["strength"])
    return [attacks.validate_method_config(norm, m) for m in methods]


def attack_settings(norm: str, attack: dict, n_points: int | None, model, model_sidecar: dict,
                    data_sha: str) -> dict:
    """Everything that determines an attack shard's numbers; shards must agree on it.

    Deterministic by construction (no timings), so that the same config gives
    byte-identical curves from separate runs. It holds the package version and the
    resolved method list: shards made by other code do not merge.
    """
    import robcurves

    return {"norm": norm, "attack": attack_section(attack), "n_points": n_points,
            "methods": resolved_methods(norm, attack), "robcurves_version": robcurves.__version__,
            "bounds": list(model_bounds(model_sidecar)),
            "model": model_sidecar.get("name"), "model_weights_sha256": weights_sha256(model),
            "data_sha256": data_sha}


def expected_settings(norm: str, attack: dict, n_points: int | None, data_sha: str) -> dict:
    """The part of :func:`attack_settings` that a merge can check without the model:
    what this code would write into a shard made now."""
    import robcurves

    return {"norm": norm, "n_points": n_points, "methods": resolved_methods(norm, attack),
            "robcurves_version": robcurves.__version__, "data_sha256": data_sha}


def masking_options(check: dict) -> dict:
    """The keyword arguments of :func:`robcurves.attacks.masking_check` from the config's
    ``attacks.masking_check`` section (the schema's defaults for keys it leaves out)."""
    check = with_defaults(check or {}, "#/properties/attacks/properties/masking_check")
    return {"sample": float(check["sample"]), "min_ratio": float(check["min_ratio"]),
            "queries": int(check["queries"])}


def attack_shard(model_path: str, data_path: str, out_path: str, norm: str, shard: int, n_shards: int,
                 n_points: int | None, attack: dict, log: logging.Logger = _log) -> None:
    """Minimal perturbations in ``norm`` for shard ``shard`` of the first ``n_points`` test points.

    ``attack``: the norm's section of the config merged over the ``attacks`` section
    (``strength``, ``backend``, ``deterministic``, ``masking_check``; ``methods`` wins
    over ``strength``). The Keras backend is chosen before Keras is imported. The search
    stays inside the model's input box (its sidecar's ``bounds``), which must be the
    data set's.
    """
    from robcurves import backend

    attack = attack_section(attack)
    backend.select(attack["backend"])
    backend.configure_devices(memory_growth=True, deterministic=bool(attack["deterministic"]))
    from robcurves import attacks

    norm = parse_norm(norm).name
    model, sidecar, test, bounds = open_model_and_data(model_path, data_path)
    n = len(test) if n_points is None else min(int(n_points), len(test))
    idx = shard_indices(n, n_shards, shard)
    settings = attack_settings(norm, attack, n_points, model, sidecar, test.meta["sha256"])
    methods = settings["methods"]
    strength = attack["strength"]
    log.info("shard %d/%d: %d points, norm %s, box [%g, %g], backend %s, strength %s, methods %s", shard, n_shards,
             len(idx), norm, *bounds, backend.name(), "custom" if attack.get("methods") else strength,
             [m["name"] for m in methods])
    t0 = time.perf_counter()
    result = attacks.minimal_perturbations(
        model, test.x[idx], test.y[idx], norm, methods=methods,
        batch_size=attack["batch_size"], seed=attack["seed"], bounds=bounds, progress=True,
        point_ids=idx,
    )
    check = attack["masking_check"]
    if check["enabled"] and len(idx):
        report = attacks.masking_check(model, test.x[idx], test.y[idx], result, **masking_options(check),
                                       seed=attack["seed"], point_ids=idx, bounds=bounds)
        if report["beaten"]:
            log.warning("gradient masking suspected: the gradient-free search beat the gradient attacks on %d of %d "
                        "checked points (their distances now come from it)", report["beaten"], report["checked"])
        else:
            log.info("masking check: the gradient-free search beat the gradient attacks on 0 of %d checked points",
                     report["checked"])
    dt = time.perf_counter() - t0
    log.info("shard %d/%d done in %.1f s (%.1f points/s, %.0f gradients per point); statuses %s", shard, n_shards, dt,
             len(idx) / dt if dt > 0 else float("nan"), result.config["gradients_per_point"]["mean"],
             {str(k): int(v) for k, v in zip(*np.unique(result.status, return_counts=True))})
    save_attack_shard(out_path, result, idx, shard, n_shards, settings)


def _masking_summary(shard_paths: list[str]) -> dict[str, Any]:
    """The masking checks of the shards, added up: points checked and points where the
    gradient-free search beat the gradient attacks (from each shard's attack config)."""
    import json

    out = {"checked": 0, "beaten": 0, "beaten_points": []}
    for p in shard_paths:
        with np.load(p, allow_pickle=False) as f:
            cfg = json.loads(str(f["meta"])).get("attack_config", {}) if "meta" in f.files else {}
        rep = cfg.get("masking_check") or {}
        out["checked"] += int(rep.get("checked", 0))
        out["beaten"] += int(rep.get("beaten", 0))
        out["beaten_points"] += [int(i) for i in rep.get("beaten_points", [])]
    return out


def _witness_sources(model, sidecar: dict, data_sha: str, indices: np.ndarray, input_shape, warm_shards,
                     exact_paths) -> dict[str, np.ndarray]:
    """Source name -> witnesses for ``indices`` (NaN rows where the source has none): the
    adversarial examples of the other norms' attack shards (``warm_shards``: norm -> paths;
    made on this model and data, else refused) and the exact stage's witnesses."""
    from robcurves.exact.stage import warm_start_settings
    from robcurves.shards import load_attack_shards

    pos = {int(j): i for i, j in enumerate(indices)}
    out = {}
    for src, paths in sorted((warm_shards or {}).items()):
        if not paths:
            continue
        w = np.full((len(indices), *input_shape), np.nan, np.float32)
        shards = load_attack_shards(paths, expected=warm_start_settings(model, sidecar, data_sha, src))
        for s in shards:
            for k, j in enumerate(s["indices"]):
                i = pos.get(int(j))
                if i is not None and s["status"][k] == "adversarial":
                    w[i] = s["x_adv"][k].reshape(input_shape)
        out[parse_norm(src).name] = w
    if exact_paths:
        from robcurves.exact.records import load_results

        w = np.full((len(indices), *input_shape), np.nan, np.float32)
        for p in exact_paths:
            res = load_results(p)
            sha = res.meta.get("data_sha256")
            if sha is not None and sha != data_sha:
                raise ValueError(f"{p}: exact shard made on other data (SHA-256 {sha}, this data set {data_sha})")
            for k, j in enumerate(res.index):
                i = pos.get(int(j))
                wk = np.asarray(res.witness[k], np.float32)
                if i is not None and wk.size and np.all(np.isfinite(wk)):
                    w[i] = wk.reshape(input_shape)
        out["exact"] = w
    return out


def apply_warm_starts(model_path: str, test, indices: np.ndarray, norm: str, distances: np.ndarray,
                      status: np.ndarray, method: np.ndarray, attack: dict | None, warm_shards=None,
                      exact_paths=(), log: logging.Logger = _log) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Warm starts across norms and stages, at the curve merge (no cycle in the workflow):
    every witness of another source (another norm's attack shards, the exact stage) is
    clipped into the model's box, re-verified by :mod:`robcurves.adversarial`, shortened by
    the attacks' line search and measured in ``norm``; per point the smallest verified
    distance wins (an unverified witness is never used).

    Returns ``(distances, status, method, summary)``: improved points get status
    ``adversarial`` and method ``warm_start:<source>``; ``summary`` counts per source the
    witnesses, the verified ones and the points where the source beat ``norm``'s own attack.
    The result depends on the points only, not on the shard count.
    """
    from robcurves import backend

    backend.select(attack_section(attack or {})["backend"])
    from robcurves import attacks, models

    norm = parse_norm(norm).name
    model, sidecar = models.load_model(model_path)
    bounds = model_bounds(sidecar)
    check_bounds_agree(test.bounds, bounds, "data set", f"model {model_path}")
    x, y = test.x[indices], test.y[indices]
    sources = _witness_sources(model, sidecar, test.meta["sha256"], indices, x.shape[1:], warm_shards, exact_paths)
    d = np.asarray(distances, np.float64).copy()
    status, method = np.asarray(status).astype(object), np.asarray(method).astype(object)
    own = d.copy()
    summary: dict[str, Any] = {}
    open_ = status != "misclassified"  # misclassified points stay at 0
    for src, w in sources.items():
        w = np.where(open_.reshape((-1,) + (1,) * (w.ndim - 1)), w, np.nan)
        ds, _ = attacks.shorten_witnesses(model, x, y, norm, w, bounds=bounds)
        ds = ds.astype(np.float64)
        better = np.isfinite(ds) & (ds < d)
        d = np.where(better, ds, d)
        status[better] = "adversarial"
        method[better] = f"warm_start:{src}"
        summary[src] = {"witnesses": int(np.all(np.isfinite(w.reshape(len(w), -1)), axis=1).sum()),
                        "verified": int(np.isfinite(ds).sum()), "improved": int((np.isfinite(ds) & (ds < own)).sum())}
    improved = int((d < own).sum())
    summary["points_improved"] = improved
    if improved:
        log.info("warm starts: %d of %d points shorter in %s (%s)", improved, len(d), norm,
                 ", ".join(f"{k}: {v['improved']}" for k, v in summary.items() if isinstance(v, dict)))
    return d, status.astype(str), method.astype(str), summary


def merge_curve(shard_paths: list[str], data_path: str, out_path: str, n_points: int | None, label: str,
                provenance: dict[str, Any], attack: dict | None = None, norm: str | None = None,
                log: logging.Logger = _log, model_path: str | None = None,
                warm_shards: "dict[str, list[str]] | None" = None, exact_paths=()) -> RobustnessCurve:
    """Gather checked shards into the robustness curve of one (data set, model, norm).

    With ``attack`` (the config's entry for the norm) and ``norm``, every shard must have
    been made by this code with these settings (:func:`expected_settings`): shards of an
    older version or with other default methods are refused, naming them.

    Warm starts (with ``model_path``): the witnesses of the other norms' attack shards
    (``warm_shards``: norm -> shard paths) and of the exact stage's shards (``exact_paths``)
    compete per point after re-verification (:func:`apply_warm_starts`); the curve's
    ``config["warm_starts"]`` counts what each source improved.
    """
    test = load_dataset(data_path, verify=False)
    n = len(test) if n_points is None else min(int(n_points), len(test))
    expected = (expected_settings(parse_norm(norm).name, attack, n_points, test.meta["sha256"])
                if attack is not None and norm is not None else None)
    merged = merge_attack_shards(shard_paths, n, expected=expected)
    if len(merged["indices"]) != n:
        raise ValueError(f"merged shards hold {len(merged['indices'])} points, expected {n}")
    errors = merged["status"] == "error"
    if errors.any():
        # A point whose search failed has no valid upper bound: it counts as not broken
        # (+inf), and the curve says how many such points there were.
        log.warning("%d points had search errors: %s", int(errors.sum()),
                    sorted(set(merged["reason"][errors].tolist())))
    d = np.where(errors, np.inf, merged["distances"].astype(np.float64))
    status, method = merged["status"], merged["method"]
    warm: dict[str, Any] = {}
    if model_path is not None and (warm_shards or exact_paths):
        d, status, method, warm = apply_warm_starts(model_path, test, merged["indices"], merged["meta"]["norm"], d,
                                                    status, method, attack, warm_shards, exact_paths, log)
    masking = _masking_summary(shard_paths)
    if masking["beaten"]:
        log.warning("gradient masking suspected: the gradient-free check beat the gradient attacks on %d of %d "
                    "checked points", masking["beaten"], masking["checked"])
    curve = RobustnessCurve(
        norm=merged["meta"]["norm"], distances=d, indices=merged["indices"], label=label,
        status=status, method=method,
        config={**provenance, "n_shards": len(shard_paths), "settings_digest": merged["meta"]["settings_digest"],
                "n_errors": int(errors.sum()), "masking_check": masking, "warm_starts": warm},
    )
    curve.save(out_path)
    log.info("%s %s: %d points, %d misclassified, %d not broken, median distance %s", label, curve.norm,
             curve.n_points, int((d == 0).sum()), int(np.isinf(d).sum()),
             float(np.median(d)) if len(d) else None)
    return curve
