"""Linear bounds of the float32 network: CROWN, alpha-CROWN and beta-CROWN, batched over rows.

A *row* asks for a lower bound of ``c . z_s`` (``z_s`` the pre-activations of linear layer
``s``; ``s = K`` the logits) over the input domain of one point, under the ReLU
relaxations of that row's subdomain. Rows are batched: a batch holds the rows of many
subdomains (branch and bound) or of many neurons (intermediate bounds).

Back-substitution from ``z_s`` down to the input (Zhang et al. 2018, CROWN): on a
linear layer the coefficients pass through ``W^T`` and collect ``Lambda . b``; on a ReLU
with pre-activation bounds ``l < 0 < u`` the lower line ``alpha z`` (``alpha`` in [0, 1],
optimised by gradient ascent: alpha-CROWN, Xu et al. 2021) serves positive coefficients
and the upper line ``u (z - l) / (u - l)`` negative ones. A split neuron (branch and
bound) is stable in its subdomain; its split constraint ``S_j zh_j >= 0`` enters with a
multiplier ``beta_j >= 0`` as ``-beta_j S_j zh_j`` (beta-CROWN, Wang et al. 2021), which
keeps the bound valid for every ``beta`` and tightens it at the optimum.

Soundness for the float32 model (see :mod:`robcurves.exact.bab.rounding`): each linear
layer's float32 rounding ``delta_k``, ``|delta_k| <= e_k``, enters as ``-|Lambda_k| . e_k``;
the float64 rounding of the computation itself is subtracted as
``FLOAT64_SLACK (|c| . M_s + sum beta . M_k)``. The input domain's minimum is exact
(:mod:`robcurves.exact.bab.concretize`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from robcurves.exact.bab import rounding
from robcurves.exact.bab.concretize import linear_lower
from robcurves.exact.bab.network import BoundNet
from robcurves.exact.bab.ops import jit, numpy, ops, tensor, value_and_grad
from robcurves.norms import Norm, parse_norm


@dataclass
class InputBall:
    """``{x : ||x - x0||_p <= radius, lo <= x <= hi}`` for one point (flat float64 vectors).

    ``dlo = lo - x0 <= 0 <= dhi = hi - x0``, already cut to ``[-radius, radius]`` (for
    linf they are the whole domain).
    """

    x0: np.ndarray
    norm: Norm
    radius: float
    dlo: np.ndarray
    dhi: np.ndarray

    @classmethod
    def make(cls, x0: np.ndarray, norm: "Norm | str", radius: float, box: tuple[float, float] = (0.0, 1.0)
             ) -> "InputBall":
        x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        r = float(radius)
        dlo = np.maximum(box[0] - x0, -r)
        dhi = np.minimum(box[1] - x0, r)
        return cls(x0, parse_norm(norm), r, np.minimum(dlo, 0.0), np.maximum(dhi, 0.0))

    @property
    def lo(self) -> np.ndarray:
        return self.x0 + self.dlo

    @property
    def hi(self) -> np.ndarray:
        return self.x0 + self.dhi


@dataclass
class RootBounds:
    """Bounds of one point's domain: what every subdomain of it starts from.

    ``lower[k]``/``upper[k]``: bounds of the float32 pre-activations ``zh_{k+1}`` of ReLU
    layer ``k`` (0-based, flat); ``err[k]``: the float32 rounding bound ``e`` of linear
    layer ``k`` (every layer, the logits included).
    """

    ball: InputBall
    lower: list[np.ndarray]
    upper: list[np.ndarray]
    err: list[np.ndarray]
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def unstable_masks(self) -> list[np.ndarray]:
        return [(lo < 0) & (hi > 0) for lo, hi in zip(self.lower, self.upper)]

    def n_unstable(self) -> int:
        return int(sum(m.sum() for m in self.unstable_masks()))


def _relax(lam_a, lo, hi, alpha):
    """ReLU relaxation of the coefficients ``lam_a`` on ``relu(z)``: ``(coef on z, constant)``."""
    active = lo >= 0
    inactive = hi <= 0
    unstable = ops.logical_not(ops.logical_or(active, inactive))
    width = ops.where(unstable, hi - lo, ops.ones_like(hi))
    s = ops.where(unstable, hi / width, ops.zeros_like(hi))
    pos = ops.maximum(lam_a, 0.0)
    neg = ops.minimum(lam_a, 0.0)
    a = ops.clip(alpha, 0.0, 1.0)
    coef = ops.where(active, lam_a, ops.where(unstable, pos * a + neg * s, ops.zeros_like(lam_a)))
    const = ops.sum(ops.where(unstable, -neg * s * lo, ops.zeros_like(lam_a)), axis=1)
    return coef, const


class BoundEngine:
    """CROWN-family bounds of one :class:`BoundNet` in one norm, on ``keras.ops`` (float64)."""

    def __init__(self, net: BoundNet, norm: "Norm | str", chunk: int = 512):
        self.net = net
        self.norm = parse_norm(norm)
        self.p = self.norm.p
        self.K = len(net.layers)
        self.chunk = int(chunk)
        self.M = net.magnitudes()
        longest = sum(layer.fan_in + layer.n_out + 4 for layer in net.layers) + 4 * net.n_inputs + 64
        self.slack64 = rounding.float64_slack(self.K + 1, longest)
        self._fns: dict = {}
        # Constants are made eagerly: a tensor first made inside a traced function
        # cannot be reused by the next trace.
        for layer in net.layers:
            layer._k()
        self._Mt = [tensor(mk[None]) for mk in self.M]
        self.gam = [float(rounding.gamma(layer.fan_in + 2)) * (1 + 1e-12) for layer in net.layers]
        self.input_nonnegative = net.bounds[0] >= 0
        self._xmag = tensor(np.full((1, net.n_inputs), max(abs(net.bounds[0]), abs(net.bounds[1]))))

    # ---------------------------------------------------------------- the pass
    def _backward(self, start: int, C, lows, ups, alphas, betas, signs, x0, dlo, dhi, radius,
                  want_argmin: bool = False, want_lams: bool = False):
        """Lower bound of ``C . zh_start`` (``start`` 1-based: linear layer ``start``).

        ``lows``/``ups``/``alphas``/``betas``/``signs``: per ReLU layer below ``start``
        ((R or 1, n_k) tensors).

        The float32 rounding of linear layer ``k`` is ``|delta_k| <= g_k (|W_k| ah + |b_k|)``
        with ``ah >= 0`` the layer's input (a ReLU output, or the input in a box with
        ``lo >= 0``). Its worst case against the coefficients ``Lambda`` on ``z_k`` is
        ``-g_k |Lambda| . |b_k| - g_k (|W_k|^T |Lambda|) . ah``: a constant and a
        non-negative coefficient on ``ah``, which the ReLU relaxation below then bounds
        jointly with the rest (tighter than ``|ah| <= u`` unit by unit).
        """
        lam = C
        const = ops.zeros_like(C[:, 0])
        err = ops.zeros_like(C[:, 0])
        slack = ops.sum(ops.abs(C) * self._M(start - 1), axis=1)
        lams = []
        for k in range(start - 1, -1, -1):  # linear layer k (0-based)
            layer = self.net.layers[k]
            g = self.gam[k]
            absl = ops.abs(lam)
            const = const + ops.sum(lam * layer.b(), axis=1)
            err = err + g * ops.sum(absl * layer.abs_b(), axis=1)
            lam_a = layer.backward(lam)
            wabs = layer.backward(absl, absolute=True)
            if k == 0 and not self.input_nonnegative:
                err = err + g * ops.sum(wabs * self._xmag, axis=1)
            else:
                lam_a = lam_a - g * wabs
            if k == 0:
                break
            j = k - 1  # the ReLU layer below
            if want_lams:
                lams.append(lam_a)
            coef, c = _relax(lam_a, lows[j], ups[j], alphas[j])
            coef = coef - ops.maximum(betas[j], 0.0) * signs[j]
            slack = slack + ops.sum(ops.maximum(betas[j], 0.0) * ops.abs(signs[j]) * self._M(j), axis=1)
            const = const + c
            lam = coef
        val, xs = linear_lower(lam_a, x0, dlo, dhi, radius, self.p, want_argmin)
        lb = val + const - err * (1.0 + 1e-9) - self.slack64 * slack
        return lb, xs, lams[::-1]

    def _M(self, k: int):
        return self._Mt[k]

    def _fn(self, start: int, mode: str):
        key = (start, mode)
        if key in self._fns:
            return self._fns[key]
        if mode == "plain":
            def f(C, lows, ups, alphas, betas, signs, x0, dlo, dhi, radius):
                lb, _, _ = self._backward(start, C, lows, ups, alphas, betas, signs, x0, dlo, dhi, radius)
                return lb
        elif mode == "full":
            def f(C, lows, ups, alphas, betas, signs, x0, dlo, dhi, radius):
                return self._backward(start, C, lows, ups, alphas, betas, signs, x0, dlo, dhi, radius,
                                      want_argmin=True, want_lams=True)
        elif mode.startswith("opt"):
            _, iters, lr_a, lr_b, use_beta, full = mode.split(":")
            iters, lr_a, lr_b = int(iters), float(lr_a), float(lr_b)
            use_beta, full = use_beta == "1", full == "1"

            def loss(params, C, lows, ups, signs, x0, dlo, dhi, radius, weight):
                n = len(params) // 2
                lb, _, _ = self._backward(start, C, lows, ups, params[:n], params[n:], signs, x0, dlo, dhi, radius)
                return -ops.sum(lb * weight), lb

            vg = value_and_grad(loss)

            def f(alphas, betas, C, lows, ups, signs, x0, dlo, dhi, radius, stop_at):
                # Adam ascent on the lower bounds in one compiled loop; every iterate is a valid
                # bound, the best per row is kept with its parameters.
                n = len(alphas)
                params = list(alphas) + list(betas)
                zeros = [ops.zeros_like(p) for p in params]
                lb0 = ops.full_like(C[:, 0], -1e300)

                def body(t, state):
                    params, m, v, best, best_p = state
                    weight = ops.cast(best <= stop_at, best.dtype)
                    (_, lb), grads = vg(params, C, lows, ups, signs, x0, dlo, dhi, radius, weight)
                    better = lb > best
                    best = ops.where(better, lb, best)
                    bc = ops.expand_dims(better, 1)
                    best_p = [ops.where(bc, p, bp) for p, bp in zip(params, best_p)]
                    tf_ = ops.cast(t + 1, best.dtype)
                    new, m2, v2 = [], [], []
                    for i, (p, g) in enumerate(zip(params, grads)):
                        is_beta = i >= n
                        if is_beta and not use_beta:
                            new.append(p)
                            m2.append(m[i])
                            v2.append(v[i])
                            continue
                        mi = 0.9 * m[i] + 0.1 * g
                        vi = 0.999 * v[i] + 0.001 * g * g
                        step = (mi / (1 - ops.power(0.9, tf_))) / (ops.sqrt(vi / (1 - ops.power(0.999, tf_))) + 1e-8)
                        if is_beta:
                            new.append(ops.maximum(p - lr_b * step, 0.0))
                        else:
                            new.append(ops.clip(p - lr_a * step, 0.0, 1.0))
                        m2.append(mi)
                        v2.append(vi)
                    return new, m2, v2, best, best_p

                state = (params, zeros, list(zeros), lb0, list(params))
                _, _, _, best, best_p = ops.fori_loop(0, iters, body, state)
                out = [best, best_p[:n], best_p[n:]]
                if full:
                    lb2, xs, lams = self._backward(start, C, lows, ups, best_p[:n], best_p[n:], signs, x0, dlo, dhi,
                                                   radius, want_argmin=True, want_lams=True)
                    out += [ops.maximum(best, lb2), xs, lams]
                return out

        else:  # pragma: no cover
            raise ValueError(mode)
        self._fns[key] = jit(f)
        return self._fns[key]

    # ------------------------------------------------------------- plumbing
    def _ball_tensors(self, ball: InputBall, rows: int | None = None):
        x0, dlo, dhi = (tensor(a[None]) for a in (ball.x0, ball.dlo, ball.dhi))
        return x0, dlo, dhi, tensor(np.array([ball.radius]))

    @staticmethod
    def _t(arrs: Sequence[np.ndarray]):
        return [tensor(a if a.ndim == 2 else a[None]) for a in arrs]

    def _defaults(self, root: RootBounds, start: int, R: int, alphas=None, betas=None, signs=None, lows=None,
                  ups=None):
        nrelu = start - 1
        lows = root.lower[:nrelu] if lows is None else lows[:nrelu]
        ups = root.upper[:nrelu] if ups is None else ups[:nrelu]
        if alphas is None:
            alphas = [np.atleast_2d((hi > -lo).astype(np.float64)) for lo, hi in zip(lows, ups)]
        if betas is None:
            betas = [np.zeros((1, lo.shape[-1])) for lo in lows]
        if signs is None:
            signs = [np.zeros((1, lo.shape[-1])) for lo in lows]
        return lows, ups, alphas, betas, signs

    @staticmethod
    def apply_splits(lows, ups, signs):
        """Per-row bounds of split neurons: active (+1) gives ``l = max(l, 0)``, inactive (-1) ``u = min(u, 0)``."""
        out_l, out_u = [], []
        for lo, hi, s in zip(lows, ups, signs):
            s = np.asarray(s)
            lo2 = np.where(s > 0, np.maximum(lo, 0.0), lo)
            hi2 = np.where(s < 0, np.minimum(hi, 0.0), hi)
            out_l.append(lo2)
            out_u.append(hi2)
        return out_l, out_u

    # ------------------------------------------------------------- public
    def bound(self, root: RootBounds, start: int, C: np.ndarray, alphas=None, betas=None, signs=None,
              full: bool = False, lows=None, ups=None):
        """Lower bounds of ``C . zh_start`` (rows of ``C``) under ``root`` (+ splits ``signs``).

        ``lows``/``ups`` (optional, per ReLU layer, (R, n_k)): tighter per-row
        pre-activation bounds of a subdomain (default: the root's). Returns ``lb`` (R,);
        with ``full=True`` also the minimisers ``x`` (R, n) of the final linear bound and
        the coefficients on every ReLU output (for branching).
        """
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        lows, ups, alphas, betas, signs = self._defaults(root, start, len(C), alphas, betas, signs, lows, ups)
        lows, ups = self.apply_splits(lows, ups, signs)
        x0, dlo, dhi, rad = self._ball_tensors(root.ball)
        args = (tensor(C), self._t(lows), self._t(ups), self._t(alphas), self._t(betas), self._t(signs),
                x0, dlo, dhi, rad)
        if full:
            lb, xs, lams = self._fn(start, "full")(*args)
            return numpy(lb), numpy(xs), [numpy(a) for a in lams]
        return numpy(self._fn(start, "plain")(*args))

    def optimise(self, root: RootBounds, start: int, C: np.ndarray, alphas=None, betas=None, signs=None,
                 iters: int = 20, lr_alpha: float = 0.1, lr_beta: float = 0.05, stop_at: float | None = None,
                 use_beta: bool = True, lows=None, ups=None, full: bool = False):
        """alpha(-beta)-CROWN: ``iters`` Adam steps of ascent on the lower bounds of the rows of ``C``.

        Every iterate gives valid bounds; the best one per row is returned with its
        parameters: ``(lb, alphas, betas)`` (lists of (R, n_k) arrays). Rows whose bound
        exceeds ``stop_at`` stop counting in the objective. With ``full=True`` also the
        bound minimisers and the coefficients on the ReLU outputs at the best parameters
        (see :meth:`bound`): ``(lb, alphas, betas, xs, lams)``.
        """
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        R = len(C)
        lows, ups, alphas, betas, signs = self._defaults(root, start, R, alphas, betas, signs, lows, ups)
        lows, ups = self.apply_splits(lows, ups, signs)
        alphas = [np.broadcast_to(a, (R, lo.shape[-1])) for a, lo in zip(alphas, lows)]
        betas = [np.broadcast_to(b, (R, lo.shape[-1])) for b, lo in zip(betas, lows)]
        use_beta = use_beta and any(np.any(np.asarray(s) != 0) for s in signs)
        x0, dlo, dhi, rad = self._ball_tensors(root.ball)
        key = f"opt:{int(iters)}:{lr_alpha}:{lr_beta}:{int(use_beta)}:{int(full)}"
        out = self._fn(start, key)(self._t(alphas), self._t(betas), tensor(C), self._t(lows), self._t(ups),
                                   self._t(signs), x0, dlo, dhi, rad,
                                   tensor(np.inf if stop_at is None else float(stop_at)))
        lb = numpy(out[0])
        al = [numpy(a) for a in out[1]]
        be = [numpy(b) for b in out[2]]
        if full:
            return numpy(out[3]), al, be, numpy(out[4]), [numpy(x) for x in out[5]]
        return lb, al, be

    # ------------------------------------------------------------- root
    def root_bounds(self, ball: InputBall, optimise_intermediate: int = 0) -> RootBounds:
        """Interval and CROWN bounds of every ReLU layer over ``ball`` (float32 model).

        ``optimise_intermediate``: alpha-CROWN iterations for the intermediate bounds
        (0: plain CROWN with the adaptive lower slope).
        """
        import time

        t0 = time.perf_counter()
        net = self.net
        root = RootBounds(ball, [], [], [])
        x0, dlo, dhi, rad = self._ball_tensors(ball)
        m_prev = np.maximum(np.abs(ball.lo), np.abs(ball.hi))[None]  # >= |x|
        a_lo, a_hi = ball.lo[None], ball.hi[None]
        for k, layer in enumerate(net.layers):
            e = rounding.layer_error(layer.abs_forward(m_prev), layer.bias[None], layer.fan_in)[0]
            root.err.append(e)
            if k == self.K - 1:
                break
            # Interval arithmetic (exact for the first layer over a linf box).
            c = (a_lo + a_hi) / 2.0
            w = (a_hi - a_lo) / 2.0
            zc = numpy(layer.forward(tensor(c)))[0]
            zw = layer.abs_forward(w)[0] * (1 + 1e-12)
            lo, hi = zc - zw - e, zc + zw + e
            lo = lo - self.slack64 * self.M[k]
            hi = hi + self.slack64 * self.M[k]
            rows = np.flatnonzero((lo < 0) & (hi > 0))
            if len(rows) and (k > 0 or not math.isinf(self.p)):
                clo, chi = self._crown_rows(root, k + 1, rows, optimise_intermediate)
                lo = lo.copy()
                hi = hi.copy()
                lo[rows] = np.maximum(lo[rows], clo)
                hi[rows] = np.minimum(hi[rows], chi)
            root.lower.append(lo)
            root.upper.append(hi)
            a_lo, a_hi = np.maximum(lo, 0.0)[None], np.maximum(hi, 0.0)[None]
            m_prev = a_hi
        root.seconds = time.perf_counter() - t0
        return root

    def _crown_rows(self, root: RootBounds, start: int, rows: np.ndarray, iters: int):
        """CROWN bounds (lower, upper) of the units ``rows`` of linear layer ``start``."""
        n = self.net.layers[start - 1].n_out
        los, his = [], []
        for i in range(0, len(rows), self.chunk // 2):
            part = rows[i:i + self.chunk // 2]
            C = np.zeros((2 * len(part), n))
            C[np.arange(len(part)), part] = 1.0
            C[len(part) + np.arange(len(part)), part] = -1.0
            if iters > 0:
                lb, _, _ = self.optimise(root, start, C, iters=iters)
            else:
                lb = self.bound(root, start, C)
            los.append(lb[:len(part)])
            his.append(-lb[len(part):])
        return np.concatenate(los), np.concatenate(his)

    def margin_rows(self, y: int, classes: Sequence[int]) -> np.ndarray:
        """Rows ``e_y - e_k`` on the logits: a lower bound > 0 proves class ``k`` cannot win."""
        C = np.zeros((len(classes), self.net.n_classes))
        C[:, y] = 1.0
        C[np.arange(len(classes)), list(classes)] -= 1.0
        return C
