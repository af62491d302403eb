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
import http.client
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


# ---------------------------------------------------------------------------
# Bundled tabular data sets (offline), for the scale experiment
# ---------------------------------------------------------------------------

def _sklearn_loader(name: str) -> Callable[[], Any]:
    from sklearn import datasets as skd

    return {"iris": skd.load_iris, "wine": skd.load_wine, "breast_cancer": skd.load_breast_cancer}[name]


SKLEARN_TABULAR = ("iris", "wine", "breast_cancer")


def _stratified_split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices of a stratified split fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must lie strictly between 0 and 1, got {test_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"split seed must be an integer, got {seed!r}")
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=float(test_size), random_state=int(seed), stratify=y)
    return np.sort(tr), np.sort(te)


def load_sklearn_tabular(name: str, test_size: float = 0.3, seed: int = 0) -> tuple[Dataset, Dataset]:
    """One of scikit-learn's bundled tabular sets (``iris``, ``wine``, ``breast_cancer``).

    Every feature is min-max scaled to [0, 1] over the *full* set (train and test
    together), so that distances in the l_p norms are in the same units for both
    splits. Stored as NHWC ``(N, 1, 1, F)``. The split is stratified and fixed by
    ``seed``, as in :func:`load_sklearn_digits`.
    """
    if name not in SKLEARN_TABULAR:
        raise ValueError(f"unknown scikit-learn tabular set {name!r}; known: {', '.join(SKLEARN_TABULAR)}")
    bunch = _sklearn_loader(name)()
    x = np.asarray(bunch.data, dtype=np.float64)
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)  # a constant feature maps to 0
    x = np.clip((x - lo) / span, 0.0, 1.0).astype(np.float32).reshape(len(x), 1, 1, x.shape[1])
    y = np.asarray(bunch.target, dtype=np.int64)
    tr, te = _stratified_split(y, test_size, seed)
    names = [str(c) for c in bunch.target_names]
    src = f"sklearn.datasets.load_{name} (UCI), min-max scaled per feature on the full set"
    extra = {"split_seed": int(seed), "test_size": float(test_size), "feature_names": [str(f) for f in bunch.feature_names]}
    return (
        Dataset(x[tr], y[tr], name, "train", names, src, dict(extra)),
        Dataset(x[te], y[te], name, "test", names, src, dict(extra)),
    )


# ---------------------------------------------------------------------------
# Downloads: canonical URLs and pinned SHA-256 checksums
# ---------------------------------------------------------------------------

class ChecksumError(ValueError):
    """A file's SHA-256 differs from the pinned value."""


class ChecksumNotPinnedError(ValueError):
    """No SHA-256 is pinned for a file, so it cannot be trusted."""


class DownloadError(OSError):
    """The server could not be reached or answered with an HTTP error."""


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RemoteFile:
    """One published file: where it lives and what it must hash to.

    ``sha256`` is ``None`` where no SHA-256 has been published; such a file is
    refused until the user pins one (``sha256`` override). ``md5`` and ``size``
    are what the publisher or a well-known loader states, for the user's own check
    before pinning; they are never used to accept a file.
    """

    url: str
    sha256: str | None
    size: int | None = None
    md5: str | None = None
    checksum_source: str = ""

    @property
    def filename(self) -> str:
        """Local file name: the URL's last path segment, percent-decoded."""
        return urllib.parse.unquote(PurePosixPath(urllib.parse.urlparse(self.url).path).name)

    def url_at(self, mirror: str | None) -> str:
        """The URL, or the same file under ``mirror`` (which replaces scheme, host and folder)."""
        if not mirror:
            return self.url
        segment = urllib.parse.urlparse(self.url).path.rsplit("/", 1)[-1]
        return mirror.rstrip("/") + "/" + segment


