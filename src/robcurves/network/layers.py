"""The layer types of a network description; each knows, in one class, everything about itself.

Every layer is built for fixed per-sample input shapes (``in_shapes``, one tuple per input,
NHWC ``(H, W, C)`` for images, ``(n,)`` for vectors; no batch axis) and implements

- :meth:`Layer.evaluate` - the batched forward pass on ``keras.ops`` (TensorFlow, JAX or
  PyTorch backend), differentiable in the inputs and in the weights (the weights may be
  live Keras variables, as in training); the dtype of the input decides the arithmetic;
- :meth:`Layer.evaluate_numpy` - the same in float64 NumPy (references, MILP checks);
- :meth:`Layer.interval` - interval arithmetic: boxes ``(lo, hi)`` of shape
  ``(batch, *in_shape)`` in, the box of the image out;
- :meth:`Layer.backward` - linear (CROWN-style) bounds backwards: coefficients ``A`` on the
  output, shaped ``(batch, spec, *out_shape)``, give coefficients on each input and a
  constant ``(batch, spec)`` with ``A . out >= sum_i A_i . in_i + c`` for every input in
  the boxes the layer was given (the relaxation of a lower bound; an upper bound of
  ``A . out`` is minus the lower bound of ``-A . out``);
- :meth:`Layer.jvp` - directions through the linear region of a given input (the
  Jacobian products of MMR training);
- :meth:`Layer.emit` - its MILP constraints (:class:`robcurves.exact.milp.MilpBuilder`).

Affine layers (:class:`AffineLayer`: Dense, Conv2D, pooling by averages, elementwise
scaling, Flatten, Reshape) share one implementation of everything from four primitives:
the linear map, its transpose, the map with absolute weights and the sparse matrix.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import scipy.sparse as sp

import keras
from keras import ops as keras_ops

from robcurves.network.xp import is_numpy, numpy_ops, xp

if TYPE_CHECKING:  # pragma: no cover
    from robcurves.exact.milp import MilpBuilder, VarVector

Shape = tuple[int, ...]

#: Conv2D.jvp: inputs up to this size push many directions through one matmul with the
#: conv's matrix (much faster on a CPU than convolving batch * directions small maps)
DENSE_JVP_MAX = 8192


# ------------------------------------------------------------------------ helpers

def _in_trace() -> bool:
    """True while a TensorFlow graph is being traced (tensors made then must not be cached)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def dtype_of(x) -> str:
    """The standard dtype name (``"float32"``, ...) of a tensor or array."""
    if isinstance(x, np.ndarray):
        return str(x.dtype)
    return keras.backend.standardize_dtype(x.dtype)


def to_numpy(v) -> np.ndarray:
    """A parameter (array, tensor or Keras variable) as a float64 NumPy array."""
    if isinstance(v, np.ndarray):
        return v.astype(np.float64, copy=False)
    if isinstance(v, keras.Variable):
        v = v.value
    if hasattr(v, "numpy"):
        return np.asarray(v.numpy(), dtype=np.float64)
    return np.asarray(keras_ops.convert_to_numpy(v), dtype=np.float64)


def _is_live(v) -> bool:
    return not isinstance(v, np.ndarray)


def _lead(A) -> tuple:
    """The two leading (batch, spec) sizes of a coefficient tensor, static where known."""
    shape = A.shape
    b = shape[0] if shape[0] is not None else keras_ops.shape(A)[0]
    s = shape[1] if shape[1] is not None else keras_ops.shape(A)[1]
    return b, s


def _fold(A, shape: Shape):
    """``(batch, spec, *shape)`` -> ``(batch * spec, *shape)``."""
    return xp(A).reshape(A, (-1, *shape))


def _unfold(A, lead: tuple, shape: Shape):
    return xp(A).reshape(A, (lead[0], lead[1], *shape))


def _sum_tail(x, n_lead: int):
    """Sum over every axis after the first ``n_lead``."""
    axes = tuple(range(n_lead, len(x.shape)))
    return xp(x).sum(x, axis=axes) if axes else x


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


# --------------------------------------------------------------------------- base

