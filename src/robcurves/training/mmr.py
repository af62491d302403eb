"""The maximum-margin regulariser (Croce, Andriushchenko and Hein, AISTATS 2019).

For every point, the distances (in the attacked norm) to the closest hyperplanes of its
linear region and to the closest decision hyperplanes, pushed above ``gamma_rb`` and
``gamma_db``. Distances to a hyperplane ``{v . x = c}`` are ``|v . x - c| / ||v||_q`` with
q the dual exponent: the dual norm is the norm object's (:meth:`robcurves.norms.Norm.ops`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from robcurves.network import Network
from robcurves.norms import Norm

_STABLE = 1e-5  # floor for the dual norms in MMR's distance denominators, as in Croce et al.


def _dual_norm(v: tf.Tensor, norm: Norm) -> tf.Tensor:
    """``max(||v||_q, _STABLE)`` over axis 1 (the input directions) of v (B, d, ...).

    Differentiable everywhere: the l2 norm's gradient at 0 is NaN, and zero columns occur
    (the true class's in ``v - v_y``), so those get the floor without passing through it.
    """
    zero = tf.reduce_all(tf.equal(v, 0.0), axis=1, keepdims=True)
    q = norm.ops().dual_norm(tf.where(zero, tf.ones_like(v), v))
    return tf.where(zero[:, 0], tf.fill(tf.shape(q), _STABLE), tf.maximum(q, _STABLE))


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
            q = _dual_norm(dirs[node.inputs[0]], norm)
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
    diff = _dual_norm(v - vy[:, :, None], norm)  # (B, K)
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

