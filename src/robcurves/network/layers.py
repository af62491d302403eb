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
from keras import ops

if TYPE_CHECKING:  # pragma: no cover
    from robcurves.exact.milp import MilpBuilder, VarVector

Shape = tuple[int, ...]


# ------------------------------------------------------------------------ helpers

def _in_trace() -> bool:
    """True while a TensorFlow graph is being traced (tensors made then must not be cached)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def dtype_of(x) -> str:
    """The standard dtype name (``"float32"``, ...) of a tensor or array."""
    return keras.backend.standardize_dtype(x.dtype)


def to_numpy(v) -> np.ndarray:
    """A parameter (array, tensor or Keras variable) as a float64 NumPy array."""
    if isinstance(v, np.ndarray):
        return v.astype(np.float64, copy=False)
    if isinstance(v, keras.Variable):
        v = v.value
    return np.asarray(ops.convert_to_numpy(v), dtype=np.float64)


def _is_live(v) -> bool:
    return not isinstance(v, np.ndarray)


def _lead(A) -> tuple:
    """The two leading (batch, spec) sizes of a coefficient tensor, static where known."""
    shape = A.shape
    b = shape[0] if shape[0] is not None else ops.shape(A)[0]
    s = shape[1] if shape[1] is not None else ops.shape(A)[1]
    return b, s


def _fold(A, shape: Shape):
    """``(batch, spec, *shape)`` -> ``(batch * spec, *shape)``."""
    return ops.reshape(A, (-1, *shape))


def _unfold(A, lead: tuple, shape: Shape):
    return ops.reshape(A, (lead[0], lead[1], *shape))


def _sum_tail(x, n_lead: int):
    """Sum over every axis after the first ``n_lead``."""
    axes = tuple(range(n_lead, len(x.shape)))
    return ops.sum(x, axis=axes) if axes else x


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
        x = ops.pad(x, [[0, 0], [max(t, 0), max(b, 0)], [max(l, 0), max(r, 0)], [0, 0]])
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
    def param(self, key: str, dtype: str):
        """Parameter ``key`` as a tensor of ``dtype`` (differentiable if it is a live variable)."""
        return self.derived(key, dtype, lambda a: a, lambda t: t)

    def derived(self, key: str, dtype: str, fn_numpy, fn_ops, *, cache_key: str | None = None):
        """``fn(param)`` as a tensor: computed once in NumPy for constants (cached per dtype
        and backend), with ``keras.ops`` on every call for live variables (so gradients
        reach them)."""
        v = self.params[key]
        if _is_live(v):
            return fn_ops(ops.cast(v, dtype))
        ck = (cache_key or key, str(dtype), keras.backend.backend())
        t = self._cache.get(ck)
        if t is None:
            t = ops.convert_to_tensor(np.asarray(fn_numpy(v.astype(np.float64)), dtype=dtype), dtype=dtype)
            if not _in_trace():
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

    def bias(self, dtype: str):
        """The bias, broadcastable to ``(N, *out_shape)``, or None."""
        return self.param("b", dtype) if "b" in self.params else None

    def matrix(self) -> sp.csr_matrix:
        """The sparse ``(n_out, n_in)`` float64 matrix of ``L`` on flattened NHWC vectors."""
        raise NotImplementedError

    def bias_vector(self) -> np.ndarray:
        """The bias as a flat float64 vector of length ``n_out``."""
        n = int(np.prod(self.out_shape))
        if "b" not in self.params:
            return np.zeros(n)
        return np.broadcast_to(self.numpy("b"), self.out_shape).reshape(n).copy()

    def dual_norms(self, q: float, dtype: str):
        """``||row_i(L)||_q`` for every output (shape ``out_shape``): the image of an l_p ball
        of radius r (1/p + 1/q = 1) lies in ``L(x0) + b +- r * dual_norms``."""
        key = f"dual_norm_{q}"
        if key not in self._cache:
            M = abs(self.matrix())
            if math.isinf(q):
                d = np.asarray(M.max(axis=1).todense()).reshape(-1)
            elif q == 1.0:
                d = np.asarray(M.sum(axis=1)).reshape(-1)
            else:
                d = np.asarray(M.power(q).sum(axis=1)).reshape(-1) ** (1.0 / q)
            self._cache[key] = d.reshape(self.out_shape)
        return ops.convert_to_tensor(self._cache[key], dtype=dtype)

    # the interface, from the primitives
    def _matrix_cached(self) -> sp.csr_matrix:
        if "matrix" not in self._cache or self.live:
            self._cache["matrix"] = sp.csr_matrix(self.matrix(), dtype=np.float64)
        return self._cache["matrix"]

    def evaluate(self, x):
        z = self.linear(x)
        b = self.bias(dtype_of(x))
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
        b = self.bias(dtype_of(A))
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
        return ops.matmul(x, self.param("W", dtype_of(x)))

    def linear_abs(self, x):
        return ops.matmul(x, self.derived("W", dtype_of(x), np.abs, ops.abs, cache_key="W_abs"))

    def linear_t(self, a):
        return ops.matmul(a, self.derived("W", dtype_of(a), lambda w: w.T, ops.transpose, cache_key="W_t"))

    def backward(self, A, in_bounds=None, alpha=None, split=None):
        # (batch, spec, out) @ (out, in): no folding needed
        dt = dtype_of(A)
        a_in = ops.matmul(A, self.derived("W", dt, lambda w: w.T, ops.transpose, cache_key="W_t"))
        b = self.bias(dt)
        return [a_in], (None if b is None else ops.sum(A * b, axis=-1))

    def jvp(self, xs, vs):
        return ops.matmul(vs[0], self.param("W", dtype_of(vs[0])))

    def matrix(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.numpy("W").T)

    def dual_norms(self, q: float, dtype: str):
        W = self.param("W", dtype)  # keras.ops, so that IBP training differentiates through it
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
        return ops.conv(_pad_or_crop(x, self.pads), k, strides=self.strides, padding="valid")

    def linear(self, x):
        return self._conv(x, self.param("W", dtype_of(x)))

    def linear_abs(self, x):
        return self._conv(x, self.derived("W", dtype_of(x), np.abs, ops.abs, cache_key="W_abs"))

    def linear_t(self, a):
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
        k = self.derived("W", dtype_of(a), lambda w: np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2)),
                         lambda w: ops.transpose(ops.flip(ops.flip(w, 0), 1), (0, 1, 3, 2)), cache_key="W_t")
        return ops.conv(a, k, strides=1, padding="valid")

    def jvp(self, xs, vs):
        v = vs[0]
        lead = _lead(v)
        n_in = int(np.prod(self.in_shape))
        if isinstance(lead[1], int) and lead[1] > 64 and n_in <= 8192 and keras.backend.backend() == "tensorflow":
            # Many directions (MMR): one matmul with the conv's matrix (the conv of the
            # identity) is much faster on CPU than convolving batch * d small feature maps.
            eye = ops.reshape(ops.eye(n_in, dtype=dtype_of(v)), (n_in, *self.in_shape))
            mat = ops.reshape(self.linear(eye), (n_in, -1))
            out = ops.matmul(ops.reshape(v, (lead[0], lead[1], n_in)), mat)
            return ops.reshape(out, (lead[0], lead[1], *self.out_shape))
        return _unfold(self.linear(_fold(v, self.in_shape)), lead, self.out_shape)

    def matrix(self) -> sp.csr_matrix:
        return conv2d_matrix(self.numpy("W"), self.in_shape, self.strides, self.pads)[0]

    def dual_norms(self, q: float, dtype: str):
        W = self.param("W", dtype)
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
        return ops.reshape(x, (-1, *self.out_shape))

    linear_abs = linear

    def linear_t(self, a):
        return ops.reshape(a, (-1, *self.in_shape))

    def evaluate_numpy(self, x):
        x = np.asarray(x, dtype=np.float64)
        return x.reshape(len(x), *self.out_shape)

    def interval(self, box):
        return self.linear(box[0]), self.linear(box[1])

    def matrix(self) -> sp.csr_matrix:
        return sp.identity(int(np.prod(self.in_shape)), format="csr")

    def dual_norms(self, q, dtype):
        return ops.ones(self.out_shape, dtype=dtype)

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
        return ops.relu(x)

    def evaluate_numpy(self, x):
        return np.maximum(np.asarray(x, dtype=np.float64), 0.0)

    def interval(self, box):
        lo, hi = box
        return ops.relu(lo), ops.relu(hi)

    def relaxation(self, lo, hi, alpha=None, split=None):
        """Slopes and intercepts of the linear bounds ``lower_slope z <= relu(z) <= upper_slope z + upper_int``.

        ``lo``, ``hi`` (pre-activation bounds), ``alpha`` and ``split`` broadcast together;
        ``alpha`` (clipped to [0, 1], so any value is sound) replaces the adaptive lower
        slope of unstable units; ``split`` (+1 active, -1 inactive, 0 free) fixes units
        (the relaxation then holds where the split's sign constraint holds).
        """
        dt = dtype_of(lo)
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
