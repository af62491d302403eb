"""The data stage: downloads (served from 127.0.0.1), parsers, splits and the file format.

Every download test serves small files in the real published formats from a local
HTTP server and pins the registry's checksums to those files; nothing leaves the
machine.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from localhttp import serve_directory
from robcurves import data as D

REFERENCE = Path(__file__).parents[1] / ".." / "shared" / "reference"


# ---------------------------------------------------------------------------
# helpers: small files in the published formats
# ---------------------------------------------------------------------------

def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def idx_bytes(a: np.ndarray, compress: bool = True) -> bytes:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    return gzip.compress(raw) if compress else raw


def mnist_like_files(rng: np.random.Generator) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    arrays = {
        "train_x": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        "train_y": np.arange(12, dtype=np.uint8) % 10,
        "test_x": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "test_y": np.array([7, 2, 1, 0, 4], dtype=np.uint8),
    }
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(arrays["train_x"]),
        "train-labels-idx1-ubyte.gz": idx_bytes(arrays["train_y"]),
        "t10k-images-idx3-ubyte.gz": idx_bytes(arrays["test_x"]),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(arrays["test_y"]),
    }
    return files, arrays


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_like_archive(rng: np.random.Generator) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A cifar-10-python.tar.gz with 2 images per training batch and 3 test images.

    Returns the archive and the test images as NHWC uint8 with their labels.
    """
    members = {}
    for i in range(1, 6):
        d = {b"batch_label": b"training batch", b"labels": [i % 10, (i + 1) % 10],
             b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"filenames": [b"a.png", b"b.png"]}
        members[f"cifar-10-batches-py/data_batch_{i}"] = pickle.dumps(d, protocol=2)
    test_nhwc = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    test_rows = test_nhwc.transpose(0, 3, 1, 2).reshape(3, 3072)  # the published layout: R, G, B planes
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(
        {b"labels": [3, 8, 8], b"data": test_rows, b"batch_label": b"testing batch"}, protocol=2)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}, protocol=2)
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return tar_gz(members), test_nhwc, np.array([3, 8, 8])


def ppm(color: tuple[int, int, int], size: tuple[int, int], inner: tuple[int, int, int] | None = None,
        margin: int = 0) -> bytes:
    from PIL import Image

    im = Image.new("RGB", size, color)
    if inner is not None:
        im.paste(Image.new("RGB", (size[0] - 2 * margin, size[1] - 2 * margin), inner), (margin, margin))
    buf = io.BytesIO()
    im.save(buf, format="PPM")
    return buf.getvalue()


GT_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"


def gtsrb_like_files() -> dict[str, bytes]:
    """GTSRB's three zips: 2 classes x 2 training images of odd sizes, 3 test images.

    Every image has a 5-pixel border of one colour around a sign of another colour;
    the ROI in the CSV marks the sign.
    """
    train = {}
    colours = {0: ((255, 0, 0), (0, 0, 255)), 14: ((0, 255, 0), (255, 255, 255))}  # class: (border, sign)
    for cls, (border, sign) in colours.items():
        folder = f"GTSRB/Final_Training/Images/{cls:05d}"
        rows = []
        for j, (w, h) in enumerate([(30, 33), (41, 37)]):
            fn = f"00000_{j:05d}.ppm"
            train[f"{folder}/{fn}"] = ppm(border, (w, h), sign, margin=5)
            rows.append(f"{fn};{w};{h};5;5;{w - 6};{h - 6};{cls}\n")
        train[f"{folder}/GT-{cls:05d}.csv"] = (GT_HEADER + "".join(rows)).encode()
    test_imgs, gt_rows = {}, []
    for k, (cls, (w, h)) in enumerate([(14, (35, 35)), (0, (29, 31)), (14, (50, 45))]):
        fn = f"{k:05d}.ppm"
        border, sign = colours[cls]
        test_imgs[f"GTSRB/Final_Test/Images/{fn}"] = ppm(border, (w, h), sign, margin=5)
        gt_rows.append(f"{fn};{w};{h};5;5;{w - 6};{h - 6};{cls}\n")
    # The test-images zip carries a CSV without ClassId; the labels come in a separate zip.
    test_imgs["__MACOSX/GTSRB/Final_Test/Images/._00000.ppm"] = b"resource fork"  # must be ignored
    test_imgs["GTSRB/Final_Test/Images/GT-final_test.test.csv"] = b"Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n"
    return {
        "GTSRB_Final_Training_Images.zip": zip_bytes(train),
        "GTSRB_Final_Test_Images.zip": zip_bytes(test_imgs),
        "GTSRB_Final_Test_GT.zip": zip_bytes({"GT-final_test.csv": (GT_HEADER + "".join(gt_rows)).encode()}),
    }


