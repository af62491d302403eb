"""PGD inside a batched bisection over eps: a fixed-budget attack turned minimal-norm.

For every point of the batch the search keeps a bracket ``lo < d* <= hi`` on the
minimal distance in the attack's norm: ``hi`` is the norm of the best verified-by-PGD
adversarial found so far, ``lo`` the largest eps at which PGD failed. With
``targets = k`` it runs one bisection per each of the k classes whose boundary is
closest to first order (see :func:`robcurves.attacks.base.first_order_targets`), with
the targeted margin; ``targets = 0`` uses the untargeted margin. It starts at the
first-order distance estimate, doubles eps until PGD succeeds (up to the box diameter; a point that survives the whole box is
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
        # 0: untargeted margin loss; k >= 1: one bisection per each of the k classes
        # whose boundary is closest to first order (exact for affine models).
        "targets": 1,
    }

    def _build(self, logits_fn, dim):
        opt = self.options
        ops = norm_ops(self.norm, l1_sparsity=opt["l1_sparsity"])
        steps = max(1, int(opt["steps"]))
        lo_b, hi_b = self._bounds
        step_size = float(opt["step_size"])
        n_targets = int(opt["targets"])
        eps_max = np.float32(max_distance(self.norm, dim, self._bounds))

        estimates = self.build_estimates(logits_fn, dim, ops, n_targets)

        @tf.function(input_signature=[
            tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.bool),
        ])
        def pgd(x, y, target, eps, delta0, active):
            """PGD at per-row radius eps from delta0; returns (delta, found, nonfinite)."""
            lo = lo_b - x
            hi = hi_b - x
            delta = ops.project(delta0, eps, lo, hi)
            found = tf.zeros_like(active)
            best = delta
            bad = tf.zeros_like(active)
            still = active
            for t in tf.range(steps + 1):
                m, g, finite = self.margin_and_grad(logits_fn, x + delta, y, target)
                bad = bad | (~finite & still)
                adv = (m < 0.0) & finite & still
                best = tf.where(adv[:, None], delta, best)
                found = found | adv
                still = still & ~adv & finite
                if tf.logical_or(tf.logical_not(tf.reduce_any(still)), t == steps):
                    break
                tf_t = tf.cast(t, tf.float32)
                frac = step_size * (0.05 + 0.95 * 0.5 * (1.0 + tf.cos(math.pi * tf_t / steps)))
                step = ops.descent(g, delta, lo, hi) * (frac * eps)[:, None]
                new = ops.project(delta + step, eps, lo, hi)
                delta = tf.where(still[:, None], new, delta)
            return best, found, bad

        norm_np = self.norm
        n_bisect = int(opt["bisection_steps"])
        n_bracket = int(opt["max_bracket_steps"])
        restarts = max(1, int(opt["restarts"]))

        def search(x, y, seed):
            n = int(x.shape[0])
            xn = x.numpy()
            targets, est, bad0 = (v.numpy() for v in estimates(x, y))
            nonfinite = bad0.copy()
            hi = np.full(n, np.inf, np.float32)  # norm of the best adversarial so far
            best = np.zeros_like(xn)  # its perturbation
            seed_base = [int(v) for v in seed.numpy()]
            calls = [0]

            def attempt(eps, active, target):
                """PGD at eps on the active rows; updates best/hi; returns success mask."""
                nonlocal best, hi, nonfinite
                eps_t = tf.constant(eps.astype(np.float32))
                have = np.isfinite(hi)
                # Warm start: the best adversarial so far, scaled into the new ball.
                scale = np.where(have, eps / np.where(have, hi, 1.0), 0.0)
                start = best * np.minimum(scale, 1.0)[:, None]
                succeeded = np.zeros(n, bool)
                for r in range(restarts):
                    if r == 0:
                        d0 = tf.constant(start.astype(np.float32))
                    else:
                        s = tf.constant([seed_base[0], (seed_base[1] + 7919 * calls[0]) % (2**31 - 1)], tf.int32)
                        d0 = ops.random_in_ball((n, dim), eps_t, s)
                    calls[0] += 1
                    d, found, bad = pgd(x, y, tf.constant(target), eps_t, d0, tf.constant(active & ~succeeded))
                    d, found, bad = d.numpy(), found.numpy(), bad.numpy()
                    nonfinite |= bad
                    dist = norm_np.norm_of(d)
                    better = found & (dist < hi)
                    best = np.where(better[:, None], d, best)
                    hi = np.where(better, dist, hi)
                    succeeded |= found
                return succeeded

            for j in range(targets.shape[1]):
                target = targets[:, j].astype(np.int32)
                e0 = est[:, j]
                lo = np.zeros(n, np.float32)
                # A later target is tried only where it promises (to first order) a
                # shorter perturbation than the best one already found.
                cand = ~nonfinite & (e0 < hi)
                exhausted = np.zeros(n, bool)
                for _ in range(n_bracket):
                    todo = cand & ~np.isfinite(hi) & ~exhausted
                    if not todo.any():
                        break
                    eps_try = np.where(lo > 0, np.minimum(2.0 * lo, eps_max), e0).astype(np.float32)
                    ok = attempt(eps_try, todo, target)
                    failed = todo & ~ok
                    lo = np.where(failed, eps_try, lo)
                    exhausted |= failed & (eps_try >= eps_max)
                for _ in range(n_bisect):
                    todo = cand & np.isfinite(hi) & ((hi - lo) > 1e-4 * hi)
                    if not todo.any():
                        break
                    mid = (0.5 * (lo + np.where(np.isfinite(hi), hi, 0.0))).astype(np.float32)
                    ok = attempt(mid, todo, target)
                    lo = np.where(todo & ~ok, mid, lo)
            x_adv = np.clip(xn + best, lo_b, hi_b).astype(np.float32)
            return x_adv, nonfinite

        return search
