"""A gradient-masking check: a gradient-free random search on a sample of points.

Gradient attacks fail quietly on a model whose gradients carry no information (a
quantising input layer, a shattered or saturated loss surface): the curve then looks
robust where the model is not. The check runs a random search in the style of Square
Attack (Andriushchenko et al., ECCV 2020) on the points where the gradient attacks are
most likely to have been fooled, and on a random sample of the others:

- the points they never broke,
- those whose distance is at least ``min_ratio`` times the first-order estimate
  ``margin / ||grad||_q`` at the clean point (a zero gradient counts as infinitely far),
- a share ``sample`` of the remaining attacked points, drawn by a seeded hash of the
  point's test-set index.

Each point is chosen by looking at that point alone, so the choice (and every number
that follows) is the same however the test set is split into shards.

The search runs at a radius just below the gradient attacks' distance (the box's
diameter for points never broken). It uses forward passes only: square windows of the
image (blocks of features for tabular inputs) are redrawn at random, and a proposal is
kept when it lowers the margin (a point stops moving once it is adversarial). Every
candidate it finds is verified like any other; where it beats the gradient attacks the
point's distance comes from it (method ``"masking_check"``), and the result's
``config["masking_check"]`` records how many points it checked and how many it beat.
Random numbers are the points' own streams (:func:`robcurves.backend.row_seeds`): the
same on every backend and sharding.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from robcurves import backend as B
from robcurves.attacks.base import Problem, all_finite, margin_of, pad_rows
from robcurves.attacks.geometry import max_distance, norm_ops


def _layout(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) for the square windows; tabular inputs become one long column."""
    if len(shape) == 3 and shape[0] * shape[1] > 1:
        return int(shape[0]), int(shape[1]), int(shape[2])
    return int(np.prod(shape)), 1, 1


def _window_fraction(i: int, queries: int) -> float:
    """Square Attack's schedule of the window's share of the pixels, on [0, queries]."""
    p0 = 0.1
    t = i / max(queries, 1) * 10000
    for bound, f in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                     (8000, 256)):
        if t <= bound:
            return p0 / f
    return p0 / 512


def build_random_search(problem: Problem, norm):
    """Compiled pieces of the search: ``init(x, y, eps, seeds)`` and ``step(...)``."""
    ops_norm = norm_ops(norm)
    lo_b, hi_b = problem.bounds
    h, w, c = _layout(problem.shape)
    hh = ops.reshape(ops.arange(h, dtype="int32"), (1, h, 1, 1))
    ww = ops.reshape(ops.arange(w, dtype="int32"), (1, 1, w, 1))

    def margin(x, delta, y):
        z = problem.logits(x + delta)
        m = margin_of(z, y)
        return ops.where(all_finite(z), m, ops.full_like(m, np.inf))

    def signs(shape, seeds):
        return ops.where(B.random_uniform(shape, seeds) < 0.5, -1.0, 1.0)

    def init(x, y, eps, seeds):
        lo, hi = lo_b - x, hi_b - x
        n = ops.shape(x)[0]
        # Square Attack's start: vertical stripes of +-eps for linf, a random direction of
        # norm eps for l2 and l1 (the norm object's choice).
        delta = ops_norm.square_start(signs((n, 1, w, c), seeds), n, h, w, c, eps, seeds)
        delta = ops_norm.project(ops.clip(delta, lo, hi), eps, lo, hi)
        return delta, margin(x, delta, y)

    def step(x, y, eps, delta, m_cur, seeds, side):
        lo, hi = lo_b - x, hi_b - x
        n = ops.shape(x)[0]
        u = B.random_uniform((n, 2), seeds)
        span_h = ops.maximum(h - side + 1, 1)
        span_w = ops.maximum(w - side + 1, 1)
        r0 = ops.reshape(ops.cast(ops.floor(u[:, 0] * ops.cast(span_h, "float32")), "int32"), (-1, 1, 1, 1))
        c0 = ops.reshape(ops.cast(ops.floor(u[:, 1] * ops.cast(span_w, "float32")), "int32"), (-1, 1, 1, 1))
        side_w = ops.minimum(side, w)
        inside = (hh >= r0) & (hh < r0 + side) & (ww >= c0) & (ww < c0 + side_w)
        inside = ops.reshape(ops.broadcast_to(inside, (n, h, w, c)), (n, h * w * c))
        s = ops.reshape(ops.broadcast_to(signs((n, 1, 1, c), B.fold_seeds(seeds, 1)), (n, h, w, c)), (n, h * w * c))
        # linf: the window jumps to +-eps; l2, l1: mass moves into the window (its share of
        # the budget), then back into the ball.
        k = ops.maximum(ops.sum(ops.cast(inside, "float32"), axis=1, keepdims=True), 1.0)
        prop = ops_norm.square_proposal(delta, inside, s, eps, k)
        prop = ops_norm.project(ops.clip(prop, lo, hi), eps, lo, hi)
        m_new = margin(x, prop, y)
        # A point that is adversarial already stays where it is: its result then does not
        # depend on how long the other points of the batch keep searching.
        better = (m_new < m_cur) & (m_cur >= 0.0)
        return ops.where(ops.expand_dims(better, 1), prop, delta), ops.where(better, m_new, m_cur)

    return problem.compiled(("square_init", norm.name), lambda: init), \
        problem.compiled(("square_step", norm.name), lambda: step)


