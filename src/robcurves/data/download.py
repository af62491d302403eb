"""Downloads: the registry of canonical URLs with pinned SHA-256 checksums, and HTTP.

:data:`DOWNLOADS` names every downloadable data set (``mnist``, ``fmnist``,
``cifar10``, ``gts`` (GTSRB), ``har`` (UCI HAR), ``tinyimagenet``) and its files.
Every file is checked against a pinned SHA-256 before it is used
(:func:`download_file`, :func:`verify_downloaded`); a file without a published
SHA-256 is refused until the user pins one.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from robcurves.atomic import atomic_path

# The name data.py logged under, so that log lines read as before the split.
log = logging.getLogger("robcurves.data")


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


def _tfds_pinned(folder: str, tfds_file: str, rows: list[tuple[str, int, str]]) -> tuple[RemoteFile, ...]:
    """Files under ``folder`` whose (name, size, SHA-256) rows tensorflow_datasets pins in ``tfds_file``."""
    return tuple(RemoteFile(folder + fn, sha, size, checksum_source=f"{_TFDS}/{tfds_file}") for fn, size, sha in rows)


# Checksums are of the files exactly as published (the compressed archives).
DOWNLOADS: dict[str, DatasetSource] = {
    # MNIST: LeCun's own server now often refuses downloads; this is the CVDF copy
    # that tensorflow_datasets downloads and pins.
    "mnist": DatasetSource(
        "mnist", "MNIST (LeCun, Cortes, Burges)", "http://yann.lecun.com/exdb/mnist/",
        _tfds_pinned("https://storage.googleapis.com/cvdf-datasets/mnist/", "mnist.txt", [
            ("train-images-idx3-ubyte.gz", 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            ("train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            ("t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            ("t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ]),
    ),
    "fmnist": DatasetSource(
        "fmnist", "Fashion-MNIST (Xiao, Rasul, Vollgraf)", "https://github.com/zalandoresearch/fashion-mnist",
        _tfds_pinned("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "fashion_mnist.txt", [
            ("train-images-idx3-ubyte.gz", 26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            ("train-labels-idx1-ubyte.gz", 29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            ("t10k-images-idx3-ubyte.gz", 4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            ("t10k-labels-idx1-ubyte.gz", 5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        ]),
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
