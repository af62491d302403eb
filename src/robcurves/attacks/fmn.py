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

The budget goes where it matters. The steps run in compiled chunks of ``chunk`` steps;
between chunks, rows (one per point and target) leave the batch (the batch is compacted,
so the saving is real) when

- their best has not improved by more than a relative ``tol`` for ``patience`` steps
  (early stopping; ``patience = 0`` turns it off), or
- after ``prune_after`` steps, their best is more than ``prune_margin`` (relative) above
  the point's best so far, over its other targets and the earlier ensemble members
  (``incumbent``): a run that far behind has never caught up in the measurements
  (benchmarks/README.md). ``prune_after = 0`` turns it off.
"""

from __future__ import annotations

import math
import numpy as np
from keras import ops

from robcurves import backend as B
from robcurves.attacks.base import MinimalNormAttack, Problem, best_of_target_rows, pad_rows, register
from robcurves.attacks.geometry import max_distance, norm_ops


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
        "chunk": 10,  # steps per compiled call; rows leave the batch between calls
        "patience": 0,  # early stop after this many steps without improvement (0: off)
        "tol": 1e-3,  # relative improvement that counts
        "prune_after": 0,  # from this step on, drop rows far behind the point's best (0: off)
        "prune_margin": 0.1,  # "far behind": best > (1 + prune_margin) x the point's best
        "absolute_step": False,  # True: steps of alpha (input units), not alpha x eps (foolbox's FMN)
        "grow": 1.0,  # after a hit, eps grows by grow x gamma at iterates that are not adversarial
        "box_extrapolation": False,  # True: eps before the first hit from the box-constrained linear distance
        "overshoot": True,  # before the first hit, eps = (1 + gamma) x the first-order distance
        "box_aware": True,  # l1: False = foolbox's geometry (dense step, ball projection, then clipping; see L1Ops)
        "compact": True,  # finished rows leave the batch (False: they stay, frozen; for tests)
        "restarts": 1,  # runs per target; runs after the first start at a random point
        "random_start": 0.5,  # radius of those starts, as a fraction of the first eps
    }

    def _build(self, problem: Problem):
        opt = self.options
        ops_norm = norm_ops(self.norm, l1_sparsity=opt["l1_sparsity"], box_aware=opt["box_aware"])
        steps = max(1, int(opt["steps"]))
        lo_b, hi_b = problem.bounds
        a0, a1 = float(opt["alpha_init"]), float(opt["alpha_final"])
        g0, g1 = float(opt["gamma_init"]), float(opt["gamma_final"])
        tol = float(opt["tol"])
        absolute = bool(opt["absolute_step"])
        box_extra = bool(opt["box_extrapolation"])
        grow = float(opt["grow"])
        over = 1.0 if opt["overshoot"] else 0.0
        eps_max = float(max_distance(self.norm, problem.dim, problem.bounds))
        n_targets = int(opt["targets"])
        estimates = self.build_estimates(problem, ops_norm, n_targets)
        est_cost = self.estimate_cost(n_targets)

        def fmn_chunk(x, y, target, delta, eps, best, best_norm, bad, ref, stall, k0, n_iter):
            lo = lo_b - x
            hi = hi_b - x

            def body(i, st):
                delta, eps, best, best_norm, bad, ref, stall = st
                k = ops.cast(k0 + i, "float32")
                m, g, finite = problem.margin_and_grad(x + delta, y, target)
                bad = bad | ~finite
                n = ops_norm.norm(delta)
                best, best_norm, adv = self.keep_best(m, finite, n, delta, best, best_norm)
                sig = best_norm < ref * (1.0 - tol)
                ref = ops.where(sig, best_norm, ref)
                stall = ops.where(sig, ops.zeros_like(stall), stall + 1)
                cosf = 0.5 * (1.0 + ops.cos(math.pi * k / steps))
                alpha = a1 + (a0 - a1) * cosf
                gamma = g1 + (g0 - g1) * cosf
                if box_extra:
                    lin = ops_norm.linear_distance(-g, ops.maximum(m, 0.0), lo - delta, hi - delta)
                    extrapolated = n + ops.where(ops.isfinite(lin), lin, ops.full_like(lin, eps_max))
                else:
                    extrapolated = n + ops.maximum(m, 0.0) / (ops_norm.dual_norm(g) + 1e-12)
                found_any = ops.isfinite(best_norm)
                eps_new = ops.where(
                    adv,
                    ops.minimum(eps * (1.0 - gamma), best_norm),
                    ops.where(found_any, eps * (1.0 + grow * gamma), extrapolated * (1.0 + gamma * over)),
                )
                eps_new = ops.where(k == 0.0, eps, eps_new)
                eps = ops.where(finite, eps_new, eps)
                size = alpha * ops.ones_like(eps) if absolute else alpha * eps
                step = ops_norm.descent(g, delta, lo, hi) * ops.expand_dims(size, 1)
                new = ops_norm.project(delta + step, eps, lo, hi)
                delta = ops.where(ops.expand_dims(finite, 1), new, delta)
                return delta, eps, best, best_norm, bad, ref, stall

            return ops.fori_loop(0, n_iter, body, (delta, eps, best, best_norm, bad, ref, stall))

        chunk_fn = problem.compiled(("fmn_chunk", self.norm.name, tuple(sorted(opt.items()))), lambda: fmn_chunk)
        chunk = max(1, int(opt["chunk"]))
        patience = int(opt["patience"])
        prune_after = int(opt["prune_after"])
        prune_margin = float(opt["prune_margin"])
        compact = bool(opt["compact"])

        def search(x, y, seeds, incumbent):
            n = len(x)
            t, e0, bad0 = estimates(x, y)
            restarts = max(1, int(opt["restarts"]))
            if restarts > 1:  # every target once more per restart (restart-major)
                t, e0 = np.tile(t, (1, restarts)), np.tile(e0, (1, restarts))
            kk = t.shape[1]
            # Rows: one per (target, point), target-major.
            point = np.tile(np.arange(n), kk)
            rx, ry = x[point], y[point]
            rt = t.T.reshape(-1).astype(np.int32)
            delta = np.zeros_like(rx)
            if restarts > 1:  # random starts, from the points' own streams
                first = kk // restarts
                rr = np.arange(first * n, kk * n)
                s = B.fold_seeds(B.to_tensor(seeds[point[rr]], "int32"), 7)
                s = B.to_tensor(B.to_numpy(s) ^ (rr // n).astype(np.int32)[:, None], "int32")
                radius = B.to_tensor((e0.T.reshape(-1)[rr] * float(opt["random_start"])).astype(np.float32))
                start = B.to_numpy(ops_norm.random_in_ball((len(rr), problem.dim), radius, s))
                delta[rr] = np.clip(rx[rr] + start, lo_b, hi_b) - rx[rr]
            r = len(point)
            eps = e0.T.reshape(-1).astype(np.float32)
            best = np.zeros_like(rx)
            best_norm = np.full(r, np.inf, np.float32)
            bad = np.zeros(r, bool)
            ref = np.full(r, np.inf, np.float32)
            stall = np.zeros(r, np.int32)
            active = np.ones(r, bool)
            grads = np.full(n, est_cost, np.int64)
            k = 0
            while k <= steps and active.any():
                idx = np.flatnonzero(active) if compact else np.arange(r)
                m = len(idx)
                rows = problem.rows(m)
                n_iter = min(chunk, steps + 1 - k)
                args = pad_rows([rx[idx], ry[idx], rt[idx], delta[idx], eps[idx], best[idx], best_norm[idx],
                                 bad[idx], ref[idx], stall[idx]], rows)
                out = chunk_fn(*(B.to_tensor(a, None) for a in args),
                               B.to_tensor(np.int32(k), "int32"), B.to_tensor(np.int32(n_iter), "int32"))
                out = [B.to_numpy(o)[:m] for o in out]
                keep = active[idx]  # without compaction, finished rows ran but stay as they were
                for arr, o in zip((delta, eps, best, best_norm, bad, ref, stall), out):
                    arr[idx[keep]] = o[keep]
                np.add.at(grads, point[idx], n_iter)
                k += n_iter
                if k > steps:
                    break
                if patience > 0:
                    active &= ~(np.isfinite(best_norm) & (stall >= patience))
                if prune_after > 0 and k >= prune_after:
                    point_best = np.minimum(np.full(n, np.inf, np.float32), incumbent)
                    np.minimum.at(point_best, point, best_norm)
                    active &= ~(best_norm > point_best[point] * (1.0 + prune_margin))
            out = best_of_target_rows(x, best, best_norm, bad, bad0, (lo_b, hi_b))
            out.gradients = grads
            return out

        return search
