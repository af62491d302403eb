"""The workflow's stages as plain functions: build a model, attack a shard, merge a curve.

Snakemake scripts call these; so can anyone without Snakemake.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from robcurves.curves import RobustnessCurve
from robcurves.data import load_dataset
from robcurves.norms import parse_norm
from robcurves.shards import merge_attack_shards, save_attack_shard, settings_digest, shard_indices

_log = logging.getLogger("robcurves")


def test_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    from robcurves.models import predict_logits

    return float(np.mean(np.argmax(predict_logits(model, x), axis=1) == y)) if len(y) else float("nan")


def build_model(spec: dict, name: str, out_path: str, train_path: str | None = None,
                test_path: str | None = None, model_file: str | None = None,
                log: logging.Logger = _log) -> dict:
    """Train (``source: train``), convert (``source: convert``, a Croce et al. ``.mat``) or read
    (``source: keras`` or ``onnx``) the model ``spec`` describes.

    Writes ``out_path`` (Keras) and its JSON sidecar; returns the sidecar. A model read from
    a file is saved as the plain Keras model of its network description; the sidecar records
    the file's SHA-256 and whether a softmax was removed.
    """
    from robcurves import models

    test = load_dataset(test_path) if test_path else None
    if spec["source"] == "convert":
        layout = spec.get("layout", "auto")
        model = models.convert_mat(model_file, layout=layout,
                                   input_shape=test.input_shape if test is not None else None)
        sidecar = models.mat_sidecar(model_file, model, spec["dataset"], layout=layout, name=name)
    elif spec["source"] in ("keras", "onnx"):
        model, made_by = models.read_model_file(model_file, spec["source"], spec.get("input_layout", "auto"),
                                                log=log.warning)
        sidecar = {"name": name, "dataset": spec["dataset"], "made_by": made_by}
        log.info("%s: read %s (SHA-256 %s): %s", name, made_by["source"], made_by["sha256"][:16],
                 ", ".join(f"{k} x{v}" for k, v in made_by["layers"].items()))
    else:
        from robcurves.training import train_model

        train = load_dataset(train_path)
        model = models.build_model(spec.get("arch", "lenet_small"), train.input_shape, train.n_classes,
                                   seed=spec.get("seed", 0))
        t0 = time.perf_counter()
        history = train_model(
            model, train, spec.get("method", "st"), epochs=spec["epochs"], batch_size=spec["batch_size"],
            learning_rate=spec["learning_rate"], seed=spec.get("seed", 0), eps=spec.get("eps"),
            **spec.get("options", {}),
        )
        sidecar = {
            "name": name,
            "dataset": train.name,
            "made_by": {"kind": "train", "arch": spec.get("arch", "lenet_small"), **history,
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


def attack_settings(norm: str, attack: dict, n_points: int | None, model, model_sidecar: dict,
                    data_sha: str) -> dict:
    """Everything that determines an attack shard's numbers; shards must agree on it.

    Deterministic by construction (no timings), so that the same config gives
    byte-identical curves from separate runs.
    """
    return {"norm": norm, "attack": attack, "n_points": n_points,
            "model": model_sidecar.get("name"), "model_weights_sha256": weights_sha256(model),
            "data_sha256": data_sha}


def attack_shard(model_path: str, data_path: str, out_path: str, norm: str, shard: int, n_shards: int,
                 n_points: int | None, attack: dict, log: logging.Logger = _log) -> None:
    """Minimal perturbations in ``norm`` for shard ``shard`` of the first ``n_points`` test points."""
    from robcurves import attacks, models

    norm = parse_norm(norm).name
    model, sidecar = models.load_model(model_path)
    test = load_dataset(data_path)
    models.check_model_fits(model, sidecar, test.x)
    n = len(test) if n_points is None else min(int(n_points), len(test))
    idx = shard_indices(n, n_shards, shard)
    methods = attack.get("methods") or attacks.default_methods(norm)
    settings = attack_settings(norm, attack, n_points, model, sidecar, test.meta["sha256"])
    log.info("shard %d/%d: %d points, norm %s, methods %s", shard, n_shards, len(idx), norm,
             [m["name"] for m in methods])
    t0 = time.perf_counter()
    result = attacks.minimal_perturbations(
        model, test.x[idx], test.y[idx], norm, methods=methods,
        batch_size=attack.get("batch_size", 500), seed=attack.get("seed", 0), progress=True,
    )
    dt = time.perf_counter() - t0
    log.info("shard %d/%d done in %.1f s (%.1f points/s); statuses %s", shard, n_shards, dt,
             len(idx) / dt if dt > 0 else float("nan"),
             {str(k): int(v) for k, v in zip(*np.unique(result.status, return_counts=True))})
    save_attack_shard(out_path, result, idx, shard, n_shards, settings)


def merge_curve(shard_paths: list[str], data_path: str, out_path: str, n_points: int | None, label: str,
                provenance: dict[str, Any], log: logging.Logger = _log) -> RobustnessCurve:
    """Gather checked shards into the robustness curve of one (data set, model, norm)."""
    test = load_dataset(data_path, verify=False)
    n = len(test) if n_points is None else min(int(n_points), len(test))
    merged = merge_attack_shards(shard_paths, n)
    if len(merged["indices"]) != n:
        raise ValueError(f"merged shards hold {len(merged['indices'])} points, expected {n}")
    errors = merged["status"] == "error"
    if errors.any():
        # A point whose search failed has no valid upper bound: it counts as not broken
        # (+inf), and the curve says how many such points there were.
        log.warning("%d points had search errors: %s", int(errors.sum()),
                    sorted(set(merged["reason"][errors].tolist())))
    d = np.where(errors, np.inf, merged["distances"].astype(np.float64))
    curve = RobustnessCurve(
        norm=merged["meta"]["norm"], distances=d, indices=merged["indices"], label=label,
        status=merged["status"], method=merged["method"],
        config={**provenance, "n_shards": len(shard_paths), "settings_digest": merged["meta"]["settings_digest"],
                "n_errors": int(errors.sum())},
    )
    curve.save(out_path)
    log.info("%s %s: %d points, %d misclassified, %d not broken, median distance %s", label, curve.norm,
             curve.n_points, int((d == 0).sum()), int(np.isinf(d).sum()),
             float(np.median(d)) if len(d) else None)
    return curve
