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
    from robcurves.exact.stage import exact_shard
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


STAND_IN = r'''#!{python}
# A stand-in for `julia ... exact_mipverify.jl MODEL SPEC OUT`: keeps the spec it was given
# and answers INFEASIBLE (nothing adversarial within the radius) for every point.
import json, shutil, sys
spec, out = sys.argv[-2], sys.argv[-1]
shutil.copy(spec, {seen!r})
n = len(json.load(open(spec))["labels"])
json.dump({{"points": [{{"status": "INFEASIBLE", "objective": None, "bound": None, "perturbed": None,
                        "seconds": 0.5}} for _ in range(n)]}}, open(out, "w"))
'''


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_mipverify_path_follows_the_same_rules(tmp_path, monkeypatch, norm):
    """Without Julia, through a stand-in: misclassified points are recorded apart and never
    sent to MIPVerify; an attack example counts (as radius and upper bound) only after the
    float32 check; l1 searches MIPVerify's unrestricted family, so no finite domain radius."""
    import json
    import sys

    from robcurves.data import Dataset, save_dataset
    from robcurves.exact import load_results
    from robcurves.exact.mipverify import mipverify_shard
    from robcurves.models import lenet_small, save_model

    m = lenet_small((8, 8, 1), 3, seed=1)
    rng = np.random.default_rng(2)
    x = rng.random((3, 8, 8, 1)).astype(np.float32)
    pred = np.argmax(np.asarray(m(x)), axis=1)
    y = pred.copy()
    y[0] = (pred[0] + 1) % 3  # point 0: misclassified
    save_model(m, tmp_path / "model.keras", {"dataset": "toy", "made_by": {"kind": "test"}})
    save_dataset(tmp_path / "test.npz", Dataset(x, y, "toy", "test", ["a", "b", "c"], "test"))
    # The attack: a real adversarial example for point 1, and a claim for point 2 whose
    # example is the clean point itself (not adversarial).
    from robcurves.attacks import minimal_perturbations

    att = minimal_perturbations(m, x[1:2], y[1:2], norm, methods=[{"name": "fmn", "steps": 30}], progress=False)
    assert att.status[0] == "adversarial"
    adv1 = att.x_adv[0]
    d1 = keras_checker(m, norm).check(adv1, x[1], int(y[1]))[1]
    from attack_shards import warm_start_shard

    warm_start_shard(tmp_path / "att.npz", tmp_path / "model.keras", tmp_path / "test.npz", norm, np.arange(3),
                     [0.0, d1, 0.05], np.stack([x[0], adv1, x[2]]), ["misclassified", "adversarial", "adversarial"])
    seen = tmp_path / "spec_seen.json"
    julia = tmp_path / "julia"
    julia.write_text(STAND_IN.format(python=sys.executable, seen=str(seen)))
    julia.chmod(0o755)
    monkeypatch.setenv("JULIA", str(julia))
    res = mipverify_shard(str(tmp_path / "model.keras"), str(tmp_path / "test.npz"), str(tmp_path / "s.npz"), norm,
                          0, 1, 3, {"time_limit": 5}, attack_paths=[str(tmp_path / "att.npz")])
    spec = json.loads(seen.read_text())
    assert spec["labels"] == [int(y[1]) + 1, int(y[2]) + 1]  # point 0 never went to Julia
    default_r = 1.0 if norm == "linf" else 64.0
    assert spec["radius"] == pytest.approx([d1 * (1 + 1e-6) + 1e-7, default_r])  # the bogus claim sets nothing
    res = load_results(tmp_path / "s.npz")
    assert res.status.tolist() == ["misclassified", "optimal", "no_adversarial_in_domain"]
    assert res.attack_verified.tolist() == [True, True, False]
    assert res.upper[1] == pytest.approx(d1) and np.isfinite(res.witness[1]).all()
    if norm == "l1":  # MIPVerify's unrestricted family: the whole box, no radius
        assert np.isinf(res.domain_radius[1:]).all() and np.isinf(res.lower[2])
    else:
        assert res.domain_radius[2] == 1.0 and res.lower[2] == 1.0
    assert res.summary()["misclassified"] == 1 and res.summary()["optimal"] == 1
