"""The exact stage of the workflow: one shard of points, the merge, the attack warm start.

Called from ``workflow/scripts/exact_*.py``; everything here works without Snakemake.
(The stages before it: :mod:`robcurves.stages`; the files the rules ask for:
:mod:`robcurves.targets`.)
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Sequence

import numpy as np

from robcurves.exact.records import ExactResults, load_results, save_results, write_merged_json
from robcurves.norms import parse_norm
from robcurves.shards import load_attack_shards, refuse_stale_shards, shard_indices

_log = logging.getLogger("robcurves.exact")


def warm_start_settings(model, sidecar: dict, data_sha256: str, norm: str) -> dict[str, Any]:
    """What an attack shard must have been made on to warm-start the exact stage on ``model``:
    the same norm, data (its SHA-256), model weights and input box (:func:`robcurves.stages.attack_settings`)."""
    from robcurves.stages import model_bounds, weights_sha256

    return {"norm": parse_norm(norm).name, "data_sha256": data_sha256, "model_weights_sha256": weights_sha256(model),
            "bounds": list(model_bounds(sidecar))}


def load_attack_warm_start(paths: Sequence[str | os.PathLike], indices: np.ndarray, norm: str,
                           input_shape: Sequence[int], expected: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Attack distances (in ``norm``) and adversarial examples for ``indices``.

    Reads the attack shards with :func:`robcurves.shards.load_attack_shards`: they must be
    one set made with one set of settings (their digest) in ``norm``, and, with ``expected``
    (:func:`warm_start_settings`), on this data and this model; a stale shard is refused,
    named. Points the attacks do not cover get ``inf`` (the exact stage then searches the
    box up to ``max_radius``); only points the attack broke (or found misclassified) count.
    """
    norm = parse_norm(norm).name
    n = len(indices)
    dist = np.full(n, np.inf, dtype=np.float64)
    adv = np.zeros((n, *input_shape), dtype=np.float32)
    pos = {int(j): i for i, j in enumerate(indices)}
    shards = load_attack_shards(paths)
    for p, s in zip(paths, shards):
        if parse_norm(s["meta"]["norm"]).name != norm:
            raise ValueError(f"{p}: attack shard is in {s['meta']['norm']}, the exact stage runs in {norm}")
    if expected:
        refuse_stale_shards(paths, shards, expected)
    for s in shards:
        d = s["distances"].astype(np.float64)
        for k, j in enumerate(s["indices"]):
            i = pos.get(int(j))
            if i is not None and s["status"][k] in ("adversarial", "misclassified") and np.isfinite(d[k]):
                if d[k] < dist[i]:
                    dist[i] = d[k]
                    adv[i] = s["x_adv"][k].reshape(input_shape)
    return dist, adv


def exact_shard(model_path: str, data_path: str, out_path: str, norm: str, shard: int, n_shards: int,
                n_points: int, exact: dict[str, Any], attack_paths: Sequence[str] = (),
                log: logging.Logger = _log) -> ExactResults:
    """Exact minimal perturbations for shard ``shard`` of the first ``n_points`` test points.

    The domain is the model's input box (its sidecar's ``bounds``), which must be the data
    set's; one progress line per point, with the running bracket statistics.
    """
    from robcurves.stages import open_model_and_data

    norm = parse_norm(norm).name
    model, sidecar, test, bounds = open_model_and_data(model_path, data_path)
    n = min(int(n_points), len(test))
    idx = shard_indices(n, n_shards, shard)
    method, why = choose_method(exact, model, norm, bounds)
    dist, adv = (load_attack_warm_start(attack_paths, idx, norm, test.x.shape[1:],
                                        expected=warm_start_settings(model, sidecar, test.meta["sha256"], norm))
                 if attack_paths else (None, None))
    t0 = time.perf_counter()
    if method == "bab":
        from robcurves.exact.bab import bab_brackets

        cfg = bab_config_from_dict(exact, norm)
        log.info("exact shard %d/%d: %d points, norm %s, box [%g, %g], time limit %.0f s, method bab (%s), "
                 "rel_tol %g, attack warm start: %s", shard, n_shards, len(idx), norm, *bounds, cfg.time_limit, why,
                 cfg.rel_tol, "yes" if attack_paths else "no")
        res = bab_brackets(model, test.x[idx], test.y[idx], norm, cfg, attack_distances=dist, x_adv=adv, indices=idx,
                          progress=log.info, bounds=bounds)
    else:
        from robcurves.exact.solve import milp_brackets

        cfg = config_from_dict(exact, norm)
        log.info("exact shard %d/%d: %d points, norm %s, box [%g, %g], time limit %.0f s, method milp (%s), "
                 "tightening %s, strategy %s, attack warm start: %s", shard, n_shards, len(idx), norm, *bounds,
                 cfg.time_limit, why, list(cfg.tightening), cfg.method, "yes" if attack_paths else "no")
        res = milp_brackets(model, test.x[idx], test.y[idx], norm, cfg, attack_distances=dist, x_adv=adv,
                            indices=idx, progress=log.info, bounds=bounds)
    res.meta.update({"model": str(model_path), "data_sha256": test.meta["sha256"], "shard": int(shard),
                     "n_shards": int(n_shards), "n_points": n,
                     "attack_files": [str(p) for p in attack_paths]})
    save_results(out_path, res)
    log.info("exact shard %d/%d done in %.1f s: %s", shard, n_shards, time.perf_counter() - t0, res.summary())
    return res


