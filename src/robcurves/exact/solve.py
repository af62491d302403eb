"""Minimal adversarial perturbations by MILP: per-class queries, witnesses, brackets.

For a point ``x0`` with label ``y`` the minimal distance is ``min_k d_k`` over the other
classes ``k``, where ``d_k`` is the smallest ``||x - x0||`` (x in the input box) with
``logit_k(x) >= logit_y(x)``. Two query types are implemented (``method``):

- ``"minimize"`` (default): one MILP per class, ``min t`` subject to the network and the
  margin row ``z_k - z_y >= 0``, with the best distance found so far as the cutoff
  (the attack's distance enters here: it is the first incumbent).
- ``"auto"``: bisection until the bracket is within ``auto_switch`` (relative), then
  ``"minimize"`` inside the ball of the best upper bound, where few ReLUs are unstable;
  where time-outs left the bracket wider than that, margin queries a step above the
  certified lower bound instead (a small step after a time-out, a larger one after a proof).
- ``"bisect"``: bisection over the radius; at radius ``r`` one margin problem per class,
  ``max z_k - z_y`` over the ball, stopped at the first positive margin (a witness) or
  when its bound drops below 0 (robust for that class). Bounds are recomputed at every
  radius, so they are as tight as the radius allows.

The domain is the ball whose radius is the attack's (verified) distance, intersected
with the model's input box ``[lo, hi]`` (its sidecar's ``bounds``, [0, 1] by default);
without an attack it is ``max_radius`` from the configuration, else the whole box.

A witness is reported only after the TensorFlow model (float32) misclassifies it, it is
in the input box and its distance is measured in float32; "misclassifies" is the one rule
of :mod:`robcurves.adversarial` (strict margin < 0, ties are not adversarial). A clean
point that is already misclassified gets the status ``misclassified`` (never "solved").
When solver tolerances make a witness fail, it is first pushed a hair further from ``x0``;
if that fails, the class is solved again with a positive margin, as MIPVerify's
``margin`` does. A witness that never passes is
dropped, so it cannot turn a bracket into a fake optimum.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from robcurves.adversarial import is_adversarial
from robcurves.exact.bounds import Bounds, InputDomain, add_input, compute_bounds, emit_network
from robcurves.exact.milp import MilpBuilder, MilpResult, VarVector, run_highs
from robcurves.exact.records import BracketTally, ExactResult, ExactResults
from robcurves.network import Network, from_keras, linear_bounds
from robcurves.norms import Norm, parse_norm
from robcurves.progress import Progress

METHODS = ("minimize", "bisect", "auto")


@dataclass
class ExactConfig:
    """Settings of the exact stage (the ``exact:`` section of the workflow config).

    ``time_limit``: seconds per point, bounds included. ``tightening``: list of bound
    methods (interval, symbolic, lp; see :mod:`robcurves.exact.bounds`).
    ``tightening_share``: at most this share of the remaining time goes to symbolic/LP
    tightening. ``method``: auto | minimize | bisect (module docstring).
    ``max_radius``: domain radius (in the norm) where no attack distance is available
    (default: the whole input box). ``rel_gap``/``abs_gap``: when lower and upper agree to
    this, the point counts as solved ("optimal"); ``bisect_rel_tol`` is the bracket at which
    bisection alone calls a point solved, ``auto_switch`` the bracket at which ``auto``
    switches from bisection to the distance MILPs. ``margin``: logit margin of the re-solve
    when a witness fails the float32 check (MIPVerify's ``tolerance``). ``heuristics``:
    HiGHS's primal heuristics (off by default: the attack gives the incumbent, and they
    cost most of the root node's time; see :meth:`MilpBuilder.to_highs`).
    """

    time_limit: float = 30.0
    tightening: Sequence[str] = ("interval", "symbolic")
    method: str = "auto"
    tightening_share: float = 0.5
    max_radius: float | None = None
    rel_gap: float = 1e-4
    abs_gap: float = 1e-6
    bisect_rel_tol: float = 1e-3
    auto_switch: float = 0.05
    threads: int = 1
    margin: float = 1e-4  # positive margin for the re-solve when a witness fails the float32 check
    heuristics: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"exact: method must be one of {METHODS}, got {self.method!r}")
        if not self.time_limit > 0:
            raise ValueError(f"exact: time_limit must be positive seconds, got {self.time_limit}")
        self.tightening = tuple(self.tightening)


# --------------------------------------------------------------------------- checks

@dataclass
class Checker:
    """Re-checks candidate witnesses on the reference model in float32.

    ``box`` is the model's input box ``[lo, hi]`` (its sidecar's ``bounds``); candidates
    are clipped into it. "Adversarial" is :func:`robcurves.adversarial.is_adversarial`:
    some class scores strictly higher than the label (ties are not adversarial).
    """

    logits_fn: Callable[[np.ndarray], np.ndarray]
    input_shape: tuple[int, ...]
    norm: Norm
    box: tuple[float, float] = (0.0, 1.0)

    def check(self, x_cand: np.ndarray, x0: np.ndarray, y: int) -> tuple[np.ndarray, float, int] | None:
        """Return ``(witness, float32 distance, predicted class)`` or None if it fails.

        Tries ``x0 + s (x - x0)`` for s = 1 and a few values a hair above 1 (the solver's
        tolerance can leave the point exactly on the decision boundary), clipped to ``box``.
        """
        x0f = np.asarray(x0, dtype=np.float64).reshape(-1)
        delta = np.asarray(x_cand, dtype=np.float64).reshape(-1) - x0f
        scales = np.array([1.0, 1 + 1e-6, 1 + 1e-5, 1 + 1e-4, 1 + 1e-3])
        cands = np.clip(x0f[None] + scales[:, None] * delta[None], self.box[0], self.box[1]).astype(np.float32)
        logits = np.asarray(self.logits_fn(cands.reshape(len(cands), *self.input_shape)), dtype=np.float32)
        ok = is_adversarial(logits, y)
        if not ok.any():
            return None
        i = int(np.argmax(ok))
        w = cands[i].reshape(self.input_shape)
        dist = float(self.norm.distance(w[None], np.asarray(x0, dtype=np.float32).reshape(1, *self.input_shape))[0])
        return w, dist, int(np.argmax(logits[i]))

    def default_radius(self) -> float:
        """The radius (in ``norm``) of a ball that holds the whole input box around any point."""
        width = float(self.box[1]) - float(self.box[0])
        return width if math.isinf(self.norm.p) else width * float(np.prod(self.input_shape))


# ------------------------------------------------------------------------ the MILPs

def _build_network(milp: MilpBuilder, net: Network, dom: InputDomain, bounds: Bounds,
                   logits: Sequence[int] | None = None) -> tuple[VarVector, VarVector]:
    """Input variables and the network; units a ReLU turns off get no variable, and of the
    last layer only ``logits`` (all if None)."""
    x = add_input(milp, dom)
    hs = emit_network(milp, net, x, bounds.pre, logits=logits)
    return x, hs[-1]


def _margin_bound(net: Network, bounds: Bounds, dom: InputDomain, y: int) -> np.ndarray:
    """Upper bound of ``z_k - z_y`` per class ``k``: back-substitution of the margin itself
    (much tighter than the difference of the logits' bounds), and interval arithmetic on
    the input of the last layer (elision of the last layer)."""
    from robcurves.exact.bounds import batched

    K = net.n_classes
    D = np.eye(K) - np.eye(K)[y][None, :]  # row k: e_k - e_y
    C = D[None]
    pre = batched(net, bounds.pre)
    _, sb = linear_bounds(net, net.output, pre, dom.domain(net.input_shape), C, which="upper")
    sb = np.asarray(sb, dtype=np.float64)[0]
    last = net.nodes[-1]
    if last.layer.affine:
        a_ins, c = last.layer.backward(-C, None)
        c = 0.0 if c is None else np.asarray(c, dtype=np.float64)[0]
        low = c + sum(np.maximum(a[0].reshape(K, -1), 0) @ bounds.pre[j][0]
                      + np.minimum(a[0].reshape(K, -1), 0) @ bounds.pre[j][1] for a, j in zip(a_ins, last.inputs))
        sb = np.minimum(sb, -low)
    return sb


def _distance_milp(net: Network, dom: InputDomain, bounds: Bounds, y: int, k: int, margin: float,
                   threads: int, heuristics: bool = False) -> tuple[Any, VarVector]:
    """``min ||x - x0||`` over the domain subject to ``z_k - z_y >= margin``."""
    milp = MilpBuilder()
    x, z = _build_network(milp, net, dom, bounds, logits=(y, k))
    _add_margin_row(milp, z, y, k, margin)
    n = len(x)
    if math.isinf(dom.norm.p):
        t = milp.add_vars(0.0, dom.radius)
        kk = np.arange(n)
        # x - t <= x0 ; x + t >= x0
        milp.add_rows(np.concatenate([kk, kk, n + kk, n + kk]),
                      np.concatenate([x.idx, np.repeat(t, n), x.idx, np.repeat(t, n)]),
                      np.concatenate([np.ones(n), -np.ones(n), np.ones(n), np.ones(n)]),
                      np.concatenate([np.full(n, -np.inf), dom.x0]), np.concatenate([dom.x0, np.full(n, np.inf)]))
        milp.set_cost(t, [1.0])
    else:  # l1: add_input made d >= |x - x0| right after x
        d = x.idx + n
        milp.set_cost(d, np.ones(n))
    return milp.to_highs(threads=threads, heuristics=heuristics), x


def _add_margin_row(milp: MilpBuilder, z: VarVector, y: int, k: int, margin: float) -> None:
    cols, vals, rhs = [], [], margin
    for j, s in ((k, 1.0), (y, -1.0)):
        if z.idx[j] >= 0:
            cols.append(z.idx[j])
            vals.append(s)
        else:
            rhs -= s * z.const[j]
    milp.add_rows(np.zeros(len(cols), dtype=np.int64), cols, vals, rhs, np.inf, n=1)


def _margin_milp(net: Network, dom: InputDomain, bounds: Bounds, y: int, k: int, threads: int,
                 heuristics: bool = False):
    """``min z_y - z_k`` over the domain (negative optimum: an adversarial example of class k)."""
    milp = MilpBuilder()
    x, z = _build_network(milp, net, dom, bounds, logits=(y, k))
    milp.set_cost([z.idx[y], z.idx[k]], [1.0, -1.0])
    return milp.to_highs(threads=threads, heuristics=heuristics), x


# ---------------------------------------------------------------------- per point

@dataclass
class _State:
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


def _solve_minimize(net, checker, st: _State, dom: InputDomain, cfg: ExactConfig, deadline: float,
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
    mb = _margin_bound(net, bounds, dom, st.y)
    classes = [k for k in range(net.n_classes) if k != st.y and mb[k] >= 0]
    # The attack's class first (its incumbent is the cutoff), then the most threatening.
    classes.sort(key=lambda k: (k != st.witness_class, -mb[k]))
    lb = {k: float(floor) for k in classes}  # classes outside ``classes`` are robust on the whole domain
    settled: set[int] = set()
    unverified: set[int] = set()  # a solution whose witness failed the float32 check
    info["classes"] = {}
    gap = lambda u: cfg.rel_gap * u + cfg.abs_gap  # noqa: E731

    def solve_class(k: int, seconds: float, margin: float) -> None:
        h, _ = _distance_milp(net, dom, bounds, st.y, k, margin, cfg.threads, cfg.heuristics)
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


def _margin_query(net, checker, st: _State, dom: InputDomain, cfg: ExactConfig, r: float, q_deadline: float,
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
    mb = _margin_bound(net, bounds, sub, st.y)
    for k in class_lb:
        if mb[k] < 0:
            class_lb[k] = max(class_lb[k], r)
    classes = sorted((k for k in class_lb if class_lb[k] < r), key=lambda k: -mb[k])
    for k in classes:
        left = q_deadline - time.perf_counter()
        if left <= 0:
            return "unknown", bounds.unstable(net)
        h, _ = _margin_milp(net, sub, bounds, st.y, k, cfg.threads, cfg.heuristics)
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
                h, _ = _margin_milp(net, sub, bounds, st.y, k, cfg.threads, cfg.heuristics)
                res2 = run_highs(h, q_deadline - time.perf_counter(), cutoff=0.0, stop_below=-cfg.margin,
                                 rel_gap=0.0, abs_gap=0.0)
                if res2.x is not None:
                    found = checker.check(res2.x[: net.n_inputs], st.x0, st.y)
        if found is not None:
            st.offer(found)
            return "attacked", bounds.unstable(net)
        return "unknown", bounds.unstable(net)  # neither a proof nor a verified witness in time
    return "robust", bounds.unstable(net)


def _solve_bisect(net, checker, st: _State, dom: InputDomain, cfg: ExactConfig, deadline: float,
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
        outcome, binaries = _margin_query(net, checker, st, dom, cfg, r, q_deadline, class_lb)
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


def _solve_ascend(net, checker, st: _State, dom: InputDomain, cfg: ExactConfig, deadline: float,
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
        outcome, binaries = _margin_query(net, checker, st, dom, cfg, r, t_q + 0.5 * (deadline - t_q), class_lb)
        steps.append({"r": r, "outcome": outcome, "binaries": binaries, "s": round(time.perf_counter() - t_q, 3)})
        lower = max(lower, min(class_lb.values()))
        if outcome == "robust":
            lower = max(lower, r)
            frac = min(0.5, 2 * frac)
        elif outcome == "unknown":
            frac = max(frac / 4, 1 / 256)
    return min(lower, st.upper)


def _solve_auto(net, checker, st: _State, dom: InputDomain, cfg: ExactConfig, deadline: float,
                info: dict) -> float:
    """Bisection to a coarse bracket; then, where the bracket [lower, upper] is within
    ``auto_switch``, the distance MILPs inside the ball of the upper bound (few ReLUs are
    unstable there), and otherwise margin queries a step above the lower bound."""
    from dataclasses import replace

    coarse = replace(cfg, bisect_rel_tol=max(cfg.bisect_rel_tol, cfg.auto_switch))
    bis: dict[str, Any] = {}
    class_lb: dict[int, float] = {}
    lower = _solve_bisect(net, checker, st, dom, coarse, deadline, bis, class_lb)
    info["bisect"] = bis.get("steps", [])
    if not math.isfinite(st.upper) or time.perf_counter() >= deadline:
        return lower
    if st.upper - lower <= cfg.rel_gap * st.upper + cfg.abs_gap:
        return lower
    if st.upper - lower > cfg.auto_switch * st.upper:
        return _solve_ascend(net, checker, st, dom, cfg, deadline, info, lower, class_lb)
    inner = InputDomain.ball(st.x0, dom.norm, st.upper * (1 + 1e-6) + 1e-7, box=(-np.inf, np.inf))
    inner.lo, inner.hi = np.maximum(inner.lo, dom.lo), np.minimum(inner.hi, dom.hi)
    return max(lower, _solve_minimize(net, checker, st, inner, cfg, deadline, info, floor=lower))


def minimal_perturbation(net: Network, checker: Checker, x0: np.ndarray, y: int, norm: "str | Norm",
                         config: ExactConfig, attack_distance: float | None = None,
                         x_adv: np.ndarray | None = None, index: int = 0) -> ExactResult:
    """The exact minimal adversarial perturbation of one point (distance in ``norm``).

    ``attack_distance``/``x_adv`` (optional) are an attack's result for this point: a
    verified ``x_adv`` sets the domain radius and the first upper bound.
    """
    norm = parse_norm(norm)
    if math.isfinite(norm.p) and norm.p != 1.0:
        raise ValueError(
            f"exact: the {norm.name} norm needs a quadratic objective (MIQP), which HiGHS cannot solve; "
            "the Python backend supports linf and l1")
    t_start = time.perf_counter()
    deadline = t_start + float(config.time_limit)
    x0 = np.asarray(x0, dtype=np.float32).reshape(checker.input_shape)
    y = int(y)
    st = _State(x0=x0, y=y)
    info: dict[str, Any] = {"method": config.method}
    rel_tol = config.rel_gap + (config.bisect_rel_tol if config.method == "bisect" else 0.0)
    abs_tol = config.abs_gap
    logits = np.asarray(checker.logits_fn(x0[None]), dtype=np.float32)
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"exact: the model's logits at point {index} are not finite: {logits[0].tolist()}")
    att = float(attack_distance) if attack_distance is not None and np.isfinite(attack_distance) else math.inf
    if is_adversarial(logits, y)[0]:
        # Counted apart from the solved points (robcurves.exact.records): distance 0 by definition.
        return ExactResult(index, y, norm.name, "misclassified", 0.0, 0.0, x0.copy(), int(np.argmax(logits[0])),
                           time.perf_counter() - t_start, 0.0, {"misclassified": True}, att,
                           attack_verified=att == 0.0, rel_tol=rel_tol, abs_tol=abs_tol)
    attack_ok = False
    if x_adv is not None and math.isfinite(att):
        found = checker.check(x_adv, x0, y)
        attack_ok = found is not None
        if st.offer(found):
            info["attack_upper"] = st.upper
        elif not attack_ok:
            info["attack_rejected"] = "the attack's example is not adversarial on the float32 model"
    if math.isfinite(st.upper):
        radius = st.upper * (1 + 1e-6) + 1e-7  # a hair above, so rounding cannot exclude the witness
    elif config.max_radius is not None:
        radius = float(config.max_radius)
    else:
        radius = checker.default_radius()
    dom = InputDomain.ball(x0, norm, radius, box=checker.box)
    solver = {"minimize": _solve_minimize, "bisect": _solve_bisect, "auto": _solve_auto}[config.method]
    lower = solver(net, checker, st, dom, config, deadline, info)
    lower = max(0.0, float(lower))
    upper = float(st.upper)
    tol = rel_tol * upper + abs_tol
    if math.isfinite(upper) and upper - lower <= tol * (1 + 1e-6):  # (1 + 1e-6): rounding of the gap itself
        status = "optimal"
    elif not math.isfinite(upper) and lower >= radius:
        status = "no_adversarial_in_domain"
        lower = radius
    else:
        status = "time_limit"
    return ExactResult(index, y, norm.name, status, lower, upper, st.witness, st.witness_class,
                       time.perf_counter() - t_start, radius, info, att, attack_verified=attack_ok,
                       rel_tol=rel_tol, abs_tol=abs_tol)


def keras_checker(model, norm: "str | Norm", bounds: Sequence[float] = (0.0, 1.0)) -> Checker:
    """A :class:`Checker` that evaluates ``model`` (Keras) in float32 on the input box ``bounds``."""
    shape = tuple(int(s) for s in model.inputs[0].shape[1:])

    def logits_fn(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(np.asarray(x, dtype=np.float32), training=False), dtype=np.float32)

    return Checker(logits_fn, shape, parse_norm(norm), (float(bounds[0]), float(bounds[1])))


def minimal_perturbations(model, x: np.ndarray, y: np.ndarray, norm: "str | Norm", config: ExactConfig | None = None,
                          attack_distances: np.ndarray | None = None, x_adv: np.ndarray | None = None,
                          indices: Sequence[int] | None = None, progress: Callable[[str], None] | None = None,
                          bounds: Sequence[float] = (0.0, 1.0)) -> ExactResults:
    """Exact minimal perturbations (in ``norm``) of a Keras ``model`` at the points ``x`` (NHWC).

    ``attack_distances``/``x_adv`` optionally warm-start every point. ``bounds`` is the
    model's input box (its sidecar's ``bounds``). ``progress`` gets one line per point with
    the running bracket statistics. Returns the records as arrays (:class:`ExactResults`).
    """
    config = config or ExactConfig()
    norm = parse_norm(norm)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"exact: x must be NHWC with one label per point, got {x.shape} and {y.shape}")
    box = (float(bounds[0]), float(bounds[1]))
    net = model if isinstance(model, Network) else from_keras(model, bounds=box)
    if isinstance(model, Network):
        def logits_fn(xb: np.ndarray) -> np.ndarray:
            return net.predict(np.asarray(xb, dtype=np.float32))

        checker = Checker(logits_fn, net.input_shape, norm, box)
    else:
        checker = keras_checker(model, norm, bounds)
    lo, hi = checker.box
    if x.size and (not np.all(np.isfinite(x)) or x.min() < lo or x.max() > hi):
        raise ValueError(f"exact: the points must lie in the model's input box [{lo}, {hi}]")
    indices = np.arange(len(x)) if indices is None else np.asarray(indices, dtype=np.int64)
    records = []
    tally = BracketTally(norm.name)
    bar = Progress(len(x), f"exact {norm.name}", log=progress, every_s=0.0, enabled=progress is not None)
    for i in range(len(x)):
        ad = None if attack_distances is None else float(attack_distances[i])
        xa = None if x_adv is None or ad is None or not np.isfinite(ad) else x_adv[i]
        rec = minimal_perturbation(net, checker, x[i], int(y[i]), norm, config, ad, xa, int(indices[i]))
        records.append(rec)
        bar.update(1, tally.add(rec))
    meta = {"backend": "highs", "bounds": [lo, hi],
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}}
    return ExactResults.from_records(records, x.shape[1:], norm.name, meta)
