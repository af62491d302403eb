"""The MILPs of one point: the network's rows, the margin bound, the distance and margin queries.

For a point ``x0`` with label ``y`` and another class ``k``:

- :func:`distance_milp`: ``min ||x - x0||`` over the domain subject to ``z_k - z_y >= margin``
  (the objective is the norm's, :meth:`robcurves.norms.Norm.add_milp_distance`);
- :func:`margin_milp`: ``min z_y - z_k`` over the domain (negative: an adversarial example);
- :func:`margin_bound`: a cheap upper bound of every ``z_k - z_y`` (classes it proves robust
  need no MILP at all).

Every query is built from the layers' own rows (:func:`robcurves.exact.bounds.emit_network`)
given the bounds of :func:`robcurves.exact.bounds.compute_bounds`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from robcurves.exact.bounds import Bounds, InputDomain, add_input, batched, emit_network
from robcurves.exact.milp import MilpBuilder, VarVector
from robcurves.network import Network, linear_bounds


def build_network(milp: MilpBuilder, net: Network, dom: InputDomain, bounds: Bounds,
                   logits: Sequence[int] | None = None) -> tuple[VarVector, VarVector]:
    """Input variables and the network; units a ReLU turns off get no variable, and of the
    last layer only ``logits`` (all if None)."""
    x = add_input(milp, dom)
    hs = emit_network(milp, net, x, bounds.pre, logits=logits)
    return x, hs[-1]


def margin_bound(net: Network, bounds: Bounds, dom: InputDomain, y: int) -> np.ndarray:
    """Upper bound of ``z_k - z_y`` per class ``k``: back-substitution of the margin itself
    (much tighter than the difference of the logits' bounds), and interval arithmetic on
    the input of the last layer (elision of the last layer)."""
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


def distance_milp(net: Network, dom: InputDomain, bounds: Bounds, y: int, k: int, margin: float,
                   threads: int, heuristics: bool = False) -> tuple[Any, VarVector]:
    """``min ||x - x0||`` over the domain subject to ``z_k - z_y >= margin``."""
    milp = MilpBuilder()
    x, z = build_network(milp, net, dom, bounds, logits=(y, k))
    _add_margin_row(milp, z, y, k, margin)
    dom.norm.add_milp_distance(milp, x.idx, dom.x0, dom.radius)
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


def margin_milp(net: Network, dom: InputDomain, bounds: Bounds, y: int, k: int, threads: int,
                 heuristics: bool = False):
    """``min z_y - z_k`` over the domain (negative optimum: an adversarial example of class k)."""
    milp = MilpBuilder()
    x, z = build_network(milp, net, dom, bounds, logits=(y, k))
    milp.set_cost([z.idx[y], z.idx[k]], [1.0, -1.0])
    return milp.to_highs(threads=threads, heuristics=heuristics), x
