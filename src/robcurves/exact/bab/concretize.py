"""Lower bounds of linear functions over a norm ball intersected with the box, exactly.

For rows ``lam`` (R, n) and per-row domains ``{x : ||x - x0||_p <= r, lo <= x <= hi}``,
:func:`linear_lower` returns ``min_x lam . x`` and a minimiser. With ``d = x - x0`` and
the box offsets ``dlo = lo - x0 <= 0 <= dhi = hi - x0``:

- **linf**: the ball is a box, so ``lo``/``hi`` already include it: the minimum is
  ``lam+ . lo + lam- . hi`` (exact).
- **l1**: by weak duality, for every ``mu >= 0``
  ``min lam . d >= -mu r + sum_i min(0, (lam_i - mu) dlo_i, (lam_i + mu) dhi_i)``;
  at the fractional-knapsack multiplier (the ``|lam_i|`` at which the budget ``r`` runs
  out when coordinates are spent in order of decreasing ``|lam_i|``) this is the exact
  minimum.
- **l2**: for every ``mu > 0``, with ``d_i(mu) = clip(-lam_i / mu, dlo_i, dhi_i)``,
  ``min lam . d >= sum_i (lam_i d_i + mu d_i^2 / 2) - mu r^2 / 2``; at the ``mu`` where
  ``||d(mu)||_2 = r`` (found exactly by sorting the saturation points) this is the exact
  minimum; if the box corner is inside the ball the box bound is the minimum.

Every returned value is a valid lower bound whatever multiplier the search found: the
multiplier only decides how tight it is (and it carries no gradient: by the envelope
theorem the gradient with respect to ``lam`` is that of the dual function at fixed ``mu``).
The sum of the box bound and ball bound ("the tighter of the two") is also valid but
looser; :func:`linear_lower` is exact up to rounding, which ``rounding.py`` accounts for.
"""

from __future__ import annotations

import math

from robcurves.exact.bab.ops import ops, stop_gradient


def linear_lower(lam, x0, dlo, dhi, radius, p: float, want_argmin: bool = False):
    """``min lam . x`` over ``{||x - x0||_p <= radius} ∩ [x0 + dlo, x0 + dhi]`` per row.

    ``lam``: (R, n); ``x0``, ``dlo``, ``dhi``: (R, n) or (1, n) (``dlo <= 0 <= dhi``,
    for linf already the ball-box); ``radius``: (R,) or (1,) in the norm ``p``
    (``math.inf``, 2 or 1). Returns ``value`` (R,) and, with ``want_argmin``, a minimiser
    ``x`` (R, n) inside the domain (stopped from the gradient).
    """
    base = ops.sum(lam * x0, axis=1)
    if math.isinf(p):
        d = ops.where(lam > 0, dlo, dhi)
        val = base + ops.sum(lam * d, axis=1)
        return (val, stop_gradient(x0 + d)) if want_argmin else (val, None)
    if p == 1.0:
        val, d = _l1(lam, dlo, dhi, radius, want_argmin)
    elif p == 2.0:
        val, d = _l2(lam, dlo, dhi, radius, want_argmin)
    else:
        raise ValueError(f"bab: unsupported norm p={p}")
    return base + val, (stop_gradient(x0 + d) if want_argmin else None)


def linear_upper(lam, x0, dlo, dhi, radius, p: float):
    val, _ = linear_lower(-lam, x0, dlo, dhi, radius, p)
    return -val


def _room(lam, dlo, dhi):
    """How far each coordinate can move in its descent direction ``-sign(lam)``."""
    return ops.where(lam > 0, -dlo, dhi)


