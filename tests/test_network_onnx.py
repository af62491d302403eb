"""ONNX graphs built with onnx.helper (no PyTorch needed) read into the network description and
checked against onnxruntime."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from robcurves.network import Domain, UnsupportedLayer, crown_bounds, from_onnx  # noqa: E402
from robcurves.network.onnx_io import onnx_reference  # noqa: E402


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inits, in_shape, out_dim, opset=17, name="g"):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_dim])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)  # onnxruntime 1.31 reads IR <= 13
    onnx.checker.check_model(m)
    return m


def pytorch_style(rng, softmax=True):
    """NCHW: normalisation (Sub, Div), Conv+BN+Relu, MaxPool, Conv, residual Add with AveragePool,
    Relu, Flatten, Gemm(transB), Relu, Dropout, MatMul + Add bias, Mul, Identity, Softmax."""
    r = lambda *s: rng.normal(size=s) * 0.5  # noqa: E731
    inits = [_init("mean", [[[[0.3]], [[0.5]]]]), _init("std", [[[[0.2]], [[0.25]]]]),
             _init("w1", r(4, 2, 3, 3)), _init("b1", r(4)),
             _init("bn_s", rng.uniform(0.5, 2, 4)), _init("bn_b", r(4)), _init("bn_m", r(4)),
             _init("bn_v", rng.uniform(0.5, 2, 4)),
             _init("w2", r(4, 4, 3, 3)), _init("b2", r(4)),
             _init("wf", r(16, 4 * 3 * 3)), _init("bf", r(16)),
             _init("wm", r(16, 5)), _init("bm", r(5)), _init("two", [2.0])]
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["n1"], name="sub_mean"),
        helper.make_node("Div", ["n1", "std"], ["n2"], name="div_std"),
        helper.make_node("Conv", ["n2", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn1",
                         epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", auto_pad="SAME_UPPER"),
        helper.make_node("AveragePool", ["p1"], ["ap"], name="avg", kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "ap"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["g"], name="fc1", transB=1),
        helper.make_node("Relu", ["g"], ["r3"], name="relu3"),
        helper.make_node("Dropout", ["r3"], ["d"], name="drop"),
        helper.make_node("MatMul", ["d", "wm"], ["mm"], name="fc2"),
        helper.make_node("Add", ["mm", "bm"], ["z0"], name="fc2_bias"),
        helper.make_node("Mul", ["z0", "two"], ["z1"], name="times_two"),
        helper.make_node("Identity", ["z1"], ["z" if softmax else "y"], name="ident"),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=1))
    return _model(nodes, inits, (2, 6, 6), 5)


def dynamic_reshape_gap(rng):
    """GlobalAveragePool, then PyTorch's x.view(x.size(0), -1): Shape/Gather/Unsqueeze/Concat/Reshape."""
    r = lambda *s: rng.normal(size=s) * 0.5  # noqa: E731
    inits = [_init("w1", r(3, 1, 3, 3)), _init("b1", r(3)), _init("wf", r(3, 4)), _init("bf", r(4))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv", strides=[2, 2], pads=[0, 1, 1, 0]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["gap"], name="gap"),
        helper.make_node("Shape", ["gap"], ["shp"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Constant", [], ["ax"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["n1", "m1"], ["tshape"], axis=0),
        helper.make_node("Reshape", ["gap", "tshape"], ["flat"], name="view"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc"),
    ]
    return _model(nodes, inits, (1, 7, 7), 4)


def tf2onnx_style(rng):
    """An NHWC input transposed to NCHW first (how tf2onnx writes Keras models), GlobalMaxPool."""
    r = lambda *s: rng.normal(size=s) * 0.5  # noqa: E731
    inits = [_init("w1", r(3, 2, 2, 2)), _init("b1", r(3)), _init("wf", r(3, 4)), _init("bf", r(4))]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "w1", "b1"], ["c1"], name="conv", auto_pad="VALID"),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalMaxPool", ["r1"], ["gmp"], name="gmp"),
        helper.make_node("Flatten", ["gmp"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc"),
    ]
    return _model(nodes, inits, (5, 5, 2), 4)


@pytest.mark.parametrize("make", [pytorch_style, dynamic_reshape_gap, tf2onnx_style])
def test_onnx_graphs_match_onnxruntime(make, tmp_path):
    rng = np.random.default_rng(0)
    m = make(rng)
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    net = from_onnx(path)
    ref = onnx_reference(m, net.meta["input_layout"])
    x = rng.random((16, *net.input_shape)).astype(np.float32)
    want = ref(x)
    got = net.predict(x)
    if net.meta["softmax_removed"]:
        got = np.exp(got - got.max(1, keepdims=True))
        got /= got.sum(1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * (1 + np.abs(want).max()))
    assert net.meta["input_layout"] == ("NHWC" if make is tf2onnx_style else "NCHW")


def test_pytorch_style_graph_folds_and_keeps_the_ops(tmp_path):
    rng = np.random.default_rng(1)
    net = from_onnx(pytorch_style(rng))
    kinds = net.kinds()
    assert net.meta["softmax_removed"] is True
    # BN folded into conv1; the bias Add and the Mul folded into fc2; Sub/Div stay (padded conv follows)
    assert kinds["scale"] == 1 and kinds["max_pooling2d"] == 1 and kinds["average_pooling2d"] == 1
    assert kinds["add"] == 1 and kinds["conv2d"] == 2 and kinds["dense"] == 2
    assert any("bn1" in f for f in net.meta["folded"])
    # the logits (no softmax) equal onnxruntime's on the graph without the softmax
    plain = pytorch_style(np.random.default_rng(1), softmax=False)
    x = rng.random((8, *net.input_shape)).astype(np.float32)
    np.testing.assert_allclose(net.predict(x), onnx_reference(plain, "NCHW")(x), rtol=1e-5, atol=1e-5)
    # and the bounds machinery works on it
    dom = Domain.ball(x[:2].astype(np.float64), "linf", 0.01)
    lo, hi = crown_bounds(net, dom)[-1]
    z = net.evaluate_numpy(x[:2])
    assert np.all(lo <= z + 1e-9) and np.all(z <= hi + 1e-9)


def test_flatten_of_nchw_permutes_the_dense_rows():
    """Without the row permutation a Flatten of a C > 1, H*W > 1 tensor gives a different function."""
    rng = np.random.default_rng(2)
    m = pytorch_style(rng, softmax=False)
    net = from_onnx(m)
    dense = [n.layer for n in net.nodes[1:] if n.layer.kind == "dense"][0]
    W = numpy_helper.to_array([i for i in m.graph.initializer if i.name == "wf"][0]).T
    assert not np.allclose(dense.numpy("W"), W)  # permuted
    C, H, Wd = 4, 3, 3
    c, h, w = np.unravel_index(np.arange(36), (C, H, Wd))
    np.testing.assert_allclose(dense.numpy("W")[(h * Wd + w) * C + c], W, rtol=1e-6)


@pytest.mark.parametrize("bad", ["sigmoid", "group", "old_opset", "mid_softmax", "ceil"])
def test_onnx_rejections_name_the_node_and_op(bad):
    rng = np.random.default_rng(0)
    inits = [_init("w1", rng.normal(size=(2, 2, 3, 3))), _init("wf", rng.normal(size=(2 * 4 * 4, 3)))]
    conv = dict(name="myconv")
    if bad == "group":
        conv["group"] = 2
        inits[0] = _init("w1", rng.normal(size=(2, 1, 3, 3)))
    act = {"sigmoid": "Sigmoid", "mid_softmax": "Softmax"}.get(bad, "Relu")
    act_kw = {"axis": 1} if bad == "mid_softmax" else {}
    pool = [helper.make_node("MaxPool", ["a"], ["a2"], name="mypool", kernel_shape=[1, 1], ceil_mode=1)] \
        if bad == "ceil" else [helper.make_node("Identity", ["a"], ["a2"])]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], **conv),
             helper.make_node(act, ["c"], ["a"], name="myact", **act_kw), *pool,
             helper.make_node("Flatten", ["a2"], ["f"]),
             helper.make_node("MatMul", ["f", "wf"], ["y"], name="fc")]
    m = _model(nodes, inits, (2, 6, 6), 3, opset=11 if bad == "old_opset" else 17)
    want = {"sigmoid": r"'myact' \(Sigmoid\)", "group": r"'myconv' \(Conv\)", "old_opset": "opset 11",
            "mid_softmax": "'myact'", "ceil": r"'mypool' \(MaxPool\)"}[bad]
    with pytest.raises(UnsupportedLayer, match=want) as err:
        from_onnx(m)
    assert "\n" not in str(err.value)


def test_a_wrong_description_is_refused(monkeypatch):
    import robcurves.network.onnx_io as O

    rng = np.random.default_rng(0)
    m = dynamic_reshape_gap(rng)
    orig = O._Reader._pads
    monkeypatch.setattr(O._Reader, "_pads", lambda self, *a: (0, 0, 0, 0) if True else orig(self, *a))
    with pytest.raises(ValueError, match="refusing to build a wrong network"):
        from_onnx(m)


def test_a_corrupt_file_gets_one_line(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"not an onnx file at all")
    with pytest.raises(ValueError, match="not a readable ONNX file"):
        from_onnx(p)
