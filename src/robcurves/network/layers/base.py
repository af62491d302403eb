"""The base classes of the layer types (:class:`Layer`, :class:`AffineLayer`) and the
tensor helpers they share; see :mod:`robcurves.network.layers` for what every layer implements."""

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
