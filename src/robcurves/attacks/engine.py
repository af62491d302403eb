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
from keras import ops

from robcurves import backend as B
from robcurves.adversarial import is_adversarial
from robcurves.attacks.base import ATTACK_METHODS, Problem, all_finite, margin_of, validate_method_config
from robcurves.attacks.result import AttackResult, verify_candidates
from robcurves.norms import Norm, parse_norm

STRENGTHS = ("fast", "default", "thorough")

# The presets, chosen by measurement on the MMR-Universal MNIST network (first 200 test
# points against the full-budget ensemble) and on ReLU networks with exact distances
# (tests/test_attack_strength.py); benchmarks/README.md has the numbers.
# "default": FMN against the classes closest to first order plus a second, differently
# set FMN run; from step `prune_after` on, runs more than `prune_margin` behind the
# point's best leave the batch (within 1% of the full-budget result on 99.5% (linf) /
# 99% (l2) / 99.5% (l1) of the points for 63% / 65% / 54% of its gradients).
# "thorough" adds, among others, PGD (APGD in linf) with 5 random restarts in a 5% bracket
# below the best so far: on a ReLU MLP FMN's deterministic start leaves 2 of 30 points 1.2% and
# 3.6% above the exact linf distance; the restarts bring one of them within 1%. In
# "default" that member cost 2.6x the gradients on the MMR network for no measurable
# gain there, so it is left to "thorough".
# Patience-based early stopping is off: FMN's best improves in bursts, and stopping
# after 20-30 flat steps lost 1% on 6-11% of the points.
# "thorough": the full budget everywhere plus more members; "fast": one short FMN run.
_PRESETS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "default": {
        "linf": [{"name": "fmn", "targets": 3, "prune_after": 20, "prune_margin": 0.05},
                 {"name": "fmn", "targets": 0, "prune_after": 20, "prune_margin": 0.05}],
        "l2": [{"name": "fmn", "targets": 3, "prune_after": 30, "prune_margin": 0.1},
               {"name": "fmn", "targets": 0, "prune_after": 30, "prune_margin": 0.1}],
        "l1": [{"name": "fmn", "targets": 9, "prune_after": 40, "prune_margin": 0.3},
               {"name": "fmn", "targets": 3, "alpha_init": 0.3, "prune_after": 40, "prune_margin": 0.3},
               # foolbox's FMN-l1 geometry (dense steps of absolute length, the ball's projection,
               # then clipping): it reaches other points than the sparse, box-aware runs; with it
               # the ensemble is worse than foolbox's FMN on 3.0% of 200 MMR points (27.5%
               # without) for 15% more gradients.
               {"name": "fmn", "targets": 0, "l1_sparsity": 0.0, "absolute_step": True, "box_aware": False}],
    },
    "fast": {
        "linf": [{"name": "fmn", "targets": 1, "steps": 20, "refine_steps": 8}],
        "l2": [{"name": "fmn", "targets": 1, "steps": 20, "refine_steps": 8}],
        "l1": [{"name": "fmn", "targets": 3, "steps": 20, "refine_steps": 8}],
    },
    "thorough": {
        # linf: APGD in place of PGD (same eps search, restarts and bracket): 1,000 MMR points,
        # optimality 0.9993 against 0.9987 for 1339 against 1345 gradients per point.
        "linf": [{"name": "fmn", "targets": 3}, {"name": "fmn", "targets": 0},
                 {"name": "fmn", "targets": 3, "alpha_init": 0.3},
                 {"name": "apgd", "targets": 3, "steps": 20, "restarts": 5, "warm_bracket": 0.05,
                  "bisection_steps": 6}],
        "l2": [{"name": "fmn", "targets": 3}, {"name": "fmn", "targets": 0},
               {"name": "fmn", "targets": 3, "alpha_init": 0.3},
               {"name": "pgd_bisection", "targets": 3, "steps": 20, "restarts": 5, "warm_bracket": 0.05,
                "bisection_steps": 6}],
        "l1": [{"name": "fmn", "targets": 9}, {"name": "fmn", "targets": 3, "alpha_init": 0.3},
               {"name": "fmn", "targets": 0}, {"name": "fab", "steps": 100},
               {"name": "fmn", "targets": 0, "l1_sparsity": 0.0, "absolute_step": True, "box_aware": False}],
    },
}

_BOUND: list[tuple[Any, dict]] = []  # (model, its bound problems), the last few models used
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


def _check_strength(strength: str) -> str:
    if strength not in STRENGTHS:
        raise ValueError(f"unknown attack strength {strength!r}: expected one of {', '.join(STRENGTHS)}")
    return strength