def pin_registry(monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, bytes]) -> None:
    """Point the registry's checksums for ``name`` at the test files."""
    src = D.DOWNLOADS[name]
    pinned = tuple(dataclasses.replace(f, sha256=sha(files[f.filename])) for f in src.files)
    monkeypatch.setitem(D.DOWNLOADS, name, dataclasses.replace(src, files=pinned))


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write files into a served folder; yields ``put(files) -> mirror URL``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root) as url:
        def put(files: dict[str, bytes]) -> str:
            for name, content in files.items():
                (root / name).write_bytes(content)
            return url
        yield put


# ---------------------------------------------------------------------------
# downloads and conversions
# ---------------------------------------------------------------------------

def test_registry_entries_are_well_formed():
    assert set(D.DOWNLOADS) == {"mnist", "fmnist", "cifar10", "gts", "har", "tinyimagenet"}
    for name, src in D.DOWNLOADS.items():
        assert src.name == name and src.files
        for f in src.files:
            assert f.url.startswith(("http://", "https://"))
            assert f.sha256 is None or D._SHA256_RE.match(f.sha256), (name, f.filename)
            assert f.sha256 is not None or f.md5, f"{name}/{f.filename}: unpinned files must give the published MD5"
    assert D.DOWNLOADS["mnist"].file("t10k-labels-idx1-ubyte.gz").sha256.startswith("f7ae60f9")
    assert D.DOWNLOADS["har"].files[0].filename == "human+activity+recognition+using+smartphones.zip"
    assert D.raw_filenames("gts")[0] == "GTSRB_Final_Training_Images.zip"
    with pytest.raises(ValueError, match="unknown downloadable data set 'svhn'; known: cifar10, fmnist, gts"):
        D.raw_filenames("svhn")


def test_mirror_replaces_scheme_host_and_folder():
    f = D.DOWNLOADS["har"].files[0]
    assert f.url_at(None) == f.url
    assert f.url_at("http://127.0.0.1:8000/x/") == "http://127.0.0.1:8000/x/human+activity+recognition+using+smartphones.zip"


def test_mnist_download_and_conversion(tmp_path, served, monkeypatch):
    files, arrays = mnist_like_files(np.random.default_rng(0))
    pin_registry(monkeypatch, "mnist", files)
    raw = tmp_path / "raw" / "mnist"
    sums = D.download_dataset("mnist", raw, mirror=served(files))
    assert sums == {name: sha(content) for name, content in files.items()}
    assert sorted(p.name for p in raw.iterdir()) == sorted(files)  # no temporary files left
    for name, content in files.items():
        assert (raw / name).read_bytes() == content

    train, test = D.prepare_downloaded("mnist", raw)
    assert train.x.shape == (12, 28, 28, 1) and test.x.shape == (5, 28, 28, 1)
    assert train.x.dtype == np.float32 and test.y.dtype == np.int64
    np.testing.assert_array_equal(test.y, [7, 2, 1, 0, 4])
    np.testing.assert_allclose(test.x[..., 0] * 255.0, arrays["test_x"], atol=1e-4)
    assert train.class_names == [str(i) for i in range(10)]
    assert train.extra["raw_sha256"]["t10k-labels-idx1-ubyte.gz"] == sha(files["t10k-labels-idx1-ubyte.gz"])
    D.save_dataset(tmp_path / "test.npz", test)  # the metadata round-trips through JSON
    back = D.load_dataset(tmp_path / "test.npz")
    assert back.extra["raw_sha256"] == test.extra["raw_sha256"] and back.extra["urls"][0].endswith(".gz")

    # Present and verified files are not fetched again: a dead mirror does no harm.
    D.download_dataset("mnist", raw, mirror="http://127.0.0.1:9/")
    # A damaged file is fetched again.
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"damaged")
    D.download_dataset("mnist", raw, mirror=served({}))
    assert (raw / "t10k-labels-idx1-ubyte.gz").read_bytes() == files["t10k-labels-idx1-ubyte.gz"]


