"""The workflow's attack stage gives the same curves whatever the shard count.

Each shard attacks its contiguous slice of the test points; every random choice is the
point's own (seeded by its test-set index), and so is the choice of the points the
gradient-masking check looks at. Here the stage functions of ``robcurves.pipeline`` run
the same config as 1 shard and as 3 shards on a small ReLU MLP, with the masking check
on (a large random share, so that many points are checked), and the merged curves must
be byte-identical (apart from the recorded shard count).
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")

N_POINTS = 24


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from sklearn.neural_network import MLPClassifier

    from robcurves.data import load_sklearn_digits, save_dataset
    from robcurves.models import save_model

    folder = tmp_path_factory.mktemp("shards")
    train, test = load_sklearn_digits(test_size=0.3, seed=0)
    clf = MLPClassifier(hidden_layer_sizes=(16,), activation="relu", max_iter=300, random_state=0)
    clf.fit(train.x.reshape(len(train.x), -1), train.y)
    inp = keras.Input(train.x.shape[1:])
    d1, d2 = keras.layers.Dense(16), keras.layers.Dense(10)
    model = keras.Model(inp, d2(keras.layers.ReLU()(d1(keras.layers.Flatten()(inp)))))
    d1.set_weights([clf.coefs_[0].astype(np.float32), clf.intercepts_[0].astype(np.float32)])
    d2.set_weights([clf.coefs_[1].astype(np.float32), clf.intercepts_[1].astype(np.float32)])
    save_model(model, folder / "model.keras", {"dataset": "digits", "made_by": {"kind": "test"}})
    save_dataset(folder / "test.npz", test)
    return folder


def _curve(folder, norm: str, n_shards: int, attack: dict) -> dict:
    from robcurves.pipeline import attack_shard, merge_curve

    out = folder / f"{norm}_{n_shards}"
    out.mkdir(exist_ok=True)
    shards = []
    for s in range(n_shards):
        path = out / f"shard{s}of{n_shards}.npz"
        attack_shard(str(folder / "model.keras"), str(folder / "test.npz"), str(path), norm, s, n_shards,
                     N_POINTS, attack)
        shards.append(str(path))
    merge_curve(shards, str(folder / "test.npz"), str(out / "curve.json"), N_POINTS, "mlp",
                {"test": True}, attack=attack, norm=norm)
    return json.loads((out / "curve.json").read_text())


@pytest.mark.parametrize("norm,methods", [
    # The default preset (pruning, compaction, several runs per point) ...
    ("l2", None),
    # ... and a weak search, which the masking check beats on some of the points it checks.
    ("linf", [{"name": "fmn", "targets": 0, "steps": 3, "refine_steps": 0}]),
])
def test_one_and_three_shards_give_identical_curves(files, norm, methods):
    attack = {"seed": 0, "batch_size": 64, "masking_check": {"sample": 0.4, "queries": 100}}
    if methods:
        attack["methods"] = methods
    one = _curve(files, norm, 1, attack)
    three = _curve(files, norm, 3, attack)
    assert one["config"].pop("n_shards") == 1 and three["config"].pop("n_shards") == 3
    check = one["config"]["masking_check"]
    assert check["checked"] >= 8, check  # the check ran on a good share of the points
    if methods:
        assert check["beaten"] >= 1, check  # ... and changed some distances
    assert json.dumps(one, sort_keys=True) == json.dumps(three, sort_keys=True)
