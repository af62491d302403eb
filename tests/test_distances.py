"""Nearest inter-/intra-class distances against brute force (scipy cdist)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from robcurves.scale import (
    cross_class_duplicates,
    grid_scale,
    load_nearest,
    nearest_neighbour_distances,
    save_nearest,
)

METRICS = {"linf": "chebyshev", "l2": "euclidean", "l1": "cityblock"}


def brute_force(x, y):
    """Full cdist in float64; ties go to the smallest index (np.argmin)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y)
    other = y[:, None] != y[None, :]
    same = ~other
    np.fill_diagonal(same, False)
    out = {}
    for norm, metric in METRICS.items():
        d = cdist(x, x, metric)
        for kind, mask in (("inter", other), ("intra", same)):
            dm = np.where(mask, d, np.inf)
            v = dm.min(axis=1)
            i = np.argmin(dm, axis=1)
            i[np.isinf(v)] = -1
            out[kind, norm] = (v, i)
    return out


def assert_matches(nn, ref, scale=1.0, rtol=1e-12):
    for (kind, norm), (v, i) in ref.items():
        np.testing.assert_allclose(nn.distance[kind][norm], v / scale, rtol=rtol, atol=0, err_msg=f"{kind} {norm}")
        np.testing.assert_array_equal(nn.index[kind][norm], i, err_msg=f"{kind} {norm}")


@pytest.mark.parametrize(
    "n,d,classes,block_size,threads",
    [(203, 13, 4, 64, 2), (150, 40, 3, 1000, 1), (97, 7, 9, 16, 3)],
)
def test_random_float_data_matches_cdist(n, d, classes, block_size, threads):
    rng = np.random.default_rng(n)
    x = rng.random((n, d), dtype=np.float32).reshape(n, 1, 1, d)  # NHWC, tabular layout
    y = rng.integers(0, classes, n)
    nn = nearest_neighbour_distances(x, y, block_size=block_size, threads=threads, device="cpu")
    assert nn.meta["grid_scale"] is None
    assert_matches(nn, brute_force(x, y))