def test_corrupt_download_is_refused_and_leaves_nothing(tmp_path, served, monkeypatch):
    files, _ = mnist_like_files(np.random.default_rng(1))
    pin_registry(monkeypatch, "mnist", files)
    good = files["train-images-idx3-ubyte.gz"]
    mirror = served({**files, "train-images-idx3-ubyte.gz": good[:-7] + b"garbage"})
    raw = tmp_path / "raw" / "mnist"
    with pytest.raises(D.ChecksumError) as e:
        D.download_dataset("mnist", raw, mirror=mirror)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and sha(good) in msg
    assert sha(good[:-7] + b"garbage") in msg
    assert list(raw.iterdir()) == []  # neither the file nor a temporary one

    # The same through download_file directly.
    dest = tmp_path / "single" / "file.gz"
    with pytest.raises(D.ChecksumError, match="file.gz"):
        D.download_file(mirror + "train-images-idx3-ubyte.gz", dest, sha256="0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_http_error_is_clear_and_leaves_nothing(tmp_path, served):
    mirror = served({})
    dest = tmp_path / "out" / "missing.gz"
    with pytest.raises(D.DownloadError, match="HTTP 404"):
        D.download_file(mirror + "missing.gz", dest, sha256="a" * 64)
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(ValueError, match="64 hexadecimal"):
        D.download_file(mirror + "missing.gz", dest, sha256="abc")


def test_unpinned_files_are_refused_with_instructions(tmp_path):
    with pytest.raises(D.ChecksumNotPinnedError) as e:
        D.download_dataset("gts", tmp_path / "gts", mirror="http://127.0.0.1:9/")
    msg = str(e.value)
    assert "GTSRB_Final_Training_Images.zip" in msg and "f33fd80ac59bff73c82d25ab499e03a3" in msg and "sha256" in msg
    assert not (tmp_path / "gts").exists() or list((tmp_path / "gts").iterdir()) == []
    with pytest.raises(ValueError, match="unknown files"):
        D.download_dataset("gts", tmp_path / "gts", sha256={"nonsense.zip": "0" * 64})


def test_cifar10_download_and_conversion(tmp_path, served, monkeypatch):
    archive, test_nhwc, test_y = cifar_like_archive(np.random.default_rng(2))
    files = {"cifar-10-python.tar.gz": archive}
    pin_registry(monkeypatch, "cifar10", files)
    raw = tmp_path / "raw" / "cifar10"
    D.download_dataset("cifar10", raw, mirror=served(files))
    train, test = D.prepare_downloaded("cifar10", raw)
    assert train.x.shape == (10, 32, 32, 3) and test.x.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(train.y, [1, 2, 2, 3, 3, 4, 4, 5, 5, 6])
    np.testing.assert_array_equal(test.y, test_y)
    np.testing.assert_allclose(test.x * 255.0, test_nhwc, atol=1e-4)  # channel order restored
    assert test.class_names == CIFAR_NAMES


def test_cifar_unpickler_refuses_foreign_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.getcwd, ())

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D._unpickle(pickle.dumps({b"data": Evil()}, protocol=2))
    # The published batches were pickled by Python 2 with numpy 1 (numpy.core...).
    legacy = pickle.dumps({b"data": np.arange(6, dtype=np.uint8).reshape(2, 3)}, protocol=2)
    legacy = legacy.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in legacy
    np.testing.assert_array_equal(D._unpickle(legacy)[b"data"], np.arange(6).reshape(2, 3))


def test_gtsrb_download_and_conversion(tmp_path, served, monkeypatch):
    files = gtsrb_like_files()
    pin_registry(monkeypatch, "gts", files)
    raw = tmp_path / "raw" / "gts"
    D.download_dataset("gts", raw, mirror=served(files))
    train, test = D.prepare_downloaded("gts", raw)
    assert train.x.shape == (4, 32, 32, 3) and test.x.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(train.y, [0, 0, 14, 14])
    np.testing.assert_array_equal(test.y, [14, 0, 14])
    assert train.n_classes == 43 and train.class_names[14] == "Stop"
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0
    # Whole image resized: the corner keeps the border colour (red for class 0).
    np.testing.assert_allclose(train.x[0, 0, 0], [1.0, 0.0, 0.0], atol=1e-6)

    # Cropped to the ROI, only the sign's colour is left (blue for class 0, white for 14).
    train_c, test_c = D.prepare_downloaded("gts", raw, options={"crop_roi": True, "size": 16})
    assert train_c.x.shape == (4, 16, 16, 3)
    np.testing.assert_allclose(train_c.x[:2], np.broadcast_to([0.0, 0.0, 1.0], (2, 16, 16, 3)), atol=1e-6)
    np.testing.assert_allclose(test_c.x[0], np.ones((16, 16, 3)), atol=1e-6)
    with pytest.raises(ValueError, match="unknown options"):
        D.prepare_downloaded("gts", raw, options={"grayscale": "drop"})


