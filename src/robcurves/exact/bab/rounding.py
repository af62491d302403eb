"""What "certified" means: bounds that hold for the float32 model, rounding included.

The witnesses are checked on the float32 Keras model, so a certificate must hold for it,
not for the real-arithmetic network with the same weights (the gap is exploitable: Jia &
Rinard 2021, Zombori et al. 2021). This module derives every tolerance the branch and
bound uses.

The float32 model
-----------------
Write ``zh_k = fl(W_k ah_{k-1} + b_k)`` for the float32 pre-activations and
``ah_k = relu(zh_k)`` (exact in floating point). Whatever the summation order, with or
without fused multiply-adds, a float32 dot product of ``n`` terms plus a bias satisfies
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.5)

    |zh_k - (W_k ah_{k-1} + b_k)| <= gamma_{n+2} (|W_k| |ah_{k-1}| + |b_k|) =: e_k,
    gamma_m = m u / (1 - m u),  u = 2^-24,

with ``n`` the layer's fan-in (``n + 2`` also covers a separate bias addition). So the
float32 network is one member of the family ``z_k = W_k a_{k-1} + b_k + delta_k``,
``|delta_k| <= e_k``, and the bound propagation bounds that whole family: every linear
bound carries ``delta_k`` as an extra input in ``[-e_k, e_k]``, i.e. the term
``-|Lambda_k| . e_k`` for the coefficients ``Lambda_k`` on ``z_k``. ``|ah_{k-1}|`` is
bounded by the (already sound) bounds of the layer below, so the pre-activation bounds,
the ReLU relaxations built from them and the final margin bounds all hold for the
float32 model.

Assumptions (checked where they can be, see :func:`check_float32_kernels`): the model
computes in float32 with float32 (or wider) accumulation and every Dense/Conv2D output
is a sum of products (GEMM or direct convolution). True for TensorFlow's CPU kernels
(Eigen/oneDNN) in their default ``ONEDNN_DEFAULT_FPMATH_MODE`` (strict). TF32 tensor
cores (the TensorFlow default on Ampere and newer GPUs), bf16 math modes and FFT or
Winograd convolutions break the bound: on a GPU the check switches TF32 off for
TensorFlow and refuses when it cannot; the certificate is for the model as run here.

The bound computation itself runs in float64. Its rounding is bounded by
``FLOAT64_SLACK * (|c| . M_K + sum_k beta_k . M_k)``, where ``M_k >= |z_k|`` is the
structural magnitude ``|W_k| M_{k-1} + |b_k|`` over the input box (every product the
bound computation sums is bounded by these magnitudes; ``FLOAT64_SLACK`` is eight times
``depth * gamma^{(64)}_N`` for ``N`` the longest chain of roundings, at least 1e-10).

Distances
---------
Reported distances are float32 norms of ``x - x0`` (:meth:`robcurves.norms.Norm.distance`).
A float32 computation of ``||d||`` may come out smaller than the real norm by the
relative amount :func:`distance_slack`; a radius ``r`` certified in real arithmetic
therefore certifies the float32 distance ``r (1 - distance_slack)``, and a threshold
``eps`` on float32 distances needs the real radius ``eps / (1 - distance_slack)``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from robcurves.norms import parse_norm

U32 = 2.0 ** -24
U64 = 2.0 ** -53


def gamma(n: int | np.ndarray, u: float = U32) -> np.ndarray:
    """``gamma_n = n u / (1 - n u)`` (Higham's constant for ``n`` roundings)."""
    nu = np.asarray(n, dtype=np.float64) * u
    if np.any(nu >= 1):
        raise ValueError("bab: too many roundings for the error bound (n u >= 1)")
    return nu / (1.0 - nu)


def layer_error(abs_forward_m: np.ndarray, bias: np.ndarray, fan_in: int) -> np.ndarray:
    """``e_k = gamma_{n+2} (|W| m + |b|)`` given ``|W| m`` (``m >= |input|``), rounded up."""
    e = gamma(fan_in + 2) * (np.asarray(abs_forward_m, dtype=np.float64) + np.abs(bias))
    return e * (1.0 + 1e-12)


def float64_slack(depth: int, longest_chain: int) -> float:
    """Relative slack for the float64 rounding of the bound computation (see module doc)."""
    return max(1e-10, 8.0 * depth * float(gamma(longest_chain, U64)))


def distance_slack(norm_name: str, n: int) -> float:
    """Relative amount by which a float32 ``norm_name`` distance of ``n`` coordinates can
    fall short of the real distance: ``fl(x_i - x0_i)`` is one rounding (linf), and the
    l1 / l2 sums add ``n`` more (any order), l2 a square and a square root
    (:meth:`robcurves.norms.Norm.float32_roundings`)."""
    return float(gamma(parse_norm(norm_name).float32_roundings(n)))


def check_float32_kernels() -> list[str]:
    """Make the float32 model's kernels satisfy the error model, or refuse.

    Returns what was changed (for the log). Raises ``RuntimeError`` where the
    assumption is known to fail and cannot be fixed from here.
    """
    notes: list[str] = []
    mode = os.environ.get("ONEDNN_DEFAULT_FPMATH_MODE", "").strip().upper()
    if mode and mode not in ("STRICT", "F32"):
        raise RuntimeError(f"bab: ONEDNN_DEFAULT_FPMATH_MODE={mode} lowers float32 precision; certificates "
                           "would not hold for this model (unset it or set it to STRICT)")
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU") and tf.config.experimental.is_tensor_float_32_execution_enabled():
            tf.config.experimental.enable_tensor_float_32_execution(False)
            notes.append("TensorFloat-32 switched off (TensorFlow on a GPU)")
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            notes.append("TF32 switched off for torch matmul and cuDNN")
    elif backend == "jax":
        import jax

        if any(d.platform == "gpu" for d in jax.devices()):
            jax.config.update("jax_default_matmul_precision", "highest")
            notes.append("jax_default_matmul_precision set to highest")
    return notes


def certified_distance(radius: float, norm_name: str, n: int) -> float:
    """The float32 distance a real radius ``radius`` certifies (rounded down)."""
    if radius <= 0 or not math.isfinite(radius):
        return float(max(radius, 0.0))
    return float(np.nextafter(radius * (1.0 - distance_slack(norm_name, n)), 0.0))


def radius_for_threshold(eps: float, norm_name: str, n: int) -> float:
    """The real radius to prove so that no float32 distance ``<= eps`` is adversarial."""
    return float(np.nextafter(eps / (1.0 - distance_slack(norm_name, n)), np.inf))
