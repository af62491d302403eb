"""UCI HAR: 561 features per window, as text files in a (nested) zip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from robcurves.data.download import DOWNLOADS
from robcurves.data.format import Dataset
from robcurves.data.sources.archive import zip_members


def _har_inner_zip(path: Path) -> zipfile.ZipFile:
    """The zip holding ``UCI HAR Dataset/``: UCI's current archive nests it in another zip."""
    outer = zipfile.ZipFile(path)
    nested = [n for n in zip_members(outer) if PurePosixPath(n).name == "UCI HAR Dataset.zip"]
    if nested:
        data = outer.read(nested[0])
        outer.close()
        return zipfile.ZipFile(io.BytesIO(data))
    return outer


def convert_har(raw: Path) -> tuple[Dataset, Dataset]:
    """UCI HAR: 561 features per window, scaled from [-1, 1] to [0, 1] as the paper did."""
    (f,) = DOWNLOADS["har"].files
    with _har_inner_zip(raw / f.filename) as zf:
        def member(suffix: str) -> str:
            hits = [n for n in zip_members(zf) if n.endswith("UCI HAR Dataset/" + suffix)]
            if len(hits) != 1:
                raise ValueError(f"{f.filename}: expected one 'UCI HAR Dataset/{suffix}', found {len(hits)}")
            return hits[0]

        labels = [line.split(maxsplit=1) for line in zf.read(member("activity_labels.txt")).decode().splitlines() if line.strip()]
        if [int(i) for i, _ in labels] != list(range(1, len(labels) + 1)):
            raise ValueError(f"{f.filename}: activity_labels.txt must number the classes 1..K")
        names = [n.strip() for _, n in labels]
        out = []
        for split in ("train", "test"):
            x = np.loadtxt(io.BytesIO(zf.read(member(f"{split}/X_{split}.txt"))), dtype=np.float64, ndmin=2)
            y = np.loadtxt(io.BytesIO(zf.read(member(f"{split}/y_{split}.txt"))), dtype=np.int64, ndmin=1) - 1
            if x.shape[0] != len(y):
                raise ValueError(f"HAR {split}: {x.shape[0]} feature rows but {len(y)} labels")
            if x.size and (x.min() < -1.0 - 1e-6 or x.max() > 1.0 + 1e-6):
                raise ValueError(f"HAR {split}: features must lie in [-1, 1], got [{x.min()}, {x.max()}]")
            x = np.clip((x + 1.0) / 2.0, 0.0, 1.0).astype(np.float32).reshape(len(x), 1, 1, x.shape[1])
            src = f"UCI HAR (Anguita et al. 2013), features (x + 1) / 2, {f.url}"
            out.append(Dataset(x, y, "har", split, names, src))
    return out[0], out[1]
