"""Data sets bundled with scikit-learn (offline): ``digits`` and the tabular sets.

``digits`` holds 8x8 images; ``iris``, ``wine`` and ``breast_cancer`` (for the scale
experiment) are stored as ``(N, 1, 1, F)``. Every split is stratified by class and
fixed by a seed.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from robcurves.data.format import Dataset


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
