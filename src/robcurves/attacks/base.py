"""The shared base of the minimal-norm attacks and the method registry.

An attack is one small class. It is constructed with a norm and its options, bound to a
model once (:meth:`MinimalNormAttack.bind`, which builds its ``tf.function``), and then
called on batches of flattened inputs. It returns *candidates*: the engine re-verifies
every candidate on the model before it may count (see :mod:`robcurves.attacks.engine`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from robcurves.norms import Norm, parse_norm

METHODS: dict[str, type["MinimalNormAttack"]] = {}

# Options every method accepts; the engine, not the method, acts on them.
COMMON_OPTIONS: dict[str, Any] = {
    "name": None,
    # Bisection steps of the final line search along the segment x -> x_adv.
    "refine_steps": 12,
}


def register(cls: type["MinimalNormAttack"]) -> type["MinimalNormAttack"]:
    METHODS[cls.name] = cls
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
    if name not in METHODS:
        raise ValueError(f"unknown attack method {name!r}: expected one of {sorted(METHODS)}")
    cls = METHODS[name]
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


def margin_of(logits: tf.Tensor, y: tf.Tensor, target: tf.Tensor | None = None) -> tf.Tensor:
    """``z_y - max_{k != y} z_k`` per row: negative exactly when the label flips.

    With ``target`` (int per row), rows with ``target >= 0`` use ``z_y - z_target``
    instead; that is negative only when the label flips too.
    """
    onehot = tf.one_hot(y, tf.shape(logits)[1], dtype=tf.float32) > 0.5
    z_true = tf.reduce_sum(tf.where(onehot, logits, tf.zeros_like(logits)), axis=1)
    z_other = tf.reduce_max(tf.where(onehot, tf.fill(tf.shape(logits), -np.inf), logits), axis=1)
    if target is None:
        return z_true - z_other
    z_target = tf.gather(logits, tf.maximum(target, 0), axis=1, batch_dims=1)
    return z_true - tf.where(target >= 0, z_target, z_other)


def first_order_targets(logits_fn, x: tf.Tensor, y: tf.Tensor, k: int, ops, bounds, n_classes: int) -> tuple:
    """The ``k`` classes whose decision boundary is closest to first order.

    For every class c != y, the boundary z_y - z_c = 0 is linearised at x and the
    shortest perturbation inside the box that crosses it is computed exactly in the
    attack's norm (``ops.linear_distance``; exact for an affine model, box included).
    Returns ``(targets (B, k) int32, estimates (B, k) float32, finite (B,) bool)``,
    closest first; unreachable classes get +inf.
    """
    # The Jacobian from one batched backward pass over C copies of the batch (copy c
    # differentiates logit c): cheaper on CPU and GPU than a per-class loop.
    c = int(n_classes)
    b, d = tf.shape(x)[0], tf.shape(x)[1]
    xr = tf.repeat(x, c, axis=0)
    with tf.GradientTape() as tape:
        tape.watch(xr)
        zr = logits_fn(xr)
        picked = tf.reduce_sum(zr * tf.tile(tf.eye(c, dtype=zr.dtype), [b, 1]))
    jac = tf.reshape(tape.gradient(picked, xr), (b, c, d))  # (B, C, D)
    z = tf.reshape(zr, (b, c, c))[:, 0, :]
    onehot = tf.one_hot(y, c, dtype=tf.float32)
    j_true = tf.einsum("bc,bcd->bd", onehot, jac)
    z_true = tf.reduce_sum(onehot * z, axis=1)
    a = tf.reshape(jac - j_true[:, None, :], (b * c, d))  # need a . delta >= z_y - z_c
    m = tf.reshape(z_true[:, None] - z, (b * c,))
    lo = tf.reshape(tf.repeat((bounds[0] - x)[:, None, :], c, axis=1), (b * c, d))
    hi = tf.reshape(tf.repeat((bounds[1] - x)[:, None, :], c, axis=1), (b * c, d))
    finite = tf.reduce_all(tf.math.is_finite(z), axis=1) & tf.reduce_all(
        tf.math.is_finite(tf.reshape(jac, (b, -1))), axis=1)
    a = tf.where(tf.math.is_finite(a), a, tf.zeros_like(a))
    m = tf.where(tf.math.is_finite(m), m, tf.ones_like(m))
    est = tf.reshape(ops.linear_distance(a, m, lo, hi), (b, c))
    est = tf.where(onehot > 0.5, tf.fill(tf.shape(est), np.float32(np.inf)), est)
    neg, idx = tf.math.top_k(-est, k=k)
    return tf.cast(idx, tf.int32), -neg, finite


class MinimalNormAttack:
    """Base of all methods: searches the smallest-norm perturbation that flips the label.

    Subclasses set ``name``, ``norms`` and ``defaults`` (option -> default value) and
    implement :meth:`_build`, which returns a function ``(x, y, seed) -> (x_adv,
    nonfinite)`` on flattened float32 batches.
    """

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, norm: "Norm | str", **options: Any):
        self.norm = parse_norm(norm)
        cfg = validate_method_config(self.norm, {"name": self.name, **options})
        self.options = {k: v for k, v in cfg.items() if k != "name"}
        self._bound: tuple | None = None

    def bind(self, model, input_shape: tuple[int, ...], bounds: tuple[float, float], n_classes: int) -> None:
        """Build the batched search for ``model``; idempotent for the same model."""
        if self._bound is not None and self._bound[0] is model:
            return
        self._n_classes = int(n_classes)
        shape = tuple(int(s) for s in input_shape)
        dim = int(np.prod(shape))

        def logits_fn(xf):
            return tf.cast(model(tf.reshape(xf, (-1, *shape)), training=False), tf.float32)

        self._dim = dim
        self._bounds = (float(bounds[0]), float(bounds[1]))
        self._logits_fn = logits_fn
        self._search = self._build(logits_fn, dim)
        self._bound = (model,)

    def margin_and_grad(self, logits_fn, xf, y, target=None):
        """Margin, its gradient and a finite-ness flag per row; non-finite rows zeroed."""
        with tf.GradientTape() as tape:
            tape.watch(xf)
            z = logits_fn(xf)
            m = margin_of(z, y, target)
        g = tape.gradient(m, xf)
        finite = tf.reduce_all(tf.math.is_finite(z), axis=1) & tf.reduce_all(tf.math.is_finite(g), axis=1)
        g = tf.where(finite[:, None], g, tf.zeros_like(g))
        m = tf.where(finite, m, tf.fill(tf.shape(m), np.float32(np.inf)))
        return m, g, finite

    @staticmethod
    def keep_best(m, finite, n, delta, best, best_norm):
        """The smallest-norm adversarial iterate so far: ``(best, best_norm, adv)`` after
        looking at ``delta`` (norm ``n``, margin ``m``; adversarial where m < 0 and finite)."""
        adv = (m < 0.0) & finite
        improve = adv & (n < best_norm)
        return tf.where(improve[:, None], delta, best), tf.where(improve, n, best_norm), adv

    def build_estimates(self, logits_fn, dim: int, ops, n_targets: int):
        """A ``tf.function`` ``(x, y) -> (targets (B, K), eps0 (B, K), nonfinite (B,))``.

        ``n_targets = 0``: one untargeted column (target -1) whose eps0 is margin / dual
        norm of its gradient; ``k >= 1``: the k classes closest to first order (see
        :func:`first_order_targets`). eps0 is clipped into [1e-6, 1] x the box diameter.
        """
        from robcurves.attacks.geometry import max_distance

        eps_max = np.float32(max_distance(self.norm, dim, self._bounds))
        bounds = self._bounds

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.int32)])
        def estimates(x, y):
            if n_targets > 0:
                k = max(1, min(n_targets, int(self._n_classes) - 1))
                t, est, finite = first_order_targets(logits_fn, x, y, k, ops, bounds, self._n_classes)
            else:
                m, g, finite = self.margin_and_grad(logits_fn, x, y)
                est = (tf.maximum(m, 0.0) / (ops.dual_norm(g) + 1e-12))[:, None]
                t = -tf.ones_like(est, dtype=tf.int32)
            est = tf.where(tf.math.is_finite(est), est, tf.fill(tf.shape(est), eps_max))
            return t, tf.clip_by_value(est, 1e-6 * eps_max, eps_max), ~finite

        return estimates

    def _build(self, logits_fn, dim):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidates for one batch: ``(x_adv (B, D) float32, nonfinite (B,) bool)``.

        ``x`` is the flattened batch. Points where no candidate was found come back as
        ``x`` itself (distance 0), which verification rejects.
        """
        if self._bound is None:
            raise RuntimeError("bind() the attack to a model first")
        seed_pair = tf.constant(np.random.SeedSequence(int(seed)).generate_state(2).astype(np.int32) & 0x7FFFFFFF,
                                dtype=tf.int32)
        x_adv, nonfinite = self._search(tf.constant(x, tf.float32), tf.constant(y, tf.int32), seed_pair)
        return np.asarray(x_adv, dtype=np.float32), np.asarray(nonfinite, dtype=bool)
