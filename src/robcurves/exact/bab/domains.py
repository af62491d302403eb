"""Branch and bound for one question: "is there an adversarial example of class k within radius r?"

One :class:`Query` holds a point's :class:`~robcurves.exact.bab.bounds.RootBounds` at
radius ``r`` and the classes still to settle. Its subdomains (ReLU splits) live in a
batched store over the root's unstable neurons ``U`` (split signs, alpha, beta as
``(N, |U|)`` arrays), so a domain costs a few kilobytes. Each round takes the ``batch``
domains with the lowest bounds, splits each on its chosen neuron, bounds the ``2 batch``
children with warm-started alpha-beta-CROWN, drops the children whose bound proves them,
and tries every child's bound minimiser on the float32 model (the per-domain attack): a
verified adversarial example ends the query.

Outcome per class: ``"robust"`` (every subdomain proven), ``"attacked"`` (a verified
witness, which the caller gets) or ``"unknown"`` (time or domain budget spent).

Why one module of ~550 lines: :class:`Query`'s round (pick, split, bound, prune, attack)
and the batched domain store it mutates are one loop over shared arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from robcurves.adversarial import is_adversarial
from robcurves.exact.bab.bounds import BoundEngine, RootBounds
from robcurves.exact.bab.branching import babsr_scores, top_candidates


#: alpha-CROWN steps for the root's intermediate bounds per norm (BabSettings.iters_intermediate
#: None); chosen by measurement, benchmarks/README.md "Exact stage 5" (MMR MNIST, 10 points x 60 s,
#: on/off per point): l2 20 (median lower/upper 0.396 vs 0.383, >= on 8/10); linf 0 (0.983 vs
#: 0.982, per point 0.996-1.007: no gain worth the 2-3x root cost); l1 0 (0.291 vs 0.329, >= on
#: 3/10: the slower roots cost the bounds phase more proofs than the tighter bounds win)
ITERS_INTERMEDIATE = {"linf": 0, "l2": 20, "l1": 0}


@dataclass
class BabSettings:
    """Knobs of the branch and bound (defaults chosen by measurement, see benchmarks/README.md).

    ``batch``: domains split per round; ``iters_root``/``iters``: alpha(-beta) ascent
    steps at the root and per child; ``lr_alpha``/``lr_beta``: Adam step sizes;
    ``fsb``: at least this many candidates per domain for filtered smart branching (1 =
    BaBSR alone); more when few domains are split at once, up to ``fsb_rows`` estimated
    children per round (at the root every unstable neuron is tried);
    ``max_domains``: the store's capacity (beyond it the query gives up: ``unknown``);
    ``iters_intermediate``: alpha-CROWN steps for the root's intermediate ReLU bounds (the
    units CROWN leaves unstable, in the ReLU layers ``layers_intermediate``, None: all); 0:
    CROWN only; None: the norm's default, :data:`ITERS_INTERMEDIATE`.
    """

    batch: int = 64
    iters_root: int = 30
    iters: int = 5
    lr_alpha: float = 0.1
    lr_beta: float = 0.05
    fsb: int = 128
    fsb_rows: int = 16384
    max_domains: int = 200_000
    use_beta: bool = True
    refine: str = "none"  # "none" | "last" | "all": per-domain CROWN bounds of the later ReLU layers
    refine_chunk: int = 1024
    iters_leaf: int = 300  # ascent steps for a subdomain without a neuron left to split (a linear region)
    lr_leaf: float = 0.5
    iters_intermediate: int | None = None
    layers_intermediate: tuple[int, ...] | None = None

    def root_options(self, norm: str) -> dict:
        """Keyword arguments of :meth:`BoundEngine.root_bounds` for a root in ``norm``."""
        it = ITERS_INTERMEDIATE.get(norm, 0) if self.iters_intermediate is None else int(self.iters_intermediate)
        return {"optimise_intermediate": it, "layers": self.layers_intermediate}


@dataclass
class QueryResult:
    status: dict  # class -> "robust" | "attacked" | "unknown"
    witness: np.ndarray | None = None  # float32, flat
    witness_class: int = -1
    rounds: int = 0
    domains: int = 0  # children bounded
    seconds: float = 0.0
    max_queue: int = 0
    info: dict = field(default_factory=dict)

    @property
    def robust(self) -> bool:
        return all(v == "robust" for v in self.status.values())


class _Store:
    """Open subdomains: split signs / alpha / beta over the root-unstable neurons."""

    def __init__(self, U: int):
        self.U = U
        self.L = np.zeros((0, U))
        self.H = np.zeros((0, U))
        self.S = np.zeros((0, U), np.int8)
        self.A = np.zeros((0, U), np.float32)
        self.B = np.zeros((0, U), np.float32)
        self.lb = np.zeros(0)
        self.cls = np.zeros(0, np.int64)
        self.split = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.lb)

    def add(self, S, A, B, lb, cls, split, L, H) -> None:
        self.L = np.concatenate([self.L, L])
        self.H = np.concatenate([self.H, H])
        self.S = np.concatenate([self.S, S.astype(np.int8)])
        self.A = np.concatenate([self.A, A.astype(np.float32)])
        self.B = np.concatenate([self.B, B.astype(np.float32)])
        self.lb = np.concatenate([self.lb, lb])
        self.cls = np.concatenate([self.cls, cls])
        self.split = np.concatenate([self.split, split])

    def pop_worst(self, n: int):
        n = min(n, len(self))
        if n == len(self):
            take = np.arange(n)
        else:
            take = np.argpartition(self.lb, n - 1)[:n]
        return self.take(take)

    def take(self, take: np.ndarray):
        keep = np.ones(len(self), bool)
        keep[take] = False
        out = (self.S[take], self.A[take], self.B[take], self.lb[take], self.cls[take], self.split[take],
               self.L[take], self.H[take])
        self.L, self.H = self.L[keep], self.H[keep]
        self.S, self.A, self.B = self.S[keep], self.A[keep], self.B[keep]
        self.lb, self.cls, self.split = self.lb[keep], self.cls[keep], self.split[keep]
        return out

    def drop_class(self, k: int) -> None:
        keep = self.cls != k
        self.L, self.H = self.L[keep], self.H[keep]
        self.S, self.A, self.B = self.S[keep], self.A[keep], self.B[keep]
        self.lb, self.cls, self.split = self.lb[keep], self.cls[keep], self.split[keep]


class Query:
    """Branch and bound over ReLU splits for one point at one radius (see module docstring)."""

    def __init__(self, engine: BoundEngine, root: RootBounds, y: int, logits_fn: Callable[[np.ndarray], np.ndarray],
                 input_shape: tuple[int, ...], settings: BabSettings | None = None):
        self.eng = engine
        self.root = root
        self.y = int(y)
        self.logits_fn = logits_fn
        self.input_shape = tuple(input_shape)
        self.cfg = settings or BabSettings()
        self.K = engine.output  # the logits node: where the margin rows start
        masks = root.unstable_masks()
        self.idx = [np.flatnonzero(m) for m in masks]
        self.off = np.cumsum([0] + [len(i) for i in self.idx])
        self.U = int(self.off[-1])
        # Global neuron ids (over every ReLU, flattened) of the columns: how subdomains move
        # between queries at different radii.
        goff = np.cumsum([0] + [len(lo) for lo in root.lower])
        self.gid = np.concatenate([goff[k] + idx for k, idx in enumerate(self.idx)]) if self.U else \
            np.zeros(0, np.int64)
        self.store: _Store | None = None
        self.default_alpha = [(hi > -lo).astype(np.float64) for lo, hi in zip(root.lower, root.upper)]
        self.biases = [engine.g.pre_bias(k) for k in range(len(engine.g.pre))]

    # ------------------------------------------------------------ dense <-> compact
    def _dense(self, S, A, B):
        R = len(S)
        signs, alphas, betas = [], [], []
        for k, idx in enumerate(self.idx):
            n = len(self.root.lower[k])
            s = np.zeros((R, n))
            a = np.broadcast_to(self.default_alpha[k], (R, n)).copy()
            b = np.zeros((R, n))
            sl = slice(self.off[k], self.off[k + 1])
            s[:, idx] = S[:, sl]
            a[:, idx] = A[:, sl]
            b[:, idx] = B[:, sl]
            signs.append(s)
            alphas.append(a)
            betas.append(b)
        return signs, alphas, betas

    def _dense_bounds(self, L, H):
        lows, ups = [], []
        for k, idx in enumerate(self.idx):
            sl = slice(self.off[k], self.off[k + 1])
            lo = np.broadcast_to(self.root.lower[k], (len(L), len(self.root.lower[k]))).copy()
            hi = np.broadcast_to(self.root.upper[k], (len(L), len(self.root.upper[k]))).copy()
            lo[:, idx] = L[:, sl]
            hi[:, idx] = H[:, sl]
            lows.append(lo)
            ups.append(hi)
        return lows, ups

    def _refine(self, S, L, H):
        """Per-domain CROWN bounds of the root-unstable neurons of the later ReLU layers.

        Split constraints make the split neurons' relaxations exact, which tightens the
        layers above them. Returns tightened ``(L, H)`` (compact); every bound stays valid
        for its domain (the tighter of the old and the new one is kept).
        """
        if self.cfg.refine == "none" or self.U == 0:
            return L, H
        L, H = L.copy(), H.copy()
        layers = range(1, len(self.idx)) if self.cfg.refine == "all" else [len(self.idx) - 1]
        for k in layers:
            if k < 1 or len(self.idx[k]) == 0:
                continue
            sl = slice(self.off[k], self.off[k + 1])
            todo = (S[:, sl] == 0) & (L[:, sl] < 0) & (H[:, sl] > 0)
            dom, col = np.nonzero(todo)
            if len(dom) == 0:
                continue
            n = len(self.root.lower[k])
            for i in range(0, len(dom), self.cfg.refine_chunk // 2):
                dd, cc = dom[i:i + self.cfg.refine_chunk // 2], col[i:i + self.cfg.refine_chunk // 2]
                m = len(dd)
                C = np.zeros((2 * m, n))
                C[np.arange(m), self.idx[k][cc]] = 1.0
                C[m + np.arange(m), self.idx[k][cc]] = -1.0
                rows = np.concatenate([dd, dd])
                signs, _, _ = self._dense(S[rows], np.zeros((2 * m, self.U)), np.zeros((2 * m, self.U)))
                lows, ups = self._dense_bounds(L[rows], H[rows])
                lows, ups = self.eng.apply_splits(lows, ups, signs)
                alphas = [(hi > -lo).astype(np.float64) for lo, hi in zip(lows, ups)]
                lb = self.eng.bound(self.root, self.eng.g.pre[k], C, alphas, None, signs, lows=lows, ups=ups)
                j = self.off[k] + cc
                L[dd, j] = np.maximum(L[dd, j], lb[:m])
                H[dd, j] = np.minimum(H[dd, j], -lb[m:])
        return L, H

    def _compact(self, dense: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([d[:, idx] for d, idx in zip(dense, self.idx)], axis=1) if self.U else \
            np.zeros((len(dense[0]), 0))

    def _rows(self, cls: np.ndarray) -> np.ndarray:
        return self.eng.margin_rows(self.y, cls)

    # ------------------------------------------------------------ evaluation
    def _evaluate(self, S, A, B, cls, iters: int, L, H, decide: bool = True):
        """Bound rows (alpha-beta ascent from ``A``/``B``), then one full pass for branching and the attack.

        Split decisions (``decide``) are made only for rows left unproven."""
        L, H = self._refine(S, L, H)
        signs, alphas, betas = self._dense(S, A, B)
        lows, ups = self._dense_bounds(L, H)
        C = self._rows(cls)
        lb, alphas, betas, xs, lams = self.eng.optimise(
            self.root, self.K, C, alphas, betas, signs, iters=iters, lr_alpha=self.cfg.lr_alpha,
            lr_beta=self.cfg.lr_beta, stop_at=0.0, use_beta=self.cfg.use_beta, lows=lows, ups=ups, full=True)
        lam_x, lams = lams[-1], lams[:-1]
        # Neurons that a subdomain's own bounds made stable are settled: not worth a split.
        settled = np.where((L >= 0) | (H <= 0), 1, 0).astype(np.int8)
        split = np.full(len(lb), -1, dtype=np.int64)
        todo = np.flatnonzero(lb <= 0) if decide else np.zeros(0, dtype=np.int64)
        if len(todo):
            score = babsr_scores([lam[todo] for lam in lams], self.root.lower, self.root.upper, self.biases, self.idx,
                                 S[todo] + settled[todo] * (S[todo] == 0))
            if self.cfg.fsb > 1:
                split[todo] = self._fsb(S[todo], A[todo], B[todo], cls[todo], [a[todo] for a in alphas],
                                        [b[todo] for b in betas], score, L[todo], H[todo],
                                        [lam[todo] for lam in lams], lam_x[todo])
            else:
                split[todo] = top_candidates(score, 1)[:, 0]
        return lb, self._compact(alphas), self._compact(betas), split, xs, L, H

    def _fsb(self, S, A, B, cls, alphas, betas, score, L, H, lams, lam_x):
        """Filtered smart branching: estimate both children of the top candidates of every
        subdomain and keep the candidate whose worse child is best.

        Candidates of the first ReLU layer (when it sits on an affine map of the input) are
        estimated by a rank-one update of the parent's bound: the split changes only that
        neuron's coefficient ``Delta`` on ``z_j = w_j . x + b_j``, so the child's bound is
        about ``min (lam_x + Delta w_j) . x + Delta b_j + (the intercept it no longer pays)``,
        with the parent's relaxation below kept (exact here: there is none). Other
        candidates get one batched float32 estimate pass. Estimates choose splits only.
        """
        k = max(self.cfg.fsb, self.cfg.fsb_rows // max(2 * len(S), 1))
        cand = top_candidates(score, k)  # (R, k), -1 where none
        R, k = cand.shape
        rr, jj = np.nonzero(cand >= 0)
        if len(rr) == 0:
            return cand[:, 0]
        col = cand[rr, jj]
        layer = np.searchsorted(self.off, col, side="right") - 1
        unit = np.concatenate(self.idx)[col] if self.U else col
        worse = np.full(len(rr), -np.inf)
        first = (layer == 0) & (self._rows0 is not None)
        if first.any():
            worse[first] = self._fsb_rank_one(rr[first], col[first], lams[0], lam_x, alphas[0], L, H, S)
        rest = np.flatnonzero(~first)
        if len(rest):
            signs, _, _ = self._dense(S, A, B)
            lows, ups = self._dense_bounds(L, H)
            lows, ups = self.eng.apply_splits(lows, ups, signs)
            r2 = rr[rest]
            est = self.eng.fsb_children(self.root, self.K, self._rows(cls), lows, ups, alphas, betas, signs,
                                        np.concatenate([r2, r2]), np.concatenate([layer[rest], layer[rest]]),
                                        np.concatenate([unit[rest], unit[rest]]),
                                        np.concatenate([np.ones(len(rest)), -np.ones(len(rest))]))
            # the pass includes the constants the rank-one estimate leaves out: compare like with like
            base = self.eng.fsb_children(self.root, self.K, self._rows(cls), lows, ups, alphas, betas, signs,
                                         np.arange(R), np.full(R, -1), np.zeros(R, int), np.zeros(R))
            worse[rest] = np.minimum(est[: len(rest)], est[len(rest):]) - base[r2] + self._fsb_base(lam_x)[r2]
        val = np.full((R, k), -np.inf)
        val[rr, jj] = worse
        best = np.argmax(val, axis=1)
        return np.where(np.isfinite(val[np.arange(R), best]), cand[np.arange(R), best], cand[:, 0])

    @property
    def _rows0(self):
        """``(W, b)``: the first ReLU layer's root-unstable units as affine functions of the input
        (rows ``(U_0, n)``), when that layer's input is an affine map of the input; else None."""
        if not hasattr(self, "_rows0_cache"):
            g = self.eng.g
            nd = g.nodes[g.pre[0]] if g.pre else None
            self._rows0_cache = None
            if nd is not None and nd.kind in ("dense", "conv2d") and nd.inputs == (0,) and len(self.idx[0]):
                from robcurves.exact.bab.ops import numpy as to_np, tensor

                E = np.zeros((len(self.idx[0]), nd.n))
                E[np.arange(len(self.idx[0])), self.idx[0]] = 1.0
                W = to_np(g.transpose(g.pre[0], tensor(E.reshape(-1, *nd.shape)))).reshape(len(E), -1)
                self._rows0_cache = (W, nd.bias[self.idx[0]])
        return self._rows0_cache

    def _fsb_base(self, lam_x):
        """The input part of the parents' bounds, ``min lam_x . x`` (float32 estimate)."""
        return self._concretize32(lam_x)

    def _concretize32(self, lam):
        from robcurves.exact.bab.concretize import linear_lower
        from robcurves.exact.bab.ops import numpy as to_np, tensor

        b = self.root.ball
        out = []
        for s in range(0, len(lam), 4096):
            part = lam[s:s + 4096]
            val, _ = linear_lower(tensor(part, "float32"), tensor(b.x0[None], "float32"), tensor(b.dlo[None], "float32"),
                                  tensor(b.dhi[None], "float32"), tensor(np.array([b.radius]), "float32"),
                                  self.eng.p)
            out.append(to_np(val))
        return np.concatenate(out) if out else np.zeros(0)

    def _fsb_rank_one(self, rr, col, lam0, lam_x, alpha0, L, H, S):
        """Rank-one estimates (worse child, input part + constant change) of first-layer candidates."""
        W, b = self._rows0
        j = col - self.off[0]  # row of W
        u = self.idx[0][j]
        lam = lam0[rr, u]
        lo, hi = L[rr, col], H[rr, col]
        s = hi / np.where(hi - lo > 0, hi - lo, 1.0)
        a = np.clip(alpha0[rr, u], 0.0, 1.0)
        c_old = np.where(lam >= 0, a * lam, s * lam)
        gain = np.where(lam < 0, lam * s * lo, 0.0)  # the upper line's intercept it no longer pays
        est = []
        for delta in (lam - c_old, -c_old):  # active child, inactive child
            rows = lam_x[rr] + delta[:, None] * W[j]
            est.append(self._concretize32(rows) + delta * b[j] + gain)
        return np.minimum(est[0], est[1])

    def _leaf_proof(self, lb, cls, signs, alphas, betas, lows, ups, deadline: float, res: "QueryResult",
                    max_leaves: int = 32):
        """Linear regions the ascent left unproven: beta-CROWN at the betas of the region's LP
        (:func:`.leaf.region_duals`), which make it exact up to rounding; the bound is the
        engine's rigorous one, so a proof from here holds for the float32 model."""
        from robcurves.exact.bab.leaf import region_duals

        todo = np.flatnonzero(lb <= 0)[:max_leaves]
        rows, new_b = [], []
        for i in todo:
            if time.perf_counter() >= deadline:
                break
            got = region_duals(self.eng.g, self.root.ball, self.y, int(cls[i]), [s[i] for s in signs],
                               [lo[i] for lo in lows], [hi[i] for hi in ups],
                               time_limit=max(0.1, deadline - time.perf_counter()))
            if got is None or got[0] <= 0:
                continue  # no optimum, or the region really holds an adversarial point
            rows.append(i)
            new_b.append(got[1])
        if not rows:
            return lb
        rows = np.asarray(rows)
        B = [np.stack([b[k] for b in new_b]) for k in range(len(signs))]
        lb_lp, _, _ = self.eng.optimise(self.root, self.K, self._rows(cls[rows]), [a[rows] for a in alphas], B,
                                        [s[rows] for s in signs], iters=self.cfg.iters, lr_alpha=self.cfg.lr_alpha,
                                        lr_beta=self.cfg.lr_beta, stop_at=0.0,
                                        lows=[lo[rows] for lo in lows], ups=[hi[rows] for hi in ups])
        lb = lb.copy()
        lb[rows] = np.maximum(lb[rows], lb_lp)
        res.info["lp_leaves"] = res.info.get("lp_leaves", 0) + int(np.sum(lb_lp > 0))
        return lb

    def _leaf_witness(self, S, cls, deadline: float, max_leaves: int = 8):
        """Closest adversarial points of unproven linear regions (:mod:`.leaf`), float32-checked."""
        from robcurves.exact.bab.leaf import closest_in_region

        for i in range(min(len(S), max_leaves)):
            signs, _, _ = self._dense(S[i:i + 1], np.zeros((1, self.U)), np.zeros((1, self.U)))
            signs = [s[0] for s in signs]
            for delta in (1e-6, 1e-4, 1e-2):
                if time.perf_counter() >= deadline:
                    return None
                x = closest_in_region(self.eng.g, self.root.ball, self.y, int(cls[i]), signs, self.root.lower,
                                      self.root.upper, delta, time_limit=max(0.1, deadline - time.perf_counter()))
                if x is None:
                    break
                found = self._attack(x[None])
                if found is not None:
                    return found
        return None

    def _attack(self, xs: np.ndarray):
        """The bound minimisers on the float32 model: the first verified adversarial one, or None."""
        xf = np.clip(xs.astype(np.float32), *self.eng.g.bounds)
        logits = np.asarray(self.logits_fn(xf.reshape(len(xf), *self.input_shape)), dtype=np.float32)
        adv = is_adversarial(logits, self.y)
        if not adv.any():
            return None
        i = int(np.flatnonzero(adv)[0])
        return xf[i], int(np.argmax(logits[i]))

    # ------------------------------------------------------------ the loop
    def _import(self, init: dict, classes: list[int]):
        """Subdomains of a query at a larger radius, moved onto this one's columns.

        What that query proved holds inside this smaller ball, so only its open subdomains
        need proofs here. A split on a neuron that is stable here is dropped when it agrees
        with the neuron's sign and makes the subdomain empty (so it is proven) when not.
        """
        keep = np.isin(init["cls"], classes)
        S_in, A_in, B_in, cls = init["S"][keep], init["A"][keep], init["B"][keep], init["cls"][keep]
        R = len(cls)
        S = np.zeros((R, self.U), np.int8)
        A = self._compact([np.broadcast_to(a, (R, len(a))) for a in self.default_alpha]) if self.U else \
            np.zeros((R, 0))
        B = np.zeros((R, self.U))
        pos = {int(g): j for j, g in enumerate(self.gid)}
        lo_all = np.concatenate(self.root.lower)
        hi_all = np.concatenate(self.root.upper)
        ok = np.ones(R, bool)
        for c, g in enumerate(init["gid"]):
            j = pos.get(int(g))
            if j is not None:
                S[:, j] = S_in[:, c]
                A[:, j] = A_in[:, c]
                B[:, j] = B_in[:, c]
            else:
                s = S_in[:, c]
                ok &= ~(((s < 0) & (lo_all[g] > 0)) | ((s > 0) & (hi_all[g] < 0)))
        return S[ok], A[ok], B[ok], cls[ok]

    def run(self, classes, deadline: float, init: dict | None = None, branch: bool = True) -> QueryResult:
        """Settle ``classes`` by ``deadline``; ``init``: open subdomains of a query at a larger
        radius (:meth:`open_domains`). ``branch=False``: bound the starting subdomains only
        (whatever the deadline), no splits."""
        t0 = time.perf_counter()
        classes = [int(k) for k in classes]
        status = {k: "unknown" for k in classes}
        res = QueryResult(status)
        if init is not None:
            S0, A0, B0, cls = self._import(init, classes)
            res.info["imported"] = int(len(cls))
        else:
            cls = np.array(classes, dtype=np.int64)
            S0 = np.zeros((len(cls), self.U), np.int8)
            A0 = self._compact([np.broadcast_to(a, (len(cls), len(a))) for a in self.default_alpha]) if self.U else \
                np.zeros((len(cls), 0))
            B0 = np.zeros_like(A0)
        for k in classes:
            if not np.any(cls == k):
                status[k] = "robust"
        store = _Store(self.U)
        self.store = store
        L0 = np.concatenate([lo[idx] for lo, idx in zip(self.root.lower, self.idx)])[None].repeat(len(cls), 0)
        H0 = np.concatenate([hi[idx] for hi, idx in zip(self.root.upper, self.idx)])[None].repeat(len(cls), 0)
        # Not bounded yet: lb -inf and split -2 (bounded first when popped).
        store.add(S0, A0, B0, np.full(len(cls), -np.inf), cls, np.full(len(cls), -2), L0, H0)
        iters0 = self.cfg.iters if init is not None else self.cfg.iters_root
        res.info["root_lb"] = {}
        while len(store) and (time.perf_counter() < deadline or (not branch and np.any(store.split == -2))):
            if np.any(store.split == -2):
                todo = np.flatnonzero(store.split == -2)[: 2 * self.cfg.batch]
                S, A, B, lb_p, cls_p, sp, L, H = store.take(todo)
                lb, A, B, split, xs, L, H = self._evaluate(S, A, B, cls_p, iters0, L, H, decide=branch)
                if init is None:
                    res.info["root_lb"].update({int(k): float(v) for k, v in zip(cls_p, lb)})
                res.domains += len(lb)
                found = self._attack(xs)
                if found is not None:
                    return self._finish(res, found, t0)
                keep = lb <= 0
                store.add(S[keep], A[keep], B[keep], lb[keep], cls_p[keep], split[keep], L[keep], H[keep])
                continue
            if not branch:
                break
            # A subdomain without a neuron left to split is a linear region: only better
            # multipliers can prove it (with enough steps beta-CROWN reaches the region's LP).
            stuck = np.flatnonzero(store.split == -1)
            if len(stuck):
                S, A, B, lb_p, cls_p, sp, L, H = store.take(stuck[: 2 * self.cfg.batch])
                signs, alphas, betas = self._dense(S, A, B)
                lows, ups = self._dense_bounds(L, H)
                lb, _, _, xs, _ = self.eng.optimise(
                    self.root, self.K, self._rows(cls_p), alphas, betas, signs, iters=self.cfg.iters_leaf,
                    lr_alpha=self.cfg.lr_alpha, lr_beta=self.cfg.lr_leaf, stop_at=0.0, lows=lows, ups=ups, full=True)
                lb = np.maximum(lb, lb_p)
                found = self._attack(xs)
                if found is not None:
                    return self._finish(res, found, t0)
                res.domains += len(lb)
                if np.any(lb <= 0):
                    lb = self._leaf_proof(lb, cls_p, signs, alphas, betas, lows, ups, deadline, res)
                if np.any(lb <= 0):
                    found = self._leaf_witness(S[lb <= 0], cls_p[lb <= 0], deadline)
                    if found is not None:
                        return self._finish(res, found, t0)
                    res.info["unresolved_leaves"] = int(np.sum(lb <= 0))
                    keep = lb <= 0
                    store.add(S[keep], A[keep], B[keep], lb[keep], cls_p[keep], np.full(int(keep.sum()), -3),
                              L[keep], H[keep])
                    break
                continue
            if np.any(store.split == -3):
                break
            S, A, B, lb_p, cls_p, sp, L, H = store.pop_worst(self.cfg.batch)
            n = len(lb_p)
            S2 = np.concatenate([S, S])
            S2[np.arange(n), sp] = 1
            S2[n + np.arange(n), sp] = -1
            A2, B2, cls2 = np.concatenate([A, A]), np.concatenate([B, B]), np.concatenate([cls_p, cls_p])
            L2, H2 = np.concatenate([L, L]), np.concatenate([H, H])
            lb2, A2, B2, split2, xs, L2, H2 = self._evaluate(S2, A2, B2, cls2, self.cfg.iters, L2, H2)
            lb2 = np.maximum(lb2, np.concatenate([lb_p, lb_p]))  # a child's domain lies inside its parent's
            res.rounds += 1
            res.domains += 2 * n
            found = self._attack(xs)
            if found is not None:
                return self._finish(res, found, t0, store)
            keep = lb2 <= 0
            store.add(S2[keep], A2[keep], B2[keep], lb2[keep], cls2[keep], split2[keep], L2[keep], H2[keep])
            res.max_queue = max(res.max_queue, len(store))
            if len(store) > self.cfg.max_domains:
                break
        for k in classes:
            if status[k] != "robust" and not np.any(store.cls == k):
                status[k] = "robust"
        res.info["open"] = int(len(store))
        res.info["complete"] = True  # the store holds every unproven subdomain
        res.info["min_lb"] = float(store.lb.min()) if len(store) else None
        res.seconds = time.perf_counter() - t0
        return res

    def open_domains(self) -> dict | None:
        """The unproven subdomains after :meth:`run` ended without a witness (else None)."""
        if self.store is None:
            return None
        st = self.store
        return {"gid": self.gid, "S": st.S.copy(), "A": st.A.copy(), "B": st.B.copy(), "cls": st.cls.copy()}

    def _finish(self, res: QueryResult, found, t0: float, store: _Store | None = None) -> QueryResult:
        self.store = None  # a round was cut short: the store no longer covers the ball
        res.witness, res.witness_class = found
        for k in res.status:
            if res.status[k] != "robust":
                res.status[k] = "unknown"
        res.status[int(res.witness_class)] = "attacked"
        res.seconds = time.perf_counter() - t0
        return res
