"""The search strategies of one point: how the MILP queries are spent to close the bracket.

- ``minimize``: one distance MILP per class with the best distance so far as the cutoff;
- ``bisect``: bisection over the radius with per-class margin queries;
- ``auto``: bisection to a coarse bracket, then the distance MILPs inside the ball of the
  upper bound (or, where time-outs left the bracket wide, margin queries a step above the
  certified lower bound: ``solve_ascend``).

Each strategy takes the network, the :class:`robcurves.exact.checker.Checker`, the point's
:class:`SearchState` (the best verified witness so far), the domain, the
:class:`robcurves.exact.solve.ExactConfig` and a deadline, and returns a certified lower
bound. :data:`STRATEGIES` is the registry (``ExactConfig.method`` names one).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from robcurves.exact.bounds import InputDomain, compute_bounds
from robcurves.exact.milp import run_highs
from robcurves.exact.queries import distance_milp, margin_bound, margin_milp


@dataclass
class SearchState:
    x0: np.ndarray
    y: int
    upper: float = math.inf
    witness: np.ndarray | None = None
    witness_class: int = -1
    log: list = field(default_factory=list)

    def offer(self, found: tuple[np.ndarray, float, int] | None) -> bool:
        if found is not None and found[1] < self.upper:
            self.witness, self.upper, self.witness_class = found
            return True
        return False


def solve_minimize(net, checker, st: SearchState, dom: InputDomain, cfg: "ExactConfig", deadline: float,
                    info: dict, floor: float = 0.0) -> float:
    """Per-class distance MILPs; returns the certified lower bound.

    ``floor``: a lower bound already proven (no adversarial example closer than it).
    """
    t0 = time.perf_counter()
    budget = cfg.tightening_share * max(0.0, deadline - t0)
    bounds = compute_bounds(net, dom, cfg.tightening, time_budget=budget, threads=cfg.threads)
    info["bounds_s"] = round(time.perf_counter() - t0, 3)
    info["lp_solves"] = bounds.lp_solves
    info["binaries"] = bounds.unstable(net)
    mb = margin_bound(net, bounds, dom, st.y)
    classes = [k for k in range(net.n_classes) if k != st.y and mb[k] >= 0]
    # The attack's class first (its incumbent is the cutoff), then the most threatening.
    classes.sort(key=lambda k: (k != st.witness_class, -mb[k]))
    lb = {k: float(floor) for k in classes}  # classes outside ``classes`` are robust on the whole domain
    settled: set[int] = set()
    unverified: set[int] = set()  # a solution whose witness failed the float32 check
    info["classes"] = {}
    gap = lambda u: cfg.rel_gap * u + cfg.abs_gap  # noqa: E731

    def solve_class(k: int, seconds: float, margin: float) -> None:
        h, _ = distance_milp(net, dom, bounds, st.y, k, margin, cfg.threads, cfg.heuristics)
        cutoff = st.upper if math.isfinite(st.upper) else None
        res = run_highs(h, seconds, cutoff=cutoff, rel_gap=cfg.rel_gap, abs_gap=cfg.abs_gap)
        rec = info["classes"].setdefault(str(k), {"runs": []})
        rec["runs"].append({"status": res.status, "margin": margin, "s": round(res.seconds, 3), "nodes": res.nodes})
        if res.x is not None:
            found = checker.check(res.x[: net.n_inputs], st.x0, st.y)
            if found is None:
                unverified.add(k)
            else:
                st.offer(found)
                unverified.discard(k)
        if margin > 0:
            return  # a positive margin gives a witness, never a lower bound for margin 0
        if res.status == "infeasible":
            # Nothing better than the cutoff (or nothing at all inside the domain).
            lb[k] = max(lb[k], (cutoff - gap(cutoff)) if cutoff is not None else dom.radius)
            settled.add(k)
        elif res.status == "optimal":
            lb[k] = max(lb[k], res.dual_bound if math.isfinite(res.dual_bound) else res.objective)
            settled.add(k)
        elif math.isfinite(res.dual_bound):
            lb[k] = max(lb[k], res.dual_bound)
        rec["lower"] = lb[k]

    for sweep in range(2):
        todo = [k for k in classes if k not in settled]
        if sweep == 1:
            todo.sort(key=lambda k: lb[k])
        for n_left, k in zip(range(len(todo), 0, -1), todo):
            now = time.perf_counter()
            if now >= deadline:
                break
            if lb[k] >= st.upper - gap(st.upper):
                settled.add(k)
                continue
            solve_class(k, (deadline - now) / n_left if sweep == 0 else deadline - now, 0.0)
        # MIPVerify's remedy for a witness that fails the float32 check: demand a positive
        # margin and solve again, only where that class could still beat the best witness.
        for k in sorted(unverified, key=lambda k: lb[k]):
            now = time.perf_counter()
            if now < deadline and lb[k] < st.upper - gap(st.upper):
                solve_class(k, (deadline - now) / max(1, len(unverified)), cfg.margin)
    lower = min([dom.radius] + [lb[k] for k in classes])
    return min(lower, st.upper)


def margin_query(net, checker, st: SearchState, dom: InputDomain, cfg: "ExactConfig", r: float, q_deadline: float,
                  class_lb: dict[int, float]) -> tuple[str, int]:
    """Is there an adversarial example within radius ``r``? One margin MILP per class.

    Returns ``(outcome, binaries)``: "robust" (every class proven: no adversarial example
    within ``r``), "attacked" (a verified witness, offered to ``st``) or "unknown" (time
    ran out, or a solution failed the float32 check twice). ``class_lb`` holds, per class,
    the largest radius proven free of adversarial examples of that class; it is updated.
    """
    sub = InputDomain.ball(st.x0, dom.norm, r, box=(-np.inf, np.inf))  # the box is in dom.lo/hi
    sub.lo, sub.hi = np.maximum(sub.lo, dom.lo), np.minimum(sub.hi, dom.hi)
    budget = cfg.tightening_share * max(0.0, q_deadline - time.perf_counter())
    bounds = compute_bounds(net, sub, cfg.tightening, time_budget=budget, threads=cfg.threads)
    mb = margin_bound(net, bounds, sub, st.y)
    for k in class_lb:
        if mb[k] < 0:
            class_lb[k] = max(class_lb[k], r)
    classes = sorted((k for k in class_lb if class_lb[k] < r), key=lambda k: -mb[k])
    for k in classes:
        left = q_deadline - time.perf_counter()
        if left <= 0:
            return "unknown", bounds.unstable(net)
        h, _ = margin_milp(net, sub, bounds, st.y, k, cfg.threads, cfg.heuristics)
        res = run_highs(h, left, cutoff=0.0, stop_below=-cfg.abs_gap, rel_gap=0.0, abs_gap=0.0)
        # Robust for class k at radius r: the margin z_k - z_y cannot exceed 0 (up to the
        # solver's absolute tolerance ``abs_gap``).
        if res.status == "infeasible" or (res.status == "optimal" and res.objective >= -cfg.abs_gap):
            class_lb[k] = max(class_lb[k], r)
            continue
        found = None
        if res.x is not None and res.objective < -cfg.abs_gap:
            found = checker.check(res.x[: net.n_inputs], st.x0, st.y)
            if found is None and time.perf_counter() < q_deadline:
                # MIPVerify's remedy: ask for a margin of at least ``cfg.margin``.
                h, _ = margin_milp(net, sub, bounds, st.y, k, cfg.threads, cfg.heuristics)
                res2 = run_highs(h, q_deadline - time.perf_counter(), cutoff=0.0, stop_below=-cfg.margin,
                                 rel_gap=0.0, abs_gap=0.0)
                if res2.x is not None:
                    found = checker.check(res2.x[: net.n_inputs], st.x0, st.y)
        if found is not None:
            st.offer(found)
            return "attacked", bounds.unstable(net)
        return "unknown", bounds.unstable(net)  # neither a proof nor a verified witness in time
    return "robust", bounds.unstable(net)


def solve_bisect(net, checker, st: SearchState, dom: InputDomain, cfg: "ExactConfig", deadline: float,
                  info: dict, class_lb: dict[int, float] | None = None) -> float:
    """Bisection over the radius with per-class margin queries; returns the lower bound.

    A query at radius ``r`` ends in one of three ways: robust (every class proven, the
    certified lower bound rises to ``r``), attacked (a verified witness, the upper bound
    falls to its distance) or unknown (its time share ran out: the search continues below
    ``r``, but ``r`` is no upper bound). Each query gets half of the remaining time.
    """
    lower = 0.0
    soft_hi = min(st.upper, dom.radius)
    # Per class: the largest radius proven free of adversarial examples of that class.
    if class_lb is None:
        class_lb = {}
    for k in range(net.n_classes):
        if k != st.y:
            class_lb.setdefault(k, 0.0)
    lower = min(class_lb.values())
    info.setdefault("steps", [])
    first = True
    while time.perf_counter() < deadline:
        if math.isfinite(st.upper) and st.upper - lower <= cfg.bisect_rel_tol * st.upper + cfg.abs_gap:
            break
        if soft_hi - lower <= cfg.bisect_rel_tol * soft_hi + cfg.abs_gap:
            break
        # Without any upper bound, first ask about the whole domain.
        whole = first and not math.isfinite(st.upper)
        r = soft_hi if whole else 0.5 * (lower + soft_hi)
        first = False
        t_q = time.perf_counter()
        q_deadline = deadline if whole else t_q + 0.5 * (deadline - t_q)
        outcome, binaries = margin_query(net, checker, st, dom, cfg, r, q_deadline, class_lb)
        info["steps"].append({"r": r, "outcome": outcome, "binaries": binaries,
                              "s": round(time.perf_counter() - t_q, 3)})
        lower = max(lower, min(class_lb.values()))
        if outcome == "robust":
            lower = max(lower, r)
            if not math.isfinite(st.upper) and r >= dom.radius:
                break
        elif outcome == "attacked":
            soft_hi = min(soft_hi, st.upper)
        else:
            soft_hi = r
    return min(lower, st.upper)


def solve_ascend(net, checker, st: SearchState, dom: InputDomain, cfg: "ExactConfig", deadline: float,
                  info: dict, lower: float, class_lb: dict[int, float]) -> float:
    """Raise a certified lower bound with margin queries a step above it.

    For brackets that bisection left wide because its queries timed out: a query just
    above ``lower`` has fewer unstable ReLUs than one in the middle of the bracket. The
    step is a fraction of the bracket; it halves after a time-out and grows after a proof.
    Each query gets half of the remaining time.
    """
    frac = 0.25
    steps = info.setdefault("ascend", [])
    while time.perf_counter() < deadline and math.isfinite(st.upper):
        gap = st.upper - lower
        if gap <= cfg.rel_gap * st.upper + cfg.abs_gap:
            break
        r = lower + frac * gap
        t_q = time.perf_counter()
        outcome, binaries = margin_query(net, checker, st, dom, cfg, r, t_q + 0.5 * (deadline - t_q), class_lb)
        steps.append({"r": r, "outcome": outcome, "binaries": binaries, "s": round(time.perf_counter() - t_q, 3)})
        lower = max(lower, min(class_lb.values()))
        if outcome == "robust":
            lower = max(lower, r)
            frac = min(0.5, 2 * frac)
        elif outcome == "unknown":
            frac = max(frac / 4, 1 / 256)
    return min(lower, st.upper)


def solve_auto(net, checker, st: SearchState, dom: InputDomain, cfg: "ExactConfig", deadline: float,
                info: dict) -> float:
    """Bisection to a coarse bracket; then, where the bracket [lower, upper] is within
    ``auto_switch``, the distance MILPs inside the ball of the upper bound (few ReLUs are
    unstable there), and otherwise margin queries a step above the lower bound."""
    coarse = replace(cfg, bisect_rel_tol=max(cfg.bisect_rel_tol, cfg.auto_switch))
    bis: dict[str, Any] = {}
    class_lb: dict[int, float] = {}
    lower = solve_bisect(net, checker, st, dom, coarse, deadline, bis, class_lb)
    info["bisect"] = bis.get("steps", [])
    if not math.isfinite(st.upper) or time.perf_counter() >= deadline:
        return lower
    if st.upper - lower <= cfg.rel_gap * st.upper + cfg.abs_gap:
        return lower
    if st.upper - lower > cfg.auto_switch * st.upper:
        return solve_ascend(net, checker, st, dom, cfg, deadline, info, lower, class_lb)
    inner = InputDomain.ball(st.x0, dom.norm, st.upper * (1 + 1e-6) + 1e-7, box=(-np.inf, np.inf))
    inner.lo, inner.hi = np.maximum(inner.lo, dom.lo), np.minimum(inner.hi, dom.hi)
    return max(lower, solve_minimize(net, checker, st, inner, cfg, deadline, info, floor=lower))



#: The registry of search strategies (``ExactConfig.method``).
STRATEGIES = {"minimize": solve_minimize, "bisect": solve_bisect, "auto": solve_auto}
