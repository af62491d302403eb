"""The workflow's attack stage gives the same curves whatever the shard count.

Each shard attacks its contiguous slice of the test points; every random choice is the
point's own (seeded by its test-set index), and so is the choice of the points the
gradient-masking check looks at. Here the stage functions of ``robcurves.stages`` run
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


_SHARDS: dict = {}  # (folder, norm, n_shards, attack) -> shard paths, made once per module


def _shards(folder, norm: str, n_shards: int, attack: dict) -> list[str]:
    from robcurves.stages import attack_shard

    key = (str(folder), norm, n_shards, json.dumps(attack, sort_keys=True))
    if key not in _SHARDS:
        out = folder / f"{norm}_{n_shards}_{len(_SHARDS)}"
        out.mkdir()
        paths = [str(out / f"shard{s}of{n_shards}.npz") for s in range(n_shards)]
        for s, path in enumerate(paths):
            attack_shard(str(folder / "model.keras"), str(folder / "test.npz"), path, norm, s, n_shards,
                         N_POINTS, attack)
        _SHARDS[key] = paths
    return _SHARDS[key]


def _curve(folder, norm: str, n_shards: int, attack: dict, warm: "dict | None" = None, name: str = "curve") -> dict:
    """The merged curve of ``norm``; ``warm``: other norm -> its attack settings (warm starts
    from that norm's shards, made with the same shard count)."""
    from robcurves.stages import merge_curve

    shards = _shards(folder, norm, n_shards, attack)
    warm_shards = {n: _shards(folder, n, n_shards, a) for n, a in (warm or {}).items()}
    out = folder / f"{name}_{norm}_{n_shards}.json"
    merge_curve(shards, str(folder / "test.npz"), str(out), N_POINTS, "mlp", {"test": True}, attack=attack,
                norm=norm, model_path=str(folder / "model.keras") if warm else None, warm_shards=warm_shards)
    return json.loads(out.read_text())


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


def _dist(curve: dict) -> np.ndarray:
    return np.array([np.inf if v is None else v for v in curve["points"]["distance"]], float)


WEAK_LINF = {"seed": 0, "batch_size": 64, "masking_check": {"enabled": False},
             "methods": [{"name": "fmn", "targets": 0, "steps": 3, "refine_steps": 0}]}
L2 = {"seed": 0, "batch_size": 64, "masking_check": {"enabled": False}}


def test_an_l2_witness_improves_an_linf_distance(files):
    """Warm starts at the merge: the l2 attack's adversarial examples, measured in linf,
    beat a weak linf search on some points; each such distance is the verified,
    line-searched l2 witness's (recomputed here), and no distance gets longer. The
    curve stays the same with 1 and 3 shards."""
    from robcurves.attacks import shorten_witnesses
    from robcurves.data import load_dataset
    from robcurves.models import load_model
    from robcurves.shards import load_attack_shards

    plain = _curve(files, "linf", 1, WEAK_LINF)
    one = _curve(files, "linf", 1, WEAK_LINF, warm={"l2": L2}, name="warm")
    d0, d1 = _dist(plain), _dist(one)
    warm = one["config"]["warm_starts"]
    improved = d1 < d0
    assert improved.sum() >= 3 and warm["points_improved"] == improved.sum() == warm["l2"]["improved"], warm
    assert np.all(d1 <= d0)
    assert all(m == "warm_start:l2" for m, i in zip(one["points"]["method"], improved) if i)
    # The improved distances are those of the l2 witnesses, re-verified and shortened in linf.
    model, _ = load_model(str(files / "model.keras"))
    test = load_dataset(str(files / "test.npz"), verify=False)
    s = load_attack_shards(_shards(files, "l2", 1, L2))[0]
    adv = (s["status"] == "adversarial").reshape((-1,) + (1,) * (s["x_adv"].ndim - 1))
    w = np.where(adv, s["x_adv"], np.nan)
    dl, _ = shorten_witnesses(model, test.x[:N_POINTS], test.y[:N_POINTS], "linf", w.astype(np.float32))
    np.testing.assert_array_equal(d1[improved], dl[improved].astype(float))
    three = _curve(files, "linf", 3, WEAK_LINF, warm={"l2": L2}, name="warm")
    assert one["config"].pop("n_shards") == 1 and three["config"].pop("n_shards") == 3
    assert json.dumps(one, sort_keys=True) == json.dumps(three, sort_keys=True)


def test_an_unverified_witness_is_never_used(files, tmp_path):
    """A shard that claims adversarial examples a hair away from the inputs (they are not
    adversarial) changes nothing: every witness is re-checked on the model first."""
    from attack_shards import warm_start_shard
    from robcurves.data import load_dataset

    test = load_dataset(str(files / "test.npz"), verify=False)
    x = test.x[:N_POINTS]
    fake = str(tmp_path / "shard0of1.npz")
    lie = np.clip(x + 1e-3, 0, 1).astype(np.float32)
    warm_start_shard(fake, str(files / "model.keras"), str(files / "test.npz"), "l2", np.arange(N_POINTS),
                     np.full(N_POINTS, 1e-3, np.float32), lie, np.array(["adversarial"] * N_POINTS))
    from robcurves.stages import merge_curve

    plain = _curve(files, "linf", 1, WEAK_LINF)
    out = tmp_path / "curve.json"
    merge_curve(_shards(files, "linf", 1, WEAK_LINF), str(files / "test.npz"), str(out), N_POINTS, "mlp",
                {"test": True}, attack=WEAK_LINF, norm="linf", model_path=str(files / "model.keras"),
                warm_shards={"l2": [fake]})
    got = json.loads(out.read_text())
    attacked = sum(st != "misclassified" for st in plain["points"]["status"])  # misclassified points stay at 0
    assert got["config"]["warm_starts"]["l2"] == {"witnesses": attacked, "verified": 0, "improved": 0}
    assert got["points"] == plain["points"] and got["steps"] == plain["steps"]
