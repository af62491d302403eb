"""The shared base of the minimal-norm attacks, the method registry and the bound model.

An attack is one small class. It is constructed with a norm and its options, bound to a
:class:`Problem` once (the model on the active Keras backend, its input shape, box and
number of classes; :meth:`MinimalNormAttack.bind` builds its compiled functions), and
then called on batches of flattened inputs. It returns *candidates*
(:class:`Candidates`): the engine re-verifies every candidate on the model before it may
count (see :mod:`robcurves.attacks.engine`).

Everything runs on ``keras.ops`` plus :mod:`robcurves.backend`, so the same code runs
under TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, ClassVar

import numpy as np
from keras import ops

from robcurves import backend as B
from robcurves.norms import Norm, parse_norm

ATTACK_METHODS: dict[str, type["MinimalNormAttack"]] = {}

# The smallest batch a compiled function is called with (see Problem.rows).
MIN_ROWS = 16

# Options every method accepts; the engine, not the method, acts on them.
COMMON_OPTIONS: dict[str, Any] = {
    "name": None,
    # Bisection steps of the final line search along the segment x -> x_adv.
    "refine_steps": 12,
}


def register(cls: type["MinimalNormAttack"]) -> type["MinimalNormAttack"]:
    ATTACK_METHODS[cls.name] = cls
    return cls


def validate_method_config(norm: "Norm | str", method_cfg: "dict | str") -> dict:
    """Check one method entry of the config; return it with defaults filled in.

    ``method_cfg`` is ``{"name": ..., option: value, ...}`` or just the name. Raises a
    ``ValueError`` naming an unknown method, an option the method does not have, a
    norm the method does not support, or an option of the wrong type.
    """
    norm = parse_norm(norm)
    if isinstance(method_cfg, str):
        method_cfg = {"name": method_cfg}
    if not isinstance(method_cfg, dict) or "name" not in method_cfg:
        raise ValueError(f"attack method entry must be a mapping with a 'name', got {method_cfg!r}")
    name = method_cfg["name"]
    if name not in ATTACK_METHODS:
        raise ValueError(f"unknown attack method {name!r}: expected one of {sorted(ATTACK_METHODS)}")
    cls = ATTACK_METHODS[name]
    if norm.name not in cls.norms:
        raise ValueError(f"attack method {name!r} does not support norm {norm.name} (it supports {list(cls.norms)})")
    allowed = {**COMMON_OPTIONS, **cls.defaults}
    unknown = sorted(set(method_cfg) - set(allowed))
    if unknown:
        raise ValueError(
            f"attack method {name!r}: unknown option(s) {unknown}; allowed: {sorted(k for k in allowed if k != 'name')}"
        )
    out = {**{k: v for k, v in allowed.items()}, **method_cfg}
    for key, default in allowed.items():
        if default is None or key == "name":
            continue
        value = out[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        else:
            ok = True
        if not ok:
            raise ValueError(
                f"attack method {name!r}: option {key!r} must be {type(default).__name__}, got {value!r}"
            )
        if isinstance(default, (int, float)) and not isinstance(default, bool) and value < 0:
            raise ValueError(f"attack method {name!r}: option {key!r} must be >= 0, got {value!r}")
        if isinstance(default, float):
            out[key] = float(value)
        elif isinstance(default, int) and not isinstance(default, bool):
            out[key] = int(value)
    return out


def margin_of(logits, y, target=None):
    """``z_y - max_{k != y} z_k`` per row, in float32: negative exactly when the label
    flips (the rule of :mod:`robcurves.adversarial`; a tie is not a flip).

    With ``target`` (int per row), rows with ``target >= 0`` use ``z_y - z_target``
    instead; that is negative only when the label flips too.
    """
    z = ops.cast(logits, "float32")
    onehot = ops.one_hot(y, ops.shape(z)[1], dtype="float32") > 0.5
    z_true = ops.sum(ops.where(onehot, z, ops.zeros_like(z)), axis=1)
    z_other = ops.max(ops.where(onehot, ops.full_like(z, -np.inf), z), axis=1)
    if target is None:
        return z_true - z_other
    z_target = ops.take_along_axis(z, ops.expand_dims(ops.maximum(target, 0), 1), axis=1)[:, 0]
    return z_true - ops.where(target >= 0, z_target, z_other)


def all_finite(v):
    """Per row: every entry finite."""
    return ops.all(ops.isfinite(v), axis=1)


@dataclass
class Candidates:
    """What one attack returns for a batch: candidates to verify, and what they cost.

    ``x_adv`` (B, D) float32 (the input itself where nothing was found), ``nonfinite``
    (B,) bool (non-finite logits or gradients were met), ``gradients`` (B,) int64: the
    input gradients spent per point (one backward pass over one row; a Jacobian over C
    classes costs C), ``forwards`` (B,) int64: forward-only passes per point.
    """

    x_adv: np.ndarray
    nonfinite: np.ndarray
    gradients: np.ndarray
    forwards: np.ndarray


class Problem:
    """A model bound for attacks on the active backend: flat inputs ``(B, D)`` in a box.

    ``logits(xf)`` (a backend tensor of flattened inputs -> float32 logits) and
    :meth:`margin_and_grad` are for use inside compiled functions; :meth:`predict`
    evaluates NumPy batches. Compiled functions are cached per key (:meth:`compiled`).
    """

    def __init__(self, model, input_shape: tuple[int, ...], bounds: tuple[float, float], n_classes: int):
        self.model = model
        self.backend = B.name()
        self.shape = tuple(int(s) for s in input_shape)
        self.dim = int(np.prod(self.shape))
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.n_classes = int(n_classes)
        self._logits = B.logits_function(model)
        self._cache: dict = {}
        self._grad = B.value_and_grad(self._margin_rows, argnums=0, has_aux=True)

    def logits(self, xf):
        return self._logits(ops.reshape(xf, (-1, *self.shape)))

    def _margin_rows(self, xf, y, target):
        z = self.logits(xf)
        return margin_of(z, y, target), z

    def margin_and_grad(self, xf, y, target=None):
        """Margin, its input gradient and a finite-ness flag per row (gradient zeroed and
        margin +inf on rows with non-finite logits or gradients)."""
        if target is None:
            target = -ops.ones_like(y)
        (m, z), g = self._grad(xf, y, target)
        finite = all_finite(z) & all_finite(g)
        g = ops.where(ops.expand_dims(finite, 1), g, ops.zeros_like(g))
        m = ops.where(finite, m, ops.full_like(m, np.inf))
        return m, g, finite

    def compiled(self, key, build: Callable[[], Callable]) -> Callable:
        """The compiled function under ``key``, built (and compiled) once."""
        if key not in self._cache:
            self._cache[key] = B.compile(build())
        return self._cache[key]

    def rows(self, n: int) -> int:
        """Rows to run ``n`` rows as (the caller pads with copies and drops them).

        - At least :data:`MIN_ROWS`: on the CPU, oneDNN's matrix products give other bits
          for a row in a batch of fewer than 16 rows (measured on the MMR network: logits
          at 1 row, input gradients at 1-15 rows; identical from 16 rows on). With this
          floor a point's numbers do not depend on how many other points share its batch,
          so 1 shard and 3 shards give identical curves.
        - Under JAX (which compiles one program per shape) the next power of two, so that
          a shrinking batch reuses a few programs (at most ~log2 of the batch size);
          TensorFlow traces once for any batch size, PyTorch runs eagerly.
        """
        n = max(int(n), MIN_ROWS)
        if self.backend != "jax":
            return n
        return 1 << (n - 1).bit_length()

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """float32 logits of NumPy inputs shaped like the model's (or flattened)."""
        x = np.asarray(x, np.float32).reshape(-1, self.dim)
        fn = self.compiled("predict", lambda: self.logits)
        out = []
        with B.inference():
            for i in range(0, len(x), max(1, int(batch_size))):
                part = x[i:i + batch_size]
                n = len(part)
                rows = self.rows(n)
                if rows > n:
                    part = np.concatenate([part, np.repeat(part[:1], rows - n, axis=0)])
                out.append(B.to_numpy(fn(B.to_tensor(part)))[:n].astype(np.float32))
        if not out:
            return np.zeros((0, self.n_classes), np.float32)
        return np.concatenate(out)


