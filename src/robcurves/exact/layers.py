"""Piecewise-linear networks for the exact verifier: a chain of affine maps and ReLUs.

Each layer knows two things (as in MIPVerify.jl): how to evaluate itself on numbers
(:meth:`evaluate`, float64 batches of flattened NHWC vectors) and how to emit its
constraints into a MILP given bounds on its input (:meth:`emit`). Dense and Conv2D
(any stride, SAME or VALID padding) both become one sparse :class:`Affine` map on the
flattened input, so the MILP builder never loops over variables in Python.

:func:`network_from_keras` reads a Keras 3 model made of ``InputLayer``, ``Conv2D``,
``Dense``, ``Flatten``, ``ReLU`` (and ``Dropout``, the identity at inference) and
rejects anything else with a message that names the layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    from robcurves.exact.milp import MilpBuilder, VarVector


@dataclass
class Affine:
    """``z = W h + b`` on flattened vectors; ``W`` is a sparse ``(n_out, n_in)`` matrix."""

    W: sp.csr_matrix
    b: np.ndarray
    name: str = "affine"
    out_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.W = sp.csr_matrix(self.W, dtype=np.float64)
        self.b = np.asarray(self.b, dtype=np.float64).reshape(-1)
        if self.W.shape[0] != self.b.shape[0]:
            raise ValueError(f"{self.name}: W has {self.W.shape[0]} rows but b has {self.b.shape[0]} entries")
        if not self.out_shape:
            self.out_shape = (self.W.shape[0],)
        # Positive and negative parts, reused by every interval-arithmetic pass.
        self._Wp = self.W.maximum(0).tocsr()
        self._Wn = self.W.minimum(0).tocsr()

    @property
    def n_in(self) -> int:
        return int(self.W.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.W.shape[0])

    def evaluate(self, h: np.ndarray) -> np.ndarray:
        return np.asarray(self.W @ np.asarray(h, dtype=np.float64).T).T + self.b

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval arithmetic: elementwise bounds of ``z`` for ``h`` in the box [lo, hi]."""
        return self._Wp @ lo + self._Wn @ hi + self.b, self._Wp @ hi + self._Wn @ lo + self.b

    def emit(self, milp: "MilpBuilder", h: "VarVector", lo: np.ndarray, hi: np.ndarray,
             needed: np.ndarray | None = None) -> "VarVector":
        """New variables ``z`` in [lo, hi] (bounds on this layer's output) tied by ``z = W h + b``.

        ``needed`` (boolean mask) limits the variables to the units that matter.
        """
        return milp.add_affine(self.W, self.b, h, lo, hi, needed)


@dataclass
class ReLU:
    """``a = max(z, 0)``; stable units need no binary variable (see :meth:`emit`)."""

    name: str = "relu"

    def evaluate(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0.0)

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.maximum(lo, 0.0), np.maximum(hi, 0.0)

    def emit(self, milp: "MilpBuilder", z: "VarVector", lo: np.ndarray, hi: np.ndarray,
             relax: bool = False) -> "VarVector":
        """Big-M encoding with the asymmetric bounds ``lo < 0 < hi`` of each unstable unit.

        ``relax=True`` replaces the binary by a continuous variable in [0, 1], which gives
        the triangle (LP) relaxation used for bound tightening.
        """
        return milp.add_relu(z, lo, hi, relax=relax)


@dataclass
class Network:
    """A chain of :class:`Affine` and :class:`ReLU` layers on flattened NHWC inputs."""

    layers: list
    input_shape: tuple[int, ...]
    n_classes: int
    layer_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.layers or not isinstance(self.layers[-1], Affine):
            raise ValueError("a network must end with an affine layer giving the logits")
        for a, b in zip(self.layers, self.layers[1:]):
            if isinstance(a, ReLU) and isinstance(b, ReLU):
                raise ValueError("two ReLU layers in a row: merge them (max(max(z,0),0) = max(z,0))")

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def affines(self) -> list[Affine]:
        return [layer for layer in self.layers if isinstance(layer, Affine)]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Logits (float64) of a batch ``x`` of shape ``(N, *input_shape)`` or ``(N, n_inputs)``."""
        h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        for layer in self.layers:
            h = layer.evaluate(h)
        return h

    def activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Every intermediate value of one flattened input ``x``: [x, out_1, out_2, ...]."""
        h = np.asarray(x, dtype=np.float64).reshape(1, -1)
        out = [h[0]]
        for layer in self.layers:
            h = layer.evaluate(h)
            out.append(h[0])
        return out


# ----------------------------------------------------------------------------- Keras

def conv2d_matrix(kernel: np.ndarray, in_shape: Sequence[int], strides: Sequence[int],
                  padding: str) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """The sparse matrix of a 2-D convolution (TensorFlow semantics) on NHWC-flattened vectors.

    ``kernel`` is HWIO. SAME padding puts the extra row/column at the bottom/right, as
    TensorFlow does. Returns ``(W, (H_out, W_out, C_out))``; the bias is not included.
    """
    kh, kw, cin, cout = kernel.shape
    H, W_, C = (int(s) for s in in_shape)
    if C != cin:
        raise ValueError(f"conv kernel expects {cin} input channels, input has {C}")
    sh, sw = (int(s) for s in strides)
    padding = padding.lower()
    if padding == "valid":
        ho, wo = (H - kh) // sh + 1, (W_ - kw) // sw + 1
        pt = pl = 0
    elif padding == "same":
        ho, wo = math.ceil(H / sh), math.ceil(W_ / sw)
        pt = max((ho - 1) * sh + kh - H, 0) // 2
        pl = max((wo - 1) * sw + kw - W_, 0) // 2
    else:
        raise ValueError(f"unsupported padding {padding!r}: expected 'same' or 'valid'")
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


