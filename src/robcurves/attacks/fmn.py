"""Fast minimum-norm attack in the style of FMN (Pintor et al., NeurIPS 2021).

One gradient step per iteration, with an adaptive radius eps per point:

- while no adversarial example was found, eps is the first-order distance to the
  boundary (``||delta|| + margin / ||grad||_q``), overshot by a factor (1 + gamma) so
  that an iterate sitting on a flat boundary still crosses it;
- once one was found, eps shrinks by a factor (1 - gamma) at adversarial iterates
  (never above the best norm found) and grows by (1 + gamma) at the others;
- the step moves ``alpha * eps`` along the steepest descent direction of the margin in
  the attack's norm, then projects onto the eps-ball intersected with the box.

alpha and gamma follow a cosine schedule from their initial to their final values.
The best (smallest-norm) adversarial iterate is kept. ``targets >= 1`` runs the search
once per each of the classes closest to first order (see
:func:`robcurves.attacks.base.first_order_targets`), ``targets = 0`` once with the
untargeted margin; the smallest result wins. The runs for all targets share one batch.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from robcurves.attacks.base import MinimalNormAttack, register
from robcurves.attacks.geometry import norm_ops


@register
class FMN(MinimalNormAttack):
    name = "fmn"
    defaults = {
        "steps": 100,
        "alpha_init": 1.0,  # first step length, as a fraction of eps
        "alpha_final": 0.01,
        "gamma_init": 0.05,  # first relative change of eps
        "gamma_final": 0.001,
        "targets": 1,  # 0: untargeted; k: one run per each of the k closest classes
        "l1_sparsity": 0.01,  # l1 only: fraction of coordinates moved per step
    }

    def _build(self, logits_fn, dim):
        opt = self.options
        ops = norm_ops(self.norm, l1_sparsity=opt["l1_sparsity"])
        steps = max(1, int(opt["steps"]))
        lo_b, hi_b = self._bounds
        a0, a1 = float(opt["alpha_init"]), float(opt["alpha_final"])
        g0, g1 = float(opt["gamma_init"]), float(opt["gamma_final"])
        estimates = self.build_estimates(logits_fn, dim, ops, int(opt["targets"]))

        @tf.function(input_signature=[
            tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32),
        ])
        def fmn(x, y, target, eps0):
            lo = lo_b - x
            hi = hi_b - x
            delta = tf.zeros_like(x)
            eps = eps0
            best = delta
            inf = tf.fill(tf.shape(eps0), np.float32(np.inf))
            best_norm = inf
            bad = tf.zeros(tf.shape(eps0), tf.bool)
            for k in tf.range(steps + 1):
                m, g, finite = self.margin_and_grad(logits_fn, x + delta, y, target)
                bad = bad | ~finite
                n = ops.norm(delta)
                best, best_norm, adv = self.keep_best(m, finite, n, delta, best, best_norm)
                if k == steps:
                    break
                cosf = 0.5 * (1.0 + tf.cos(math.pi * tf.cast(k, tf.float32) / steps))
                alpha = a1 + (a0 - a1) * cosf
                gamma = g1 + (g0 - g1) * cosf
                extrapolated = n + tf.maximum(m, 0.0) / (ops.dual_norm(g) + 1e-12)
                found_any = tf.math.is_finite(best_norm)
                eps_new = tf.where(
                    adv,
                    tf.minimum(eps * (1.0 - gamma), best_norm),
                    tf.where(found_any, eps * (1.0 + gamma), extrapolated * (1.0 + gamma)),
                )
                eps_new = tf.where(k == 0, eps, eps_new)
                eps = tf.where(finite, eps_new, eps)
                step = ops.descent(g, delta, lo, hi) * (alpha * eps)[:, None]
                new = ops.project(delta + step, eps, lo, hi)
                delta = tf.where(finite[:, None], new, delta)
            return best, best_norm, bad

        def search(x, y, seed):
            targets, eps0, bad0 = estimates(x, y)
            # All targets in one batch (target-major): one long run instead of K short
            # ones keeps the device busy; a batch too large for memory is split by the
            # engine.
            k = int(targets.shape[1])
            n = tf.shape(x)[0]
            d, nrm, b = fmn(tf.tile(x, [k, 1]), tf.tile(y, [k]),
                            tf.reshape(tf.transpose(targets), [-1]), tf.reshape(tf.transpose(eps0), [-1]))
            nrm = tf.reshape(nrm, (k, n))
            pick = tf.argmin(nrm, axis=0, output_type=tf.int32)  # the target with the smallest result
            rows = pick * n + tf.range(n)
            best = tf.gather(d, rows)
            found = tf.math.is_finite(tf.reduce_min(nrm, axis=0))
            best = tf.where(found[:, None], best, tf.zeros_like(best))
            bad = bad0 | tf.reduce_any(tf.reshape(b, (k, n)), axis=0)
            x_adv = tf.clip_by_value(x + best, lo_b, hi_b)
            return x_adv.numpy(), bad.numpy()

        return search