def merge_exact(paths: Sequence[str | os.PathLike], out_path: str, n_points: int | None = None,
                log: logging.Logger = _log) -> ExactResults:
    """Gather shards into ``{norm}.json``; refuses overlapping or missing points."""
    merged = ExactResults.concatenate(load_results(p) for p in paths)
    if n_points is not None and (len(merged) != n_points or not np.array_equal(merged.index, np.arange(n_points))):
        raise ValueError(f"exact: merged shards hold points {merged.index.tolist()}, expected 0..{n_points - 1}")
    merged.meta = {**{k: v for k, v in merged.meta.items() if k not in ("shard",)}, "n_shards": len(paths)}
    write_merged_json(out_path, merged)
    log.info("exact merge: %s", merged.summary())
    return merged


#: how the exact stage solves a point (config ``exact.method``); distinct from the MILP's
#: search strategies (:data:`robcurves.exact.strategies.STRATEGIES`, ``exact.milp_strategy``)
EXACT_METHODS = ("auto", "bab", "milp")


def choose_method(exact: dict[str, Any], model, norm: str, bounds=(0.0, 1.0)) -> tuple[str, str]:
    """``("bab" | "milp", why)`` for the ``exact.method`` setting.

    ``auto`` takes branch and bound (the default chosen by measurement, see
    benchmarks/README.md) where it supports the network's layers, else the MILP; ``l2``
    needs branch and bound (HiGHS solves no quadratic MILP).
    """
    method = str(dict(exact).get("method") or "auto")
    if method not in EXACT_METHODS:
        raise ValueError(f"exact: method must be one of {EXACT_METHODS}, got {method!r}")
    if method == "milp":
        if parse_norm(norm).name == "l2":
            raise ValueError("exact: method milp cannot solve l2 (HiGHS has no quadratic MILP); use method bab")
        return "milp", "configured"
    if method == "bab":
        return "bab", "configured"
    from robcurves.exact.bab.network import bound_graph

    try:
        bound_graph(model, bounds)
    except ValueError as e:
        if parse_norm(norm).name == "l2":
            raise ValueError(f"exact: l2 needs method bab, which cannot take this model: {e}") from None
        return "milp", f"auto: {e}"
    return "bab", "auto"


def _max_radius(exact: dict[str, Any], norm: str | None):
    """``max_radius`` for ``norm``: one number or a mapping from norm to number (None if unset)."""
    v = dict(exact).get("max_radius")
    if isinstance(v, dict):
        by_norm = {parse_norm(k).name: x for k, x in v.items()}
        v = by_norm.get(parse_norm(norm).name) if norm is not None else None
    if v is None or not math.isfinite(float(v)):
        return None
    return float(v)


def config_from_dict(exact: dict[str, Any], norm: str | None = None):
    """:class:`ExactConfig` (method milp) from the workflow's ``exact:`` section (unknown keys ignored).

    The config key ``milp_strategy`` is the MILP's own strategy (``ExactConfig.method``).
    ``max_radius`` may be one number or a mapping from norm to number.
    """
    from robcurves.exact.solve import ExactConfig

    keys = {"time_limit", "tightening", "tightening_share", "rel_gap", "abs_gap", "bisect_rel_tol", "threads",
            "margin", "heuristics"}
    kw = {k: v for k, v in dict(exact).items() if k in keys and v is not None}
    if dict(exact).get("milp_strategy") is not None:
        kw["method"] = dict(exact)["milp_strategy"]
    r = _max_radius(exact, norm)
    if r is not None:
        kw["max_radius"] = r
    return ExactConfig(**kw)


def bab_config_from_dict(exact: dict[str, Any], norm: str | None = None):
    """:class:`robcurves.exact.bab.BabConfig` (method bab) from the ``exact:`` section."""
    from robcurves.exact.bab import BabConfig

    ex = dict(exact)
    kw: dict[str, Any] = {"max_radius": _max_radius(ex, norm)}
    for k in ("time_limit", "rel_tol"):
        if ex.get(k) is not None:
            kw[k] = float(ex[k])
    return BabConfig(**kw)


def exact_runtime_minutes(config: dict) -> int:
    """A job's runtime for a cluster's queue, in minutes: the shard's points at the time limit, with slack."""
    ex = config["exact"]
    per_shard = -(-int(ex["n_points"]) // int(ex["shards"]))
    return int(per_shard * float(ex["time_limit"]) * 1.5 / 60) + 15


def exact_tolerance(config: dict) -> dict[str, float]:
    """What "optimal" means for the config's exact stage: ``upper - lower <= rel * upper + abs``
    (``rel`` includes ``bisect_rel_tol`` for ``method: bisect``); for captions."""
    cfg = config_from_dict(config["exact"])
    rel = cfg.rel_gap + (cfg.bisect_rel_tol if cfg.method == "bisect" else 0.0)
    return {"rel": float(rel), "abs": float(cfg.abs_gap)}
