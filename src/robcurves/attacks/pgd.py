"""PGD inside a batched bisection over eps: a fixed-budget attack turned minimal-norm.

For every point of the batch the search keeps a bracket ``lo < d* <= hi`` on the
minimal distance in the attack's norm: ``hi`` is the norm of the best verified-by-PGD
adversarial found so far, ``lo`` the largest eps at which PGD failed. It starts at a
first-order estimate of the distance (margin / dual norm of the gradient), doubles eps
until PGD succeeds (up to the box diameter; a point that survives the whole box is
reported as not found), then bisects. Each PGD run is warm-started from the best
adversarial scaled into the new ball, and stops early for points that flipped.
All points of the batch move together: the Python loop is over bisection steps only.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from robcurves.attacks.base import MinimalNormAttack, register
from robcurves.attacks.geometry import max_distance, norm_ops


@register
class PGDBisection(MinimalNormAttack):
    name = "pgd_bisection"
    defaults = {
        "steps": 20,  # PGD steps per eps
        "bisection_steps": 10,  # bisections after the bracket is found
        "max_bracket_steps": 20,  # eps doublings at most while looking for an upper end
        "restarts": 1,  # PGD runs per eps; runs after the first start at random points
        "step_size": 0.25,  # first step, as a fraction of eps (cosine-decayed to 5%)
        "l1_sparsity": 0.01,  # l1 only: fraction of coordinates moved per step
    }

    def _build(self, logits_fn, dim):
        opt = self.options
        ops = norm_ops(self.norm, l1_sparsity=opt["l1_sparsity"])
        steps = int(opt["steps"])
        lo_b, hi_b = self._bounds
        step_size = float(opt["step_size"])

        spec = [
            tf.TensorSpec([None, dim], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([None, dim], tf.float32),
        ]

        @tf.function(input_signature=spec)
        def first_order_estimate(x, y, eps_cap, _unused):
            m, g, finite = self.margin_and_grad(logits_fn, x, y)
            est = tf.maximum(m, 0.0) / (ops.dual_norm(g) + 1e-12)
            est = tf.where(tf.math.is_finite(est) & finite, est, eps_cap)
            return tf.clip_by_value(est, 1e-6 * eps_cap, eps_cap), ~finite

        @tf.function(input_signature=spec + [tf.TensorSpec([None, dim], tf.float32)])
        def pgd(x, y, eps, delta0, active):
            """PGD at per-row radius eps from delta0; returns (delta, found, nonfinite)."""
            lo = lo_b - x
            hi = hi_b - x
            delta = ops.project(delta0, eps, lo, hi)
            found = tf.zeros_like(eps, dtype=tf.bool)
            best = delta
            bad = tf.zeros_like(found)
            still = active[:, 0] > 0
            for t in tf.range(steps + 1):
                m, g, finite = self.margin_and_grad(logits_fn, x + delta, y)
                bad = bad | (~finite & still)
                adv = (m < 0.0) & finite & still & ~found
                best = tf.where(adv[:, None], delta, best)
                found = found | adv
                still = still & ~found & finite
                if tf.logical_or(tf.logical_not(tf.reduce_any(still)), t == steps):
                    break
                tf_t = tf.cast(t, tf.float32)
                frac = step_size * (0.05 + 0.95 * 0.5 * (1.0 + tf.cos(math.pi * tf_t / steps)))
                step = ops.descent(g, delta, lo, hi) * (frac * eps)[:, None]
                new = ops.project(delta + step, eps, lo, hi)
                delta = tf.where(still[:, None], new, delta)
            return best, found, bad

        norm_np = self.norm
        eps_max = max_distance(self.norm, dim, self._bounds)
        n_bisect = int(opt["bisection_steps"])
        n_bracket = int(opt["max_bracket_steps"])
        restarts = max(1, int(opt["restarts"]))

        def search(x, y, seed):
            n = int(x.shape[0])
            xn = x.numpy()
            cap = tf.fill([n], np.float32(eps_max))
            eps0, bad0 = first_order_estimate(x, y, cap, x)
            eps0 = eps0.numpy()
            nonfinite = bad0.numpy().copy()
            lo = np.zeros(n, np.float32)
            hi = np.full(n, np.inf, np.float32)
            best = np.zeros_like(xn)  # best delta
            exhausted = np.zeros(n, bool)
            eps = eps0.copy()
            ones = np.ones((n, 1), np.float32)

            def attempt(eps, active_mask, it):
                nonlocal best, lo, hi, nonfinite
                eps_t = tf.constant(eps.astype(np.float32))
                # Warm start: the best adversarial so far, scaled into the new ball.
                have = np.isfinite(hi)
                scale = np.where(have, eps / np.where(have, np.maximum(hi, 1e-30), 1.0), 0.0)
                start = best * np.minimum(scale, 1.0)[:, None]
                succeeded = np.zeros(n, bool)
                for r in range(restarts):
                    if r == 0:
                        d0 = tf.constant(start.astype(np.float32))
                    else:
                        s = tf.constant(np.array([seed[0].numpy(), (int(seed[1].numpy()) + 7919 * (it * restarts + r)) % (2**31 - 1)], np.int32))
                        d0 = ops.random_in_ball((n, dim), eps_t, s)
                    act_r = tf.constant((active_mask & ~succeeded).astype(np.float32)[:, None] * ones)
                    d, found, bad = pgd(x, y, eps_t, d0, act_r)
                    d, found, bad = d.numpy(), found.numpy(), bad.numpy()
                    nonfinite |= bad
                    dist = norm_np.norm_of(d)
                    better = found & (dist < hi)
                    best = np.where(better[:, None], d, best)
                    hi = np.where(better, dist, hi)
                    succeeded |= found
                failed = active_mask & ~succeeded
                lo = np.where(failed, np.maximum(lo, eps), lo)
                return succeeded, failed

            it = 0
            # Bracketing: grow eps until PGD succeeds or the whole box was tried.
            for _ in range(n_bracket):
                todo = ~np.isfinite(hi) & ~exhausted & ~nonfinite
                if not todo.any():
                    break
                eps_try = np.where(lo > 0, np.minimum(2.0 * lo, eps_max), eps)
                _, failed = attempt(eps_try.astype(np.float32), todo, it)
                exhausted |= failed & (eps_try >= eps_max)
                it += 1
            # Bisection on the points that have a bracket.
            for _ in range(n_bisect):
                todo = np.isfinite(hi) & ((hi - lo) > 1e-4 * hi)
                if not todo.any():
                    break
                mid = (0.5 * (lo + np.where(np.isfinite(hi), hi, 0.0))).astype(np.float32)
                attempt(mid, todo, it)
                it += 1
            x_adv = np.clip(xn + best, lo_b, hi_b).astype(np.float32)
            return x_adv, nonfinite

        return search
