"""ONNX files (opset >= 13) to network descriptions (:func:`from_onnx`), on the ``onnx`` package.

Supported operations: Gemm, MatMul (+ Add of a constant), Conv, Relu, Flatten, Reshape (to
a constant shape, also computed by Shape/Gather/Unsqueeze/Concat chains as PyTorch writes
them), BatchNormalization, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, Add (of
two tensors: residuals), Sub/Div/Mul/Add by constants (normalisation), Transpose between
NCHW and NHWC, Identity, Dropout, Constant, and a final Softmax (removed).

Layouts: data stay NHWC in the pipeline. A 4-D graph input is NCHW (PyTorch's convention)
unless the graph starts by transposing it from NHWC (tf2onnx's way); NCHW tensors are held
as NHWC inside the description: conv kernels are transposed (OIHW -> HWIO), per-channel
constants move to the last axis, and a Flatten of an NCHW tensor permutes the rows of the
Dense layer that takes it, so the description computes exactly the ONNX function.

The result is checked against onnxruntime on random inputs (when onnxruntime is installed)
and refused on a mismatch; anything else is rejected with one line naming the node and op.

Why one module of ~500 lines: it is one concept, the ONNX reader: one small handler per op
plus the layout bookkeeping that every handler shares (NCHW held as NHWC); split by op it
would scatter that bookkeeping.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from robcurves.network import layers as L
from robcurves.network.fold import fold_scales
from robcurves.network.graph import Network
from robcurves.network.keras_io import UnsupportedLayer, _used, check_against

_log = logging.getLogger("robcurves.network")

SUPPORTED_ONNX = (
    "Gemm, MatMul, Conv, Relu, Flatten, Reshape, BatchNormalization, MaxPool, AveragePool, GlobalAveragePool, "
    "GlobalMaxPool, Add, Sub/Mul/Div by constants, Transpose (NCHW <-> NHWC), Identity, Dropout, Constant, "
    "Shape/Gather/Unsqueeze/Concat on constants, Softmax (as the last op)"
)
MIN_OPSET = 13


@dataclass
class _Val:
    """A tensor of the network: node id and how ONNX lays it out.

    ``layout``: "nchw" or "nhwc" for images (the node holds NHWC either way), "vec" for
    vectors. ``perm`` (vectors only): ONNX element ``j`` is the node's element ``perm[j]``
    (a Flatten of an NCHW tensor), or None for the identity.
    """

    node: int
    layout: str
    perm: np.ndarray | None = None
    softmax: str | None = None


class _Reader:
    def __init__(self, model, input_layout: str = "auto") -> None:
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.nh = numpy_helper
        graph = model.graph
        self.graph = graph
        self.items: list[tuple[L.Layer, tuple[int, ...]]] = []
        self.shapes: list[tuple[int, ...]] = []
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.vals: dict[str, _Val] = {}
        self.meta: dict[str, Any] = {"folded": [], "removed": []}
        self.input_layout = input_layout

    # ------------------------------------------------------------ helpers
    def fail(self, node, why: str) -> UnsupportedLayer:
        return UnsupportedLayer(f"ONNX node {node.name or node.output[0]!r} ({node.op_type}): {why}; "
                                f"supported: {SUPPORTED_ONNX}")

    def add(self, layer: L.Layer, inputs) -> int:
        self.items.append((layer, tuple(inputs)))
        self.shapes.append(layer.out_shape)
        return len(self.shapes) - 1

    def attrs(self, node) -> dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def onnx_shape(self, v: _Val) -> tuple[int, ...]:
        """The ONNX shape of a tensor, batch 1."""
        s = self.shapes[v.node]
        if len(s) == 3:
            return (1, s[2], s[0], s[1]) if v.layout == "nchw" else (1, *s)
        return (1, *s)

    def const_for(self, node, v: _Val, c: np.ndarray) -> np.ndarray:
        """A constant broadcast against ``v`` (ONNX layout) as an array of the node's shape."""
        c = np.asarray(c, dtype=np.float64)
        shp = self.onnx_shape(v)
        try:
            full = np.broadcast_to(c, np.broadcast_shapes(c.shape, shp))
        except ValueError:
            raise self.fail(node, f"constant of shape {c.shape} does not broadcast to {shp}") from None
        if full.shape != shp:
            raise self.fail(node, f"constant of shape {c.shape} would change the tensor's shape {shp}")
        full = full[0]
        if v.layout == "nchw":
            return np.ascontiguousarray(full.transpose(1, 2, 0))
        if v.perm is not None:  # ONNX element j is our element perm[j]
            out = np.empty_like(full)
            out[v.perm] = full
            return out
        return np.ascontiguousarray(full)

    def value(self, node, name: str) -> _Val:
        if name not in self.vals:
            raise self.fail(node, f"input {name!r} is not a tensor of the network (or is an unsupported constant)")
        v = self.vals[name]
        if v.softmax:
            raise self.fail(node, f"takes the output of softmax {v.softmax!r}: a softmax is supported only as the last op")
        return v

    def image(self, node, v: _Val) -> None:
        if v.layout != "nchw":
            raise self.fail(node, f"expects an NCHW image, got a {'vector' if v.layout == 'vec' else 'NHWC tensor'}")

    # ------------------------------------------------------------ graph
    def read(self) -> tuple[tuple[int, ...], _Val]:
        g = self.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1 or len(g.output) != 1:
            raise UnsupportedLayer(f"ONNX graph must have one input and one output, got {len(inputs)} and {len(g.output)}")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if any(d is None for d in dims[1:]) or len(dims) not in (2, 4):
            raise UnsupportedLayer(f"ONNX input {inp.name!r} must be (N, C, H, W), (N, H, W, C) or (N, F) with fixed "
                                   f"sizes, got {dims}")
        layout = self.input_layout
        if len(dims) == 4:
            if layout == "auto":
                first = [n for n in g.node if inp.name in n.input]
                layout = "nhwc" if first and all(n.op_type == "Transpose" and list(self.attrs(n).get("perm", [])) ==
                                                 [0, 3, 1, 2] for n in first) else "nchw"
            shape = (dims[2], dims[3], dims[1]) if layout == "nchw" else tuple(dims[1:])
        else:
            layout, shape = "vec", (1, 1, dims[1])  # tabular: NHWC (1, 1, F)
        self.input_shape = tuple(int(s) for s in shape)
        self.shapes.append(self.input_shape)
        self.meta["input_layout"] = {"nchw": "NCHW", "nhwc": "NHWC", "vec": "(N, F)"}[layout]
        if layout == "vec":
            fl = self.add(L.Flatten(self.input_shape, name=f"{inp.name}/flatten"), [0])
            self.vals[inp.name] = _Val(fl, "vec")
        else:
            self.vals[inp.name] = _Val(0, layout)
        for node in g.node:
            self.node(node)
        out = g.output[0].name
        if out not in self.vals:
            raise UnsupportedLayer(f"ONNX output {out!r} is not computed by supported nodes")
        v = self.vals[out]
        if v.layout != "vec":
            raise UnsupportedLayer(f"ONNX output {out!r} must be (N, n_classes) logits, got an image")
        if v.perm is not None and not np.array_equal(v.perm, np.arange(len(v.perm))):
            raise UnsupportedLayer(f"ONNX output {out!r} is a flattened NCHW tensor, not logits")
        return self.input_shape, v

    def node(self, node) -> None:  # noqa: C901 - one dispatch over the op types
        op = node.op_type
        a = self.attrs(node)
        ins = list(node.input)
        out = node.output[0]
        const_in = [i in self.consts for i in ins if i]
        if op == "Constant":
            self.consts[out] = self._constant(node, a)
            return
        if ins and all(const_in) and op in ("Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Mul", "Add", "Sub",
                                            "Div", "Reshape", "Identity", "Slice", "Transpose"):
            self.consts[out] = self._fold_const(node, a)
            return
        if op == "Shape":
            v = self.value(node, ins[0])
            self.consts[out] = np.asarray(self.onnx_shape(v), dtype=np.int64)
            return
        if op in ("Identity", "Dropout"):
            self.vals[out] = self.value(node, ins[0])
            if op == "Dropout":
                self.meta["removed"].append(f"{node.name or out} (Dropout, the identity at inference)")
            return
        if op == "Relu":
            v = self.value(node, ins[0])
            self.vals[out] = _Val(self.add(L.ReLU(self.shapes[v.node], name=node.name or out), [v.node]), v.layout, v.perm)
            return
        if op == "Softmax":
            v = self.value(node, ins[0])
            axis = int(a.get("axis", -1))
            if v.layout != "vec" or axis not in (-1, 1):
                raise self.fail(node, "only a softmax over the classes of the logits")
            self.vals[out] = _Val(v.node, v.layout, v.perm, softmax=node.name or out)
            return
        if op == "Transpose":
            v = self.value(node, ins[0])
            perm = list(a.get("perm", []))
            if v.layout == "nhwc" and perm == [0, 3, 1, 2]:
                self.vals[out] = _Val(v.node, "nchw")
            elif v.layout == "nchw" and perm == [0, 2, 3, 1]:
                self.vals[out] = _Val(v.node, "nhwc")
            else:
                raise self.fail(node, f"only transposes between NCHW and NHWC, got perm {perm} on a {v.layout} tensor")
            return
        if op == "Conv":
            return self._conv(node, a, ins, out)
        if op in ("Gemm", "MatMul"):
            return self._dense(node, a, ins, out)
        if op == "BatchNormalization":
            v = self.value(node, ins[0])
            self.image(node, v) if v.layout != "vec" else None
            sc, b, mean, var = (self._get_const(node, i) for i in ins[1:5])
            s = sc / np.sqrt(var + float(a.get("epsilon", 1e-5)))
            o = b - mean * s
            shp = (1, -1, 1, 1) if v.layout == "nchw" else (1, -1)
            return self._scale(node, v, s.reshape(shp), o.reshape(shp), out)
        if op in ("Add", "Sub", "Mul", "Div"):
            return self._arith(node, op, ins, out)
        if op == "Flatten":
            v = self.value(node, ins[0])
            if int(a.get("axis", 1)) != 1:
                raise self.fail(node, "only Flatten with axis 1")
            return self._flatten(node, v, out)
        if op == "Reshape":
            v = self.value(node, ins[0])
            target = [int(t) for t in self._get_const(node, ins[1])]
            n = int(np.prod(self.shapes[v.node]))
            if len(target) == 2 and (target[1] in (-1, n)):
                if v.layout == "vec":
                    self.vals[out] = v
                    return
                return self._flatten(node, v, out)
            if v.layout == "nchw" and len(target) == 4 and tuple(target[1:]) == self.onnx_shape(v)[1:]:
                self.vals[out] = v
                return
            raise self.fail(node, f"only reshapes to (N, -1) are supported, got {target} for shape {self.onnx_shape(v)}")
        if op in ("MaxPool", "AveragePool"):
            return self._pool(node, op, a, ins, out)
        if op in ("GlobalAveragePool", "GlobalMaxPool"):
            v = self.value(node, ins[0])
            self.image(node, v)
            shp = self.shapes[v.node]
            if op == "GlobalAveragePool":
                g = self.add(L.GlobalAveragePooling2D(shp, name=node.name or out), [v.node])
            else:
                mp = self.add(L.MaxPooling2D(shp, shp[:2], shp[:2], "valid", name=node.name or out), [v.node])
                g = self.add(L.Flatten(self.shapes[mp], name=f"{node.name or out}/flatten"), [mp])
            # (N, C, 1, 1) in NCHW has the element order of our (1, 1, C)
            r = self.add(L.Reshape(self.shapes[g], (1, 1, shp[2]), name=f"{node.name or out}/keepdims"), [g])
            self.vals[out] = _Val(r, "nchw")
            return
        raise self.fail(node, "not supported")

    # ------------------------------------------------------------ ops
    def _constant(self, node, a) -> np.ndarray:
        if "value" in a:
            return self.nh.to_array(a["value"])
        for k in ("value_float", "value_int"):
            if k in a:
                return np.asarray(a[k])
        for k in ("value_floats", "value_ints"):
            if k in a:
                return np.asarray(list(a[k]))
        raise self.fail(node, "unsupported Constant attribute")

    def _get_const(self, node, name: str) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(node, f"input {name!r} must be a constant (an initializer)")
        return np.asarray(self.consts[name])

    def _fold_const(self, node, a) -> np.ndarray:
        c = [np.asarray(self.consts[i]) if i else None for i in node.input]
        op = node.op_type
        if op == "Gather":
            return np.take(c[0], c[1], axis=int(a.get("axis", 0)))
        if op == "Unsqueeze":
            axes = c[1] if len(c) > 1 else a["axes"]
            out = c[0]
            for ax in sorted(int(x) for x in np.atleast_1d(axes)):
                out = np.expand_dims(out, ax)
            return out
        if op == "Squeeze":
            axes = c[1] if len(c) > 1 and c[1] is not None else a.get("axes")
            return np.squeeze(c[0], axis=None if axes is None else tuple(int(x) for x in np.atleast_1d(axes)))
        if op == "Concat":
            return np.concatenate([np.atleast_1d(x) for x in c], axis=int(a["axis"]))
        if op == "Cast":
            from onnx import helper

            return c[0].astype(helper.tensor_dtype_to_np_dtype(int(a["to"])))
        if op == "Reshape":
            return c[0].reshape([int(s) for s in c[1]])
        if op == "Identity":
            return c[0]
        if op == "Transpose":  # e.g. jax2onnx's HWIO -> OIHW kernels
            perm = a.get("perm")
            return np.transpose(c[0], None if perm is None else [int(p) for p in perm])
        if op == "Slice":
            starts, ends = c[1], c[2]
            axes = c[3] if len(c) > 3 and c[3] is not None else np.arange(len(starts))
            steps = c[4] if len(c) > 4 and c[4] is not None else np.ones(len(starts), dtype=np.int64)
            sl = [slice(None)] * c[0].ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                sl[int(ax)] = slice(int(s), int(e), int(st))
            return c[0][tuple(sl)]
        return {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}[op](c[0], c[1])

    def _scale(self, node, v: _Val, s, o, out: str) -> None:
        shape = self.shapes[v.node]
        sc = self.const_for(node, v, np.ones(1) * s)
        off = self.const_for(node, v, np.zeros(1) + o)
        from robcurves.network.keras_io import _compact

        layer = L.Scale(shape, _compact(sc), _compact(off), name=node.name or out)
        self.vals[out] = _Val(self.add(layer, [v.node]), v.layout, v.perm)

    def _arith(self, node, op: str, ins, out: str) -> None:
        x_const = [i in self.consts for i in ins]
        if not any(x_const):
            if op != "Add":
                raise self.fail(node, f"{op} of two tensors (only Add of two tensors is supported)")
            v1, v2 = self.value(node, ins[0]), self.value(node, ins[1])
            if self.shapes[v1.node] != self.shapes[v2.node] or v1.layout != v2.layout or \
                    not _same_perm(v1.perm, v2.perm):
                raise self.fail(node, f"adds tensors of shapes {self.onnx_shape(v1)} and {self.onnx_shape(v2)}")
            layer = L.Add([self.shapes[v1.node], self.shapes[v2.node]], name=node.name or out)
            self.vals[out] = _Val(self.add(layer, [v1.node, v2.node]), v1.layout, v1.perm)
            return
        ci = 0 if x_const[0] else 1
        c = np.asarray(self.consts[ins[ci]], dtype=np.float64)
        v = self.value(node, ins[1 - ci])
        if op == "Add":
            s, o = 1.0, c
        elif op == "Mul":
            s, o = c, 0.0
        elif op == "Sub":
            s, o = (1.0, -c) if ci == 1 else (-1.0, c)
        else:
            if ci == 0:
                raise self.fail(node, "division by a tensor")
            s, o = 1.0 / c, 0.0
        self._scale(node, v, s, o, out)

    def _flatten(self, node, v: _Val, out: str) -> None:
        shp = self.shapes[v.node]
        if v.layout == "vec":
            self.vals[out] = v
            return
        fl = self.add(L.Flatten(shp, name=node.name or out), [v.node])
        if v.layout == "nchw":
            H, W, C = shp
            # ONNX element j = (c, h, w) row-major; ours: (h, w, c)
            c, h, w = np.unravel_index(np.arange(H * W * C), (C, H, W))
            perm = (h * W + w) * C + c
            self.vals[out] = _Val(fl, "vec", None if np.array_equal(perm, np.arange(len(perm))) else perm)
        else:
            self.vals[out] = _Val(fl, "vec")

    def _dense(self, node, a, ins, out: str) -> None:
        v = self.value(node, ins[0])
        if v.layout != "vec":
            raise self.fail(node, "only on (N, F) inputs (flatten images first)")
        W = self._get_const(node, ins[1]).astype(np.float64)
        b = None
        if node.op_type == "Gemm":
            if int(a.get("transA", 0)):
                raise self.fail(node, "transA is not supported")
            if int(a.get("transB", 0)):
                W = W.T
            W = W * float(a.get("alpha", 1.0))
            if len(ins) > 2 and ins[2]:
                b = np.broadcast_to(self._get_const(node, ins[2]).astype(np.float64) * float(a.get("beta", 1.0)),
                                    (W.shape[1],)).copy()
        if W.ndim != 2:
            raise self.fail(node, f"weights of shape {W.shape}")
        if v.perm is not None:
            Wn = np.empty_like(W)
            Wn[v.perm] = W  # our row perm[j] is ONNX row j
            W = Wn
        n = self.shapes[v.node][0]
        if W.shape[0] != n:
            raise self.fail(node, f"weights of shape {W.shape} for an input of {n} features")
        layer = L.Dense((n,), W.astype(np.float32), None if b is None else b.astype(np.float32), name=node.name or out)
        self.vals[out] = _Val(self.add(layer, [v.node]), "vec")

    def _conv(self, node, a, ins, out: str) -> None:
        v = self.value(node, ins[0])
        self.image(node, v)
        W = self._get_const(node, ins[1])
        if W.ndim != 4:
            raise self.fail(node, f"only 2-D convolutions, got weights of shape {W.shape}")
        if int(a.get("group", 1)) != 1 or any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, "grouped or dilated convolutions are not supported")
        b = self._get_const(node, ins[2]).astype(np.float32) if len(ins) > 2 and ins[2] else None
        k = W.transpose(2, 3, 1, 0).astype(np.float32)  # OIHW -> HWIO
        strides = [int(s) for s in a.get("strides", [1, 1])]
        pads = self._pads(node, a, self.shapes[v.node][:2], k.shape[:2], strides)
        layer = L.Conv2D(self.shapes[v.node], k, b, strides, pads, name=node.name or out)
        self.vals[out] = _Val(self.add(layer, [v.node]), "nchw")

    def _pads(self, node, a, hw, kernel, strides) -> tuple[int, int, int, int]:
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            t, b = L.tf_same_pads(hw[0], kernel[0], strides[0])
            l, r = L.tf_same_pads(hw[1], kernel[1], strides[1])
            return (t, b, l, r) if auto == "SAME_UPPER" else (b, t, r, l)
        if auto == "VALID":
            return (0, 0, 0, 0)
        p = [int(x) for x in a.get("pads", [0, 0, 0, 0])]
        return (p[0], p[2], p[1], p[3])  # ONNX: (top, left, bottom, right)

    def _pool(self, node, op, a, ins, out: str) -> None:
        v = self.value(node, ins[0])
        self.image(node, v)
        if int(a.get("ceil_mode", 0)):
            raise self.fail(node, "ceil_mode is not supported")
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, "dilated pooling is not supported")
        kernel = [int(k) for k in a["kernel_shape"]]
        strides = [int(s) for s in a.get("strides", [1, 1])]
        pads = self._pads(node, a, self.shapes[v.node][:2], kernel, strides)
        if op == "AveragePool" and int(a.get("count_include_pad", 0)) and any(pads):
            raise self.fail(node, "count_include_pad=1 with padding is not supported")
        cls = L.MaxPooling2D if op == "MaxPool" else L.AveragePooling2D
        layer = cls(self.shapes[v.node], kernel, strides, pads, name=node.name or out)
        self.vals[out] = _Val(self.add(layer, [v.node]), "nchw")


