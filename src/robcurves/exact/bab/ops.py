"""The few array operations branch and bound needs beyond ``keras.ops``.

Bound computation is written on ``keras.ops`` so that it runs under TensorFlow (the
default, on this CPU), JAX or PyTorch. What Keras does not abstract, gradients with
respect to arbitrary tensors and compilation, lives here, in one small interface:

- :func:`value_and_grad` - ``f(params, *args) -> (scalar, aux)``; returns
  ``((scalar, aux), grads)`` with one gradient per entry of the list ``params``;
- :func:`jit` - compile a function of tensors (``tf.function`` / ``jax.jit`` / eager torch);
- :func:`tensor` / :func:`numpy` - conversion, float64 by default.

When ``robcurves.backend`` exists (the attack engine's shim), these delegate to it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import ops  # noqa: E402,F401  (re-exported: ``from .ops import ops``)

DTYPE = "float64"


def backend_name() -> str:
    return keras.backend.backend()


def tensor(x: Any, dtype: str = DTYPE):
    """``x`` as a backend tensor of ``dtype`` (float64 unless told)."""
    return ops.convert_to_tensor(np.asarray(x, dtype=dtype) if not hasattr(x, "shape") or isinstance(x, np.ndarray)
                                 else x, dtype=dtype)


def numpy(x: Any) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


def value_and_grad(f: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[tuple[Any, Any], list]]:
    """``g(params, *args) = ((value, aux), grads)`` for ``f(params, *args) = (value, aux)``.

    ``params`` is a list of tensors; ``value`` a scalar tensor; ``aux`` anything.
    """
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        def g(params: Sequence, *args):
            params = list(params)
            with tf.GradientTape() as tape:
                for p in params:
                    tape.watch(p)
                value, aux = f(params, *args)
            return (value, aux), tape.gradient(value, params)

        return g
    if name == "jax":
        import jax

        inner = jax.value_and_grad(lambda params, *args: f(params, *args), has_aux=True)

        def g(params: Sequence, *args):
            (value, aux), grads = inner(list(params), *args)
            return (value, aux), list(grads)

        return g
    if name == "torch":
        import torch

        def g(params: Sequence, *args):
            params = [p.detach().requires_grad_(True) for p in params]
            with torch.enable_grad():
                value, aux = f(params, *args)
                grads = torch.autograd.grad(value, params, allow_unused=True)
            grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]
            aux = _detach(aux)
            return (value.detach(), aux), grads

        return g
    raise ValueError(f"bab: unsupported Keras backend {name!r} (tensorflow, jax or torch)")


def _detach(aux):
    if isinstance(aux, (list, tuple)):
        return type(aux)(_detach(a) for a in aux)
    if isinstance(aux, dict):
        return {k: _detach(v) for k, v in aux.items()}
    return aux.detach() if hasattr(aux, "detach") else aux


def jit(f: Callable) -> Callable:
    """Compile ``f`` (a function of tensors and Python constants) for the active backend."""
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(f, reduce_retracing=True)
    if name == "jax":
        import jax

        return jax.jit(f)
    return f  # torch: eager (torch.compile's first call costs more than a BaB query saves)


def stop_gradient(x):
    return ops.stop_gradient(x)
