"""Data sets in one on-disk format that every later stage reads.

Where things are:
  - :mod:`~robcurves.data.format`: :class:`Dataset`, the ``.npz`` format
    (:func:`save_dataset`, :func:`load_dataset`), validation and the content checksum;
  - :mod:`~robcurves.data.bundled`: the sets bundled with scikit-learn (offline):
    ``digits`` (8x8 images), and the tabular sets ``iris``, ``wine`` and
    ``breast_cancer`` (stored as ``(N, 1, 1, F)``);
  - :mod:`~robcurves.data.download`: the registry :data:`DOWNLOADS` of the downloaded
    sets (``mnist``, ``fmnist``, ``cifar10``, ``gts`` (GTSRB), ``har`` (UCI HAR) and
    ``tinyimagenet``) with pinned SHA-256 checksums, the HTTP download and the
    verification of every file before it is used;
  - :mod:`~robcurves.data.sources`: one converter per published format (``idx``,
    ``cifar10``, ``gtsrb``, ``har``, ``tinyimagenet``);
  - :mod:`~robcurves.data.prepare`: :func:`prepare_downloaded` and
    :func:`prepare_dataset`, the single entry point the workflow calls.

Everything public is re-exported here: ``from robcurves.data import ...`` is the API.
"""

from robcurves.data.bundled import SKLEARN_TABULAR, load_sklearn_digits, load_sklearn_tabular
from robcurves.data.download import (
    DOWNLOADS,
    ChecksumError,
    ChecksumNotPinnedError,
    DatasetSource,
    DownloadError,
    RemoteFile,
    dataset_source,
    download_dataset,
    download_file,
    file_sha256,
    raw_filenames,
    verify_downloaded,
)
from robcurves.data.format import Dataset, content_sha256, load_dataset, save_dataset, validate_arrays
from robcurves.data.prepare import SOURCES, prepare_dataset, prepare_downloaded
from robcurves.data.sources.gtsrb import GTSRB_CLASSES
from robcurves.data.sources.idx import FMNIST_CLASSES, read_idx

# Internals that tests/test_data.py reaches through this package, as it did through data.py.
from robcurves.data.download import _SHA256_RE  # noqa: F401
from robcurves.data.sources.cifar10 import _unpickle  # noqa: F401
from robcurves.data.sources.idx import _idx_images  # noqa: F401

__all__ = [
    "DOWNLOADS", "FMNIST_CLASSES", "GTSRB_CLASSES", "SKLEARN_TABULAR", "SOURCES",
    "ChecksumError", "ChecksumNotPinnedError", "Dataset", "DatasetSource", "DownloadError", "RemoteFile",
    "content_sha256", "dataset_source", "download_dataset", "download_file", "file_sha256", "load_dataset",
    "load_sklearn_digits", "load_sklearn_tabular", "prepare_dataset", "prepare_downloaded", "raw_filenames",
    "read_idx", "save_dataset", "validate_arrays", "verify_downloaded",
]
