"""The same attack on TensorFlow, JAX and (when importable) PyTorch: the same verified
distances, within 1e-4 relative, on a small ReLU network; native PyTorch modules and JAX
functions work; importing the attacks under another backend imports no TensorFlow.

Each backend runs ``tests/attack_probe.py`` in its own process (Keras fixes its backend
at import).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "attack_probe.py"
NORMS = ("linf", "l2", "l1")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small ReLU MLP trained on digits (scikit-learn) and 12 of its test points."""
    from sklearn.neural_network import MLPClassifier

    from robcurves.data import load_sklearn_digits

    train, test = load_sklearn_digits(test_size=0.3, seed=0)
    clf = MLPClassifier(hidden_layer_sizes=(12,), activation="relu", max_iter=200, random_state=1)
    clf.fit(train.x.reshape(len(train.x), -1), train.y)
    ok = np.flatnonzero(clf.predict(test.x.reshape(len(test.x), -1)) == test.y)[:12]
    path = tmp_path_factory.mktemp("probe")
    arrays = dict(x=test.x[ok], y=test.y[ok], w1=clf.coefs_[0], b1=clf.intercepts_[0], w2=clf.coefs_[1],
                  b2=clf.intercepts_[1])
    np.savez(path / "keras.npz", **arrays)
    np.savez(path / "native.npz", native=1, **arrays)
    return path


_RUNS: dict = {}


def run(backend: str, case_file: Path) -> dict:
    mod = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(mod) is None:
        pytest.skip(f"{mod} is not importable")
    key = (backend, str(case_file))
    if key not in _RUNS:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
               "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run([sys.executable, str(PROBE), str(case_file)], capture_output=True, text=True, env=env,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")][-1]
        _RUNS[key] = json.loads(line[len("PROBE "):])
    return _RUNS[key]


def assert_same(a: dict, b: dict, keys=NORMS + ("pgd_restarts_l2",), rtol=1e-4):
    for k in keys:
        da, db = np.asarray(a[k]), np.asarray(b[k])
        assert np.array_equal(np.isfinite(da), np.isfinite(db)), k
        fin = np.isfinite(da)
        np.testing.assert_allclose(db[fin], da[fin], rtol=rtol, err_msg=f"{k}: {a['backend']} vs {b['backend']}")


def test_tensorflow_and_jax_give_the_same_distances(case):
    tf_run = run("tensorflow", case / "keras.npz")
    jax_run = run("jax", case / "keras.npz")
    assert all(s == "adversarial" for n in NORMS for s in tf_run[n + "_status"])
    assert_same(tf_run, jax_run)
    assert jax_run["tf_imported"] is False, "the attacks imported TensorFlow under the JAX backend"


def test_torch_gives_the_same_distances(case):
    tf_run = run("tensorflow", case / "keras.npz")
    torch_run = run("torch", case / "keras.npz")
    # PyTorch's float32 kernels round differently from XLA's and TensorFlow's, and a
    # search's path amplifies last-bit differences: measured 5e-4 relative on one l1
    # point of 12, the rest within 1e-4.
    assert_same(tf_run, torch_run, rtol=1e-3)
    assert torch_run["tf_imported"] is False, "the attacks imported TensorFlow under the torch backend"


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_native_models_of_the_backend(case, backend):
    """A plain JAX function (jax) / a PyTorch nn.Module (torch) is attacked directly."""
    native = run(backend, case / "native.npz")
    assert native["native"] is True
    assert_same(run("tensorflow", case / "keras.npz"), native, rtol=1e-4 if backend == "jax" else 1e-3)


def test_jax_reuses_a_few_compiled_programs(case):
    """Under JAX every compiled attack function holds at most ~log2(rows) programs: the
    engine pads each shrinking batch to a power of two (at least 16 rows), instead of
    compiling again for every batch size (at most 12 points x 9 targets = 108 rows here:
    16, 32, 64, 128)."""
    shapes = run("jax", case / "keras.npz")["compiled_shapes"]
    assert any("fmn_chunk" in k for k in shapes), shapes
    assert max(shapes.values()) <= 4, shapes


def test_jax_batches_are_padded_to_powers_of_two():
    """The padding rule itself: under JAX any batch of 1..1000 rows runs as one of the 7
    shapes 16, 32, ..., 1024; elsewhere at least 16 rows (oneDNN's bits) and otherwise as is."""
    from robcurves.attacks.base import Problem

    p = object.__new__(Problem)
    p.backend = "jax"
    assert {p.rows(n) for n in range(1, 1001)} == {16 << k for k in range(7)}
    assert all(p.rows(n) >= n for n in range(1, 1001))
    p.backend = "tensorflow"
    assert [p.rows(n) for n in (1, 15, 16, 17, 600)] == [16, 16, 16, 17, 600]
