"""What Keras 3 does not abstract: gradients, compiling, seeded random numbers, devices.

Keras 3 runs one model on TensorFlow, JAX or PyTorch, and ``keras.ops`` is the same
array API on all three. This module supplies the rest, for the attack engine and the
exact stage's bound computations (the project's counterpart of foolbox's eagerpy):

- **which backend** is active: :func:`name` (Keras's, once Keras is imported),
  :func:`requested` (from ``KERAS_BACKEND`` or a config's ``backend:`` without importing
  Keras) and :func:`select` (set it before Keras is imported);
- **gradients**: :func:`value_and_grad` of a scalar or of a per-row function (its
  gradient is that of the sum of its entries, which for rows that do not interact is
  the per-row gradient) with respect to any positional arguments, input or
  parameters alike; :func:`vjp` for a vector-Jacobian product;
- **compiling**: :func:`compile` (``tf.function`` / ``jax.jit`` / eager or
  ``torch.compile``), :func:`inference` (no gradient tape for forward-only passes);
- **seeded stateless random numbers** that are *bit-identical on every backend*
  (:func:`random_bits`, :func:`random_uniform`, :func:`random_normal`): a counter-based
  integer hash in ``keras.ops`` int32 arithmetic, so that the same seed gives the same
  attack starts under TensorFlow, JAX and PyTorch, inside compiled functions too;
- **conversion**: :func:`to_tensor`, :func:`to_numpy`; :func:`logits_function` turns a
  Keras model, a PyTorch ``nn.Module`` (torch backend) or a JAX function (jax backend)
  into ``x -> float32 logits``;
- **devices**: :func:`configure_devices` (GPU memory growth, op determinism).

Importing this module imports neither Keras nor any backend; each function imports
what it needs when called.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, Sequence

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
_ALIASES = {"tensorflow": "tensorflow", "tf": "tensorflow", "jax": "jax", "torch": "torch", "pytorch": "torch"}

__all__ = [
    "BACKENDS", "name", "requested", "select", "value_and_grad", "vjp", "compile", "inference",
    "to_tensor", "to_numpy", "random_bits", "random_uniform", "random_normal", "seed_pair", "row_seeds",
    "fold_seeds", "is_out_of_memory",
    "logits_function", "configure_devices",
]


# ----------------------------------------------------------------------------- which backend
def _canonical(backend: str, what: str = "backend") -> str:
    key = str(backend).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown {what} {backend!r}: expected one of {', '.join(BACKENDS)}")
    return _ALIASES[key]


def requested(config_backend: str | None = None) -> str:
    """The backend a run asks for, without importing Keras.

    ``config_backend`` (a config's ``backend:``; ``None`` or ``"auto"`` for no choice)
    wins over ``KERAS_BACKEND``; with neither, TensorFlow (the project's default, and
    the fastest of the three on a CPU for the attack's gradients).
    """
    if config_backend not in (None, "", "auto"):
        return _canonical(config_backend, "config backend")
    env = os.environ.get("KERAS_BACKEND")
    if env:
        return _canonical(env, "KERAS_BACKEND")
    return "tensorflow"


def select(backend: str | None = None) -> str:
    """Make ``backend`` (or :func:`requested`'s answer) the Keras backend; return it.

    Must run before Keras is first imported (Keras reads ``KERAS_BACKEND`` once).
    Raises ``ValueError`` with one clear line when Keras already runs on another one.
    """
    want = requested(backend)
    if "keras" in sys.modules:
        have = name()
        if have != want:
            raise ValueError(f"backend {want!r} was asked for, but Keras was already imported with backend "
                             f"{have!r}; set KERAS_BACKEND={want} before anything imports Keras")
        return have
    os.environ["KERAS_BACKEND"] = want
    return want


def name() -> str:
    """The active Keras backend: ``"tensorflow"``, ``"jax"`` or ``"torch"`` (imports Keras)."""
    import keras

    b = keras.config.backend()
    if b not in BACKENDS:
        raise ValueError(f"Keras backend {b!r} is not supported; use one of {', '.join(BACKENDS)}")
    return b


# ----------------------------------------------------------------------------- conversion
def to_tensor(x: Any, dtype: str | None = "float32"):
    """A tensor of the active backend (on its default device); ``dtype=None`` keeps it."""
    from keras import ops

    return ops.convert_to_tensor(x, dtype=dtype)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a backend tensor (detached and on the host for torch)."""
    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__
    if mod.startswith("torch"):
        return x.detach().cpu().numpy()
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


# ----------------------------------------------------------------------------- gradients
def _argnums(argnums: "int | Sequence[int]") -> tuple[tuple[int, ...], bool]:
    if isinstance(argnums, (int, np.integer)):
        return (int(argnums),), True
    nums = tuple(int(a) for a in argnums)
    if not nums:
        raise ValueError("argnums must name at least one argument")
    return nums, False


def _split(out, has_aux):
    if has_aux:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError("with has_aux=True the function must return (value, aux)")
        return out[0], out[1]
    return out, None


def value_and_grad(fn: Callable, argnums: "int | Sequence[int]" = 0, has_aux: bool = False) -> Callable:
    """``fn``'s value and its gradient with respect to the arguments ``argnums``.

    ``fn(*args)`` returns a tensor (a scalar, or one value per row), or ``(value, aux)``
    with ``has_aux=True``. The returned function gives ``(value, grads)`` (or
    ``((value, aux), grads)``): ``value`` unreduced, ``grads`` the gradient of
    ``sum(value)``, shaped like the argument (nested structures of tensors are
    allowed), a tuple when ``argnums`` is a sequence. For a function whose rows do not
    interact (a batch of margins) that is each row's own gradient. Gradients reach any
    argument: the input, or parameters such as bound-relaxation slopes; an argument
    that ``fn`` does not use gets zeros. Works inside :func:`compile`'d functions.
    """
    nums, single = _argnums(argnums)
    backend = name()
    import keras
    from keras import ops

    tree = keras.tree

    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(*args):
            val, aux = _split(fn(*args), has_aux)
            return jnp.sum(val), (val, aux)

        vg = jax.value_and_grad(total, argnums=nums[0] if single else nums, has_aux=True)

        def run_jax(*args):
            (_, (val, aux)), grads = vg(*args)
            return ((val, aux) if has_aux else val), grads

        return run_jax

    if backend == "tensorflow":
        import tensorflow as tf

        def run_tf(*args):
            args = list(args)
            for i in nums:
                args[i] = tree.map_structure(
                    lambda a: a if isinstance(a, (tf.Tensor, tf.Variable)) else tf.convert_to_tensor(a), args[i])
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                for i in nums:
                    for leaf in tree.flatten(args[i]):
                        tape.watch(leaf)
                val, aux = _split(fn(*args), has_aux)
                s = tf.reduce_sum(val)
            grads = tape.gradient(s, [args[i] for i in nums], unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = grads[0] if single else tuple(grads)
            return ((val, aux) if has_aux else val), grads

        return run_tf

    import torch

    def run_torch(*args):
        args = list(args)
        for i in nums:
            args[i] = tree.map_structure(lambda a: ops.convert_to_tensor(a).detach().requires_grad_(True), args[i])
        with torch.enable_grad():
            val, aux = _split(fn(*args), has_aux)
            s = val.sum()
        leaves = [leaf for i in nums for leaf in tree.flatten(args[i])]
        if s.requires_grad:
            g = torch.autograd.grad(s, leaves, allow_unused=True)
        else:
            g = [None] * len(leaves)
        g = [torch.zeros_like(leaf) if gi is None else gi for gi, leaf in zip(g, leaves)]
        out, k = [], 0
        for i in nums:
            n_leaves = len(tree.flatten(args[i]))
            out.append(tree.pack_sequence_as(args[i], g[k:k + n_leaves]))
            k += n_leaves
        val = val.detach()
        if has_aux:
            aux = tree.map_structure(lambda a: a.detach() if isinstance(a, torch.Tensor) else a, aux)
        grads = out[0] if single else tuple(out)
        return ((val, aux) if has_aux else val), grads

    return run_torch


def vjp(fn: Callable, *primals) -> tuple[Any, Callable]:
    """``(fn(*primals), vjp_fn)``; ``vjp_fn(cotangent)`` returns the tuple of
    ``cotangent^T d fn / d primal_i``, one entry per primal (zeros where unused).

    ``vjp_fn`` may be called more than once with different cotangents.
    """
    backend = name()
    if backend == "jax":
        import jax

        out, f = jax.vjp(fn, *primals)
        return out, lambda ct: tuple(f(ct))
    if backend == "tensorflow":
        import tensorflow as tf

        prim = [p if isinstance(p, (tf.Tensor, tf.Variable)) else tf.convert_to_tensor(p) for p in primals]
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            for p in prim:
                tape.watch(p)
            out = fn(*prim)

        def vjp_tf(ct):
            return tuple(tape.gradient(out, prim, output_gradients=ct,
                                       unconnected_gradients=tf.UnconnectedGradients.ZERO))

        return out, vjp_tf
    import torch
    from keras import ops

    prim = [ops.convert_to_tensor(p).detach().requires_grad_(True) for p in primals]
    with torch.enable_grad():
        out = fn(*prim)

    def vjp_torch(ct):
        g = torch.autograd.grad(out, prim, grad_outputs=ops.convert_to_tensor(ct, dtype=out.dtype),
                                retain_graph=True, allow_unused=True)
        return tuple(torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, prim))

    return out.detach(), vjp_torch


# ----------------------------------------------------------------------------- compiling
def compile(fn: Callable, *, static_argnums: "int | Sequence[int]" = (), xla: bool = False,
            torch_compile: bool = False) -> Callable:
    """``fn`` compiled for the active backend.

    TensorFlow: ``tf.function`` (graph mode; ``xla=True`` adds ``jit_compile``, which on
    a CPU measured slower for the attacks' gradients); JAX: ``jax.jit`` with
    ``static_argnums`` (Python values that select the program, not data); PyTorch:
    eager (fast to start and the fastest on a CPU here), or ``torch.compile`` with
    ``torch_compile=True``. Loops inside should be ``keras.ops.fori_loop`` /
    ``while_loop``, which compile on every backend.
    """
    backend = name()
    if backend == "jax":
        import jax

        return jax.jit(fn, static_argnums=static_argnums)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True, jit_compile=bool(xla))
    if torch_compile:
        import torch

        return torch.compile(fn)
    return fn


@contextlib.contextmanager
def inference() -> Iterator[None]:
    """Forward passes only: PyTorch records no autograd graph inside (a no-op elsewhere)."""
    if "torch" in sys.modules and name() == "torch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


# ----------------------------------------------------------------------------- random numbers
# A counter-based generator: bits(i) = fmix32(fmix32(i * G + k0) ^ k1), the MurmurHash3
# finaliser, in int32 arithmetic (multiplication wraps modulo 2**32 on every backend,
# and logical shifts are arithmetic shifts masked). Stateless: the same (seed, shape)
# gives the same numbers on TensorFlow, JAX and PyTorch, eager or compiled.
def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


_GOLDEN = _i32(0x9E3779B9)
_M1 = _i32(0x85EBCA6B)
_M2 = _i32(0xC2B2AE35)


def _srl(ops, h, s: int):
    return ops.bitwise_and(ops.right_shift(h, s), (1 << (32 - s)) - 1)


def _fmix32(ops, h):
    h = ops.bitwise_xor(h, _srl(ops, h, 16))
    h = ops.multiply(h, ops.convert_to_tensor(_M1, "int32"))
    h = ops.bitwise_xor(h, _srl(ops, h, 13))
    h = ops.multiply(h, ops.convert_to_tensor(_M2, "int32"))
    return ops.bitwise_xor(h, _srl(ops, h, 16))


def seed_pair(seed: int, *keys: int) -> np.ndarray:
    """An int32 ``(2,)`` seed for the random functions, from an int seed and optional
    integer keys (a point index, a restart number), via ``numpy.random.SeedSequence``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *(int(k) for k in keys)]).generate_state(2)
    return state.astype(np.uint32).view(np.int32)


def row_seeds(seed: int, ids: "Sequence[int] | np.ndarray", *keys: int) -> np.ndarray:
    """``(len(ids), 2)`` int32 per-row seeds: row ``r`` gets ``seed_pair(seed, ids[r], *keys)``."""
    return np.stack([seed_pair(seed, int(i), *keys) for i in np.asarray(ids).reshape(-1)]).reshape(-1, 2)


def fold_seeds(seeds, key: int):
    """Seeds (a pair or per-row pairs) for an independent stream ``key`` (in-graph)."""
    from keras import ops

    s = ops.convert_to_tensor(seeds, "int32")
    return ops.bitwise_xor(s, ops.convert_to_tensor(np.array([_i32(0x7F4A7C15 * (int(key) + 1)), _i32(int(key))],
                                                               np.int32)))


def _size(shape) -> Any:
    n = 1
    for s in shape:
        n = n * s
    return n


def random_bits(shape: Sequence, seed) -> Any:
    """Uniformly distributed int32 bit patterns of ``shape`` for ``seed``.

    ``seed``: an int32 pair (tensor or array) for one stream, or ``(shape[0], 2)`` int32
    for one stream per row (row ``r`` then draws the same numbers whatever the other
    rows are: results do not depend on how points are batched). Dimensions may be
    dynamic (traced) sizes.
    """
    from keras import ops

    seed = ops.convert_to_tensor(seed, "int32")
    shape = tuple(shape)
    g = ops.convert_to_tensor(_GOLDEN, "int32")
    if len(seed.shape) == 2:
        k0, k1 = seed[:, 0:1], seed[:, 1:2]
        counter = ops.reshape(ops.arange(0, _size(shape[1:]), dtype="int32"), (1, -1))
        h = _fmix32(ops, ops.add(ops.multiply(counter, g), k0))
        h = _fmix32(ops, ops.bitwise_xor(h, k1))
        return ops.reshape(h, shape)
    k0, k1 = seed[0], seed[1]
    counter = ops.arange(0, _size(shape), dtype="int32")
    h = _fmix32(ops, ops.add(ops.multiply(counter, g), k0))
    h = _fmix32(ops, ops.bitwise_xor(h, k1))
    return ops.reshape(h, shape)


def random_uniform(shape: Sequence, seed, minval: float = 0.0, maxval: float = 1.0) -> Any:
    """float32 uniform on ``[minval, maxval)``: 24 random bits per number, bit-identical
    across backends (``minval``/``maxval`` may be tensors that broadcast)."""
    from keras import ops

    u = ops.multiply(ops.cast(_srl(ops, random_bits(shape, seed), 8), "float32"), np.float32(2.0 ** -24))
    if isinstance(minval, (int, float)) and isinstance(maxval, (int, float)) and (minval, maxval) == (0.0, 1.0):
        return u
    return ops.add(minval, ops.multiply(ops.subtract(maxval, minval), u))


def random_normal(shape: Sequence, seed) -> Any:
    """float32 standard normal (Box-Muller on two bit streams). The uniforms behind it
    are bit-identical across backends; ``log``/``cos`` may differ in the last ulp."""
    from keras import ops

    seed = ops.convert_to_tensor(seed, "int32")
    seed2 = ops.add(ops.bitwise_xor(seed, ops.convert_to_tensor(np.array([_i32(0x68E31DA4), 0], np.int32))),
                    ops.convert_to_tensor(np.array([0, 1], np.int32)))
    u1 = ops.multiply(ops.cast(ops.add(_srl(ops, random_bits(shape, seed), 8), 1), "float32"), np.float32(2.0 ** -24))
    u2 = random_uniform(shape, seed2)
    r = ops.sqrt(ops.multiply(-2.0, ops.log(u1)))
    return ops.multiply(r, ops.cos(ops.multiply(np.float32(2.0 * np.pi), u2)))


# ----------------------------------------------------------------------------- models
def _is_keras(model) -> bool:
    try:
        import keras
    except ImportError:  # pragma: no cover - keras is a dependency
        return False
    return isinstance(model, keras.Layer)


def logits_function(model) -> Callable:
    """``x -> float32 logits`` for ``model`` on the active backend, in inference mode.

    - a Keras model or layer: ``model(x, training=False)``, any backend;
    - a PyTorch ``nn.Module`` (torch backend only): put in ``eval()`` mode; its
      parameters must be on Keras's device (``cuda`` when a GPU is visible, else ``cpu``);
    - a JAX function (jax backend) or any other callable that takes and returns
      tensors of the active backend: used as it is.
    """
    from keras import ops

    if _is_keras(model):
        def keras_logits(x):
            return ops.cast(model(x, training=False), "float32")

        return keras_logits
    backend = name()
    if "torch" in sys.modules:
        import torch

        if isinstance(model, torch.nn.Module):
            if backend != "torch":
                raise ValueError(f"a PyTorch nn.Module needs KERAS_BACKEND=torch; the active backend is {backend!r}")
            from keras.src.backend.torch.core import get_device

            want = torch.device(get_device())
            devices = {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
            if any(d.type != want.type for d in devices):
                raise ValueError(f"the PyTorch module's parameters are on {sorted(map(str, devices))}; "
                                 f"move it to {want} (Keras's device) first, e.g. model.to({str(want)!r})")
            model.eval()

            def torch_logits(x):
                return model(x).float()

            return torch_logits
    if not callable(model):
        raise ValueError(f"the model must be a Keras model, a callable or (torch backend) an nn.Module, "
                         f"got {type(model).__name__}")

    def plain_logits(x):
        return ops.cast(model(x), "float32")

    return plain_logits


def is_out_of_memory(exc: BaseException) -> bool:
    """Is ``exc`` a device running out of memory (TensorFlow, JAX/XLA or PyTorch)?"""
    kind = type(exc).__name__
    if kind in ("ResourceExhaustedError", "OutOfMemoryError"):
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "CUDA out of memory" in text


# ----------------------------------------------------------------------------- devices
def configure_devices(memory_growth: bool = True, deterministic: bool = False) -> dict:
    """Set the GPU options of the active backend; returns what was set.

    ``memory_growth``: TensorFlow allocates GPU memory as needed instead of all of it
    (JAX: no preallocation; must run before JAX starts). ``deterministic``: the same
    inputs give bit-identical results on the GPU (TensorFlow op determinism, XLA's
    deterministic GPU ops, ``torch.use_deterministic_algorithms``), at some speed.
    Harmless on a CPU-only machine.
    """
    backend = requested() if "keras" not in sys.modules else name()
    done: dict = {"backend": backend, "memory_growth": bool(memory_growth), "deterministic": bool(deterministic)}
    if backend == "jax":
        if memory_growth:
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if deterministic:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_gpu_deterministic_ops" not in flags:
                os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()
        return done
    if backend == "torch":
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            import torch

            torch.use_deterministic_algorithms(True)
        return done
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    done["gpus"] = len(gpus)
    if memory_growth:
        for g in gpus:
            try:
                tf.config.experimental.set_memory_growth(g, True)
            except RuntimeError:  # already initialised: keep what it has
                pass
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return done
