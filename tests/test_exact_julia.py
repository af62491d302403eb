"""The Julia/MIPVerify backend of the exact stage: the same records as the HiGHS backend.

Needs `julia` with the project in workflow/julia instantiated; skips with the reason otherwise.
The export half (MIPVerify's .mat naming) is tested without Julia.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.io  # noqa: E402

from robcurves.exact.mipverify import export_mipverify, julia_executable, record_from_mipverify  # noqa: E402
from robcurves.exact.solve import keras_checker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JULIA_PROJECT = ROOT / "workflow" / "julia"


def _lenet(seed=0):
    rng = np.random.default_rng(seed)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 4, strides=2, padding="same", name="conv1")(inp)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(8, activation="relu", name="fc1")(h)
    out = keras.layers.Dense(3, name="fc2")(h)
    m = keras.Model(inp, out)
    for layer in m.layers:
        w = layer.get_weights()
        if w:
            layer.set_weights([rng.normal(0, 0.5, a.shape).astype(np.float32) for a in w])
    return m


def test_export_uses_mipverify_naming(tmp_path):
    m = _lenet()
    chain = export_mipverify(m, tmp_path / "m.mat")
    data = scipy.io.loadmat(tmp_path / "m.mat")
    assert {"conv1/weight", "conv1/bias", "fc1/weight", "fc1/bias", "fc2/weight", "fc2/bias"} <= set(data)
    assert data["conv1/weight"].shape == (4, 4, 1, 4)
    assert data["fc1/weight"].shape == (64, 8)
    assert [c["type"] for c in chain] == ["conv2d", "relu", "flatten", "dense", "relu", "dense"]
    assert chain[0]["stride"] == 2 and chain[0]["padding"] == "same"


def test_julia_answers_become_checked_records():
    m = _lenet()
    x = np.random.default_rng(0).random((8, 8, 1)).astype(np.float32)
    y = int(np.argmax(np.asarray(m(x[None]))))
    checker = keras_checker(m, "linf")
    # A "witness" that is not adversarial must not make the point exact.
    fake = {"status": "OPTIMAL", "objective": 0.01, "bound": 0.01, "perturbed": x.reshape(-1).tolist(), "seconds": 1}
    rec = record_from_mipverify(fake, checker, x, y, "linf", 0, 0.5, np.inf, 1e-4, 1e-6)
    assert rec.status == "time_limit" and rec.witness is None and np.isinf(rec.upper)
    none = {"status": "INFEASIBLE", "objective": None, "bound": 0.5, "perturbed": None, "seconds": 1}
    rec = record_from_mipverify(none, checker, x, y, "linf", 0, 0.5, np.inf, 1e-4, 1e-6)
    assert rec.status == "no_adversarial_in_domain" and rec.lower == 0.5


@pytest.mark.skipif(julia_executable() is None, reason="`julia` is not installed (see workflow/julia/README.md)")
def test_mipverify_agrees_with_highs(tmp_path):
    probe = subprocess.run([julia_executable(), f"--project={JULIA_PROJECT}", "-e", "using MIPVerify, HiGHS"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the Julia project is not instantiated: julia --project=workflow/julia -e "
                    "'using Pkg; Pkg.instantiate()'")
    from robcurves.data import Dataset, save_dataset
    from robcurves.exact.mipverify import mipverify_shard
    from robcurves.exact.pipeline import exact_shard
    from robcurves.exact.records import load_results
    from robcurves.models import save_model

    m = _lenet()
    x = np.random.default_rng(1).random((2, 8, 8, 1)).astype(np.float32)
    y = np.argmax(np.asarray(m(x)), axis=1)
    save_model(m, tmp_path / "model.keras", {"input_shape": [8, 8, 1], "n_classes": 3, "bounds": [0.0, 1.0],
                                             "dataset": "toy", "made_by": {"kind": "test"}})
    save_dataset(tmp_path / "test.npz", Dataset(x, y, "toy", "test", ["a", "b", "c"], "test"))
    cfg = {"time_limit": 60, "max_radius": 0.5, "tightening": ["interval", "lp"]}
    exact_shard(str(tmp_path / "model.keras"), str(tmp_path / "test.npz"), str(tmp_path / "h.npz"), "linf",
                0, 1, 2, cfg)
    mipverify_shard(str(tmp_path / "model.keras"), str(tmp_path / "test.npz"), str(tmp_path / "j.npz"), "linf",
                    0, 1, 2, cfg, julia_project=str(JULIA_PROJECT))
    h, j = load_results(tmp_path / "h.npz"), load_results(tmp_path / "j.npz")
    for i in range(2):
        if h.status[i] == j.status[i] == "optimal":
            assert j.upper[i] == pytest.approx(h.upper[i], rel=1e-3, abs=1e-5)
