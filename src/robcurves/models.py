"""Classifiers: one on-disk format, the two architectures of Croce et al., and conversion.

Format
------
A model is two files in one folder: ``model.keras`` (a Keras 3 file) and a JSON
sidecar with the same stem (``model.json``). The sidecar holds at least

  - ``input_shape``: ``[H, W, C]`` of one input (NHWC, tabular data: ``[1, 1, F]``);
  - ``n_classes``: number of logits;
  - ``bounds``: ``[0.0, 1.0]``, the box the inputs live in;
  - ``dataset``: name of the data set the model belongs to;
  - ``made_by``: how the model was made, e.g. ``{"kind": "convert", "source": ...,
    "sha256": ..., "layout": ...}`` or ``{"kind": "train", "method": "st", ...}``;
  - ``keras_sha256``: SHA-256 of the ``.keras`` file it was written with (checked on load,
    so a model and a sidecar from different runs are never paired silently).

Network conventions
-------------------
Every stage reads a saved model through the one network description
(:func:`robcurves.network.from_keras`), so a ``model.keras`` may use any layer it supports
(Conv2D, Dense, ReLU, Flatten, Reshape, Add, pooling, BatchNorm and normalisation, ...);
anything else is rejected by name when the model is saved or loaded. The saved model gives
logits (a softmax-output model is saved as its logits: :func:`robcurves.network.to_keras`).
Tensors are NHWC (``channels_last``), so ``Flatten`` uses the same row-major NHWC order as
Croce et al.'s TensorFlow code. Models read from Keras or ONNX files are saved as the plain
Keras model of their description (BatchNorm and normalisation folded, no softmax).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from robcurves.atomic import atomic_path, write_json

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402  (after the log-level default)

LAYOUTS = ("cnn_lenet_small", "fc1")
REQUIRED_SIDECAR_KEYS = ("input_shape", "n_classes", "bounds", "dataset", "made_by")
DEFAULT_BOUNDS = [0.0, 1.0]

# Keys of Croce et al.'s .mat files, in layer order (weights, biases).
_MAT_KEYS = {
    "cnn_lenet_small": [
        ("weights_conv1", "biases_conv1"),
        ("weights_conv2", "biases_conv2"),
        ("weights_fc1", "biases_fc1"),
        ("weights_fc2", "biases_fc2"),
    ],
    "fc1": [("U", "bU"), ("W", "bW")],
}
# Input shapes the authors' code assumes: MNIST/FMNIST 28x28x1, CIFAR-10/GTS 32x32x3.
_SHAPE_BY_CHANNELS = {1: (28, 28, 1), 3: (32, 32, 3)}
_SHAPE_BY_FEATURES = {28 * 28 * 1: (28, 28, 1), 32 * 32 * 3: (32, 32, 3)}


# --------------------------------------------------------------------------- builders

def _shape3(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {tuple(input_shape)}")
    return shape  # type: ignore[return-value]


def _init(seed: int, i: int) -> keras.initializers.Initializer:
    # He-normal (truncated, std sqrt(2 / fan_in)) as in Croce et al.; one seed per layer.
    return keras.initializers.HeNormal(seed=int(seed) * 1000 + i)


def _conv_out(size: int, stride: int) -> int:
    """Output size of a SAME-padded convolution."""
    return math.ceil(size / stride)


def _lenet_small(
    input_shape: Sequence[int], n_classes: int, seed: int = 0,
    filters: tuple[int, int] = (16, 32), kernel: int = 4, hidden: int = 100,
) -> keras.Model:
    h, w, c = _shape3(input_shape)
    inp = keras.Input(shape=(h, w, c), name="input")
    x = inp
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(
            f, kernel, strides=2, padding="same", activation=None, use_bias=True,
            kernel_initializer=_init(seed, i), bias_initializer="zeros", name=f"conv{i + 1}",
        )(x)
        x = keras.layers.ReLU(name=f"relu_conv{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(hidden, activation=None, kernel_initializer=_init(seed, 2), name="fc1")(x)
    x = keras.layers.ReLU(name="relu_fc1")(x)
    out = keras.layers.Dense(int(n_classes), activation=None, kernel_initializer=_init(seed, 3), name="logits")(x)
    return keras.Model(inp, out, name="cnn_lenet_small")


def lenet_small(input_shape: Sequence[int], n_classes: int, seed: int = 0) -> keras.Model:
    """Croce et al.'s ``cnn_lenet_small`` for inputs of shape ``(H, W, C)``.

    conv 16 4x4 stride 2 SAME -> ReLU -> conv 32 4x4 stride 2 SAME -> ReLU -> flatten
    (NHWC) -> dense 100 -> ReLU -> dense ``n_classes`` (logits). The flattened size is
    ``ceil(ceil(H/2)/2) * ceil(ceil(W/2)/2) * 32``: 7x7x32 for MNIST, 8x8x32 for
    CIFAR-10, 2x2x32 for 8x8 digits. Weights are He-normal from ``seed``, biases zero.
    """
    return _lenet_small(input_shape, n_classes, seed=seed)


def fc1(input_shape: Sequence[int], n_classes: int, hidden: int = 1024, seed: int = 0) -> keras.Model:
    """One hidden ReLU layer: flatten (NHWC) -> dense ``hidden`` -> ReLU -> dense ``n_classes``."""
    h, w, c = _shape3(input_shape)
    inp = keras.Input(shape=(h, w, c), name="input")
    x = keras.layers.Flatten(name="flatten")(inp)
    x = keras.layers.Dense(int(hidden), activation=None, kernel_initializer=_init(seed, 0), name="fc1")(x)
    x = keras.layers.ReLU(name="relu_fc1")(x)
    out = keras.layers.Dense(int(n_classes), activation=None, kernel_initializer=_init(seed, 1), name="logits")(x)
    return keras.Model(inp, out, name="fc1")


BUILDERS = {"cnn_lenet_small": lenet_small, "lenet_small": lenet_small, "fc1": fc1}


def build_model(arch: str, input_shape: Sequence[int], n_classes: int, seed: int = 0, **kwargs: Any) -> keras.Model:
    """Build an architecture by name (``cnn_lenet_small``/``lenet_small`` or ``fc1``)."""
    try:
        builder = BUILDERS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}: expected one of {sorted(BUILDERS)}") from None
    return builder(input_shape, n_classes, seed=seed, **kwargs)


# ------------------------------------------------------------------------ conventions

def model_input_shape(model: keras.Model) -> tuple[int, int, int]:
    """The ``(H, W, C)`` shape of one input of ``model``."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or any(s is None for s in shape):
        raise ValueError(f"model input must be NHWC with fixed (H, W, C), got {tuple(model.inputs[0].shape)}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def model_n_classes(model: keras.Model) -> int:
    """Number of logits of ``model``."""
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2 or shape[1] is None:
        raise ValueError(f"model output must be (batch, n_classes) logits, got {shape}")
    return int(shape[1])


def describe(model: keras.Model, check: bool = True):
    """The network description of ``model`` (:func:`robcurves.network.from_keras`): raises
    ``ValueError`` naming the first layer it cannot represent. Replaces the old per-stage
    convention checks: what the description accepts, every stage accepts."""
    from robcurves.network import from_keras

    return from_keras(model, check=check)


def _require_logits(model: keras.Model, where: str):
    net = describe(model)
    if net.meta.get("softmax_removed"):
        raise ValueError(f"{where}: the model ends in a softmax; save its logits "
                         "(robcurves.network.to_keras(robcurves.network.from_keras(model)))")
    return net


# ----------------------------------------------------------------------- save / load

def sidecar_path(path: str | os.PathLike) -> Path:
    """``.../model.keras`` -> ``.../model.json``."""
    return Path(path).with_suffix(".json")


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_sidecar(model: keras.Model, sidecar: Mapping[str, Any], where: str) -> None:
    missing = [k for k in REQUIRED_SIDECAR_KEYS if k not in sidecar]
    if missing:
        raise ValueError(f"{where}: sidecar lacks required keys {missing}")
    shape = model_input_shape(model)
    if [int(s) for s in sidecar["input_shape"]] != list(shape):
        raise ValueError(
            f"{where}: sidecar input_shape {list(sidecar['input_shape'])} disagrees with the "
            f"model's input shape {list(shape)}")
    if int(sidecar["n_classes"]) != model_n_classes(model):
        raise ValueError(
            f"{where}: sidecar n_classes {sidecar['n_classes']} disagrees with the model's "
            f"{model_n_classes(model)} logits")
    bounds = list(sidecar["bounds"])
    if len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
        raise ValueError(f"{where}: sidecar bounds must be [low, high] with low < high, got {bounds}")
    if not isinstance(sidecar["made_by"], Mapping) or "kind" not in sidecar["made_by"]:
        raise ValueError(f"{where}: sidecar made_by must be a dict with a 'kind', got {sidecar['made_by']!r}")


def save_model(model: keras.Model, path: str | os.PathLike, sidecar: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``model`` to ``path`` (``.keras``) and its sidecar (``.json``), both atomically.

    ``input_shape``, ``n_classes`` and ``bounds`` are filled in from the model (bounds:
    ``[0.0, 1.0]``) when the sidecar lacks them, and must agree with it when present.
    ``dataset`` and ``made_by`` must be given. Returns the sidecar as written.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a model file must end in .keras")
    _require_logits(model, str(path))
    full = dict(sidecar)
    full.setdefault("input_shape", list(model_input_shape(model)))
    full.setdefault("n_classes", model_n_classes(model))
    full.setdefault("bounds", list(DEFAULT_BOUNDS))
    full["input_shape"] = [int(s) for s in full["input_shape"]]
    full["n_classes"] = int(full["n_classes"])
    full["bounds"] = [float(b) for b in full["bounds"]]
    full.setdefault("architecture", model.name)
    full["keras_version"] = keras.__version__
    _check_sidecar(model, full, str(path))
    with atomic_path(path) as tmp:
        model.save(tmp)
        full["keras_sha256"] = _file_sha256(tmp)
    write_json(sidecar_path(path), full)
    return full


def load_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """Read the sidecar of the model at ``path`` (``model.keras`` or ``model.json``)."""
    side = sidecar_path(path)
    if not side.exists():
        raise FileNotFoundError(f"{path}: model sidecar {side} is missing (write models with robcurves.models.save_model)")
    with open(side, encoding="utf-8") as fh:
        return json.load(fh)


def load_model(path: str | os.PathLike) -> tuple[keras.Model, dict[str, Any]]:
    """Load ``path`` (``.keras``) and its sidecar; check that they belong together."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model file not found")
    sidecar = load_sidecar(path)
    expected = sidecar.get("keras_sha256")
    if expected is not None and expected != _file_sha256(path):
        raise ValueError(f"{path}: file checksum does not match its sidecar {sidecar_path(path)} (stale or corrupt pair)")
    model = keras.models.load_model(path, compile=False)
    _check_sidecar(model, sidecar, str(path))
    describe(model, check=False)  # every layer is one the stages understand
    return model, sidecar


def check_model_fits(model: keras.Model, sidecar: Mapping[str, Any] | None, x: np.ndarray) -> None:
    """Raise ``ValueError`` unless the batch ``x`` (NHWC) has the model's input shape."""
    x_shape = tuple(int(s) for s in np.shape(x))
    shape = model_input_shape(model)
    if len(x_shape) != 4 or x_shape[1:] != shape:
        raise ValueError(
            f"data of shape (H, W, C) = {x_shape[1:]} (batch shape {x_shape}) does not fit the "
            f"model's input shape (H, W, C) = {shape}")
    if sidecar is not None and tuple(int(s) for s in sidecar["input_shape"]) != shape:
        raise ValueError(
            f"sidecar input_shape {tuple(sidecar['input_shape'])} disagrees with the model's input shape {shape}")


def predict_logits(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits of ``model`` on the batch ``x`` (NHWC), float32 of shape ``(N, n_classes)``.

    Raises ``ValueError`` if any logit is NaN or infinite.
    """
    x = np.asarray(x, dtype=np.float32)
    check_model_fits(model, None, x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    parts = [np.asarray(model(x[i:i + batch_size], training=False), dtype=np.float32)
             for i in range(0, len(x), batch_size)]
    logits = np.concatenate(parts) if parts else np.zeros((0, model_n_classes(model)), dtype=np.float32)
    bad = ~np.all(np.isfinite(logits), axis=1)
    if bad.any():
        raise ValueError(
            f"model produced non-finite logits for {int(bad.sum())} of {len(x)} inputs "
            f"(first at index {int(np.argmax(bad))})")
    return logits


# ------------------------------------------------------------ Croce et al.'s .mat files

def _load_mat(mat: "str | os.PathLike | Mapping[str, Any]") -> dict[str, Any]:
    if isinstance(mat, Mapping):
        return dict(mat)
    import scipy.io

    return scipy.io.loadmat(str(mat))


def detect_layout(mat: "str | os.PathLike | Mapping[str, Any]") -> str:
    """``"cnn_lenet_small"`` or ``"fc1"``, decided by the keys of a ``.mat`` file (or its dict)."""
    data = _load_mat(mat)
    keys = {k for k in data if not k.startswith("__")}
    hits = [lay for lay in LAYOUTS if any(k in keys for pair in _MAT_KEYS[lay] for k in pair)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ValueError(
            f"cannot tell the layout of the .mat file: keys {sorted(keys)} match neither "
            f"cnn_lenet_small (weights_conv1, ...) nor fc1 (U, bU, W, bW)")
    raise ValueError(f"ambiguous .mat file: keys {sorted(keys)} match both cnn_lenet_small and fc1")


def _get(data: Mapping[str, Any], key: str, layout: str) -> np.ndarray:
    if key not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{layout} .mat file lacks key {key!r} (found keys {found})")
    arr = np.asarray(data[key])
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{layout} .mat key {key!r}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{layout} .mat key {key!r}: contains NaN or infinite values")
    return arr


def _get_matrix(data: Mapping[str, Any], key: str, layout: str, expected: str) -> np.ndarray:
    """A 2-D weight matrix; ``expected`` describes its shape for the error message."""
    arr = _get(data, key, layout)
    if arr.ndim != 2:
        raise ValueError(f"{layout} .mat key {key!r}: shape {arr.shape} found, {expected} expected")
    return arr


def _expect(arr: np.ndarray, key: str, shape: tuple[int, ...], layout: str, why: str = "") -> None:
    if tuple(arr.shape) != tuple(shape):
        hint = f" ({why})" if why else ""
        raise ValueError(f"{layout} .mat key {key!r}: shape {tuple(arr.shape)} found, {tuple(shape)} expected{hint}")


def _bias(data: Mapping[str, Any], key: str, n: int, layout: str) -> np.ndarray:
    """A bias stored as (1, n) (how TF/scipy save it) or (n,)."""
    b = _get(data, key, layout)
    if b.shape not in ((1, n), (n,), (n, 1)):
        raise ValueError(f"{layout} .mat key {key!r}: shape {b.shape} found, (1, {n}) expected")
    return b.reshape(n)


def _infer_input_shape(layout: str, c_or_features: int) -> tuple[int, int, int]:
    table = _SHAPE_BY_CHANNELS if layout == "cnn_lenet_small" else _SHAPE_BY_FEATURES
    what = "input channels" if layout == "cnn_lenet_small" else "input features"
    try:
        return table[c_or_features]
    except KeyError:
        raise ValueError(
            f"{layout} .mat file with {c_or_features} {what}: cannot infer the input shape "
            f"(known: {sorted(table)}); pass input_shape=(H, W, C)") from None


def convert_mat(
    mat_path: "str | os.PathLike | Mapping[str, Any]",
    layout: str = "auto",
    input_shape: Sequence[int] | None = None,
) -> keras.Model:
    """Build a Keras model from one of Croce et al.'s ``.mat`` weight files.

    ``layout``: ``"cnn_lenet_small"`` (keys ``weights_conv1`` (HWIO, stride 2, SAME),
    ``biases_conv1`` (1, 16), ``weights_conv2``, ``biases_conv2``, ``weights_fc1``
    (in, out; in = conv2 output flattened NHWC), ``biases_fc1``, ``weights_fc2``,
    ``biases_fc2``), ``"fc1"`` (keys ``U`` (in, hidden; in = input flattened NHWC),
    ``bU`` (1, hidden), ``W`` (hidden, out), ``bW`` (1, out)), or ``"auto"`` (by the keys).

    ``input_shape`` (H, W, C) defaults to what the authors' code assumes: 28x28x1 for
    one channel / 784 features, 32x32x3 for three channels / 3072 features. Every array
    is checked against the shape it must have; an error names the key and both shapes.
    The result is a plain chain of Conv2D/Dense/ReLU/Flatten layers and gives logits.
    """
    data = _load_mat(mat_path)
    if layout == "auto":
        layout = detect_layout(data)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown .mat layout {layout!r}: expected 'auto' or one of {list(LAYOUTS)}")

    if layout == "cnn_lenet_small":
        w1 = _get(data, "weights_conv1", layout)
        if w1.ndim != 4 or w1.shape[0] != w1.shape[1]:
            raise ValueError(f"{layout} .mat key 'weights_conv1': shape {w1.shape} found, (k, k, C, filters) expected")
        k, _, c, f1 = (int(s) for s in w1.shape)
        shape = _shape3(input_shape) if input_shape is not None else _infer_input_shape(layout, c)
        if shape[2] != c:
            raise ValueError(f"{layout} .mat key 'weights_conv1': shape {w1.shape} found, "
                             f"{(k, k, shape[2], f1)} expected for input shape {shape}")
        b1 = _bias(data, "biases_conv1", f1, layout)
        w2 = _get(data, "weights_conv2", layout)
        if w2.ndim != 4:
            raise ValueError(f"{layout} .mat key 'weights_conv2': shape {w2.shape} found, ({k}, {k}, {f1}, filters) expected")
        f2 = int(w2.shape[3])
        _expect(w2, "weights_conv2", (k, k, f1, f2), layout)
        b2 = _bias(data, "biases_conv2", f2, layout)
        h2 = _conv_out(_conv_out(shape[0], 2), 2)
        wd2 = _conv_out(_conv_out(shape[1], 2), 2)
        w3 = _get_matrix(data, "weights_fc1", layout, f"({h2 * wd2 * f2}, hidden)")
        hidden = int(w3.shape[1])
        _expect(w3, "weights_fc1", (h2 * wd2 * f2, hidden), layout,
                f"conv2 output {h2}x{wd2}x{f2} for input shape {shape}")
        b3 = _bias(data, "biases_fc1", hidden, layout)
        w4 = _get_matrix(data, "weights_fc2", layout, f"({hidden}, n_classes)")
        n_classes = int(w4.shape[1])
        _expect(w4, "weights_fc2", (hidden, n_classes), layout)
        b4 = _bias(data, "biases_fc2", n_classes, layout)
        model = _lenet_small(shape, n_classes, filters=(f1, f2), kernel=k, hidden=hidden)
        params = {"conv1": (w1, b1), "conv2": (w2, b2), "fc1": (w3, b3), "logits": (w4, b4)}
    else:
        u = _get_matrix(data, "U", layout, "(features, hidden)")
        n_in, hidden = (int(s) for s in u.shape)
        shape = _shape3(input_shape) if input_shape is not None else _infer_input_shape(layout, n_in)
        _expect(u, "U", (int(np.prod(shape)), hidden), layout, f"input shape {shape} flattened")
        bu = _bias(data, "bU", hidden, layout)
        w = _get_matrix(data, "W", layout, f"({hidden}, n_classes)")
        n_classes = int(w.shape[1])
        _expect(w, "W", (hidden, n_classes), layout)
        bw = _bias(data, "bW", n_classes, layout)
        model = fc1(shape, n_classes, hidden=hidden)
        params = {"fc1": (u, bu), "logits": (w, bw)}

    for name, (kernel, bias) in params.items():
        model.get_layer(name).set_weights([kernel, bias])
    return model


def mat_sidecar(
    mat_path: str | os.PathLike,
    model: keras.Model,
    dataset: str,
    layout: str = "auto",
    **extra: Any,
) -> dict[str, Any]:
    """Sidecar for a model made by :func:`convert_mat` from ``mat_path``.

    ``made_by`` records the file name, its SHA-256 and the (resolved) layout; ``extra``
    keys are added to the top level.
    """
    mat_path = Path(mat_path)
    if layout == "auto":
        layout = detect_layout(mat_path)
    return {
        **extra,
        "input_shape": list(model_input_shape(model)),
        "n_classes": model_n_classes(model),
        "bounds": list(DEFAULT_BOUNDS),
        "dataset": str(dataset),
        "architecture": layout,
        "made_by": {"kind": "convert", "source": mat_path.name, "sha256": _file_sha256(mat_path), "layout": layout},
    }


# ------------------------------------------------------------- your own Keras / ONNX file

def read_model_file(path: str | os.PathLike, source: str | None = None, input_layout: str = "auto",
                    bounds: Sequence[float] = DEFAULT_BOUNDS, log=None) -> tuple[keras.Model, dict[str, Any]]:
    """Read a ``.keras``/``.h5`` or ``.onnx`` model as the plain Keras model of its description.

    Returns ``(model, made_by)``: the model (:func:`robcurves.network.to_keras`: standard
    layers, BatchNorm and normalisation folded, a final softmax removed, so it gives logits)
    and the sidecar's ``made_by`` record: ``kind`` (``keras`` or ``onnx``), the file name and
    its SHA-256, whether a softmax was removed, what was folded or dropped, the ONNX input
    layout. ``source`` defaults to the file's ending. A layer or op the description cannot
    represent raises ``ValueError`` naming it; ``log`` (a callable) gets the softmax warning.
    """
    from robcurves.network import from_keras, from_onnx, to_keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    source = source or ("onnx" if suffix == ".onnx" else "keras")
    box = (float(bounds[0]), float(bounds[1]))
    if source == "onnx":
        net = from_onnx(path, bounds=box, input_layout=input_layout, log=log)
    elif source == "keras":
        if suffix not in (".keras", ".h5"):
            raise ValueError(f"{path}: a Keras model file must end in .keras or .h5")
        try:
            src = keras.models.load_model(path, compile=False)
        except Exception as err:  # a corrupt file or a custom layer Keras cannot rebuild
            raise ValueError(f"{path}: Keras cannot load this file ({type(err).__name__}: {err})") from None
        net = from_keras(src, bounds=box, log=log)
    else:
        raise ValueError(f"unknown model file source {source!r}: expected 'keras' or 'onnx'")
    model = to_keras(net, name=path.stem)
    made_by = {"kind": source, "source": path.name, "sha256": _file_sha256(path),
               "softmax_removed": bool(net.meta.get("softmax_removed")),
               "folded": list(net.meta.get("folded", [])), "removed": list(net.meta.get("removed", [])),
               "layers": dict(net.kinds())}
    if source == "onnx":
        made_by.update(opset=net.meta.get("opset"), input_layout=net.meta.get("input_layout"))
    return model, made_by
