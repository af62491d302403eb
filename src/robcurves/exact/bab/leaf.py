"""The endgame of a subdomain that is a linear region: its closest adversarial example.

When every ReLU that is unstable in the ball is split, the network is affine on the
subdomain, ``z(x) = J x + c``. The closest point of the region whose margin against class
``k`` is at least ``delta`` is then a linear program (linf, l1: HiGHS) or a convex
quadratic program (l2: HiGHS's QP solver). Its solution is only a *candidate*: it is
re-checked on the float32 model before it counts (a real-arithmetic optimum that the
float32 model does not misclassify is retried with a larger ``delta``). Proofs never come
from here; they come from the beta-CROWN bounds, which are rigorous.
"""

from __future__ import annotations

import math

import numpy as np

from robcurves.exact.bab.network import BoundGraph


def affine_pieces(g: BoundGraph, x0: np.ndarray, active: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(J_i, c_i)`` with ``z_i(x) = J_i x + c_i`` for every node, when ReLU ``k`` passes exactly
    the units ``active[k]`` (flat boolean masks). ``J_i`` is ``(n_i, n_inputs)``."""
    n0 = g.n_inputs
    vals: list[tuple[np.ndarray, np.ndarray]] = [(np.eye(n0), np.zeros(n0))]
    for i, nd in enumerate(g.nodes[1:], start=1):
        if nd.kind == "relu":
            J, c = vals[nd.inputs[0]]
            m = active[g.relu_index[i]].astype(np.float64)
            vals.append((J * m[:, None], c * m))
        elif nd.kind == "add":
            (J1, c1), (J2, c2) = vals[nd.inputs[0]], vals[nd.inputs[1]]
            vals.append((J1 + J2, c1 + c2))
        else:
            layer = g.layer(i)
            J, c = vals[nd.inputs[0]]
            src = g.nodes[nd.inputs[0]].shape
            cn = layer.evaluate_numpy(c.reshape(1, *src)).reshape(-1)
            b = nd.bias if nd.bias is not None else np.zeros(nd.n)
            Jn = layer.evaluate_numpy(J.T.reshape(n0, *src)).reshape(n0, -1).T - b[:, None]
            vals.append((Jn, cn))
    return vals


def _l1_deviations(milp, x: np.ndarray, ball) -> np.ndarray:
    """Variables ``d >= |x - x0|`` (elementwise) of the ball's box, for the l1 norm's rows."""
    n = len(x)
    d = milp.add_vars(np.zeros(n), np.maximum(-ball.dlo, ball.dhi))
    kk = np.arange(n)
    milp.add_rows(np.concatenate([kk, kk, n + kk, n + kk]), np.concatenate([d, x, d, x]),
                  np.concatenate([np.ones(n), -np.ones(n), np.ones(n), np.ones(n)]),
                  np.concatenate([-ball.x0, ball.x0]), np.inf)
    return d


def closest_in_region(g: BoundGraph, ball, y: int, k: int, signs: list[np.ndarray], lower: list[np.ndarray],
                      upper: list[np.ndarray], delta: float, time_limit: float = 5.0) -> np.ndarray | None:
    """The point of the region (``signs`` per ReLU, +1/-1 on split units, others stable by
    ``lower``/``upper``) inside the ball's box closest to ``x0`` in the ball's norm with
    ``z_k - z_y >= delta`` (real arithmetic), if it is within the ball's radius; else None."""
    import highspy

    from robcurves.exact.milp import MilpBuilder

    active = [np.where(s != 0, s > 0, lo >= 0) for s, lo in zip(signs, lower)]
    pieces = affine_pieces(g, ball.x0, active)
    n = g.n_inputs
    milp = MilpBuilder()
    x = milp.add_vars(ball.lo, ball.hi)
    rows_J, rows_lo, rows_hi = [], [], []
    for kk, (s, lo, hi) in enumerate(zip(signs, lower, upper)):
        J, c = pieces[g.pre[kk]]
        free = (lo < 0) & (hi > 0)  # units whose sign the ball does not fix: the split ones
        for sign in (1, -1):
            sel = free & (s == sign)
            if sel.any():
                rows_J.append(J[sel] * sign)
                rows_lo.append(-c[sel] * sign)
                rows_hi.append(np.full(int(sel.sum()), np.inf))
    J, c = pieces[g.output]
    rows_J.append((J[k] - J[y])[None])
    rows_lo.append(np.array([c[y] - c[k] + delta]))
    rows_hi.append(np.array([np.inf]))
    A = np.concatenate(rows_J)
    r_idx, c_idx = np.nonzero(A)
    milp.add_rows(r_idx, x[c_idx], A[r_idx, c_idx], np.concatenate(rows_lo), np.concatenate(rows_hi), n=len(A))
    p = ball.norm.p
    if math.isinf(p):
        t = milp.add_vars(0.0, ball.radius)
        kk = np.arange(n)
        milp.add_rows(np.concatenate([kk, kk, n + kk, n + kk]),
                      np.concatenate([x, np.repeat(t, n), x, np.repeat(t, n)]),
                      np.concatenate([np.ones(n), -np.ones(n), np.ones(n), np.ones(n)]),
                      np.concatenate([np.full(n, -np.inf), ball.x0]), np.concatenate([ball.x0, np.full(n, np.inf)]))
        milp.set_cost(t, [1.0])
    elif p == 1.0:
        milp.set_cost(_l1_deviations(milp, x, ball), np.ones(n))
    else:
        milp.set_cost(x, -2.0 * ball.x0)
    h = milp.to_highs(presolve=True)
    if p == 2.0:
        hess = highspy.HighsHessian()
        hess.dim_ = milp.n_cols
        hess.format_ = highspy.HessianFormat.kTriangular
        starts = np.concatenate([np.arange(n + 1), np.full(milp.n_cols - n, n)]).astype(np.int32)
        hess.start_ = starts
        hess.index_ = np.arange(n, dtype=np.int32)
        hess.value_ = np.full(n, 2.0)
        h.passHessian(hess)
    h.setOptionValue("time_limit", float(max(time_limit, 0.05)))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    sol = np.asarray(h.getSolution().col_value)[:n]
    dist = {math.inf: np.abs(sol - ball.x0).max(), 1.0: np.abs(sol - ball.x0).sum(),
            2.0: np.sqrt(np.sum((sol - ball.x0) ** 2))}[p]
    return sol if dist <= ball.radius * (1 + 1e-6) else None


def region_duals(g: BoundGraph, ball, y: int, k: int, signs: list[np.ndarray], lows: list[np.ndarray],
                 ups: list[np.ndarray], time_limit: float = 5.0) -> tuple[float, list[np.ndarray]] | None:
    """The multipliers that make beta-CROWN exact on a linear region (linf, l1).

    On a subdomain where every ReLU is split (``signs`` +1/-1) or stable by the subdomain's
    pre-activation bounds ``lows``/``ups``, the margin ``z_y - z_k`` is affine in ``x`` and
    its minimum over the region ∩ ball ∩ box is a linear program. The LP's optimal row
    duals of the split constraints ``S_j z_j(x) >= 0`` are the beta multipliers at which
    beta-CROWN's Lagrangian bound equals the LP optimum (partial LP duality). Returns
    ``(LP optimum, betas per ReLU layer)``, or None (l2, an unsplit unstable unit, no
    optimum in time). The LP is real arithmetic with HiGHS's tolerances: the betas are
    only a starting point; the certificate is the rigorous bound the caller evaluates
    with them (:meth:`robcurves.exact.bab.bounds.BoundEngine.optimise`).
    """
    import highspy

    from robcurves.exact.milp import MilpBuilder

    p = ball.norm.p
    if p == 2.0:
        return None  # a quadratic constraint: HiGHS solves no QCQP; the ascent alone serves l2
    active = []
    for s, lo, hi in zip(signs, lows, ups):
        if np.any((s == 0) & (lo < 0) & (hi > 0)):
            return None
        active.append(np.where(s != 0, s > 0, lo >= 0))
    pieces = affine_pieces(g, ball.x0, active)
    n = g.n_inputs
    milp = MilpBuilder()
    x = milp.add_vars(ball.lo, ball.hi)
    rows_J, rows_lo, where = [], [], []
    for kk, s in enumerate(signs):
        J, c = pieces[g.pre[kk]]
        sel = np.flatnonzero(s != 0)
        if len(sel):
            rows_J.append(J[sel] * s[sel, None])
            rows_lo.append(-c[sel] * s[sel])
            where.append((kk, sel))
    if rows_J:
        A = np.concatenate(rows_J)
        r_idx, c_idx = np.nonzero(A)
        milp.add_rows(r_idx, x[c_idx], A[r_idx, c_idx], np.concatenate(rows_lo), np.inf, n=len(A))
    if p == 1.0:
        milp.add_rows(np.zeros(n, np.int64), _l1_deviations(milp, x, ball), np.ones(n), -np.inf, ball.radius, n=1)
    J, c = pieces[g.output]
    milp.set_cost(x, J[y] - J[k])
    h = milp.to_highs(presolve=True)
    h.setOptionValue("time_limit", float(max(time_limit, 0.05)))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    duals = np.asarray(h.getSolution().row_dual)
    value = float(h.getInfo().objective_function_value) + float(c[y] - c[k])
    betas = [np.zeros(len(s)) for s in signs]
    pos = 0
    for kk, sel in where:
        betas[kk][sel] = np.maximum(duals[pos:pos + len(sel)], 0.0)
        pos += len(sel)
    return value, betas
