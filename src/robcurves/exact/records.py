"""Result records of the exact stage, and their on-disk formats.

One record per point. Distances are in the record's norm (``norm``: linf, l1, l2):

- ``status``:

  - ``"misclassified"``: the clean point is already adversarial (by
    :func:`robcurves.adversarial.is_adversarial`); ``lower = upper = 0``. Counted apart,
    never as solved.
  - ``"optimal"``: lower and upper agree up to the record's tolerance,
    ``upper - lower <= rel_tol * upper + abs_tol``, and the upper bound carries a verified
    witness. "Optimal" means exactly this, not more.
  - ``"time_limit"``: a bracket [lower, upper]; upper is ``inf`` if nothing adversarial
    was found.
  - ``"no_adversarial_in_domain"``: proven: no adversarial example within
    ``domain_radius``, so the minimal distance is at least that; upper is ``inf``
    (``domain_radius`` is ``inf`` where the search covered the whole input box, then
    ``lower`` is ``inf`` too).

- ``lower``: certified lower bound on the minimal adversarial distance.
- ``upper``: distance of the witness (re-checked in float32 on the TensorFlow model, by
  the one rule of :mod:`robcurves.adversarial`), or ``inf`` without one. It is the only
  upper bound the figures use.
- ``witness``: the adversarial input (NaN-filled without one), ``witness_class`` its
  predicted class (-1 without one).
- ``solve_time``: wall-clock seconds spent on the point (bounds + MILP).
- ``domain_radius``: radius of the ball searched; ``attack_distance``: the warm-start
  attack's claimed distance (``inf`` without one), ``attack_verified``: whether the same
  checker accepted the attack's example (an unverified claim is never an upper bound).
- ``rel_tol``, ``abs_tol``: the tolerance that ``"optimal"`` means for this record.

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

RECORD_STATUSES = ("misclassified", "optimal", "time_limit", "no_adversarial_in_domain")
# Statuses of correctly classified points (the ones an exact solve is about).
SOLVE_STATUSES = RECORD_STATUSES[1:]


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
    attack_distance: float = math.inf  # the attack's claimed distance (warm start), inf without one
    attack_verified: bool = False  # the checker accepted the attack's example
    rel_tol: float = math.nan  # "optimal": upper - lower <= rel_tol * upper + abs_tol
    abs_tol: float = math.nan

    def __post_init__(self) -> None:
        self.norm = parse_norm(self.norm).name
        if self.status not in RECORD_STATUSES:
            raise ValueError(f"exact: status must be one of {RECORD_STATUSES}, got {self.status!r}")
        if not self.lower <= self.upper:
            raise ValueError(f"exact: lower bound {self.lower} exceeds upper bound {self.upper}")

    @property
    def is_exact(self) -> bool:
        """Solved to the record's tolerance (a misclassified point is not "solved")."""
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
    attack_distance: np.ndarray
    attack_verified: np.ndarray
    rel_tol: np.ndarray
    abs_tol: np.ndarray
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
            attack_distance=np.array([r.attack_distance for r in records], dtype=np.float64),
            attack_verified=np.array([bool(r.attack_verified) for r in records], dtype=bool),
            rel_tol=np.array([r.rel_tol for r in records], dtype=np.float64),
            abs_tol=np.array([r.abs_tol for r in records], dtype=np.float64),
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
        """Counts by status, time per point, and how close the attack came to the certified value."""
        return summarize(self.status, self.lower, self.upper, self.attack_distance, self.solve_time,
                         self.attack_verified, self.rel_tol, self.abs_tol)

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
                "domain_radius": num(self.domain_radius[i]), "attack_distance": num(self.attack_distance[i]),
                "attack_verified": bool(self.attack_verified[i]),
                "rel_tol": num(self.rel_tol[i]), "abs_tol": num(self.abs_tol[i]),
                "info": info[i] if i < len(info) else {},
            })
        meta = {k: v for k, v in self.meta.items() if k != "info"}
        box = self.meta.get("bounds", [0.0, 1.0])
        return {"norm": self.norm, "distance_unit": f"{self.norm} distance in input space [{box[0]}, {box[1]}]",
                "meta": meta, "summary": self.summary(), "points": points}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    ok = np.isfinite(num) & np.isfinite(den) & (den > 0)
    out = np.full(len(num), np.nan)
    out[ok] = num[ok] / den[ok]
    return out


