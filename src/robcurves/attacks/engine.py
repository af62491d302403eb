"""The search stage: minimal adversarial perturbations of a batch of points, per norm.

:func:`minimal_perturbations` validates everything before any work, runs every
configured method on batches of the correctly classified points, shortens each
candidate by a line search along the segment from the input, re-verifies every
candidate on the model and keeps, per point, the smallest verified distance.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Iterable

import numpy as np
import tensorflow as tf

from robcurves.adversarial import is_adversarial
from robcurves.attacks.base import METHODS, margin_of, validate_method_config
from robcurves.attacks.result import AttackResult, predict_logits, verify_candidates
from robcurves.norms import Norm, parse_norm

# Measured on the benchmark models (see benchmarks/README.md).
# Chosen by measured quality (benchmarks/README.md): FMN against the three classes
# closest to first order finds most minima; a second, differently set FMN run catches
# most of the rest (untargeted for linf and l2; all targets plus a shorter step for l1).
_DEFAULTS: dict[str, list[dict[str, Any]]] = {
    "linf": [{"name": "fmn", "targets": 3}, {"name": "fmn", "targets": 0}],
    "l2": [{"name": "fmn", "targets": 3}, {"name": "fmn", "targets": 0}],
    "l1": [{"name": "fmn", "targets": 9}, {"name": "fmn", "targets": 3, "alpha_init": 0.3}],
}

_BOUND: list[tuple[Any, dict]] = []  # (model, its bound attacks), the last few models used
_BOUND_MODELS = 4


def _bound_cache(model) -> dict:
    for i, (m, cache) in enumerate(_BOUND):
        if m is model:
            _BOUND.append(_BOUND.pop(i))
            return cache
    cache: dict = {}
    _BOUND.append((model, cache))
    del _BOUND[:-_BOUND_MODELS]
    return cache


def default_methods(norm: "Norm | str") -> list[dict[str, Any]]:
    """The recommended method list (an ensemble) for ``norm``."""
    return [dict(m) for m in _DEFAULTS[parse_norm(norm).name]]


class Progress:
    """Plain-text progress lines (points done, points/s, ETA) for job logs."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None, every_s: float = 10.0):
        self.total, self.label, self.enabled = int(total), label, bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = -math.inf

    def update(self, n: int) -> None:
        self.done += int(n)
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.every_s or self.done >= self.total):
            self._last = now
            elapsed = max(now - self.t0, 1e-9)
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            pct = 100.0 * self.done / max(self.total, 1)
            eta_s = "?" if not math.isfinite(eta) else f"{int(eta) // 60}m{int(eta) % 60:02d}s"
            print(f"[{self.label}] {self.done}/{self.total} points ({pct:.1f}%) | {rate:.2f} points/s | "
                  f"elapsed {elapsed:.0f}s | ETA {eta_s}", file=self.stream, flush=True)


def _model_input_shape(model) -> tuple | None:
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, list):
        raise ValueError(f"the model has {len(shape)} inputs; robustness curves need a single-input model")
    return tuple(shape[1:])


def _validate_inputs(model, x, y, bounds) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (N, H, W, C), got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},) to match x {x.shape}, got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lower < upper, got {bounds}")
    x = x.astype(np.float32, copy=False)
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinite values")
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"inputs must lie inside the bounds [{lo}, {hi}], got values in [{x.min()}, {x.max()}]")
    expected = _model_input_shape(model)
    if expected is not None:
        data = tuple(x.shape[1:])
        if len(expected) != len(data) or any(e is not None and int(e) != d for e, d in zip(expected, data)):
            raise ValueError(
                f"model input shape {tuple(None if e is None else int(e) for e in expected)} (without the batch "
                f"axis) does not match the data shape {data} (x has shape {x.shape})"
            )
    return x, y.astype(np.int64)