class Layer:
    """Base class. Subclasses set ``kind`` and implement the methods they support."""

    kind = "layer"
    n_inputs = 1
    #: ``z = W h + b`` (one input) or a sum of such terms (Add): no relaxation needed.
    affine = False
    #: needs bounds on its input(s) for :meth:`backward` (ReLU, MaxPool)
    needs_bounds = False

    def __init__(self, in_shapes: Sequence[Shape], name: str = "") -> None:
        self.in_shapes: tuple[Shape, ...] = tuple(tuple(int(s) for s in shp) for shp in in_shapes)
        if len(self.in_shapes) != self.n_inputs:
            raise ValueError(f"{self.kind} {name!r}: expects {self.n_inputs} input(s), got {len(self.in_shapes)}")
        self.name = name or self.kind
        self.params: dict[str, Any] = {}
        self._cache: dict = {}
        self.out_shape: Shape = self._out_shape()

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]

    def _out_shape(self) -> Shape:
        return self.in_shape

    def __repr__(self) -> str:
        ins = ", ".join(str(s) for s in self.in_shapes)
        return f"{type(self).__name__}({self.name!r}: {ins} -> {self.out_shape})"

    # -- parameters -------------------------------------------------------
    def param(self, key: str, like):
        """Parameter ``key`` in the dtype and array namespace of ``like`` (a NumPy array or a
        tensor); differentiable if it is a live variable and ``like`` is a tensor."""
        return self.derived(key, like, lambda a: a, lambda t: t)

    def derived(self, key: str, like, fn_numpy, fn_ops, *, cache_key: str | None = None):
        """``fn(param)`` in the dtype and namespace of ``like``: computed once in NumPy for
        constants (cached per dtype and backend), with ``keras.ops`` on every call for live
        variables (so gradients reach them)."""
        v = self.params[key]
        dtype = dtype_of(like)
        numpy_side = is_numpy(xp(like))
        if _is_live(v) and not numpy_side:
            return fn_ops(keras_ops.cast(v, dtype))
        ck = (cache_key or key, dtype, "numpy" if numpy_side else keras.backend.backend(), _is_live(v))
        t = None if _is_live(v) else self._cache.get(ck)
        if t is None:
            a = np.asarray(fn_numpy(to_numpy(v)), dtype=dtype)
            t = a if numpy_side else keras_ops.convert_to_tensor(a, dtype=dtype)
            if not _in_trace() and not _is_live(v):
                self._cache[ck] = t
        return t

    def numpy(self, key: str) -> np.ndarray:
        return to_numpy(self.params[key])

    @property
    def live(self) -> bool:
        """True when some parameter is a live (trainable) Keras variable."""
        return any(_is_live(v) for v in self.params.values())

    # -- the interface ----------------------------------------------------
    def evaluate(self, *xs):
        raise NotImplementedError

    def evaluate_numpy(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def interval(self, *boxes):
        raise NotImplementedError

    def backward(self, A, in_bounds=None, alpha=None, split=None):
        raise NotImplementedError

    def jvp(self, xs, vs):
        raise NotImplementedError

    def emit(self, milp: "MilpBuilder", hs: "Sequence[VarVector]", in_bounds, out_bounds,
             needed: np.ndarray | None = None, relax: bool = False) -> "VarVector":
        raise NotImplementedError(f"{self.kind} layers cannot be encoded in a MILP")

    def config(self) -> dict[str, Any]:
        """JSON-ready settings (no weights): what the layer is, for logs and exports."""
        return {"kind": self.kind, "name": self.name}


# ------------------------------------------------------------------------ affine

class AffineLayer(Layer):
    """``z = L(h) + b`` with a linear map ``L``; subclasses give ``L``, ``L^T``, ``|L|`` and the matrix."""

    affine = True
    #: a pure re-indexing (Flatten, Reshape): MILP variables pass through unchanged
    is_reshape = False

    # primitives (batched over any leading axes folded into one)
    def linear(self, x):
        """``L(x)`` for ``x`` of shape ``(N, *in_shape)``."""
        raise NotImplementedError

    def linear_abs(self, x):
        """``|L|(x)``: the map with every weight replaced by its absolute value."""
        raise NotImplementedError

    def linear_t(self, a):
        """``L^T(a)`` for ``a`` of shape ``(N, *out_shape)``: shape ``(N, *in_shape)``."""
        raise NotImplementedError

    def bias(self, like):
        """The bias, broadcastable to ``(N, *out_shape)``, in the dtype/namespace of ``like``, or None."""
        return self.param("b", like) if "b" in self.params else None

    def matrix(self) -> sp.csr_matrix:
        """The sparse ``(n_out, n_in)`` float64 matrix of ``L`` on flattened NHWC vectors."""
        raise NotImplementedError

    def bias_vector(self) -> np.ndarray:
        """The bias as a flat float64 vector of length ``n_out``."""
        n = int(np.prod(self.out_shape))
        if "b" not in self.params:
            return np.zeros(n)
        return np.broadcast_to(self.numpy("b"), self.out_shape).reshape(n).copy()

    def dual_norms(self, q: float, like):
        """``||row_i(L)||_q`` for every output (shape ``out_shape``): the image of an l_p ball
        of radius r (1/p + 1/q = 1) lies in ``L(x0) + b +- r * dual_norms``."""
        key = f"dual_norm_{q}"
        if key not in self._cache or self.live:
            M = abs(self.matrix())
            if math.isinf(q):
                d = np.asarray(M.max(axis=1).todense()).reshape(-1)
            elif q == 1.0:
                d = np.asarray(M.sum(axis=1)).reshape(-1)
            else:
                d = np.asarray(M.power(q).sum(axis=1)).reshape(-1) ** (1.0 / q)
            self._cache[key] = d.reshape(self.out_shape)
        return xp(like).convert_to_tensor(self._cache[key].astype(dtype_of(like)), dtype=dtype_of(like))

    # NumPy side of the primitives via the sparse matrix (fast for convolutions and pools)
    def _np_linear(self, x: np.ndarray, transpose: bool = False, absolute: bool = False) -> np.ndarray:
        key = ("np_matrix", transpose, absolute)
        M = self._cache.get(key) if not self.live else None
        if M is None:
            M = self._matrix_cached()
            M = abs(M) if absolute else M
            M = sp.csr_matrix(M.T) if transpose else M
            if not self.live:
                self._cache[key] = M
        shape_in, shape_out = (self.out_shape, self.in_shape) if transpose else (self.in_shape, self.out_shape)
        flat = x.reshape(-1, int(np.prod(shape_in)))
        return np.asarray(M @ flat.T).T.astype(x.dtype, copy=False).reshape(-1, *shape_out)

    # the interface, from the primitives
    def _matrix_cached(self) -> sp.csr_matrix:
        if "matrix" not in self._cache or self.live:
            self._cache["matrix"] = sp.csr_matrix(self.matrix(), dtype=np.float64)
        return self._cache["matrix"]

    def evaluate(self, x):
        z = self.linear(x)
        b = self.bias(x)
        return z if b is None else z + b

    def evaluate_numpy(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        z = np.asarray(self._matrix_cached() @ x.reshape(n, -1).T).T + self.bias_vector()
        return z.reshape(n, *self.out_shape)

    def interval(self, box):
        lo, hi = box
        mid, rad = (hi + lo) / 2.0, (hi - lo) / 2.0
        c = self.evaluate(mid)
        r = self.linear_abs(rad)
        return c - r, c + r

    def backward(self, A, in_bounds=None, alpha=None, split=None):
        lead = _lead(A)
        a_in = _unfold(self.linear_t(_fold(A, self.out_shape)), lead, self.in_shape)
        b = self.bias(A)
        c = None if b is None else _sum_tail(A * b, 2)
        return [a_in], c

    def jvp(self, xs, vs):
        v = vs[0]
        lead = _lead(v)
        return _unfold(self.linear(_fold(v, self.in_shape)), lead, self.out_shape)

    def emit(self, milp, hs, in_bounds, out_bounds, needed=None, relax=False):
        h = hs[0]
        if self.is_reshape:
            return h
        lo, hi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in out_bounds)
        return milp.add_affine(self._matrix_cached(), self.bias_vector(), h, lo, hi, needed)


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


# ------------------------------------------------------------------- piecewise linear

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