def summarize(status, lower, upper, attack, solve_time, attack_verified=None, rel_tol=None,
              abs_tol=None) -> dict[str, Any]:
    """Counts and gap statistics of exact brackets against the attack (distances in one norm).

    Misclassified points are counted apart (``misclassified``) and left out of every
    other count and ratio: ``n_classified`` = ``optimal`` + ``time_limit`` +
    ``no_adversarial_in_domain`` is what "k of n solved" refers to.
    Only verified upper bounds enter: ``upper`` (a witness the checker accepted) and the
    attack's distance where ``attack_verified``. ``lower_over_upper``: certified lower bound
    / upper bound; ``lower_over_attack``: certified lower bound / verified attack distance;
    ``attack_within_1pct``: share of points with a verified attack distance whose attack
    distance is at most 1.01 times the certified lower bound. ``optimal_rel_tol`` /
    ``optimal_abs_tol``: the tolerance "optimal" means (the largest over the records).
    """
    status = np.asarray(status).astype(str)
    lower, upper, attack = (np.asarray(a, dtype=np.float64) for a in (lower, upper, attack))
    solve_time = np.asarray(solve_time, dtype=np.float64)
    n = len(status)
    verified = (np.ones(n, bool) if attack_verified is None else np.asarray(attack_verified, dtype=bool))
    claimed = attack
    attack = np.where(verified, attack, np.inf)  # an unverified claim bounds nothing
    mis = status == "misclassified"
    ok = ~mis
    lu = _ratio(lower[ok], upper[ok])
    la = _ratio(lower[ok], attack[ok])
    has_attack = ok & np.isfinite(attack) & (attack > 0)
    times = solve_time[ok]

    def med(a):
        a = a[np.isfinite(a)]
        return float(np.median(a)) if len(a) else None

    def tol(a):
        a = np.asarray(a, dtype=np.float64) if a is not None else np.zeros(0)
        a = a[np.isfinite(a)]
        return float(a.max()) if len(a) else None

    return {
        "n": int(n),
        "misclassified": int(mis.sum()),
        "n_classified": int(ok.sum()),
        "optimal": int(np.sum(status == "optimal")),
        "time_limit": int(np.sum(status == "time_limit")),
        "no_adversarial_in_domain": int(np.sum(status == "no_adversarial_in_domain")),
        "optimal_rel_tol": tol(rel_tol),
        "optimal_abs_tol": tol(abs_tol),
        "median_time_s": float(np.median(times)) if len(times) else None,
        "p90_time_s": float(np.percentile(times, 90)) if len(times) else None,
        "median_lower_over_upper": med(lu),
        "median_lower_over_attack": med(la),
        "attack_within_1pct": (float(np.mean(attack[has_attack] <= 1.01 * lower[has_attack]))
                               if has_attack.any() else None),
        "n_with_attack": int(has_attack.sum()),
        "n_attack_rejected": int(np.sum(ok & ~verified & np.isfinite(claimed))),
    }


class BracketTally:
    """Running bracket statistics of the records of a job, for its progress lines.

    :meth:`add` returns the point, its status and bracket (in ``norm``) and, so far, the
    count per status (misclassified apart) and the median relative bracket width
    ``(upper - lower) / upper`` over the classified points with a finite upper bound.
    """

    def __init__(self, norm: str):
        self.norm = parse_norm(norm).name
        self.counts = {s: 0 for s in RECORD_STATUSES}
        self.gaps: list[float] = []

    def add(self, rec: ExactResult) -> str:
        self.counts[rec.status] += 1
        if rec.status != "misclassified" and math.isfinite(rec.upper) and rec.upper > 0:
            self.gaps.append((rec.upper - rec.lower) / rec.upper)
        gap = f"{100 * float(np.median(self.gaps)):.3g}%" if self.gaps else "-"
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        return (f"point {rec.index}: {rec.status} [{rec.lower:.6g}, {rec.upper:.6g}] ({self.norm}) in "
                f"{rec.solve_time:.1f}s; so far {counts}; median bracket width {gap}")


_ARRAYS = ("index", "label", "status", "lower", "upper", "witness", "witness_class", "solve_time", "domain_radius",
           "attack_distance", "attack_verified", "rel_tol", "abs_tol")


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
            old = {"index", "status", "lower", "upper"} <= set(f.files)
            raise ValueError(f"{path}: " + ("made by an older robcurves (no " + ", ".join(sorted(missing)) +
                                            "); delete it and run the exact stage again" if old else
                                            f"not an exact-results file, missing arrays {sorted(missing)}"))
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
        for key in ("upper", "attack_distance", "domain_radius"):
            p[key] = math.inf if p.get(key) is None else p[key]
        if p.get("status") == "no_adversarial_in_domain" and p.get("lower") is None:
            p["lower"] = math.inf  # proven over the whole input box
    return data
