"""Training rules of the model zoo: ST, PGD adversarial training, MMR+AT and IBP.

One entry point, :func:`train_model`, trains a Keras model in place with one of the
methods in :data:`METHODS` and returns a JSON-ready record of what it did (settings,
final training loss and accuracy, wall time) for the model sidecar's ``made_by``.

Methods (``eps`` is the training radius, measured in the method's norm; inputs in [0, 1]):

- ``st``: standard training, mean cross-entropy, Adam.
- ``at_linf``, ``at_l2``: adversarial training in the style of Madry et al. (2018): a
  fraction ``ae_frac`` of every batch is replaced by PGD adversarial examples at ``eps``
  (random start, ``pgd_steps`` steps of size ``pgd_step_size``; Croce et al.'s default
  step ``2 * eps / pgd_steps``).
- ``mmr_at_linf``, ``mmr_at_l2``: the maximum-margin regulariser (MMR) of Croce,
  Andriushchenko and Hein (AISTATS 2019) on top of the adversarial training above, as
  in their code: for every point, the distances (in the attacked norm) to the
  ``n_rb`` closest hyperplanes of its linear region and to the closest decision
  hyperplanes are pushed above ``gamma_rb`` and ``gamma_db``.
- ``ibp_linf``, ``ibp_l2``: interval bound propagation (Gowal et al., 2018). The
  worst-case logits inside the eps-ball enter the loss ``kappa * CE(z) + (1 - kappa) *
  CE(z_worst)``; eps ramps up from 0 and kappa down from 1 after a warm-up.

Networks are read as the one network description (:func:`robcurves.network.from_keras`
with ``live=True``: its layers hold the model's own variables). Each layer evaluates
itself, pushes directions through its linear region (:meth:`Layer.jvp`, for MMR) and
propagates intervals (:func:`robcurves.network.interval_bounds`, for IBP), so any graph the
description reads (Conv2D, Dense, ReLU, Flatten, Reshape, Add, pooling) trains.

Determinism: batches are shuffled by a NumPy generator seeded with ``seed``; PGD random
starts use stateless TensorFlow random ops seeded with ``(seed, step)``; the global
Keras seed is set too, and TensorFlow's op determinism is on while training (option
``deterministic``). Given the same initial weights, the same call gives the same
weights (on the same machine and TensorFlow build).

The option defaults follow the original papers (Croce et al.'s README for MNIST:
lambda 0.5, gamma = 2 eps, ae_frac 0.5). On 8x8 digits (lenet_small, 40 epochs, batch
64, Adam 2e-3) the zoo whose curves cross visibly is: ``at_linf`` eps 0.1, ``at_l2``
eps 1.0, ``mmr_at_linf`` eps 0.1 with lmbd 4 and gamma_rb = gamma_db = 0.3,
``mmr_at_l2`` eps 1.0 with lmbd 4 and gammas 3.0, ``ibp_linf`` eps 0.2, ``ibp_l2``
eps 0.25.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from robcurves.network import Domain, Network, from_keras  # noqa: E402
from robcurves.network import interval_bounds as _node_intervals  # noqa: E402
from robcurves.norms import Norm, parse_norm  # noqa: E402
from robcurves.progress import Progress  # noqa: E402

_STABLE = 1e-5  # floor for the dual norms in MMR's distance denominators, as in Croce et al.


# ============================================================================ methods

#: Options every method accepts, with their defaults.
COMMON_DEFAULTS: dict[str, Any] = {
    # The learning rate is divided by 10 for the last (1 - lr_drop_frac) of the epochs,
    # as in Croce et al.'s train.py (drop at 90%). 1.0 disables the drop.
    "lr_drop_frac": 0.9,
    # tf.config.experimental.enable_op_determinism() before training (process-wide).
    "deterministic": True,
}

_AT_DEFAULTS: dict[str, Any] = {
    "ae_frac": 0.5,  # fraction of each batch replaced by adversarial examples (Croce et al.)
    "pgd_steps": 10,
    "pgd_step_size": None,  # None: 2 * eps / pgd_steps (Croce et al.)
    "pgd_random_start": True,
}

_MMR_DEFAULTS: dict[str, Any] = {
    **_AT_DEFAULTS,
    "lmbd": 0.5,  # weight of the regulariser (Croce et al.'s README, MNIST l_inf CNN)
    "gamma_rb": None,  # None: 2 * eps (README: 0.2 for eps 0.1 on MNIST)
    "gamma_db": None,  # None: 2 * eps
    "n_rb_frac_start": 0.1,  # n_rb: fraction of all hidden units, 10% -> 2% over training
    "n_rb_frac_end": 0.02,
    "n_db": None,  # None: the number of classes (all decision boundaries)
    "reg_ramp_frac": 0.1,  # regulariser weight ramps 0 -> 1 over the first 10% of epochs
}

_IBP_DEFAULTS: dict[str, Any] = {
    "kappa_final": 0.5,
    "eps_train_factor": 1.1,  # train at a slightly larger eps than the target (Gowal et al.)
    "warmup_frac": 0.1,  # fraction of steps with eps = 0, kappa = 1
    "ramp_frac": 0.5,  # fraction of steps over which eps and kappa move linearly
}


@dataclass(frozen=True)
class Method:
    """A training rule: its family, norm (if any) and option defaults."""

    name: str
    family: str  # "st", "at", "mmr_at" or "ibp"
    norm: Norm | None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def needs_eps(self) -> bool:
        return self.family != "st"


def _methods() -> dict[str, Method]:
    out = {"st": Method("st", "st", None, {}, "standard training (cross-entropy, Adam)")}
    for nname in ("linf", "l2"):
        norm = parse_norm(nname)
        out[f"at_{nname}"] = Method(
            f"at_{nname}", "at", norm, _AT_DEFAULTS,
            f"PGD adversarial training (Madry et al.) in {nname}")
        out[f"mmr_at_{nname}"] = Method(
            f"mmr_at_{nname}", "mmr_at", norm, _MMR_DEFAULTS,
            f"MMR (Croce et al. 2019) + PGD adversarial training in {nname}")
        out[f"ibp_{nname}"] = Method(
            f"ibp_{nname}", "ibp", norm, _IBP_DEFAULTS,
            f"interval bound propagation (Gowal et al.) in {nname}")
    return out


METHODS: dict[str, Method] = _methods()


def known_methods() -> list[str]:
    """Names accepted by :func:`train_model`."""
    return list(METHODS)


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return METHODS[str(name)]
    except KeyError:
        raise ValueError(
            f"unknown training method {name!r}: expected one of {', '.join(METHODS)}") from None


def method_defaults(name: str) -> dict[str, Any]:
    """All options of method ``name`` (common ones included) with their defaults."""
    return {**COMMON_DEFAULTS, **get_method(name).defaults}


def resolve_options(name: str, eps: float | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` against the method's and fill in defaults (eps-relative ones too)."""
    method = get_method(name)
    allowed = method_defaults(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"method {name!r}: unknown option(s) {unknown}; it accepts {sorted(allowed)}")
    if method.needs_eps:
        if eps is None or not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"method {name!r} needs a positive finite eps (in {method.norm.name}), got {eps!r}")
    elif eps is not None:
        raise ValueError(f"method {name!r} takes no eps, got eps={eps!r}")
    opts = {**allowed, **options}
    if method.family in ("at", "mmr_at"):
        if not 0.0 <= float(opts["ae_frac"]) <= 1.0:
            raise ValueError(f"ae_frac must lie in [0, 1], got {opts['ae_frac']!r}")
        if int(opts["pgd_steps"]) < 1:
            raise ValueError(f"pgd_steps must be at least 1, got {opts['pgd_steps']!r}")
        if opts["pgd_step_size"] is None:
            opts["pgd_step_size"] = 2.0 * float(eps) / int(opts["pgd_steps"])
    if method.family == "mmr_at":
        for g in ("gamma_rb", "gamma_db"):
            if opts[g] is None:
                opts[g] = 2.0 * float(eps)
            if not float(opts[g]) > 0:
                raise ValueError(f"{g} must be positive, got {opts[g]!r}")
    if method.family == "ibp":
        if not 0.0 <= float(opts["kappa_final"]) <= 1.0:
            raise ValueError(f"kappa_final must lie in [0, 1], got {opts['kappa_final']!r}")
        if float(opts["warmup_frac"]) + float(opts["ramp_frac"]) > 1.0:
            raise ValueError("warmup_frac + ramp_frac must not exceed 1")
    if not 0.0 < float(opts["lr_drop_frac"]) <= 1.0:
        raise ValueError(f"lr_drop_frac must lie in (0, 1], got {opts['lr_drop_frac']!r}")
    return opts


