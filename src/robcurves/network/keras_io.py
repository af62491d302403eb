"""Keras 3 models to network descriptions (:func:`from_keras`) and back (:func:`to_keras`).

:func:`from_keras` reads Sequential and functional models (nested models are inlined)
and rejects anything it cannot represent exactly with one line that names the layer and
lists what is supported. It never returns a wrong network: the description is compared
with the model on random inputs from the input box, and a mismatch is refused.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

import keras

from robcurves.network import layers as L
from robcurves.network.fold import fold_scales
from robcurves.network.graph import Network

_log = logging.getLogger("robcurves.network")

SUPPORTED_KERAS = (
    "InputLayer, Dense, Conv2D, ReLU, Activation (relu, linear; softmax as the last layer), Flatten, Reshape, "
    "Add, BatchNormalization, Normalization, Rescaling, AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D, "
    "GlobalMaxPooling2D, ZeroPadding2D, Cropping2D, DepthwiseConv2D, Dropout, Softmax (as the last layer)"
)


class UnsupportedLayer(ValueError):
    """A layer or operation that the network description cannot represent exactly."""


def _reject(layer, why: str) -> UnsupportedLayer:
    return UnsupportedLayer(f"layer {layer.name!r} ({type(layer).__name__}): {why}; supported: {SUPPORTED_KERAS}")


def _activation_name(fn) -> str:
    act = keras.activations.serialize(fn)
    if isinstance(act, dict):
        act = act.get("config", act)
        act = act.get("name", act) if isinstance(act, dict) else act
    return str(act)


class _Builder:
    """Accumulates the nodes of one description while the Keras graph is walked."""

    def __init__(self, input_shape, live: bool) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.items: list[tuple[L.Layer, tuple[int, ...]]] = []
        self.shapes: list[tuple[int, ...]] = [self.input_shape]
        self.live = live
        self.meta: dict[str, Any] = {"folded": [], "removed": []}

    def add(self, layer: L.Layer, inputs) -> int:
        self.items.append((layer, tuple(inputs)))
        self.shapes.append(layer.out_shape)
        return len(self.shapes) - 1

    def weight(self, var):
        return var if self.live else L.to_numpy(var).astype(np.float32)


def _dense(b: _Builder, layer, src: int) -> int:
    shape = b.shapes[src]
    W = b.weight(layer.kernel)
    bias = b.weight(layer.bias) if layer.use_bias else None
    if len(shape) == 1:
        return b.add(L.Dense(shape, W, bias, name=layer.name), [src])
    if len(shape) == 3:  # Dense on the channel axis of an image: a 1x1 convolution
        if b.live:
            raise _reject(layer, "a Dense layer on an image cannot be trained here (flatten first)")
        return b.add(L.Conv2D(shape, np.asarray(W)[None, None], bias, (1, 1), "valid", name=layer.name), [src])
    raise _reject(layer, f"Dense on an input of shape {shape}")


def _conv(b: _Builder, layer, src: int) -> int:
    if layer.data_format != "channels_last":
        raise _reject(layer, f"data_format must be channels_last, got {layer.data_format!r}")
    if tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1:
        raise _reject(layer, "dilated or grouped convolutions are not supported")
    W = b.weight(layer.kernel)
    bias = b.weight(layer.bias) if layer.use_bias else None
    return b.add(L.Conv2D(b.shapes[src], W, bias, layer.strides, layer.padding, name=layer.name), [src])


def _relu_of(b: _Builder, src: int, name: str) -> int:
    return b.add(L.ReLU(b.shapes[src], name=name), [src])


def _check_plain_relu(layer) -> None:
    if layer.max_value is not None or float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
        raise _reject(layer, "only a plain ReLU (no max_value, negative_slope or threshold)")


class _Walker:
    """Translates the Keras graph; tensors map to ``(node id, softmax)``, where ``softmax``
    names the softmax layer applied on top of that node (False if none)."""

    def __init__(self, builder: _Builder) -> None:
        self.b = builder
        self.softmax_layers: list = []

    def depthwise(self, layer, src: int) -> int:
        """DepthwiseConv2D as a Conv2D with a block-diagonal kernel (1x1 and multiplier 1: a Scale)."""
        if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1):
            raise _reject(layer, "only channels_last, undilated depthwise convolutions")
        if self.b.live:
            raise _reject(layer, "depthwise convolutions cannot be trained here")
        k = L.to_numpy(layer.kernel)  # (kh, kw, C, m)
        bias = L.to_numpy(layer.bias) if layer.use_bias else np.zeros(k.shape[2] * k.shape[3])
        kh, kw, C, m = k.shape
        shape = self.b.shapes[src]
        if (kh, kw, m) == (1, 1, 1) and tuple(layer.strides) == (1, 1):
            return self.b.add(L.Scale(shape, k[0, 0, :, 0], bias, name=layer.name), [src])
        full = np.zeros((kh, kw, C, C * m), dtype=np.float32)
        for c in range(C):
            full[:, :, c, c * m:(c + 1) * m] = k[:, :, c, :]
        return self.b.add(L.Conv2D(shape, full, bias.astype(np.float32), layer.strides, layer.padding,
                                   name=layer.name), [src])

    def scale(self, layer, src: int, sc: np.ndarray, off: np.ndarray) -> tuple[int, bool]:
        """An elementwise affine layer (folded into a neighbour later where exact)."""
        shape = self.b.shapes[src]
        sc, off = _compact(np.broadcast_to(sc, shape)), _compact(np.broadcast_to(off, shape))
        return self.b.add(L.Scale(shape, sc, off, name=layer.name), [src]), False

    def activation(self, layer, fn, src: int) -> tuple[int, bool]:
        act = _activation_name(fn)
        if act == "linear":
            return src, False
        if act == "relu":
            return _relu_of(self.b, src, f"{layer.name}/relu" if not isinstance(layer, keras.layers.Activation)
                            else layer.name), False
        if act == "softmax":
            self.softmax_layers.append(layer)
            return src, f"{layer.name!r} ({type(layer).__name__})"
        raise _reject(layer, f"activation {act!r} (only relu, linear, or softmax as the last layer)")

    def layer(self, layer, srcs: list[int]) -> tuple[int, bool]:
        b = self.b
        K = keras.layers
        one = srcs[0] if len(srcs) == 1 else None
        if isinstance(layer, K.Dense):
            return self.activation(layer, layer.activation, _dense(b, layer, one))
        if isinstance(layer, K.Conv2D):
            return self.activation(layer, layer.activation, _conv(b, layer, one))
        if isinstance(layer, K.DepthwiseConv2D):
            return self.activation(layer, layer.activation, self.depthwise(layer, one))
        if isinstance(layer, (K.ZeroPadding2D, K.Cropping2D)):
            if layer.data_format != "channels_last":
                raise _reject(layer, f"data_format must be channels_last, got {layer.data_format!r}")
            (t, bo), (l, r) = layer.padding if isinstance(layer, K.ZeroPadding2D) else layer.cropping
            sign = 1 if isinstance(layer, K.ZeroPadding2D) else -1
            return b.add(L.Pad2D(b.shapes[one], [sign * t, sign * bo, sign * l, sign * r], name=layer.name), [one]), False
        if isinstance(layer, K.ReLU):
            _check_plain_relu(layer)
            return _relu_of(b, one, layer.name), False
        if isinstance(layer, K.Activation):
            return self.activation(layer, layer.activation, one)
        if isinstance(layer, K.Softmax):
            axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
            if axis not in (-1, len(b.shapes[one])):
                raise _reject(layer, f"softmax over axis {layer.axis}")
            self.softmax_layers.append(layer)
            return one, f"{layer.name!r} (Softmax)"
        if isinstance(layer, K.Flatten):
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                raise _reject(layer, "data_format must be channels_last")
            if len(b.shapes[one]) == 1:
                return one, False
            return b.add(L.Flatten(b.shapes[one], name=layer.name), [one]), False
        if isinstance(layer, K.Reshape):
            target = tuple(int(s) for s in layer.output.shape[1:])
            return b.add(L.Reshape(b.shapes[one], target, name=layer.name), [one]), False
        if isinstance(layer, K.Add):
            if len(srcs) < 2:
                raise _reject(layer, "Add needs at least two inputs")
            out = srcs[0]
            for k, s in enumerate(srcs[1:]):
                name = layer.name if k == len(srcs) - 2 else f"{layer.name}/{k}"
                out = b.add(L.Add([b.shapes[out], b.shapes[s]], name=name), [out, s])
            return out, False
        if isinstance(layer, K.BatchNormalization):
            if b.live:
                raise _reject(layer, "BatchNormalization layers cannot be trained by robcurves.training")
            shape = b.shapes[one]
            axis = layer.axis if isinstance(layer.axis, int) else (list(layer.axis)[0] if len(layer.axis) == 1 else None)
            if axis not in (-1, len(shape)):
                raise _reject(layer, f"only BatchNormalization over the last (channel) axis, got axis {layer.axis}")
            n = shape[-1]
            gamma = L.to_numpy(layer.gamma) if layer.scale else np.ones(n)
            beta = L.to_numpy(layer.beta) if layer.center else np.zeros(n)
            sc = gamma / np.sqrt(L.to_numpy(layer.moving_variance) + float(layer.epsilon))
            off = beta - L.to_numpy(layer.moving_mean) * sc
            return self.scale(layer, one, sc, off)
        if isinstance(layer, K.Normalization):
            shape = b.shapes[one]
            mean = np.broadcast_to(L.to_numpy(layer.mean)[0], shape)
            std = np.maximum(np.sqrt(np.broadcast_to(L.to_numpy(layer.variance)[0], shape)), keras.backend.epsilon())
            if getattr(layer, "invert", False):
                return self.scale(layer, one, std, mean)
            return self.scale(layer, one, 1.0 / std, -mean / std)
        if isinstance(layer, K.Rescaling):
            shape = b.shapes[one]
            sc = np.broadcast_to(np.asarray(layer.scale, dtype=np.float64), shape)
            off = np.broadcast_to(np.asarray(layer.offset, dtype=np.float64), shape)
            return self.scale(layer, one, sc, off)
        if isinstance(layer, (K.MaxPooling2D, K.AveragePooling2D)):
            if layer.data_format != "channels_last":
                raise _reject(layer, f"data_format must be channels_last, got {layer.data_format!r}")
            cls = L.MaxPooling2D if isinstance(layer, K.MaxPooling2D) else L.AveragePooling2D
            return b.add(cls(b.shapes[one], layer.pool_size, layer.strides, layer.padding, name=layer.name), [one]), False
        if isinstance(layer, (K.GlobalAveragePooling2D, K.GlobalMaxPooling2D)):
            if layer.data_format != "channels_last":
                raise _reject(layer, f"data_format must be channels_last, got {layer.data_format!r}")
            shape = b.shapes[one]
            if isinstance(layer, K.GlobalAveragePooling2D):
                out = b.add(L.GlobalAveragePooling2D(shape, name=layer.name), [one])
            else:  # one window over the whole map
                mp = b.add(L.MaxPooling2D(shape, shape[:2], shape[:2], "valid", name=layer.name), [one])
                out = b.add(L.Flatten(b.shapes[mp], name=f"{layer.name}/flatten"), [mp])
            if layer.keepdims:
                out = b.add(L.Reshape(b.shapes[out], (1, 1, shape[2]), name=f"{layer.name}/keepdims"), [out])
            return out, False
        if isinstance(layer, (K.Dropout, K.SpatialDropout1D, K.SpatialDropout2D, K.GaussianDropout,
                              K.GaussianNoise, K.AlphaDropout)):
            b.meta["removed"].append(f"{layer.name} ({type(layer).__name__}, the identity at inference)")
            return one, False
        raise _reject(layer, "not supported")


def _compact(a: np.ndarray) -> np.ndarray:
    """A per-element array of shape (..., C) as (C,) when it is constant over the other axes."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim > 1:
        first = a.reshape(-1, a.shape[-1])[0]
        if np.all(a == first):
            return first.copy()
    return a.copy()


