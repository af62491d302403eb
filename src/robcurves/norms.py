"""The three perturbation norms: l-infinity, l2 and l1.

A norm is a small object, not an ``if norm == ...`` branch spread through the code.
Its canonical identifier (``"linf"``, ``"l2"``, ``"l1"``) is what configs, file names
and result records use; ``parse_norm`` also accepts the original code's spellings
(``inf``, ``2``, ``1``, ``np.inf``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Norm:
    """An l_p norm on flattened inputs."""

    name: str  # canonical identifier: "linf", "l2" or "l1"
    p: float  # math.inf, 2.0 or 1.0
    label: str  # for plots and TeX: r"$\ell_\infty$" etc.
    symbol: str = ""  # for plain text and Markdown: "ℓ∞" etc.

    @property
    def dual_p(self) -> float:
        """Exponent q of the dual norm, 1/p + 1/q = 1."""
        if math.isinf(self.p):
            return 1.0
        if self.p == 1.0:
            return math.inf
        return self.p / (self.p - 1.0)

    def distance(self, x: np.ndarray, x0: np.ndarray) -> np.ndarray:
        """Per-row ``||x - x0||_p`` of two batches, computed in float32.

        Returns an array of shape ``(len(x),)`` and dtype float32.
        """
        d = np.asarray(x, dtype=np.float32) - np.asarray(x0, dtype=np.float32)
        return self.norm_of(d)

    def norm_of(self, delta: np.ndarray) -> np.ndarray:
        """Per-row norm of a batch of perturbations, in float32."""
        d = np.asarray(delta, dtype=np.float32)
        if len(d) == 0:
            return np.zeros(0, dtype=np.float32)
        d = d.reshape(len(d), -1)
        if d.shape[1] == 0:
            return np.zeros(len(d), dtype=np.float32)
        if math.isinf(self.p):
            return np.max(np.abs(d), axis=1).astype(np.float32)
        if self.p == 1.0:
            return np.sum(np.abs(d), axis=1, dtype=np.float32)
        return np.sqrt(np.sum(d * d, axis=1, dtype=np.float32)).astype(np.float32)

    def abs_rows(self, a: np.ndarray) -> np.ndarray:
        """Per-row norm of rows of absolute values ``a`` (float64 in, float64 out; the
        direct distances of :mod:`robcurves.scale`)."""
        if math.isinf(self.p):
            return a.max(axis=1)
        if self.p == 1.0:
            return a.sum(axis=1)
        return np.sqrt(np.einsum("ij,ij->i", a, a))

    def float32_roundings(self, n: int) -> int:
        """How many float32 roundings a computed distance of ``n`` coordinates is from the
        real one (its relative error is at most gamma of that count): ``fl(x_i - x0_i)`` is
        one and the max is exact (linf); the l1 / l2 sums add ``n`` (in any order), l2 a
        square and a square root."""
        if self.is_box:
            return 2
        if self.p == 1.0:
            return n + 2
        return n + 4

    @property
    def is_box(self) -> bool:
        """Whether the ball is a box (linf): per-coordinate bounds describe it exactly."""
        return math.isinf(self.p)

    # ------------------------------------------------------------------ the ball in a MILP
    # ``milp`` is a :class:`robcurves.exact.milp.MilpBuilder` (``add_vars``, ``add_rows``,
    # ``set_cost``); ``x`` the column indices of the input, already bounded by the domain's
    # ``lo``/``hi`` (which hold the box and, for linf, the radius).

    @property
    def milp_encodable(self) -> bool:
        """Whether the ball and the distance are linear (linf, l1); l2 would need a quadratic
        objective (MIQP), which HiGHS cannot solve."""
        return math.isinf(self.p) or self.p == 1.0

    def _refuse_milp(self) -> None:
        if not self.milp_encodable:
            raise ValueError(f"exact: the {self.name} ball cannot be encoded in an LP/MILP (only linf and l1)")

    def add_milp_ball(self, milp, x: np.ndarray, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                      radius: float) -> None:
        """Rows that keep ``x`` within ``radius`` of ``x0``. linf: none (the ball is in
        ``lo``/``hi``); l1: ``d >= |x - x0|`` and ``sum d <= radius`` with new columns
        ``d``, added right after ``x`` (:meth:`add_milp_distance` finds them there)."""
        self._refuse_milp()
        if self.is_box:
            return
        n = len(x)
        d = milp.add_vars(np.zeros(n), np.maximum(hi - x0, x0 - lo))
        k = np.arange(n)
        # d - x >= -x0 ; d + x >= x0 ; sum d <= r
        milp.add_rows(np.concatenate([k, k, n + k, n + k]), np.concatenate([d, x, d, x]),
                      np.concatenate([np.ones(n), -np.ones(n), np.ones(n), np.ones(n)]),
                      np.concatenate([-x0, x0]), np.inf)
        milp.add_rows(np.zeros(n, dtype=np.int64), d, np.ones(n), -np.inf, radius)

    def add_milp_distance(self, milp, x: np.ndarray, x0: np.ndarray, radius: float) -> None:
        """The objective ``min ||x - x0||`` (after :meth:`add_milp_ball`). linf: a new column
        ``t <= radius`` with ``|x_i - x0_i| <= t``; l1: the sum of the ball's ``d``."""
        self._refuse_milp()
        n = len(x)
        if not self.is_box:
            milp.set_cost(np.asarray(x) + n, np.ones(n))
            return
        t = milp.add_vars(0.0, radius)
        k = np.arange(n)
        # x - t <= x0 ; x + t >= x0
        milp.add_rows(np.concatenate([k, k, n + k, n + k]),
                      np.concatenate([x, np.repeat(t, n), x, np.repeat(t, n)]),
                      np.concatenate([np.ones(n), -np.ones(n), np.ones(n), np.ones(n)]),
                      np.concatenate([np.full(n, -np.inf), x0]), np.concatenate([x0, np.full(n, np.inf)]))
        milp.set_cost(t, [1.0])

    def diameter(self, dim: int, bounds: "tuple[float, float]" = (0.0, 1.0)) -> float:
        """The largest distance (in this norm) of two points of the box ``bounds ** dim``:
        the radius of a ball around any point of the box that holds the whole box."""
        width = float(bounds[1]) - float(bounds[0])
        if math.isinf(self.p):
            return width
        if self.p == 2.0:
            return width * math.sqrt(dim)  # sqrt, not ** 0.5: the same bits as the attacks always had
        return width * float(dim) ** (1.0 / self.p)

    def ops(self, l1_sparsity: float = 0.01):
        """This norm as ``keras.ops`` operations on flattened batches (any Keras backend):
        ``norm``, ``dual_norm``, ``descent``, ``project``, ``random_in_ball`` and the
        linearised steps (:mod:`robcurves.attacks.geometry`; ``l1_sparsity``: the share of
        coordinates an l1 step moves)."""
        from robcurves.attacks.geometry import norm_ops

        return norm_ops(self, l1_sparsity)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.name


LINF = Norm("linf", math.inf, r"$\ell_\infty$", "ℓ∞")
L2 = Norm("l2", 2.0, r"$\ell_2$", "ℓ2")
L1 = Norm("l1", 1.0, r"$\ell_1$", "ℓ1")

NORMS = {n.name: n for n in (LINF, L2, L1)}

_ALIASES = {
    "linf": LINF, "inf": LINF, "li": LINF, "l_inf": LINF, "np.inf": LINF, "infinity": LINF,
    "l2": L2, "2": L2, "2.0": L2, "l_2": L2,
    "l1": L1, "1": L1, "1.0": L1, "l_1": L1,
}


def parse_norm(value: "str | float | int | Norm") -> Norm:
    """Return the :class:`Norm` named by ``value`` (``"inf"``, ``2``, ``"l1"``, ...)."""
    if isinstance(value, Norm):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        key = "inf" if math.isinf(value) else repr(float(value))
    else:
        key = str(value).strip().lower()
    try:
        return _ALIASES[key]
    except KeyError:
        raise ValueError(
            f"unknown norm {value!r}: expected one of linf (inf), l2 (2) or l1 (1)"
        ) from None
