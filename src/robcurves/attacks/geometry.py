"""The norm as ``keras.ops`` operations on flattened batches of perturbations (any backend).

Every attack works on perturbations ``delta`` of shape ``(B, D)`` (the input flattened)
with per-row box limits ``lo = bounds[0] - x <= 0 <= hi = bounds[1] - x``. The norm
enters the attacks only through one of these small objects:

- ``norm(delta)`` and ``dual_norm(grad)``, both per row;
- ``descent(grad, delta, lo, hi)``: a direction of unit p-norm that decreases a loss
  with gradient ``grad`` fastest (to first order) among the directions the box allows;
- ``project(delta, eps, lo, hi)``: a point of ``{||delta||_p <= eps} ∩ [lo, hi]`` (the
  exact Euclidean projection for linf and l1, ball-then-box for l2, which is feasible);
- ``random_in_ball(shape, eps, seed)``: a random start inside the eps-ball (stateless);
- what the engine and the masking check choose per norm: ``soft_threshold_refine`` (the
  line search first soft-thresholds, l1) and ``refine_passes`` (bisection passes it costs
  per step), ``square_start`` / ``square_proposal`` (the random search's start and window
  proposals, in the style of Square Attack).
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from robcurves.backend import random_normal, random_uniform
from robcurves.norms import Norm, parse_norm

_TINY = 1e-12


def _col(v):
    return ops.expand_dims(v, 1)


def _clip(v, lo, hi):
    """Element-wise clip into [lo, hi] with tensor limits (broadcasting)."""
    return ops.minimum(ops.maximum(v, lo), hi)


def _inf_like(v):
    return ops.full_like(v, np.float32(np.inf))


def _gather(v, idx):
    """``v[b, idx[b, j]]`` per row (``tf.gather(..., batch_dims=1)``)."""
    return ops.take_along_axis(v, idx, axis=1)


def _other(seed):
    """A second seed pair derived from ``seed`` (for a second, independent stream)."""
    return ops.add(ops.convert_to_tensor(seed, "int32"), ops.convert_to_tensor(np.array([0, 1], np.int32)))


def _cumsum_exclusive(v):
    return ops.cumsum(v, axis=1) - v


def _cumsum_reverse(v):
    return ops.flip(ops.cumsum(ops.flip(v, axis=1), axis=1), axis=1)


class _MassWindowSquare:
    """The random search's moves where the budget is a mass to share (l2, l1): start in a
    random direction of norm eps; a window of ``k`` coordinates gets ``eps / share(k)`` each
    (added to ``delta``; the caller projects back into the ball)."""

    def square_start(self, stripe_signs, n, h, w, c, eps, seeds):
        z = random_normal((n, h * w * c), seeds)
        return z / (_col(self.norm(z)) + _TINY) * _col(eps)

    def square_proposal(self, delta, inside, signs, eps, k):
        return ops.where(inside, delta + signs * (_col(eps) / self._window_share(k)), delta)


class LinfOps:
    name = "linf"
    # The engine's line search: the scale search alone (one bisection pass per step).
    soft_threshold_refine = False
    refine_passes = 1

    def square_start(self, stripe_signs, n, h, w, c, eps, seeds):
        """Square Attack's linf start: vertical stripes of +-eps (``stripe_signs`` (n, 1, w, c))."""
        return ops.reshape(ops.broadcast_to(stripe_signs, (n, h, w, c)), (n, h * w * c)) * _col(eps)

    def square_proposal(self, delta, inside, signs, eps, k):
        """The window's coordinates jump to +-eps (the ball's vertices)."""
        return ops.where(inside, signs * _col(eps), delta)

    def norm(self, d):
        return ops.max(ops.abs(d), axis=1)

    def dual_norm(self, g):
        return ops.sum(ops.abs(g), axis=1)

    def descent(self, g, d, lo, hi):
        return -ops.sign(g)

    def project(self, d, eps, lo, hi):
        e = _col(eps)
        return _clip(d, ops.maximum(-e, lo), ops.minimum(e, hi))

    def random_in_ball(self, shape, eps, seed):
        u = random_uniform(shape, seed, -1.0, 1.0)
        return u * _col(eps)

    def linear_distance(self, a, m, lo, hi):
        # delta(t) = clip(t sign(a), lo, hi): coordinate i saturates at t = room_i.
        room = ops.where(a > 0, hi, -lo)
        absa = ops.abs(a)
        beta = ops.where(absa > 0, room, _inf_like(a))
        t, _, feasible = _saturation_root(beta, absa * room, absa, m)
        return _finish(t, feasible, m)

    def linear_step(self, a, m, lo, hi):
        room = ops.where(a > 0, hi, -lo)
        absa = ops.abs(a)
        beta = ops.where(absa > 0, room, _inf_like(a))
        t, _, feasible = _saturation_root(beta, absa * room, absa, m)
        t = ops.where(feasible, t, ops.max(hi - lo, axis=1))  # unreachable: go as far as the box allows
        return ops.where(_col(m > 0), _clip(_col(t) * ops.sign(a), lo, hi), ops.zeros_like(a))


