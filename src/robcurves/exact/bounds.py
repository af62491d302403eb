"""Bounds on every pre-activation: interval arithmetic, then LP, progressively.

The tightening methods form a list (``["interval"]`` or ``["interval", "lp"]``). Each
method runs layer by layer and only where it can still change the MILP: the LP is solved
only for units that are unstable (lower < 0 < upper) under the bounds known so far and
that feed a ReLU. Bounds are always valid: a method that runs out of its time budget
leaves the looser bounds in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from robcurves.exact.layers import Affine, Network, ReLU
from robcurves.exact.milp import MilpBuilder, VarVector
from robcurves.norms import Norm

TIGHTENING_METHODS = ("interval", "lp")


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
            h = layer.emit(milp, h, *pre[j])
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
    if "lp" in methods:
        t1 = time.perf_counter()
        deadline = t1 + time_budget
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
