"""The network as bound propagation sees it: linear layers (Dense, Conv2D) and ReLUs.

A :class:`BoundNet` is a chain ``z_1 = L_1(x)``, ``a_k = relu(z_k)``,
``z_{k+1} = L_{k+1}(a_k)``, ..., ``z_K`` = the logits. Every linear layer knows how to

- evaluate itself (:meth:`LinearLayer.forward`, ``keras.ops``, batched, NHWC),
- push linear-bound coefficients backwards (:meth:`LinearLayer.backward`: ``A -> A W``,
  the transposed convolution for Conv2D, exactly the adjoint of :meth:`forward`),
- bound its own float32 rounding error (:meth:`LinearLayer.abs_forward`, ``|W| m``).

This is the adapter the issue allows until the shared network description
(``robcurves.network``) lands: it reads the plain Keras chains that ``robcurves.models``
writes (``InputLayer``, ``Conv2D``, ``Dense``, ``Flatten``, ``ReLU``, ``Dropout``), checks
them with :func:`robcurves.exact.layers.network_from_keras` (which rejects anything else by
name), and compares its own evaluation with the Keras model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robcurves.exact.bab.ops import DTYPE, ops, tensor


@dataclass
class LinearLayer:
    """``z = W h + b`` as a Dense (``kernel`` (n_in, n_out)) or Conv2D (``kernel`` HWIO) layer.

    ``in_shape``/``out_shape`` exclude the batch. ``fan_in`` is the number of products
    summed per output (kernel height x width x input channels for a convolution).
    """

    kind: str  # "dense" | "conv"
    kernel: np.ndarray
    bias: np.ndarray  # flat, (n_out,)
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    name: str = "linear"
    output_padding: tuple[int, int] | None = None
    _t: dict = field(default_factory=dict, repr=False)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def fan_in(self) -> int:
        if self.kind == "dense":
            return int(self.kernel.shape[0])
        kh, kw, cin, _ = self.kernel.shape
        return int(kh * kw * cin)

    def _k(self, dtype: str = DTYPE):
        key = ("k", dtype)
        if key not in self._t:
            self._t[key] = tensor(self.kernel, dtype)
            self._t[("b", dtype)] = tensor(self.bias, dtype)
            self._t[("absk", dtype)] = tensor(np.abs(self.kernel), dtype)
            self._t[("absb", dtype)] = tensor(np.abs(self.bias), dtype)
        return self._t[key]

    def b(self, dtype: str = DTYPE):
        self._k(dtype)
        return self._t[("b", dtype)]

    def linear(self, h, dtype: str = DTYPE, absolute: bool = False):
        """``W h`` (no bias) for a batch ``h`` of shape ``(B, *in_shape)`` or ``(B, n_in)``."""
        self._k(dtype)
        k = self._t[("absk", dtype)] if absolute else self._t[("k", dtype)]
        h = ops.reshape(h, (-1, *self.in_shape))
        if self.kind == "dense":
            return ops.matmul(h, k)
        return ops.conv(h, k, strides=self.strides, padding=self.padding)

    def forward(self, h, dtype: str = DTYPE):
        """``W h + b``, shape ``(B, n_out)`` (flattened NHWC)."""
        z = self.linear(h, dtype)
        return ops.reshape(z, (-1, self.n_out)) + self.b(dtype)

    def abs_b(self, dtype: str = DTYPE):
        self._k(dtype)
        return self._t[("absb", dtype)]

    def backward(self, A, dtype: str = DTYPE, absolute: bool = False):
        """Coefficients on the input of ``A . (W h)``: ``A W``, ``(R, n_out) -> (R, n_in)``
        (``A |W|`` with ``absolute=True``)."""
        self._k(dtype)
        k = self._t[("absk", dtype)] if absolute else self._t[("k", dtype)]
        if self.kind == "dense":
            return ops.matmul(ops.reshape(A, (-1, self.n_out)), ops.transpose(k))
        A = ops.reshape(A, (-1, *self.out_shape))
        out = ops.conv_transpose(A, k, strides=self.strides, padding=self.padding,
                                 output_padding=self.output_padding)
        return ops.reshape(out, (-1, self.n_in))

    def abs_forward(self, m: np.ndarray) -> np.ndarray:
        """``|W| m`` for non-negative ``m`` of shape ``(B, n_in)`` (NumPy float64, (B, n_out))."""
        z = self.linear(tensor(np.asarray(m, dtype=np.float64)), "float64", absolute=True)
        return np.asarray(ops.convert_to_numpy(ops.reshape(z, (-1, self.n_out))))


def _conv_output_padding(kernel: np.ndarray, in_shape, strides, padding) -> tuple[int, int] | None:
    """The ``output_padding`` that makes ``conv_transpose`` return exactly ``in_shape``."""
    x = np.zeros((1, *in_shape))
    y = ops.conv(tensor(x), tensor(kernel), strides=strides, padding=padding)
    A = ops.zeros_like(y)
    for op in [None] + [(i, j) for i in range(max(strides)) for j in range(max(strides))]:
        if op is not None and (op[0] >= strides[0] or op[1] >= strides[1]):
            continue
        try:
            t = ops.conv_transpose(A, tensor(kernel), strides=strides, padding=padding, output_padding=op)
        except Exception:  # noqa: BLE001 - an output_padding this backend refuses
            continue
        if tuple(t.shape[1:3]) == tuple(in_shape[:2]):
            return op
    raise ValueError(f"bab: no transposed convolution gives back input shape {tuple(in_shape)}")


@dataclass
class BoundNet:
    """A chain of :class:`LinearLayer`; a ReLU follows every layer but the last (the logits)."""

    layers: list[LinearLayer]
    input_shape: tuple[int, ...]
    n_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def relu_sizes(self) -> list[int]:
        return [layer.n_out for layer in self.layers[:-1]]

    def forward(self, x, dtype: str = DTYPE):
        """Logits of a batch ``x`` (any shape ``(B, ...)`` with ``n_inputs`` values per row)."""
        h = ops.reshape(tensor(x, dtype) if isinstance(x, np.ndarray) else x, (-1, self.n_inputs))
        for i, layer in enumerate(self.layers):
            h = layer.forward(h, dtype)
            if i < len(self.layers) - 1:
                h = ops.relu(h)
        return h

    def magnitudes(self) -> list[np.ndarray]:
        """``M_k >= |z_k|`` elementwise for every input of the box (structural, ``|W|`` only).

        Used to bound the float64 rounding of the bound computation itself.
        """
        m = np.full((1, self.n_inputs), max(abs(self.bounds[0]), abs(self.bounds[1])), dtype=np.float64)
        out = []
        for layer in self.layers:
            m = layer.abs_forward(m) + np.abs(layer.bias)[None]
            out.append(m[0] * (1 + 1e-12))
        return out


def boundnet_from_keras(model, bounds: tuple[float, float] = (0.0, 1.0)) -> BoundNet:
    """A :class:`BoundNet` of a plain Keras chain (see the module docstring).

    Raises ``ValueError`` naming the layer for anything else, and when the chain's
    evaluation disagrees with the Keras model.
    """
    import keras

    from robcurves.exact.layers import network_from_keras

    network_from_keras(model)  # rejects unsupported layers by name and checks the chain
    shape = tuple(int(s) for s in model.inputs[0].shape[1:])
    in_shape = shape
    layers: list[LinearLayer] = []
    relu_pending = False
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout)):
            continue
        if isinstance(layer, keras.layers.Flatten):
            shape = (int(np.prod(shape)),)
            continue
        if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            act = keras.activations.serialize(layer.activation) if isinstance(layer, keras.layers.Activation) else "relu"
            if act == "relu" or isinstance(layer, keras.layers.ReLU):
                if not layers:
                    raise ValueError("bab: a ReLU before the first linear layer is not supported")
                relu_pending = True
            continue
        if relu_pending is False and layers:
            raise ValueError(f"bab: layer {layer.name!r} follows a linear layer without a ReLU in between "
                             "(merge the two linear layers)")
        relu_pending = False
        kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
        if isinstance(layer, keras.layers.Dense):
            bias = np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.use_bias else np.zeros(kernel.shape[1])
            out_shape: tuple[int, ...] = (kernel.shape[1],)
            lin = LinearLayer("dense", kernel, bias, (int(np.prod(shape)),), out_shape, name=layer.name)
        else:
            strides = tuple(int(s) for s in layer.strides)
            padding = str(layer.padding).lower()
            y = ops.conv(tensor(np.zeros((1, *shape))), tensor(kernel), strides=strides, padding=padding)
            out_shape = tuple(int(s) for s in y.shape[1:])
            bias = np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.use_bias else np.zeros(kernel.shape[3])
            lin = LinearLayer("conv", kernel, np.tile(bias, int(np.prod(out_shape[:2]))), shape, out_shape,
                              strides, padding, name=layer.name,
                              output_padding=_conv_output_padding(kernel, shape, strides, padding))
        act = keras.activations.serialize(layer.activation)
        if act == "relu":
            relu_pending = True
        layers.append(lin)
        shape = out_shape
    if relu_pending:
        raise ValueError("bab: the last layer must give the logits (no ReLU after it)")
    net = BoundNet(layers, in_shape, int(layers[-1].n_out), (float(bounds[0]), float(bounds[1])))
    rng = np.random.default_rng(0)
    x = rng.uniform(bounds[0], bounds[1], (4, *in_shape)).astype(np.float32)
    ref = np.asarray(model(x, training=False), dtype=np.float64)
    got = np.asarray(ops.convert_to_numpy(net.forward(x.astype(np.float64))))
    if ref.shape != got.shape or not np.allclose(ref, got, rtol=1e-4, atol=1e-4 * (1 + np.abs(ref).max())):
        raise ValueError("bab: the bound network disagrees with the Keras model")
    return net