def _seed_for(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


def _unique_names(cfgs: list[dict]) -> list[str]:
    names, seen = [], {}
    for c in cfgs:
        n = c["name"]
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return names


def _build_refine(model, input_shape, dim, bounds):
    """Line search along x -> x_adv: the smallest scale t in (0, 1] that still flips."""
    lo_b, hi_b = bounds

    @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None, dim], tf.float32),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])
    def refine(x, delta, y, steps):
        lo = tf.zeros(tf.shape(y), tf.float32)
        hi = tf.ones(tf.shape(y), tf.float32)
        for _ in tf.range(steps):
            mid = 0.5 * (lo + hi)
            xm = tf.clip_by_value(x + mid[:, None] * delta, lo_b, hi_b)
            z = tf.cast(model(tf.reshape(xm, (-1, *input_shape)), training=False), tf.float32)
            adv = (margin_of(z, y) < 0.0) & tf.reduce_all(tf.math.is_finite(z), axis=1)
            hi = tf.where(adv, mid, hi)
            lo = tf.where(adv, lo, mid)
        return tf.clip_by_value(x + hi[:, None] * delta, lo_b, hi_b)

    return refine


def minimal_perturbations(
    model,
    x: np.ndarray,
    y: np.ndarray,
    norm: "Norm | str",
    methods: "Iterable[dict | str] | None" = None,
    batch_size: int = 256,
    seed: int = 0,
    bounds: tuple[float, float] = (0.0, 1.0),
    progress: bool = True,
    label: str | None = None,
) -> AttackResult:
    """Smallest adversarial perturbation per point, in ``norm``, over an ensemble of methods.

    ``model`` maps float32 inputs shaped like ``x`` (NHWC, values in ``bounds``) to
    logits; ``y`` holds int labels. ``methods`` is a list of ``{"name": ..., options}``
    (default: :func:`default_methods`). Returns an :class:`AttackResult` whose distances
    are ``norm`` distances (0 for misclassified points, +inf where nothing was found).
    """
    norm = parse_norm(norm)
    methods = default_methods(norm) if methods is None else list(methods)
    if not methods:
        raise ValueError("at least one attack method is needed")
    cfgs = [validate_method_config(norm, m) for m in methods]
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = int(batch_size)
    bounds = (float(bounds[0]), float(bounds[1]))
    x, y = _validate_inputs(model, x, y, bounds)
    n = len(x)
    input_shape = tuple(int(s) for s in x.shape[1:])
    dim = int(np.prod(input_shape))

    # Clean pass: finite logits and labels in range, before any attack work.
    z = predict_logits(model, x, batch_size) if n else np.zeros((0, 0), np.float32)
    if n:
        if z.ndim != 2 or z.shape[0] != n:
            raise ValueError(f"the model must return logits of shape (N, n_classes), got {z.shape}")
        bad = np.flatnonzero(~np.all(np.isfinite(z), axis=1))
        if bad.size:
            raise ValueError(f"the model returns non-finite logits on {bad.size} clean input(s), "
                             f"first at index {int(bad[0])}")
        n_classes = z.shape[1]
        if n_classes < 2:
            raise ValueError(f"the model must output one logit per class (at least 2), got {n_classes}")
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"labels must lie in 0..{n_classes - 1} (the model has {n_classes} outputs), "
                             f"got {int(y.min())}..{int(y.max())}")
    correct = ~is_adversarial(z, y) if n else np.zeros(0, bool)  # robcurves.adversarial: ties are not adversarial

    names = _unique_names(cfgs)
    n_classes = int(z.shape[1]) if n else 0
    # Bound attacks (and their traced tf.functions) are kept per model, so that calling
    # again with the same model and settings does not trace again.
    cache = _bound_cache(model)
    attacks = []
    for c in cfgs:
        key = (norm.name, json.dumps(c, sort_keys=True), input_shape, bounds, n_classes)
        att = cache.get(key)
        if att is None or METHODS.get(c["name"]) is not type(att):
            att = METHODS[c["name"]](norm, **{k: v for k, v in c.items() if k != "name"})
            att.bind(model, input_shape, bounds, n_classes)
            cache[key] = att
        attacks.append(att)
    rkey = ("refine", input_shape, bounds)
    refine = cache.get(rkey)
    if refine is None:
        refine = cache[rkey] = _build_refine(model, input_shape, dim, bounds)

    xf = x.reshape(n, dim)
    dist = np.where(correct, np.inf, 0.0).astype(np.float32)
    x_adv = xf.copy()
    winner = np.full(n, "", dtype=object)
    per_method = {nm: np.where(correct, np.inf, 0.0).astype(np.float32) for nm in names}
    nonfinite = {nm: np.zeros(n, bool) for nm in names}

    def attack_batch(b: np.ndarray) -> None:
        xb, yb = xf[b], y[b]
        for j, (nm, att, c) in enumerate(zip(names, attacks, cfgs)):
            cand, bad = att.run(xb, yb, _seed_for(seed, int(b[0]), j))
            nonfinite[nm][b] |= bad
            ok, d, xc = verify_candidates(model, xb.reshape(-1, *input_shape), cand, yb, norm, bounds, batch_size)
            xc = xc.reshape(len(b), dim)
            if c["refine_steps"] > 0:
                rc = refine(tf.constant(xb), tf.constant(xc - xb), tf.constant(yb.astype(np.int32)),
                            tf.constant(int(c["refine_steps"]), tf.int32)).numpy()
                ok2, d2, xc2 = verify_candidates(model, xb.reshape(-1, *input_shape), rc, yb, norm, bounds,
                                                 batch_size)
                take = ok2 & (~ok | (d2 < d))
                ok = ok | ok2
                d = np.where(take, d2, d)
                xc = np.where(take[:, None], xc2.reshape(len(b), dim), xc)
            d = np.where(ok, d, np.inf).astype(np.float32)
            per_method[nm][b] = d
            better = ok & (d < dist[b])
            idx = b[better]
            dist[idx] = d[better]
            x_adv[idx] = xc[better]
            winner[idx] = nm

    def attack_splitting(b: np.ndarray) -> None:
        try:
            attack_batch(b)
        except tf.errors.ResourceExhaustedError:
            if len(b) <= 1:
                raise
            half = len(b) // 2
            print(f"[attacks {norm.name}] batch of {len(b)} points does not fit in memory; splitting",
                  file=sys.stderr, flush=True)
            attack_splitting(b[:half])
            attack_splitting(b[half:])

    todo = np.flatnonzero(correct)
    bar = Progress(len(todo), label or f"attacks {norm.name}", enabled=progress)
    for start in range(0, len(todo), batch_size):
        b = todo[start:start + batch_size]
        attack_splitting(b)
        bar.update(len(b))

    status = np.where(correct, "not_found", "misclassified").astype(object)
    reason = np.full(n, "", dtype=object)
    found = correct & np.isfinite(dist)
    status[found] = "adversarial"
    any_bad = np.zeros(n, bool)
    for nm in names:
        any_bad |= nonfinite[nm]
    for i in np.flatnonzero(any_bad & correct):
        which = ", ".join(nm for nm in names if nonfinite[nm][i])
        if found[i]:
            reason[i] = f"non-finite logits or gradients during the search of {which}; kept the verified result"
        else:
            status[i] = "error"
            reason[i] = f"non-finite logits or gradients during the search of {which}"
    method = np.where(found, winner, "").astype(str)
    config = {
        "norm": norm.name,
        "methods": [dict(c) for c in cfgs],
        "method_names": names,
        "seed": int(seed),
        "batch_size": batch_size,
        "bounds": list(bounds),
    }
    return AttackResult(
        norm=norm.name,
        distances=dist,
        x_adv=x_adv.reshape(x.shape),
        status=status.astype(str),
        reason=reason.astype(str),
        method=method,
        per_method=per_method,
        config=config,
    )
