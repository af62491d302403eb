"""Interval bound propagation (Gowal et al., 2018): bounds on every node over the eps-ball.

The bounds are the network description's own (:func:`robcurves.network.interval_bounds`);
here they are put in the form IBP training needs (the margins with the last layer folded in).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from robcurves.network import Domain, Network
from robcurves.network import interval_bounds as _node_intervals
from robcurves.norms import Norm, parse_norm
from robcurves.training.forward import network_of

IBP_NORMS = ("linf", "l2")  # the balls whose first-layer ranges the description bounds exactly


@tf.autograph.experimental.do_not_convert
def _ibp_bounds(net: Network, x, norm: Norm, eps) -> list:
    """Interval bounds of every node over the eps-ball (in ``norm``) around ``x``, within [0, 1].

    l_inf: the eps-box intersected with [0, 1]. l_2: also the exact per-unit range of the
    first affine layer over the l2 ball (:func:`robcurves.network.interval_bounds`).
    """
    if norm.name not in IBP_NORMS:
        raise ValueError(f"IBP supports {' and '.join(IBP_NORMS)}, got {norm.name}")
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

