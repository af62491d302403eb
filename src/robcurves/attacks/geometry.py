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

    def random_in_ball(self, shape, eps, seed):
        z = tf.random.stateless_normal(shape, seed)
        r = tf.random.stateless_uniform(shape[:1], seed + 1, 0.0, 1.0)
        return z / (_col(self.norm(z)) + _TINY) * _col(eps * r)


class L1Ops:
    """l1 geometry. Steps are sparse: the ``sparsity`` fraction of coordinates with the
    largest gradient among those the box lets move (as in l1-APGD / SLIDE)."""

    name = "l1"

    def __init__(self, sparsity: float = 0.01, projection_iters: int = 30):
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
        for _ in range(self.projection_iters):
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

    def random_in_ball(self, shape, eps, seed):
        # Laplace direction, radius uniform: a spread of sparse and dense starts.
        u = tf.random.stateless_uniform(shape, seed, -0.5 + 1e-6, 0.5 - 1e-6)
        z = -tf.sign(u) * tf.math.log(1.0 - 2.0 * tf.abs(u))
        r = tf.random.stateless_uniform(shape[:1], seed + 1, 0.0, 1.0)
        return z / (_col(self.norm(z)) + _TINY) * _col(eps * r)


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