@dataclass(frozen=True)
class DatasetSource:
    """A downloadable data set: its files and where the data set is described."""

    name: str
    title: str
    homepage: str
    files: tuple[RemoteFile, ...]

    def file(self, filename: str) -> RemoteFile:
        for f in self.files:
            if f.filename == filename:
                return f
        raise KeyError(f"{self.name}: no file {filename!r}; files: {[f.filename for f in self.files]}")


_TFDS = "tensorflow_datasets url_checksums"
_UNPINNED = "no SHA-256 published by the data set's authors or by a well-known loader"

# Checksums are of the files exactly as published (the compressed archives).
DOWNLOADS: dict[str, DatasetSource] = {
    # MNIST: LeCun's own server now often refuses downloads; this is the CVDF copy
    # that tensorflow_datasets downloads and pins.
    "mnist": DatasetSource(
        "mnist", "MNIST (LeCun, Cortes, Burges)", "http://yann.lecun.com/exdb/mnist/",
        tuple(
            RemoteFile(f"https://storage.googleapis.com/cvdf-datasets/mnist/{fn}", sha, size, checksum_source=f"{_TFDS}/mnist.txt")
            for fn, size, sha in [
                ("train-images-idx3-ubyte.gz", 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
                ("train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
                ("t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
                ("t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
            ]
        ),
    ),
    "fmnist": DatasetSource(
        "fmnist", "Fashion-MNIST (Xiao, Rasul, Vollgraf)", "https://github.com/zalandoresearch/fashion-mnist",
        tuple(
            RemoteFile(f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{fn}", sha, size, checksum_source=f"{_TFDS}/fashion_mnist.txt")
            for fn, size, sha in [
                ("train-images-idx3-ubyte.gz", 26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
                ("train-labels-idx1-ubyte.gz", 29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
                ("t10k-images-idx3-ubyte.gz", 4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
                ("t10k-labels-idx1-ubyte.gz", 5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
            ]
        ),
    ),
    "cifar10": DatasetSource(
        "cifar10", "CIFAR-10 (Krizhevsky 2009), python version", "https://www.cs.toronto.edu/~kriz/cifar.html",
        (
            RemoteFile(
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                md5="c58f30108f718f92721af3b95e74349a",  # published on the CIFAR page
                checksum_source=f"{_TFDS}/cifar10.csv",
            ),
        ),
    ),
    # GTSRB: the publisher (and torchvision) give MD5 only; no SHA-256 could be found.
    # The user must pin one (after checking the MD5) before these files are accepted.
    "gts": DatasetSource(
        "gts", "German Traffic Sign Recognition Benchmark (Stallkamp et al. 2012)",
        "https://benchmark.ini.rub.de/gtsrb_dataset.html",
        tuple(
            RemoteFile(f"https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/{fn}", None, md5=md5,
                       checksum_source=f"{_UNPINNED}; MD5 from torchvision.datasets.GTSRB")
            for fn, md5 in [
                ("GTSRB_Final_Training_Images.zip", "f33fd80ac59bff73c82d25ab499e03a3"),
                ("GTSRB_Final_Test_Images.zip", "c7e4e6327067d32654124b0fe9e82185"),
                ("GTSRB_Final_Test_GT.zip", "fe31e9c9270bbcd7b84b7f21a9d9d9e5"),
            ]
        ),
    ),
    # UCI publishes no checksum. This SHA-256 of the archive at UCI's current URL (an
    # outer zip holding "UCI HAR Dataset.zip") is the one a third-party project pinned
    # and verified; it is the only published value found. Override it if UCI re-packs.
    "har": DatasetSource(
        "har", "Human Activity Recognition Using Smartphones (Anguita et al. 2013)",
        "https://archive.ics.uci.edu/dataset/240/human+activity+recognition+using+smartphones",
        (
            RemoteFile(
                "https://archive.ics.uci.edu/static/public/240/human+activity+recognition+using+smartphones.zip",
                "c00b803081a5c797cd5e4b83700a9810b38d53d9d84e01917e090e1fdbc81031",
                checksum_source="third-party pin (UCI publishes none); inner 'UCI HAR Dataset.zip' "
                "sha256 2045e435c955214b38145fb5fa00776c72814f01b203fec405152dac7d5bfeb0",
            ),
        ),
    ),
    # Tiny-ImageNet: only an MD5 (and the size) circulate; no SHA-256 could be found.
    "tinyimagenet": DatasetSource(
        "tinyimagenet", "Tiny ImageNet (Stanford CS231n)", "http://cs231n.stanford.edu/",
        (
            RemoteFile("http://cs231n.stanford.edu/tiny-imagenet-200.zip", None, 248100043,
                       md5="90528d7ca1a48142e341f4ef8d21d0de",
                       checksum_source=f"{_UNPINNED}; MD5 from torchvision-style loaders"),
        ),
    ),
}


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def dataset_source(name: str) -> DatasetSource:
    """The :data:`DOWNLOADS` entry for ``name``; a clear error for unknown names."""
    try:
        return DOWNLOADS[name]
    except KeyError:
        raise ValueError(f"unknown downloadable data set {name!r}; known: {_known(DOWNLOADS)}") from None


def raw_filenames(name: str) -> list[str]:
    """The local file names of data set ``name``'s downloads (for workflow outputs)."""
    return [f.filename for f in dataset_source(name).files]


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _check_sha256_format(sha256: Any, what: str) -> str:
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256.lower()):
        raise ValueError(f"{what}: expected SHA-256 must be 64 hexadecimal digits, got {sha256!r}")
    return sha256.lower()


def download_file(url: str, dest: str | os.PathLike, sha256: str, timeout: float = 60.0,
                  chunk_size: int = 1 << 20) -> Path:
    """Fetch ``url`` to ``dest`` and accept it only if its SHA-256 is ``sha256``.

    The bytes are streamed into a temporary file in ``dest``'s folder while being
    hashed; only a verified file is renamed onto ``dest``. On a checksum mismatch
    :class:`ChecksumError` is raised (naming the file, the expected and the actual
    checksum); on an HTTP or network failure :class:`DownloadError`. In both cases
    neither ``dest`` nor a temporary file is left behind.
    """
    dest = Path(dest)
    if sha256 is None:
        raise ChecksumNotPinnedError(f"{dest.name}: refusing to download {url} without a pinned SHA-256")
    expected = _check_sha256_format(sha256, dest.name)
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"{dest.name}: unsupported URL scheme {scheme!r} in {url!r} (expected http, https or file)")
    request = urllib.request.Request(url, headers={"User-Agent": "robcurves-data/0.1"})
    with atomic_path(dest, suffix=".part") as tmp:
        h = hashlib.sha256()
        n = 0
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
                length = response.headers.get("Content-Length")
                while chunk := response.read(chunk_size):
                    h.update(chunk)
                    out.write(chunk)
                    n += len(chunk)
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{dest.name}: HTTP {e.code} {e.reason} from {url}") from e
        except urllib.error.URLError as e:
            raise DownloadError(f"{dest.name}: cannot fetch {url}: {e.reason}") from e
        except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
            raise DownloadError(f"{dest.name}: connection to {url} failed: {e}") from e
        if length is not None and length.isdigit() and int(length) != n:
            raise DownloadError(f"{dest.name}: download from {url} truncated: {n} of {length} bytes")
        actual = h.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"{dest.name}: SHA-256 mismatch for {url}: expected {expected}, got {actual} "
                f"({n} bytes); the download was discarded"
            )
    log.info("downloaded %s (%d bytes, sha256 %s)", dest, n, actual)
    return dest


def _pinned_sha256(src: DatasetSource, f: RemoteFile, overrides: dict[str, str] | None) -> str:
    """The SHA-256 a file must have: the user's pin if given, else the registry's."""
    pin = (overrides or {}).get(f.filename, f.sha256)
    if pin is None:
        hint = f" Its published MD5 is {f.md5}" + (f" and its size {f.size} bytes" if f.size else "") + "." if f.md5 else ""
        raise ChecksumNotPinnedError(
            f"{src.name}: no SHA-256 is pinned for {f.filename} ({f.url}): {f.checksum_source or _UNPINNED}. "
            f"Download it yourself and check it.{hint} Then pin its SHA-256 in this data set's source config "
            f"as sha256: {{{f.filename!r}: <64 hex digits>}}."
        )
    return _check_sha256_format(pin, f"{src.name}/{f.filename}")


def _unknown_overrides(src: DatasetSource, overrides: dict[str, str] | None) -> None:
    extra = set(overrides or {}) - {f.filename for f in src.files}
    if extra:
        raise ValueError(f"{src.name}: sha256 pins for unknown files {sorted(extra)}; files: {[f.filename for f in src.files]}")


def download_dataset(name: str, raw_dir: str | os.PathLike, mirror: str | None = None,
                     sha256: dict[str, str] | None = None, timeout: float = 60.0) -> dict[str, str]:
    """Fetch every file of data set ``name`` into ``raw_dir`` (its own folder).

    ``mirror`` replaces each URL's scheme, host and folder (``http://127.0.0.1:8000/``
    fetches ``.../train-images-idx3-ubyte.gz`` from there). ``sha256`` maps file
    names to SHA-256 pins that override (or supply) the registry's. Files already
    present with the right checksum are not fetched again. Returns file name ->
    verified SHA-256 (JSON-ready, for a manifest); the files are ``raw_dir / name``.
    """
    src = dataset_source(name)
    _unknown_overrides(src, sha256)
    pins = {f.filename: _pinned_sha256(src, f, sha256) for f in src.files}  # fail before fetching anything
    raw_dir = Path(raw_dir)
    for f in src.files:
        dest = raw_dir / f.filename
        if dest.is_file():
            if file_sha256(dest) == pins[f.filename]:
                log.info("%s: %s present and verified", name, dest)
                continue
            log.warning("%s: %s has the wrong checksum; fetching it again", name, dest)
        download_file(f.url_at(mirror), dest, pins[f.filename], timeout=timeout)
    return pins


def verify_downloaded(name: str, raw_dir: str | os.PathLike, sha256: dict[str, str] | None = None) -> dict[str, str]:
    """Check every raw file of ``name`` against its pin; return file name -> SHA-256."""
    src = dataset_source(name)
    _unknown_overrides(src, sha256)
    out = {}
    for f in src.files:
        pin = _pinned_sha256(src, f, sha256)
        path = Path(raw_dir) / f.filename
        if not path.is_file():
            raise FileNotFoundError(f"{name}: raw file {path} is missing; run download_dataset({name!r}, ...) first")
        actual = file_sha256(path)
        if actual != pin:
            raise ChecksumError(f"{path}: SHA-256 mismatch: expected {pin}, got {actual}")
        out[f.filename] = actual
    return out


# ---------------------------------------------------------------------------
# Parsers: published formats -> Dataset
# ---------------------------------------------------------------------------

FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

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


def _prepare_idx(name: str, raw: Path, class_names: list[str], source: str) -> tuple[Dataset, Dataset]:
    out = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = _idx_images(raw / f"{prefix}-images-idx3-ubyte.gz")
        y = _idx_labels(raw / f"{prefix}-labels-idx1-ubyte.gz", len(x))
        out.append(Dataset(x, y, name, split, class_names, source))
    return out[0], out[1]


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


def _prepare_cifar10(raw: Path) -> tuple[Dataset, Dataset]:
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


def _members(zf: zipfile.ZipFile) -> list[str]:
    """File names in a zip, without folders and macOS resource forks (``__MACOSX/``)."""
    return [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]


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
    names = set(_members(zf))
    for i, (member, row) in enumerate(items):
        if member not in names:
            raise ValueError(f"{where}: labelled image {member} is not in the archive")
        x[i] = _gtsrb_image(zf, member, row, crop_roi, size)
        y[i] = int(row["ClassId"])
    return x, y


def _prepare_gts(raw: Path, crop_roi: bool = False, size: int = 32) -> tuple[Dataset, Dataset]:
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
        csvs = sorted(n for n in _members(zf) if re.search(r"(^|/)GT-\d{5}\.csv$", n))
        if not csvs:
            raise ValueError("GTSRB_Final_Training_Images.zip: no per-class GT-xxxxx.csv label files")
        for c in csvs:
            folder = PurePosixPath(c).parent
            items += [(str(folder / r["Filename"]), r) for r in _gtsrb_rows(zf.read(c).decode("utf-8"), c)]
        x_tr, y_tr = _gtsrb_read(zf, items, crop_roi, size, "GTSRB_Final_Training_Images.zip")
    with zipfile.ZipFile(raw / "GTSRB_Final_Test_GT.zip") as zf:
        gt = [n for n in _members(zf) if PurePosixPath(n).name == "GT-final_test.csv"]
        if len(gt) != 1:
            raise ValueError("GTSRB_Final_Test_GT.zip: expected exactly one GT-final_test.csv")
        rows = _gtsrb_rows(zf.read(gt[0]).decode("utf-8"), gt[0])
    with zipfile.ZipFile(raw / "GTSRB_Final_Test_Images.zip") as zf:
        folders = {str(PurePosixPath(n).parent) for n in _members(zf) if n.lower().endswith(".ppm")}
        if len(folders) != 1:
            raise ValueError(f"GTSRB_Final_Test_Images.zip: expected the images in one folder, found {sorted(folders)}")
        folder = PurePosixPath(folders.pop())
        x_te, y_te = _gtsrb_read(zf, [(str(folder / r["Filename"]), r) for r in rows], crop_roi, size,
                                 "GTSRB_Final_Test_Images.zip")
    extra = {"crop_roi": bool(crop_roi)}
    return (Dataset(x_tr, y_tr, "gts", "train", GTSRB_CLASSES, src, dict(extra)),
            Dataset(x_te, y_te, "gts", "test", GTSRB_CLASSES, src, dict(extra)))


def _har_inner_zip(path: Path) -> zipfile.ZipFile:
    """The zip holding ``UCI HAR Dataset/``: UCI's current archive nests it in another zip."""
    outer = zipfile.ZipFile(path)
    nested = [n for n in _members(outer) if PurePosixPath(n).name == "UCI HAR Dataset.zip"]
    if nested:
        data = outer.read(nested[0])
        outer.close()
        return zipfile.ZipFile(io.BytesIO(data))
    return outer


def _prepare_har(raw: Path) -> tuple[Dataset, Dataset]:
    """UCI HAR: 561 features per window, scaled from [-1, 1] to [0, 1] as the paper did."""
    (f,) = DOWNLOADS["har"].files
    with _har_inner_zip(raw / f.filename) as zf:
        def member(suffix: str) -> str:
            hits = [n for n in _members(zf) if n.endswith("UCI HAR Dataset/" + suffix)]
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


def _prepare_tinyimagenet(raw: Path, grayscale: str = "drop") -> tuple[Dataset, Dataset]:
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
        all_names = _members(zf)
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


_PREPARERS: dict[str, tuple[Callable[..., tuple[Dataset, Dataset]], frozenset[str]]] = {
    "mnist": (lambda raw: _prepare_idx("mnist", raw, [str(i) for i in range(10)],
                                       "MNIST (LeCun, Cortes, Burges), IDX files"), frozenset()),
    "fmnist": (lambda raw: _prepare_idx("fmnist", raw, FMNIST_CLASSES, "Fashion-MNIST (Xiao et al. 2017), IDX files"),
               frozenset()),
    "cifar10": (_prepare_cifar10, frozenset()),
    "gts": (_prepare_gts, frozenset({"crop_roi", "size"})),
    "har": (_prepare_har, frozenset()),
    "tinyimagenet": (_prepare_tinyimagenet, frozenset({"grayscale"})),
}


def prepare_downloaded(name: str, raw_dir: str | os.PathLike, *, sha256: dict[str, str] | None = None,
                       verify: bool = True, options: dict[str, Any] | None = None) -> tuple[Dataset, Dataset]:
    """Convert the downloaded files of ``name`` (in ``raw_dir``) into train and test splits.

    With ``verify`` (default) every raw file is first checked against its pinned
    SHA-256 (``sha256`` overrides the registry). ``options`` are per data set:
    ``gts``: ``crop_roi`` (bool), ``size`` (int); ``tinyimagenet``: ``grayscale``
    (``"drop"`` or ``"replicate"``). The raw files' checksums go into the metadata.
    """
    dataset_source(name)  # clear error for unknown names
    prepare, allowed = _PREPARERS[name]
    options = dict(options or {})
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"{name}: unknown options {sorted(unknown)}; allowed: {sorted(allowed) or 'none'}")
    raw = Path(raw_dir)
    sums = verify_downloaded(name, raw, sha256) if verify else {}
    train, test = prepare(raw, **options)
    for ds in (train, test):
        ds.extra.setdefault("raw_sha256", sums)
        ds.extra.setdefault("homepage", DOWNLOADS[name].homepage)
        ds.extra.setdefault("urls", [f.url for f in DOWNLOADS[name].files])
        if options:
            ds.extra.setdefault("options", options)
    return train, test


# ---------------------------------------------------------------------------
# The single entry point
# ---------------------------------------------------------------------------

SOURCES = ("sklearn_digits", "sklearn_iris", "sklearn_wine", "sklearn_breast_cancer", "download")


def prepare_dataset(name: str, source_cfg: dict[str, Any],
                    raw_dir: str | os.PathLike | None) -> tuple[Dataset, Dataset]:
    """Train and test splits of data set ``name`` as its config describes them.

    ``source_cfg["source"]`` is one of :data:`SOURCES`:
      - ``sklearn_digits``, ``sklearn_iris``, ``sklearn_wine``, ``sklearn_breast_cancer``:
        bundled with scikit-learn; keys ``test_size`` (default 0.3) and ``split_seed``
        (default 0);
      - ``download``: fetched into ``raw_dir`` (only files missing or with a wrong
        checksum) and converted. Keys: ``download`` (the :data:`DOWNLOADS` entry,
        default ``name``), ``mirror``, ``sha256`` (file name -> pinned SHA-256),
        ``options`` (see :func:`prepare_downloaded`).
    Both splits are named ``name``. ``raw_dir`` is only used by ``download``.
    """
    cfg = dict(source_cfg or {})
    source = cfg.get("source")
    if source == "sklearn_digits" or source in {f"sklearn_{n}" for n in SKLEARN_TABULAR}:
        test_size, seed = cfg.get("test_size", 0.3), cfg.get("split_seed", 0)
        if source == "sklearn_digits":
            train, test = load_sklearn_digits(test_size=test_size, seed=seed)
        else:
            train, test = load_sklearn_tabular(source.removeprefix("sklearn_"), test_size=test_size, seed=seed)
    elif source == "download":
        key = cfg.get("download", name)
        if raw_dir is None:
            raise ValueError(f"data set {name!r}: source 'download' needs a raw_dir for the downloaded files")
        if key not in DOWNLOADS:
            raise ValueError(f"data set {name!r}: unknown download {key!r}; known: {_known(DOWNLOADS)}")
        download_dataset(key, raw_dir, mirror=cfg.get("mirror"), sha256=cfg.get("sha256"))
        train, test = prepare_downloaded(key, raw_dir, sha256=cfg.get("sha256"), options=cfg.get("options"))
    else:
        raise ValueError(f"data set {name!r}: unknown source {source!r}; known: {', '.join(SOURCES)}")
    return tuple(ds if ds.name == name else replace(ds, name=name) for ds in (train, test))  # type: ignore[return-value]
