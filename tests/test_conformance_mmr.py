"""Conformance: the real MMR-Universal MNIST network reproduces its published test error.

Croce & Hein (ICLR 2020, Table 2) report a test error of 3.04% for
``mmr_univ_mnist_gammas_1.0_0.175_lambdas_3.0_12.0.mat`` on the 10,000 MNIST test
images. A correct converter (layout, SAME padding, NHWC flatten) gives exactly 304
errors. The reference files are not part of the repository; without them the test skips.
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from robcurves import models as M
from robcurves.data import read_idx

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
MAT = REFERENCE / "mmr-universal" / "mmr_univ_mnist_gammas_1.0_0.175_lambdas_3.0_12.0.mat"
IMAGES = REFERENCE / "mnist" / "t10k-images-idx3-ubyte.gz"
LABELS = REFERENCE / "mnist" / "t10k-labels-idx1-ubyte.gz"

pytestmark = pytest.mark.skipif(
    not all(p.exists() for p in (MAT, IMAGES, LABELS)),
    reason=f"reference artifacts (MMR-Universal .mat, MNIST test set) not found under {REFERENCE}",
)


def test_mmr_universal_mnist_test_error_is_3_04_percent(tmp_path):
    x = read_idx(IMAGES).astype(np.float32)[..., None] / 255.0
    y = read_idx(LABELS).astype(np.int64)
    assert x.shape == (10000, 28, 28, 1) and y.shape == (10000,)
    assert list(y[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]

    model = M.convert_mat(MAT)  # layout and input shape inferred
    assert M.model_input_shape(model) == (28, 28, 1)
    errors = int(np.sum(M.predict_logits(model, x).argmax(axis=1) != y))
    assert errors == 304, f"test error {errors / 100:.2f}%, published 3.04%"

    # The saved and reloaded model gives the same predictions.
    path = tmp_path / "model.keras"
    M.save_model(model, path, M.mat_sidecar(MAT, model, dataset="mnist"))
    loaded, sidecar = M.load_model(path)
    assert sidecar["made_by"]["kind"] == "convert" and sidecar["made_by"]["layout"] == "cnn_lenet_small"
    assert int(np.sum(M.predict_logits(loaded, x).argmax(axis=1) != y)) == 304
