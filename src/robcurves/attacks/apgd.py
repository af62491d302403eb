"""APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks") inside the per-point eps search of
:mod:`robcurves.attacks.pgd`: a fixed-budget attack turned minimal-norm.

At a fixed radius eps (per row) APGD ascends a loss with momentum and a step size that
adapts itself:

- first step ``x_1 = P(x_0 + eta grad-direction)``, ``eta = 2 eps``; then
  ``z = P(x_k + eta dir(g_k))``, ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))``
  with momentum ``a = 0.75`` (``dir``: sign(g) in linf, g / ||g||_2 in l2, over the
  coordinates the box lets move; ``P``: the projection onto ball ∩ box);
- checkpoints ``w_0 = 0``, ``w_1 = 0.22 N``, ``w_{j+1} = w_j + max(w_j - w_{j-1} - 0.03 N,
  0.06 N)`` (N: steps). At a checkpoint the step size halves, and the iterate restarts
  from the best point so far, where fewer than ``rho = 0.75`` of the steps since the last
  checkpoint raised the loss, or where the step size was not halved at the last
  checkpoint and the best loss has not improved since;
- losses: ``"dlr"`` (default), the difference of logits ratio; targeted (APGD-T) it is
  ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, untargeted (``targets = 0``)
  ``-(z_y - max_{k != y} z_k) / (z_pi1 - z_pi3)`` (pi: the logits sorted, descending;
  fewer than 4 classes: the smallest logit stands in); ``"ce"``: cross-entropy of the
  label (untargeted) or minus that of the target (targeted).

A row stops at its first adversarial iterate (the rule of :mod:`robcurves.adversarial`,
any class: margin ``z_y - max_{k != y} z_k < 0``); the search around it then asks for a
smaller eps. The targets are the ``targets`` classes whose boundary is closest to first
order (:func:`robcurves.attacks.base.first_order_targets`), one eps search per target
(AutoAttack's APGD-T takes the top logits instead; for a minimal-norm search the closest
boundaries are the ones that matter). ``warm_bracket > 0`` starts the search from the
ensemble's best so far: bisection in ``[(1 - warm_bracket) d, d]``, APGD started from
that witness scaled into the ball. Random restarts start inside the ball from the
points' own random streams. linf and l2 (l1-APGD is a different algorithm).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from robcurves import backend as B
from robcurves.attacks.base import Problem, all_finite, margin_of, register
from robcurves.attacks.pgd import PGDBisection


def apgd_checkpoints(steps: int) -> np.ndarray:
    """The iterations (0-based, increasing, < ``steps``) at which APGD checks its progress,
    after Croce & Hein's schedule p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    first = max(int(0.22 * steps), 1)
    smallest = max(int(0.06 * steps), 1)
    shrink = max(int(0.03 * steps), 1)
    out, at, window = [], first, first
    while at < steps:
        out.append(at)
        window = max(window - shrink, smallest)
        at += window
    return np.asarray(out, np.int64)


def dlr_loss(z, y, target):
    """The (targeted where ``target >= 0``) difference of logits ratio, per row (APGD maximises it)."""
    c = z.shape[1]
    top = ops.top_k(z, k=min(4, c))[0]
    low = top[:, -1]
    z3 = top[:, 2] if c >= 3 else low
    z4 = top[:, 3] if c >= 4 else low
    onehot = ops.one_hot(y, c, dtype="float32") > 0.5
    z_true = ops.sum(ops.where(onehot, z, ops.zeros_like(z)), axis=1)
    z_other = ops.max(ops.where(onehot, ops.full_like(z, -np.inf), z), axis=1)
    z_t = ops.take_along_axis(z, ops.expand_dims(ops.maximum(target, 0), 1), axis=1)[:, 0]
    targeted = target >= 0
    num = z_true - ops.where(targeted, z_t, z_other)
    den = top[:, 0] - ops.where(targeted, 0.5 * (z3 + z4), z3)
    return -num / (den + 1e-12)


def ce_loss(z, y, target):
    """Cross-entropy of the label (untargeted) or minus that of ``target`` (targeted), per row."""
    lse = ops.logsumexp(z, axis=1)
    c = z.shape[1]
    pick = ops.where(target >= 0, ops.maximum(target, 0), y)
    z_pick = ops.sum(z * ops.one_hot(pick, c, dtype="float32"), axis=1)
    return ops.where(target >= 0, z_pick - lse, lse - z_pick)


LOSSES = {"dlr": dlr_loss, "ce": ce_loss}


