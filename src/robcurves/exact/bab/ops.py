"""The array operations branch and bound uses: ``keras.ops`` and the project's backend shim.

Bound computation is written on ``keras.ops`` so that it runs under TensorFlow (the
default, on this CPU), JAX or PyTorch. Gradients with respect to the bound parameters
(alpha, beta) and compilation come from :mod:`robcurves.backend`:

- :func:`value_and_grad` - ``f(params, *args) -> (value, aux)`` gives
  ``g(params, *args) -> ((value, aux), grads)`` (``grads`` one per entry of ``params``);
- :func:`jit` - compile (``tf.function`` / ``jax.jit`` / eager torch);
- :func:`tensor` / :func:`numpy` - conversion, float64 by default.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras import ops  # noqa: E402,F401  (re-exported)

from robcurves import backend as B  # noqa: E402

DTYPE = "float64"


def require_float64() -> list[str]:
    """Make sure float64 tensors are float64 (JAX makes them float32 unless x64 is enabled).

    The bounds' float64 rounding slack assumes float64 arithmetic; returns what was changed.
    """
    import keras

    probe = ops.convert_to_tensor(np.ones(1), dtype="float64")
    if keras.backend.standardize_dtype(probe.dtype) == "float64":
        return []
    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        probe = ops.convert_to_tensor(np.ones(1), dtype="float64")
        if keras.backend.standardize_dtype(probe.dtype) == "float64":
            return ["jax_enable_x64 switched on (bounds are computed in float64)"]
    raise RuntimeError("bab: this backend computes float64 tensors in lower precision; the bounds need float64")


def tensor(x: Any, dtype: str = DTYPE):
    """``x`` as a backend tensor of ``dtype`` (float64 unless told)."""
    if isinstance(x, (np.ndarray, np.number, float, int, list, tuple)):
        return ops.convert_to_tensor(np.asarray(x, dtype=dtype), dtype=dtype)
    return ops.cast(x, dtype)


def numpy(x: Any) -> np.ndarray:
    return B.to_numpy(x)


def value_and_grad(f: Callable[..., tuple[Any, Any]]) -> Callable:
    """``g(params, *args) = ((value, aux), grads)`` for a scalar ``value`` of ``f(params, *args)``."""
    vg = B.value_and_grad(f, argnums=0, has_aux=True)

    def g(params, *args):
        (value, aux), grads = vg(list(params), *args)
        return (value, aux), list(grads)

    return g


def jit(f: Callable) -> Callable:
    """Compile ``f`` (a function of tensors) for the active backend."""
    return B.compile(f)


def stop_gradient(x):
    return ops.stop_gradient(x)
