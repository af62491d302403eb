"""The 2-D pooling layers: AveragePooling2D and GlobalAveragePooling2D (affine), and
MaxPooling2D (the standard relaxation for bounds; binaries in the MILP, as MIPVerify)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import scipy.sparse as sp

import keras
from keras import ops as keras_ops

from robcurves.network.xp import is_numpy, numpy_ops, xp

from robcurves.network.layers.affine import conv_output_size, pads_from_padding
from robcurves.network.layers.base import _fold, _in_trace, _lead, _sum_tail, _unfold, AffineLayer, dtype_of, Layer, Shape

if TYPE_CHECKING:  # pragma: no cover
    from robcurves.exact.milp import MilpBuilder, VarVector



def pool_windows(in_hw: Sequence[int], pool: Sequence[int], strides: Sequence[int],
                 pads: Sequence[int]) -> np.ndarray:
    """Flat input positions (``h * W + w``) of every pooling window: ``(H_out, W_out, kh * kw)``;
    a position in the padding is ``H * W`` (a dummy row)."""
    H, W = (int(s) for s in in_hw)
    kh, kw = (int(s) for s in pool)
    sh, sw = (int(s) for s in strides)
    t, b, l, r = (int(p) for p in pads)
    ho, wo = conv_output_size(H, kh, sh, t, b), conv_output_size(W, kw, sw, l, r)
    if ho < 1 or wo < 1:
        raise ValueError(f"pooling output would be empty for input {tuple(in_hw)} and window {tuple(pool)}")
    i = np.arange(ho)[:, None, None, None] * sh + np.arange(kh)[None, None, :, None] - t
    j = np.arange(wo)[None, :, None, None] * sw + np.arange(kw)[None, None, None, :] - l
    i, j = np.broadcast_arrays(i, j)
    ok = (i >= 0) & (i < H) & (j >= 0) & (j < W)
    return np.where(ok, i * W + j, H * W).reshape(ho, wo, kh * kw)


class _Pool(Layer):
    """Shared window machinery of the 2-D pooling layers (NHWC, explicit pads)."""

    def __init__(self, in_shape: Shape, pool, strides=None, padding: "str | Sequence[int]" = "valid",
                 name: str = "pool") -> None:
        self.pool = tuple(int(p) for p in pool)
        self.strides = tuple(int(s) for s in (strides if strides is not None else pool))
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 3:
            raise ValueError(f"{self.kind} {name!r}: needs an (H, W, C) input, got {in_shape}")
        self.pads = (pads_from_padding(padding, in_shape[:2], self.pool, self.strides)
                     if isinstance(padding, str) else tuple(int(p) for p in padding))
        if self.pads[0] >= self.pool[0] or self.pads[1] >= self.pool[0] or self.pads[2] >= self.pool[1] \
                or self.pads[3] >= self.pool[1]:
            raise ValueError(f"{self.kind} {name!r}: padding {self.pads} must be smaller than the window {self.pool}")
        self.windows = pool_windows(in_shape[:2], self.pool, self.strides, self.pads)
        super().__init__([in_shape], name)
        H, W, _ = self.in_shape
        ho, wo, k = self.windows.shape
        self.valid = (self.windows < H * W)  # (ho, wo, k)
        self.count = self.valid.sum(axis=2)  # TF SAME / ONNX count_include_pad=0: padding not counted
        # scatter matrix: input position <- (window slot); padding slots go nowhere
        q = np.arange(ho * wo * k)
        w = self.windows.reshape(-1)
        keep = w < H * W
        self._P = sp.csr_matrix((np.ones(keep.sum()), (w[keep], q[keep])), shape=(H * W, ho * wo * k))

    def _out_shape(self) -> Shape:
        ho, wo, _ = self.windows.shape
        return (ho, wo, self.in_shape[2])

    def gather(self, x, fill: float = 0.0):
        """Windows of ``x (N, H, W, C)``: ``(N, H_out, W_out, k, C)``; padding slots hold ``fill``."""
        H, W, C = self.in_shape
        ho, wo, k = self.windows.shape
        ops = xp(x)
        flat = ops.reshape(x, (-1, H * W, C))
        pad = ops.full_like(flat[:, :1, :], fill)
        flat = ops.concatenate([flat, pad], axis=1)
        idx = self.windows.reshape(-1).astype(np.int32)
        idx = idx if is_numpy(ops) else ops.convert_to_tensor(idx)
        g = ops.take(flat, idx, axis=1)
        return ops.reshape(g, (-1, ho, wo, k, C))

    def scatter(self, a):
        """The transpose of :meth:`gather`: ``a (N, H_out, W_out, k, C)`` summed into ``(N, H, W, C)``."""
        H, W, C = self.in_shape
        ho, wo, k = self.windows.shape
        if isinstance(a, np.ndarray):
            flat = a.reshape(-1, ho * wo * k, C)
            n = len(flat)
            out = self._P @ flat.transpose(1, 0, 2).reshape(ho * wo * k, n * C)
            return out.reshape(H * W, n, C).transpose(1, 0, 2).reshape(n, H, W, C).astype(a.dtype, copy=False)
        ops = keras_ops
        key = ("P", dtype_of(a), keras.backend.backend())
        P = self._cache.get(key)
        if P is None:
            P = ops.convert_to_tensor(self._P.toarray(), dtype=dtype_of(a))
            if not _in_trace():
                self._cache[key] = P
        flat = ops.reshape(a, (-1, ho * wo * k, C))
        out = ops.einsum("pq,nqc->npc", P, flat)
        return ops.reshape(out, (-1, H, W, C))

    def np_gather(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        H, W, C = self.in_shape
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), H * W, C)
        flat = np.concatenate([flat, np.full((len(x), 1, C), fill)], axis=1)
        return flat[:, self.windows, :]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "pool": list(self.pool), "strides": list(self.strides), "pads": list(self.pads),
                "padding": self.padding_name}

    @property
    def padding_name(self) -> str | None:
        for name in ("valid", "same"):
            if self.pads == pads_from_padding(name, self.in_shape[:2], self.pool, self.strides):
                return name
        return None


class AveragePooling2D(_Pool, AffineLayer):
    """Average over each window; padding is not counted (TensorFlow SAME, ONNX count_include_pad=0)."""

    kind = "average_pooling2d"

    def __init__(self, in_shape: Shape, pool, strides=None, padding="valid", name: str = "average_pooling2d") -> None:
        _Pool.__init__(self, in_shape, pool, strides, padding, name)
        self._inv = (1.0 / self.count)[None, :, :, None]  # (1, ho, wo, 1)

    def _inv_t(self, like):
        if isinstance(like, np.ndarray):
            return self._inv.astype(like.dtype)
        key = ("inv", dtype_of(like), keras.backend.backend())
        t = self._cache.get(key)
        if t is None:
            t = keras_ops.convert_to_tensor(self._inv, dtype=dtype_of(like))
            if not _in_trace():
                self._cache[key] = t
        return t

    def linear(self, x):
        if isinstance(x, np.ndarray):
            return self._np_linear(x)
        return keras_ops.sum(self.gather(x), axis=3) * self._inv_t(x)

    linear_abs = linear

    def linear_t(self, a):
        if isinstance(a, np.ndarray):
            return self._np_linear(a, transpose=True)
        a = a * self._inv_t(a)
        k = self.windows.shape[2]
        return self.scatter(keras_ops.repeat(keras_ops.expand_dims(a, 3), k, axis=3))

    def matrix(self) -> sp.csr_matrix:
        H, W, C = self.in_shape
        ho, wo, k = self.windows.shape
        o = np.arange(ho * wo)[:, None].repeat(k, 1)
        w = self.windows.reshape(ho * wo, k)
        inv = (1.0 / self.count).reshape(ho * wo, 1).repeat(k, 1)
        keep = w < H * W
        o, w, inv = o[keep], w[keep], inv[keep]
        c = np.arange(C)
        rows = (o[:, None] * C + c[None, :]).reshape(-1)
        cols = (w[:, None] * C + c[None, :]).reshape(-1)
        vals = np.repeat(inv, C)
        return sp.csr_matrix((vals, (rows, cols)), shape=(ho * wo * C, H * W * C))


class GlobalAveragePooling2D(AffineLayer):
    """Mean over H and W: ``(H, W, C) -> (C,)``."""

    kind = "global_average_pooling2d"

    def __init__(self, in_shape: Shape, name: str = "global_average_pooling2d") -> None:
        super().__init__([in_shape], name)
        if len(self.in_shape) != 3:
            raise ValueError(f"{self.kind} {name!r}: needs an (H, W, C) input, got {self.in_shape}")

    def _out_shape(self) -> Shape:
        return (self.in_shape[2],)

    def linear(self, x):
        return xp(x).mean(x, axis=(1, 2))

    linear_abs = linear

    def linear_t(self, a):
        H, W, C = self.in_shape
        ops = xp(a)
        return ops.broadcast_to(ops.reshape(a, (-1, 1, 1, C)), (ops.shape(a)[0], H, W, C)) / float(H * W)

    def matrix(self) -> sp.csr_matrix:
        H, W, C = self.in_shape
        cols = np.arange(H * W * C)
        return sp.csr_matrix((np.full(H * W * C, 1.0 / (H * W)), (cols % C, cols)), shape=(C, H * W * C))


class MaxPooling2D(_Pool):
    """Maximum over each window (padding never wins, as in TensorFlow and ONNX).

    Linear bounds: below by the input with the largest lower bound; above by that input
    where it dominates the window (its lower bound >= every other upper bound), else by the
    constant max of the upper bounds. The MILP uses binaries as MIPVerify does.
    """

    kind = "max_pooling2d"
    needs_bounds = True

    def evaluate(self, x):
        return xp(x).max(self.gather(x, fill=-np.inf), axis=3)

    def evaluate_numpy(self, x):
        return self.np_gather(x, fill=-np.inf).max(axis=3)

    def interval(self, box):
        lo, hi = box
        return self.evaluate(lo), self.evaluate(hi)

    def _select(self, lo, hi):
        """One-hot of the window input with the largest lower bound, whether it dominates, and max upper."""
        ops = xp(lo)
        glo = self.gather(lo, fill=-np.inf)
        ghi = self.gather(hi, fill=-np.inf)
        k = self.windows.shape[2]
        best = ops.argmax(glo, axis=3)
        onehot = ops.moveaxis(ops.one_hot(best, k, dtype=dtype_of(lo)), -1, 3)  # (N, ho, wo, k, C)
        lbest = ops.max(glo, axis=3)
        # the largest upper bound among the other inputs of the window
        others = ops.where(onehot > 0, ops.full_like(ghi, -np.inf), ghi)
        dominated = lbest >= ops.max(others, axis=3)
        return onehot, dominated, ops.max(ghi, axis=3)

    def backward(self, A, in_bounds=None, alpha=None, split=None):
        if in_bounds is None:
            raise ValueError(f"max_pooling2d {self.name!r}: linear bounds need bounds on its input")
        lo, hi = in_bounds[0]
        ops = xp(A, lo)
        onehot, dominated, umax = self._select(lo, hi)
        lead = _lead(A)
        # the per-point relaxation broadcasts over the spec axis
        onehot, dominated, umax = (ops.expand_dims(t, 1) for t in (onehot, dominated, umax))
        Ap, An = ops.maximum(A, 0.0), ops.minimum(A, 0.0)
        # A+ takes the lower line x_best; A- takes x_best where it dominates, else the constant umax
        coef = Ap + ops.where(dominated, An, ops.zeros_like(An))
        const = ops.where(dominated, ops.zeros_like(An), An * umax)
        a_win = ops.expand_dims(coef, 4) * onehot  # (batch, spec, ho, wo, k, C)
        a_in = self.scatter(ops.reshape(a_win, (-1, *a_win.shape[2:])))
        return [_unfold(a_in, lead, self.in_shape)], _sum_tail(const, 2)

    def jvp(self, xs, vs):
        x, v = xs[0], vs[0]
        ops = xp(v)
        lead = _lead(v)
        k = self.windows.shape[2]
        arg = ops.argmax(self.gather(x, fill=-np.inf), axis=3)
        onehot = ops.expand_dims(ops.moveaxis(ops.one_hot(arg, k, dtype=dtype_of(v)), -1, 3), 1)
        gv = ops.reshape(self.gather(_fold(v, self.in_shape)), (lead[0], lead[1], *onehot.shape[2:]))
        return ops.sum(gv * onehot, axis=4)

    def emit(self, milp, hs, in_bounds, out_bounds, needed=None, relax=False):
        H, W, C = self.in_shape
        ho, wo, k = self.windows.shape
        lo, hi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in in_bounds[0])
        # groups: flat input indices (NHWC) of each output unit's window; -1 for padding
        w = self.windows.reshape(ho * wo, 1, k)
        c = np.arange(C).reshape(1, C, 1)
        groups = np.where(w < H * W, w * C + c, -1).reshape(ho * wo * C, k)
        olo, ohi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in out_bounds)
        return milp.add_max(hs[0], groups, lo, hi, olo, ohi, relax=relax)