@register
class APGD(PGDBisection):
    name = "apgd"
    norms = ("linf", "l2")
    defaults = {
        "steps": 25,  # APGD iterations per eps
        "bisection_steps": 8,  # bisections after the bracket is found
        "max_bracket_steps": 20,  # eps doublings at most while looking for an upper end
        "restarts": 1,  # APGD runs per eps; runs after the first start at random points
        "loss": "dlr",  # "dlr" or "ce"
        "momentum": 0.75,  # weight of the new step (1 - momentum: of the last move)
        "rho": 0.75,  # least share of loss-raising steps between checkpoints
        "targets": 3,  # 0: untargeted loss; k >= 1: the k first-order closest classes
        "warm_bracket": 0.0,  # > 0: bisect in [(1 - w) d_best, d_best] from the ensemble's best
    }

    def __init__(self, norm, **options):
        super().__init__(norm, **options)
        if self.options["loss"] not in LOSSES:
            raise ValueError(f"attack method 'apgd': option 'loss' must be one of {sorted(LOSSES)}, "
                             f"got {self.options['loss']!r}")

    def _ops_norm(self):
        from robcurves.attacks.geometry import norm_ops

        return norm_ops(self.norm)

    def _fixed_eps_attack(self, problem: Problem, ops_norm):
        opt = self.options
        loss_fn = LOSSES[opt["loss"]]
        steps = max(1, int(opt["steps"]))
        mom = float(opt["momentum"])
        rho = float(opt["rho"])
        lo_b, hi_b = problem.bounds
        ck = np.zeros(steps + 1, bool)
        ck[apgd_checkpoints(steps)] = True
        # The window (steps since the last checkpoint) at each checkpoint.
        win = np.zeros(steps + 1, np.float32)
        last = 0
        for t in np.flatnonzero(ck):
            win[t], last = t - last, t
        ck_np, win_np = ck, win

        def loss_rows(xf, y, target):
            z = problem.logits(xf)
            return loss_fn(ops.cast(z, "float32"), y, target), z

        grad = B.value_and_grad(loss_rows, argnums=0, has_aux=True)

        def evaluate(x, delta, y, target):
            (loss, z), g = grad(x + delta, y, target)
            finite = all_finite(z) & all_finite(g) & ops.isfinite(loss)
            g = ops.where(ops.expand_dims(finite, 1), g, ops.zeros_like(g))
            loss = ops.where(finite, loss, ops.full_like(loss, -np.inf))
            return loss, margin_of(z, y), g, finite

        def apgd(x, y, target, eps, delta0, active):
            lo = lo_b - x
            hi = hi_b - x
            col = lambda v: ops.expand_dims(v, 1)  # noqa: E731
            is_ck = ops.convert_to_tensor(ck_np)
            window = ops.convert_to_tensor(win_np)
            delta = ops_norm.project(delta0, eps, lo, hi)
            loss, m, g, finite = evaluate(x, delta, y, target)
            adv = (m < 0.0) & finite & active
            zero_f = ops.zeros_like(eps)
            state = dict(
                t=ops.convert_to_tensor(0, "int32"), delta=delta, prev=delta, g=g, loss=loss,
                best_loss=loss, x_best=delta, g_best=g, eta=2.0 * eps, ups=zero_f,
                ck_loss=loss, reduced=ops.zeros_like(active), found=adv, adv_delta=delta,
                bad=~finite & active, still=active & ~adv & finite)
            keys = list(state)

            def cond(*v):
                s = dict(zip(keys, v))
                return (s["t"] < steps) & ops.any(s["still"])

            def body(*v):
                s = dict(zip(keys, v))
                t, delta, prev, g, still = s["t"], s["delta"], s["prev"], s["g"], s["still"]
                a = ops.where(t == 0, 1.0, mom)
                eta = col(s["eta"])
                z = ops_norm.project(delta + eta * ops_norm.descent(-g, delta, lo, hi), eps, lo, hi)
                new = ops_norm.project(delta + a * (z - delta) + (1.0 - a) * (delta - prev), eps, lo, hi)
                new = ops.where(col(still), new, delta)
                loss, m, g_new, finite = evaluate(x, new, y, target)
                adv = (m < 0.0) & finite & still
                found = s["found"] | adv
                adv_delta = ops.where(col(adv), new, s["adv_delta"])
                bad = s["bad"] | (~finite & still)
                ups = s["ups"] + ops.cast(loss > s["loss"], "float32")
                better = loss > s["best_loss"]
                best_loss = ops.where(better, loss, s["best_loss"])
                x_best = ops.where(col(better), new, s["x_best"])
                g_best = ops.where(col(better), g_new, s["g_best"])
                # Checkpoint after this step (iteration t + 1 of the schedule).
                here = ops.take(is_ck, t + 1)
                w = ops.take(window, t + 1)
                oscillating = ups <= rho * w
                stuck = ~s["reduced"] & (s["ck_loss"] >= best_loss)
                halve = here & (oscillating | stuck)
                eta_new = ops.where(halve, 0.5 * s["eta"], s["eta"])
                # A halved row restarts from its best point (no momentum carried over).
                delta_next = ops.where(col(halve), x_best, new)
                g_next = ops.where(col(halve), g_best, g_new)
                prev_next = ops.where(col(halve), x_best, delta)
                return dict(
                    t=t + 1, delta=delta_next, prev=prev_next, g=g_next, loss=loss, best_loss=best_loss,
                    x_best=x_best, g_best=g_best, eta=eta_new, ups=ops.where(here, zero_f, ups),
                    ck_loss=ops.where(here, best_loss, s["ck_loss"]), reduced=ops.where(here, halve, s["reduced"]),
                    found=found, adv_delta=adv_delta, bad=bad, still=still & ~adv & finite).values()

            out = dict(zip(keys, ops.while_loop(cond, lambda *v: tuple(body(*v)), tuple(state.values()))))
            # Gradients: the first evaluation plus one per iteration run.
            return out["adv_delta"], out["found"], out["bad"], out["t"] + 1

        return problem.compiled(("apgd", self.norm.name, tuple(sorted(opt.items()))), lambda: apgd)
