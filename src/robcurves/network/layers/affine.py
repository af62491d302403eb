"""The affine layer types: Dense, Conv2D (any stride, SAME/VALID or explicit pads), Reshape,
Flatten, Add (residual sums), Scale (folded normalisations) and Pad2D; plus the convolution
geometry (TensorFlow's SAME pads, the sparse matrix of a convolution)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import scipy.sparse as sp

import keras
from keras import ops as keras_ops

from robcurves.network.xp import is_numpy, numpy_ops, xp

from robcurves.network.layers.base import _fold, _is_live, _lead, _unfold, AffineLayer, dtype_of, Layer, Shape

if TYPE_CHECKING:  # pragma: no cover
    from robcurves.exact.milp import MilpBuilder, VarVector



DENSE_JVP_MAX = 8192


def conv_output_size(size: int, k: int, s: int, p0: int, p1: int) -> int:
    return (size + p0 + p1 - k) // s + 1


def tf_same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis: the extra element goes to the end."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def pads_from_padding(padding: str, hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int]) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of Keras/TF ``"same"``/``"valid"`` padding."""
    padding = str(padding).lower()
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        t, b = tf_same_pads(hw[0], kernel[0], strides[0])
        l, r = tf_same_pads(hw[1], kernel[1], strides[1])
        return (t, b, l, r)
    raise ValueError(f"unsupported padding {padding!r}: expected 'same' or 'valid'")


def _pad_or_crop(x, pads: tuple[int, int, int, int]):
    """Pad (positive) or crop (negative) the H and W axes of an NHWC tensor."""
    t, b, l, r = pads
    if max(t, b, l, r) > 0:
        x = xp(x).pad(x, [[0, 0], [max(t, 0), max(b, 0)], [max(l, 0), max(r, 0)], [0, 0]])
    if min(t, b, l, r) < 0:
        H, W = x.shape[1], x.shape[2]
        x = x[:, -min(t, 0):H + min(b, 0), -min(l, 0):W + min(r, 0), :]
    return x


