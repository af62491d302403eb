"""GTSRB: the official zips of PPM images with semicolon CSV labels."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from robcurves.data.format import Dataset
from robcurves.data.sources.archive import zip_members


GTSRB_CLASSES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)", "Speed limit (60km/h)",
    "Speed limit (70km/h)", "Speed limit (80km/h)", "End of speed limit (80km/h)", "Speed limit (100km/h)",
    "Speed limit (120km/h)", "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution", "Dangerous curve to the left",
    "Dangerous curve to the right", "Double curve", "Bumpy road", "Slippery road", "Road narrows on the right",
    "Road work", "Traffic signals", "Pedestrians", "Children crossing", "Bicycles crossing", "Beware of ice/snow",
    "Wild animals crossing", "End of all speed and passing limits", "Turn right ahead", "Turn left ahead",
    "Ahead only", "Go straight or right", "Go straight or left", "Keep right", "Keep left",
    "Roundabout mandatory", "End of no passing", "End of no passing by vehicles over 3.5 metric tons",
]


def _gtsrb_rows(text: str, where: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    need = {"Filename", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{where}: expected a semicolon CSV with columns {sorted(need)}")
    return rows


def _gtsrb_image(zf: zipfile.ZipFile, member: str, row: dict[str, str], crop_roi: bool, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(zf.read(member))) as im:
        im = im.convert("RGB")
        if crop_roi:  # ROI corners are inclusive pixel coordinates
            x1, y1, x2, y2 = (int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
            im = im.crop((max(x1, 0), max(y1, 0), min(x2 + 1, im.width), min(y2 + 1, im.height)))
        im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.float32) / np.float32(255.0)


def _gtsrb_read(zf: zipfile.ZipFile, items: list[tuple[str, dict[str, str]]], crop_roi: bool, size: int,
                where: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.empty((len(items), size, size, 3), dtype=np.float32)
    y = np.empty(len(items), dtype=np.int64)
    names = set(zip_members(zf))
    for i, (member, row) in enumerate(items):
        if member not in names:
            raise ValueError(f"{where}: labelled image {member} is not in the archive")
        x[i] = _gtsrb_image(zf, member, row, crop_roi, size)
        y[i] = int(row["ClassId"])
    return x, y


def convert_gtsrb(raw: Path, crop_roi: bool = False, size: int = 32) -> tuple[Dataset, Dataset]:
    """GTSRB from the official zips of PPM images, resized to ``size`` x ``size``.

    Croce et al. (whose GTS models the paper evaluates) did not publish how their
    32x32 ``gts`` files were made; by default the whole image (which has a margin
    around the sign) is resized, as most 32x32 versions of GTSRB do. ``crop_roi``
    crops to the annotated sign first. Resampling: Pillow's bilinear, which
    averages over the source pixels when it shrinks.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"gts: size must be a positive integer, got {size!r}")
    src = f"GTSRB (Stallkamp et al. 2012), {'ROI-cropped, ' if crop_roi else ''}resized to {size}x{size} (bilinear)"
    with zipfile.ZipFile(raw / "GTSRB_Final_Training_Images.zip") as zf:
        items = []
        csvs = sorted(n for n in zip_members(zf) if re.search(r"(^|/)GT-\d{5}\.csv$", n))
        if not csvs:
            raise ValueError("GTSRB_Final_Training_Images.zip: no per-class GT-xxxxx.csv label files")
        for c in csvs:
            folder = PurePosixPath(c).parent
            items += [(str(folder / r["Filename"]), r) for r in _gtsrb_rows(zf.read(c).decode("utf-8"), c)]
        x_tr, y_tr = _gtsrb_read(zf, items, crop_roi, size, "GTSRB_Final_Training_Images.zip")
    with zipfile.ZipFile(raw / "GTSRB_Final_Test_GT.zip") as zf:
        gt = [n for n in zip_members(zf) if PurePosixPath(n).name == "GT-final_test.csv"]
        if len(gt) != 1:
            raise ValueError("GTSRB_Final_Test_GT.zip: expected exactly one GT-final_test.csv")
        rows = _gtsrb_rows(zf.read(gt[0]).decode("utf-8"), gt[0])
    with zipfile.ZipFile(raw / "GTSRB_Final_Test_Images.zip") as zf:
        folders = {str(PurePosixPath(n).parent) for n in zip_members(zf) if n.lower().endswith(".ppm")}
        if len(folders) != 1:
            raise ValueError(f"GTSRB_Final_Test_Images.zip: expected the images in one folder, found {sorted(folders)}")
        folder = PurePosixPath(folders.pop())
        x_te, y_te = _gtsrb_read(zf, [(str(folder / r["Filename"]), r) for r in rows], crop_roi, size,
                                 "GTSRB_Final_Test_Images.zip")
    extra = {"crop_roi": bool(crop_roi)}
    return (Dataset(x_tr, y_tr, "gts", "train", GTSRB_CLASSES, src, dict(extra)),
            Dataset(x_te, y_te, "gts", "test", GTSRB_CLASSES, src, dict(extra)))