def default_methods(norm: "Norm | str", strength: str = "default") -> list[dict[str, Any]]:
    """The recommended method list (an ensemble) for ``norm`` at ``strength``
    (``fast`` | ``default`` | ``thorough``)."""
    return [dict(m) for m in _PRESETS[_check_strength(strength)][parse_norm(norm).name]]


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


def _unique_names(cfgs: list[dict]) -> list[str]:
    names, seen = [], {}
    for c in cfgs:
        n = c["name"]
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return names


def _build_refine(problem: Problem, norm: Norm):
    """Line search along x -> x_adv: the smallest scale t in (0, 1] that still flips
    (bisection; the in-search rule of :mod:`robcurves.adversarial`).

    Where the norm object asks for it (``soft_threshold_refine``: l1), first the soft
    threshold: the largest lam such that ``sign(delta) max(|delta| - lam, 0)`` still flips (bisection on [0, max |delta|]).
    It drops the small coordinates and shortens the others by the same amount, which
    shortens a perturbation in l1 by lam per coordinate kept (scaling by t only by a
    factor); then the scale search above runs on the result.
    """
    lo_b, hi_b = problem.bounds
    soft = norm.ops().soft_threshold_refine

    def flips(xm, y):
        z = problem.logits(xm)
        return (margin_of(z, y) < 0.0) & all_finite(z)

    def refine(x, delta, y, steps):
        n = ops.shape(y)[0]
        if soft:
            a = ops.abs(delta)
            sg = ops.sign(delta)

            def shrink(lam):
                return sg * ops.maximum(a - ops.expand_dims(lam, 1), 0.0)

            def body_soft(_, st):
                lo, hi = st  # lo: flips (0 does, for a verified candidate), hi: does not
                mid = 0.5 * (lo + hi)
                adv = flips(ops.clip(x + shrink(mid), lo_b, hi_b), y)
                return ops.where(adv, mid, lo), ops.where(adv, hi, mid)

            lam, _ = ops.fori_loop(0, steps, body_soft, (ops.zeros((n,), "float32"), ops.max(a, axis=1)))
            delta = shrink(lam)

        def body(_, st):
            lo, hi = st
            mid = 0.5 * (lo + hi)
            adv = flips(ops.clip(x + ops.expand_dims(mid, 1) * delta, lo_b, hi_b), y)
            return ops.where(adv, lo, mid), ops.where(adv, mid, hi)

        _, hi = ops.fori_loop(0, steps, body, (ops.zeros((n,), "float32"), ops.ones((n,), "float32")))
        return ops.clip(x + ops.expand_dims(hi, 1) * delta, lo_b, hi_b)

    return problem.compiled(("refine", norm.name), lambda: refine)


def _verify_and_shorten(problem: Problem, refine, norm: Norm, bounds, xb, yb, cand, refine_steps: int):
    """Verify the candidates ``cand`` (flat rows) for the points ``xb``, ``yb`` and their
    line-searched versions (``refine_steps`` bisection steps; 0: none); per row the
    shorter verified one. Returns ``(distances, x_adv, forwards per row)``: float32
    ``norm`` distances, +inf where neither is adversarial (then ``x_adv`` is unusable)."""
    ok, d, xc = verify_candidates(problem.predict, xb, cand, yb, norm, bounds)
    fw = 1
    if refine_steps > 0 and len(xb):
        n = len(xb)
        rows = problem.rows(n)
        pad = [np.concatenate([a, np.repeat(a[:1], rows - n, axis=0)]) if rows > n else a
               for a in (xb, xc - xb, yb.astype(np.int32))]
        with B.inference():
            rc = B.to_numpy(refine(B.to_tensor(pad[0]), B.to_tensor(pad[1]), B.to_tensor(pad[2], "int32"),
                                   B.to_tensor(np.int32(refine_steps), "int32")))[:n]
        ok2, d2, xc2 = verify_candidates(problem.predict, xb, rc, yb, norm, bounds)
        fw += refine_steps * norm.ops().refine_passes + 1
        better = ok2 & (~ok | (d2 < d))
        ok = ok | ok2
        d = np.where(better, d2, d)
        xc = np.where(better[:, None], xc2, xc)
    return np.where(ok, d, np.inf).astype(np.float32), xc, fw