def random_search(problem: Problem, norm, x: np.ndarray, y: np.ndarray, eps: np.ndarray, seeds: np.ndarray,
                  queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradient-free search for an adversarial example inside the ``norm`` ball of radius
    ``eps`` (per row) around each ``x`` (flattened): ``(x_candidate, found)`` after at
    most ``queries`` forward passes per point. Only the candidates need verifying."""
    init, step = build_random_search(problem, norm)
    n = len(x)
    rows = problem.rows(n)
    h, w, _ = _layout(problem.shape)
    xa, ya, ea, sa = pad_rows([x, y.astype(np.int32), eps.astype(np.float32), seeds], rows)
    xt, yt, et = B.to_tensor(xa), B.to_tensor(ya, "int32"), B.to_tensor(ea)
    with B.inference():
        delta, m = init(xt, yt, et, B.to_tensor(sa, "int32"))
        for i in range(1, max(1, int(queries))):
            if i % 20 == 0 and bool(np.all(B.to_numpy(m)[:n] < 0)):
                break
            side = max(1, int(round(math.sqrt(_window_fraction(i, queries) * h * w))))
            side = min(side, h)
            s_i = B.fold_seeds(B.to_tensor(sa, "int32"), i + 1)
            delta, m = step(xt, yt, et, delta, m, s_i, B.to_tensor(np.int32(side), "int32"))
    d = B.to_numpy(delta)[:n]
    found = B.to_numpy(m)[:n] < 0
    return np.clip(x + d, problem.bounds[0], problem.bounds[1]).astype(np.float32), found


DEFAULT_SAMPLE = 0.01  # share of the other attacked points checked at random
DEFAULT_MIN_RATIO = 2.0  # distance over first-order estimate that makes a point suspect
DEFAULT_QUERIES = 300


def sampled(seed: int, ids: np.ndarray, share: float) -> np.ndarray:
    """Per point, True with probability ``share``: a seeded hash of its index ``ids``
    (independent of the other points, of the batching and of the sharding)."""
    ids = np.asarray(ids).reshape(-1)
    if share <= 0 or not len(ids):
        return np.zeros(len(ids), bool)
    u = B.row_seeds(int(seed), ids, 0x5B)[:, 0].view(np.uint32).astype(np.float64) / 2.0 ** 32
    return u < float(share)


def select_points(problem: Problem, norm, x: np.ndarray, y: np.ndarray, dist: np.ndarray, attacked: np.ndarray,
                  ids: np.ndarray, seed: int = 0, sample: float = DEFAULT_SAMPLE,
                  min_ratio: float = DEFAULT_MIN_RATIO) -> np.ndarray:
    """Indices (ascending) of the attacked points to check, each chosen on its own data:
    never broken; or distance >= ``min_ratio`` x the first-order estimate at the clean
    point (``min_ratio <= 0``: this rule is off); or drawn by :func:`sampled`."""
    idx = np.flatnonzero(attacked)
    if not len(idx):
        return np.zeros(0, np.int64)
    ops_norm = norm_ops(norm)

    def first_order(xx, yy):
        m, g, _ = problem.margin_and_grad(xx, yy)
        return m, ops_norm.dual_norm(g)

    fo = problem.compiled(("masking_first_order", norm.name), lambda: first_order)
    ratio = np.empty(len(idx), np.float64)
    for s in range(0, len(idx), 512):
        b = idx[s:s + 512]
        rows = problem.rows(len(b))
        xa, ya = pad_rows([x[b], y[b].astype(np.int32)], rows)
        m, gn = (B.to_numpy(v)[:len(b)].astype(np.float64) for v in fo(B.to_tensor(xa), B.to_tensor(ya, "int32")))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            est = np.where(gn > 0, np.maximum(m, 0) / np.where(gn > 0, gn, 1.0), np.inf)
            d = dist[b].astype(np.float64)
            r = np.where(np.isinf(d) | ~np.isfinite(est) | (est <= 0), np.inf, d / np.maximum(est, 1e-30))
        ratio[s:s + len(b)] = r
    pick = np.isinf(dist[idx]) | sampled(seed, np.asarray(ids)[idx], sample)
    if min_ratio > 0:
        pick |= ratio >= float(min_ratio)
    return idx[pick]


def masking_check(model, x: np.ndarray, y: np.ndarray, result, sample: float = DEFAULT_SAMPLE,
                  min_ratio: float = DEFAULT_MIN_RATIO, queries: int = DEFAULT_QUERIES, seed: int = 0,
                  point_ids: np.ndarray | None = None, bounds=None, enabled: bool = True,
                  batch_size: int = 512) -> dict:
    """Run the gradient-free search on the points :func:`select_points` picks; update ``result``.

    ``result``: the :class:`AttackResult` of :func:`minimal_perturbations` for the same
    ``model``, ``x``, ``y``. ``point_ids``: the points' test-set indices (default
    ``0..N-1``); they seed the sample and the search. Where a verified candidate of the
    search is closer than the gradient attacks' result, it replaces it (method
    ``"masking_check"``). Returns (and stores in ``result.config["masking_check"]``)
    ``{"checked", "beaten", "queries", "sample", "min_ratio", "beaten_points"}``;
    ``beaten > 0`` means gradient masking is suspected. ``enabled=False``: nothing is
    checked (the report says so).
    """
    from robcurves.attacks.engine import _problem_for
    from robcurves.attacks.result import verify_candidates
    from robcurves.norms import parse_norm

    if not 0.0 <= float(sample) <= 1.0:
        raise ValueError(f"masking check: sample must be a share in [0, 1], got {sample!r}")
    if int(queries) < 1:
        raise ValueError(f"masking check: queries must be >= 1, got {queries!r}")
    norm = parse_norm(result.norm)
    bounds = tuple(result.config.get("bounds", (0.0, 1.0))) if bounds is None else tuple(bounds)
    x = np.asarray(x, np.float32)
    n = len(x)
    shape = tuple(x.shape[1:])
    dim = int(np.prod(shape))
    ids = np.arange(n) if point_ids is None else np.asarray(point_ids).reshape(-1)
    report = {"checked": 0, "beaten": 0, "queries": int(queries), "sample": float(sample),
              "min_ratio": float(min_ratio), "beaten_points": []}
    attacked = np.isin(result.status, ("adversarial", "not_found", "error"))
    if n == 0 or not attacked.any() or not enabled:
        result.config["masking_check"] = report
        return report
    problem = _problem_for(model, shape, (float(bounds[0]), float(bounds[1])), _n_classes(model, x[:1]))
    xf = x.reshape(n, dim)
    yy = np.asarray(y)
    dist = np.asarray(result.distances, np.float32)
    sel = select_points(problem, norm, xf, yy, dist, attacked, ids, int(seed), float(sample), float(min_ratio))
    per = np.full(n, np.inf, np.float32)
    beats = np.zeros(len(sel), bool)
    d_all = np.full(len(sel), np.inf, np.float32)
    xc_all = np.zeros((len(sel), dim), np.float32)
    if len(sel):
        eps_max = np.float32(max_distance(norm, dim, bounds))
        eps = np.where(np.isfinite(dist[sel]), dist[sel] * np.float32(0.999), eps_max).astype(np.float32)
        seeds = B.row_seeds(int(seed), ids[sel], 0x5A)
        for s in range(0, len(sel), max(1, int(batch_size))):
            j = np.arange(s, min(s + int(batch_size), len(sel)))
            b = sel[j]
            cand, _ = random_search(problem, norm, xf[b], yy[b], eps[j], seeds[j], queries)
            ok, d, xc = verify_candidates(problem.predict, xf[b], cand, yy[b], norm, bounds)
            d_all[j] = np.where(ok, d, np.inf)
            xc_all[j] = xc.reshape(len(j), dim)
        beats = d_all < dist[sel]
        per[sel] = d_all
    result.per_method["masking_check"] = per
    status, reason, method = (np.asarray(a).astype(object) for a in (result.status, result.reason, result.method))
    for j in np.flatnonzero(beats):
        i = sel[j]
        result.distances[i] = d_all[j]
        result.x_adv[i] = xc_all[j].reshape(shape)
        method[i] = "masking_check"
        if status[i] != "adversarial":
            status[i] = "adversarial"
            reason[i] = "found by the gradient-free masking check; the gradient attacks failed"
    result.status, result.reason, result.method = (a.astype(str) for a in (status, reason, method))
    report.update(checked=int(len(sel)), beaten=int(beats.sum()), beaten_points=[int(ids[i]) for i in sel[beats]])
    result.config["masking_check"] = report
    return report


def _n_classes(model, x1: np.ndarray) -> int:
    fn = B.logits_function(model)
    with B.inference():
        return int(B.to_numpy(fn(B.to_tensor(x1))).shape[1])