# ===================================================================== network

def network_of(model: keras.Model) -> Network:
    """The live network description of ``model`` (its layers hold the model's variables, so
    losses on it train the model); ``ValueError`` naming any layer it cannot represent."""
    return from_keras(model, live=True)


# The description's code has no tensor-dependent Python control flow: AutoGraph would only
# spend seconds converting it (measured: 3 of 6 s of a 12-epoch digits run).
@tf.autograph.experimental.do_not_convert
def _forward(net: Network, x) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Logits and the pre-activations of every ReLU."""
    vals = net.activations(x)
    return vals[-1], [vals[net.nodes[i].inputs[0]] for i in net.layer_nodes("relu")]


# ======================================================================== PGD attack

def _project(delta: tf.Tensor, norm: Norm, eps: tf.Tensor) -> tf.Tensor:
    if math.isinf(norm.p):
        return tf.clip_by_value(delta, -eps, eps)
    n = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=[1, 2, 3], keepdims=True))
    return delta * tf.minimum(1.0, eps / tf.maximum(n, 1e-12))


def _random_start(shape, norm: Norm, eps, seed) -> tf.Tensor:
    if math.isinf(norm.p):
        return tf.random.stateless_uniform(shape, seed=seed, minval=-1.0, maxval=1.0) * eps
    # Uniform in the l2 ball: a Gaussian direction and radius eps * U^(1/d).
    g = tf.random.stateless_normal(shape, seed=seed)
    g = g / tf.maximum(tf.sqrt(tf.reduce_sum(g * g, axis=[1, 2, 3], keepdims=True)), 1e-12)
    d = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    u = tf.random.stateless_uniform([shape[0], 1, 1, 1], seed=seed + tf.constant([0, 1 << 20], seed.dtype))
    return g * eps * u ** (1.0 / d)


def _pgd(logits_fn: Callable[[tf.Tensor], tf.Tensor], x, y, norm: Norm, eps, steps: int, step_size,
         random_start: bool, seed) -> tf.Tensor:
    """PGD maximising the cross-entropy within the eps-ball (in ``norm``) and [0, 1]."""
    if random_start:
        delta = _project(_random_start(tf.shape(x), norm, eps, seed), norm, eps)
        delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
    else:
        delta = tf.zeros_like(x)
    for _ in tf.range(steps):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            loss = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits_fn(x + delta)))
        g = tape.gradient(loss, delta)
        if math.isinf(norm.p):
            step = tf.sign(g)
        else:
            step = g / tf.maximum(tf.sqrt(tf.reduce_sum(g * g, axis=[1, 2, 3], keepdims=True)), 1e-12)
        delta = delta + step_size * step
        delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
        delta = _project(delta, norm, eps)
    return tf.stop_gradient(x + delta)


def pgd_attack(
    model: keras.Model, x: np.ndarray, y: np.ndarray, norm: "str | Norm", eps: float, *,
    steps: int = 20, step_size: float | None = None, random_start: bool = True, seed: int = 0,
    batch_size: int = 512,
) -> np.ndarray:
    """Fixed-budget PGD adversarial examples at ``eps`` (in ``norm``), inside [0, 1].

    A training-time attack (and the fixed PGD of the tests), not a minimal-perturbation
    search: see :mod:`robcurves.attacks` for robustness curves. ``step_size`` defaults
    to ``2.5 * eps / steps``. Returns float32 of the shape of ``x``.
    """
    norm = parse_norm(norm)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    net = network_of(model)

    @tf.function(reduce_retracing=True)
    def run(xb, yb, s):
        return _pgd(lambda z: _forward(net, z)[0], xb, yb, norm, tf.constant(eps, tf.float32), steps,
                    tf.constant(step_size, tf.float32), random_start, s)

    out = [run(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size]),
               tf.constant([seed, i], tf.int64)).numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else x.copy()


# ===================================================================== IBP bounds

@tf.autograph.experimental.do_not_convert
def _ibp_bounds(net: Network, x, norm: Norm, eps) -> list:
    """Interval bounds of every node over the eps-ball (in ``norm``) around ``x``, within [0, 1].

    l_inf: the eps-box intersected with [0, 1]. l_2: also the exact per-unit range of the
    first affine layer over the l2 ball (:func:`robcurves.network.interval_bounds`).
    """
    if not (math.isinf(norm.p) or norm.p == 2.0):
        raise ValueError(f"IBP supports linf and l2, got {norm.name}")
    dom = Domain.ball(x, norm, eps, bounds=(0.0, 1.0), dtype="float32")
    return _node_intervals(net, dom)


def _ibp_logit_bounds(net: Network, x, norm: Norm, eps):
    return _ibp_bounds(net, x, norm, eps)[-1]


@tf.autograph.experimental.do_not_convert
def _ibp_margin_upper(net: Network, x, y, norm: Norm, eps) -> tf.Tensor:
    """Upper bounds of z_j - z_y over the eps-ball, with the last layer folded in (elision).

    Bounding the differences through the last layer directly (Gowal et al.) is tighter
    than subtracting logit bounds. Shape (B, K); the entry of the true class is 0.
    """
    bounds = _ibp_bounds(net, x, norm, eps)
    last = net.nodes[-1]
    K = net.n_classes
    onehot = tf.one_hot(y, K)  # (B, K)
    C = tf.eye(K)[None] - onehot[:, None, :]  # (B, K, K): row j gives z_j - z_y
    if not last.layer.affine:  # pragma: no cover - the logits come from an affine layer
        lo, hi = bounds[-1]
        ub = hi - tf.gather(lo, y, batch_dims=1)[:, None]
    else:
        # the lower bound of -C z through the last layer, concretised on its input's box
        a_ins, c = last.layer.backward(-C)
        low = 0.0 if c is None else c
        for a, j in zip(a_ins, last.inputs):
            lo, hi = bounds[j]
            t = tuple(range(2, len(a.shape)))
            low = low + tf.reduce_sum(tf.maximum(a, 0.0) * lo[:, None] + tf.minimum(a, 0.0) * hi[:, None], axis=t)
        ub = -low
    return ub * (1.0 - onehot)


def interval_bounds(
    model: keras.Model, x: np.ndarray, eps: float, norm: "str | Norm" = "linf",
) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds (lower, upper) on every logit over the eps-ball around each row of ``x``.

    The ball is measured in ``norm`` (linf or l2) and intersected with [0, 1] for linf.
    Sound: for every x' in the ball, lower <= model(x') <= upper (up to float rounding).
    """
    norm = parse_norm(norm)
    net = network_of(model)
    lo, hi = _ibp_logit_bounds(net, tf.constant(np.asarray(x, np.float32)), norm, tf.constant(float(eps)))
    return lo.numpy(), hi.numpy()