def shorten_witnesses(model, x: np.ndarray, y: np.ndarray, norm: "Norm | str", witnesses: np.ndarray,
                      bounds: tuple[float, float] = (0.0, 1.0), refine_steps: int = 12,
                      batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Witnesses from elsewhere (another norm's attack, the exact stage) as ``norm`` results.

    Each row of ``witnesses`` (shaped like ``x``; NaN rows: no witness) is clipped into
    ``bounds``, re-verified on ``model`` by the rule of :mod:`robcurves.adversarial`, and
    shortened by the engine's line search along the segment from ``x`` (the same one every
    method's candidates get). Returns ``(distances, x_adv)``: the float32 ``norm``
    distance of the shorter verified version per point (+inf where neither is
    adversarial: an unverified witness never counts) and that version.
    """
    norm = parse_norm(norm)
    bounds = (float(bounds[0]), float(bounds[1]))
    x, y = _validate_inputs(model, x, y, bounds)
    w = np.asarray(witnesses, np.float32)
    if w.shape != x.shape:
        raise ValueError(f"witnesses have shape {w.shape}; expected {x.shape} like x")
    n = len(x)
    dist = np.full(n, np.inf, np.float32)
    out = x.copy()
    if not n:
        return dist, out
    dim = int(np.prod(x.shape[1:]))
    xf, wf = x.reshape(n, dim), w.reshape(n, dim)
    has = np.all(np.isfinite(wf), axis=1)
    probe = B.logits_function(model)
    with B.inference():
        n_classes = int(B.to_numpy(probe(B.to_tensor(x[:1]))).shape[1])
    problem = _problem_for(model, tuple(int(s) for s in x.shape[1:]), bounds, n_classes)
    refine = _build_refine(problem, norm)
    todo = np.flatnonzero(has)
    for start in range(0, len(todo), int(batch_size)):
        b = todo[start:start + int(batch_size)]
        d, xc, _ = _verify_and_shorten(problem, refine, norm, bounds, xf[b], y[b], wf[b], refine_steps)
        dist[b] = d
        out.reshape(n, dim)[b] = np.where(np.isfinite(d)[:, None], xc, xf[b])
    return dist, out


def _problem_for(model, input_shape, bounds, n_classes) -> Problem:
    """The bound :class:`Problem` of ``model`` (cached, so that calling again with the same
    model does not compile again)."""
    cache = _bound_cache(model)
    key = ("problem", input_shape, bounds, n_classes, B.name())
    if key not in cache:
        cache[key] = Problem(model, input_shape, bounds, n_classes)
    return cache[key]


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
    strength: str = "default",
    candidates: "Iterable[np.ndarray] | None" = None,
    point_ids: "np.ndarray | None" = None,
) -> AttackResult:
    """Smallest adversarial perturbation per point, in ``norm``, over an ensemble of methods.

    ``model``: a Keras model (any backend), or under the torch backend a PyTorch
    ``nn.Module``, or under jax a JAX function; it maps float32 inputs shaped like ``x``
    (values in ``bounds``) to logits. ``y`` holds int labels. ``methods`` is a list of
    ``{"name": ..., options}`` (default: :func:`default_methods` at ``strength``).
    ``candidates``: extra adversarial candidates shaped like ``x`` (witnesses from other
    norms or from the exact stage): each is verified, shortened by the line search and
    competes as method ``"warm_start"``. ``point_ids``: the points' global indices, which
    seed their random streams (default ``0..N-1``; the pipeline passes the test-set
    indices, so that the numbers do not depend on the sharding).

    Returns an :class:`AttackResult` whose distances are ``norm`` distances (0 for
    misclassified points, +inf where nothing was found); its ``config`` records the
    methods and the gradients and forward passes spent per point.
    """
    norm = parse_norm(norm)
    methods = default_methods(norm, strength) if methods is None else list(methods)
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
    ids = np.arange(n, dtype=np.int64) if point_ids is None else np.asarray(point_ids, np.int64).reshape(-1)
    if len(ids) != n:
        raise ValueError(f"point_ids has {len(ids)} entries for {n} points")
    extra = [np.asarray(c, np.float32) for c in (candidates or [])]
    for c in extra:
        if c.shape != x.shape:
            raise ValueError(f"a warm-start candidate has shape {c.shape}; expected {x.shape} like x")

    # Clean pass: finite logits and labels in range, before any attack work.
    z = None
    if n:
        probe = B.logits_function(model)
        with B.inference():
            z0 = B.to_numpy(probe(B.to_tensor(x[:1])))
        if z0.ndim != 2 or z0.shape[0] != 1:
            raise ValueError(f"the model must return logits of shape (N, n_classes), got {z0.shape[1:]} per point")
        n_classes = int(z0.shape[1])
        if n_classes < 2:
            raise ValueError(f"the model must output one logit per class (at least 2), got {n_classes}")
        problem = _problem_for(model, input_shape, bounds, n_classes)
        z = problem.predict(x, batch_size)
        bad = np.flatnonzero(~np.all(np.isfinite(z), axis=1))
        if bad.size:
            raise ValueError(f"the model returns non-finite logits on {bad.size} clean input(s), "
                             f"first at index {int(bad[0])}")
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"labels must lie in 0..{n_classes - 1} (the model has {n_classes} outputs), "
                             f"got {int(y.min())}..{int(y.max())}")
    # One rule for "adversarial" (robcurves.adversarial): a clean point whose margin is
    # negative is misclassified; a tie is not.
    correct = ~is_adversarial(z, y) if n else np.zeros(0, bool)

    names = _unique_names(cfgs)
    all_names = (["warm_start"] if extra else []) + names
    xf = x.reshape(n, dim)
    dist = np.where(correct, np.inf, 0.0).astype(np.float32)
    x_adv = xf.copy()
    winner = np.full(n, "", dtype=object)
    per_method = {nm: np.where(correct, np.inf, 0.0).astype(np.float32) for nm in all_names}
    nonfinite = {nm: np.zeros(n, bool) for nm in all_names}
    gradients = np.zeros(n, np.int64)
    forwards = np.zeros(n, np.int64)
    if n:
        attacks = []
        for c in cfgs:
            key = ("attack", norm.name, json.dumps(c, sort_keys=True))
            att = problem._cache.get(key)
            if att is None or ATTACK_METHODS.get(c["name"]) is not type(att):
                att = ATTACK_METHODS[c["name"]](norm, **{k: v for k, v in c.items() if k != "name"})
                att.bind(problem)
                problem._cache[key] = att
            attacks.append(att)
        refine = _build_refine(problem, norm)

    def take(nm: str, b: np.ndarray, xb, yb, cand, refine_steps: int) -> None:
        """Verify ``cand`` (and its line-searched version) for the points ``b``; keep the best."""
        d, xc, fw = _verify_and_shorten(problem, refine, norm, bounds, xb, yb, cand, refine_steps)
        ok = np.isfinite(d)
        forwards[b] += fw
        # "warm_start" is called once per candidate set: it keeps the best of them.
        per_method[nm][b] = np.minimum(per_method[nm][b], d) if nm == "warm_start" else d
        improved = ok & (d < dist[b])
        idx = b[improved]
        dist[idx] = d[improved]
        x_adv[idx] = xc[improved]
        winner[idx] = nm

    def attack_batch(b: np.ndarray) -> None:
        xb, yb = xf[b], y[b]
        for c in extra:
            take("warm_start", b, xb, yb, c.reshape(n, dim)[b], 12)
        for j, (nm, att, c) in enumerate(zip(names, attacks, cfgs)):
            out = att.run(xb, yb, B.row_seeds(seed, ids[b], j), incumbent=dist[b], warm=x_adv[b])
            nonfinite[nm][b] |= out.nonfinite
            gradients[b] += out.gradients
            forwards[b] += out.forwards
            take(nm, b, xb, yb, out.x_adv, int(c["refine_steps"]))

    def attack_splitting(b: np.ndarray) -> None:
        try:
            attack_batch(b)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled
            if not B.is_out_of_memory(exc) or len(b) <= 1:
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
    for nm in all_names:
        any_bad |= nonfinite[nm]
    for i in np.flatnonzero(any_bad & correct):
        which = ", ".join(nm for nm in all_names if nonfinite[nm][i])
        if found[i]:
            reason[i] = f"non-finite logits or gradients during the search of {which}; kept the verified result"
        else:
            status[i] = "error"
            reason[i] = f"non-finite logits or gradients during the search of {which}"
    method = np.where(found, winner, "").astype(str)
    attacked = gradients[correct]
    config = {
        "norm": norm.name,
        "methods": [dict(c) for c in cfgs],
        "method_names": names,
        "seed": int(seed),
        "batch_size": batch_size,
        "bounds": list(bounds),
        "warm_start_candidates": len(extra),
        # Cost, over the attacked (correctly classified) points.
        "gradients_per_point": {"mean": float(attacked.mean()) if attacked.size else 0.0,
                                "median": float(np.median(attacked)) if attacked.size else 0.0},
        "forwards_per_point": {"mean": float(forwards[correct].mean()) if attacked.size else 0.0},
    }
    res = AttackResult(
        norm=norm.name,
        distances=dist,
        x_adv=x_adv.reshape(x.shape),
        status=status.astype(str),
        reason=reason.astype(str),
        method=method,
        per_method=per_method,
        config=config,
    )
    res.gradients = gradients  # per point, for benchmarks (not saved)
    return res