def _l1(lam, dlo, dhi, radius, want_argmin):
    r = ops.reshape(radius, (-1, 1))
    absl = ops.abs(lam)
    room = _room(lam, dlo, dhi)
    # The knapsack multiplier: sort by |lam| (descending), spend rooms until r is used up.
    a = stop_gradient(absl)
    order = ops.argsort(-a, axis=1)
    a_s = ops.take_along_axis(a, order, axis=1)
    room_s = ops.take_along_axis(stop_gradient(room), order, axis=1)
    before = ops.cumsum(room_s, axis=1) - room_s
    # mu = |lam| of the first coordinate that the budget cannot fully pay (0 if none).
    crossing = (before < r) & (before + room_s >= r)
    mu = ops.max(ops.where(crossing, a_s, ops.zeros_like(a_s)), axis=1, keepdims=True)
    mu = stop_gradient(mu)
    term = ops.minimum(ops.minimum((lam - mu) * dlo, (lam + mu) * dhi), ops.zeros_like(lam))
    val = -ops.reshape(mu, (-1,)) * ops.reshape(radius, (-1,)) + ops.sum(term, axis=1)
    if not want_argmin:
        return val, None
    # Primal: full room where |lam| > mu, then the crossing coordinate takes what is left.
    full = ops.where(a > mu, room, ops.zeros_like(room))
    left = ops.maximum(r - ops.sum(full, axis=1, keepdims=True), 0.0)
    at = ops.where((a == mu) & (a > 0), room, ops.zeros_like(room))
    share = ops.minimum(at, left * at / ops.maximum(ops.sum(at, axis=1, keepdims=True), 1e-300))
    amount = full + share
    sgn = ops.where(lam > 0, -ops.ones_like(lam), ops.ones_like(lam))
    d = sgn * amount
    n1 = ops.sum(ops.abs(d), axis=1, keepdims=True)
    d = d * ops.minimum(1.0, r / ops.maximum(n1, 1e-300))
    return val, d


def _l2(lam, dlo, dhi, radius, want_argmin):
    r = ops.reshape(radius, (-1, 1))
    a = stop_gradient(ops.abs(lam))
    room = stop_gradient(_room(lam, dlo, dhi))
    big = ops.ones_like(a) * 1e300
    # d_i(t) = -sign(lam_i) min(t |lam_i|, room_i) with t = 1/mu; it saturates at t_i = room_i / |lam_i|.
    tb = ops.where(a > 0, room / ops.where(a > 0, a, ops.ones_like(a)), big)
    order = ops.argsort(tb, axis=1)
    tb_s = ops.take_along_axis(tb, order, axis=1)
    room_s = ops.take_along_axis(room, order, axis=1)
    a_s = ops.take_along_axis(a, order, axis=1)
    sat_sq = ops.cumsum(room_s * room_s, axis=1) - room_s * room_s  # saturated before breakpoint k
    free_sq = ops.flip(ops.cumsum(ops.flip(a_s * a_s, axis=1), axis=1), axis=1)  # sum of |lam|^2 from k on
    norm_sq_at = sat_sq + ops.where(tb_s < big, tb_s * tb_s, ops.zeros_like(tb_s)) * free_sq
    reached = (norm_sq_at >= r * r) & (tb_s < big)
    any_reached = ops.any(reached, axis=1, keepdims=True)
    k = ops.argmax(ops.cast(reached, "int32"), axis=1)
    k = ops.reshape(k, (-1, 1))
    s_k = ops.take_along_axis(sat_sq, k, axis=1)
    q_k = ops.take_along_axis(free_sq, k, axis=1)
    t = ops.sqrt(ops.maximum(r * r - s_k, 0.0) / ops.maximum(q_k, 1e-300))
    mu = stop_gradient(1.0 / ops.maximum(t, 1e-300))
    d_dual = ops.clip(-lam / mu, dlo, dhi)
    dual = ops.sum(lam * d_dual + 0.5 * mu * d_dual * d_dual, axis=1) - 0.5 * ops.reshape(mu, (-1,)) * ops.reshape(
        r * r, (-1,))
    # The box corner lies inside the ball: the box minimum is the minimum.
    d_box = ops.where(lam > 0, dlo, dhi)
    box = ops.sum(lam * d_box, axis=1)
    val = ops.where(ops.reshape(any_reached, (-1,)), dual, box)
    if not want_argmin:
        return val, None
    d = ops.where(any_reached, d_dual, d_box)
    n2 = ops.sqrt(ops.sum(d * d, axis=1, keepdims=True))
    d = d * ops.minimum(1.0, r / ops.maximum(n2, 1e-300))
    return val, stop_gradient(d)