def conv2d_matrix(kernel: np.ndarray, in_shape: Sequence[int], strides: Sequence[int],
                  padding: "str | Sequence[int]") -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """The sparse matrix of a 2-D convolution on NHWC-flattened vectors (bias not included).

    ``kernel`` is HWIO. ``padding`` is ``"same"`` (TensorFlow: the extra row/column at the
    bottom/right), ``"valid"``, or explicit ``(top, bottom, left, right)``.
    Returns ``(W, (H_out, W_out, C_out))``.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    kh, kw, cin, cout = kernel.shape
    H, W_, C = (int(s) for s in in_shape)
    if C != cin:
        raise ValueError(f"conv kernel expects {cin} input channels, input has {C}")
    sh, sw = (int(s) for s in strides)
    pt, pb, pl, pr = (pads_from_padding(padding, (H, W_), (kh, kw), (sh, sw)) if isinstance(padding, str)
                      else tuple(int(p) for p in padding))
    ho, wo = conv_output_size(H, kh, sh, pt, pb), conv_output_size(W_, kw, sw, pl, pr)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv output would be empty for input {tuple(in_shape)} and kernel {kernel.shape}")
    # One entry per (i, j, di, dj, c, o), built with broadcasting.
    i, j, di, dj, c, o = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(kh), np.arange(kw),
                                     np.arange(cin), np.arange(cout), indexing="ij", sparse=True)
    ii = i * sh + di - pt
    jj = j * sw + dj - pl
    shape = np.broadcast_shapes(ii.shape, jj.shape, c.shape, o.shape)
    ii, jj, cc, oo = (np.broadcast_to(a, shape) for a in (ii, jj, c, o))
    ib, jb = np.broadcast_to(i, shape), np.broadcast_to(j, shape)
    vals = np.broadcast_to(kernel[di, dj, c, o], shape)
    ok = (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W_)
    rows = ((ib * wo + jb) * cout + oo)[ok]
    cols = ((ii * W_ + jj) * cin + cc)[ok]
    mat = sp.csr_matrix((vals[ok].astype(np.float64), (rows, cols)), shape=(ho * wo * cout, H * W_ * cin))
    return mat, (ho, wo, cout)


class Dense(AffineLayer):
    """``z = h @ W + b`` on vectors; ``W`` is ``(in, out)`` (the Keras layout)."""

    kind = "dense"

    def __init__(self, in_shape: Shape, W, b=None, name: str = "dense") -> None:
        self._W_shape = tuple(int(s) for s in W.shape)
        super().__init__([in_shape], name)
        if len(self.in_shape) != 1 or self.in_shape[0] != self._W_shape[0]:
            raise ValueError(f"dense {name!r}: weights {self._W_shape} do not fit the input shape {self.in_shape}")
        self.params["W"] = W
        if b is not None:
            if tuple(b.shape) != (self._W_shape[1],):
                raise ValueError(f"dense {name!r}: bias of shape {tuple(b.shape)}, expected ({self._W_shape[1]},)")
            self.params["b"] = b

    def _out_shape(self) -> Shape:
        return (self._W_shape[1],)

    def linear(self, x):
        return xp(x).matmul(x, self.param("W", x))

    def linear_abs(self, x):
        return xp(x).matmul(x, self.derived("W", x, np.abs, keras_ops.abs, cache_key="W_abs"))

    def linear_t(self, a):
        return xp(a).matmul(a, self.derived("W", a, lambda w: w.T, keras_ops.transpose, cache_key="W_t"))

    def backward(self, A, in_bounds=None, alpha=None, split=None):
        # (batch, spec, out) @ (out, in): no folding needed
        ops = xp(A)
        a_in = ops.matmul(A, self.derived("W", A, lambda w: w.T, keras_ops.transpose, cache_key="W_t"))
        b = self.bias(A)
        return [a_in], (None if b is None else ops.sum(A * b, axis=-1))

    def jvp(self, xs, vs):
        return xp(vs[0]).matmul(vs[0], self.param("W", vs[0]))

    def matrix(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.numpy("W").T)

    def dual_norms(self, q: float, like):
        W = self.param("W", like)  # keras.ops for tensors, so that IBP training differentiates through it
        ops = xp(like)
        if math.isinf(q):
            return ops.max(ops.abs(W), axis=0)
        if q == 1.0:
            return ops.sum(ops.abs(W), axis=0)
        return ops.sqrt(ops.sum(ops.square(W), axis=0))


class Conv2D(AffineLayer):
    """2-D convolution, NHWC, kernel HWIO, bias ``(C_out,)``, any stride, explicit padding
    ``(top, bottom, left, right)`` (TensorFlow's SAME/VALID or ONNX pads); zero padding."""

    kind = "conv2d"

    def __init__(self, in_shape: Shape, W, b=None, strides=(1, 1), padding: "str | Sequence[int]" = "valid",
                 name: str = "conv2d") -> None:
        self._W_shape = tuple(int(s) for s in W.shape)
        if len(self._W_shape) != 4:
            raise ValueError(f"conv2d {name!r}: kernel must be HWIO (4-D), got shape {self._W_shape}")
        self.strides = tuple(int(s) for s in strides)
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 3:
            raise ValueError(f"conv2d {name!r}: needs an (H, W, C) input, got {in_shape}")
        self.pads = (pads_from_padding(padding, in_shape[:2], self._W_shape[:2], self.strides)
                     if isinstance(padding, str) else tuple(int(p) for p in padding))
        super().__init__([in_shape], name)
        if self.in_shape[2] != self._W_shape[2]:
            raise ValueError(f"conv2d {name!r}: kernel {self._W_shape} expects {self._W_shape[2]} input channels, "
                             f"input has {self.in_shape[2]}")
        self.params["W"] = W
        if b is not None:
            if tuple(b.shape) != (self._W_shape[3],):
                raise ValueError(f"conv2d {name!r}: bias of shape {tuple(b.shape)}, expected ({self._W_shape[3]},)")
            self.params["b"] = b

    def _out_shape(self) -> Shape:
        kh, kw, _, cout = self._W_shape
        H, W, _ = self.in_shape
        t, b, l, r = self.pads
        ho, wo = conv_output_size(H, kh, self.strides[0], t, b), conv_output_size(W, kw, self.strides[1], l, r)
        if ho < 1 or wo < 1:
            raise ValueError(f"conv2d {self.name!r}: empty output for input {self.in_shape} and kernel {self._W_shape}")
        return (ho, wo, cout)

    @property
    def padding_name(self) -> str | None:
        """``"same"``/``"valid"`` when the pads are TensorFlow's, else None."""
        for name in ("valid", "same"):
            if self.pads == pads_from_padding(name, self.in_shape[:2], self._W_shape[:2], self.strides):
                return name
        return None

    def _conv(self, x, k):
        return keras_ops.conv(_pad_or_crop(x, self.pads), k, strides=self.strides, padding="valid")

    def linear(self, x):
        if isinstance(x, np.ndarray):
            return self._np_linear(x)
        return self._conv(x, self.param("W", x))

    def linear_abs(self, x):
        if isinstance(x, np.ndarray):
            return self._np_linear(x, absolute=True)
        return self._conv(x, self.derived("W", x, np.abs, keras_ops.abs, cache_key="W_abs"))

    def linear_t(self, a):
        if isinstance(a, np.ndarray):
            return self._np_linear(a, transpose=True)
        ops = keras_ops
        # The transpose of a strided conv: dilate by the strides, pad, and convolve with the
        # kernel flipped in space and with in/out channels swapped (stride 1, VALID).
        kh, kw, _, _ = self._W_shape
        sh, sw = self.strides
        ho, wo, cout = self.out_shape
        H, W, _ = self.in_shape
        t, _, l, _ = self.pads
        if sh > 1 or sw > 1:
            a = ops.reshape(a, (-1, ho, 1, wo, 1, cout))
            a = ops.pad(a, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
            a = ops.reshape(a, (-1, ho * sh, wo * sw, cout))[:, :(ho - 1) * sh + 1, :(wo - 1) * sw + 1, :]
        top, left = kh - 1 - t, kw - 1 - l
        bottom = H - (ho - 1) * sh - 1 + t
        right = W - (wo - 1) * sw - 1 + l
        a = _pad_or_crop(a, (top, bottom, left, right))
        k = self.derived("W", a, lambda w: np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2)),
                         lambda w: ops.transpose(ops.flip(ops.flip(w, 0), 1), (0, 1, 3, 2)), cache_key="W_t")
        return ops.conv(a, k, strides=1, padding="valid")

    def jvp(self, xs, vs):
        v = vs[0]
        lead = _lead(v)
        n_in = int(np.prod(self.in_shape))
        ops = keras_ops
        if isinstance(v, np.ndarray):
            return _unfold(self._np_linear(_fold(v, self.in_shape)), lead, self.out_shape)
        if v.shape[0] != 1 and n_in <= DENSE_JVP_MAX and keras.backend.backend() == "tensorflow":
            # Many directions (MMR): one matmul with the conv's matrix (the conv of the
            # identity) is much faster on CPU than convolving batch * d small feature maps.
            eye = ops.reshape(ops.eye(n_in, dtype=dtype_of(v)), (n_in, *self.in_shape))
            mat = ops.reshape(self.linear(eye), (n_in, -1))
            out = ops.matmul(ops.reshape(v, (lead[0], lead[1], n_in)), mat)
            return ops.reshape(out, (lead[0], lead[1], *self.out_shape))
        return _unfold(self.linear(_fold(v, self.in_shape)), lead, self.out_shape)

    def matrix(self) -> sp.csr_matrix:
        return conv2d_matrix(self.numpy("W"), self.in_shape, self.strides, self.pads)[0]

    def dual_norms(self, q: float, like):
        if isinstance(like, np.ndarray) or not self.live:
            return AffineLayer.dual_norms(self, q, like)  # exact, from the matrix
        ops = keras_ops
        dtype = dtype_of(like)
        W = self.param("W", like)
        if math.isinf(q):  # max over the kernel (a sound upper bound where padding cuts it)
            m = ops.max(ops.reshape(ops.abs(W), (-1, self._W_shape[3])), axis=0)
            return ops.broadcast_to(m, self.out_shape)
        # exact, padding included: the conv of a constant image with |W|^q
        ones = ops.ones((1, *self.in_shape), dtype=dtype)
        s = self._conv(ones, ops.abs(W) if q == 1.0 else ops.abs(W) ** q)[0]
        return s if q == 1.0 else s ** (1.0 / q)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "kernel": list(self._W_shape), "strides": list(self.strides),
                "pads": list(self.pads), "padding": self.padding_name}


