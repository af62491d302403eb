"""The on-disk format of a data set split, which every later stage reads.

Format: one ``.npz`` file per split, with
  - ``x``: float32, NHWC (``(N, H, W, C)``), values in [0, 1] or in the box
    ``meta["bounds"]`` where the metadata has one (e.g. ``[-1, 1]``);
  - ``y``: int64, ``(N,)``, labels in ``0 .. n_classes-1``;
  - ``meta``: a 0-d unicode array holding a JSON object with at least
    ``name``, ``split``, ``class_names``, ``source`` and ``sha256`` (of the x and y
    bytes, see :func:`content_sha256`).

Files are written atomically and loaded without pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robcurves.atomic import save_npz


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
        validate_arrays(self.x, self.y, n_classes=len(self.class_names), what=f"{self.name}/{self.split}",
                        bounds=self.bounds)

    @property
    def bounds(self) -> tuple[float, float]:
        """The box the inputs live in: ``meta["bounds"]`` if the file has one, else [0, 1]."""
        lo, hi = self.extra.get("bounds", (0.0, 1.0))
        return float(lo), float(hi)

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


def validate_arrays(x: np.ndarray, y: np.ndarray, n_classes: int | None = None, what: str = "data",
                    bounds: tuple[float, float] = (0.0, 1.0)) -> None:
    """Check shapes, value range (``bounds``) and labels; raise ``ValueError`` naming what is wrong."""
    if x.ndim != 4:
        raise ValueError(f"{what}: x must be NHWC with 4 dimensions, got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{what}: y must have shape ({len(x)},), got {y.shape}")
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: x contains NaN or infinite values")
    lo, hi = float(bounds[0]), float(bounds[1])
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"{what}: x must lie in [{lo:g}, {hi:g}], got [{x.min()}, {x.max()}]")
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
