"""The network description (:mod:`robcurves.network`) as branch and bound sees it.

Branch and bound needs, per node of the description, what the layer's own interface
gives (``linear_t`` for back-substitution, ``evaluate_numpy`` for interval arithmetic,
``bias_vector``) plus two things that belong to certification rather than to the layer:

- ``gamma``: the float32 rounding constant of the node (:mod:`.rounding`): a Dense or
  Conv2D output is a sum of ``fan_in`` products and a bias, an Add one addition, a
  reshape is exact;
- ``abs_layer``: the same layer with absolute weights, whose ``linear_t`` gives
  ``|L|^T`` (the rounding bound's coefficients) and whose ``evaluate_numpy`` gives
  ``|L| m``.

Supported: Dense, Conv2D, Flatten, Reshape, Add, ReLU (the layers of the models this
project trains and converts, and residual nets). Other layers (pools, folded
normalisation, ...) are refused by name: their float32 rounding is not modelled here,
so a certificate could not be trusted (``exact.method: milp`` takes them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robcurves.exact.bab import rounding
from robcurves.network import Conv2D, Dense, Network

SUPPORTED = ("dense", "conv2d", "flatten", "reshape", "add", "relu")


@dataclass
class NodeInfo:
    kind: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    n: int
    gamma: float = 0.0
    abs_layer: object = None
    bias: np.ndarray | None = None  # flat float64
    fast_t: object = None  # (kernel, strides, padding, output_padding) for conv_transpose, if it matches


class _ConvTranspose:
    """``L^T`` of a TF-padded Conv2D as one ``conv_transpose`` (about 3x faster on this CPU than
    the layer's dilate-pad-convolve ``linear_t``; checked against it when made)."""

    def __init__(self, layer, kernel: np.ndarray):
        self.kernel = np.asarray(kernel, dtype=np.float64)
        self.strides = tuple(layer.strides)
        self.padding = layer.padding_name
        self.in_shape = tuple(layer.in_shape)
        self.out_shape = tuple(layer.out_shape)
        self.output_padding = None
        self._k: dict = {}
        from keras import ops

        z = ops.zeros((1, *self.out_shape), dtype="float64")
        for op in [None] + [(a, b) for a in range(self.strides[0]) for b in range(self.strides[1])]:
            try:
                self.output_padding = op
                out = self(z)
            except Exception:  # noqa: BLE001 - an output_padding this backend refuses
                continue
            if tuple(out.shape[1:]) == self.in_shape:
                return
        raise ValueError("no conv_transpose reproduces the input shape")

    def __call__(self, a):
        from keras import ops

        dt = str(a.dtype).split(".")[-1]
        k = self._k.get(dt)
        if k is None:
            k = ops.convert_to_tensor(self.kernel, dtype=a.dtype)
            self._k[dt] = k
        a = ops.reshape(a, (-1, *self.out_shape))
        return ops.conv_transpose(a, k, strides=self.strides, padding=self.padding,
                                  output_padding=self.output_padding)


def _fast_transpose(layer, kernel: np.ndarray):
    """A checked :class:`_ConvTranspose` for ``layer`` (with ``kernel``), or None."""
    if layer.padding_name is None:
        return None
    try:
        t = _ConvTranspose(layer, kernel)
    except ValueError:
        return None
    from keras import ops

    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, *layer.out_shape))
    x = rng.normal(size=(2, *layer.in_shape))
    fwd = np.asarray(ops.convert_to_numpy(ops.conv(ops.convert_to_tensor(x), ops.convert_to_tensor(kernel),
                                                   strides=layer.strides, padding=layer.padding_name)))
    back = np.asarray(ops.convert_to_numpy(t(ops.convert_to_tensor(a))))
    if fwd.shape != a.shape or not np.isclose(np.sum(a * fwd), np.sum(back * x), rtol=1e-9, atol=1e-9):
        return None
    return t


