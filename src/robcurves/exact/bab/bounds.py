"""Linear bounds of the float32 network: CROWN, alpha-CROWN and beta-CROWN, batched over rows.

A *row* asks for a lower bound of ``c . z_s`` (``z_s`` the values of node ``s`` of the
network description; the logits for margins) over the input domain of one point, under
the ReLU relaxations of that row's subdomain. Rows are batched: a batch holds the rows of
many subdomains (branch and bound) or of many neurons (intermediate bounds).

Back-substitution from ``z_s`` down to the input (Zhang et al. 2018, CROWN) uses each
layer's own transpose (``linear_t``); on a ReLU with pre-activation bounds ``l < 0 < u``
the lower line ``alpha z`` (``alpha`` in [0, 1], optimised by gradient ascent:
alpha-CROWN, Xu et al. 2021) serves positive coefficients and the upper line
``u (z - l) / (u - l)`` negative ones. A split neuron is stable in its subdomain; its split
constraint ``S_j zh_j >= 0`` enters with a multiplier ``beta_j >= 0`` as
``-beta_j S_j zh_j`` (beta-CROWN, Wang et al. 2021): valid for every ``beta``, tight at the
optimum.

Soundness for the float32 model (see :mod:`robcurves.exact.bab.rounding`): the rounding of
node ``k``, ``|delta_k| <= g_k (|W_k| |h| + |b_k|)``, enters as ``-g_k |Lambda| . |b_k|``
and, where the node's input ``h`` is non-negative over the domain (a ReLU output, or the
input box), as the non-negative coefficient ``g_k |W_k|^T |Lambda|`` on ``h``, which the
relaxation below bounds jointly with everything else; elsewhere with ``|h|``'s interval
bound. The float64 rounding of the computation itself is subtracted as
``slack64 (|c| . M_s + sum beta . M_k)``. The minimum over the input domain is exact
(:mod:`robcurves.exact.bab.concretize`).

Why one module of ~630 lines: :class:`BoundEngine` is one object whose backward pass,
rounding terms and compiled alpha/beta ascent share the per-network state built at
construction (transposes, node order, compiled functions); the small input and root
records sit beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from robcurves.exact.bab import rounding
from robcurves.exact.bab.concretize import linear_lower
from robcurves.exact.bab.network import BoundGraph, bound_graph
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

    ``lower[k]``/``upper[k]``: bounds of the float32 pre-activations of ReLU ``k`` (flat);
    ``node_lo``/``node_hi``: interval bounds of every node (flat), whose signs and
    magnitudes the rounding terms use.
    """

    ball: InputBall
    lower: list[np.ndarray]
    upper: list[np.ndarray]
    node_lo: list[np.ndarray]
    node_hi: list[np.ndarray]
    seconds: float = 0.0
    info: dict = field(default_factory=dict)
    _t: dict = field(default_factory=dict, repr=False)

    def unstable_masks(self) -> list[np.ndarray]:
        return [(lo < 0) & (hi > 0) for lo, hi in zip(self.lower, self.upper)]

    def n_unstable(self) -> int:
        return int(sum(m.sum() for m in self.unstable_masks()))


@dataclass
class RootGroup:
    """Rows of several points in one batch: row ``i`` belongs to ``roots[row_point[i]]``."""

    roots: list[RootBounds]
    row_point: np.ndarray

    @property
    def lower(self) -> list[np.ndarray]:
        return [np.stack([r.lower[k] for r in self.roots])[self.row_point] for k in range(len(self.roots[0].lower))]

    @property
    def upper(self) -> list[np.ndarray]:
        return [np.stack([r.upper[k] for r in self.roots])[self.row_point] for k in range(len(self.roots[0].upper))]


