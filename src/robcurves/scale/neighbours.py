"""The result of the nearest-neighbour search and its `.npz` file (:data:`robcurves.paths.DISTANCES`).

:class:`NearestNeighbours` holds, per kind (``inter``: nearest point of another class,
``intra``: nearest other point of the same class) and per norm, every point's nearest
distance and the index of that neighbour; :func:`save_nearest` / :func:`load_nearest`
write and read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from robcurves.atomic import save_npz
from robcurves.norms import parse_norm

KINDS = ("inter", "intra")


@dataclass
class NearestNeighbours:
    """Per-point nearest inter- and intra-class neighbours, per norm.

    ``distance[kind][norm]`` is a float64 array of shape ``(N,)`` (``kind`` is ``"inter"``
    or ``"intra"``, ``norm`` is ``"linf"``, ``"l2"`` or ``"l1"``), measured in that norm
    on the flattened inputs; ``+inf`` where no such neighbour exists.
    ``index[kind][norm]`` is the int64 index of the neighbour, ``-1`` where none exists.
    ``duplicate_pairs`` is an ``(K, 2)`` int64 array of index pairs ``i < j`` whose
    features are identical but whose labels differ.
    """

    y: np.ndarray
    norms: tuple[str, ...]
    distance: dict[str, dict[str, np.ndarray]]
    index: dict[str, dict[str, np.ndarray]]
    duplicate_pairs: np.ndarray
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_classes(self) -> int:
        return int(len(np.unique(self.y)))

    def inter(self, norm: str) -> np.ndarray:
        """Nearest other-class distance of every point, in ``norm``."""
        return self.distance["inter"][parse_norm(norm).name]

    def intra(self, norm: str) -> np.ndarray:
        """Nearest same-class distance of every point (itself excluded), in ``norm``."""
        return self.distance["intra"][parse_norm(norm).name]

    @property
    def n_duplicate_points(self) -> int:
        """Number of points that have an exact duplicate with another label."""
        return int(len(np.unique(self.duplicate_pairs))) if self.duplicate_pairs.size else 0


def save_nearest(path: str | os.PathLike, nn: NearestNeighbours, meta: dict[str, Any] | None = None) -> None:
    """Write ``nn`` atomically as ``.npz`` (arrays ``{kind}_{norm}_distance`` / ``_index``)."""
    arrays: dict[str, np.ndarray] = {"y": nn.y, "duplicate_pairs": nn.duplicate_pairs}
    for k in KINDS:
        for nm in nn.norms:
            arrays[f"{k}_{nm}_distance"] = nn.distance[k][nm]
            arrays[f"{k}_{nm}_index"] = nn.index[k][nm]
    info = {**nn.meta, **(meta or {}), "norms": list(nn.norms), "input_shape": list(nn.input_shape)}
    arrays["meta"] = np.array(json.dumps(info, sort_keys=True))
    save_npz(path, **arrays)


def load_nearest(path: str | os.PathLike) -> NearestNeighbours:
    """Read a file written by :func:`save_nearest`."""
    with np.load(path, allow_pickle=False) as f:
        if "meta" not in f.files or "y" not in f.files:
            raise ValueError(f"{path}: not a robcurves nearest-distance file")
        info = json.loads(str(f["meta"]))
        norms = tuple(info["norms"])
        distance = {k: {nm: f[f"{k}_{nm}_distance"] for nm in norms} for k in KINDS}
        index = {k: {nm: f[f"{k}_{nm}_index"] for nm in norms} for k in KINDS}
        y, dup = f["y"], f["duplicate_pairs"]
    shape = tuple(int(s) for s in info.pop("input_shape"))
    info.pop("norms")
    return NearestNeighbours(y=y, norms=norms, distance=distance, index=index,
                             duplicate_pairs=dup, input_shape=shape, meta=info)


def load_results(paths: Mapping[str, str | os.PathLike]) -> dict[str, NearestNeighbours]:
    """``{name: path}`` of :func:`save_nearest` files, loaded in order."""
    return {name: load_nearest(p) for name, p in paths.items()}