class BoundGraph:
    """Per-node facts of a :class:`robcurves.network.Network` for bound propagation."""

    def __init__(self, net: Network):
        from robcurves.exact.bab.ops import require_float64

        require_float64()  # before any tensor is made
        self.net = net
        folded = (net.meta or {}).get("folded") or []
        if folded:
            raise ValueError(f"bab: the description folds {list(folded)} into other layers; the float32 model "
                             "computes them separately, so its rounding is not the description's "
                             "(use exact.method: milp)")
        self.nodes: list[NodeInfo] = [NodeInfo("input", (), net.input_shape, net.n_inputs)]
        for i, node in enumerate(net.nodes[1:], start=1):
            layer = node.layer
            kind = layer.kind
            if kind not in SUPPORTED:
                raise ValueError(f"bab: layer {node.name!r} ({kind}) is not supported by branch and bound "
                                 f"(supported: {', '.join(SUPPORTED)}; use exact.method: milp)")
            info = NodeInfo(kind, tuple(node.inputs), tuple(node.shape), int(np.prod(node.shape)))
            if kind == "dense":
                W = layer.numpy("W")
                info.gamma = float(rounding.gamma(W.shape[0] + 2))
                info.abs_layer = Dense(layer.in_shape, np.abs(W).astype(np.float64), None, name=f"{node.name}|abs|")
                info.bias = layer.bias_vector()
            elif kind == "conv2d":
                W = layer.numpy("W")
                kh, kw, cin, _ = W.shape
                info.gamma = float(rounding.gamma(kh * kw * cin + 2))
                info.abs_layer = Conv2D(layer.in_shape, np.abs(W).astype(np.float64), None, layer.strides,
                                        tuple(layer.pads), name=f"{node.name}|abs|")
                info.bias = layer.bias_vector()
                fast, fast_abs = _fast_transpose(layer, W), _fast_transpose(layer, np.abs(W))
                if fast is not None and fast_abs is not None:
                    info.fast_t = (fast, fast_abs)
            elif kind == "add":
                info.gamma = float(rounding.gamma(1))
            self.nodes.append(info)
        self.relus = [i for i, nd in enumerate(self.nodes) if nd.kind == "relu"]
        self.pre = [self.nodes[r].inputs[0] for r in self.relus]  # the pre-activation node of each ReLU
        self.relu_index = {r: k for k, r in enumerate(self.relus)}
        if self.nodes[-1].kind == "relu":
            raise ValueError("bab: the last layer must give the logits (no ReLU after it)")

    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    @property
    def n_classes(self) -> int:
        return self.net.n_classes

    @property
    def n_inputs(self) -> int:
        return self.net.n_inputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.net.input_shape

    @property
    def bounds(self) -> tuple[float, float]:
        return self.net.bounds

    def layer(self, i: int):
        return self.net.nodes[i].layer

    def transpose(self, i: int, a, absolute: bool = False):
        """``L^T a`` (``|L|^T a`` with ``absolute``) of affine node ``i``; ``a`` is ``(N, *shape)``."""
        nd = self.nodes[i]
        if nd.fast_t is not None:
            return nd.fast_t[1 if absolute else 0](a)
        return (nd.abs_layer if absolute else self.layer(i)).linear_t(a)

    def relu_sizes(self) -> list[int]:
        return [self.nodes[p].n for p in self.pre]

    def pre_bias(self, k: int) -> np.ndarray:
        """Bias of the layer that gives ReLU ``k``'s pre-activation (zeros if it has none)."""
        nd = self.nodes[self.pre[k]]
        return nd.bias if nd.bias is not None else np.zeros(nd.n)

    def forward_abs(self, i: int, m_in: list[np.ndarray]) -> np.ndarray:
        """``|L| m`` of node ``i`` for non-negative input magnitudes (flat, float64)."""
        nd = self.nodes[i]
        if nd.kind in ("dense", "conv2d"):
            src = self.nodes[nd.inputs[0]]
            return nd.abs_layer.evaluate_numpy(m_in[0].reshape(1, *src.shape)).reshape(-1)
        if nd.kind == "add":
            return m_in[0] + m_in[1]
        return m_in[0]

    def magnitudes(self) -> list[np.ndarray]:
        """``M_i >= |z_i|`` for every input of the box (structural: ``|W|`` only), per node, flat.

        They bound the products the float64 bound computation sums (its rounding slack).
        """
        b = max(abs(self.bounds[0]), abs(self.bounds[1]))
        M = [np.full(self.n_inputs, b)]
        for i, nd in enumerate(self.nodes[1:], start=1):
            m = self.forward_abs(i, [M[j] for j in nd.inputs])
            if nd.bias is not None:
                m = m + np.abs(nd.bias)
            M.append(m * (1 + 1e-12))
        return M


def bound_graph(model_or_net, bounds: tuple[float, float] | None = None) -> BoundGraph:
    """A :class:`BoundGraph` of a Keras model or a network description."""
    if isinstance(model_or_net, BoundGraph):
        return model_or_net
    if isinstance(model_or_net, Network):
        return BoundGraph(model_or_net)
    from robcurves.network import from_keras

    kw = {} if bounds is None else {"bounds": tuple(bounds)}
    return BoundGraph(from_keras(model_or_net, **kw))