class Reshape(AffineLayer):
    """Row-major (NHWC) re-indexing to ``target``; Flatten is the special case ``(n,)``."""

    kind = "reshape"
    is_reshape = True

    def __init__(self, in_shape: Shape, target: Shape, name: str = "reshape") -> None:
        self.target = tuple(int(t) for t in target)
        super().__init__([in_shape], name)
        if int(np.prod(self.target)) != int(np.prod(self.in_shape)):
            raise ValueError(f"{self.kind} {name!r}: cannot reshape {self.in_shape} to {self.target}")

    def _out_shape(self) -> Shape:
        return self.target

    def linear(self, x):
        return xp(x).reshape(x, (-1, *self.out_shape))

    linear_abs = linear

    def linear_t(self, a):
        return xp(a).reshape(a, (-1, *self.in_shape))

    def evaluate_numpy(self, x):
        x = np.asarray(x, dtype=np.float64)
        return x.reshape(len(x), *self.out_shape)

    def interval(self, box):
        return self.linear(box[0]), self.linear(box[1])

    def matrix(self) -> sp.csr_matrix:
        return sp.identity(int(np.prod(self.in_shape)), format="csr")

    def dual_norms(self, q, like):
        return xp(like).ones(self.out_shape, dtype=dtype_of(like))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "target": list(self.target)}


