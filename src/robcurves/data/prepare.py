"""The single entry point the workflow calls: :func:`prepare_dataset`.

It dispatches on the config's ``source``: a set bundled with scikit-learn
(:mod:`robcurves.data.bundled`), or a download (:mod:`robcurves.data.download`)
converted by its source's module (:mod:`robcurves.data.sources`) in
:func:`prepare_downloaded`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from robcurves.data.bundled import SKLEARN_TABULAR, load_sklearn_digits, load_sklearn_tabular
from robcurves.data.download import DOWNLOADS, _known, dataset_source, download_dataset, verify_downloaded
from robcurves.data.format import Dataset
from robcurves.data.sources import cifar10, gtsrb, har, idx, tinyimagenet

# Converter and the options it accepts, per DOWNLOADS entry.
_PREPARERS: dict[str, tuple[Callable[..., tuple[Dataset, Dataset]], frozenset[str]]] = {
    "mnist": (idx.convert_mnist, frozenset()),
    "fmnist": (idx.convert_fmnist, frozenset()),
    "cifar10": (cifar10.convert_cifar10, frozenset()),
    "gts": (gtsrb.convert_gtsrb, frozenset({"crop_roi", "size"})),
    "har": (har.convert_har, frozenset()),
    "tinyimagenet": (tinyimagenet.convert_tinyimagenet, frozenset({"grayscale"})),
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
