"""IDX files (LeCun's format): MNIST and Fashion-MNIST."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robcurves.data.format import Dataset


def read_idx(source: "str | os.PathLike | bytes") -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format), gzip-compressed or not.

    ``source`` is a path or the file's bytes. The header is big-endian: two zero
    bytes, a type code (0x08 = uint8), the number of dimensions, then one uint32 per
    dimension.
    """
    import gzip

    raw = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
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


FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _idx_images(path: Path) -> np.ndarray:
    a = read_idx(path)
    if a.ndim != 3 or a.dtype != np.uint8:
        raise ValueError(f"{path.name}: expected uint8 images (N, H, W), got {a.dtype} {a.shape}")
    return (a.astype(np.float32) / np.float32(255.0))[..., None]


def _idx_labels(path: Path, n: int) -> np.ndarray:
    a = read_idx(path)
    if a.ndim != 1 or len(a) != n:
        raise ValueError(f"{path.name}: expected {n} labels, got shape {a.shape}")
    return a.astype(np.int64)


def convert_idx(name: str, raw: Path, class_names: list[str], source: str) -> tuple[Dataset, Dataset]:
    """Train and test splits from the four gzipped IDX files in ``raw``; pixels / 255, shape (N, 28, 28, 1)."""
    out = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = _idx_images(raw / f"{prefix}-images-idx3-ubyte.gz")
        y = _idx_labels(raw / f"{prefix}-labels-idx1-ubyte.gz", len(x))
        out.append(Dataset(x, y, name, split, class_names, source))
    return out[0], out[1]


def convert_mnist(raw: Path) -> tuple[Dataset, Dataset]:
    return convert_idx("mnist", raw, [str(i) for i in range(10)], "MNIST (LeCun, Cortes, Burges), IDX files")


def convert_fmnist(raw: Path) -> tuple[Dataset, Dataset]:
    return convert_idx("fmnist", raw, FMNIST_CLASSES, "Fashion-MNIST (Xiao et al. 2017), IDX files")
