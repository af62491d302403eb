"""The record of a minimal-perturbation search and the independent check behind it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robcurves.adversarial import verify_witnesses
from robcurves.atomic import save_npz
from robcurves.norms import Norm, parse_norm

ATTACK_STATUSES = ("misclassified", "adversarial", "not_found", "error")
_FORMAT = "robcurves.attacks/1"


@dataclass
class AttackResult:
    """Per point: the smallest verified perturbation found, in one norm.

    - ``distances`` float32 ``(N,)``: the ``norm`` distance of ``x_adv`` from ``x``,
      recomputed in float32; 0.0 for misclassified points, +inf where no adversarial
      example was found (status ``not_found`` or ``error``); never NaN.
    - ``x_adv`` float32, same shape as the inputs (the input itself where there is no
      adversarial example).
    - ``status``: ``misclassified`` | ``adversarial`` | ``not_found`` | ``error``;
      ``reason``: "" or why (for example non-finite logits during the search);
      ``method``: the method whose candidate won ("" where none did).
    - ``per_method``: method name -> its own verified distances (+inf where it failed).
    - ``config``: the methods and settings used, the seed and the bounds.
    """

    norm: str
    distances: np.ndarray
    x_adv: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    method: np.ndarray
    per_method: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.norm = parse_norm(self.norm).name
        self.distances = np.asarray(self.distances, dtype=np.float32)
        self.x_adv = np.asarray(self.x_adv, dtype=np.float32)
        self.status = np.asarray(self.status, dtype=str)
        self.reason = np.asarray(self.reason, dtype=str)
        self.method = np.asarray(self.method, dtype=str)
        self.per_method = {k: np.asarray(v, dtype=np.float32) for k, v in self.per_method.items()}
        n = len(self.distances)
        for name, arr in [("x_adv", self.x_adv), ("status", self.status), ("reason", self.reason),
                          ("method", self.method), *[(f"per_method[{k}]", v) for k, v in self.per_method.items()]]:
            if len(arr) != n:
                raise ValueError(f"AttackResult: {name} has {len(arr)} rows, distances has {n}")
        if np.isnan(self.distances).any():
            raise ValueError("AttackResult: distances must never be NaN")
        bad = sorted(set(self.status.tolist()) - set(ATTACK_STATUSES))
        if bad:
            raise ValueError(f"AttackResult: unknown status values {bad}; expected {list(ATTACK_STATUSES)}")

    def __len__(self) -> int:
        return len(self.distances)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically as ``.npz`` (no pickle) with a JSON ``meta`` entry."""
        meta = {"format": _FORMAT, "norm": self.norm, "config": self.config,
                "per_method": list(self.per_method), "n": len(self)}
        arrays = {
            "distances": self.distances, "x_adv": self.x_adv, "status": self.status,
            "reason": self.reason, "method": self.method,
            "meta": np.array(json.dumps(meta, sort_keys=True, allow_nan=False)),
        }
        for i, v in enumerate(self.per_method.values()):
            arrays[f"per_method_{i}"] = v
        save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AttackResult":
        with np.load(path, allow_pickle=False) as f:
            if "meta" not in f.files:
                raise ValueError(f"{path}: not a robcurves attack result (no meta)")
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path}: unknown attack result format {meta.get('format')!r}")
            per = {name: f[f"per_method_{i}"] for i, name in enumerate(meta["per_method"])}
            return cls(norm=meta["norm"], distances=f["distances"], x_adv=f["x_adv"], status=f["status"],
                       reason=f["reason"], method=f["method"], per_method=per, config=meta["config"])

    @classmethod
    def concatenate(cls, results: "list[AttackResult]") -> "AttackResult":
        """Join shards in the given order. They must share the norm; the config of the
        first is kept (shards of one run share it). Methods missing from a shard count
        as +inf there."""
        if not results:
            raise ValueError("AttackResult.concatenate: no results given")
        norms = {r.norm for r in results}
        if len(norms) != 1:
            raise ValueError(f"AttackResult.concatenate: shards have different norms {sorted(norms)}")
        names: list[str] = []
        for r in results:
            names += [k for k in r.per_method if k not in names]
        per = {k: np.concatenate([r.per_method.get(k, np.full(len(r), np.inf, np.float32)) for r in results])
               for k in names}
        return cls(
            norm=results[0].norm,
            distances=np.concatenate([r.distances for r in results]),
            x_adv=np.concatenate([r.x_adv for r in results]),
            status=np.concatenate([r.status for r in results]),
            reason=np.concatenate([r.reason for r in results]),
            method=np.concatenate([r.method for r in results]),
            per_method=per,
            config=dict(results[0].config),
        )


def predict_logits(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` on ``x`` in batches (float32, inference mode, active backend).

    ``model``: a Keras model, or what :func:`robcurves.backend.logits_function` accepts.
    """
    from robcurves import backend as B

    fn = B.logits_function(model)
    x = np.asarray(x, np.float32)
    out = []
    with B.inference():
        for i in range(0, len(x), max(1, int(batch_size))):
            out.append(B.to_numpy(fn(B.to_tensor(x[i:i + batch_size]))).astype(np.float32))
    if not out:
        n_out = int(model.output_shape[-1]) if hasattr(model, "output_shape") else 0
        return np.zeros((0, n_out), np.float32)
    return np.concatenate(out)


def _is_model(obj) -> bool:
    """A Keras model/layer or a PyTorch module (as opposed to a NumPy logits function)."""
    import sys

    try:
        import keras

        if isinstance(obj, keras.Layer):
            return True
    except ImportError:  # pragma: no cover - keras is a dependency
        pass
    if "torch" in sys.modules:
        import torch

        return isinstance(obj, torch.nn.Module)
    return False


def verify_candidates(model, x, x_adv, y, norm: "Norm | str", bounds=(0.0, 1.0), batch_size: int = 512):
    """Clip ``x_adv`` into the box, re-run the model, recompute the distance.

    ``model``: a model (see :func:`predict_logits`) or a function mapping a NumPy batch
    shaped like ``x`` to float32 logits. Returns ``(is_adv, distances, x_clipped)``:
    ``is_adv`` by the one rule of :mod:`robcurves.adversarial` (finite logits, margin < 0;
    a tie is not adversarial); ``distances`` is the float32 ``norm`` distance of the
    clipped candidate from ``x``.
    """
    if _is_model(model):
        def logits_fn(xc):
            return predict_logits(model, xc, batch_size)
    else:
        def logits_fn(xc):
            return np.asarray(model(xc), np.float32)
    return verify_witnesses(logits_fn, np.asarray(x, np.float32), x_adv, y, parse_norm(norm), bounds)


def verify_adversarial(model, x, x_adv, y, norm: "Norm | str", bounds=(0.0, 1.0), batch_size: int = 512):
    """``(is_adv, distances)``: is each clipped ``x_adv`` adversarial for ``model`` (the
    rule of :mod:`robcurves.adversarial`), and its float32 distance from ``x`` in ``norm``."""
    x = np.asarray(x, np.float32)
    is_adv, dist, _ = verify_candidates(model, x, x_adv, y, norm, bounds, batch_size)
    return is_adv, dist