def margin_upper_bounds(model: keras.Model, x: np.ndarray, y: np.ndarray, eps: float,
                        norm: "str | Norm" = "linf") -> np.ndarray:
    """IBP upper bounds on z_j - z_y (j = every class) over the eps-ball; 0 at the true class.

    A point is certified robust at eps when every entry is negative except the true class's.
    """
    norm = parse_norm(norm)
    net = network_of(model)
    ub = _ibp_margin_upper(net, tf.constant(np.asarray(x, np.float32)), tf.constant(np.asarray(y, np.int64)),
                           norm, tf.constant(float(eps)))
    return ub.numpy()


# ============================================================================= MMR

def _dual_norm(v: tf.Tensor, norm: Norm) -> tf.Tensor:
    """Dual norm over axis 1 (the input directions) of v (B, d, ...)."""
    if math.isinf(norm.p):
        return tf.reduce_sum(tf.abs(v), axis=1)
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=1) + 1e-12)


@tf.autograph.experimental.do_not_convert
def _region_geometry(net: Network, x, norm: Norm) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Logits (B, K), region distances (B, n_hidden) and the logits' Jacobian (B, d, K).

    Inside the linear region of x, every hidden pre-activation z_i is affine with
    gradient v_i; |z_i| / ||v_i||_q is the distance (in the p-norm ``norm``, q its dual)
    to the hyperplane where that unit switches. The gradients are pushed through the
    graph as (B, d, ...) tensors (:meth:`Layer.jvp`), one input direction per row, as in
    Croce et al.
    """
    d = int(np.prod(x.shape[1:]))
    vals = [x]
    dirs = [tf.reshape(tf.eye(d), (1, d, *x.shape[1:]))]  # batch dim 1 until the first ReLU
    dists = []
    for node in net.nodes[1:]:
        layer = node.layer
        xs = [vals[i] for i in node.inputs]
        if layer.kind == "relu":
            h = xs[0]
            q = tf.maximum(_dual_norm(dirs[node.inputs[0]], norm), _STABLE)
            dists.append(tf.reshape(tf.abs(h) / q, (tf.shape(h)[0], -1)))
        dirs.append(layer.jvp(xs, [dirs[i] for i in node.inputs]))
        vals.append(layer.evaluate(*xs))
    h, v = vals[-1], dirs[-1]
    v = tf.broadcast_to(v, (tf.shape(x)[0], d, h.shape[-1]))
    return h, tf.concat(dists, axis=1), v


def _mmr_terms(net: Network, x, y, norm: Norm, n_rb, n_db: int, gamma_rb, gamma_db):
    """Croce et al.'s region- and decision-boundary terms, each already divided by n_rb / n_db.

    Distances to region boundaries: see :func:`_region_geometry`; to decision boundaries:
    (z_y - z_j) / ||v_y - v_j||_q (negative when misclassified). The n_rb (n_db)
    smallest distances d of each point pay max(0, 1 - d / gamma).
    """
    logits, dist_rb, v = _region_geometry(net, x, norm)
    smallest = -tf.math.top_k(-dist_rb, k=n_rb).values
    rb = tf.reduce_sum(tf.nn.relu(1.0 - smallest / gamma_rb), axis=1) / tf.cast(n_rb, tf.float32)

    n_classes = logits.shape[-1]
    vy = tf.gather(tf.transpose(v, (0, 2, 1)), y, axis=1, batch_dims=1)  # (B, d)
    diff = tf.maximum(_dual_norm(v - vy[:, :, None], norm), _STABLE)  # (B, K)
    zy = tf.gather(logits, y, batch_dims=1)[:, None]
    onehot = tf.one_hot(y, n_classes)
    dist_db = (zy - logits) / diff + onehot * 1e6  # the true class is never among the closest
    k_db = min(n_db, n_classes - 1)
    smallest = -tf.math.top_k(-dist_db, k=k_db).values
    db = tf.reduce_sum(tf.nn.relu(1.0 - smallest / gamma_db), axis=1) / float(n_db)
    return logits, rb, db


def _n_hidden(net: Network) -> int:
    """Number of ReLU units (the region-boundary candidates of MMR)."""
    return int(sum(int(np.prod(net.nodes[i].shape)) for i in net.layer_nodes("relu")))


# ========================================================================= training

def _ce(logits, y):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def _build_loss(method: Method, net: Network, eps: float | None, opts: Mapping[str, Any], n_classes: int):
    """loss(x, y, sched) -> (objective, plain cross-entropy, logits on the clean batch)."""
    logits_fn = lambda z: _forward(net, z)[0]  # noqa: E731
    fam, norm = method.family, method.norm

    def mixed_batch(x, y, sched):
        n_adv = tf.cast(tf.math.floor(float(opts["ae_frac"]) * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)
        x_adv = _pgd(logits_fn, x[:n_adv], y[:n_adv], norm, tf.constant(float(eps)), int(opts["pgd_steps"]),
                     tf.constant(float(opts["pgd_step_size"])), bool(opts["pgd_random_start"]), sched["seed"])
        return tf.concat([x_adv, x[n_adv:]], axis=0)

    if fam == "st":
        def loss(x, y, sched):
            z = logits_fn(x)
            ce = tf.reduce_mean(_ce(z, y))
            return ce, ce, z
    elif fam == "at":
        def loss(x, y, sched):
            z = logits_fn(mixed_batch(x, y, sched))
            ce = tf.reduce_mean(_ce(z, y))
            return ce, ce, z
    elif fam == "mmr_at":
        n_db = int(opts["n_db"]) if opts["n_db"] is not None else n_classes

        def loss(x, y, sched):
            xm = mixed_batch(x, y, sched)
            z, rb, db = _mmr_terms(net, xm, y, norm, sched["n_rb"], n_db,
                                   float(opts["gamma_rb"]), float(opts["gamma_db"]))
            ce = tf.reduce_mean(_ce(z, y))
            reg = sched["frac_reg"] * float(opts["lmbd"]) * (tf.reduce_mean(rb) + tf.reduce_mean(db))
            return ce + reg, ce, z
    elif fam == "ibp":
        def loss(x, y, sched):
            z = logits_fn(x)
            ce = tf.reduce_mean(_ce(z, y))
            worst = _ibp_margin_upper(net, x, y, norm, sched["eps"])
            ce_worst = tf.reduce_mean(_ce(worst, y))
            kappa = sched["kappa"]
            return kappa * ce + (1.0 - kappa) * ce_worst, ce, z
    else:  # pragma: no cover - METHODS is closed
        raise AssertionError(fam)
    return loss


def _schedule(method: Method, opts, eps, epoch: int, epochs: int, step: int, total_steps: int,
              n_hidden: int, seed: int) -> dict[str, tf.Tensor]:
    """Per-step scalars: regulariser weight, n_rb, IBP eps and kappa, PGD seed."""
    frac_reg, n_rb, eps_t, kappa = 1.0, 1, 0.0, 1.0
    if method.family == "mmr_at":
        ramp = max(1.0, float(opts["reg_ramp_frac"]) * epochs)
        frac_reg = min((epoch + 1) / ramp, 1.0)
        n0, n1 = float(opts["n_rb_frac_start"]) * n_hidden, float(opts["n_rb_frac_end"]) * n_hidden
        n_rb = int(min(n_hidden, max(1, round(n0 + (n1 - n0) * (epoch + 1) / epochs))))
    if method.family == "ibp":
        warm = float(opts["warmup_frac"]) * total_steps
        ramp = float(opts["ramp_frac"]) * total_steps
        t = 0.0 if step < warm else (1.0 if ramp <= 0 else min((step - warm) / ramp, 1.0))
        eps_t = t * float(eps) * float(opts["eps_train_factor"])
        kappa = 1.0 - t * (1.0 - float(opts["kappa_final"]))
    return {
        "frac_reg": tf.constant(frac_reg, tf.float32),
        "n_rb": tf.constant(n_rb, tf.int32),
        "eps": tf.constant(eps_t, tf.float32),
        "kappa": tf.constant(kappa, tf.float32),
        "seed": tf.constant([seed, step], tf.int64),
    }


@contextlib.contextmanager
def _op_determinism(enabled: bool):
    """Deterministic TF kernels inside the block; the previous process-wide state after it.

    Enabling it costs nothing measurable here (CPU, small nets) but makes unseeded random
    ops raise, so it is not left switched on for code that runs later in the process.
    """
    try:
        from tensorflow.python.framework import config as tf_config
        before = tf_config.is_op_determinism_enabled()
    except (ImportError, AttributeError):  # pragma: no cover - other TF versions
        tf_config, before = None, None
    if enabled:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if enabled and before is False and tf_config is not None:
            tf_config.disable_op_determinism()


def train_model(
    model: keras.Model,
    train,
    method: str,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    eps: float | None = None,
    log: Callable[[str], None] | None = None,
    **method_options: Any,
) -> dict[str, Any]:
    """Train ``model`` in place on ``train`` (a :class:`robcurves.data.Dataset`) with ``method``.

    ``eps`` is the training radius in the method's norm (linf or l2, inputs in [0, 1]);
    ``st`` takes none. ``method_options`` are the method's options (see
    :func:`method_defaults`). Adam with ``learning_rate`` (divided by 10 after
    ``lr_drop_frac`` of the epochs). ``log`` gets one line per epoch.

    Returns a JSON-ready dict for the sidecar's ``made_by``: ``kind`` ("train"),
    ``method``, ``norm``, ``eps``, all settings and resolved options, ``train_loss``
    (mean cross-entropy on the clean training set after training), ``train_accuracy``,
    ``history`` (per epoch: mean objective, mean cross-entropy on the training batches,
    batch accuracy), ``time_s`` and versions.
    """
    m = get_method(method)
    opts = resolve_options(method, eps, method_options)
    x_all = np.asarray(train.x, dtype=np.float32)
    y_all = np.asarray(train.y, dtype=np.int64)
    if x_all.ndim != 4 or len(x_all) != len(y_all) or len(y_all) == 0:
        raise ValueError(f"train must hold a non-empty NHWC batch with labels, got x {x_all.shape}, y {y_all.shape}")
    model_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
    if tuple(x_all.shape[1:]) != model_shape:
        raise ValueError(
            f"data of shape (H, W, C) = {x_all.shape[1:]} does not fit the model's input shape {model_shape}")
    for name, val in (("epochs", epochs), ("batch_size", batch_size)):
        if int(val) < 1:
            raise ValueError(f"{name} must be at least 1, got {val!r}")
    if not float(learning_rate) > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    epochs, batch_size, seed = int(epochs), int(batch_size), int(seed)
    n_classes = int(model.outputs[0].shape[-1])
    if y_all.max() >= n_classes or y_all.min() < 0:
        raise ValueError(f"labels must lie in 0..{n_classes - 1} for a model with {n_classes} logits")

    with _op_determinism(bool(opts["deterministic"])):
        return _train(model, train, m, opts, x_all, y_all, n_classes, epochs, batch_size, float(learning_rate),
                      seed, eps, log)


def _train(model, train, m: Method, opts, x_all, y_all, n_classes, epochs, batch_size, learning_rate, seed,
           eps, log) -> dict[str, Any]:
    method = m.name
    keras.utils.set_random_seed(seed)
    net = network_of(model)
    n_hidden = _n_hidden(net)
    loss_fn = _build_loss(m, net, eps, opts, n_classes)

    optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def train_step(x, y, sched):
        with tf.GradientTape() as tape:
            obj, ce, z = loss_fn(x, y, sched)
        grads = tape.gradient(obj, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return obj, ce, tf.reduce_mean(tf.cast(tf.argmax(z, axis=1) == y, tf.float32))

    rng = np.random.default_rng(seed)
    n = len(y_all)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    drop_epoch = int(math.ceil(float(opts["lr_drop_frac"]) * epochs))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    step = 0
    # One line per epoch (work done, rate, ETA, loss, accuracy): to ``log`` in a job, a bar on a terminal.
    bar = Progress(epochs, f"train {method}", unit="epochs", log=log, every_s=0.0,
                   enabled=log is not None or sys.stderr.isatty())
    for epoch in range(epochs):
        dropped = epoch >= drop_epoch and opts["lr_drop_frac"] < 1.0
        optimizer.learning_rate.assign(float(learning_rate) * (0.1 if dropped else 1.0))
        perm = rng.permutation(n)
        sums = np.zeros(3)
        for b in range(steps_per_epoch):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            sched = _schedule(m, opts, eps, epoch, epochs, step, total, n_hidden, seed)
            obj, ce, acc = train_step(tf.constant(x_all[idx]), tf.constant(y_all[idx]), sched)
            obj, ce, acc = float(obj), float(ce), float(acc)
            if not (math.isfinite(obj) and math.isfinite(ce)):
                raise FloatingPointError(f"{method}: the loss became {obj} in epoch {epoch + 1}, step {step}")
            sums += np.array([obj, ce, acc]) * len(idx)
            step += 1
        rec = dict(zip(("objective", "cross_entropy", "batch_accuracy"), (sums / n).round(6).tolist()))
        history.append({"epoch": epoch + 1, **rec})
        bar.update(1, f"loss {rec['objective']:.4f} (cross-entropy {rec['cross_entropy']:.4f}), accuracy "
                      f"{rec['batch_accuracy']:.4f}, {n * (epoch + 1) / bar.elapsed:.0f} samples/s")
    bar.close()
    elapsed = time.perf_counter() - start

    logits = np.concatenate([model(x_all[i:i + 1024], training=False).numpy() for i in range(0, n, 1024)])
    ce_final = float(np.mean(_ce(tf.constant(logits), tf.constant(y_all)).numpy()))
    acc_final = float(np.mean(logits.argmax(axis=1) == y_all))
    return {
        "kind": "train",
        "method": m.name,
        "family": m.family,
        "norm": m.norm.name if m.norm is not None else None,
        "eps": float(eps) if eps is not None else None,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "optimizer": "adam",
        "seed": seed,
        "options": {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in opts.items()},
        "n_train": int(n),
        "train_dataset": getattr(train, "name", None),
        "train_sha256": getattr(train, "meta", {}).get("sha256") if hasattr(train, "meta") else None,
        "train_loss": ce_final,
        "train_accuracy": acc_final,
        "history": history,
        "time_s": round(elapsed, 3),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
