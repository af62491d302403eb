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
from types import SimpleNamespace
from typing import Callable

import numpy as np
from keras import ops

from robcurves import backend as B
from robcurves.attacks.base import MinimalNormAttack, Problem, pad_rows, register
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
        # > 0: start from the ensemble's best so far where there is one: bisect between
        # (1 - warm_bracket) x its distance and its distance, PGD warm-started from it.
        "warm_bracket": 0.0,
    }

    def _ops_norm(self):
        return norm_ops(self.norm, l1_sparsity=self.options["l1_sparsity"])

    def _fixed_eps_attack(self, problem: Problem, ops_norm) -> "Callable":
        """The compiled attack at a fixed radius: ``(x, y, target, eps, delta0, active) ->
        (delta, found, nonfinite, steps run)`` on padded rows (``delta``: the adversarial
        perturbation found, where ``found``). Subclasses (APGD) replace it; the eps search
        around it (:meth:`_build`) stays."""
        opt = self.options
        steps = max(1, int(opt["steps"]))
        lo_b, hi_b = problem.bounds
        step_size = float(opt["step_size"])

        def pgd(x, y, target, eps, delta0, active):
            """PGD at per-row radius eps from delta0; returns (delta, found, nonfinite, steps run)."""
            lo = lo_b - x
            hi = hi_b - x
            delta = ops_norm.project(delta0, eps, lo, hi)

            def cond(t, delta, best, found, bad, still):
                return (t <= steps) & ops.any(still)

            def body(t, delta, best, found, bad, still):
                m, g, finite = problem.margin_and_grad(x + delta, y, target)
                bad = bad | (~finite & still)
                adv = (m < 0.0) & finite & still
                best = ops.where(ops.expand_dims(adv, 1), delta, best)
                found = found | adv
                still = still & ~adv & finite
                tf_t = ops.cast(t, "float32")
                frac = step_size * (0.05 + 0.95 * 0.5 * (1.0 + ops.cos(math.pi * tf_t / steps)))
                step = ops_norm.descent(g, delta, lo, hi) * ops.expand_dims(frac * eps, 1)
                new = ops_norm.project(delta + step, eps, lo, hi)
                delta = ops.where(ops.expand_dims(still, 1), new, delta)
                return t + 1, delta, best, found, bad, still

            t, _, best, found, bad, _ = ops.while_loop(
                cond, body, (ops.convert_to_tensor(0, "int32"), delta, delta, ops.zeros_like(active),
                             ops.zeros_like(active), active))
            return best, found, bad, t

        return problem.compiled(("pgd", self.norm.name, tuple(sorted(opt.items()))), lambda: pgd)

    def _build(self, problem: Problem):
        opt = self.options
        ops_norm = self._ops_norm()
        lo_b, hi_b = problem.bounds
        n_targets = int(opt["targets"])
        eps_max = np.float32(max_distance(self.norm, problem.dim, problem.bounds))
        estimates = self.build_estimates(problem, ops_norm, n_targets)
        est_cost = self.estimate_cost(n_targets)
        pgd_fn = self._fixed_eps_attack(problem, ops_norm)
        norm_np = self.norm
        n_bisect = int(opt["bisection_steps"])
        n_bracket = int(opt["max_bracket_steps"])
        restarts = max(1, int(opt["restarts"]))
        dim = problem.dim

        def search(x, y, seeds, incumbent):
            n = len(x)
            targets, est, bad0 = estimates(x, y)
            nonfinite = bad0.astype(bool).copy()
            hi = np.full(n, np.inf, np.float32)  # norm of the best adversarial so far
            best = np.zeros_like(x)  # its perturbation
            grads = np.full(n, est_cost, np.int64)
            calls = [0]
            warm_bracket = float(opt["warm_bracket"])
            lo_warm = np.zeros(n, np.float32)
            if warm_bracket > 0:
                have = np.isfinite(incumbent)
                best[have] = self._warm[have] - x[have]
                hi[have] = norm_np.norm_of(best[have])
                lo_warm[have] = hi[have] * np.float32(1.0 - min(warm_bracket, 1.0))

            def attempt(eps, active, target):
                """PGD at eps on the active rows; updates best/hi; returns success mask."""
                nonlocal best, hi, nonfinite
                have = np.isfinite(hi)
                # Warm start: the best adversarial so far, scaled into the new ball.
                scale = np.where(have, eps / np.where(have, hi, 1.0), 0.0)
                start = best * np.minimum(scale, 1.0)[:, None]
                succeeded = np.zeros(n, bool)
                idx = np.flatnonzero(active)
                if not len(idx):
                    return succeeded
                rows = problem.rows(len(idx))
                for r in range(restarts):
                    calls[0] += 1
                    run = active & ~succeeded
                    if r == 0:
                        d0 = start[idx]
                    else:  # a random start; the stream is the point's own (per-row seeds)
                        s = B.fold_seeds(B.to_tensor(seeds[idx], "int32"), calls[0])
                        d0 = B.to_numpy(ops_norm.random_in_ball((len(idx), dim), B.to_tensor(eps[idx]), s))
                    args = pad_rows([x[idx], y[idx], target[idx], eps[idx].astype(np.float32), d0, run[idx]], rows)
                    d, found, bad, t_run = pgd_fn(B.to_tensor(args[0]), B.to_tensor(args[1], "int32"),
                                                  B.to_tensor(args[2], "int32"), B.to_tensor(args[3]),
                                                  B.to_tensor(args[4]), B.to_tensor(args[5], "bool"))
                    d, found, bad = (B.to_numpy(v)[:len(idx)] for v in (d, found, bad))
                    grads[idx[run[idx]]] += int(B.to_numpy(t_run))
                    nonfinite[idx] |= bad
                    dist = norm_np.norm_of(d)
                    better = found & (dist < hi[idx])
                    best[idx[better]] = d[better]
                    hi[idx[better]] = dist[better]
                    succeeded[idx] |= found
                return succeeded

            for j in range(targets.shape[1]):
                target = targets[:, j].astype(np.int32)
                e0 = est[:, j]
                lo = lo_warm.copy()
                # A later target is tried only where it promises (to first order) a
                # shorter perturbation than the best one already found.
                cand = ~nonfinite & (e0 < hi)
                if j == 0 and warm_bracket > 0:  # the best so far is searched below, whatever the estimate
                    cand |= ~nonfinite & (lo_warm > 0)
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
            x_adv = np.clip(x + best, lo_b, hi_b).astype(np.float32)
            return SimpleNamespace(x_adv=x_adv, nonfinite=nonfinite, gradients=grads, forwards=np.zeros(n, np.int64))

        return search
