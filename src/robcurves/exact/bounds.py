"""Bounds on every pre-activation: interval arithmetic, then LP, progressively.

The tightening methods form a list, applied in order (``["interval"]``,
``["interval", "symbolic"]``, ``["interval", "symbolic", "lp"]``, ...):

- ``interval``: interval arithmetic, layer by layer;
- ``symbolic``: linear bounds by back-substitution through the earlier layers, with the
  triangle relaxation's upper line and an adaptive lower line (0 or the identity) for each
  unstable ReLU (the CROWN/DeepPoly bound); dense matrices, no solver;
- ``lp``: one LP per bound over the triangle relaxation of all earlier layers.

Each method runs layer by layer and only where it can still change the MILP: symbolic
and LP bounds are computed only for units that are unstable (lower < 0 < upper) under the
bounds known so far and that feed a ReLU. Bounds are always valid: a method that runs out of its time budget
leaves the looser bounds in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from robcurves.exact.layers import Affine, Network, ReLU
from robcurves.exact.milp import MilpBuilder, VarVector
from robcurves.norms import Norm

TIGHTENING_METHODS = ("interval", "symbolic", "lp")


@dataclass
class InputDomain:
    """The set searched for adversarial examples: ``{x in [lo, hi] : ||x - x0||_p <= radius}``.

    ``lo``/``hi`` are flat float64 vectors that already include the [0, 1] box and, for
    l-infinity, the radius. The radius is in the norm ``norm``.
    """

    x0: np.ndarray
    norm: Norm
    radius: float
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def ball(cls, x0: np.ndarray, norm: Norm, radius: float, box: tuple[float, float] = (0.0, 1.0)) -> "InputDomain":
        x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        r = float(radius)
        lo = np.maximum(x0 - r, box[0])
        hi = np.minimum(x0 + r, box[1])
        return cls(x0, norm, r, lo, hi)


@dataclass
class Bounds:
    """``pre[i]`` = (lower, upper) of the output of ``net.layers[i]`` (None for ReLU layers)."""

    pre: list
    seconds: dict = field(default_factory=dict)
    lp_solves: int = 0

    def unstable(self, net: Network) -> int:
        """Number of units whose ReLU is unstable (each becomes one binary variable)."""
        n = 0
        for i, layer in enumerate(net.layers):
            if isinstance(layer, ReLU):
                lo, hi = self.pre[i - 1]
                n += int(np.sum((lo < 0) & (hi > 0)))
        return n


def _first_affine_dual(layer: Affine, dom: InputDomain) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounds of ``W x + b`` over the norm ball alone: ``W x0 + b +- r ||W_i||_dual``."""
    q = dom.norm.dual_p
    Wabs = abs(layer.W)
    if np.isinf(q):
        dn = np.asarray(Wabs.max(axis=1).todense()).reshape(-1)
    elif q == 1.0:
        dn = np.asarray(Wabs.sum(axis=1)).reshape(-1)
    else:
        dn = np.sqrt(np.asarray(Wabs.multiply(Wabs).sum(axis=1)).reshape(-1))
    c = layer.W @ dom.x0 + layer.b
    return c - dom.radius * dn, c + dom.radius * dn


def _propagate(net: Network, pre: list, lo: np.ndarray, hi: np.ndarray, start: int, dom: InputDomain) -> None:
    """Interval arithmetic from layer ``start`` on, intersected with what ``pre`` already holds."""
    for i in range(start, len(net.layers)):
        layer = net.layers[i]
        if isinstance(layer, Affine):
            nlo, nhi = layer.interval(lo, hi)
            if i == 0 and not np.isinf(dom.norm.p):
                dlo, dhi = _first_affine_dual(layer, dom)
                nlo, nhi = np.maximum(nlo, dlo), np.minimum(nhi, dhi)
            if pre[i] is not None:
                nlo, nhi = np.maximum(nlo, pre[i][0]), np.minimum(nhi, pre[i][1])
            pre[i] = (nlo, nhi)
            lo, hi = nlo, nhi
        else:
            pre[i] = None
            lo, hi = layer.interval(lo, hi)