@pytest.mark.parametrize("scale", [255, 16])
def test_grid_data_is_exact_including_ties(scale):
    # 8-bit-like images with many zeros: many exactly tied distances
    rng = np.random.default_rng(scale)
    q = rng.integers(0, scale + 1, (240, 4, 4, 3))
    q[q < scale // 2] = 0
    x = (q / scale).astype(np.float32)
    y = rng.integers(0, 5, 240)
    nn = nearest_neighbour_distances(x, y, block_size=50, threads=2, device="cpu")
    assert nn.meta["grid_scale"] == scale
    assert_matches(nn, brute_force(q, y), scale=scale, rtol=1e-14)
    # the float64 path agrees on the distances to float32 precision
    nf = nearest_neighbour_distances(x, y, block_size=50, threads=1, device="cpu", grid=None)
    assert nf.meta["grid_scale"] is None
    for kind in ("inter", "intra"):
        for norm in METRICS:
            np.testing.assert_allclose(nf.distance[kind][norm], nn.distance[kind][norm], rtol=1e-6)


def test_threads_and_blocks_do_not_change_the_result():
    rng = np.random.default_rng(3)
    x = rng.random((180, 11), dtype=np.float32)
    y = rng.integers(0, 3, 180)
    a = nearest_neighbour_distances(x, y, block_size=32, threads=1, device="cpu")
    b = nearest_neighbour_distances(x, y, block_size=4096, threads=3, device="cpu")
    for kind in ("inter", "intra"):
        for norm in METRICS:
            np.testing.assert_array_equal(a.distance[kind][norm], b.distance[kind][norm])
            np.testing.assert_array_equal(a.index[kind][norm], b.index[kind][norm])


def test_ties_go_to_the_smallest_index():
    # point 0 is at distance 0.25 from both 1 and 2 (other class) in every norm
    x = np.array([[0.5], [0.75], [0.25], [0.5]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    for grid in ("auto", None):
        nn = nearest_neighbour_distances(x, y, device="cpu", grid=grid)
        for norm in METRICS:
            assert nn.index["inter"][norm][0] == 1
            assert nn.distance["inter"][norm][0] == 0.25
            # points 0 and 3 are identical, same class: intra distance 0, each other
            assert nn.distance["intra"][norm][0] == 0.0 and nn.index["intra"][norm][0] == 3
            assert nn.index["intra"][norm][3] == 0


def test_cross_class_duplicates_are_reported():
    rng = np.random.default_rng(4)
    x = rng.random((50, 6), dtype=np.float32)
    y = np.arange(50) % 3
    x[10] = x[2]  # labels 1 and 2: a cross-class duplicate
    x[9] = x[3]  # labels 0 and 0: same class, not reported
    nn = nearest_neighbour_distances(x, y, device="cpu")
    np.testing.assert_array_equal(nn.duplicate_pairs, [[2, 10]])
    assert nn.n_duplicate_points == 2
    for norm in METRICS:
        assert nn.distance["inter"][norm][2] == 0.0 and nn.index["inter"][norm][2] == 10
        assert nn.distance["intra"][norm][3] == 0.0 and nn.index["intra"][norm][3] == 9
    # -0.0 and 0.0 are the same value
    z = np.zeros((2, 3), dtype=np.float32)
    z[1, 0] = -0.0
    np.testing.assert_array_equal(cross_class_duplicates(z, np.array([0, 1])), [[0, 1]])


def test_singleton_class_single_class_and_one_point():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    nn = nearest_neighbour_distances(x, [0, 0, 1], device="cpu")
    for norm in METRICS:
        assert np.isinf(nn.distance["intra"][norm][2]) and nn.index["intra"][norm][2] == -1
        assert nn.index["intra"][norm][0] == 1
    one_class = nearest_neighbour_distances(x, [5, 5, 5], device="cpu")
    for norm in METRICS:
        assert np.all(np.isinf(one_class.distance["inter"][norm]))
        assert np.all(one_class.index["inter"][norm] == -1)
    single = nearest_neighbour_distances(x[:1], [0], device="cpu")
    for kind in ("inter", "intra"):
        for norm in METRICS:
            assert np.isinf(single.distance[kind][norm][0]) and single.index[kind][norm][0] == -1


def test_norm_subset_and_aliases():
    rng = np.random.default_rng(5)
    x = rng.random((40, 5), dtype=np.float32)
    y = rng.integers(0, 2, 40)
    nn = nearest_neighbour_distances(x, y, norms=("inf", 1), device="cpu")
    assert nn.norms == ("linf", "l1")
    ref = brute_force(x, y)
    np.testing.assert_allclose(nn.inter("linf"), ref["inter", "linf"][0], rtol=1e-12)
    np.testing.assert_allclose(nn.intra("l1"), ref["intra", "l1"][0], rtol=1e-12)


@pytest.mark.parametrize(
    "x,y,message",
    [
        (np.zeros((5, 3), np.float32), np.zeros(4, int), "shape \\(5,\\)"),
        (np.zeros((5, 3), np.float32), np.zeros((5, 1), int), "shape \\(5,\\)"),
        (np.zeros((0, 3), np.float32), np.zeros(0, int), "no points"),
        (np.array([[0.0, np.nan], [1.0, 1.0]], np.float32), np.array([0, 1]), "NaN"),
        (np.zeros((2, 2), np.float32), np.array([0.5, 1.0]), "integers"),
    ],
)
def test_bad_inputs_raise_clear_errors(x, y, message):
    with pytest.raises(ValueError, match=message):
        nearest_neighbour_distances(x, y, device="cpu")


def test_bad_options_raise():
    x, y = np.zeros((3, 2), np.float32), np.array([0, 1, 0])
    with pytest.raises(ValueError, match="unknown norm"):
        nearest_neighbour_distances(x, y, norms=("l3",), device="cpu")
    with pytest.raises(ValueError, match="device"):
        nearest_neighbour_distances(x, y, device="tpu")
    with pytest.raises(ValueError, match="not integers over 7"):
        nearest_neighbour_distances(np.full((3, 2), 0.3, np.float32), y, device="cpu", grid=7)


def test_grid_detection():
    assert grid_scale((np.arange(256, dtype=np.float32) / 255).reshape(16, 16)) == 255
    assert grid_scale((np.arange(17, dtype=np.float32) / 16).reshape(17, 1)) == 16
    assert grid_scale(np.array([[0.1, 0.2]], np.float32)) is None


@pytest.mark.parametrize("jit", [False, True])
def test_tensorflow_backend_on_cpu_matches(jit, monkeypatch):
    pytest.importorskip("tensorflow")
    import robcurves.scale.kernels_tf as kernels_tf

    monkeypatch.setattr(kernels_tf, "TF_JIT_ON_CPU", jit)  # True: the XLA tile a GPU would use
    rng = np.random.default_rng(6)
    x = rng.random((70, 9), dtype=np.float32)
    y = rng.integers(0, 3, 70)
    x[5] = x[6]
    nn = nearest_neighbour_distances(x, y, block_size=32, device="cpu", backend="tensorflow")
    assert nn.meta["grid_scale"] is None
    assert_matches(nn, brute_force(x, y))
    q = rng.integers(0, 256, (70, 3, 3, 1))
    q[q < 128] = 0
    nn = nearest_neighbour_distances((q / 255).astype(np.float32), y, block_size=32, device="cpu",
                                     backend="tensorflow")
    assert nn.meta["grid_scale"] == 255
    assert_matches(nn, brute_force(q, y), scale=255, rtol=1e-14)


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.random((30, 2, 2, 1), dtype=np.float32)
    y = rng.integers(0, 3, 30)
    nn = nearest_neighbour_distances(x, y, norms=("l2", "linf"), device="cpu")
    path = tmp_path / "d.npz"
    save_nearest(path, nn, meta={"name": "toy"})
    back = load_nearest(path)
    assert back.norms == ("l2", "linf") and back.input_shape == (2, 2, 1)
    assert back.meta["name"] == "toy"
    np.testing.assert_array_equal(back.y, nn.y)
    for kind in ("inter", "intra"):
        for norm in ("l2", "linf"):
            np.testing.assert_array_equal(back.distance[kind][norm], nn.distance[kind][norm])
            np.testing.assert_array_equal(back.index[kind][norm], nn.index[kind][norm])
