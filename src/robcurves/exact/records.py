"""Result records of the exact stage, and their on-disk formats.

One record per point. Distances are in the record's norm (``norm``: linf, l1, l2):

- ``status``: ``"optimal"`` (lower and upper agree up to the solver gap, and the upper
  bound carries a verified witness), ``"time_limit"`` (a bracket [lower, upper]; upper is
  ``inf`` if nothing adversarial was found) or ``"no_adversarial_in_domain"`` (proven:
  no adversarial example within ``domain_radius``, so the minimal distance is at least
  that; upper is ``inf``).
- ``lower``: certified lower bound on the minimal adversarial distance.
- ``upper``: distance of the witness (re-checked in float32 on the TensorFlow model), or
  ``inf`` without one.
- ``witness``: the adversarial input (NaN-filled without one), ``witness_class`` its
  predicted class (-1 without one).
- ``solve_time``: wall-clock seconds spent on the point (bounds + MILP).

Shard file (``.npz``, written atomically): one array per field, plus ``norm`` and
``meta`` (JSON) as 0-d strings. The merged file is strict JSON with ``null`` for ``inf``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from robcurves.atomic import save_npz, write_json
from robcurves.norms import parse_norm

STATUSES = ("optimal", "time_limit", "no_adversarial_in_domain")


@dataclass
class ExactResult:
    """The exact stage's answer for one point (distances in the norm ``norm``)."""

    index: int
    label: int
    norm: str
    status: str
    lower: float
    upper: float
    witness: np.ndarray | None
    witness_class: int
    solve_time: float
    domain_radius: float
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.norm = parse_norm(self.norm).name
        if self.status not in STATUSES:
            raise ValueError(f"exact: status must be one of {STATUSES}, got {self.status!r}")
        if not self.lower <= self.upper:
            raise ValueError(f"exact: lower bound {self.lower} exceeds upper bound {self.upper}")

    @property
    def is_exact(self) -> bool:
        return self.status == "optimal"


@dataclass
class ExactResults:
    """A batch of records as arrays (what a shard file holds)."""

    norm: str
    index: np.ndarray
    label: np.ndarray
    status: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    witness: np.ndarray
    witness_class: np.ndarray
    solve_time: np.ndarray
    domain_radius: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def from_records(cls, records: Sequence[ExactResult], input_shape: Sequence[int],
                     norm: str | None = None, meta: dict | None = None) -> "ExactResults":
        norms = {r.norm for r in records}
        if len(norms) > 1:
            raise ValueError(f"exact: records mix norms {sorted(norms)}")
        name = parse_norm(norm if norm is not None else (norms.pop() if norms else "linf")).name
        n = len(records)
        wit = np.full((n, *input_shape), np.nan, dtype=np.float32)
        for i, r in enumerate(records):
            if r.witness is not None:
                wit[i] = np.asarray(r.witness, dtype=np.float32).reshape(input_shape)
        info = [r.info for r in records]
        return cls(
            norm=name,
            index=np.array([r.index for r in records], dtype=np.int64),
            label=np.array([r.label for r in records], dtype=np.int64),
            status=np.array([r.status for r in records], dtype="U32"),
            lower=np.array([r.lower for r in records], dtype=np.float64),
            upper=np.array([r.upper for r in records], dtype=np.float64),
            witness=wit,
            witness_class=np.array([r.witness_class for r in records], dtype=np.int64),
            solve_time=np.array([r.solve_time for r in records], dtype=np.float64),
            domain_radius=np.array([r.domain_radius for r in records], dtype=np.float64),
            meta={**(meta or {}), "info": info},
        )

    @classmethod
    def concatenate(cls, parts: Iterable["ExactResults"]) -> "ExactResults":
        parts = list(parts)
        if not parts:
            raise ValueError("exact: nothing to concatenate")
        norms = {p.norm for p in parts}
        if len(norms) != 1:
            raise ValueError(f"exact: shards mix norms {sorted(norms)}")
        cat = {k: np.concatenate([getattr(p, k) for p in parts]) for k in _ARRAYS}
        meta = dict(parts[0].meta)
        meta["info"] = [i for p in parts for i in p.meta.get("info", [{}] * len(p))]
        out = cls(norm=parts[0].norm, meta=meta, **cat)
        order = np.argsort(out.index, kind="stable")
        if len(np.unique(out.index)) != len(out.index):
            raise ValueError("exact: shards overlap (a point index occurs twice)")
        return out.take(order)

    def take(self, order: np.ndarray) -> "ExactResults":
        meta = dict(self.meta)
        if "info" in meta:
            meta["info"] = [meta["info"][i] for i in order]
        return ExactResults(norm=self.norm, meta=meta, **{k: getattr(self, k)[order] for k in _ARRAYS})

    def summary(self) -> dict[str, Any]:
        n = len(self)
        fin = np.isfinite(self.upper)
        ratio = np.where(fin & (self.upper > 0), self.lower / np.where(self.upper > 0, self.upper, 1), np.nan)
        return {
            "n": n,
            "optimal": int(np.sum(self.status == "optimal")),
            "time_limit": int(np.sum(self.status == "time_limit")),
            "no_adversarial_in_domain": int(np.sum(self.status == "no_adversarial_in_domain")),
            "median_time_s": float(np.median(self.solve_time)) if n else None,
            "p90_time_s": float(np.percentile(self.solve_time, 90)) if n else None,
            "median_lower_over_upper": float(np.nanmedian(ratio)) if np.any(np.isfinite(ratio)) else None,
        }

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON view (``inf`` becomes ``null``; witnesses are left in the shards)."""

        def num(v: float):
            return float(v) if math.isfinite(v) else None

        points = []
        info = self.meta.get("info", [{}] * len(self))
        for i in range(len(self)):
            points.append({
                "index": int(self.index[i]), "label": int(self.label[i]), "status": str(self.status[i]),
                "lower": num(self.lower[i]), "upper": num(self.upper[i]),
                "witness_class": int(self.witness_class[i]), "solve_time": float(self.solve_time[i]),
                "domain_radius": num(self.domain_radius[i]), "info": info[i] if i < len(info) else {},
            })
        meta = {k: v for k, v in self.meta.items() if k != "info"}
        return {"norm": self.norm, "distance_unit": f"{self.norm} distance in input space [0, 1]",
                "meta": meta, "summary": self.summary(), "points": points}


_ARRAYS = ("index", "label", "status", "lower", "upper", "witness", "witness_class", "solve_time", "domain_radius")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def save_results(path: str | os.PathLike, res: ExactResults) -> None:
    """Write a shard atomically (``.npz``)."""
    arrays = {k: getattr(res, k) for k in _ARRAYS}
    save_npz(path, norm=np.array(res.norm), meta=np.array(json.dumps(_jsonable(res.meta), sort_keys=True)), **arrays)


def load_results(path: str | os.PathLike) -> ExactResults:
    with np.load(path, allow_pickle=False) as f:
        missing = set(_ARRAYS) - set(f.files)
        if missing:
            raise ValueError(f"{path}: not an exact-results file, missing arrays {sorted(missing)}")
        arrays = {k: f[k] for k in _ARRAYS}
        norm = str(f["norm"])
        meta = json.loads(str(f["meta"])) if "meta" in f.files else {}
    return ExactResults(norm=norm, meta=meta, **arrays)


def write_merged_json(path: str | os.PathLike, res: ExactResults) -> None:
    write_json(path, _jsonable(res.to_json()))


def read_merged_json(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    for p in data["points"]:
        p["upper"] = math.inf if p["upper"] is None else p["upper"]
    return data
