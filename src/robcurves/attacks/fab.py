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
from keras import ops

from robcurves import backend as B
from robcurves.attacks.base import MinimalNormAttack, Problem, best_of_target_rows, pad_rows, register
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

    def _build(self, problem: Problem):
        opt = self.options
        ops_norm = norm_ops(self.norm)
        steps = max(1, int(opt["steps"]))
        lo_b, hi_b = problem.bounds
        alpha_max, eta, beta = float(opt["alpha_max"]), float(opt["overshoot"]), float(opt["backstep"])
        n_targets = max(1, int(opt["targets"]))
        estimates = self.build_estimates(problem, ops_norm, n_targets)
        est_cost = self.estimate_cost(n_targets)

        def fab(x0, y, target):
            lo0 = lo_b - x0
            hi0 = hi_b - x0

            def body(_, st):
                xk, best, best_norm, bad = st
                m, g, finite = problem.margin_and_grad(xk, y, target)
                bad = bad | ~finite
                delta = xk - x0
                n = ops_norm.norm(delta)
                best, best_norm, adv = self.keep_best(m, finite, n, delta, best, best_norm)
                # Linearised: m(x) ~ m + g . (x - x_k); crossing needs (-g) . step >= m.
                m_pos = ops.where(finite, m, ops.zeros_like(m))
                step_k = ops_norm.linear_step(-g, m_pos, lo0 - delta, hi0 - delta)
                m0 = m_pos - ops.sum(g * delta, axis=1)  # the same boundary, seen from x_0
                step_0 = ops_norm.linear_step(-g, m0, lo0, hi0)
                nk, n0 = ops_norm.norm(step_k), ops_norm.norm(step_0)
                alpha = ops.expand_dims(ops.minimum(nk / ops.maximum(nk + n0, 1e-12), alpha_max), 1)
                x_new = (1.0 - alpha) * (xk + eta * step_k) + alpha * (x0 + eta * step_0)
                x_new = ops.where(ops.expand_dims(adv, 1), x0 + beta * (xk - x0), x_new)
                x_new = ops.clip(x_new, lo_b, hi_b)
                xk = ops.where(ops.expand_dims(finite, 1), x_new, xk)
                return xk, best, best_norm, bad

            init = (x0, ops.zeros_like(x0), ops.full_like(ops.cast(y, "float32"), np.inf),
                    ops.zeros_like(y) > 0)
            # steps + 1 evaluations: the last iterate is looked at too.
            _, best, best_norm, bad = ops.fori_loop(0, steps + 1, body, init)
            return best, best_norm, bad

        fab_fn = problem.compiled(("fab", self.norm.name, tuple(sorted(opt.items()))), lambda: fab)

        def search(x, y, seeds, incumbent):
            n = len(x)
            t, _, bad0 = estimates(x, y)
            kk = t.shape[1]
            point = np.tile(np.arange(n), kk)
            r = len(point)
            rows = problem.rows(r)
            args = pad_rows([x[point], y[point], t.T.reshape(-1).astype(np.int32)], rows)
            d, nrm, b = (B.to_numpy(v)[:r] for v in fab_fn(B.to_tensor(args[0]), B.to_tensor(args[1], "int32"),
                                                             B.to_tensor(args[2], "int32")))
            out = best_of_target_rows(x, d, nrm, b, bad0, (lo_b, hi_b))
            out.gradients = np.full(n, est_cost + kk * (steps + 1), np.int64)
            return out

        return search
