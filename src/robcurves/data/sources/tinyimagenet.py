"""Tiny-ImageNet-200: JPEG images in one zip, train split and labelled val split."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from robcurves.data.format import Dataset
from robcurves.data.sources.archive import zip_members


def convert_tinyimagenet(raw: Path, grayscale: str = "drop") -> tuple[Dataset, Dataset]:
    """Tiny-ImageNet-200: the train split (64x64x3) and the labelled val split as test.

    1,821 training images are grayscale. With ``grayscale="drop"`` (default) they are
    left out, which leaves the 98,179 training images the paper used;
    ``"replicate"`` copies the gray channel to RGB. Images are decoded one at a time
    from the zip straight into the output array. Train order: classes as in
    ``wnids.txt``, file names sorted within each class.
    """
    from PIL import Image

    if grayscale not in ("drop", "replicate"):
        raise ValueError(f"tinyimagenet: grayscale must be 'drop' or 'replicate', got {grayscale!r}")
    with zipfile.ZipFile(raw / "tiny-imagenet-200.zip") as zf:
        all_names = zip_members(zf)
        roots = [n[: -len("wnids.txt")] for n in all_names if n.endswith("wnids.txt")]
        if len(roots) != 1:
            raise ValueError("tiny-imagenet-200.zip: expected exactly one wnids.txt")
        root = roots[0]
        wnids = [w.strip() for w in zf.read(root + "wnids.txt").decode().splitlines() if w.strip()]
        label = {w: i for i, w in enumerate(wnids)}
        train = sorted(
            (label[p.parts[-3]], n) for n in all_names
            if n.startswith(root + "train/") and (p := PurePosixPath(n)).suffix.lower() == ".jpeg"
            and p.parts[-2] == "images" and p.parts[-3] in label
        )
        val_ann = root + "val/val_annotations.txt"
        val = []
        if val_ann in all_names:
            for line in zf.read(val_ann).decode().splitlines():
                parts = line.split("\t")
                if len(parts) >= 2 and parts[1] in label:
                    val.append((label[parts[1]], root + "val/images/" + parts[0]))

        def decode(items: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray, int]:
            x = np.empty((len(items), 64, 64, 3), dtype=np.float32)
            y = np.empty(len(items), dtype=np.int64)
            n = dropped = 0
            for lab, member in items:
                with Image.open(io.BytesIO(zf.read(member))) as im:
                    if im.mode != "RGB":
                        if im.mode in ("L", "LA", "1", "I", "I;16") and grayscale == "drop":
                            dropped += 1
                            continue
                        im = im.convert("RGB")
                    a = np.asarray(im, dtype=np.uint8)
                if a.shape != (64, 64, 3):
                    raise ValueError(f"tiny-imagenet-200.zip: {member} is {a.shape}, expected (64, 64, 3)")
                x[n] = a
                y[n] = lab
                n += 1
            x = x[:n]
            x /= np.float32(255.0)
            return x, y[:n], dropped

        x_tr, y_tr, drop_tr = decode(train)
        x_te, y_te, drop_te = decode(val)
    src = f"Tiny-ImageNet-200 (CS231n), train split; test = labelled val split; grayscale images: {grayscale}"
    return (
        Dataset(x_tr, y_tr, "tinyimagenet", "train", wnids, src, {"grayscale": grayscale, "n_grayscale_dropped": drop_tr}),
        Dataset(x_te, y_te, "tinyimagenet", "test", wnids, src, {"grayscale": grayscale, "n_grayscale_dropped": drop_te}),
    )