class L2Ops(_MassWindowSquare):
    name = "l2"
    soft_threshold_refine = False
    refine_passes = 1

    def _window_share(self, k):
        return ops.sqrt(k)  # eps / sqrt(k) in each of k coordinates: l2 mass eps

    def norm(self, d):
        return ops.sqrt(ops.sum(d * d, axis=1))

    def dual_norm(self, g):
        return ops.sqrt(ops.sum(g * g, axis=1))

    def descent(self, g, d, lo, hi):
        # Only coordinates that can move in the descent direction count.
        blocked = ((g > 0) & (d <= lo)) | ((g < 0) & (d >= hi))
        g = ops.where(blocked, ops.zeros_like(g), g)
        return -g / (_col(self.dual_norm(g)) + _TINY)

    def project(self, d, eps, lo, hi):
        n = self.norm(d)
        scale = ops.minimum(1.0, eps / (n + _TINY))
        # Clipping towards the box after scaling only shrinks |delta_i| (0 is inside
        # the box), so the result stays inside the ball.
        return _clip(d * _col(scale), lo, hi)

    @staticmethod
    def _kkt(a, m, lo, hi):
        """KKT of min ||delta||_2 s.t. a . delta >= m, delta in the box:
        delta = clip(lam a, lo, hi); coordinate i saturates at lam = room_i / |a_i|."""
        room = ops.where(a > 0, hi, -lo)
        absa = ops.abs(a)
        beta = ops.where(absa > 0, room / ops.where(absa > 0, absa, ops.ones_like(absa)),
                        _inf_like(a))
        return (room, *_saturation_root(beta, absa * room, a * a, m))

    def linear_distance(self, a, m, lo, hi):
        room, lam, saturated, feasible = self._kkt(a, m, lo, hi)
        sq = ops.sum(ops.where(saturated, room * room, _col(lam * lam) * a * a), axis=1)
        return _finish(ops.sqrt(sq), feasible, m)

    def linear_step(self, a, m, lo, hi):
        room, lam, saturated, feasible = self._kkt(a, m, lo, hi)
        step = ops.where(saturated, ops.sign(a) * room, _col(lam) * a)
        full = ops.sign(a) * room  # unreachable: go as far as the box allows
        return ops.where(_col(m > 0), ops.where(_col(feasible), step, full), ops.zeros_like(a))

    def random_in_ball(self, shape, eps, seed):
        z = random_normal(shape, seed)
        r = random_uniform(shape[:1], _other(seed))
        return z / (_col(self.norm(z)) + _TINY) * _col(eps * r)


