"""Model format, builders and the conversion of Croce et al.'s .mat files."""

import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import scipy.io

from robcurves import models as M


# ------------------------------------------------------- independent NumPy reference

def conv2d_same_nhwc(x, w, b, stride):
    """Cross-correlation with TensorFlow's SAME padding (extra pad row/col at the end)."""
    n, h, wd, c = x.shape
    k1, k2, ci, co = w.shape
    assert ci == c
    oh, ow = math.ceil(h / stride), math.ceil(wd / stride)
    ph = max((oh - 1) * stride + k1 - h, 0)
    pw = max((ow - 1) * stride + k2 - wd, 0)
    xp = np.zeros((n, h + ph, wd + pw, c), dtype=np.float64)
    xp[:, ph // 2: ph // 2 + h, pw // 2: pw // 2 + wd, :] = x
    out = np.zeros((n, oh, ow, co), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride: i * stride + k1, j * stride: j * stride + k2, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out + b.reshape(1, 1, 1, -1)


def relu(z):
    return np.maximum(z, 0.0)


def reference_lenet(mat, x):
    z = relu(conv2d_same_nhwc(x, mat["weights_conv1"], mat["biases_conv1"], 2))
    z = relu(conv2d_same_nhwc(z, mat["weights_conv2"], mat["biases_conv2"], 2))
    z = z.reshape(len(z), -1)  # row-major over (H, W, C): NHWC flatten
    z = relu(z @ mat["weights_fc1"] + mat["biases_fc1"].reshape(-1))
    return z @ mat["weights_fc2"] + mat["biases_fc2"].reshape(-1)


def reference_fc1(mat, x):
    z = relu(x.reshape(len(x), -1) @ mat["U"] + mat["bU"].reshape(-1))
    return z @ mat["W"] + mat["bW"].reshape(-1)


def random_lenet_mat(rng, shape, n_classes=10):
    h, w, c = shape
    flat = math.ceil(math.ceil(h / 2) / 2) * math.ceil(math.ceil(w / 2) / 2) * 32

    def g(*s, scale=1.0):
        return (rng.standard_normal(s) * scale).astype(np.float32)

    return {
        "weights_conv1": g(4, 4, c, 16, scale=0.3), "biases_conv1": g(1, 16, scale=0.1),
        "weights_conv2": g(4, 4, 16, 32, scale=0.1), "biases_conv2": g(1, 32, scale=0.1),
        "weights_fc1": g(flat, 100, scale=1 / math.sqrt(flat)), "biases_fc1": g(1, 100, scale=0.1),
        "weights_fc2": g(100, n_classes, scale=0.1), "biases_fc2": g(1, n_classes, scale=0.1),
    }


def random_fc1_mat(rng, n_in, hidden=32, n_classes=10):
    return {
        "U": (rng.standard_normal((n_in, hidden)) / math.sqrt(n_in)).astype(np.float32),
        "bU": (rng.standard_normal((1, hidden)) * 0.1).astype(np.float32),
        "W": (rng.standard_normal((hidden, n_classes)) * 0.3).astype(np.float32),
        "bW": (rng.standard_normal((1, n_classes)) * 0.1).astype(np.float32),
    }


def write_mat(tmp_path, name, mat):
    path = tmp_path / name
    scipy.io.savemat(str(path), mat)
    return path


def assert_logits_close(got, want):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


# ----------------------------------------------------------------------- conversion

@pytest.mark.parametrize("shape,explicit", [
    ((28, 28, 1), False),   # MNIST, inferred from one channel
    ((32, 32, 3), False),   # CIFAR-10 / GTS, inferred from three channels
    ((8, 8, 1), True),      # sklearn digits
    ((7, 9, 2), True),      # odd, non-square: asymmetric SAME padding
])
def test_convert_lenet_matches_numpy_reference(tmp_path, shape, explicit):
    rng = np.random.default_rng(sum(shape))
    mat = random_lenet_mat(rng, shape, n_classes=7)
    path = write_mat(tmp_path, "net.mat", mat)
    model = M.convert_mat(path, layout="auto", input_shape=shape if explicit else None)
    assert M.model_input_shape(model) == shape
    x = rng.uniform(0, 1, size=(5, *shape)).astype(np.float32)
    assert_logits_close(M.predict_logits(model, x), reference_lenet(mat, x.astype(np.float64)))
    assert M.detect_layout(path) == "cnn_lenet_small"


@pytest.mark.parametrize("shape,explicit", [
    ((28, 28, 1), False),
    ((32, 32, 3), False),
    ((1, 1, 13), True),     # tabular data: H = W = 1
    ((5, 4, 3), True),      # NHWC flatten order matters here
])
def test_convert_fc1_matches_numpy_reference(tmp_path, shape, explicit):
    rng = np.random.default_rng(int(np.prod(shape)))
    mat = random_fc1_mat(rng, int(np.prod(shape)))
    path = write_mat(tmp_path, "fc.mat", mat)
    model = M.convert_mat(path, input_shape=shape if explicit else None)
    assert model.name == "fc1"
    x = rng.uniform(0, 1, size=(6, *shape)).astype(np.float32)
    assert_logits_close(M.predict_logits(model, x), reference_fc1(mat, x.astype(np.float64)))


def test_numpy_reference_conv_is_not_trivially_symmetric():
    # Guard for the reference itself: SAME pads one row at the top and two at the bottom
    # for k=4, stride 2 on an odd size, so flipping the image must change the output.
    x = np.arange(7 * 7, dtype=np.float64).reshape(1, 7, 7, 1)
    w = np.ones((4, 4, 1, 1))
    out = conv2d_same_nhwc(x, w, np.zeros(1), 2)
    assert out.shape == (1, 4, 4, 1)
    assert out[0, 0, 0, 0] == x[0, :3, :3, 0].sum()  # rows/cols -1..2, the -1 is padding


def test_convert_missing_key_names_it(tmp_path):
    mat = random_lenet_mat(np.random.default_rng(0), (28, 28, 1))
    del mat["biases_fc1"]
    path = write_mat(tmp_path, "broken.mat", mat)
    with pytest.raises(ValueError, match="biases_fc1"):
        M.convert_mat(path)


def test_convert_wrong_shape_names_key_and_shapes(tmp_path):
    mat = random_lenet_mat(np.random.default_rng(0), (28, 28, 1))
    mat["weights_fc1"] = mat["weights_fc1"][:1000]
    path = write_mat(tmp_path, "broken.mat", mat)
    with pytest.raises(ValueError, match=r"weights_fc1.*\(1000, 100\) found, \(1568, 100\) expected"):
        M.convert_mat(path)
    mat = random_fc1_mat(np.random.default_rng(0), 784)
    mat["bW"] = np.zeros((1, 9), dtype=np.float32)
    with pytest.raises(ValueError, match=r"'bW'.*\(1, 9\) found, \(1, 10\) expected"):
        M.convert_mat(mat, layout="fc1")


def test_convert_input_shape_mismatch_and_unknown(tmp_path):
    mat = random_lenet_mat(np.random.default_rng(0), (28, 28, 1))
    with pytest.raises(ValueError, match="weights_fc1"):
        M.convert_mat(mat, input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match="weights_conv1"):
        M.convert_mat(mat, input_shape=(28, 28, 3))
    with pytest.raises(ValueError, match="pass input_shape"):
        M.convert_mat(random_fc1_mat(np.random.default_rng(0), 50))
    with pytest.raises(ValueError, match="match neither"):
        M.convert_mat({"foo": np.zeros(3)})
    with pytest.raises(ValueError, match="unknown .mat layout"):
        M.convert_mat(mat, layout="resnet")


# ------------------------------------------------------------------------- builders

@pytest.mark.parametrize("shape,flat", [((8, 8, 1), 2 * 2 * 32), ((28, 28, 1), 7 * 7 * 32), ((32, 32, 3), 8 * 8 * 32)])
def test_lenet_small_adapts_to_input(shape, flat):
    model = M.lenet_small(shape, 10, seed=1)
    assert M.model_input_shape(model) == shape
    assert M.model_n_classes(model) == 10
    assert model.get_layer("fc1").kernel.shape == (flat, 100)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "Conv2D", "ReLU", "Conv2D", "ReLU", "Flatten", "Dense", "ReLU", "Dense"]
    assert M.describe(model).kinds() == {"conv2d": 2, "relu": 3, "flatten": 1, "dense": 2}
    out = M.predict_logits(model, np.zeros((2, *shape), dtype=np.float32))
    assert out.shape == (2, 10) and out.dtype == np.float32


def test_builders_are_deterministic_by_seed():
    a = M.lenet_small((8, 8, 1), 10, seed=3).get_weights()
    b = M.lenet_small((8, 8, 1), 10, seed=3).get_weights()
    c = M.lenet_small((8, 8, 1), 10, seed=4).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    f = M.fc1((8, 8, 1), 10, hidden=16, seed=0)
    assert [type(layer).__name__ for layer in f.layers] == ["InputLayer", "Flatten", "Dense", "ReLU", "Dense"]
    assert f.get_layer("fc1").kernel.shape == (64, 16)
    assert M.build_model("lenet_small", (8, 8, 1), 3).name == "cnn_lenet_small"
    with pytest.raises(ValueError, match="unknown architecture"):
        M.build_model("vgg", (8, 8, 1), 3)


def test_saving_rejects_unsupported_layers_by_name_and_softmax_outputs(tmp_path):
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inp)
    side = {"dataset": "toy", "made_by": {"kind": "test"}}
    bad = keras.Model(inp, keras.layers.Dense(3, activation="tanh", name="tanh_dense")(x))
    with pytest.raises(ValueError, match="tanh_dense"):
        M.save_model(bad, tmp_path / "a.keras", side)
    soft = keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(3)(x)))
    with pytest.raises(ValueError, match="ends in a softmax"):
        M.save_model(soft, tmp_path / "b.keras", side)
    assert not (tmp_path / "a.keras").exists() and not (tmp_path / "b.keras").exists()
    # a fused ReLU is fine: the description splits it
    M.save_model(keras.Model(inp, keras.layers.Dense(3)(keras.layers.Dense(5, activation="relu")(x))),
                 tmp_path / "c.keras", side)