def pad_rows(arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
    """Pad each array to ``rows`` rows by repeating its first row (results are dropped)."""
    out = []
    for a in arrays:
        n = len(a)
        out.append(a if rows == n else np.concatenate([a, np.repeat(a[:1], rows - n, axis=0)]))
    return out


def best_of_target_rows(x, best, best_norm, bad, bad0, bounds) -> SimpleNamespace:
    """A search's result from its target-major rows (row ``t * n + i``: point ``i``, target ``t``).

    Per point the row with the smallest verified-so-far norm ``best_norm`` (+inf: none
    found; then the clean point) gives ``x_adv = clip(x + best, bounds)``; ``nonfinite``
    says where the estimates (``bad0`` per point) or a row (``bad``) met a non-finite value.
    Gradients and forwards are the caller's (zeros here)."""
    n = len(x)
    kk = len(best_norm) // max(n, 1)
    nrm = best_norm.reshape(kk, n)
    pick = np.argmin(nrm, axis=0)
    chosen = best.reshape(kk, n, -1)[pick, np.arange(n)]
    chosen = np.where(np.isfinite(nrm.min(axis=0))[:, None], chosen, 0.0)
    nonfinite = bad0.astype(bool) | bad.reshape(kk, n).any(axis=0)
    return SimpleNamespace(x_adv=np.clip(x + chosen, bounds[0], bounds[1]).astype(np.float32), nonfinite=nonfinite,
                           gradients=np.zeros(n, np.int64), forwards=np.zeros(n, np.int64))


def first_order_targets(problem: Problem, ops_norm, x, y, k: int):
    """The ``k`` classes whose decision boundary is closest to first order.

    For every class c != y, the boundary z_y - z_c = 0 is linearised at x and the
    shortest perturbation inside the box that crosses it is computed exactly in the
    attack's norm (``ops_norm.linear_distance``; exact for an affine model, box included).
    Returns ``(targets (B, k) int32, estimates (B, k) float32, finite (B,) bool)``,
    closest first; unreachable classes get +inf. Costs C gradients per point.
    """
    # The Jacobian from one batched backward pass over C copies of the batch (copy c
    # differentiates logit c): cheaper on CPU and GPU than a per-class loop.
    c = problem.n_classes
    b = ops.shape(x)[0]
    d = problem.dim
    lo_b, hi_b = problem.bounds
    xr = ops.repeat(x, c, axis=0)
    eye = ops.tile(ops.eye(c, dtype="float32"), (b, 1))

    def picked(xx):
        zz = problem.logits(xx)
        return ops.sum(zz * eye, axis=1), zz

    (_, zr), jac = B.value_and_grad(picked, has_aux=True)(xr)
    jac = ops.reshape(jac, (b, c, d))
    z = ops.reshape(zr, (b, c, c))[:, 0, :]
    onehot = ops.one_hot(y, c, dtype="float32")
    j_true = ops.einsum("bc,bcd->bd", onehot, jac)
    z_true = ops.sum(onehot * z, axis=1)
    a = ops.reshape(jac - ops.expand_dims(j_true, 1), (b * c, d))  # need a . delta >= z_y - z_c
    m = ops.reshape(ops.expand_dims(z_true, 1) - z, (b * c,))
    lo = ops.reshape(ops.repeat(ops.expand_dims(lo_b - x, 1), c, axis=1), (b * c, d))
    hi = ops.reshape(ops.repeat(ops.expand_dims(hi_b - x, 1), c, axis=1), (b * c, d))
    finite = all_finite(z) & all_finite(ops.reshape(jac, (b, c * d)))
    a = ops.where(ops.isfinite(a), a, ops.zeros_like(a))
    m = ops.where(ops.isfinite(m), m, ops.ones_like(m))
    est = ops.reshape(ops_norm.linear_distance(a, m, lo, hi), (b, c))
    est = ops.where(onehot > 0.5, ops.full_like(est, np.inf), est)
    neg, idx = ops.top_k(-est, k=k)
    return ops.cast(idx, "int32"), -neg, finite


class MinimalNormAttack:
    """Base of all methods: searches the smallest-norm perturbation that flips the label.

    Subclasses set ``name``, ``norms`` and ``defaults`` (option -> default value) and
    implement :meth:`_build`, which returns a function ``(x, y, seed, incumbent) ->
    Candidates`` on flattened float32 NumPy batches (``incumbent``: the best verified
    distance per point so far, +inf where none; a method may skip points it cannot
    improve).
    """

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, norm: "Norm | str", **options: Any):
        self.norm = parse_norm(norm)
        cfg = validate_method_config(self.norm, {"name": self.name, **options})
        self.options = {k: v for k, v in cfg.items() if k != "name"}
        self._problem: Problem | None = None

    def bind(self, problem: Problem) -> None:
        """Build the batched search for ``problem``; idempotent for the same problem."""
        if self._problem is problem:
            return
        self._problem = problem
        self._dim = problem.dim
        self._bounds = problem.bounds
        self._n_classes = problem.n_classes
        self._search = self._build(problem)

    @staticmethod
    def keep_best(m, finite, n, delta, best, best_norm):
        """The smallest-norm adversarial iterate so far: ``(best, best_norm, adv)`` after
        looking at ``delta`` (norm ``n``, margin ``m``; adversarial where m < 0 and finite)."""
        adv = (m < 0.0) & finite
        improve = adv & (n < best_norm)
        return ops.where(ops.expand_dims(improve, 1), delta, best), ops.where(improve, n, best_norm), adv

    def build_estimates(self, problem: Problem, ops_norm, n_targets: int) -> Callable:
        """``(x, y) -> (targets (B, K), eps0 (B, K), nonfinite (B,))`` on NumPy batches
        (a compiled function inside, called on padded batches).

        ``n_targets = 0``: one untargeted column (target -1) whose eps0 is margin / dual
        norm of its gradient (1 gradient per point); ``k >= 1``: the k classes closest to
        first order (see :func:`first_order_targets`; C gradients per point). eps0 is
        clipped into [1e-6, 1] x the box diameter.
        """
        from robcurves.attacks.geometry import max_distance

        eps_max = np.float32(max_distance(self.norm, problem.dim, problem.bounds))

        def estimates(x, y):
            if n_targets > 0:
                k = max(1, min(n_targets, problem.n_classes - 1))
                t, est, finite = first_order_targets(problem, ops_norm, x, y, k)
            else:
                m, g, finite = problem.margin_and_grad(x, y)
                est = ops.expand_dims(ops.maximum(m, 0.0) / (ops_norm.dual_norm(g) + 1e-12), 1)
                t = -ops.ones_like(ops.cast(est, "int32"))
            est = ops.where(ops.isfinite(est), est, ops.full_like(est, eps_max))
            return t, ops.clip(est, 1e-6 * eps_max, eps_max), ~finite

        fn = problem.compiled(("estimates", self.norm.name, int(n_targets), getattr(ops_norm, "key", "")),
                              lambda: estimates)

        def padded(x, y):
            """``estimates`` on NumPy batches, padded to :meth:`Problem.rows` rows."""
            n = len(x)
            xa, ya = pad_rows([np.asarray(x, np.float32), np.asarray(y, np.int32)], problem.rows(n))
            return tuple(B.to_numpy(v)[:n] for v in fn(B.to_tensor(xa), B.to_tensor(ya, "int32")))

        return padded

    def estimate_cost(self, n_targets: int) -> int:
        """Gradients per point of :meth:`build_estimates`."""
        return self._n_classes if n_targets > 0 else 1

    def _build(self, problem: Problem):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, x: np.ndarray, y: np.ndarray, seed: "int | np.ndarray" = 0,
            incumbent: np.ndarray | None = None, warm: np.ndarray | None = None) -> Candidates:
        """Candidates for one batch (``x`` flattened ``(B, D)``, ``y`` ``(B,)``).

        ``seed``: an int (row ``r`` then gets the stream ``seed_pair(seed, r)``) or
        per-row seeds ``(B, 2)`` int32 (:func:`robcurves.backend.row_seeds`). Points
        where no candidate was found come back as ``x`` itself (distance 0), which
        verification rejects.
        """
        if self._problem is None:
            raise RuntimeError("bind() the attack to a model first")
        x = np.ascontiguousarray(x, np.float32)
        y = np.asarray(y, np.int32)
        inc = np.full(len(x), np.inf, np.float32) if incumbent is None else np.asarray(incumbent, np.float32)
        if np.ndim(seed) == 0:
            seeds = B.row_seeds(int(seed), np.arange(len(x)))
        else:
            seeds = np.asarray(seed, np.int32).reshape(len(x), 2)
        warm = x if warm is None else np.ascontiguousarray(warm, np.float32).reshape(x.shape)
        self._warm = warm
        out = self._search(x, y, seeds, inc)
        return Candidates(np.asarray(out.x_adv, np.float32), np.asarray(out.nonfinite, bool),
                          np.asarray(out.gradients, np.int64), np.asarray(out.forwards, np.int64))