class Flatten(Reshape):
    """Flatten in NHWC row-major order (Keras ``channels_last``, Croce et al.'s TF code)."""

    kind = "flatten"

    def __init__(self, in_shape: Shape, name: str = "flatten") -> None:
        super().__init__(in_shape, (int(np.prod(in_shape)),), name)


class Add(Layer):
    """The sum of two tensors of the same shape (residual connections)."""

    kind = "add"
    n_inputs = 2
    affine = True

    def __init__(self, in_shapes: Sequence[Shape], name: str = "add") -> None:
        super().__init__(in_shapes, name)
        if self.in_shapes[0] != self.in_shapes[1]:
            raise ValueError(f"add {name!r}: input shapes differ: {self.in_shapes[0]} and {self.in_shapes[1]}")

    def evaluate(self, x1, x2):
        return x1 + x2

    def evaluate_numpy(self, x1, x2):
        return np.asarray(x1, dtype=np.float64) + np.asarray(x2, dtype=np.float64)

    def interval(self, box1, box2):
        return box1[0] + box2[0], box1[1] + box2[1]

    def backward(self, A, in_bounds=None, alpha=None, split=None):
        return [A, A], None

    def jvp(self, xs, vs):
        return vs[0] + vs[1]

    def emit(self, milp, hs, in_bounds, out_bounds, needed=None, relax=False):
        lo, hi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in out_bounds)
        return milp.add_sum(hs, lo, hi, needed)


class Scale(AffineLayer):
    """Elementwise ``x * scale + offset`` (folded BatchNorm, input normalisation, Rescaling).

    ``scale`` and ``offset`` broadcast to the input shape (per channel or per element).
    The reader folds a Scale into a neighbouring Conv2D/Dense where that is exact; one
    that cannot be folded (e.g. an offset before a zero-padded conv) stays as this layer.
    """

    kind = "scale"

    def __init__(self, in_shape: Shape, scale, offset=None, name: str = "scale") -> None:
        super().__init__([in_shape], name)
        scale = np.asarray(scale, dtype=np.float64) if not _is_live(scale) else scale
        for what, v in (("scale", scale), ("offset", offset)):
            if v is not None and np.broadcast_shapes(tuple(v.shape), self.in_shape) != self.in_shape:
                raise ValueError(f"scale {name!r}: {what} of shape {tuple(v.shape)} does not broadcast to {self.in_shape}")
        self.params["s"] = scale
        if offset is not None:
            self.params["b"] = np.asarray(offset, dtype=np.float64)

    def full(self, key: str) -> np.ndarray:
        """``scale`` or ``offset`` broadcast to the input shape (float64)."""
        if key == "b" and "b" not in self.params:
            return np.zeros(self.in_shape)
        return np.broadcast_to(self.numpy(key), self.in_shape).astype(np.float64)

    def linear(self, x):
        return x * self.param("s", x)

    def linear_abs(self, x):
        return x * self.derived("s", x, np.abs, keras_ops.abs, cache_key="s_abs")

    linear_t = linear

    def matrix(self) -> sp.csr_matrix:
        return sp.diags(self.full("s").reshape(-1), format="csr")


class Pad2D(AffineLayer):
    """Zero padding (positive pads) or cropping (negative pads) of H and W: ``(top, bottom, left, right)``.

    Keras ZeroPadding2D/Cropping2D; the reader folds it into the Conv2D that follows."""

    kind = "pad2d"

    def __init__(self, in_shape: Shape, pads: Sequence[int], name: str = "pad2d") -> None:
        self.pads = tuple(int(p) for p in pads)
        super().__init__([in_shape], name)
        if len(self.in_shape) != 3:
            raise ValueError(f"pad2d {name!r}: needs an (H, W, C) input, got {self.in_shape}")

    def _out_shape(self) -> Shape:
        H, W, C = self.in_shape
        t, b, l, r = self.pads
        if H + t + b < 1 or W + l + r < 1:
            raise ValueError(f"pad2d {self.name!r}: pads {self.pads} leave nothing of {self.in_shape}")
        return (H + t + b, W + l + r, C)

    def linear(self, x):
        return _pad_or_crop(x, self.pads)

    linear_abs = linear

    def linear_t(self, a):
        return _pad_or_crop(a, tuple(-p for p in self.pads))

    def matrix(self) -> sp.csr_matrix:
        H, W, C = self.in_shape
        Ho, Wo, _ = self.out_shape
        t, _, l, _ = self.pads
        i, j, c = np.meshgrid(np.arange(Ho), np.arange(Wo), np.arange(C), indexing="ij")
        si, sj = i - t, j - l
        ok = (si >= 0) & (si < H) & (sj >= 0) & (sj < W)
        rows = ((i * Wo + j) * C + c)[ok]
        cols = ((si * W + sj) * C + c)[ok]
        return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(Ho * Wo * C, H * W * C))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "pads": list(self.pads)}
