"""Data sets in one on-disk format that every later stage reads.

Format: one ``.npz`` file per split, with
  - ``x``: float32, NHWC (``(N, H, W, C)``), values in [0, 1];
  - ``y``: int64, ``(N,)``, labels in ``0 .. n_classes-1``;
  - ``meta``: a 0-d unicode array holding a JSON object with at least
    ``name``, ``split``, ``class_names``, ``source`` and ``sha256`` (of the x and y
    bytes, see :func:`content_sha256`).

Files are written atomically and loaded without pickle.

Where the data come from:
  - bundled with scikit-learn (offline): ``digits`` (8x8 images), and the tabular
    sets ``iris``, ``wine`` and ``breast_cancer`` (stored as ``(N, 1, 1, F)``);
  - downloaded (:data:`DOWNLOADS`): ``mnist``, ``fmnist``, ``cifar10``, ``gts``
    (GTSRB), ``har`` (UCI HAR) and ``tinyimagenet``. Every file is checked against
    a pinned SHA-256 before it is used (:func:`download_file`), then converted by
    :func:`prepare_downloaded`.

:func:`prepare_dataset` is the single entry point the workflow calls.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

import numpy as np

from robcurves.atomic import atomic_path, save_npz

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    """One split of a data set: images in [0, 1] (NHWC float32) and int64 labels."""

    x: np.ndarray
    y: np.ndarray
    name: str
    split: str
    class_names: list[str]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        validate_arrays(self.x, self.y, n_classes=len(self.class_names), what=f"{self.name}/{self.split}")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)

    @property
    def meta(self) -> dict[str, Any]:
        return {
            **self.extra,
            "name": self.name,
            "split": self.split,
            "class_names": list(self.class_names),
            "source": self.source,
            "n": int(len(self.y)),
            "input_shape": list(self.input_shape),
            "sha256": content_sha256(self.x, self.y),
        }


def content_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of the float32 image bytes followed by the int64 label bytes."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()


def validate_arrays(x: np.ndarray, y: np.ndarray, n_classes: int | None = None, what: str = "data") -> None:
    """Check shapes, value range and labels; raise ``ValueError`` naming what is wrong."""
    if x.ndim != 4:
        raise ValueError(f"{what}: x must be NHWC with 4 dimensions, got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{what}: y must have shape ({len(x)},), got {y.shape}")
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: x contains NaN or infinite values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"{what}: x must lie in [0, 1], got [{x.min()}, {x.max()}]")
    if n_classes is not None and len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{what}: labels must lie in 0..{n_classes - 1}, got {y.min()}..{y.max()}")


def save_dataset(path: str | os.PathLike, ds: Dataset) -> None:
    """Write one split atomically in the standard format."""
    save_npz(path, x=ds.x, y=ds.y, meta=np.array(json.dumps(ds.meta, sort_keys=True)))


def load_dataset(path: str | os.PathLike, verify: bool = True) -> Dataset:
    """Read one split written by :func:`save_dataset`; verify its checksum by default."""
    with np.load(path, allow_pickle=False) as f:
        missing = {"x", "y", "meta"} - set(f.files)
        if missing:
            raise ValueError(f"{path}: not a robcurves data file, missing arrays {sorted(missing)}")
        x, y, meta = f["x"], f["y"], json.loads(str(f["meta"]))
    if verify and meta.get("sha256") != content_sha256(x, y):
        raise ValueError(f"{path}: content checksum does not match its metadata (corrupt file?)")
    known = {"name", "split", "class_names", "source", "n", "input_shape", "sha256"}
    return Dataset(
        x=x, y=y, name=meta["name"], split=meta["split"], class_names=list(meta["class_names"]),
        source=meta["source"], extra={k: v for k, v in meta.items() if k not in known},
    )


def load_sklearn_digits(test_size: float = 0.3, seed: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's bundled 8x8 digits (1,797 images), scaled to [0, 1].

    The pixels are integers 0..16 and are divided by 16. The train/test split is
    stratified by class and fixed by ``seed``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 8, 8, 1)
    y = bunch.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    names = [str(c) for c in bunch.target_names]
    src = "sklearn.datasets.load_digits (UCI optdigits test set)"
    extra = {"split_seed": int(seed), "test_size": float(test_size)}
    return (
        Dataset(x[tr], y[tr], "digits", "train", names, src, dict(extra)),
        Dataset(x[te], y[te], "digits", "test", names, src, dict(extra)),
    )


def read_idx(source: "str | os.PathLike | bytes") -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format), gzip-compressed or not.

    ``source`` is a path or the file's bytes. The header is big-endian: two zero
    bytes, a type code (0x08 = uint8), the number of dimensions, then one uint32 per
    dimension.
    """
    import gzip

    raw = source if isinstance(source, (bytes, bytearray)) else open(source, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError("not an IDX file: bad magic number")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"IDX: unknown type code 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(dtypes[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise ValueError(f"IDX: header promises {dims} ({expected} bytes) but {len(body)} bytes follow")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))
