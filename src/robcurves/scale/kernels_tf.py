"""The TensorFlow kernels (a GPU, or the CPU for tests): tiles on the device, merging on the host."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from robcurves.scale.merge import Best
from robcurves.scale.neighbours import KINDS
from robcurves.scale.scan import gemm_error_factor, ranked_scan

TF_JIT_ON_CPU = False  # tests set this to run the GPU's XLA-compiled tile on the CPU


def gpu_visible() -> bool:
    """True if TensorFlow is installed and sees a GPU.

    Importing TensorFlow takes seconds, so unless it is already imported, a machine
    without NVIDIA device nodes (or with ``CUDA_VISIBLE_DEVICES`` empty or ``-1``) is
    answered without it.
    """
    import glob
    import sys

    if "tensorflow" not in sys.modules:
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None and cvd.strip() in ("", "-1"):
            return False
        if not glob.glob("/dev/nvidia[0-9]*"):
            return False
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return False
    return bool(tf.config.list_physical_devices("GPU"))


def tf_scan(
    x2: np.ndarray, y: np.ndarray, norms: Sequence[str], block_size: int, device: str,
    q: np.ndarray | None = None, scale: int | None = None, progress=None,
) -> dict[str, dict[str, Best]]:
    """Tiles computed by TensorFlow on ``device``; masking and merging on the host.

    On the integer grid (``q``, ``scale``) linf and l1 run in float32 on integer values
    (exact: every partial sum stays below 2^24) and l2 as an exact float64 GEMM.
    Otherwise everything is float64 and l2 candidates are re-checked directly. On a GPU
    the linf/l1 tile is compiled with XLA, so the (rows x cols x dims) difference is
    never materialised in memory.
    """
    import tensorflow as tf

    try:
        tf.config.experimental.enable_tensor_float_32_execution(False)  # TF32 would not be exact
    except Exception:  # pragma: no cover - older TF
        pass
    n, d = x2.shape
    grid = q is not None
    if grid and d * scale >= 2**24:
        raise ValueError("grid path: too many dimensions for exact float32 l1 sums")
    dev = "/GPU:0" if device == "gpu" else "/CPU:0"
    elem_dtype = tf.float32 if grid else tf.float64
    with tf.device(dev):
        xt = tf.constant(q if grid else x2)
        sq = tf.reduce_sum(tf.square(tf.cast(xt, tf.float64)), axis=1)
    sq_np = sq.numpy()
    gamma = gemm_error_factor(d)
    nmax = float(np.sqrt(sq_np.max()))
    elem_rows = max(1, min(block_size, 256))
    # Dimensions in chunks of ``dc``, padded with zeros (|0 - 0| adds nothing to a max or a
    # sum): the (rows x cols x dc) difference stays below ~256 MiB even if not fused.
    dc = max(1, min(d, (64 * 2**20) // max(1, block_size * elem_rows)))
    n_chunks = -(-d // dc)
    with tf.device(dev):
        padded = tf.pad(tf.cast(xt, elem_dtype), [[0, 0], [0, n_chunks * dc - d]])
        chunked = tf.transpose(tf.reshape(padded, (n, n_chunks, dc)), (1, 0, 2))  # (chunks, n, dc)
        del padded
    jit = device == "gpu" or TF_JIT_ON_CPU

    mat64 = tf.TensorSpec([None, d], tf.float64)
    vec = tf.TensorSpec([None], tf.float64)
    chunks_e = tf.TensorSpec([n_chunks, None, dc], elem_dtype)

    @tf.function(input_signature=[mat64, mat64, vec, vec])
    def tile_l2(a, b, sa, sb):
        g = tf.matmul(a, b, transpose_b=True)
        return sa[:, None] + sb[None, :] - 2.0 * g

    def elementwise(p_inf: bool):
        @tf.function(input_signature=[chunks_e, chunks_e], jit_compile=jit)
        def tile_elem(a, b):
            acc = tf.zeros((tf.shape(a)[1], tf.shape(b)[1]), elem_dtype)
            for k in tf.range(n_chunks):  # a while loop, not unrolled
                diff = tf.abs(a[k][:, None, :] - b[k][None, :, :])
                acc = tf.maximum(acc, tf.reduce_max(diff, axis=2)) if p_inf else acc + tf.reduce_sum(diff, axis=2)
            return acc

        return tile_elem

    tile_fns = {"linf": elementwise(True), "l1": elementwise(False)}
    out = {}
    for nm in norms:
        def tile(r0, r1, c0, c1, nm=nm):
            with tf.device(dev):
                if nm == "l2":
                    a, b = tf.cast(xt[r0:r1], tf.float64), tf.cast(xt[c0:c1], tf.float64)
                    return tile_l2(a, b, sq[r0:r1], sq[c0:c1]).numpy()
                t = tile_fns[nm](chunked[:, r0:r1], chunked[:, c0:c1]).numpy().astype(np.float64)
                return t / scale if grid else t

        if nm == "l2" and grid:
            out[nm] = ranked_scan(x2, y, nm, tile, None, min(block_size, 4096), block_size, progress)
            for b in out[nm].values():
                b.value = np.sqrt(b.value) / scale
        elif nm == "l2":
            slack = lambda r0, r1: gamma * (np.sqrt(sq_np[r0:r1]) + nmax) ** 2  # noqa: E731
            out[nm] = ranked_scan(x2, y, nm, tile, slack, min(block_size, 4096), block_size, progress)
        else:
            out[nm] = ranked_scan(x2, y, nm, tile, None, elem_rows, block_size, progress)
    return {kind: {nm: out[nm][kind] for nm in norms} for kind in KINDS}
