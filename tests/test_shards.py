"""Scatter/gather of attack shards: empty shards, missing shards, mismatched shards.

The unit tests write shard files with ``robcurves.shards`` directly (no TensorFlow, no
attack); one end-to-end test asks Snakemake for more shards than points.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from robcurves.shards import (
    load_attack_shard,
    merge_attack_shards,
    save_attack_shard,
    shard_indices,
)

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))
import workflow_runs as wr  # noqa: E402

SETTINGS = {"norm": "l2", "attack": {"batch_size": 64, "seed": 0}, "n_points": 3, "model": "m",
            "model_made_by": {"kind": "train"}, "data_sha256": "0" * 64}


def _result(indices: np.ndarray, norm: str = "l2") -> SimpleNamespace:
    """What robcurves.attacks returns, for the points ``indices``: distance = index / 10."""
    n = len(indices)
    return SimpleNamespace(
        norm=norm, distances=indices.astype(np.float32) / 10, x_adv=np.zeros((n, 2, 2, 1), np.float32),
        status=np.array(["adversarial"] * n), reason=np.array([""] * n), method=np.array(["pgd"] * n),
        per_method={"pgd": indices.astype(np.float32) / 10}, config={"methods": ["pgd"]},
    )


def _write_shards(folder: Path, n_points: int, n_shards: int, settings: dict = SETTINGS) -> list[Path]:
    paths = []
    for i in range(n_shards):
        idx = shard_indices(n_points, n_shards, i)
        path = folder / f"shard{i}of{n_shards}.npz"
        save_attack_shard(path, _result(idx, settings["norm"]), idx, i, n_shards, settings)
        paths.append(path)
    return paths


def test_more_shards_than_points_gives_empty_shards():
    parts = [shard_indices(3, 5, i) for i in range(5)]
    assert [len(p) for p in parts] == [1, 1, 1, 0, 0]
    assert np.array_equal(np.concatenate(parts), np.arange(3))
    assert all(p.dtype == np.int64 for p in parts)
    # Contiguous, near-equal, and a partition for any split.
    for n, k in [(0, 1), (0, 3), (7, 3), (10, 10), (539, 8)]:
        parts = [shard_indices(n, k, i) for i in range(k)]
        assert np.array_equal(np.concatenate(parts), np.arange(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("n_shards,shard", [(0, 0), (3, 3), (3, -1)])
def test_shard_numbers_out_of_range_are_refused(n_shards, shard):
    with pytest.raises(ValueError, match="shard"):
        shard_indices(5, n_shards, shard)


def test_empty_shards_merge_into_the_full_set_of_points(tmp_path):
    paths = _write_shards(tmp_path, n_points=3, n_shards=5)
    empty = load_attack_shard(paths[4])
    assert empty["indices"].shape == (0,) and empty["distances"].shape == (0,)
    assert empty["per_method_distances"].shape == (1, 0)
    merged = merge_attack_shards(paths, n_points=3)
    assert np.array_equal(merged["indices"], np.arange(3))
    assert np.allclose(merged["distances"], [0.0, 0.1, 0.2])
    assert merged["status"].tolist() == ["adversarial"] * 3


def test_missing_shard_at_merge_time_is_named(tmp_path):
    paths = _write_shards(tmp_path, n_points=6, n_shards=3)
    paths[1].unlink()
    with pytest.raises(FileNotFoundError) as err:
        merge_attack_shards(paths, n_points=6)
    assert str(paths[1]) in str(err.value)
    assert str(paths[0]) not in str(err.value)


def test_shard_made_with_other_settings_is_refused_by_name(tmp_path):
    paths = _write_shards(tmp_path, n_points=6, n_shards=3)
    other = dict(SETTINGS, attack={"batch_size": 64, "seed": 1})
    idx = shard_indices(6, 3, 2)
    save_attack_shard(paths[2], _result(idx), idx, 2, 3, other)
    with pytest.raises(ValueError, match="other settings") as err:
        merge_attack_shards(paths, n_points=6)
    assert str(paths[2]) in str(err.value)


def test_shard_of_another_split_or_norm_or_place_is_refused_by_name(tmp_path):
    # Made for 2 shards, merged as one of 3.
    a = _write_shards(tmp_path / "a", n_points=6, n_shards=3)
    b = _write_shards(tmp_path / "b", n_points=6, n_shards=2)
    with pytest.raises(ValueError, match="made for 2 shards") as err:
        merge_attack_shards([a[0], b[1], a[2]], n_points=6)
    assert str(b[1]) in str(err.value)
    # Another norm.
    c = _write_shards(tmp_path / "c", n_points=6, n_shards=3, settings=dict(SETTINGS, norm="linf"))
    with pytest.raises(ValueError, match="norm") as err:
        merge_attack_shards([a[0], a[1], c[2]], n_points=6)
    assert str(c[2]) in str(err.value)
    # Shards in the wrong order.
    with pytest.raises(ValueError, match="holds shard 1, expected shard 0") as err:
        merge_attack_shards([a[1], a[0], a[2]], n_points=6)
    assert str(a[1]) in str(err.value)
    # Right shard number, but made over another number of points.
    d = _write_shards(tmp_path / "d", n_points=9, n_shards=3)
    with pytest.raises(ValueError, match="should cover") as err:
        merge_attack_shards(d, n_points=6)
    assert str(d[0]) in str(err.value)


def test_a_file_that_is_not_a_shard_is_refused(tmp_path):
    bad = tmp_path / "shard0of1.npz"
    np.savez(bad, meta=np.array(json.dumps({"format": "something else"})))
    with pytest.raises(ValueError, match="not an attack shard"):
        merge_attack_shards([bad], n_points=0)


@pytest.mark.slow
def test_workflow_with_more_shards_than_points(tiny_run, tmp_path_factory):
    """Three shards over two points, from a second config file: one shard is empty."""
    root = tmp_path_factory.mktemp("shards")
    workdir = wr.seed_workdir(tiny_run, root / "run")
    more_shards = root / "more_shards.yaml"
    more_shards.write_text("attacks:\n  n_points: 2\n  shards: 3\n")
    target = "results/curves/digits/tiny_st/linf.json"
    argv = wr.snakemake_argv(workdir, "--cores", "2", target=target, configfiles=(wr.CONFIG, more_shards))
    wr.run_snakemake(argv, workdir.with_suffix(".log"))
    shards = sorted((workdir / "results/attacks/digits/tiny_st/linf").glob("*.npz"))
    assert [p.name for p in shards] == ["shard0of3.npz", "shard1of3.npz", "shard2of3.npz"]
    assert [len(load_attack_shard(p)["indices"]) for p in shards] == [1, 1, 0]
    curve = json.loads((workdir / target).read_text())
    assert curve["n_points"] == 2 and curve["config"]["n_shards"] == 3
    assert curve["points"]["index"] == [0, 1]


# ----------------------------------------------------------------- the settings digest

@pytest.fixture()
def made_by_this_code(tmp_path):
    """Two shards made with the settings this code records (tiny model, default methods),
    the data file they were made from, and a merge function for them."""
    import keras

    from robcurves.data import Dataset, save_dataset
    from robcurves.stages import attack_settings, merge_curve

    inp = keras.Input((2, 2, 1))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    x = np.random.default_rng(0).random((6, 2, 2, 1)).astype(np.float32)
    ds = Dataset(x, np.zeros(6, np.int64), "toy", "test", ["a", "b", "c"], "test")
    save_dataset(tmp_path / "test.npz", ds)
    attack = {"batch_size": 64, "seed": 0}  # no methods: the package's defaults
    settings = attack_settings("l2", attack, 6, model, {"name": "m", "bounds": [0.0, 1.0]}, ds.meta["sha256"])
    paths = _write_shards(tmp_path, n_points=6, n_shards=2, settings=settings)

    def merge():
        return merge_curve([str(p) for p in paths], str(tmp_path / "test.npz"), str(tmp_path / "l2.json"), 6, "m",
                           {}, attack=attack, norm="l2")

    return settings, paths, merge


def test_digest_holds_the_version_and_the_resolved_methods(made_by_this_code):
    import robcurves
    from robcurves.attacks import default_methods

    settings, paths, merge = made_by_this_code
    assert settings["robcurves_version"] == robcurves.__version__
    assert [m["name"] for m in settings["methods"]] == [m["name"] for m in default_methods("l2")]
    assert all("steps" in m and "refine_steps" in m for m in settings["methods"])  # every option resolved
    assert merge().n_points == 6  # made by this code: merges


def test_a_changed_default_refuses_to_merge_with_old_shards(made_by_this_code, monkeypatch):
    from robcurves.attacks import base

    _, paths, merge = made_by_this_code
    monkeypatch.setitem(base.COMMON_OPTIONS, "refine_steps", 20)  # a default changes in a new version
    with pytest.raises(ValueError) as err:
        merge()
    msg = str(err.value)
    assert str(paths[0]) in msg and "methods" in msg and "refine_steps" in msg
    assert "Delete the stale shards" in msg


def test_shards_of_another_version_refuse_to_merge(made_by_this_code, monkeypatch):
    import robcurves

    _, paths, merge = made_by_this_code
    monkeypatch.setattr(robcurves, "__version__", "9.9.9")
    with pytest.raises(ValueError, match=r"robcurves_version: shard has '0\.1\.0', this code makes '9\.9\.9'"):
        merge()


def test_shards_made_before_the_digest_had_a_version_are_refused(tmp_path, made_by_this_code):
    settings, _, merge = made_by_this_code
    old = {k: v for k, v in settings.items() if k not in ("robcurves_version", "methods")}
    _write_shards(tmp_path, n_points=6, n_shards=2, settings=old)
    with pytest.raises(ValueError, match=r"not recorded"):
        merge()


# ----------------------------------------------------------------- the exact stage's warm start

def test_the_exact_stage_reads_attack_shards_with_the_same_checks(made_by_this_code, tmp_path):
    """The warm start reads shards with the one reader: shards that the attack stage made on this
    model and data are read; a stale one (other weights, data or box) or a set with mixed
    settings is refused before any solve, naming the file."""
    import keras

    from robcurves import models
    from robcurves.exact.stage import exact_shard, load_attack_warm_start, warm_start_settings

    settings, paths, _ = made_by_this_code
    inp = keras.Input((2, 2, 1))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    sidecar = {"name": "m", "bounds": [0.0, 1.0], "dataset": "toy", "made_by": {"kind": "test"}}
    data = str(tmp_path / "test.npz")
    # The shards of made_by_this_code were made on another model (other random weights).
    expected = warm_start_settings(model, sidecar, settings["data_sha256"], "l2")
    with pytest.raises(ValueError, match="model_weights_sha256") as err:
        load_attack_warm_start(paths, np.arange(6), "l2", (2, 2, 1), expected=expected)
    assert str(paths[0]) in str(err.value)
    fresh = dict(settings, model_weights_sha256=warm_start_settings(model, sidecar, "", "l2")["model_weights_sha256"])
    stale = {"model_weights_sha256": "0" * 64, "data_sha256": "f" * 64, "bounds": [-1.0, 1.0]}
    models.save_model(model, tmp_path / "model.keras", sidecar)
    for key, value in stale.items():
        shards = _write_shards(tmp_path / key, n_points=6, n_shards=2, settings=dict(fresh, **{key: value}))
        with pytest.raises(ValueError, match=key) as err:
            exact_shard(str(tmp_path / "model.keras"), data, str(tmp_path / "out.npz"), "l2", 0, 1, 6,
                        {"time_limit": 1}, attack_paths=[str(p) for p in shards])
        assert str(shards[0]) in str(err.value) and not (tmp_path / "out.npz").exists()
    good = _write_shards(tmp_path / "good", n_points=6, n_shards=2, settings=fresh)
    dist, adv = load_attack_warm_start(good, np.arange(6), "l2", (2, 2, 1),
                                       expected=warm_start_settings(model, sidecar, settings["data_sha256"], "l2"))
    np.testing.assert_allclose(dist, np.arange(6) / 10, rtol=1e-6)  # _result: distance = index / 10
    # One set, one digest: a shard made with other attack settings does not join the others.
    mixed = [good[0], _write_shards(tmp_path / "other", 6, 2, dict(fresh, attack={"seed": 1}))[1]]
    with pytest.raises(ValueError, match="other settings"):
        load_attack_warm_start(mixed, np.arange(6), "l2", (2, 2, 1))
    with pytest.raises(ValueError, match="the exact stage runs in linf"):
        load_attack_warm_start(good, np.arange(6), "linf", (2, 2, 1))