# --------------------------------------------------------------------- save / load

def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    mat = random_lenet_mat(rng, (8, 8, 1))
    mat_path = write_mat(tmp_path, "digits.mat", mat)
    model = M.convert_mat(mat_path, input_shape=(8, 8, 1))
    sidecar = M.mat_sidecar(mat_path, model, dataset="digits")
    assert sidecar["made_by"]["layout"] == "cnn_lenet_small"
    assert len(sidecar["made_by"]["sha256"]) == 64
    path = tmp_path / "models" / "digits" / "conv" / "model.keras"
    written = M.save_model(model, path, sidecar)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.json", "model.keras"]  # no temp files left
    on_disk = json.loads((path.parent / "model.json").read_text())
    assert on_disk == written
    assert on_disk["input_shape"] == [8, 8, 1] and on_disk["n_classes"] == 10
    assert on_disk["bounds"] == [0.0, 1.0] and on_disk["dataset"] == "digits"

    loaded, side = M.load_model(path)
    assert side == written
    x = rng.uniform(0, 1, size=(4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(M.predict_logits(loaded, x), M.predict_logits(model, x))


def test_save_fills_defaults_and_checks_sidecar(tmp_path):
    model = M.fc1((1, 1, 5), 3, hidden=4)
    path = tmp_path / "model.keras"
    side = M.save_model(model, path, {"dataset": "toy", "made_by": {"kind": "train", "method": "st", "seed": 0}})
    assert side["input_shape"] == [1, 1, 5] and side["n_classes"] == 3 and side["bounds"] == [0.0, 1.0]
    with pytest.raises(ValueError, match="lacks required keys"):
        M.save_model(model, path, {"dataset": "toy"})
    with pytest.raises(ValueError, match=r"input_shape \[1, 1, 6\] disagrees"):
        M.save_model(model, path, {"dataset": "toy", "made_by": {"kind": "x"}, "input_shape": [1, 1, 6]})
    with pytest.raises(ValueError, match=r"\.keras"):
        M.save_model(model, tmp_path / "model.h5", {"dataset": "toy", "made_by": {"kind": "x"}})
    M.load_model(path)  # the failed saves left the good pair intact


def test_load_errors(tmp_path):
    model = M.fc1((1, 1, 5), 3, hidden=4)
    path = tmp_path / "model.keras"
    side = M.save_model(model, path, {"dataset": "toy", "made_by": {"kind": "train"}})

    (tmp_path / "model.json").write_text(json.dumps({**side, "input_shape": [2, 2, 5]}))
    with pytest.raises(ValueError, match=r"sidecar input_shape \[2, 2, 5\] disagrees with the model's input shape \[1, 1, 5\]"):
        M.load_model(path)

    (tmp_path / "model.json").write_text(json.dumps({**side, "keras_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="checksum"):
        M.load_model(path)

    (tmp_path / "model.json").unlink()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        M.load_model(path)


def test_check_model_fits_and_predict_errors():
    model = M.lenet_small((8, 8, 1), 10)
    M.check_model_fits(model, {"input_shape": [8, 8, 1]}, np.zeros((3, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"\(28, 28, 1\).*\(8, 8, 1\)"):
        M.check_model_fits(model, None, np.zeros((3, 28, 28, 1)))
    with pytest.raises(ValueError, match="does not fit"):
        M.predict_logits(model, np.zeros((2, 64)))
    model.get_layer("logits").set_weights([np.full((100, 10), np.nan, np.float32), np.zeros(10, np.float32)])
    with pytest.raises(ValueError, match="non-finite logits"):
        M.predict_logits(model, np.zeros((2, 8, 8, 1)))
    assert M.predict_logits(M.fc1((1, 1, 2), 2, hidden=3), np.zeros((0, 1, 1, 2))).shape == (0, 2)


# --------------------------------------------------------------- your own Keras / ONNX file

def test_model_file_sources_are_checked_before_any_job(tmp_path):
    from robcurves.config import cross_check, missing_model_files

    cfg = {"datasets": {"d": {}}, "models": {
        "a": {"dataset": "d", "source": "keras", "path": str(tmp_path / "a.keras")},
        "b": {"dataset": "d", "source": "onnx", "path": str(tmp_path / "b.onnx")},
        "c": {"dataset": "d", "source": "onnx", "path": str(tmp_path / "c.keras")},
        "e": {"dataset": "d", "source": "keras"}}}
    missing = missing_model_files(cfg)
    assert any(m.strip() == f"models.a: {tmp_path / 'a.keras'} (source: keras)" for m in missing)
    assert any("models.b: " in m and "(source: onnx)" in m for m in missing)
    problems = cross_check(cfg, deep=False)
    assert any("models.c.path" in p and ".onnx" in p for p in problems)
    assert any("models.e has source: keras but no path" in p for p in problems)
    (tmp_path / "a.keras").write_bytes(b"x")
    assert not any("models.a " in m for m in missing_model_files(cfg))


def test_read_model_file_keras_softmax_and_corrupt_files(tmp_path):
    import hashlib

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(h))
    src = keras.Model(inp, out)
    src.save(tmp_path / "soft.keras")
    warned = []
    model, made = M.read_model_file(tmp_path / "soft.keras", log=warned.append)
    assert made["kind"] == "keras" and made["softmax_removed"] is True and warned
    assert made["sha256"] == hashlib.sha256((tmp_path / "soft.keras").read_bytes()).hexdigest()
    assert "batch_normalization" not in made["layers"] and made["folded"]
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    z = M.predict_logits(model, x)
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(1, keepdims=True), np.asarray(src(x)), atol=1e-5)
    M.save_model(model, tmp_path / "out.keras", {"dataset": "toy", "made_by": made})  # logits: saveable
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="Keras cannot load this file"):
        M.read_model_file(tmp_path / "bad.keras")
    with pytest.raises(FileNotFoundError, match="not found"):
        M.read_model_file(tmp_path / "nope.onnx")


def test_cli_takes_an_onnx_file(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("onnx")
    from test_network_onnx import dynamic_reshape_gap

    import onnx

    onnx.save(dynamic_reshape_gap(np.random.default_rng(0)), str(tmp_path / "m.onnx"))  # (N, 1, 7, 7) NCHW
    x = np.random.default_rng(1).random((3, 7, 7, 1)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2]))
    proc = subprocess.run([sys.executable, "-m", "robcurves", "--dataset", str(tmp_path / "d.npz"), "--model_path",
                           str(tmp_path / "m.onnx"), "--norms", "inf", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"norm": "linf"' in proc.stdout and '"n_points": 3' in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "robcurves", "--dataset", str(tmp_path / "d.npz"), "--model_path",
                          str(tmp_path / "missing.onnx")], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "file not found" in bad.stderr and "Traceback" not in bad.stderr