def test_har_conversion_scales_features_and_shifts_labels(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    x_te = rng.uniform(-1, 1, (4, 561))
    x_te[0, :2] = [-1.0, 1.0]
    txt = lambda a: "\n".join(" ".join(f"{v: .7e}" for v in row) for row in a).encode()
    inner = zip_bytes({
        "UCI HAR Dataset/activity_labels.txt": b"1 WALKING\n2 WALKING_UPSTAIRS\n3 WALKING_DOWNSTAIRS\n"
                                               b"4 SITTING\n5 STANDING\n6 LAYING\n",
        "UCI HAR Dataset/train/X_train.txt": txt(rng.uniform(-1, 1, (3, 561))),
        "UCI HAR Dataset/train/y_train.txt": b"1\n6\n3\n",
        "UCI HAR Dataset/test/X_test.txt": txt(x_te),
        "UCI HAR Dataset/test/y_test.txt": b"5\n5\n4\n1\n",
        "__MACOSX/UCI HAR Dataset/test/._X_test.txt": b"resource fork",
    })
    (f,) = D.DOWNLOADS["har"].files
    files = {f.filename: zip_bytes({"__MACOSX/._UCI HAR Dataset.zip": b"fork", "UCI HAR Dataset.zip": inner,
                                      "UCI HAR Dataset.names": b"..."})}  # UCI's nesting
    pin_registry(monkeypatch, "har", files)
    (tmp_path / f.filename).write_bytes(files[f.filename])
    train, test = D.prepare_downloaded("har", tmp_path)
    assert train.x.shape == (3, 1, 1, 561) and test.x.shape == (4, 1, 1, 561)
    np.testing.assert_array_equal(test.y, [4, 4, 3, 0])
    np.testing.assert_array_equal(train.y, [0, 5, 2])
    np.testing.assert_allclose(test.x[:, 0, 0, :], (x_te + 1) / 2, atol=1e-6)
    assert test.x[0, 0, 0, 0] == 0.0 and test.x[0, 0, 0, 1] == 1.0
    assert test.class_names[0] == "WALKING" and test.n_classes == 6


def test_tinyimagenet_conversion_drops_grayscale(tmp_path, monkeypatch):
    from PIL import Image

    def jpeg(mode: str, value) -> bytes:
        buf = io.BytesIO()
        Image.new(mode, (64, 64), value).save(buf, format="JPEG", quality=100)
        return buf.getvalue()

    r = "tiny-imagenet-200/"
    members = {
        r + "wnids.txt": b"n02\nn01\n",
        r + "train/n01/images/n01_0.JPEG": jpeg("RGB", (200, 10, 10)),
        r + "train/n01/images/n01_1.JPEG": jpeg("L", 128),
        r + "train/n02/images/n02_0.JPEG": jpeg("RGB", (10, 200, 10)),
        r + "train/n01/n01_boxes.txt": b"n01_0.JPEG\t0\t0\t63\t63\n",
        r + "val/images/val_0.JPEG": jpeg("RGB", (10, 10, 200)),
        r + "val/val_annotations.txt": b"val_0.JPEG\tn01\t0\t0\t63\t63\n",
    }
    files = {"tiny-imagenet-200.zip": zip_bytes(members)}
    pin_registry(monkeypatch, "tinyimagenet", files)
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(files["tiny-imagenet-200.zip"])
    train, test = D.prepare_downloaded("tinyimagenet", tmp_path)
    assert train.x.shape == (2, 64, 64, 3) and train.extra["n_grayscale_dropped"] == 1
    np.testing.assert_array_equal(train.y, [0, 1])  # class order from wnids.txt: n02 = 0, n01 = 1
    assert train.class_names == ["n02", "n01"]
    assert abs(train.x[1, 32, 32, 0] - 200 / 255) < 0.02
    np.testing.assert_array_equal(test.y, [1])
    train_r, _ = D.prepare_downloaded("tinyimagenet", tmp_path, options={"grayscale": "replicate"})
    assert len(train_r) == 3


def test_prepare_verifies_raw_checksums(tmp_path, monkeypatch):
    files, _ = mnist_like_files(np.random.default_rng(4))
    pin_registry(monkeypatch, "mnist", files)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(files["t10k-images-idx3-ubyte.gz"] + b"\0")
    with pytest.raises(D.ChecksumError, match="t10k-images-idx3-ubyte.gz"):
        D.prepare_downloaded("mnist", tmp_path)
    with pytest.raises(ValueError, match="unknown downloadable data set 'svhn'.*cifar10"):
        D.prepare_downloaded("svhn", tmp_path)


def test_prepare_dataset_download_dispatch(tmp_path, served, monkeypatch):
    files, _ = mnist_like_files(np.random.default_rng(5))
    pin_registry(monkeypatch, "fmnist", files)
    raw = tmp_path / "raw" / "fashion"
    train, test = D.prepare_dataset("fashion", {"source": "download", "download": "fmnist", "mirror": served(files)}, raw)
    assert train.name == test.name == "fashion" and test.class_names[-1] == "Ankle boot"
    assert len(train) == 12 and len(test) == 5


# ---------------------------------------------------------------------------
# bundled data sets and splits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,n,f,k", [("iris", 150, 4, 3), ("wine", 178, 13, 3), ("breast_cancer", 569, 30, 2)])
def test_sklearn_tabular_shapes_range_and_stratification(name, n, f, k):
    train, test = D.load_sklearn_tabular(name, test_size=0.3, seed=0)
    assert len(train) + len(test) == n
    assert train.x.shape[1:] == (1, 1, f) == test.x.shape[1:]
    assert train.n_classes == k
    both = np.concatenate([train.x, test.x]).reshape(n, f)
    np.testing.assert_allclose(both.min(axis=0), 0.0)  # min-max over the full set
    np.testing.assert_allclose(both.max(axis=0), 1.0)
    full = np.bincount(np.concatenate([train.y, test.y]), minlength=k) / n
    part = np.bincount(test.y, minlength=k) / len(test)
    assert np.max(np.abs(full - part)) < 0.03  # stratified


def test_splits_are_deterministic_per_seed():
    a_tr, a_te = D.load_sklearn_tabular("wine", 0.3, seed=7)
    b_tr, b_te = D.load_sklearn_tabular("wine", 0.3, seed=7)
    c_tr, _ = D.load_sklearn_tabular("wine", 0.3, seed=8)
    assert a_tr.meta["sha256"] == b_tr.meta["sha256"] and a_te.meta["sha256"] == b_te.meta["sha256"]
    assert a_tr.meta["sha256"] != c_tr.meta["sha256"]
    d1, _ = D.load_sklearn_digits(0.3, seed=1)
    d2, _ = D.load_sklearn_digits(0.3, seed=1)
    d3, _ = D.load_sklearn_digits(0.3, seed=2)
    np.testing.assert_array_equal(d1.x, d2.x)
    assert d1.meta["sha256"] != d3.meta["sha256"]
    assert d1.x.min() >= 0.0 and d1.x.max() <= 1.0 and d1.x.shape[1:] == (8, 8, 1)


def test_prepare_dataset_sklearn_dispatch_and_errors(tmp_path):
    tr, te = D.prepare_dataset("iris", {"source": "sklearn_iris", "test_size": 0.2, "split_seed": 3}, tmp_path)
    assert len(te) == 30 and tr.extra["split_seed"] == 3 and tr.name == "iris"
    tr, te = D.prepare_dataset("digits", {"source": "sklearn_digits", "test_size": 0.5, "split_seed": 0}, tmp_path)
    assert tr.name == "digits" and abs(len(te) - 1797 / 2) <= 1
    with pytest.raises(ValueError, match="unknown source 'sklearn_mnist'.*sklearn_digits.*download"):
        D.prepare_dataset("x", {"source": "sklearn_mnist"}, tmp_path)
    with pytest.raises(ValueError, match="unknown download 'svhn'.*mnist"):
        D.prepare_dataset("svhn", {"source": "download"}, tmp_path)
    with pytest.raises(ValueError, match="unknown source 'iris'"):
        D.prepare_dataset("iris", {"source": "iris"}, tmp_path)
    with pytest.raises(ValueError, match="needs a raw_dir"):
        D.prepare_dataset("mnist", {"source": "download"}, None)
    with pytest.raises(ValueError, match="test_size"):
        D.load_sklearn_tabular("iris", test_size=1.5)
    with pytest.raises(ValueError, match="known: iris, wine, breast_cancer"):
        D.load_sklearn_tabular("titanic")


# ---------------------------------------------------------------------------
# file formats
# ---------------------------------------------------------------------------

def test_read_idx_rejects_bad_data():
    good = idx_bytes(np.zeros((2, 3), np.uint8), compress=False)
    assert D.read_idx(good).shape == (2, 3)
    assert D.read_idx(gzip.compress(good)).shape == (2, 3)
    with pytest.raises(ValueError, match="magic"):
        D.read_idx(b"\x01\x00\x08\x01" + good[4:])
    with pytest.raises(ValueError, match="type code"):
        D.read_idx(b"\x00\x00\x07" + good[3:])
    with pytest.raises(ValueError, match="header promises"):
        D.read_idx(good[:-1])
    with pytest.raises(ValueError, match="magic"):
        D.read_idx(b"")


def test_load_dataset_detects_corruption(tmp_path):
    tr, _ = D.load_sklearn_tabular("iris", 0.3, 0)
    path = tmp_path / "train.npz"
    D.save_dataset(path, tr)
    back = D.load_dataset(path)
    np.testing.assert_array_equal(back.x, tr.x)
    assert back.extra["split_seed"] == 0
    with np.load(path) as f:
        x, y, meta = f["x"].copy(), f["y"], f["meta"]
    x[0, 0, 0, 0] = 0.5 if x[0, 0, 0, 0] != 0.5 else 0.25
    np.savez(path, x=x, y=y, meta=meta)
    with pytest.raises(ValueError, match="checksum"):
        D.load_dataset(path)
    assert D.load_dataset(path, verify=False).x[0, 0, 0, 0] == x[0, 0, 0, 0]
    np.savez(path, x=x, y=y)
    with pytest.raises(ValueError, match="missing arrays"):
        D.load_dataset(path)


# ---------------------------------------------------------------------------
# conformance with the real MNIST test set, where it is available
# ---------------------------------------------------------------------------

def _reference_sums() -> dict[str, str]:
    readme = (REFERENCE / "README.md").read_text()
    sums = {}
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        line = next(l for l in readme.splitlines() if l.startswith(f"| {name} |"))
        sums[name] = line.split("|")[2].strip()
    return sums


@pytest.mark.skipif(not (REFERENCE / "mnist").is_dir(), reason="../shared/reference/mnist is not available")
def test_real_mnist_test_set_conforms():
    sums = _reference_sums()
    for name, expected in sums.items():
        assert hashlib.sha256(gzip.decompress((REFERENCE / "mnist" / name).read_bytes())).hexdigest() == expected
    y = D.read_idx(REFERENCE / "mnist" / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    x = D._idx_images(REFERENCE / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    ds = D.Dataset(x, y, "mnist", "test", [str(i) for i in range(10)], "reference")
    assert np.bincount(ds.y).tolist()[:3] == [980, 1135, 1032]


def test_user_pins_make_unpinned_sets_usable(tmp_path, served):
    """GTSRB has no published SHA-256: the user's pins in the source config are used."""
    files = gtsrb_like_files()
    cfg = {"source": "download", "mirror": served(files), "sha256": {n: sha(b) for n, b in files.items()},
           "options": {"size": 8}}
    train, test = D.prepare_dataset("gts", cfg, tmp_path / "gts")
    assert train.x.shape == (4, 8, 8, 3) and len(test) == 3
    assert train.extra["raw_sha256"] == cfg["sha256"] and train.extra["options"] == {"size": 8}
    cfg["sha256"]["GTSRB_Final_Test_GT.zip"] = "0" * 64
    with pytest.raises(D.ChecksumError, match="GTSRB_Final_Test_GT.zip"):
        D.prepare_dataset("gts", cfg, tmp_path / "gts2")
    assert sorted(p.name for p in (tmp_path / "gts2").iterdir()) == ["GTSRB_Final_Test_Images.zip",
                                                                       "GTSRB_Final_Training_Images.zip"]