class L1Ops(_MassWindowSquare):
    """l1 geometry. Steps are sparse: the ``sparsity`` fraction of coordinates with the
    largest gradient among those the box lets move (as in l1-APGD / SLIDE)."""

    name = "l1"
    # The line search first soft-thresholds (drops the small coordinates), then scales:
    # two bisection passes per step.
    soft_threshold_refine = True
    refine_passes = 2

    def _window_share(self, k):
        return k  # eps / k in each of k coordinates: l1 mass eps

    def __init__(self, sparsity: float = 0.01, projection_iters: int = 24, box_aware: bool = True):
        self.sparsity = float(sparsity)
        self.projection_iters = int(projection_iters)
        # False: foolbox's FMN geometry (dense steps over every coordinate; the l1 ball's
        # projection, then clipping into the box, which can leave the iterate inside the ball).
        self.box_aware = bool(box_aware)

    def norm(self, d):
        return ops.sum(ops.abs(d), axis=1)

    def dual_norm(self, g):
        return ops.max(ops.abs(g), axis=1)

    def descent(self, g, d, lo, hi):
        if self.sparsity <= 0:
            # Dense: the l2-steepest direction over the coordinates the box lets move;
            # the l1 projection after the step makes it sparse (soft thresholding).
            if self.box_aware:
                blocked = ((g > 0) & (d <= lo)) | ((g < 0) & (d >= hi))
                g = ops.where(blocked, ops.zeros_like(g), g)
            return -g / (_col(ops.sqrt(ops.sum(g * g, axis=1))) + _TINY)
        dim = g.shape[1]
        k = max(1, int(math.ceil(self.sparsity * dim))) if dim is not None else 1
        room = ops.where(g < 0, hi - d, d - lo)
        score = ops.where(room > 1e-7, ops.abs(g), ops.zeros_like(g))
        kth = ops.top_k(score, k=k)[0][:, -1]
        mask = (score >= _col(kth)) & (score > 0)
        mask = ops.cast(mask, g.dtype)
        count = ops.sum(mask, axis=1, keepdims=True)
        return -ops.sign(g) * mask / ops.maximum(count, 1.0)

    def project(self, d, eps, lo, hi):
        # Exact projection onto {||delta||_1 <= eps} ∩ [lo, hi]: the problem separates
        # into |delta_i| = clip(|d_i| - lam, 0, room_i) with lam >= 0 the smallest value
        # that meets the budget; lam is found by bisection (monotone in lam).
        a = ops.abs(d)
        s = ops.sign(d)
        room = ops.where(d >= 0, hi, -lo) if self.box_aware else ops.full_like(d, np.float32(3e38))
        boxed = ops.minimum(a, room)
        need = ops.sum(boxed, axis=1) > eps

        def bisect(_, lams):  # a compiled loop: keeps tracing cheap
            lam_lo, lam_hi = lams
            mid = 0.5 * (lam_lo + lam_hi)
            f = ops.sum(_clip(a - _col(mid), 0.0, room), axis=1)
            over = f > eps
            return ops.where(over, mid, lam_lo), ops.where(over, lam_hi, mid)

        _, lam_hi = ops.fori_loop(0, self.projection_iters, bisect, (ops.zeros_like(eps), ops.max(a, axis=1)))
        shrunk = _clip(a - _col(lam_hi), 0.0, room)
        out = ops.where(_col(need), shrunk, boxed) * s
        # Guard the last float32 ulp: never return a point outside the ball.
        n = self.norm(out)
        fix = ops.minimum(1.0, eps / (n + _TINY))
        out = out * _col(ops.where(n > eps, fix, ops.ones_like(fix)))
        return out if self.box_aware else _clip(out, lo, hi)

    @staticmethod
    def _knapsack(a, m, lo, hi):
        """Fractional knapsack behind the l1 linearised problems.

        Spend the budget on the coordinates with the largest |a_i|, each up to its room
        in the direction sign(a_i), until the gain a . step reaches m. Returns the sort
        order, the per-coordinate amounts in sorted order (zero past the crossing) and
        whether the box allows reaching m at all.
        """
        room = ops.where(a > 0, hi, -lo)
        absa = ops.abs(a)
        order = ops.argsort(-absa, axis=1)
        a_s = _gather(absa, order)
        r_s = _gather(room, order)
        gain = a_s * r_s
        cg = ops.cumsum(gain, axis=1)
        prev = cg - gain
        mm = _col(m)
        amount = ops.where(cg < mm, r_s, ops.zeros_like(r_s))
        first = (cg >= mm) & (prev < mm) & (a_s > 0)
        amount = amount + ops.where(first, (mm - prev) / ops.where(a_s > 0, a_s, ops.ones_like(a_s)), ops.zeros_like(a_s))
        feasible = cg[:, -1] >= m
        return order, a_s, r_s, amount, feasible

    def linear_distance(self, a, m, lo, hi):
        _, _, _, amount, feasible = self._knapsack(a, m, lo, hi)
        dist = ops.sum(amount, axis=1)
        return ops.where(m <= 0, ops.zeros_like(m), ops.where(feasible, dist, _inf_like(m)))

    def linear_step(self, a, m, lo, hi):
        order, a_s, r_s, amount, feasible = self._knapsack(a, m, lo, hi)
        amount = ops.where(_col(feasible), amount, r_s * ops.cast(a_s > 0, a.dtype))
        back = ops.argsort(order, axis=1)
        step = ops.sign(a) * _gather(amount, back)
        return ops.where(_col(m > 0), step, ops.zeros_like(a))

    def random_in_ball(self, shape, eps, seed):
        # Laplace direction, radius uniform: a spread of sparse and dense starts.
        u = random_uniform(shape, seed, -0.5 + 1e-6, 0.5 - 1e-6)
        z = -ops.sign(u) * ops.log(1.0 - 2.0 * ops.abs(u))
        r = random_uniform(shape[:1], _other(seed))
        return z / (_col(self.norm(z)) + _TINY) * _col(eps * r)