def add_input(milp: MilpBuilder, dom: InputDomain) -> VarVector:
    """Input variables in [lo, hi]; for l1 also ``sum |x - x0| <= radius`` (via ``d >= |x - x0|``)."""
    x = milp.add_vars(dom.lo, dom.hi)
    if np.isinf(dom.norm.p):
        return VarVector.of_vars(x)
    if dom.norm.p != 1.0:
        raise ValueError(f"exact: the {dom.norm.name} ball cannot be encoded in an LP/MILP (only linf and l1)")
    n = len(x)
    d = milp.add_vars(np.zeros(n), np.maximum(dom.hi - dom.x0, dom.x0 - dom.lo))
    k = np.arange(n)
    # d - x >= -x0 ; d + x >= x0 ; sum d <= r
    milp.add_rows(np.concatenate([k, k, n + k, n + k]), np.concatenate([d, x, d, x]),
                  np.concatenate([np.ones(n), -np.ones(n), np.ones(n), np.ones(n)]),
                  np.concatenate([-dom.x0, dom.x0]), np.inf)
    milp.add_rows(np.zeros(n, dtype=np.int64), d, np.ones(n), -np.inf, dom.radius)
    return VarVector.of_vars(x)


def _lp_tighten_layer(net: Network, pre: list, i: int, dom: InputDomain, deadline: float,
                      threads: int = 1) -> int:
    """Tighten ``pre[i]`` (an affine layer feeding a ReLU) by LP over the relaxed network."""
    lo, hi = pre[i]
    todo = np.flatnonzero((lo < 0) & (hi > 0))
    if len(todo) == 0:
        return 0
    milp = MilpBuilder()
    h = add_input(milp, dom)
    for j in range(i + 1):
        layer = net.layers[j]
        if isinstance(layer, Affine):
            needed = pre[j][1] > 0 if j < i and isinstance(net.layers[j + 1], ReLU) else None
            h = layer.emit(milp, h, *pre[j], needed=needed)
        else:
            h = layer.emit(milp, h, *pre[j - 1], relax=True)
    hs = milp.to_highs(threads=threads)
    hs.setOptionValue("presolve", "off")  # keep the basis between the many cost changes
    n_solves = 0
    z = h.idx
    new_lo, new_hi = lo.copy(), hi.copy()
    # Widen by a little more than the solver's tolerances so a bound never cuts a feasible point.
    slack = 1e-6 * (1.0 + np.abs(lo) + np.abs(hi))
    for j in todo:
        for sign in (1.0, -1.0):
            if time.perf_counter() > deadline:
                pre[i] = (new_lo, new_hi)
                return n_solves
            if sign > 0 and new_lo[j] >= 0:
                continue
            hs.changeColCost(int(z[j]), sign)
            hs.run()
            n_solves += 1
            hs.changeColCost(int(z[j]), 0.0)
            import highspy

            if hs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                continue
            # A valid bound from the dual objective would be safer than the primal; at
            # optimality they agree up to tolerance, which ``slack`` covers.
            val = float(hs.getInfo().objective_function_value)
            if sign > 0:
                new_lo[j] = max(new_lo[j], val - slack[j])
            else:
                new_hi[j] = min(new_hi[j], -val + slack[j])
            if new_lo[j] >= 0 or new_hi[j] <= 0:
                continue
    pre[i] = (new_lo, new_hi)
    return n_solves


def _input_bound(L: np.ndarray, c: np.ndarray, dom: InputDomain) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``L x + c`` over the domain (box, intersected with the l1 ball for l1)."""
    Lp, Ln = np.maximum(L, 0), np.minimum(L, 0)
    lo = Lp @ dom.lo + Ln @ dom.hi + c
    hi = Lp @ dom.hi + Ln @ dom.lo + c
    if not np.isinf(dom.norm.p):
        q = dom.norm.dual_p
        dn = np.abs(L).max(axis=1) if np.isinf(q) else np.linalg.norm(L, ord=q, axis=1)
        mid = L @ dom.x0 + c
        lo, hi = np.maximum(lo, mid - dom.radius * dn), np.minimum(hi, mid + dom.radius * dn)
    return lo, hi


def _symbolic_layer(net: Network, pre: list, i: int, rows: np.ndarray, dom: InputDomain) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ``z_i[rows]`` by back-substitution to the input."""
    layer = net.layers[i]
    return symbolic_bounds(net, pre, i, layer.W[rows].toarray(), layer.b[rows], dom)