def _history(t):
    h = t._keras_history
    return h.operation, h.node_index, h.tensor_index


def _translate(walker: _Walker, model, in_ids: list[tuple[int, bool]]) -> tuple[int, bool]:
    """Translate the graph of ``model`` fed by ``in_ids``; returns the id of its output."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedLayer(f"model {model.name!r} must have one input and one output, got "
                               f"{len(model.inputs)} and {len(model.outputs)}")
    value: dict[int, tuple[int, bool]] = {id(model.inputs[0]): in_ids[0]}

    def visit(t) -> tuple[int, bool]:
        if id(t) in value:
            return value[id(t)]
        op, node_index, tensor_index = _history(t)
        node = op._inbound_nodes[node_index]
        ins = [visit(x) for x in node.input_tensors]
        for x_id, soft in ins:
            if soft:
                raise UnsupportedLayer(f"layer {soft}: a softmax is supported only as the last layer "
                                       f"(its output feeds {op.name!r}); supported: {SUPPORTED_KERAS}")
        if isinstance(op, keras.layers.InputLayer):
            raise UnsupportedLayer(f"model {model.name!r}: a second input layer {op.name!r}")
        if isinstance(op, keras.Model):
            out = _translate(walker, op, ins)
        else:
            out = walker.layer(op, [i for i, _ in ins])
        for o in node.output_tensors:
            value[id(o)] = out
        return out

    # iterative deepening is not needed for the small graphs here; raise the limit a little
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        return visit(model.outputs[0])
    finally:
        sys.setrecursionlimit(limit)


def from_keras(model, *, bounds: tuple[float, float] = (0.0, 1.0), check: bool = True, live: bool = False,
               name: str | None = None, log: Callable[[str], None] | None = None) -> Network:
    """The description of a Keras model (Sequential or functional, NHWC, one input and one output).

    ``live=True`` keeps the model's own Keras variables as parameters (training
    differentiates through them); otherwise the weights are copied as float32 NumPy arrays.
    A final softmax is removed (``meta["softmax_removed"]``; the logits are what every
    stage works on) and logged. ``check`` compares the description with the model on
    random inputs from ``bounds`` and raises ``ValueError`` on a mismatch.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedLayer(f"model must have one input and one output, got {len(model.inputs)} and "
                               f"{len(model.outputs)}")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) not in (1, 3) or any(s is None for s in shape):
        raise UnsupportedLayer(f"model input must be NHWC (H, W, C) with fixed sizes, got {tuple(model.inputs[0].shape)}")
    if len(shape) == 1:  # the data are NHWC, tabular ones (N, 1, 1, F)
        raise UnsupportedLayer(f"model input must be NHWC (H, W, C); got a vector of {shape[0]} "
                               "features (use Input((1, 1, F)) and Flatten)")
    b = _Builder(shape, live)
    walker = _Walker(b)
    out, soft = _translate(walker, model, [(0, False)])
    if out == 0:
        raise UnsupportedLayer(f"model {model.name!r} has no layers")
    meta = {"source": "keras", "model_name": model.name, "softmax_removed": bool(soft), **b.meta}
    if not live:
        b.items, out = fold_scales(b.items, out, meta["folded"])
    # Layers not on the path to the output never get a node; drop nodes the output does not use.
    net = Network(b.input_shape, _used(b.items, out), bounds=bounds, meta=meta, name=name or model.name)
    if soft:
        msg = f"{net.name}: the final softmax was removed; the logits are used"
        _log.warning(msg)
        if log is not None:
            log(msg)
    if check:
        check_against(net, lambda x: _logits_of(model, walker.softmax_layers[-1:] if soft else [], x),
                      what="Keras model")
    return net


