"""Scatter/gather of per-point work: which points a shard holds, and checked merging.

A shard file is self-describing: it records its shard number, the total number of
shards, the test-point indices it covers and the settings that made it with their digest
(the attack settings, the resolved method list with every option, the package version,
the model's weights and the data; :func:`robcurves.stages.attack_settings`).
Merging refuses anything that would silently give a short or mixed curve, and shards that
the current code would not make the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Any, Sequence

import numpy as np

from robcurves.atomic import save_npz

SHARD_FORMAT = "robcurves.attack-shard/1"


def shard_indices(n_points: int, n_shards: int, shard: int) -> np.ndarray:
    """Indices of the points in ``shard`` (0-based) of ``n_shards`` contiguous, near-equal parts.

    More shards than points is allowed: the surplus shards are empty.
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must lie in 0..{n_shards - 1}, got {shard}")
    return np.array_split(np.arange(n_points, dtype=np.int64), n_shards)[shard]


def settings_digest(settings: Any) -> str:
    """A short stable hash of JSON-serialisable settings."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_attack_shard(path: str | os.PathLike, result, indices: np.ndarray, shard: int, n_shards: int,
                      settings: dict) -> None:
    """Write an attack shard: the result record of ``robcurves.attacks`` plus provenance."""
    meta = {
        "format": SHARD_FORMAT,
        "norm": result.norm,
        "shard": int(shard),
        "n_shards": int(n_shards),
        "settings": settings,
        "settings_digest": settings_digest(settings),
        "attack_config": getattr(result, "config", {}),
    }
    per_method = getattr(result, "per_method", {}) or {}
    save_npz(
        path,
        indices=np.asarray(indices, dtype=np.int64),
        distances=np.asarray(result.distances, dtype=np.float32),
        x_adv=np.asarray(result.x_adv, dtype=np.float32),
        status=np.asarray(result.status, dtype=str),
        reason=np.asarray(result.reason, dtype=str),
        method=np.asarray(result.method, dtype=str),
        per_method_names=np.asarray(list(per_method), dtype=str),
        per_method_distances=(np.stack([np.asarray(v, np.float32) for v in per_method.values()])
                              if per_method else np.zeros((0, len(indices)), np.float32)),
        meta=np.array(json.dumps(meta, sort_keys=True, default=str)),
    )


def load_attack_shard(path: str | os.PathLike) -> dict[str, Any]:
    """The arrays of one shard file and its ``meta`` (parsed); refuses a file of another format."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"attack shard missing: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in f.files}
        meta = json.loads(str(out["meta"])) if "meta" in out else {}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable attack shard ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != SHARD_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path}: not an attack shard (format {found!r}, expected {SHARD_FORMAT!r})")
    out["meta"] = meta
    return out


def stale_settings(settings: dict, expected: dict) -> list[str]:
    """The keys of ``expected`` on which a shard's ``settings`` differ, as readable lines."""
    out = []
    for key, want in expected.items():
        got = settings.get(key, "(not recorded)")
        if json.dumps(got, sort_keys=True, default=str) != json.dumps(want, sort_keys=True, default=str):
            out.append(f"{key}: shard has {got!r}, this code makes {want!r}")
    return out


def check_attack_shards(paths: Sequence[str | os.PathLike], shards: Sequence[dict[str, Any]]) -> None:
    """Check that loaded ``shards`` (from ``paths``, in order) are one set made one way.

    Raises ``ValueError`` naming the offending file when a shard was made for another
    number of shards, in another norm or with other settings than the first (its digest).
    """
    first = shards[0]["meta"]
    for p, s in zip(paths, shards):
        m = s["meta"]
        if m["n_shards"] != len(paths):
            raise ValueError(f"{p}: made for {m['n_shards']} shards, but it is read as one of {len(paths)}")
        if m["norm"] != first["norm"]:
            raise ValueError(f"{p}: norm {m['norm']} differs from {first['norm']} in {paths[0]}")
        if m["settings_digest"] != first["settings_digest"]:
            raise ValueError(f"{p}: made with other settings than {paths[0]} "
                             f"({m['settings']} vs {first['settings']}); rerun the stale shard")


def refuse_stale_shards(paths: Sequence[str | os.PathLike], shards: Sequence[dict[str, Any]], expected: dict) -> None:
    """Raise ``ValueError`` naming the first shard whose settings differ from ``expected``:
    what the current code and inputs would record (the package version, the resolved methods,
    the data's or the model's hash, ...), i.e. a shard made by other code or on other inputs."""
    for p, s in zip(paths, shards):
        diff = stale_settings(s["meta"].get("settings", {}), expected)
        if diff:
            raise ValueError(f"{p}: made by other code or settings than the current ones; " + "; ".join(diff)
                             + ". Delete the stale shards (or rerun with --forcerun attack_shard) to remake them")


def load_attack_shards(paths: Sequence[str | os.PathLike], expected: dict | None = None) -> list[dict[str, Any]]:
    """:func:`load_attack_shard` for every path, checked as one set (:func:`check_attack_shards`)
    and, with ``expected``, against the current settings (:func:`refuse_stale_shards`)."""
    missing = [str(p) for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError("attack shards missing: " + ", ".join(missing))
    shards = [load_attack_shard(p) for p in paths]
    if shards:
        check_attack_shards(paths, shards)
    if expected:
        refuse_stale_shards(paths, shards, expected)
    return shards


def merge_attack_shards(paths: Sequence[str | os.PathLike], n_points: int,
                        expected: dict | None = None) -> dict[str, Any]:
    """Load shards 0..n-1 in order and check that together they are exactly points 0..n_points-1.

    Raises ``ValueError`` naming the offending file when a shard is missing, was made
    with other settings or for another norm, or covers the wrong points. ``expected``:
    settings that this code would record now (the package version, the resolved method
    list, ...); a shard made otherwise (by an older version, or before a default changed)
    is refused, with what differs (:func:`load_attack_shards`).
    """
    shards = load_attack_shards(paths, expected)
    for i, (p, s) in enumerate(zip(paths, shards)):
        if s["meta"]["shard"] != i:
            raise ValueError(f"{p}: holds shard {s['meta']['shard']}, expected shard {i}")
        want = shard_indices(n_points, len(paths), i)
        if not np.array_equal(s["indices"], want):
            raise ValueError(f"{p}: covers points {s['indices'][:5].tolist()}... "
                             f"but shard {i} of {len(paths)} over {n_points} points should cover "
                             f"{want[:5].tolist()}... ({len(want)} points)")
    keys = ["indices", "distances", "status", "reason", "method"]
    merged = {k: np.concatenate([s[k] for s in shards]) for k in keys}
    merged["meta"] = shards[0]["meta"]
    return merged
