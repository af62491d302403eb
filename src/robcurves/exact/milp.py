"""The MILP builder (bulk sparse blocks) and the HiGHS driver.

Variables and constraints are added in blocks: every call appends whole arrays of
bounds and one COO block of coefficients, and :meth:`MilpBuilder.to_highs` hands the
solver one column-wise sparse matrix in a single ``passModel`` call. Nothing loops over
variables in Python.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

INF = math.inf


@dataclass
class VarVector:
    """A vector of MILP values: variable ``idx[j]``, or the constant ``const[j]`` where ``idx[j] == -1``."""

    idx: np.ndarray
    const: np.ndarray

    @classmethod
    def of_vars(cls, idx: np.ndarray) -> "VarVector":
        idx = np.asarray(idx, dtype=np.int64)
        return cls(idx, np.zeros(len(idx)))

    def __len__(self) -> int:
        return len(self.idx)


class MilpBuilder:
    """Accumulates columns and row blocks; minimisation of ``cost @ x``."""

    def __init__(self) -> None:
        self.n_cols = 0
        self.n_rows = 0
        self._col_lo: list[np.ndarray] = []
        self._col_hi: list[np.ndarray] = []
        self._col_int: list[np.ndarray] = []
        self._row_lo: list[np.ndarray] = []
        self._row_hi: list[np.ndarray] = []
        self._r: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self.cost: dict[int, float] = {}
        self.binaries = 0

    # ------------------------------------------------------------------ blocks
    def add_vars(self, lo, hi, integer: bool = False) -> np.ndarray:
        lo = np.atleast_1d(np.asarray(lo, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(hi, dtype=np.float64))
        lo, hi = np.broadcast_arrays(lo, hi)
        n = len(lo)
        idx = np.arange(self.n_cols, self.n_cols + n, dtype=np.int64)
        self._col_lo.append(lo.copy())
        self._col_hi.append(hi.copy())
        self._col_int.append(np.full(n, bool(integer)))
        self.n_cols += n
        if integer:
            self.binaries += n
        return idx

    def add_rows(self, rows, cols, vals, lo, hi, n: int | None = None) -> np.ndarray:
        """Rows ``lo <= A x <= hi``; ``rows`` are local (0 .. n-1), ``cols`` are variable indices."""
        lo = np.atleast_1d(np.asarray(lo, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(hi, dtype=np.float64))
        lo, hi = np.broadcast_arrays(lo, hi)
        n = len(lo) if n is None else n
        self._r.append(np.asarray(rows, dtype=np.int64) + self.n_rows)
        self._c.append(np.asarray(cols, dtype=np.int64))
        self._v.append(np.asarray(vals, dtype=np.float64))
        self._row_lo.append(np.broadcast_to(lo, (n,)).copy())
        self._row_hi.append(np.broadcast_to(hi, (n,)).copy())
        out = np.arange(self.n_rows, self.n_rows + n, dtype=np.int64)
        self.n_rows += n
        return out

    def add_affine(self, W: sp.csr_matrix, b: np.ndarray, h: VarVector, lo: np.ndarray, hi: np.ndarray,
                   needed: np.ndarray | None = None) -> VarVector:
        """New variables ``z`` in [lo, hi] with ``z - W h = b`` (constants in ``h`` folded into the rhs).

        Only the units in ``needed`` (a boolean mask) get a variable; the others are
        returned as the constant 0 (for units that a ReLU turns off anyway, or logits that
        the objective does not use).
        """
        n_all = W.shape[0]
        rows_kept = np.arange(n_all) if needed is None else np.flatnonzero(needed)
        Wk = W[rows_kept]
        n_out = len(rows_kept)
        is_var = h.idx >= 0
        rhs = np.asarray(b, dtype=np.float64)[rows_kept].copy()
        if (~is_var).any():
            rhs += Wk[:, ~is_var] @ h.const[~is_var]
        z = self.add_vars(np.asarray(lo)[rows_kept], np.asarray(hi)[rows_kept])
        block = Wk[:, is_var].tocoo()
        rows = np.concatenate([np.arange(n_out), block.row])
        cols = np.concatenate([z, h.idx[is_var][block.col]])
        vals = np.concatenate([np.ones(n_out), -block.data])
        self.add_rows(rows, cols, vals, rhs, rhs)
        idx = np.full(n_all, -1, dtype=np.int64)
        idx[rows_kept] = z
        return VarVector(idx, np.zeros(n_all))

    def add_relu(self, z: VarVector, lo: np.ndarray, hi: np.ndarray, relax: bool = False) -> VarVector:
        """``a = max(z, 0)`` given ``lo <= z <= hi``: MIPVerify's big-M encoding.

        Inactive units (hi <= 0) become the constant 0, active ones (lo >= 0) are ``z``
        itself; only unstable units get a new ``a`` in [0, hi] and an indicator ``d``:
        ``a >= z``, ``a <= z - lo (1 - d)``, ``a <= hi d``.
        """
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        idx = np.full(len(z), -1, dtype=np.int64)
        const = np.maximum(z.const, 0.0)
        active = lo >= 0
        idx[active] = z.idx[active]
        unstable = np.flatnonzero((lo < 0) & (hi > 0) & (z.idx >= 0))
        m = len(unstable)
        if m:
            l, u, zi = lo[unstable], hi[unstable], z.idx[unstable]
            a = self.add_vars(np.zeros(m), u)
            d = self.add_vars(np.zeros(m), np.ones(m), integer=not relax)
            k = np.arange(m)
            # row k: a - z >= 0;  row m+k: a - z - l d <= -l;  row 2m+k: a - u d <= 0
            rows = np.concatenate([k, k, m + k, m + k, m + k, 2 * m + k, 2 * m + k])
            cols = np.concatenate([a, zi, a, zi, d, a, d])
            vals = np.concatenate([np.ones(m), -np.ones(m), np.ones(m), -np.ones(m), -l, np.ones(m), -u])
            row_lo = np.concatenate([np.zeros(m), np.full(m, -INF), np.full(m, -INF)])
            row_hi = np.concatenate([np.full(m, INF), -l, np.zeros(m)])
            self.add_rows(rows, cols, vals, row_lo, row_hi)
            idx[unstable] = a
        return VarVector(idx, const)

    def add_sum(self, hs: "list[VarVector]", lo: np.ndarray, hi: np.ndarray,
                needed: np.ndarray | None = None) -> VarVector:
        """New variables ``z = sum_i h_i`` in [lo, hi] (residual additions); constants go to the rhs.

        Units outside ``needed`` are returned as the constant 0 (as in :meth:`add_affine`).
        """
        n_all = len(hs[0])
        keep = np.arange(n_all) if needed is None else np.flatnonzero(needed)
        n = len(keep)
        z = self.add_vars(np.asarray(lo, dtype=np.float64)[keep], np.asarray(hi, dtype=np.float64)[keep])
        rows, cols, vals = [np.arange(n)], [z], [np.ones(n)]
        rhs = np.zeros(n)
        for h in hs:
            idx, const = h.idx[keep], h.const[keep]
            v = idx >= 0
            rows.append(np.flatnonzero(v))
            cols.append(idx[v])
            vals.append(-np.ones(int(v.sum())))
            rhs += np.where(v, 0.0, const)
        self.add_rows(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), rhs, rhs)
        idx = np.full(n_all, -1, dtype=np.int64)
        idx[keep] = z
        return VarVector(idx, np.zeros(n_all))

    def add_max(self, h: VarVector, groups: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                out_lo: np.ndarray | None = None, out_hi: np.ndarray | None = None, relax: bool = False) -> VarVector:
        """``y_o = max_{j in groups[o]} h_j`` (max pooling) with MIPVerify's encoding.

        ``groups``: ``(n_out, k)`` indices into ``h`` (-1: padding, never the max); ``lo``/``hi``
        bound ``h``. Inputs whose upper bound is below the largest lower bound of their
        window can never be the maximum and are dropped; a window left with one input is
        that input (no new variable). Otherwise ``y >= h_j`` for every candidate, one binary
        ``a_j`` per candidate with ``sum a_j = 1`` and ``y <= h_j + (U - l_j)(1 - a_j)``,
        ``U`` the largest upper bound. ``relax=True`` makes the binaries continuous in [0, 1].
        """
        groups = np.asarray(groups, dtype=np.int64)
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        valid = groups >= 0
        g = np.where(valid, groups, 0)
        glo = np.where(valid, lo[g], -INF)
        ghi = np.where(valid, hi[g], -INF)
        lmax = glo.max(axis=1)
        cand = valid & (ghi >= lmax[:, None])
        n_cand = cand.sum(axis=1)
        n_out = len(groups)
        idx = np.full(n_out, -1, dtype=np.int64)
        const = np.zeros(n_out)
        single = np.flatnonzero(n_cand == 1)
        if len(single):
            j = g[single, np.argmax(cand[single], axis=1)]
            idx[single], const[single] = h.idx[j], h.const[j]
        multi = np.flatnonzero(n_cand > 1)
        if len(multi):
            U = np.where(cand[multi], ghi[multi], -INF).max(axis=1)
            ylo = lmax[multi] if out_lo is None else np.maximum(lmax[multi], np.asarray(out_lo)[multi])
            yhi = U if out_hi is None else np.minimum(U, np.asarray(out_hi)[multi])
            y = self.add_vars(ylo, yhi)
            o_loc, kk = np.nonzero(cand[multi])  # candidate pairs, by local output
            j = g[multi][o_loc, kk]
            m = len(o_loc)
            a = self.add_vars(np.zeros(m), np.ones(m), integer=not relax)
            xi, xc = h.idx[j], h.const[j]
            isv = xi >= 0
            r = np.arange(m)
            # y - x_j >= 0
            rows = [r, r[isv]]
            cols = [y[o_loc], xi[isv]]
            vals = [np.ones(m), -np.ones(int(isv.sum()))]
            lo1 = np.where(isv, 0.0, xc)
            self.add_rows(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), lo1, INF, n=m)
            # y - x_j + (U - l_j) a_j <= U - l_j
            big = U[o_loc] - lo[j]
            rows = [r, r[isv], r]
            cols = [y[o_loc], xi[isv], a]
            vals = [np.ones(m), -np.ones(int(isv.sum())), big]
            self.add_rows(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), -INF,
                          big + np.where(isv, 0.0, xc), n=m)
            # sum_j a_j = 1 per window
            self.add_rows(o_loc, a, np.ones(m), 1.0, 1.0, n=len(multi))
            idx[multi] = y
        return VarVector(idx, const)

    def set_cost(self, cols, coefs) -> None:
        self.cost = {}
        for c, v in zip(np.atleast_1d(cols), np.atleast_1d(coefs)):
            self.cost[int(c)] = self.cost.get(int(c), 0.0) + float(v)

    # ------------------------------------------------------------------ export
    def matrix(self) -> sp.csc_matrix:
        r = np.concatenate(self._r) if self._r else np.zeros(0, dtype=np.int64)
        c = np.concatenate(self._c) if self._c else np.zeros(0, dtype=np.int64)
        v = np.concatenate(self._v) if self._v else np.zeros(0)
        return sp.csc_matrix((v, (r, c)), shape=(self.n_rows, self.n_cols))

    def col_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self._col_lo), np.concatenate(self._col_hi)

    def to_highs(self, threads: int = 1, log: bool = False, presolve: bool = False, heuristics: bool = True):
        """The model in a new ``highspy.Highs`` (one ``passModel`` call).

        ``heuristics=False`` switches off HiGHS's primal heuristics (RINS, RENS, feasibility
        jump, root reduced-cost fixing) and its restarts. On the margin and distance MILPs
        of a network the incumbent comes from the attack, and those heuristics spent most
        of the time limit at the root node without finding anything: measured on the MMR
        MNIST network (test point 1, radius 0.205, 207 binaries), a margin query that had
        not left the root node after 60 s was solved in 28 s without them.
        """
        import highspy

        A = self.matrix()
        A.sum_duplicates()
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_cols
        lp.num_row_ = self.n_rows
        cost = np.zeros(self.n_cols)
        for c, v in self.cost.items():
            cost[c] = v
        lp.col_cost_ = cost
        lo, hi = self.col_bounds()
        lp.col_lower_ = lo
        lp.col_upper_ = hi
        lp.row_lower_ = np.concatenate(self._row_lo) if self._row_lo else np.zeros(0)
        lp.row_upper_ = np.concatenate(self._row_hi) if self._row_hi else np.zeros(0)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data
        lp.a_matrix_.num_col_ = self.n_cols
        lp.a_matrix_.num_row_ = self.n_rows
        ints = np.concatenate(self._col_int)
        if ints.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in ints]
        h = highspy.Highs()
        h.setOptionValue("output_flag", bool(log))
        h.setOptionValue("threads", int(threads))
        h.setOptionValue("random_seed", 0)
        # HiGHS's MIP presolve spends far longer on these wide conv/dense rows than the
        # solve itself (measured: 15 s vs 0.05 s on the MNIST conv net), so it is off by default.
        h.setOptionValue("presolve", "on" if presolve else "off")
        if not heuristics:
            for opt in ("mip_heuristic_run_rins", "mip_heuristic_run_rens", "mip_heuristic_run_feasibility_jump",
                        "mip_heuristic_run_root_reduced_cost", "mip_allow_restart"):
                h.setOptionValue(opt, False)
            h.setOptionValue("mip_heuristic_effort", 0.0)
        h.passModel(lp)
        return h


@dataclass
class MilpResult:
    """Outcome of one HiGHS run. ``status``: optimal | infeasible | time_limit | error."""

    status: str
    objective: float  # best solution's objective (inf if none)
    dual_bound: float  # proven lower bound on the objective (minimisation)
    x: np.ndarray | None  # column values of the best solution
    seconds: float
    nodes: int = 0


def run_highs(h, time_limit: float, cutoff: float | None = None, stop_below: float | None = None,
              rel_gap: float = 1e-4, abs_gap: float = 1e-6) -> MilpResult:
    """Solve the model in ``h`` (minimisation) with a time limit and an optional cutoff.

    With ``cutoff`` only solutions with objective below it count; "infeasible" then means
    that none exists, so the dual bound is the cutoff. ``stop_below`` stops at the first
    solution with objective below ``stop_below`` (used by the margin queries).
    """
    import highspy

    h.setOptionValue("time_limit", float(max(time_limit, 0.01)))
    h.setOptionValue("mip_rel_gap", float(rel_gap))
    h.setOptionValue("mip_abs_gap", float(abs_gap))
    # Tighter than HiGHS's default 1e-6, so fewer solutions sit on the wrong side of a tie.
    h.setOptionValue("mip_feasibility_tolerance", 1e-8)
    if cutoff is not None and math.isfinite(cutoff):
        h.setOptionValue("objective_bound", float(cutoff))
    if stop_below is not None:
        found = {"stop": False}

        def on_solution(e) -> None:
            if e.data_out.objective_function_value < stop_below:
                found["stop"] = True

        def on_interrupt(e) -> None:
            if found["stop"]:
                e.interrupt()

        h.cbMipImprovingSolution.subscribe(on_solution)
        h.cbMipInterrupt.subscribe(on_interrupt)
    t0 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t0
    ms = h.getModelStatus()
    info = h.getInfo()
    M = highspy.HighsModelStatus
    has_sol = info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible
    obj = float(info.objective_function_value) if has_sol else INF
    x = np.asarray(h.getSolution().col_value, dtype=np.float64) if has_sol else None
    is_mip = h.getNumCol() > 0 and any(v == highspy.HighsVarType.kInteger for v in (h.getLp().integrality_ or []))
    dual = float(info.mip_dual_bound) if is_mip else (obj if ms == M.kOptimal else -INF)
    if ms == M.kOptimal:
        status = "optimal"
        if not is_mip:
            dual = obj
    elif ms in (M.kInfeasible, M.kObjectiveBound):
        status = "infeasible"
        dual = cutoff if cutoff is not None else INF
    elif ms in (M.kTimeLimit, M.kSolutionLimit, M.kInterrupt, M.kHighsInterrupt, M.kIterationLimit):
        status = "time_limit"
    else:
        status = "error"
    if not math.isfinite(dual) or math.isnan(dual):
        dual = -INF if status != "infeasible" else dual
    nodes = int(getattr(info, "mip_node_count", 0) or 0)
    return MilpResult(status, obj, dual, x, seconds, nodes)
