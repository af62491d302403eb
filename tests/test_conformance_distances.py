"""Conformance: Table 2's MNIST row (Risse et al., ICLR 2021) on the real MNIST test set.

The paper reports, for the 10,000 MNIST test points, the min and max over points of the
nearest other-class distance (distances below 1e-4 dropped), to two decimals:
min linf 0.88, l2 3.03, l1 19.16; max linf 1.00, l2 10.18, l1 132.38.
Takes about 20-60 s on two CPU cores.
"""

from pathlib import Path

import numpy as np
import pytest

from robcurves.data import read_idx
from robcurves.scale import nearest_neighbour_distances
from robcurves.scale import distance_summary

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "mnist"
PAPER = {"linf": (0.88, 1.00), "l2": (3.03, 10.18), "l1": (19.16, 132.38)}


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"MNIST reference files not found at {MNIST}",
)
def test_mnist_inter_class_min_and_max_match_table2():
    x = read_idx(MNIST / "t10k-images-idx3-ubyte.gz").astype(np.float32)[..., None] / np.float32(255)
    y = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    assert x.shape == (10000, 28, 28, 1)
    nn = nearest_neighbour_distances(x, y, device="cpu")
    assert nn.meta["grid_scale"] == 255
    for norm, (lo, hi) in PAPER.items():
        s = distance_summary(nn.distance["inter"][norm], min_distance=1e-4)
        assert (round(s["min"], 2), round(s["max"], 2)) == (lo, hi), (norm, s)
        # every neighbour really is of another class, at the reported distance
        j = nn.index["inter"][norm]
        assert np.all(y[j] != y)
    i = int(np.argmin(nn.distance["inter"]["l2"]))
    j = int(nn.index["inter"]["l2"][i])
    direct = float(np.linalg.norm(x[i].ravel().astype(np.float64) - x[j].ravel().astype(np.float64)))
    assert abs(direct - nn.distance["inter"]["l2"][i]) < 1e-6
