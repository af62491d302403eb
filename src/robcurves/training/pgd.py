"""Fixed-budget PGD (Madry et al., 2018): the training-time attack of adversarial training.

The norm enters only through its ``keras.ops`` geometry (:meth:`robcurves.norms.Norm.ops`,
the attacks' :mod:`robcurves.attacks.geometry`): the random start inside the ball, the
steepest-ascent direction and the projection onto ``{||delta|| <= eps} ∩ [0, 1] - x``.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from robcurves.norms import Norm, parse_norm
from robcurves.training.forward import _forward, network_of


def _pgd(logits_fn: Callable[[tf.Tensor], tf.Tensor], x, y, norm: Norm, eps, steps: int, step_size,
         random_start: bool, seed) -> tf.Tensor:
    """PGD maximising the cross-entropy within the eps-ball (in ``norm``) and [0, 1].

    ``seed`` (an int pair) seeds the random start; the geometry works on flattened rows.
    """
    geo = norm.ops()
    shape = tf.shape(x)
    dim = int(np.prod(x.shape[1:]))
    xf = tf.reshape(x, (-1, dim))
    lo, hi = -xf, 1.0 - xf  # the box [0, 1] as limits on delta
    e = tf.fill(tf.shape(xf)[:1], tf.cast(eps, tf.float32))
    if random_start:
        start = geo.random_in_ball((tf.shape(xf)[0], dim), e, tf.cast(seed, tf.int32))
        delta = geo.project(start, e, lo, hi)
    else:
        delta = tf.zeros_like(xf)
    for _ in tf.range(steps):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits_fn(tf.reshape(xf + delta, shape))))
        g = tape.gradient(loss, delta)
        # ascent on the loss = descent on its negative
        delta = geo.project(delta + step_size * geo.descent(-g, delta, lo, hi), e, lo, hi)
    return tf.stop_gradient(tf.reshape(xf + delta, shape))


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

