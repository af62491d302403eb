"""Boundary projection in the style of FAB (Croce & Hein, ICML 2020).

A geometric family, unlike the gradient-step searches: at every iterate x_k the margin
against the target class is linearised, and the *exact* shortest perturbation inside
the box that crosses the linearised boundary is computed in the attack's norm
(:meth:`linear_step` of the norm; a closed form for linf, l2 and l1). Two such
projections are blended: the one of x_k and the one of the original point x_0, with
weight alpha on the latter (alpha grows with how far x_k's projection is, capped at
``alpha_max``), both extrapolated by ``overshoot``. After an adversarial iterate the
search steps back towards x_0 (``x_0 + backstep (x_k - x_0)``) and continues, so it
walks along the boundary towards x_0. One run per target class (``targets`` closest to
first order); the smallest adversarial iterate wins.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from robcurves.attacks.base import MinimalNormAttack, register
from robcurves.attacks.geometry import norm_ops


@register
class FAB(MinimalNormAttack):
    name = "fab"
    defaults = {
        "steps": 20,
        "targets": 3,
        "alpha_max": 0.1,
        "overshoot": 1.05,
        "backstep": 0.9,
    }

    def _build(self, logits_fn, dim):
        opt = self.options
        ops = norm_ops(self.norm)
        steps = max(1, int(opt["steps"]))
        lo_b, hi_b = self._bounds
        alpha_max, eta, beta = float(opt["alpha_max"]), float(opt["overshoot"]), float(opt["backstep"])
        estimates = self.build_estimates(logits_fn, dim, ops, max(1, int(opt["targets"])))

        @tf.function(input_signature=[
            tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.int32),
        ])
        def fab(x0, y, target):
            lo0 = lo_b - x0
            hi0 = hi_b - x0
            xk = x0
            best = tf.zeros_like(x0)
            best_norm = tf.fill(tf.shape(y), np.float32(np.inf))
            bad = tf.zeros(tf.shape(y), tf.bool)
            for k in tf.range(steps + 1):
                m, g, finite = self.margin_and_grad(logits_fn, xk, y, target)
                bad = bad | ~finite
                delta = xk - x0
                n = ops.norm(delta)
                best, best_norm, adv = self.keep_best(m, finite, n, delta, best, best_norm)
                if k == steps:
                    break
                # Linearised: m(x) ~ m + g . (x - x_k); crossing needs (-g) . step >= m.
                m_pos = tf.where(finite, m, tf.zeros_like(m))
                step_k = ops.linear_step(-g, m_pos, lo0 - delta, hi0 - delta)
                m0 = m_pos - tf.reduce_sum(g * delta, axis=1)  # the same boundary, seen from x_0
                step_0 = ops.linear_step(-g, m0, lo0, hi0)
                nk, n0 = ops.norm(step_k), ops.norm(step_0)
                alpha = tf.minimum(nk / tf.maximum(nk + n0, 1e-12), alpha_max)[:, None]
                x_new = (1.0 - alpha) * (xk + eta * step_k) + alpha * (x0 + eta * step_0)
                x_new = tf.where(adv[:, None], x0 + beta * (xk - x0), x_new)
                x_new = tf.clip_by_value(x_new, lo_b, hi_b)
                xk = tf.where(finite[:, None], x_new, xk)
            return best, best_norm, bad

        def search(x, y, seed):
            targets, _, bad0 = estimates(x, y)
            best = tf.zeros_like(x)
            best_norm = tf.fill(tf.shape(y), np.float32(np.inf))
            bad = bad0
            for j in range(int(targets.shape[1])):
                d, nrm, b = fab(x, y, targets[:, j])
                better = nrm < best_norm
                best = tf.where(better[:, None], d, best)
                best_norm = tf.where(better, nrm, best_norm)
                bad = bad | b
            return tf.clip_by_value(x + best, lo_b, hi_b).numpy(), bad.numpy()

        return search
