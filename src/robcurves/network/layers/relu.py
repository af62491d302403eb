"""ReLU: evaluation, intervals, the triangle relaxation backwards (CROWN slopes) and its
big-M MILP encoding with one binary per unstable neuron (MIPVerify's)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import scipy.sparse as sp

import keras
from keras import ops as keras_ops

from robcurves.network.xp import is_numpy, numpy_ops, xp

from robcurves.network.layers.base import _sum_tail, dtype_of, Layer, Shape

if TYPE_CHECKING:  # pragma: no cover
    from robcurves.exact.milp import MilpBuilder, VarVector



class ReLU(Layer):
    """``max(z, 0)``. Linear bounds: the triangle relaxation's upper line for unstable units
    and a lower line of slope ``alpha`` (default: CROWN's adaptive 1 if u > -l else 0)."""

    kind = "relu"
    needs_bounds = True

    def __init__(self, in_shape: Shape, name: str = "relu") -> None:
        super().__init__([in_shape], name)

    def evaluate(self, x):
        return xp(x).relu(x)

    def evaluate_numpy(self, x):
        return np.maximum(np.asarray(x, dtype=np.float64), 0.0)

    def interval(self, box):
        lo, hi = box
        ops = xp(lo)
        return ops.relu(lo), ops.relu(hi)

    def relaxation(self, lo, hi, alpha=None, split=None):
        """Slopes and intercepts of the linear bounds ``lower_slope z <= relu(z) <= upper_slope z + upper_int``.

        ``lo``, ``hi`` (pre-activation bounds), ``alpha`` and ``split`` broadcast together;
        ``alpha`` (clipped to [0, 1], so any value is sound) replaces the adaptive lower
        slope of unstable units; ``split`` (+1 active, -1 inactive, 0 free) fixes units
        (the relaxation then holds where the split's sign constraint holds).
        """
        dt = dtype_of(lo)
        ops = xp(lo, alpha, split)
        one, zero = ops.ones_like(lo), ops.zeros_like(lo)
        unstable = ops.logical_and(lo < 0, hi > 0)
        active = lo >= 0
        stable_slope = ops.where(active, one, zero)
        denom = ops.where(unstable, hi - lo, one)
        up_slope = ops.where(unstable, hi / denom, stable_slope)
        up_int = ops.where(unstable, -up_slope * lo, zero)
        if alpha is None:
            a = ops.cast(hi > -lo, dt)
        else:
            a = ops.clip(ops.cast(alpha, dt), 0.0, 1.0)
        lo_slope = ops.where(unstable, a, stable_slope)
        if split is not None:
            split = ops.cast(split, dt)
            fixed = ops.cast(split > 0, dt)
            is_fixed = split != 0
            lo_slope = ops.where(is_fixed, fixed, lo_slope)
            up_slope = ops.where(is_fixed, fixed, up_slope)
            up_int = ops.where(is_fixed, ops.zeros_like(up_int), up_int)
        return lo_slope, up_slope, up_int

    def backward(self, A, in_bounds=None, alpha=None, split=None):
        if in_bounds is None:
            raise ValueError(f"relu {self.name!r}: linear bounds need bounds on its input")
        lo, hi = in_bounds[0]
        ops = xp(A, lo, hi, alpha, split)
        lo, hi = ops.expand_dims(lo, 1), ops.expand_dims(hi, 1)  # broadcast over the spec axis

        def per_spec(t):
            if t is None:
                return None
            t = ops.convert_to_tensor(t)
            return t if len(t.shape) == len(A.shape) else ops.expand_dims(t, 1)

        lo_slope, up_slope, up_int = self.relaxation(lo, hi, per_spec(alpha), per_spec(split))
        Ap, An = ops.maximum(A, 0.0), ops.minimum(A, 0.0)
        a_in = Ap * lo_slope + An * up_slope
        return [a_in], _sum_tail(An * up_int, 2)

    def jvp(self, xs, vs):
        ops = xp(vs[0])
        mask = ops.cast(xs[0] > 0, dtype_of(vs[0]))
        return vs[0] * ops.expand_dims(mask, 1)

    def emit(self, milp, hs, in_bounds, out_bounds, needed=None, relax=False):
        lo, hi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in in_bounds[0])
        return milp.add_relu(hs[0], lo, hi, relax=relax)
