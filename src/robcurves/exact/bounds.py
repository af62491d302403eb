"""Bounds on every node of the network for one point's domain: interval, then CROWN, then LP.

The tightening methods form a list, applied in order (``["interval"]``,
``["interval", "symbolic"]``, ``["interval", "symbolic", "lp"]``, ...):

- ``interval``: interval arithmetic through the graph (:func:`robcurves.network.interval_bounds`;
  with an l1 ball, the first affine layer is also bounded by the ball's dual norm);
- ``symbolic``: linear bounds by back-substitution to the input with the triangle
  relaxation's upper line and CROWN's adaptive lower line for each unstable ReLU
  (:func:`robcurves.network.crown_bounds`), intersected with the intervals;
- ``lp``: one LP per bound over the triangle relaxation of everything before the node
  (the layers' own MILP rows with the binaries relaxed).

The exact stage and the bounds share one network description (:mod:`robcurves.network`):
the same layers evaluate, bound and emit themselves. Symbolic and LP bounds are computed
only for units that are unstable (lower < 0 < upper) under the bounds known so far and that
feed a ReLU. Bounds are always valid: a method that runs out of its time budget leaves the
looser bounds in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from robcurves.exact.milp import MilpBuilder, VarVector
from robcurves.network import Domain, Network, crown_bounds, interval_bounds
from robcurves.norms import Norm

TIGHTENING_METHODS = ("interval", "symbolic", "lp")


@dataclass
class InputDomain:
    """The set searched for adversarial examples: ``{x in [lo, hi] : ||x - x0||_p <= radius}``.

    ``lo``/``hi`` are flat float64 vectors that already include the input box and, for
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

    def domain(self, input_shape) -> Domain:
        """The same set as a batch of one :class:`robcurves.network.Domain` (float64 NumPy:
        the bounds of one point are many small operations, cheapest in NumPy)."""
        shape = (1, *input_shape)
        t = lambda a: np.asarray(a, np.float64).reshape(shape)  # noqa: E731
        return Domain(t(self.lo), t(self.hi), t(self.x0), self.norm, np.array([self.radius], dtype=np.float64))


@dataclass
class Bounds:
    """``pre[i]`` = (lower, upper) of node ``i``'s output as flat float64 vectors (node 0: the input box)."""

    pre: list
    seconds: dict = field(default_factory=dict)
    lp_solves: int = 0

    def unstable(self, net: Network) -> int:
        """Number of units whose ReLU is unstable (each becomes one binary variable)."""
        n = 0
        for i in net.layer_nodes("relu"):
            lo, hi = self.pre[net.nodes[i].inputs[0]]
            n += int(np.sum((lo < 0) & (hi > 0)))
        return n


def _flat(boxes) -> list:
    """Per-node boxes of a batch of one -> flat float64 vectors."""
    return [tuple(np.asarray(t, dtype=np.float64).reshape(-1) for t in b) for b in boxes]


def batched(net: Network, pre: list) -> list:
    """Flat per-node boxes -> ``(1, *shape)`` arrays (what :mod:`robcurves.network.bounds` takes)."""
    return [tuple(a.reshape(1, *net.nodes[i].shape) for a in b) for i, b in enumerate(pre)]


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


def emit_network(milp: MilpBuilder, net: Network, x: VarVector, pre: list, upto: int | None = None,
                 logits=None, relax: bool = False) -> list:
    """Every node's MILP values (one :class:`VarVector` per node, up to node ``upto``).

    Each layer emits its own rows given the bounds ``pre``. Units that only feed ReLUs and
    are never positive get no variable; of the logits only ``logits`` (all if None).
    ``relax=True`` relaxes every binary (the LP used for bound tightening).
    """
    upto = net.output if upto is None else int(upto)
    hs: list = [x]
    for i, node in enumerate(net.nodes[1:upto + 1], start=1):
        layer = node.layer
        needed = None
        if i == net.output and logits is not None:
            needed = np.zeros(net.n_classes, dtype=bool)
            needed[list(logits)] = True
        elif i < upto and net.users[i] and all(net.nodes[u].layer.kind == "relu" for u in net.users[i]):
            needed = pre[i][1] > 0
        hs.append(layer.emit(milp, [hs[j] for j in node.inputs], [pre[j] for j in node.inputs], pre[i],
                             needed=needed, relax=relax))
    return hs


def _lp_tighten_node(net: Network, pre: list, i: int, dom: InputDomain, deadline: float, threads: int = 1) -> int:
    """Tighten ``pre[i]`` (a node feeding a ReLU) by LP over the relaxed network before it."""
    import highspy

    lo, hi = pre[i]
    todo = np.flatnonzero((lo < 0) & (hi > 0))
    if len(todo) == 0:
        return 0
    milp = MilpBuilder()
    hs = emit_network(milp, net, add_input(milp, dom), pre, upto=i, relax=True)
    h = milp.to_highs(threads=threads)
    h.setOptionValue("presolve", "off")  # keep the basis between the many cost changes
    n_solves = 0
    z = hs[i]
    new_lo, new_hi = lo.copy(), hi.copy()
    # Widen by a little more than the solver's tolerances so a bound never cuts a feasible point.
    slack = 1e-6 * (1.0 + np.abs(lo) + np.abs(hi))
    for j in todo:
        if z.idx[j] < 0:
            continue
        for sign in (1.0, -1.0):
            if time.perf_counter() > deadline:
                pre[i] = (new_lo, new_hi)
                return n_solves
            if sign > 0 and new_lo[j] >= 0:
                continue
            h.changeColCost(int(z.idx[j]), sign)
            h.run()
            n_solves += 1
            h.changeColCost(int(z.idx[j]), 0.0)
            if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                continue
            # A valid bound from the dual objective would be safer than the primal; at
            # optimality they agree up to tolerance, which ``slack`` covers.
            val = float(h.getInfo().objective_function_value)
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
    """Bounds of every node of ``net`` over the domain ``dom``.

    ``tightening`` lists the methods to apply in order (see ``TIGHTENING_METHODS``).
    ``time_budget`` (seconds) bounds the LP work; the remaining units keep the bounds of
    the previous method.
    """
    methods = [str(m).lower() for m in tightening]
    unknown = set(methods) - set(TIGHTENING_METHODS)
    if unknown:
        raise ValueError(f"exact: unknown tightening method(s) {sorted(unknown)}: expected a list from {TIGHTENING_METHODS}")
    t0 = time.perf_counter()
    d = dom.domain(net.input_shape)
    deadline = t0 + time_budget
    if "symbolic" in methods:
        pre = _flat(crown_bounds(net, d))
        out = Bounds(pre, {"symbolic": time.perf_counter() - t0})
    else:
        pre = _flat(interval_bounds(net, d))
        out = Bounds(pre, {"interval": time.perf_counter() - t0})
    if "lp" in methods:
        t1 = time.perf_counter()
        relu_inputs = sorted({net.nodes[r].inputs[0] for r in net.layer_nodes("relu")})
        for i in relu_inputs:
            # an affine function of the input is bounded exactly over a box already (linf)
            if np.isinf(dom.norm.p) and net.is_affine_in_input(i):
                continue
            out.lp_solves += _lp_tighten_node(net, pre, i, dom, deadline, threads)
            pre[:] = _flat(interval_bounds(net, d, given=dict(enumerate(batched(net, pre)))))
            if time.perf_counter() > deadline:
                break
        out.seconds["lp"] = time.perf_counter() - t1
    return out
