"""robcurves.backend on TensorFlow, JAX and (when importable) PyTorch.

Keras fixes its backend at import, so each backend runs ``tests/backend_probe.py`` in a
subprocess once per session; the checks compare its answers with closed forms and with
a NumPy reference of the random generator.
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
PROBE = ROOT / "tests" / "backend_probe.py"


def _available(backend: str) -> str | None:
    mod = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return None if importlib.util.find_spec(mod) else f"{mod} is not importable"


_CACHE: dict = {}


def probe(backend: str) -> dict:
    why = _available(backend)
    if why:
        pytest.skip(why)
    if backend not in _CACHE:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
               "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")][-1]
        _CACHE[backend] = json.loads(line[len("PROBE "):])
    return _CACHE[backend]


BACKENDS = ["tensorflow", "jax", "torch"]


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7)).astype(np.float32)
    w = rng.normal(size=(7,)).astype(np.float32)
    a = rng.normal(size=(7, 3)).astype(np.float32)
    ct = rng.normal(size=(5, 3)).astype(np.float32)
    return x, w, a, ct


# A NumPy reference of the counter-based generator (uint32 arithmetic).
def _fmix32(h):
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def reference_bits(n: int, seed: np.ndarray) -> np.ndarray:
    k0, k1 = seed.astype(np.int32).view(np.uint32)
    with np.errstate(over="ignore"):
        c = np.arange(n, dtype=np.uint32)
        h = _fmix32(c * np.uint32(0x9E3779B9) + k0)
        h = _fmix32(h ^ k1)
    return h.view(np.int32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_and_grad_per_row_and_parameters(backend):
    p = probe(backend)
    assert p["backend"] == backend
    x, w, _, _ = _inputs()
    np.testing.assert_allclose(p["vg_value"], (x * x * w).sum(1), rtol=1e-5)
    np.testing.assert_allclose(p["vg_gx"], 2 * x * w, rtol=1e-5)  # per-row input gradient
    np.testing.assert_allclose(p["vg_gw"], (x * x).sum(0), rtol=1e-5)  # gradient w.r.t. a parameter
    assert np.all(np.asarray(p["vg_unused"]) == 0)
    # nested argument and aux output
    v = x @ w + 2.0
    assert p["aux"] == pytest.approx(float(v.max()), rel=1e-5)
    np.testing.assert_allclose(p["g_nested_a"], x.sum(0), rtol=1e-5)
    assert p["g_nested_b"] == pytest.approx(5.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_loop_of_gradient_steps(backend):
    p = probe(backend)
    x, w, _, _ = _inputs()
    z = x.copy()
    for _ in range(5):
        z = z - 0.1 * 2 * z * np.abs(w)
    np.testing.assert_allclose(p["descend_eager"], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p["descend_compiled"], z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vjp(backend):
    p = probe(backend)
    x, _, a, ct = _inputs()
    np.testing.assert_allclose(p["vjp_y"], x @ a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p["vjp_gx"], ct @ a.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p["vjp_ga"], x.T @ ct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p["vjp_gx2"], 2 * ct @ a.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_bits_match_the_reference_on_every_backend(backend):
    from robcurves.backend import seed_pair

    p = probe(backend)
    seed = seed_pair(7, 3)
    ref = reference_bits(24, seed).reshape(4, 6)
    np.testing.assert_array_equal(np.asarray(p["bits"], np.int32), ref)
    np.testing.assert_array_equal(np.asarray(p["bits_compiled"], np.int32), ref)
    assert not np.array_equal(np.asarray(p["other_seed_bits"]), ref)
    lo, hi, mean, var = p["uniform_stats"]
    assert -1.0 <= lo and hi < 3.0
    assert mean == pytest.approx(1.0, abs=0.05) and var == pytest.approx(16 / 12, rel=0.05)
    ref_u = -1.0 + 4.0 * ((reference_bits(8, seed).view(np.uint32) >> 8).astype(np.float32) * 2.0 ** -24)
    np.testing.assert_array_equal(np.asarray(p["uniform_head"], np.float32), ref_u.astype(np.float32))
    m, v = p["normal_stats"]
    assert m == pytest.approx(0.0, abs=0.03) and v == pytest.approx(1.0, rel=0.05)


def test_random_numbers_agree_across_backends():
    ps = [probe(b) for b in BACKENDS if _available(b) is None]
    if len(ps) < 2:
        pytest.skip("fewer than two backends importable")
    for p in ps[1:]:
        assert p["bits"] == ps[0]["bits"]
        assert p["uniform_head"] == ps[0]["uniform_head"]
        np.testing.assert_allclose(p["normal_head"], ps[0]["normal_head"], rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_function(backend):
    p = probe(backend)
    x, _, a, _ = _inputs()
    np.testing.assert_allclose(p["keras_logits"], x @ a, rtol=1e-5, atol=1e-6)
    if backend in ("jax", "torch"):  # a native JAX function / nn.Module
        np.testing.assert_allclose(p["native_logits"], x @ a, rtol=1e-5, atol=1e-6)
    if backend != "tensorflow":
        assert p["tf_imported"] is False, "robcurves.backend pulled in TensorFlow under another backend"


def test_requested_and_select(monkeypatch):
    from robcurves import backend as B

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert B.requested() == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert B.requested() == "jax"
    assert B.requested("torch") == "torch"  # the config wins over the environment
    assert B.requested("auto") == "jax"
    with pytest.raises(ValueError, match="unknown config backend 'theano'"):
        B.requested("theano")


def test_select_refuses_a_second_backend_once_keras_runs():
    code = ("import os; os.environ['KERAS_BACKEND']='jax'; import keras; from robcurves import backend as B\n"
            "assert B.select('jax') == 'jax'\n"
            "try:\n B.select('tensorflow')\nexcept ValueError as e: print('ERR', e)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if _available("jax"):
        pytest.skip(_available("jax"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERR backend 'tensorflow' was asked for, but Keras was already imported with backend 'jax'" in proc.stdout


def test_importing_the_module_imports_no_backend():
    code = "import sys, robcurves.backend; print(sorted(m for m in ('keras','tensorflow','jax','torch') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