def _activation_name(layer) -> str:
    import keras

    act = keras.activations.serialize(layer.activation)
    return act if isinstance(act, str) else str(act.get("config", act))


def network_from_keras(model, check: bool = True) -> Network:
    """Convert a Keras chain of InputLayer/Conv2D/Dense/Flatten/ReLU/Dropout into a :class:`Network`.

    Conv2D and Dense may carry ``activation="relu"`` or ``"linear"``. Anything else
    raises ``ValueError`` naming the layer. With ``check=True`` the converted network is
    compared with the Keras model on a few random inputs, so a model that is not a plain
    chain cannot slip through.
    """
    import keras

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"exact: model must have one input and one output, got {len(model.inputs)} and {len(model.outputs)}")
    in_shape = tuple(model.inputs[0].shape[1:])
    if any(s is None for s in in_shape):
        raise ValueError(f"exact: model input shape must be fixed, got {in_shape}")
    shape: tuple[int, ...] = tuple(int(s) for s in in_shape)
    layers: list = []
    names: list[str] = []

    def add(layer, name):
        if isinstance(layer, ReLU) and layers and isinstance(layers[-1], ReLU):
            return
        layers.append(layer)
        names.append(name)

    for layer in model.layers:
        what = f"layer {layer.name!r} ({type(layer).__name__})"
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            raise ValueError(f"exact: unsupported {what}: nested models are not supported")
        if isinstance(layer, keras.layers.Dense):
            if len(shape) != 1:
                raise ValueError(f"exact: unsupported {what}: Dense on a {len(shape)}-D tensor (add a Flatten first)")
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
            bias = np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.use_bias else np.zeros(kernel.shape[1])
            add(Affine(sp.csr_matrix(kernel.T), bias, name=layer.name, out_shape=(kernel.shape[1],)), layer.name)
            shape = (kernel.shape[1],)
        elif isinstance(layer, keras.layers.Conv2D) and type(layer).__name__ in ("Conv2D", "Convolution2D"):
            if layer.data_format != "channels_last":
                raise ValueError(f"exact: unsupported {what}: data_format must be channels_last")
            if tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1:
                raise ValueError(f"exact: unsupported {what}: dilated or grouped convolution")
            if len(shape) != 3:
                raise ValueError(f"exact: unsupported {what}: Conv2D needs an (H, W, C) input, got {shape}")
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
            mat, shape = conv2d_matrix(kernel, shape, layer.strides, layer.padding)
            bias = np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.use_bias else np.zeros(kernel.shape[3])
            add(Affine(mat, np.tile(bias, mat.shape[0] // len(bias)), name=layer.name, out_shape=shape), layer.name)
        elif isinstance(layer, keras.layers.Flatten):
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                raise ValueError(f"exact: unsupported {what}: data_format must be channels_last")
            shape = (int(np.prod(shape)),)  # NHWC row-major: the flattened vector does not move
            continue
        elif isinstance(layer, keras.layers.ReLU):
            if layer.max_value is not None or float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
                raise ValueError(f"exact: unsupported {what}: only a plain ReLU (no cap, leak or threshold)")
            add(ReLU(name=layer.name), layer.name)
            continue
        elif isinstance(layer, keras.layers.Activation):
            act = _activation_name(layer)
            if act == "relu":
                add(ReLU(name=layer.name), layer.name)
            elif act != "linear":
                raise ValueError(f"exact: unsupported {what}: activation {act!r} (only relu or linear)")
            continue
        elif isinstance(layer, keras.layers.Dropout):
            continue  # the identity at inference
        else:
            raise ValueError(
                f"exact: unsupported {what}: only InputLayer, Conv2D, Dense, Flatten, ReLU and "
                f"Dropout layers can be encoded")
        act = _activation_name(layer)
        if act == "relu":
            add(ReLU(name=f"{layer.name}/relu"), f"{layer.name}/relu")
        elif act != "linear":
            raise ValueError(f"exact: unsupported {what}: activation {act!r} (only relu or linear)")

    if len(shape) != 1:
        raise ValueError(f"exact: the model output must be a vector of logits, got shape {shape}")
    if not layers or not isinstance(layers[-1], Affine):
        raise ValueError("exact: the last layer must be Dense or Conv2D without activation (the logits)")
    net = Network(layers, tuple(int(s) for s in in_shape), int(shape[0]), names)
    if check:
        rng = np.random.default_rng(0)
        x = rng.random((4, *net.input_shape)).astype(np.float32)
        ref = np.asarray(model(x, training=False), dtype=np.float64)
        got = net.evaluate(x)
        if ref.shape != got.shape or not np.allclose(ref, got, rtol=1e-4, atol=1e-4 * (1 + np.abs(ref).max())):
            raise ValueError("exact: the converted network disagrees with the Keras model (not a plain chain?)")
    return net