def symbolic_bounds(net: Network, pre: list, i: int, W: np.ndarray, b: np.ndarray,
                    dom: InputDomain) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``W h + b`` where ``h`` is the input of layer ``i`` (back-substitution)."""
    out = []
    for sign in (1.0, -1.0):  # upper bound of sign * z
        L = sign * W
        c = sign * b
        for j in range(i - 1, -1, -1):
            lj = net.layers[j]
            if isinstance(lj, Affine):
                c = c + L @ lj.b
                L = np.asarray((lj.W.T @ L.T).T)
            else:
                lo, hi = pre[j - 1]
                unstable = (lo < 0) & (hi > 0)
                # Upper line s (z - lo) for unstable units; lower line: z if hi > -lo, else 0.
                s = np.where(unstable, hi / np.where(unstable, hi - lo, 1.0), (lo >= 0).astype(np.float64))
                a = np.where(unstable, (hi > -lo).astype(np.float64), (lo >= 0).astype(np.float64))
                Lp, Ln = np.maximum(L, 0), np.minimum(L, 0)
                c = c + Lp @ np.where(unstable, -s * lo, 0.0)
                L = Lp * s + Ln * a
        lo_in, hi_in = _input_bound(L, c, dom)
        out.append(hi_in if sign > 0 else -hi_in)
    return out[1], out[0]


def _symbolic_tighten(net: Network, pre: list, dom: InputDomain, deadline: float) -> None:
    for i, layer in enumerate(net.layers):
        if not isinstance(layer, Affine) or i == 0:
            continue
        if time.perf_counter() > deadline:
            return
        lo, hi = pre[i]
        feeds_relu = i + 1 < len(net.layers) and isinstance(net.layers[i + 1], ReLU)
        rows = np.flatnonzero((lo < 0) & (hi > 0)) if feeds_relu else np.arange(len(lo))
        if len(rows) == 0:
            continue
        slo, shi = _symbolic_layer(net, pre, i, rows, dom)
        lo, hi = lo.copy(), hi.copy()
        lo[rows] = np.maximum(lo[rows], slo)
        hi[rows] = np.minimum(hi[rows], shi)
        pre[i] = (lo, hi)
        if feeds_relu:
            _propagate(net, pre, *net.layers[i + 1].interval(lo, hi), i + 2, dom)
        elif i + 1 < len(net.layers):
            _propagate(net, pre, lo, hi, i + 1, dom)


def compute_bounds(net: Network, dom: InputDomain, tightening=("interval",), time_budget: float = np.inf,
                   threads: int = 1) -> Bounds:
    """Pre-activation bounds of every layer of ``net`` over the domain ``dom``.

    ``tightening`` lists the methods to apply in order (see ``TIGHTENING_METHODS``).
    ``time_budget`` (seconds) bounds the LP work; the remaining units keep the bounds of
    the previous method.
    """
    methods = [str(m).lower() for m in tightening]
    unknown = set(methods) - set(TIGHTENING_METHODS)
    if unknown:
        raise ValueError(f"exact: unknown tightening method(s) {sorted(unknown)}: expected a list from {TIGHTENING_METHODS}")
    if "interval" not in methods:
        methods = ["interval", *methods]  # the LP needs finite bounds to start from
    t0 = time.perf_counter()
    pre: list = [None] * len(net.layers)
    _propagate(net, pre, dom.lo, dom.hi, 0, dom)
    out = Bounds(pre, {"interval": time.perf_counter() - t0})
    deadline = t0 + time_budget
    if "symbolic" in methods:
        t1 = time.perf_counter()
        _symbolic_tighten(net, pre, dom, deadline)
        out.seconds["symbolic"] = time.perf_counter() - t1
    if "lp" in methods:
        t1 = time.perf_counter()
        affine_idx = [i for i, layer in enumerate(net.layers) if isinstance(layer, Affine)]
        # The first affine layer over a box is exact already (for linf); the last feeds no ReLU.
        for i in affine_idx:
            is_first = i == affine_idx[0]
            feeds_relu = i + 1 < len(net.layers) and isinstance(net.layers[i + 1], ReLU)
            if not feeds_relu or (is_first and np.isinf(dom.norm.p)):
                continue
            out.lp_solves += _lp_tighten_layer(net, pre, i, dom, deadline, threads)
            lo, hi = net.layers[i + 1].interval(*pre[i])
            _propagate(net, pre, lo, hi, i + 2, dom)
            if time.perf_counter() > deadline:
                break
        out.seconds["lp"] = time.perf_counter() - t1
    return out
