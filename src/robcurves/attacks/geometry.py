"""The norm as TensorFlow operations on flattened batches of perturbations.

Every attack works on perturbations ``delta`` of shape ``(B, D)`` (the input flattened)
with per-row box limits ``lo = bounds[0] - x <= 0 <= hi = bounds[1] - x``. The norm
enters the attacks only through one of these small objects:

- ``norm(delta)`` and ``dual_norm(grad)``, both per row;
- ``descent(grad, delta, lo, hi)``: a direction of unit p-norm that decreases a loss
  with gradient ``grad`` fastest (to first order) among the directions the box allows;
- ``project(delta, eps, lo, hi)``: a point of ``{||delta||_p <= eps} ∩ [lo, hi]`` (the
  exact Euclidean projection for linf and l1, ball-then-box for l2, which is feasible);
- ``random_in_ball(shape, eps, seed)``: a random start inside the eps-ball (stateless).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from robcurves.norms import Norm, parse_norm

_TINY = 1e-12


def _col(v: tf.Tensor) -> tf.Tensor:
    return tf.expand_dims(v, 1)


class LinfOps:
    name = "linf"

    def norm(self, d):
        return tf.reduce_max(tf.abs(d), axis=1)

    def dual_norm(self, g):
        return tf.reduce_sum(tf.abs(g), axis=1)

    def descent(self, g, d, lo, hi):
        return -tf.sign(g)

    def project(self, d, eps, lo, hi):
        e = _col(eps)
        return tf.clip_by_value(d, tf.maximum(-e, lo), tf.minimum(e, hi))

    def random_in_ball(self, shape, eps, seed):
        u = tf.random.stateless_uniform(shape, seed, -1.0, 1.0)
        return u * _col(eps)

    def linear_distance(self, a, m, lo, hi):
        # delta(t) = clip(t sign(a), lo, hi): coordinate i saturates at t = room_i.
        room = tf.where(a > 0, hi, -lo)
        absa = tf.abs(a)
        beta = tf.where(absa > 0, room, tf.fill(tf.shape(a), np.float32(np.inf)))
        t, _, feasible = _saturation_root(beta, absa * room, absa, m)
        return _finish(t, feasible, m)

    def linear_step(self, a, m, lo, hi):
        room = tf.where(a > 0, hi, -lo)
        absa = tf.abs(a)
        beta = tf.where(absa > 0, room, tf.fill(tf.shape(a), np.float32(np.inf)))
        t, _, feasible = _saturation_root(beta, absa * room, absa, m)
        t = tf.where(feasible, t, tf.reduce_max(hi - lo, axis=1))  # unreachable: go as far as the box allows
        return tf.where(_col(m > 0), tf.clip_by_value(_col(t) * tf.sign(a), lo, hi), tf.zeros_like(a))


class L2Ops:
    name = "l2"

    def norm(self, d):
        return tf.sqrt(tf.reduce_sum(d * d, axis=1))

    def dual_norm(self, g):
        return tf.sqrt(tf.reduce_sum(g * g, axis=1))

    def descent(self, g, d, lo, hi):
        # Only coordinates that can move in the descent direction count.
        blocked = ((g > 0) & (d <= lo)) | ((g < 0) & (d >= hi))
        g = tf.where(blocked, tf.zeros_like(g), g)
        return -g / (_col(self.dual_norm(g)) + _TINY)

    def project(self, d, eps, lo, hi):
        n = self.norm(d)
        scale = tf.minimum(1.0, eps / (n + _TINY))
        # Clipping towards the box after scaling only shrinks |delta_i| (0 is inside
        # the box), so the result stays inside the ball.
        return tf.clip_by_value(d * _col(scale), lo, hi)

    @staticmethod
    def _kkt(a, m, lo, hi):
        """KKT of min ||delta||_2 s.t. a . delta >= m, delta in the box:
        delta = clip(lam a, lo, hi); coordinate i saturates at lam = room_i / |a_i|."""
        room = tf.where(a > 0, hi, -lo)
        absa = tf.abs(a)
        beta = tf.where(absa > 0, room / tf.where(absa > 0, absa, tf.ones_like(absa)),
                        tf.fill(tf.shape(a), np.float32(np.inf)))
        return (room, *_saturation_root(beta, absa * room, a * a, m))

    def linear_distance(self, a, m, lo, hi):
        room, lam, saturated, feasible = self._kkt(a, m, lo, hi)
        sq = tf.reduce_sum(tf.where(saturated, room * room, _col(lam * lam) * a * a), axis=1)
        return _finish(tf.sqrt(sq), feasible, m)

    def linear_step(self, a, m, lo, hi):
        room, lam, saturated, feasible = self._kkt(a, m, lo, hi)
        step = tf.where(saturated, tf.sign(a) * room, _col(lam) * a)
        full = tf.sign(a) * room  # unreachable: go as far as the box allows
        return tf.where(_col(m > 0), tf.where(_col(feasible), step, full), tf.zeros_like(a))

    def random_in_ball(self, shape, eps, seed):
        z = tf.random.stateless_normal(shape, seed)
        r = tf.random.stateless_uniform(shape[:1], seed + 1, 0.0, 1.0)
        return z / (_col(self.norm(z)) + _TINY) * _col(eps * r)


class L1Ops:
    """l1 geometry. Steps are sparse: the ``sparsity`` fraction of coordinates with the
    largest gradient among those the box lets move (as in l1-APGD / SLIDE)."""

    name = "l1"

    def __init__(self, sparsity: float = 0.01, projection_iters: int = 24):
        self.sparsity = float(sparsity)
        self.projection_iters = int(projection_iters)

    def norm(self, d):
        return tf.reduce_sum(tf.abs(d), axis=1)

    def dual_norm(self, g):
        return tf.reduce_max(tf.abs(g), axis=1)

    def descent(self, g, d, lo, hi):
        dim = g.shape[1]
        k = max(1, int(math.ceil(self.sparsity * dim))) if dim is not None else 1
        room = tf.where(g < 0, hi - d, d - lo)
        score = tf.where(room > 1e-7, tf.abs(g), tf.zeros_like(g))
        kth = tf.math.top_k(score, k=k).values[:, -1]
        mask = (score >= _col(kth)) & (score > 0)
        mask = tf.cast(mask, g.dtype)
        count = tf.reduce_sum(mask, axis=1, keepdims=True)
        return -tf.sign(g) * mask / tf.maximum(count, 1.0)

    def project(self, d, eps, lo, hi):
        # Exact projection onto {||delta||_1 <= eps} ∩ [lo, hi]: the problem separates
        # into |delta_i| = clip(|d_i| - lam, 0, room_i) with lam >= 0 the smallest value
        # that meets the budget; lam is found by bisection (monotone in lam).
        a = tf.abs(d)
        s = tf.sign(d)
        room = tf.where(d >= 0, hi, -lo)
        boxed = tf.minimum(a, room)
        need = tf.reduce_sum(boxed, axis=1) > eps
        lam_lo = tf.zeros_like(eps)
        lam_hi = tf.reduce_max(a, axis=1)
        for _ in tf.range(self.projection_iters):  # a graph loop: keeps tracing cheap
            mid = 0.5 * (lam_lo + lam_hi)
            f = tf.reduce_sum(tf.clip_by_value(a - _col(mid), 0.0, room), axis=1)
            over = f > eps
            lam_lo = tf.where(over, mid, lam_lo)
            lam_hi = tf.where(over, lam_hi, mid)
        shrunk = tf.clip_by_value(a - _col(lam_hi), 0.0, room)
        out = tf.where(_col(need), shrunk, boxed) * s
        # Guard the last float32 ulp: never return a point outside the ball.
        n = self.norm(out)
        fix = tf.minimum(1.0, eps / (n + _TINY))
        return out * _col(tf.where(n > eps, fix, tf.ones_like(fix)))

    @staticmethod
    def _knapsack(a, m, lo, hi):
        """Fractional knapsack behind the l1 linearised problems.

        Spend the budget on the coordinates with the largest |a_i|, each up to its room
        in the direction sign(a_i), until the gain a . step reaches m. Returns the sort
        order, the per-coordinate amounts in sorted order (zero past the crossing) and
        whether the box allows reaching m at all.
        """
        room = tf.where(a > 0, hi, -lo)
        absa = tf.abs(a)
        order = tf.argsort(absa, axis=1, direction="DESCENDING")
        a_s = tf.gather(absa, order, batch_dims=1)
        r_s = tf.gather(room, order, batch_dims=1)
        gain = a_s * r_s
        cg = tf.cumsum(gain, axis=1)
        prev = cg - gain
        mm = _col(m)
        amount = tf.where(cg < mm, r_s, tf.zeros_like(r_s))
        first = (cg >= mm) & (prev < mm) & (a_s > 0)
        amount = amount + tf.where(first, (mm - prev) / tf.where(a_s > 0, a_s, tf.ones_like(a_s)), tf.zeros_like(a_s))
        feasible = cg[:, -1] >= m
        return order, a_s, r_s, amount, feasible

    def linear_distance(self, a, m, lo, hi):
        _, _, _, amount, feasible = self._knapsack(a, m, lo, hi)
        dist = tf.reduce_sum(amount, axis=1)
        return tf.where(m <= 0, tf.zeros_like(m), tf.where(feasible, dist, tf.fill(tf.shape(m), np.float32(np.inf))))

    def linear_step(self, a, m, lo, hi):
        order, a_s, r_s, amount, feasible = self._knapsack(a, m, lo, hi)
        amount = tf.where(_col(feasible), amount, r_s * tf.cast(a_s > 0, a.dtype))
        back = tf.argsort(order, axis=1)
        step = tf.sign(a) * tf.gather(amount, back, batch_dims=1)
        return tf.where(_col(m > 0), step, tf.zeros_like(a))

    def random_in_ball(self, shape, eps, seed):
        # Laplace direction, radius uniform: a spread of sparse and dense starts.
        u = tf.random.stateless_uniform(shape, seed, -0.5 + 1e-6, 0.5 - 1e-6)
        z = -tf.sign(u) * tf.math.log(1.0 - 2.0 * tf.abs(u))
        r = tf.random.stateless_uniform(shape[:1], seed + 1, 0.0, 1.0)
        return z / (_col(self.norm(z)) + _TINY) * _col(eps * r)


def _saturation_root(beta, sat, slope, m):
    """Solve ``g(lam) = m`` for ``g(lam) = sum_i [lam >= beta_i] sat_i + lam [lam < beta_i] slope_i``.

    This is ``a . delta(lam)`` when every coordinate grows linearly (``slope_i``) until
    it saturates at ``beta_i`` (contributing ``sat_i = beta_i slope_i``). ``g`` is
    piecewise linear and non-decreasing; sorting the breakpoints gives the root exactly.
    Returns ``(lam, saturated (B, D) bool, feasible (B,) bool)``.
    """
    order = tf.argsort(beta, axis=1)
    b_s = tf.gather(beta, order, batch_dims=1)
    s_s = tf.gather(sat, order, batch_dims=1)
    w_s = tf.gather(slope, order, batch_dims=1)
    sat_before = tf.cumsum(s_s, axis=1, exclusive=True)
    slope_from = tf.cumsum(w_s, axis=1, reverse=True)
    g_at = sat_before + tf.where(tf.math.is_finite(b_s), b_s, tf.zeros_like(b_s)) * slope_from
    g_at = tf.where(tf.math.is_finite(b_s), g_at, tf.fill(tf.shape(g_at), np.float32(np.inf)))
    mm = _col(m)
    # k: the first breakpoint at which g reaches m; coordinates before it are saturated.
    reached = g_at >= mm
    k = tf.argmax(tf.cast(reached, tf.int32), axis=1, output_type=tf.int32)
    feasible = tf.reduce_sum(sat, axis=1) >= m
    s_k = tf.gather(sat_before, k[:, None], batch_dims=1)[:, 0]
    w_k = tf.gather(slope_from, k[:, None], batch_dims=1)[:, 0]
    lam = (m - s_k) / tf.where(w_k > 0, w_k, tf.ones_like(w_k))
    lam = tf.where(w_k > 0, lam, tf.zeros_like(lam))
    lam = tf.maximum(lam, 0.0)
    saturated = beta <= _col(lam)
    return lam, saturated, feasible


def _finish(dist, feasible, m):
    inf = tf.fill(tf.shape(m), np.float32(np.inf))
    return tf.where(m <= 0, tf.zeros_like(m), tf.where(feasible, dist, inf))


def norm_ops(norm: "Norm | str", l1_sparsity: float = 0.01):
    """The TensorFlow operations of ``norm`` (a :class:`Norm` or its name)."""
    n = parse_norm(norm)
    if n.name == "linf":
        return LinfOps()
    if n.name == "l2":
        return L2Ops()
    return L1Ops(sparsity=l1_sparsity)


def max_distance(norm: "Norm | str", dim: int, bounds: tuple[float, float]) -> float:
    """The largest distance two points of the box can have, in ``norm``."""
    n = parse_norm(norm)
    width = float(bounds[1]) - float(bounds[0])
    if n.name == "linf":
        return width
    if n.name == "l2":
        return width * math.sqrt(dim)
    return width * dim