class BoundEngine:
    """CROWN-family bounds of one network in one norm, on ``keras.ops`` (float64)."""

    def __init__(self, net, norm: "Norm | str", chunk: int = 512):
        from robcurves.exact.bab.ops import require_float64

        self.notes = require_float64()
        self.g = bound_graph(net)
        self.net = self.g.net
        self.norm = parse_norm(norm)
        self.p = self.norm.p
        self.chunk = int(chunk)
        self.M = self.g.magnitudes()
        longest = sum(nd.n for nd in self.g.nodes) * 2 + 4 * self.g.n_inputs + 64
        self.slack64 = rounding.float64_slack(len(self.g.nodes), longest)
        self._fns: dict = {}
        # The nodes whose sign masks and magnitudes the pass reads: inputs of affine and add nodes.
        self._mask_read = {i for nd in self.g.nodes if nd.kind in ("dense", "conv2d", "add") for i in nd.inputs}
        # Constants are made eagerly: a tensor first made inside a traced function cannot
        # be reused by the next trace.
        self._Mt = [tensor(m[None]) for m in self.M]
        self._bias = {i: tensor(nd.bias.reshape(1, *nd.shape)) for i, nd in enumerate(self.g.nodes)
                      if nd.bias is not None}
        self._absbias = {i: ops.abs(b) for i, b in self._bias.items()}
        self._consts = {}
        for dt in ("float32", "float64"):
            for i, nd in enumerate(self.g.nodes):
                if nd.bias is not None:
                    self._consts[(("b", i), dt)] = tensor(nd.bias.reshape(1, *nd.shape), dt)
                if nd.kind in ("dense", "conv2d"):
                    self.g.transpose(i, ops.zeros((1, *nd.shape), dtype=dt))
        for i, nd in enumerate(self.g.nodes):  # warm the layers' own tensor caches
            if nd.kind in ("dense", "conv2d"):
                z = ops.zeros((1, *nd.shape), dtype="float64")
                self.g.transpose(i, z)
                self.g.transpose(i, z, absolute=True)

    @property
    def n_classes(self) -> int:
        return self.g.n_classes

    # ---------------------------------------------------------------- the pass
    def _backward(self, start: int, C, lows, ups, alphas, betas, signs, masks, mags, x0, dlo, dhi, radius,
                  want_argmin: bool = False, want_lams: bool = False, sound: bool = True):
        """Lower bound of ``C . zh_start`` (``C``: (R, n_start) on node ``start``, flat).

        ``lows``/``ups``/``alphas``/``betas``/``signs``: per ReLU ((R or 1, n_k) tensors;
        entries for ReLUs after ``start`` are ignored); ``masks``/``mags``: per node, 1
        where the node's value is non-negative over the domain, and ``|value|``'s bound.
        ``sound=False`` leaves out the rounding terms (a cheaper estimate, for branching
        decisions only; never a certificate).
        """
        if not sound:
            return self._backward_estimate(start, C, lows, ups, alphas, betas, signs, x0, dlo, dhi, radius)
        g = self.g
        coef = {start: ops.reshape(C, (-1, *g.nodes[start].shape))}
        const = ops.zeros_like(C[:, 0])
        err = ops.zeros_like(C[:, 0])
        slack = ops.sum(ops.abs(C) * self._Mt[start], axis=1)
        lams = {}
        for j in range(start, 0, -1):
            A = coef.pop(j, None)
            if A is None:
                continue
            nd = g.nodes[j]
            if nd.kind == "relu":
                k = g.relu_index[j]
                lam_a = ops.reshape(A, (-1, nd.n))
                if want_lams:
                    lams[k] = lam_a
                lo, hi = lows[k], ups[k]
                active = lo >= 0
                inactive = hi <= 0
                unstable = ops.logical_not(ops.logical_or(active, inactive))
                s = ops.where(unstable, hi / ops.where(unstable, hi - lo, ops.ones_like(hi)), ops.zeros_like(hi))
                pos = ops.maximum(lam_a, 0.0)
                neg = ops.minimum(lam_a, 0.0)
                a = ops.clip(alphas[k], 0.0, 1.0)
                z = ops.where(active, lam_a, ops.where(unstable, pos * a + neg * s, ops.zeros_like(lam_a)))
                const = const + ops.sum(ops.where(unstable, -neg * s * lo, ops.zeros_like(lam_a)), axis=1)
                b = ops.maximum(betas[k], 0.0)
                z = z - b * signs[k]
                slack = slack + ops.sum(b * ops.abs(signs[k]) * self._Mt[nd.inputs[0]], axis=1)
                self._acc(coef, nd.inputs[0], ops.reshape(z, (-1, *g.nodes[nd.inputs[0]].shape)))
                continue
            if nd.kind in ("flatten", "reshape"):
                self._acc(coef, nd.inputs[0], g.layer(j).linear_t(A))
                continue
            absA = ops.abs(A)
            if nd.kind == "add":
                for i in nd.inputs:
                    r = nd.gamma * absA
                    m = masks[i]
                    err = err + ops.sum(ops.reshape(r * (1.0 - m) * mags[i], (-1, nd.n)), axis=1)
                    self._acc(coef, i, A - r * m)
                continue
            # dense / conv2d
            i = nd.inputs[0]
            if j in self._bias:
                const = const + ops.sum(ops.reshape(A * self._bias[j], (-1, nd.n)), axis=1)
                err = err + nd.gamma * ops.sum(ops.reshape(absA * self._absbias[j], (-1, nd.n)), axis=1)
            a_in = g.transpose(j, A)
            r = nd.gamma * g.transpose(j, absA, absolute=True)
            m = masks[i]
            err = err + ops.sum(ops.reshape(r * (1.0 - m) * mags[i], (-1, g.nodes[i].n)), axis=1)
            self._acc(coef, i, a_in - r * m)
        lam_x = ops.reshape(coef[0], (-1, g.n_inputs))
        val, xs = linear_lower(lam_x, x0, dlo, dhi, radius, self.p, want_argmin)
        lb = val + const - err * (1.0 + 1e-9) - self.slack64 * slack
        # With ``want_lams``: the coefficients on every ReLU output, then on the input.
        return lb, xs, ([lams[k] for k in sorted(lams)] + [lam_x] if want_lams else [])

    def _backward_estimate(self, start, C, lows, ups, alphas, betas, signs, x0, dlo, dhi, radius):
        """The bound of :meth:`_backward` without rounding terms, in the dtype of ``C``."""
        g = self.g
        import keras

        dt = keras.backend.standardize_dtype(C.dtype)
        coef = {start: ops.reshape(C, (-1, *g.nodes[start].shape))}
        const = ops.zeros_like(C[:, 0])
        for j in range(start, 0, -1):
            A = coef.pop(j, None)
            if A is None:
                continue
            nd = g.nodes[j]
            if nd.kind == "relu":
                k = g.relu_index[j]
                lam_a = ops.reshape(A, (-1, nd.n))
                lo, hi = lows[k], ups[k]
                active = lo >= 0
                unstable = ops.logical_and(lo < 0, hi > 0)
                s = ops.where(unstable, hi / ops.where(unstable, hi - lo, ops.ones_like(hi)), ops.zeros_like(hi))
                pos = ops.maximum(lam_a, 0.0)
                neg = ops.minimum(lam_a, 0.0)
                z = ops.where(active, lam_a, ops.where(unstable, pos * ops.clip(alphas[k], 0.0, 1.0) + neg * s,
                                                        ops.zeros_like(lam_a)))
                const = const + ops.sum(ops.where(unstable, -neg * s * lo, ops.zeros_like(lam_a)), axis=1)
                z = z - ops.maximum(betas[k], 0.0) * signs[k]
                self._acc(coef, nd.inputs[0], ops.reshape(z, (-1, *g.nodes[nd.inputs[0]].shape)))
            elif nd.kind in ("flatten", "reshape"):
                self._acc(coef, nd.inputs[0], g.layer(j).linear_t(A))
            elif nd.kind == "add":
                for i in nd.inputs:
                    self._acc(coef, i, A)
            else:
                if j in self._bias:
                    const = const + ops.sum(ops.reshape(A * self._const(("b", j), dt), (-1, nd.n)), axis=1)
                self._acc(coef, nd.inputs[0], g.transpose(j, A))
        lam_x = ops.reshape(coef[0], (-1, g.n_inputs))
        val, _ = linear_lower(lam_x, x0, dlo, dhi, radius, self.p, False)
        return val + const

    def _const(self, key, dtype: str):
        """A cached constant tensor of ``dtype`` (made eagerly in :meth:`__init__`)."""
        return self._consts[(key, dtype)]

    @staticmethod
    def _acc(coef: dict, i: int, v) -> None:
        coef[i] = v if i not in coef else coef[i] + v

    def _fn(self, start: int, mode: str):
        key = (start, mode)
        if key in self._fns:
            return self._fns[key]
        if mode == "plain":
            def f(C, lows, ups, alphas, betas, signs, masks, mags, x0, dlo, dhi, radius):
                lb, _, _ = self._backward(start, C, lows, ups, alphas, betas, signs, masks, mags, x0, dlo, dhi, radius)
                return lb
        elif mode == "full":
            def f(C, lows, ups, alphas, betas, signs, masks, mags, x0, dlo, dhi, radius):
                return self._backward(start, C, lows, ups, alphas, betas, signs, masks, mags, x0, dlo, dhi, radius,
                                      want_argmin=True, want_lams=True)
        elif mode.startswith("opt"):
            f = self._make_opt(start, mode)
        else:  # pragma: no cover
            raise ValueError(mode)
        self._fns[key] = jit(f)
        return self._fns[key]

    def _make_fsb(self, start: int):
        """Children bounds of candidate splits (estimates, float32): rows pick their parent's
        arrays and add one split each."""
        nrelu = len(self.g.pre)

        def f(C, lows, ups, alphas, betas, signs, x0, dlo, dhi, radius, parent, layer, unit, sign):
            rows_l, rows_u, rows_a, rows_b, rows_s = [], [], [], [], []
            for k in range(nrelu):
                n = self.g.nodes[self.g.pre[k]].n
                on = ops.cast(layer == k, C.dtype)[:, None] * ops.one_hot(ops.clip(unit, 0, n - 1), n, dtype=C.dtype)
                sg = sign[:, None] * on
                lo = ops.take(lows[k], parent, axis=0)
                hi = ops.take(ups[k], parent, axis=0)
                rows_l.append(ops.where(sg > 0, ops.maximum(lo, 0.0), lo))
                rows_u.append(ops.where(sg < 0, ops.minimum(hi, 0.0), hi))
                rows_a.append(ops.take(alphas[k], parent, axis=0))
                rows_b.append(ops.take(betas[k], parent, axis=0))
                rows_s.append(ops.take(signs[k], parent, axis=0) + sg)
            Cr = ops.take(C, parent, axis=0)
            return self._backward_estimate(start, Cr, rows_l, rows_u, rows_a, rows_b, rows_s, x0, dlo, dhi, radius)

        return f

    def fsb_children(self, root: RootBounds, start: int, C, lows, ups, alphas, betas, signs, parent, layer, unit,
                     sign, chunk: int = 2048) -> np.ndarray:
        """Estimated lower bounds of the children ``(parent, ReLU layer, unit, +1/-1)`` of the
        subdomains given by the per-parent arrays (lists per ReLU, (R, n_k)); float32, no
        rounding terms: for choosing splits only."""
        key = (start, "fsb")
        if key not in self._fns:
            self._fns[key] = jit(self._make_fsb(start))
        f = self._fns[key]
        dt = "float32"
        b = root.ball
        ball = (tensor(b.x0[None], dt), tensor(b.dlo[None], dt), tensor(b.dhi[None], dt), tensor(np.array([b.radius]), dt))
        # The per-parent arrays padded to a bucket of rows too (only rows named in ``parent``
        # are read): the compiled pass sees few shapes (no retracing per round).
        R = len(C)
        pad_rows = lambda a: self._pad([np.asarray(a)], R, self.bucket(R))[0]  # noqa: E731
        arrs = [tensor(pad_rows(C), dt)] + [[tensor(pad_rows(a), dt) for a in arrs]
                                           for arrs in (lows, ups, alphas, betas, signs)]
        out = []
        M = len(parent)
        for s in range(0, M, chunk):
            sl = slice(s, s + chunk)
            m = len(parent[sl])
            B = min(chunk, self.bucket(m))  # few shapes: pad the rows (no split: layer -1)
            pad = lambda a, v: np.concatenate([a, np.full(B - m, v, dtype=a.dtype)])  # noqa: E731
            got = f(*arrs, *ball, tensor(pad(parent[sl], 0), "int32"), tensor(pad(layer[sl], -1), "int32"),
                    tensor(pad(unit[sl], 0), "int32"), tensor(pad(sign[sl].astype(np.float64), 0.0), dt))
            out.append(numpy(got)[:m])
        return np.concatenate(out) if out else np.zeros(0)

    def _make_opt(self, start: int, mode: str):
        _, iters, lr_a, lr_b, use_beta, full = mode.split(":")
        iters, lr_a, lr_b = int(iters), float(lr_a), float(lr_b)
        use_beta, full = use_beta == "1", full == "1"

        def loss(params, C, lows, ups, signs, masks, mags, x0, dlo, dhi, radius, weight):
            n = len(params) // 2
            lb, _, _ = self._backward(start, C, lows, ups, params[:n], params[n:], signs, masks, mags, x0, dlo, dhi,
                                      radius)
            return -ops.sum(lb * weight), lb

        vg = value_and_grad(loss)

        def f(alphas, betas, C, lows, ups, signs, masks, mags, x0, dlo, dhi, radius, stop_at):
            # Adam ascent on the lower bounds in one compiled loop; every iterate is a valid
            # bound, the best per row is kept with its parameters.
            n = len(alphas)
            params = list(alphas) + list(betas)
            zeros = [ops.zeros_like(p) for p in params]
            lb0 = ops.full_like(C[:, 0], -1e300)

            def body(t, state):
                params, m, v, best, best_p = state
                weight = ops.cast(best <= stop_at, best.dtype)
                (_, lb), grads = vg(params, C, lows, ups, signs, masks, mags, x0, dlo, dhi, radius, weight)
                better = lb > best
                best = ops.where(better, lb, best)
                bc = ops.expand_dims(better, 1)
                best_p = [ops.where(bc, p, bp) for p, bp in zip(params, best_p)]
                tt = ops.cast(t + 1, best.dtype)
                new, m2, v2 = [], [], []
                for i, (p, gr) in enumerate(zip(params, grads)):
                    is_beta = i >= n
                    if is_beta and not use_beta:
                        new.append(p)
                        m2.append(m[i])
                        v2.append(v[i])
                        continue
                    mi = 0.9 * m[i] + 0.1 * gr
                    vi = 0.999 * v[i] + 0.001 * gr * gr
                    step = (mi / (1 - ops.power(0.9, tt))) / (ops.sqrt(vi / (1 - ops.power(0.999, tt))) + 1e-8)
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
                lb2, xs, lams = self._backward(start, C, lows, ups, best_p[:n], best_p[n:], signs, masks, mags, x0,
                                               dlo, dhi, radius, want_argmin=True, want_lams=True)
                out += [ops.maximum(best, lb2), xs, lams]
            return out

        return f

    # ------------------------------------------------------------- plumbing
    def _root_tensors(self, root):
        """The per-point constants of ``root`` (a :class:`RootBounds` or a :class:`RootGroup`)
        as tensors: the ball and, per node, the sign masks and magnitudes of the rounding terms."""
        if isinstance(root, RootGroup):
            parts = [self._root_arrays(r) for r in root.roots]
            rp = root.row_point
            ball = tuple(tensor(np.concatenate([p[0][j] for p in parts])[rp]) for j in range(4))
            masks, mags = [], []
            for i, nd in enumerate(self.g.nodes):
                mk = np.concatenate([p[1][i] for p in parts])
                if i not in self._mask_read or mk.all():
                    # Never read, or non-negative at every point: its rounding term ``(1 - m) mags``
                    # vanishes, so one broadcast row serves all (no per-row copies to convert).
                    masks.append(tensor(np.ones((1, *nd.shape))))
                    mags.append(tensor(np.zeros((1, *nd.shape))))
                else:
                    masks.append(tensor(mk[rp]))
                    mags.append(tensor(np.concatenate([p[2][i] for p in parts])[rp]))
            return {"ball": ball, "masks": masks, "mags": mags}
        if not root._t:
            (x0, dlo, dhi, rad), masks, mags = self._root_arrays(root)
            root._t["ball"] = (tensor(x0), tensor(dlo), tensor(dhi), tensor(rad))
            root._t["masks"] = [tensor(m) for m in masks]
            root._t["mags"] = [tensor(m) for m in mags]
        return root._t

    def _root_arrays(self, root: RootBounds):
        b = root.ball
        ball = (b.x0[None], b.dlo[None], b.dhi[None], np.array([b.radius]))
        masks = [(lo >= 0).astype(np.float64).reshape(1, *nd.shape)
                 for nd, lo in zip(self.g.nodes, root.node_lo)]
        mags = [np.maximum(np.abs(lo), np.abs(hi)).reshape(1, *nd.shape)
                for nd, lo, hi in zip(self.g.nodes, root.node_lo, root.node_hi)]
        return ball, masks, mags

    @staticmethod
    def _t(arrs: Sequence[np.ndarray]):
        return [tensor(a if a.ndim == 2 else a[None]) for a in arrs]

    def _defaults(self, root: RootBounds, alphas=None, betas=None, signs=None, lows=None, ups=None):
        lows = root.lower if lows is None else lows
        ups = root.upper if ups is None else ups
        if alphas is None:
            alphas = [np.atleast_2d((hi > -lo).astype(np.float64)) for lo, hi in zip(lows, ups)]
        if betas is None:
            betas = [np.zeros((1, lo.shape[-1])) for lo in lows]
        if signs is None:
            signs = [np.zeros((1, lo.shape[-1])) for lo in lows]
        return lows, ups, alphas, betas, signs

    @staticmethod
    def bucket(R: int) -> int:
        """Rows are padded to a power of two (at least 8): compiled functions see few shapes
        (JAX compiles once per shape; TensorFlow retraces)."""
        return max(8, 1 << int(np.ceil(np.log2(max(R, 1)))))

    @staticmethod
    def _pad(arrs, R: int, B: int):
        """Pad every per-row array (leading size ``R``) of ``arrs`` to ``B`` rows with copies of row 0."""
        out = []
        for a in arrs:
            a = np.asarray(a)
            if B > R and a.ndim >= 1 and a.shape[0] == R and R > 0:
                a = np.concatenate([a, np.repeat(a[:1], B - R, axis=0)])
            out.append(a)
        return out

    def _padded(self, root, C, lists):
        """``(root, C, lists)`` padded to :meth:`bucket` rows; lists of per-ReLU arrays."""
        R = len(C)
        B = self.bucket(R)
        if B == R:
            return root, C, lists
        if isinstance(root, RootGroup):
            root = RootGroup(root.roots, self._pad([root.row_point], R, B)[0])
        C = self._pad([C], R, B)[0]
        return root, C, [None if lst is None else self._pad([np.atleast_2d(a) if np.ndim(a) == 1 else a
                                                              for a in lst], R, B) for lst in lists]

    @staticmethod
    def apply_splits(lows, ups, signs):
        """Per-row bounds of split neurons: active (+1) gives ``l = max(l, 0)``, inactive (-1) ``u = min(u, 0)``."""
        out_l, out_u = [], []
        for lo, hi, s in zip(lows, ups, signs):
            s = np.asarray(s)
            if not s.any():  # no split in this layer (the root's rows): nothing to copy
                out_l.append(lo)
                out_u.append(hi)
                continue
            out_l.append(np.where(s > 0, np.maximum(lo, 0.0), lo))
            out_u.append(np.where(s < 0, np.minimum(hi, 0.0), hi))
        return out_l, out_u

    def _args(self, root, C, lows, ups, signs):
        t = self._root_tensors(root)
        x0, dlo, dhi, rad = t["ball"]
        return (tensor(C), self._t(lows), self._t(ups), self._t(signs), t["masks"], t["mags"], x0, dlo, dhi, rad)

    # ------------------------------------------------------------- public
    def bound(self, root: RootBounds, start: int, C: np.ndarray, alphas=None, betas=None, signs=None,
              full: bool = False, lows=None, ups=None):
        """Lower bounds of ``C . zh_start`` (rows of ``C``, flat on node ``start``) under ``root``.

        ``signs``: splits per ReLU ((R, n_k), +1/-1/0); ``lows``/``ups`` (optional, per
        ReLU, (R, n_k)): tighter per-row pre-activation bounds of a subdomain. Returns
        ``lb`` (R,); with ``full=True`` also the minimisers ``x`` (R, n) of the final linear
        bound and the coefficients on every ReLU output (for branching).
        """
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        R = len(C)
        lows, ups, alphas, betas, signs = self._defaults(root, alphas, betas, signs, lows, ups)
        lows, ups = self.apply_splits(lows, ups, signs)
        root, C, (lows, ups, alphas, betas, signs) = self._padded(root, C, [lows, ups, alphas, betas, signs])
        Ct, lw, up, sg, masks, mags, x0, dlo, dhi, rad = self._args(root, C, lows, ups, signs)
        args = (Ct, lw, up, self._t(alphas), self._t(betas), sg, masks, mags, x0, dlo, dhi, rad)
        if full:
            lb, xs, lams = self._fn(start, "full")(*args)
            return numpy(lb)[:R], numpy(xs)[:R], [numpy(a)[:R] for a in lams]
        return numpy(self._fn(start, "plain")(*args))[:R]

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
        lows, ups, alphas, betas, signs = self._defaults(root, alphas, betas, signs, lows, ups)
        lows, ups = self.apply_splits(lows, ups, signs)
        alphas = [np.broadcast_to(a, (R, lo.shape[-1])) for a, lo in zip(alphas, lows)]
        betas = [np.broadcast_to(b, (R, lo.shape[-1])) for b, lo in zip(betas, lows)]
        use_beta = use_beta and any(np.any(np.asarray(s) != 0) for s in signs)
        key = f"opt:{int(iters)}:{lr_alpha}:{lr_beta}:{int(use_beta)}:{int(full)}"
        root, C, (lows, ups, alphas, betas, signs) = self._padded(root, C, [lows, ups, alphas, betas, signs])
        Ct, lw, up, sg, masks, mags, x0, dlo, dhi, rad = self._args(root, C, lows, ups, signs)
        out = self._fn(start, key)(self._t(alphas), self._t(betas), Ct, lw, up, sg, masks, mags, x0, dlo, dhi, rad,
                                   tensor(np.inf if stop_at is None else float(stop_at)))
        lb = numpy(out[0])[:R]
        al = [numpy(a)[:R] for a in out[1]]
        be = [numpy(b)[:R] for b in out[2]]
        if full:
            return numpy(out[3])[:R], al, be, numpy(out[4])[:R], [numpy(x)[:R] for x in out[5]]
        return lb, al, be

    # ------------------------------------------------------------- root
    def root_bounds(self, ball: InputBall, optimise_intermediate: int = 0, layers: Sequence[int] | None = None,
                    deadline: float | None = None) -> RootBounds:
        """Interval and CROWN bounds of every node over ``ball`` (the float32 model's values).

        Node by node: interval arithmetic widened by the node's float32 rounding bound;
        at every ReLU input, CROWN for the units the interval leaves unstable, intersected
        with the interval. ``optimise_intermediate`` > 0: then that many alpha-CROWN steps
        for the units CROWN leaves unstable, in the ReLU layers ``layers`` (indices into
        the ReLU layers, negative from the last; None: all; ``[-1]``: the last only), while
        ``time.perf_counter()`` is before ``deadline`` (after it, CROWN: as sound, looser).
        """
        return self.root_bounds_batch([ball], optimise_intermediate, layers, deadline)[0]

    def root_bounds_batch(self, balls: Sequence[InputBall], optimise_intermediate: int = 0,
                          layers: Sequence[int] | None = None, deadline: float | None = None) -> list[RootBounds]:
        """:meth:`root_bounds` of many points at once (their CROWN rows share batches)."""
        t0 = time.perf_counter()
        g = self.g
        P = len(balls)
        sizes = g.relu_sizes()
        roots = [RootBounds(b, [np.zeros(m) for m in sizes], [np.zeros(m) for m in sizes], [b.lo.copy()],
                            [b.hi.copy()]) for b in balls]
        pre_of = {p: k for k, p in enumerate(g.pre)}
        nrelu = len(g.pre)
        opt_layers = set(range(nrelu)) if layers is None else {int(k) % nrelu for k in layers} if nrelu else set()
        stats = {"crown_rows": 0, "alpha_rows": 0}
        for i, nd in enumerate(g.nodes[1:], start=1):
            los = [np.stack([r.node_lo[j] for r in roots]) for j in nd.inputs]
            his = [np.stack([r.node_hi[j] for r in roots]) for j in nd.inputs]
            mags = [np.maximum(np.abs(a), np.abs(b_)) for a, b_ in zip(los, his)]
            if nd.kind == "relu":
                lo, hi = np.maximum(los[0], 0.0), np.maximum(his[0], 0.0)
            elif nd.kind in ("flatten", "reshape"):
                lo, hi = los[0], his[0]
            elif nd.kind == "add":
                e = nd.gamma * (mags[0] + mags[1]) * (1 + 1e-12)
                lo, hi = los[0] + los[1] - e, his[0] + his[1] + e
            else:
                src = g.nodes[nd.inputs[0]]
                layer = g.layer(i)
                c = layer.evaluate_numpy(((los[0] + his[0]) / 2).reshape(P, *src.shape)).reshape(P, -1)
                w = nd.abs_layer.evaluate_numpy(((his[0] - los[0]) / 2).reshape(P, *src.shape)).reshape(P, -1)
                m_abs = nd.abs_layer.evaluate_numpy(mags[0].reshape(P, *src.shape)).reshape(P, -1)
                e = nd.gamma * (m_abs + np.abs(nd.bias)) * (1 + 1e-12)
                lo, hi = c - w * (1 + 1e-12) - e, c + w * (1 + 1e-12) + e
            lo = lo - self.slack64 * self.M[i]
            hi = hi + self.slack64 * self.M[i]
            if i in pre_of:
                direct = nd.kind in ("dense", "conv2d") and nd.inputs[0] == 0
                if not (direct and self.norm.is_box):
                    stats["crown_rows"] += int(np.sum((lo < 0) & (hi > 0)))
                    lo, hi = self._crown_rows_batch(roots, i, lo, hi, 0)
                    # alpha only where CROWN leaves the unit unstable (elsewhere its relaxation
                    # is exact already); on an affine map of the input CROWN is exact.
                    if optimise_intermediate > 0 and pre_of[i] in opt_layers and not direct:
                        stats["alpha_rows"] += int(np.sum((lo < 0) & (hi > 0)))
                        lo, hi = self._crown_rows_batch(roots, i, lo, hi, optimise_intermediate, deadline)
                for r, a, b_ in zip(roots, lo, hi):
                    r.lower[pre_of[i]] = a
                    r.upper[pre_of[i]] = b_
            for r, a, b_ in zip(roots, lo, hi):
                r.node_lo.append(a)
                r.node_hi.append(b_)
        for r in roots:
            r._t = {}
            r.seconds = (time.perf_counter() - t0) / P
            r.info.update({"iters_intermediate": int(optimise_intermediate), **{k: v / P for k, v in stats.items()}})
        return roots

    def _crown_rows_batch(self, roots: list[RootBounds], node: int, lo: np.ndarray, hi: np.ndarray, iters: int,
                          deadline: float | None = None):
        """CROWN bounds (``iters`` > 0: alpha-CROWN, that many ascent steps) of the units of
        ``node`` that ``lo``/``hi`` ((P, n)) leave unstable, per point, intersected with them.
        Past ``deadline`` the remaining chunks keep ``lo``/``hi``.

        Only the ReLUs and nodes before ``node`` are read; the others are placeholders.
        """
        n = self.g.nodes[node].n
        pts, units = np.nonzero((lo < 0) & (hi > 0))
        if len(pts) == 0:
            return lo, hi
        if self._direct_support(node) is not None:
            return self._direct_rows(roots, node, lo, hi, pts, units)
        lo, hi = lo.copy(), hi.copy()
        pad = [RootBounds(r.ball, r.lower, r.upper,
                          list(r.node_lo) + [np.zeros(nd.n) for nd in self.g.nodes[len(r.node_lo):]],
                          list(r.node_hi) + [np.zeros(nd.n) for nd in self.g.nodes[len(r.node_hi):]])
               for r in roots]
        half = self.chunk // 2
        for i in range(0, len(pts), half):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            pp, uu = pts[i:i + half], units[i:i + half]
            m = len(pp)
            C = np.zeros((2 * m, n))
            C[np.arange(m), uu] = 1.0
            C[m + np.arange(m), uu] = -1.0
            group = RootGroup(pad, np.concatenate([pp, pp]))
            if iters > 0:
                # stop_at 0: a row whose bound passed 0 made its unit stable; more is worth nothing
                lb, _, _ = self.optimise(group, node, C, iters=iters, stop_at=0.0)
            else:
                lb = self.bound(group, node, C)
            lo[pp, uu] = np.maximum(lo[pp, uu], lb[:m])
            hi[pp, uu] = np.minimum(hi[pp, uu], -lb[m:])
        return lo, hi

    def _direct_support(self, node: int):
        """For an affine node read straight from the input whose rows touch few input
        coordinates (a convolution: its kernel), ``(idx, w, a)``: per unit the indices of
        those coordinates (K of them, padded with weight 0), ``W^T e_u`` and ``|W|^T e_u``
        there; else None. Cached."""
        key = ("direct", node)
        if key in self._fns:
            return self._fns[key]
        nd = self.g.nodes[node]
        out = None
        if nd.kind in ("dense", "conv2d") and nd.inputs[0] == 0:
            n, n_in = nd.n, self.g.n_inputs
            w = np.zeros((n, n_in))
            a = np.zeros((n, n_in))
            for s in range(0, n, 512):  # the transposes of one-hot rows, in slices
                e = np.zeros((min(512, n - s), n))
                e[np.arange(len(e)), s + np.arange(len(e))] = 1.0
                e = tensor(e.reshape(-1, *nd.shape))
                w[s:s + len(e)] = numpy(self.g.transpose(node, e)).reshape(len(e), -1)
                a[s:s + len(e)] = numpy(self.g.transpose(node, e, absolute=True)).reshape(len(e), -1)
            nz = (w != 0) | (a != 0)
            K = max(int(nz.sum(axis=1).max()), 1)
            if K <= n_in // 4:
                # Stable order: the support's coordinates keep their input order (padding last).
                idx = np.argsort(~nz, axis=1, kind="stable")[:, :K]
                keep = np.take_along_axis(nz, idx, axis=1)
                out = (idx, np.where(keep, np.take_along_axis(w, idx, axis=1), 0.0),
                       np.where(keep, np.take_along_axis(a, idx, axis=1), 0.0))
        self._fns[key] = out
        return out

    def _direct_rows(self, roots: list[RootBounds], node: int, lo: np.ndarray, hi: np.ndarray, pts, units):
        """The CROWN rows of :meth:`_crown_rows_batch` for an affine node on the input, on the
        few input coordinates each unit reads (``_direct_support``) instead of all of them.

        The same bound as the full row, term by term: the exact minimum of
        ``(+-w_u - gamma |w_u| m) . x`` over the ball and box (coordinates outside the support
        have coefficient 0 and add nothing to any of the closed forms), the bias, the float32
        rounding of the bias and of inputs of unknown sign (``m = 0``), and the float64 slack
        ``slack64 M_u``. CROWN is exact on an affine map of the input, so alpha is not needed.
        """
        nd = self.g.nodes[node]
        idx, w, a = self._direct_support(node)
        lo, hi = lo.copy(), hi.copy()
        x0 = np.stack([r.ball.x0 for r in roots])
        dlo = np.stack([r.ball.dlo for r in roots])
        dhi = np.stack([r.ball.dhi for r in roots])
        rad = np.array([r.ball.radius for r in roots])
        m_in = np.stack([(r.node_lo[0] >= 0).astype(np.float64) for r in roots])
        mag_in = np.stack([np.maximum(np.abs(r.node_lo[0]), np.abs(r.node_hi[0])) for r in roots])
        bias = nd.bias if nd.bias is not None else np.zeros(nd.n)
        step = 1 << 15
        for s0 in range(0, len(pts), step):
            pp, uu = pts[s0:s0 + step], units[s0:s0 + step]
            ix = idx[uu]
            g_x0, g_lo, g_hi = (np.take_along_axis(v[pp], ix, axis=1) for v in (x0, dlo, dhi))
            g_m = np.take_along_axis(m_in[pp], ix, axis=1)
            g_mag = np.take_along_axis(mag_in[pp], ix, axis=1)
            r_ = nd.gamma * a[uu]
            err = nd.gamma * np.abs(bias[uu]) + np.sum(r_ * (1.0 - g_m) * g_mag, axis=1)
            slack = self.slack64 * self.M[node][uu]
            both = []
            for sgn in (1.0, -1.0):
                lam = sgn * w[uu] - r_ * g_m
                val, _ = linear_lower(tensor(lam), tensor(g_x0), tensor(g_lo), tensor(g_hi), tensor(rad[pp]), self.p)
                both.append(numpy(val) + sgn * bias[uu] - err * (1.0 + 1e-9) - slack)
            lo[pp, uu] = np.maximum(lo[pp, uu], both[0])
            hi[pp, uu] = np.minimum(hi[pp, uu], -both[1])
        return lo, hi

    def margin_rows(self, y: int, classes: Sequence[int]) -> np.ndarray:
        """Rows ``e_y - e_k`` on the logits: a lower bound > 0 proves class ``k`` cannot win."""
        C = np.zeros((len(classes), self.n_classes))
        C[:, y] = 1.0
        C[np.arange(len(classes)), list(classes)] -= 1.0
        return C

    @property
    def output(self) -> int:
        return self.g.output