def _logits_of(model, softmax_layers: list, x: np.ndarray) -> np.ndarray:
    """The model's outputs with its final softmax switched off for the call (the logits:
    comparing probabilities would miss errors where the softmax saturates)."""
    saved = []
    try:
        for layer in softmax_layers:
            if hasattr(layer, "activation") and not isinstance(layer, keras.layers.Softmax):
                saved.append((layer, "activation", layer.activation))
                layer.activation = keras.activations.linear
            else:
                saved.append((layer, "call", None))
                layer.call = lambda inputs, *a, **k: inputs
        return np.asarray(model(x, training=False))
    finally:
        for layer, attr, old in saved:
            if attr == "activation":
                layer.activation = old
            else:
                del layer.call


def _used(items, out: int) -> list[tuple[L.Layer, tuple[int, ...]]]:
    """The items that the output depends on, renumbered (topological order kept)."""
    need = {out}
    for k in range(out, 0, -1):
        if k in need:
            need.update(items[k - 1][1])
    keep = [k for k in range(1, out + 1) if k in need]
    new_id = {0: 0, **{k: j + 1 for j, k in enumerate(keep)}}
    return [(items[k - 1][0], tuple(new_id[i] for i in items[k - 1][1])) for k in keep]


def check_against(net: Network, reference: Callable[[np.ndarray], np.ndarray], softmax: bool = False,
                  what: str = "source model", n: int = 8, seed: int = 0, rtol: float = 1e-4) -> float:
    """Compare the description with ``reference`` (float32 inputs -> outputs) on ``n`` random
    inputs from the network's box; ``softmax``: the reference's outputs are probabilities.
    Returns the largest difference; raises ``ValueError`` if it exceeds
    ``rtol * (1 + max |reference|)``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(net.bounds[0], net.bounds[1], size=(n, *net.input_shape)).astype(np.float32)
    ref = np.asarray(reference(x), dtype=np.float64).reshape(n, -1)
    got = np.asarray(keras.ops.convert_to_numpy(net.evaluate(x)), dtype=np.float64)
    if softmax:
        z = got - got.max(axis=1, keepdims=True)
        got = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    if ref.shape != got.shape:
        raise ValueError(f"the network description gives outputs of shape {got.shape[1:]}, the {what} "
                         f"{ref.shape[1:]}: refusing to build a wrong network")
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    if not np.all(np.isfinite(ref)) or diff > rtol * (1.0 + float(np.max(np.abs(ref)))):
        raise ValueError(f"the network description disagrees with the {what} on random inputs (max difference "
                         f"{diff:.3g}): refusing to build a wrong network")
    return diff


def to_keras(net: Network, name: str | None = None, check: bool = True):
    """A plain Keras functional model of standard layers computing the description's logits.

    Conv2D, Dense, ReLU, Add, Flatten, Reshape, MaxPooling2D, AveragePooling2D,
    GlobalAveragePooling2D (ZeroPadding2D for pads that are not TensorFlow's); BatchNorm and
    normalisation are already folded; an unfolded per-channel scaling becomes a 1x1
    DepthwiseConv2D (a per-element one a Normalization layer); no softmax. This is what the
    workflow saves for models from Keras or ONNX files, so every later stage reads a model
    of the same kind. ``check`` compares it with the description on random inputs.
    """
    K = keras.layers
    inp = keras.Input(net.input_shape, name="input")
    vals = [inp]
    weights: list[tuple[Any, list[np.ndarray]]] = []
    used_names: set[str] = set()

    def nm(base: str) -> str:
        base = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in base) or "layer"
        out, k = base, 1
        while out in used_names:
            out, k = f"{base}_{k}", k + 1
        used_names.add(out)
        return out

    for node in net.nodes[1:]:
        layer = node.layer
        xs = [vals[i] for i in node.inputs]
        kind = layer.kind
        if kind == "dense":
            W = layer.numpy("W").astype(np.float32)
            b = (layer.numpy("b") if "b" in layer.params else np.zeros(W.shape[1])).astype(np.float32)
            kl = K.Dense(W.shape[1], name=nm(node.name))
            y = kl(xs[0])
            weights.append((kl, [W, b]))
        elif kind == "conv2d":
            W = layer.numpy("W").astype(np.float32)
            b = (layer.numpy("b") if "b" in layer.params else np.zeros(W.shape[3])).astype(np.float32)
            x, padding = xs[0], layer.padding_name
            if padding is None:
                t, bo, l, r = layer.pads
                if min(t, bo, l, r) < 0:
                    x = K.Cropping2D(((max(-t, 0), max(-bo, 0)), (max(-l, 0), max(-r, 0))), name=nm(f"{node.name}_crop"))(x)
                if max(t, bo, l, r) > 0:
                    x = K.ZeroPadding2D(((max(t, 0), max(bo, 0)), (max(l, 0), max(r, 0))), name=nm(f"{node.name}_pad"))(x)
                padding = "valid"
            kl = K.Conv2D(W.shape[3], W.shape[:2], strides=layer.strides, padding=padding, name=nm(node.name))
            y = kl(x)
            weights.append((kl, [W, b]))
        elif kind == "relu":
            y = K.ReLU(name=nm(node.name))(xs[0])
        elif kind in ("flatten", "reshape"):
            y = (K.Flatten(name=nm(node.name)) if kind == "flatten" else K.Reshape(layer.target, name=nm(node.name)))(xs[0])
        elif kind == "add":
            y = K.Add(name=nm(node.name))(xs)
        elif kind in ("max_pooling2d", "average_pooling2d"):
            if layer.padding_name is None:
                raise UnsupportedLayer(f"to_keras: layer {node.name!r} ({kind}) has pads {layer.pads}, which Keras "
                                       "pooling layers cannot express (only TensorFlow's same/valid)")
            cls = K.MaxPooling2D if kind == "max_pooling2d" else K.AveragePooling2D
            y = cls(layer.pool, layer.strides, layer.padding_name, name=nm(node.name))(xs[0])
        elif kind == "global_average_pooling2d":
            y = K.GlobalAveragePooling2D(name=nm(node.name))(xs[0])
        elif kind == "pad2d":
            t, bo, l, r = layer.pads
            x = xs[0]
            if min(layer.pads) < 0:
                x = K.Cropping2D(((max(-t, 0), max(-bo, 0)), (max(-l, 0), max(-r, 0))), name=nm(f"{node.name}_crop"))(x)
            if max(layer.pads) > 0:
                x = K.ZeroPadding2D(((max(t, 0), max(bo, 0)), (max(l, 0), max(r, 0))), name=nm(node.name))(x)
            y = x
        elif kind == "scale":
            s, o = layer.numpy("s"), layer.full("b")
            shape = layer.in_shape
            o_c = o.reshape(-1, shape[-1])
            if s.ndim <= 1 and np.all(o_c == o_c[0]) and len(shape) == 3:
                s_c = np.broadcast_to(s, (shape[-1],))
                kl = K.DepthwiseConv2D(1, use_bias=True, name=nm(node.name))
                y = kl(xs[0])
                weights.append((kl, [s_c.reshape(1, 1, -1, 1).astype(np.float32), o_c[0].astype(np.float32)]))
            elif len(shape) == 1:
                kl = K.Dense(shape[0], name=nm(node.name))
                y = kl(xs[0])
                weights.append((kl, [np.diag(np.broadcast_to(s, shape)).astype(np.float32), o.astype(np.float32)]))
            else:
                sf = layer.full("s")
                if np.any(sf <= 0):
                    raise UnsupportedLayer(f"to_keras: layer {node.name!r} (scale) scales elements by non-positive "
                                           "factors per position; no standard Keras layer expresses it")
                y = K.Normalization(axis=(1, 2, 3), mean=(-o / sf)[None], variance=(1.0 / sf ** 2)[None],
                                    name=nm(node.name))(xs[0])
        else:
            raise UnsupportedLayer(f"to_keras: layer {node.name!r} ({kind}) has no Keras counterpart here")
        vals.append(y)
    model = keras.Model(inp, vals[-1], name=nm(name or net.name))
    for kl, w in weights:
        kl.set_weights(w)
    if check:
        check_against(net, lambda x: np.asarray(model(x, training=False)), what="exported Keras model")
    return model
