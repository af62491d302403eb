"""The array namespace of a computation: ``keras.ops`` for tensors, a NumPy twin for arrays.

Layers and bound propagators are written once against the subset of ``keras.ops`` below.
Given Keras/backend tensors they run on ``keras.ops`` (TensorFlow, JAX or PyTorch;
differentiable; GPU where there is one). Given NumPy arrays they run on :data:`numpy_ops`,
the same functions in NumPy: the exact stage's many small bound computations on one point
would otherwise pay a framework dispatch (~0.1 ms) for every operation.
"""

from __future__ import annotations

import numpy as np

from keras import ops as keras_ops


class _NumpyOps:
    """The functions of ``keras.ops`` used by :mod:`robcurves.network`, on NumPy arrays."""

    is_numpy = True

    @staticmethod
    def convert_to_tensor(x, dtype=None):
        return np.asarray(x, dtype=dtype)

    @staticmethod
    def convert_to_numpy(x):
        return np.asarray(x)

    @staticmethod
    def cast(x, dtype):
        return np.asarray(x).astype(dtype, copy=False)

    @staticmethod
    def relu(x):
        return np.maximum(x, 0.0)

    matmul = staticmethod(np.matmul)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    abs = staticmethod(np.abs)
    square = staticmethod(np.square)
    sqrt = staticmethod(np.sqrt)
    logical_and = staticmethod(np.logical_and)
    expand_dims = staticmethod(np.expand_dims)
    broadcast_to = staticmethod(np.broadcast_to)
    ones_like = staticmethod(np.ones_like)
    zeros_like = staticmethod(np.zeros_like)
    moveaxis = staticmethod(np.moveaxis)
    einsum = staticmethod(np.einsum)
    flip = staticmethod(np.flip)

    @staticmethod
    def clip(x, lo, hi):
        return np.clip(x, lo, hi)

    @staticmethod
    def sum(x, axis=None):
        return np.sum(x, axis=axis)

    @staticmethod
    def max(x, axis=None):
        return np.max(x, axis=axis)

    @staticmethod
    def mean(x, axis=None):
        return np.mean(x, axis=axis)

    @staticmethod
    def argmax(x, axis=None):
        return np.argmax(x, axis=axis)

    @staticmethod
    def reshape(x, shape):
        return np.reshape(x, tuple(int(s) for s in shape))

    @staticmethod
    def transpose(x, axes=None):
        return np.transpose(x, axes)

    @staticmethod
    def concatenate(xs, axis=0):
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def full_like(x, value):
        return np.full_like(x, value)

    @staticmethod
    def ones(shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)

    @staticmethod
    def eye(n, dtype="float32"):
        return np.eye(n, dtype=dtype)

    @staticmethod
    def take(x, idx, axis=None):
        return np.take(x, idx, axis=axis)

    @staticmethod
    def one_hot(idx, k, dtype="float32"):
        return np.eye(k, dtype=dtype)[idx]

    @staticmethod
    def repeat(x, n, axis=None):
        return np.repeat(x, n, axis=axis)

    @staticmethod
    def pad(x, pad_width, constant_values=0):
        return np.pad(x, pad_width, constant_values=constant_values)

    @staticmethod
    def shape(x):
        return x.shape


numpy_ops = _NumpyOps()


def xp(*xs):
    """``numpy_ops`` when every argument that is an array is a NumPy array, else ``keras.ops``."""
    for x in xs:
        if x is not None and not isinstance(x, (np.ndarray, np.generic, float, int)):
            return keras_ops
    return numpy_ops


def is_numpy(ns) -> bool:
    return getattr(ns, "is_numpy", False)