def _same_perm(p, q) -> bool:
    if p is None or q is None:
        return p is None and q is None
    return np.array_equal(p, q)


def from_onnx(path_or_model, *, bounds: tuple[float, float] = (0.0, 1.0), check: bool = True,
              input_layout: str = "auto", name: str | None = None,
              log: Callable[[str], None] | None = None) -> Network:
    """The description of an ONNX model (a path or an ``onnx.ModelProto``), NHWC inside.

    ``input_layout``: "auto" (NCHW, unless the graph transposes its input from NHWC first),
    "nchw" or "nhwc". A final Softmax is removed (``meta["softmax_removed"]``). ``check``
    compares the description with onnxruntime on random inputs from ``bounds`` and raises
    ``ValueError`` on a mismatch (skipped with a log line if onnxruntime is not installed).
    """
    import onnx

    model = path_or_model
    if isinstance(path_or_model, (str, os.PathLike)):
        try:
            model = onnx.load(str(path_or_model))
        except Exception as err:  # a corrupt file
            raise ValueError(f"{path_or_model}: not a readable ONNX file ({type(err).__name__}: {err})") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        raise UnsupportedLayer(f"ONNX opset {opset} is too old: opset {MIN_OPSET} or later is supported "
                               "(re-export with opset_version=13 or newer)")
    r = _Reader(model, input_layout)
    input_shape, v = r.read()
    meta = {"source": "onnx", "model_name": model.graph.name, "opset": int(opset),
            "softmax_removed": bool(v.softmax), **r.meta}
    items, out = fold_scales(r.items, v.node, meta["folded"])
    net = Network(input_shape, _used(items, out), bounds=bounds, meta=meta, name=name or model.graph.name or "onnx")
    if v.softmax:
        msg = f"{net.name}: the final softmax was removed; the logits are used"
        _log.warning(msg)
        if log is not None:
            log(msg)
    if check:
        if v.softmax:  # compare the logits: the graph cut before its softmax
            cut = onnx.ModelProto()
            cut.CopyFrom(model)
            logits = [n for n in cut.graph.node if n.op_type == "Softmax" and n.output[0] == cut.graph.output[0].name]
            name = logits[0].input[0] if logits else None
            if name is not None:
                cut.graph.node.remove(logits[0])
                del cut.graph.output[:]
                cut.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
                model_ref, soft_ref = cut, False
            else:
                model_ref, soft_ref = model, True
        else:
            model_ref, soft_ref = model, False
        ref = onnx_reference(model_ref, meta["input_layout"])
        if ref is None:
            _log.warning("%s: onnxruntime is not installed; the description was not checked against it", net.name)
        else:
            check_against(net, ref, softmax=soft_ref, what="ONNX model (onnxruntime)", rtol=1e-5)
    return net


def onnx_reference(model, input_layout: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """``f(x NHWC float32) -> outputs`` running ``model`` in onnxruntime (None if not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a pinned dependency
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    batch_one = sess.get_inputs()[0].shape[0] == 1  # exporters such as jax2onnx fix the batch to 1

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if input_layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        elif input_layout == "(N, F)":
            x = x.reshape(len(x), -1)
        x = np.ascontiguousarray(x)
        if batch_one:
            return np.concatenate([np.asarray(sess.run(None, {name: x[i:i + 1]})[0]) for i in range(len(x))])
        return np.asarray(sess.run(None, {name: x})[0])

    return run
