"""CIFAR-10, python version: pickled batches in a ``.tar.gz``, read without extracting."""

from __future__ import annotations

import importlib
import io
import pickle
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from robcurves.data.download import DOWNLOADS
from robcurves.data.format import Dataset


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing else.

    The CIFAR-10 python batches are pickled dicts of bytes, lists and ndarrays. The
    archive's SHA-256 is verified first, and this allow-list means even a tampered
    file could not make pickle import and call arbitrary code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}")
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            try:
                return getattr(importlib.import_module("numpy._core" + module[len("numpy.core"):]), name)
            except ImportError:
                pass
        return super().find_class(module, name)


def _unpickle(raw: bytes) -> Any:
    return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()


def _cifar_batch(raw: bytes, member: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(raw)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"CIFAR-10 {member}: not a batch dict with b'data' and b'labels'")
    data = np.asarray(d[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"CIFAR-10 {member}: data must have shape (N, 3072), got {data.shape}")
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if labels.shape != (len(data),):
        raise ValueError(f"CIFAR-10 {member}: {len(labels)} labels for {len(data)} images")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major: NCHW -> NHWC.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / np.float32(255.0)
    return x, labels


def convert_cifar10(raw: Path) -> tuple[Dataset, Dataset]:
    wanted = {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch", "batches.meta"}
    found: dict[str, bytes] = {}
    archive = raw / "cifar-10-python.tar.gz"
    with tarfile.open(archive, mode="r:gz") as tar:
        for m in tar:  # stream; nothing is extracted to disk
            base = PurePosixPath(m.name)
            if m.isfile() and base.parent.name == "cifar-10-batches-py" and base.name in wanted:
                found[base.name] = tar.extractfile(m).read()
    missing = wanted - set(found)
    if missing:
        raise ValueError(f"{archive.name}: missing members {sorted(missing)} under cifar-10-batches-py/")
    meta = _unpickle(found["batches.meta"])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    src = "CIFAR-10 python version (Krizhevsky 2009), " + DOWNLOADS["cifar10"].files[0].url
    parts = [_cifar_batch(found[f"data_batch_{i}"], f"data_batch_{i}") for i in range(1, 6)]
    x_tr, y_tr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_te, y_te = _cifar_batch(found["test_batch"], "test_batch")
    return (Dataset(x_tr, y_tr, "cifar10", "train", names, src), Dataset(x_te, y_te, "cifar10", "test", names, src))