def _saturation_root(beta, sat, slope, m):
    """Solve ``g(lam) = m`` for ``g(lam) = sum_i [lam >= beta_i] sat_i + lam [lam < beta_i] slope_i``.

    This is ``a . delta(lam)`` when every coordinate grows linearly (``slope_i``) until
    it saturates at ``beta_i`` (contributing ``sat_i = beta_i slope_i``). ``g`` is
    piecewise linear and non-decreasing; sorting the breakpoints gives the root exactly.
    Returns ``(lam, saturated (B, D) bool, feasible (B,) bool)``.
    """
    order = ops.argsort(beta, axis=1)
    b_s = _gather(beta, order)
    s_s = _gather(sat, order)
    w_s = _gather(slope, order)
    sat_before = _cumsum_exclusive(s_s)
    slope_from = _cumsum_reverse(w_s)
    g_at = sat_before + ops.where(ops.isfinite(b_s), b_s, ops.zeros_like(b_s)) * slope_from
    g_at = ops.where(ops.isfinite(b_s), g_at, _inf_like(g_at))
    mm = _col(m)
    # k: the first breakpoint at which g reaches m; coordinates before it are saturated.
    reached = g_at >= mm
    k = ops.cast(ops.argmax(ops.cast(reached, "int32"), axis=1), "int32")
    feasible = ops.sum(sat, axis=1) >= m
    s_k = _gather(sat_before, k[:, None])[:, 0]
    w_k = _gather(slope_from, k[:, None])[:, 0]
    lam = (m - s_k) / ops.where(w_k > 0, w_k, ops.ones_like(w_k))
    lam = ops.where(w_k > 0, lam, ops.zeros_like(lam))
    lam = ops.maximum(lam, 0.0)
    saturated = beta <= _col(lam)
    return lam, saturated, feasible


def _finish(dist, feasible, m):
    inf = _inf_like(m)
    return ops.where(m <= 0, ops.zeros_like(m), ops.where(feasible, dist, inf))


def norm_ops(norm: "Norm | str", l1_sparsity: float = 0.01, box_aware: bool = True):
    """The ``keras.ops`` operations of ``norm`` (a :class:`Norm` or its name); for l1,
    ``l1_sparsity`` and ``box_aware`` set the step and the projection (:class:`L1Ops`)."""
    n = parse_norm(norm)
    if n.name == "linf":
        return LinfOps()
    if n.name == "l2":
        return L2Ops()
    return L1Ops(sparsity=l1_sparsity, box_aware=box_aware)


def max_distance(norm: "Norm | str", dim: int, bounds: tuple[float, float]) -> float:
    """The largest distance two points of the box can have, in ``norm``."""
    return parse_norm(norm).diameter(dim, bounds)
