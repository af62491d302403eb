"""The minimal adversarial distance of one point: a search over radii with branch and bound.

Anytime bracket ``[certified lower, verified upper]`` (float32 distances in the point's
norm): ``upper`` is the distance of a witness re-checked on the float32 model
(:func:`robcurves.adversarial.verify_witnesses`), ``lower`` the float32 distance that a
proven real radius certifies (:func:`robcurves.exact.bab.rounding.certified_distance`).

The search (``strategy``):

1. ``bounds`` phase: alpha-CROWN alone (no branching) searches ``[0, upper]`` for a few
   steps; cheap, and often within a few percent already. The next radius interpolates the
   root's lower bound on the margin linearly between the largest proven radius (at 0: the
   clean margin) and the smallest failed one (regula falsi), but moves at least to their
   geometric mean: the bound falls faster than linearly in ``r`` (more unstable ReLUs), so
   the interpolation lands below the certified radius, where a query is cheap. In l1 and
   l2 the attack's distance is often 2-4 times the certified radius, and a query there
   (~2,000 unstable ReLUs on MMR MNIST) costs 5-40 s: these norms start at
   ``low_start`` times it and extrapolate upwards from the proofs (the line through the
   last two margin bounds, at most x1.5 a step) until a query fails.
2. ``top``: one branch-and-bound query at ``upper (1 - 0.9 rel_tol)``. The attack's
   distance is usually within a fraction of a percent of the minimum, so a proof there
   closes the bracket to ``rel_tol`` in one query. Not in l2 where the bounds phase failed
   below it: there branch and bound stays within ``reach`` (25%, :data:`REACH`) above the
   larger of the smallest radius where the bounds alone failed and the largest proven one (a
   query at the attack's distance cost 9-24 s of a 60 s budget on MMR MNIST and neither
   proved anything nor found a closer witness; in l1 it finds closer witnesses: kept).
3. Then bisection of the open bracket (l2: capped as in 2.) with branch-and-bound
   queries, each given half of the time left. A query that runs out of time below a
   failed one starts from that query's open subdomains: everything it proved at the
   larger radius holds at the smaller one (per subdomain and per class).

A query's per-domain attack may find a witness inside the ball: the upper bound then
drops to it (after a line search towards ``x0``) and the search goes on below it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from robcurves.adversarial import verify_witnesses
from robcurves.exact.bab import rounding
from robcurves.exact.bab.bounds import BoundEngine, InputBall
from robcurves.exact.bab.domains import BabSettings, Query
from robcurves.norms import Norm, parse_norm


@dataclass
class SearchResult:
    """Bracket of one point (float32 distances in ``norm``); ``witness`` verifies ``upper``."""

    lower: float
    upper: float
    witness: np.ndarray | None
    witness_class: int
    proven_radius: float  # the largest real radius proven (lower is its float32 certificate)
    seconds: float
    queries: list = field(default_factory=list)


class WitnessChecker:
    """Verifies candidates on the float32 model with :mod:`robcurves.adversarial`."""

    def __init__(self, logits_fn: Callable[[np.ndarray], np.ndarray], input_shape, norm: "Norm | str",
                 bounds: tuple[float, float] = (0.0, 1.0)):
        self.logits_fn = logits_fn
        self.input_shape = tuple(input_shape)
        self.norm = parse_norm(norm)
        self.bounds = bounds

    def verify(self, x0: np.ndarray, y: int, cands: np.ndarray):
        """``(is_adv, float32 distance, clipped candidates)`` per candidate row."""
        c = np.asarray(cands, dtype=np.float32).reshape(-1, *self.input_shape)
        x = np.repeat(np.asarray(x0, dtype=np.float32).reshape(1, *self.input_shape), len(c), 0)
        return verify_witnesses(self.logits_fn, x, c, np.full(len(c), int(y)), self.norm, self.bounds)

    def shrink(self, x0: np.ndarray, y: int, w: np.ndarray, steps: int = 3, grid: int = 24):
        """Move a verified witness towards ``x0`` along the segment while it stays adversarial.

        Returns ``(witness, float32 distance, predicted class)`` of the closest verified
        point found (at worst ``w`` itself).
        """
        x0f = np.asarray(x0, dtype=np.float64).reshape(-1)
        d = np.asarray(w, dtype=np.float64).reshape(-1) - x0f
        lo, hi = 0.0, 1.0
        best = None
        for _ in range(steps):
            ts = np.linspace(lo, hi, grid + 1)[1:]
            ok, dist, xc = self.verify(x0, y, x0f[None] + ts[:, None] * d[None])
            if not ok.any():
                break
            i = int(np.flatnonzero(ok)[0])
            best = (xc[i].reshape(-1), float(dist[i]))
            hi = ts[i]
            lo = ts[i - 1] if i > 0 else lo
        if best is None:
            ok, dist, xc = self.verify(x0, y, w[None])
            if not ok[0]:
                return None
            best = (xc[0].reshape(-1), float(dist[0]))
        z = np.asarray(self.logits_fn(best[0].reshape(1, *self.input_shape)), dtype=np.float32)
        return best[0], best[1], int(np.argmax(z[0]))


def _bab_done(queries: list) -> bool:
    """True once a branch-and-bound query has run (the first one secures a lower bound)."""
    return any(q.get("bab") for q in queries)


#: where the bounds phase starts in l2 and l1, as a fraction of the attack's distance: the
#: certified radius on MMR MNIST is 0.3-0.5x the attack's in l2 and 0.1-0.37x in l1 (a query
#: above it costs seconds and proves nothing). l1 0.1: on 10 MMR points x 30 s, median
#: lower/upper 0.301 against 0.250 at 0.25 and 0.253 at 0.05 (benchmarks/README.md)
LOW_START = {"l2": 0.25, "l1": 0.1}


#: l2: branch and bound stays within 25% above where the bounds alone failed (step 2 of the
#: module docstring). On 10 MMR points x 60 s its certified lower bound rose on 10/10 points
#: (median x1.006, up to x1.125) and no witness was lost. Not l1: there the query at the
#: attack's distance found closer witnesses on 4/10 points (5.79 -> 3.22 on one), which the
#: cap gave up for lower bounds x1.045 (median lower/upper 0.324 vs 0.328: benchmarks/README.md)
REACH = {"l2": 0.25}


@dataclass
class SearchSettings:
    """``rel_tol``: stop when ``upper - lower <= rel_tol upper``; ``strategy``:
    ``top_down`` (the attack's radius first, see the module docstring) or ``bisect``;
    ``bound_steps``: steps of the bounds-only phase; ``low_start``: where it starts in a norm
    whose ball is not a box, per norm name (``l2``, ``l1``), as a fraction of the attack's
    distance (linf: at it); chosen by measurement (benchmarks/README.md, "Exact stage 3")."""

    rel_tol: float = 0.01
    strategy: str = "top_down"
    bound_steps: int = 6
    # l1/l2: the bounds phase starts at this fraction of the attack's distance
    low_start: dict = field(default_factory=lambda: dict(LOW_START))
    top_share: float = 0.5
    # per norm name: branch-and-bound queries go at most this fraction above the larger of
    # the smallest radius where the bounds alone failed and the largest proven one (step 2)
    reach: dict = field(default_factory=lambda: dict(REACH))
    bab: BabSettings = field(default_factory=BabSettings)


def minimal_distance(engine: BoundEngine, checker: WitnessChecker, x0: np.ndarray, y: int, upper: float,
                     witness: np.ndarray | None, time_limit: float, settings: SearchSettings | None = None,
                     max_radius: float | None = None) -> SearchResult:
    """Bracket the minimal adversarial distance of ``x0`` (label ``y``) in ``engine.norm``.

    ``upper``/``witness``: a verified adversarial example and its float32 distance (the
    attack's), or ``inf``/None; then the domain is the ball of ``max_radius``.
    """
    cfg = settings or SearchSettings()
    t0 = time.perf_counter()
    deadline = t0 + float(time_limit)
    norm = engine.norm
    n = engine.g.n_inputs
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    classes = [k for k in range(engine.n_classes) if k != int(y)]
    class_r = {k: 0.0 for k in classes}  # per class: the largest real radius proven free of it
    st = {"upper": float(upper) if witness is not None else math.inf,
          "witness": None if witness is None else np.asarray(witness, np.float32).reshape(-1),
          "cls": -1}
    if witness is not None:
        got = checker.shrink(x0, y, np.asarray(witness).reshape(-1), steps=1)
        if got is None:
            st["upper"], st["witness"] = math.inf, None
        else:
            st["witness"], st["upper"], st["cls"] = got
    top = st["upper"] if math.isfinite(st["upper"]) else float(max_radius if max_radius else 1.0)
    top = min(top, float(max_radius)) if max_radius else top
    queries: list = []
    proven = 0.0
    failed_above = math.inf  # smallest radius a full query could not prove
    carry = None  # open subdomains of the last unknown query: (radius, S over its U, classes)

    def lower_cert() -> float:
        return rounding.certified_distance(proven, norm.name, n)

    def done() -> bool:
        return math.isfinite(st["upper"]) and st["upper"] - lower_cert() <= cfg.rel_tol * st["upper"]

    def ask(r: float, budget: float, bab: bool) -> str:
        nonlocal proven, failed_above, carry
        todo = [k for k in classes if class_r[k] < r]
        if not todo:
            proven = max(proven, r)
            return "robust"
        tq = time.perf_counter()
        ball = InputBall.make(x0, norm, r, engine.g.bounds)
        # The root's alpha stops (CROWN after it) at the point's deadline, and in a branching
        # query at half its budget: far above the certified radius (l2, l1: the attack's
        # distance) it costs tens of seconds and proves nothing.
        root_deadline = min(deadline, tq + 0.5 * budget) if bab else deadline
        root = engine.root_bounds(ball, **cfg.bab.root_options(norm.name), deadline=root_deadline)
        q = Query(engine, root, y, checker.logits_fn, checker.input_shape, cfg.bab)
        init = carry[1] if (bab and carry is not None and carry[0] > r) else None
        res = q.run(todo, min(deadline, tq + budget), init=init, branch=bab)
        rec = {"r": r, "bab": bab, "U": q.U, "rounds": res.rounds, "domains": res.domains,
               "s": round(time.perf_counter() - tq, 3), "root_s": round(root.seconds, 3),
               "root_iters": root.info.get("iters_intermediate", 0),
               "imported": res.info.get("imported")}
        if res.info.get("root_lb"):
            rec["root_lb"] = min(res.info["root_lb"].values())
        if res.info.get("lp_leaves"):
            rec["lp_leaves"] = res.info["lp_leaves"]
        for k, s in res.status.items():
            if s == "robust":
                class_r[k] = max(class_r[k], r)
        if res.witness is not None:
            got = checker.shrink(x0, y, res.witness)
            if got is not None and got[1] < st["upper"]:
                st["witness"], st["upper"], st["cls"] = got
            rec["outcome"] = "attacked"
            rec["upper"] = st["upper"]
        elif res.robust:
            proven = max(proven, r)
            rec["outcome"] = "robust"
        else:
            rec["outcome"] = "unknown"
            if bab:
                failed_above = min(failed_above, r)
                open_ = q.open_domains()
                if open_ is not None and (carry is None or r < carry[0]):
                    carry = (r, open_)
        queries.append(rec)
        return rec["outcome"]

    # 1. bounds only: regula falsi on the root's margin bound over [0, top] (module docstring).
    z0 = np.asarray(checker.logits_fn(np.asarray(x0, np.float32).reshape(1, *checker.input_shape)), np.float64)[0]
    lo_b, hi_b = 0.0, top
    lb_lo, lb_hi = float(z0[int(y)] - np.delete(z0, int(y)).max()), None  # margin bounds at lo_b, hi_b
    prev = (0.0, lb_lo)  # the proof before lo_b (radius, margin bound): for extrapolating upwards
    r_top = top * (1 - 0.9 * cfg.rel_tol)
    failed = False
    r = r_top if norm.is_box else float(cfg.low_start.get(norm.name, LOW_START.get(norm.name, 0.25))) * top
    for _ in range(cfg.bound_steps):
        if time.perf_counter() >= deadline or done():
            break
        out = ask(r, 0.0, bab=False)
        lb_r = queries[-1].get("root_lb") if queries and queries[-1]["r"] == r else None
        if out == "robust":
            prev = (lo_b, lb_lo)
            lo_b = r
            lb_lo = lb_r if lb_r is not None and lb_r > 0 else lb_lo
        else:
            failed = True
            hi_b = min(r, st["upper"])
            lb_hi = lb_r if out == "unknown" else None
        if hi_b - lo_b <= 0.5 * cfg.rel_tol * top or (not failed and lo_b >= r_top):
            break
        if not failed:
            # only proofs so far: where the line through the last two margin bounds crosses 0
            slope = (prev[1] - lb_lo) / max(lo_b - prev[0], 1e-300)
            r = lo_b + lb_lo / slope if slope > 0 else 2.0 * lo_b
            r = min(max(r, 1.1 * lo_b), 1.5 * lo_b, r_top)  # the line overshoots: few unstable ReLUs below
            continue
        t = 0.5 if lb_hi is None or not lb_lo > 0 or not lb_hi < 0 else lb_lo / (lb_lo - lb_hi)
        r = lo_b + min(max(t, 0.1), 0.9) * (hi_b - lo_b)
        if lo_b > 0:
            r = min(max(r, math.sqrt(lo_b * hi_b)), lo_b + 0.9 * (hi_b - lo_b))
    # 2./3. branch and bound. ``top_down``: while the bracket is wide, one bisection step
    # secures a lower bound; then the attack's radius (less the tolerance); then bisection
    # of what is left (importing the open subdomains of a failed query above).
    top_tried = False
    while time.perf_counter() < deadline and not done():
        hi = min(st["upper"], failed_above) if math.isfinite(st["upper"]) else min(top, failed_above)
        if norm.name in cfg.reach and failed:
            # l2: where the bounds alone fail, branching gains a few percent at most (thousands
            # of unstable ReLUs), and a query at the attack's distance (2-4x further; root margin
            # bound -100 and below) spends its budget proving nothing: stay within reach of it.
            hi = min(hi, (1 + cfg.reach[norm.name]) * max(hi_b, proven))
            top_tried = top_tried or hi < st["upper"] * (1 - 0.9 * cfg.rel_tol)
        left = deadline - time.perf_counter()
        wide = proven < (1 - 3 * cfg.rel_tol) * hi
        secure = wide and not _bab_done(queries)
        if cfg.strategy == "top_down" and not top_tried and math.isfinite(st["upper"]) and not secure:
            r = st["upper"] * (1 - 0.9 * cfg.rel_tol)
            budget = cfg.top_share * left
            top_tried = True
        else:
            r = 0.5 * (proven + hi)
            if secure and proven < hi_b < hi:
                # just above where the bounds alone failed: likely provable with a few splits
                r = min(r, hi_b * (1 + 2 * cfg.rel_tol))
            budget = (0.25 if secure else 0.5) * left
        if r <= proven * (1 + 1e-9) or hi - proven <= 0.25 * cfg.rel_tol * max(hi, 1e-12):
            break
        out = ask(r, budget, bab=True)
        if out == "attacked":
            top_tried = False  # a closer witness: its radius is the new top
    lower = min(lower_cert(), st["upper"])
    return SearchResult(lower, st["upper"], st["witness"], int(st["cls"]), proven, time.perf_counter() - t0, queries)
