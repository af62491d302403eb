"""Your own model through the whole DAG: a residual CNN with an input normalisation, BatchNorm,
max- and average-pooling and a softmax output, as a .keras file and as an ONNX file (NCHW,
written here from the same weights with onnx.helper), plus the same network without the
softmax. Attack, exact on a few points, curves and figures."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from robcurves.curves import RobustnessCurve  # noqa: E402

MEAN, STD = 0.3, 0.35


def realistic_cnn(softmax: bool = True):
    import keras

    K = keras.layers
    inp = keras.Input((8, 8, 1), name="image")
    x = K.Normalization(mean=MEAN, variance=STD ** 2, name="norm")(inp)
    x = K.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(x)
    x = K.BatchNormalization(momentum=0.5, name="bn1")(x)
    x = K.ReLU(name="r1")(x)
    x = K.MaxPooling2D(2, name="mp")(x)
    y = K.Conv2D(8, 3, padding="same", name="c2")(x)
    y = K.BatchNormalization(momentum=0.5, name="bn2")(y)
    s = K.AveragePooling2D(3, strides=1, padding="same", name="ap")(x)
    x = K.ReLU(name="r2")(K.Add(name="add")([y, s]))
    x = K.GlobalAveragePooling2D(name="gap")(x)
    x = K.Dropout(0.1, name="drop")(x)
    out = K.Dense(10, activation="softmax" if softmax else None, name="fc")(x)
    return keras.Model(inp, out, name="own_cnn")


def to_onnx_nchw(model, path: Path) -> None:
    """The Keras model above as a PyTorch-style ONNX graph (NCHW, OIHW kernels), by hand."""
    from onnx import TensorProto, helper, numpy_helper

    w = {layer.name: [np.asarray(v) for v in layer.get_weights()] for layer in model.layers}
    init = lambda n, a: numpy_helper.from_array(np.asarray(a, np.float32), n)  # noqa: E731
    bn = lambda n: [init(f"{n}_{k}", v) for k, v in zip(("s", "b", "m", "v"), w[n])]  # noqa: E731
    inits = [init("mean", [[[[MEAN]]]]), init("std", [[[[STD]]]]),
             init("c1_w", w["c1"][0].transpose(3, 2, 0, 1)), *bn("bn1"),
             init("c2_w", w["c2"][0].transpose(3, 2, 0, 1)), init("c2_b", w["c2"][1]), *bn("bn2"),
             init("fc_w", w["fc"][0]), init("fc_b", w["fc"][1])]
    eps = model.get_layer("bn1").epsilon
    N = helper.make_node
    nodes = [
        N("Sub", ["x", "mean"], ["n1"], name="sub"), N("Div", ["n1", "std"], ["n2"], name="div"),
        N("Conv", ["n2", "c1_w"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        N("BatchNormalization", ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"], ["b1"], name="bn1", epsilon=eps),
        N("Relu", ["b1"], ["r1"], name="r1"),
        N("MaxPool", ["r1"], ["mp"], name="mp", kernel_shape=[2, 2], strides=[2, 2]),
        N("Conv", ["mp", "c2_w", "c2_b"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
        N("BatchNormalization", ["c2", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["b2"], name="bn2", epsilon=eps),
        N("AveragePool", ["mp"], ["ap"], name="ap", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        N("Add", ["b2", "ap"], ["s"], name="add"), N("Relu", ["s"], ["r2"], name="r2"),
        N("GlobalAveragePool", ["r2"], ["g"], name="gap"), N("Flatten", ["g"], ["f"], name="flatten"),
        N("Gemm", ["f", "fc_w", "fc_b"], ["z"], name="fc"), N("Softmax", ["z"], ["y"], name="softmax", axis=1),
    ]
    g = helper.make_graph(nodes, "own_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


@pytest.fixture(scope="module")
def own_run(tmp_path_factory, snakemake_runner):
    import keras

    from robcurves.data import load_sklearn_digits

    work = tmp_path_factory.mktemp("own")
    train, _ = load_sklearn_digits()
    keras.utils.set_random_seed(0)
    m = realistic_cnn()
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    m.fit(train.x, train.y, epochs=6, batch_size=64, verbose=0)
    m.save(work / "own.keras")
    plain = realistic_cnn(softmax=False)
    plain.set_weights(m.get_weights())
    plain.save(work / "own_logits.keras")
    to_onnx_nchw(m, work / "own.onnx")
    methods = [{"name": "fmn", "steps": 30}]
    cfg = {
        "seed": 0,
        "datasets": {"digits": {"source": "sklearn_digits", "test_size": 0.3, "split_seed": 0}},
        "models": {
            "own_keras": {"dataset": "digits", "source": "keras", "path": str(work / "own.keras"), "label": "Keras"},
            "own_logits": {"dataset": "digits", "source": "keras", "path": str(work / "own_logits.keras")},
            "own_onnx": {"dataset": "digits", "source": "onnx", "path": str(work / "own.onnx"), "label": "ONNX"},
        },
        # one norm and one shard per model: each attack job costs ~30 s of TensorFlow start-up here
        "attacks": {"n_points": 10, "shards": 1, "threads": 1,
                    "norms": {"linf": {"batch_size": 64, "methods": methods}}},
        "exact": {"models": ["own_onnx"], "norms": ["linf"], "n_points": 2, "time_limit": 8},
        "figures": {"robustness_curves": {"own": {"models": ["own_keras", "own_onnx"]}}},
    }
    configfile = work / "own.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc = snakemake_runner(work, "all_figures", configfile=configfile, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


def _curve(work: Path, model: str, norm: str) -> RobustnessCurve:
    return RobustnessCurve.load(work / f"results/curves/digits/{model}/{norm}.json")


@pytest.mark.slow
def test_own_models_are_read_with_their_provenance(own_run):
    for model, kind, file in (("own_keras", "keras", "own.keras"), ("own_onnx", "onnx", "own.onnx"),
                              ("own_logits", "keras", "own_logits.keras")):
        side = json.loads((own_run / f"results/models/digits/{model}/model.json").read_text())
        made = side["made_by"]
        assert made["kind"] == kind and made["source"] == file
        assert made["sha256"] == hashlib.sha256((own_run / file).read_bytes()).hexdigest()
        assert made["softmax_removed"] is (model != "own_logits")
        assert made["layers"]["max_pooling2d"] == 1 and made["layers"]["average_pooling2d"] == 1
        assert made["layers"]["add"] == 1 and "batch_normalization" not in made["layers"]
        assert any("bn1" in f for f in made["folded"])
        assert side["test_accuracy"] > 0.5
    assert json.loads((own_run / "results/models/digits/own_onnx/model.json").read_text())["made_by"]["input_layout"] == "NCHW"
    log = (own_run / "logs/models/digits/own_keras.log").read_text()
    assert "softmax was removed" in log


@pytest.mark.slow
def test_softmax_model_gives_the_curves_of_its_logits(own_run):
    for norm in ("linf",):
        a, b = _curve(own_run, "own_keras", norm), _curve(own_run, "own_logits", norm)
        np.testing.assert_array_equal(a.distances, b.distances)
        assert np.isfinite(a.distances).sum() >= 8


@pytest.mark.slow
def test_keras_and_onnx_files_give_the_same_curves(own_run):
    for norm in ("linf",):
        a, b = _curve(own_run, "own_keras", norm).distances, _curve(own_run, "own_onnx", norm).distances
        assert np.array_equal(np.isfinite(a), np.isfinite(b))
        ok = np.isfinite(a) & (a > 0)
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-3)


@pytest.mark.slow
def test_exact_and_figures_on_the_onnx_model(own_run):
    data = json.loads((own_run / "results/exact/digits/own_onnx/linf.json").read_text())
    att = _curve(own_run, "own_onnx", "linf").distances
    assert len(data["points"]) == 2
    for p in data["points"]:
        assert p["status"] in ("optimal", "time_limit", "no_adversarial_in_domain")
        assert 0 <= p["lower"] <= (p["upper"] if p["upper"] is not None else np.inf)
        if p["upper"] is not None and np.isfinite(att[p["index"]]):
            assert p["upper"] <= att[p["index"]] * (1 + 1e-6) + 1e-7
    for name in ("curves_own", "exact_vs_approx"):
        png = own_run / f"results/figures/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
