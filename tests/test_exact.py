"""Exact minimal perturbations (robcurves.exact): tiny networks whose answer is known."""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from robcurves.exact import (  # noqa: E402
    ExactConfig, ExactResults, InputDomain, compute_bounds, load_results, milp_brackets,
    read_merged_json, save_results, write_merged_json,
)
from robcurves.exact.milp import MilpBuilder, VarVector, run_highs  # noqa: E402
from robcurves.network import from_keras as network_from_keras  # noqa: E402
from robcurves.norms import LINF, parse_norm  # noqa: E402
from network_cases import random_relu_mlp  # noqa: E402


def _affine_model(W: np.ndarray, b: np.ndarray) -> keras.Model:
    n_in, n_out = W.shape
    inp = keras.Input((1, 1, n_in))
    out = keras.layers.Dense(n_out, name="logits")(keras.layers.Flatten()(inp))
    m = keras.Model(inp, out)
    m.get_layer("logits").set_weights([W.astype(np.float32), b.astype(np.float32)])
    return m


_relu_model = random_relu_mlp  # one home: tests/network_cases.py


def _pred(m, x):
    return np.argmax(np.asarray(m(np.asarray(x, np.float32), training=False)), axis=1)


def _check_witnesses(m, x, y, res: ExactResults):
    norm = parse_norm(res.norm)
    for i in range(len(res)):
        if np.isfinite(res.upper[i]) and res.upper[i] > 0:
            w = res.witness[i]
            assert np.all(w >= 0) and np.all(w <= 1)
            assert _pred(m, w[None])[0] != y[i]
            d = float(norm.distance(w[None], x[i : i + 1])[0])
            assert d == pytest.approx(res.upper[i], rel=1e-6, abs=1e-7)
        assert res.lower[i] <= res.upper[i]


# --------------------------------------------------------------------------- affine

@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_affine_model_matches_closed_form(norm):
    rng = np.random.default_rng(3)
    n_in, n_out = 6, 3
    W = rng.normal(size=(n_in, n_out))
    b = np.zeros(n_out)
    x = np.full((1, 1, 1, n_in), 0.5, dtype=np.float32)
    z = x.reshape(-1) @ W
    y = int(np.argmax(z))
    # Put the closest boundary well inside the box: gaps of at most 0.05 * dual norm.
    dual = {"linf": lambda v: np.abs(v).sum(), "l1": lambda v: np.abs(v).max()}[norm]
    for k in range(n_out):
        if k != y:
            b[k] = z[y] - z[k] - 0.05 * (k + 1) * dual(W[:, y] - W[:, k])
    m = _affine_model(W, b)
    z = x.reshape(-1).astype(np.float64) @ W + b
    expected = min((z[y] - z[k]) / dual(W[:, y] - W[:, k]) for k in range(n_out) if k != y)
    res = milp_brackets(m, x, np.array([y]), norm, ExactConfig(time_limit=20, max_radius=0.5))
    assert res.status[0] == "optimal"
    assert res.lower[0] == pytest.approx(expected, rel=2e-4)  # the solver gap: 1e-4 rel + 1e-6 abs
    assert res.upper[0] == pytest.approx(expected, rel=1e-4)
    _check_witnesses(m, x, [y], res)


# ---------------------------------------------------------------- 2-D ReLU network

def test_relu_2d_network_matches_grid_search():
    m = _relu_model(2, (12, 12), 3, seed=5)
    g = np.linspace(0, 1, 401)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 1, 2).astype(np.float32)
    pred = np.argmax(m.predict(grid, batch_size=len(grid), verbose=0), axis=1)
    x = np.array([[0.5, 0.5], [0.3, 0.6]], dtype=np.float32).reshape(-1, 1, 1, 2)
    y = _pred(m, x)
    step = g[1] - g[0]
    for norm in ("linf", "l1"):
        res = milp_brackets(m, x, y, norm, ExactConfig(time_limit=30))
        d = parse_norm(norm)
        for i in range(len(x)):
            other = pred != y[i]
            assert other.any()
            grid_best = d.distance(grid[other], np.repeat(x[i : i + 1], other.sum(), 0)).min()
            assert res.status[i] == "optimal", res.meta["info"][i]
            # The exact value is never above a grid point's and within one grid cell of it.
            assert res.lower[i] <= grid_best + 1e-6
            assert grid_best - res.upper[i] <= (2 if norm == "l1" else 1) * step + 1e-6
        _check_witnesses(m, x, y, res)


def test_heuristics_switch_reaches_highs_and_keeps_the_optimum():
    from robcurves.exact.stage import config_from_dict

    b = MilpBuilder()
    b.add_vars(0.0, 1.0, integer=True)
    off, on = b.to_highs(heuristics=False), b.to_highs(heuristics=True)
    for opt in ("mip_heuristic_run_rins", "mip_heuristic_run_rens", "mip_heuristic_run_feasibility_jump"):
        assert off.getOptionValue(opt)[1] is False and on.getOptionValue(opt)[1] is True
    assert off.getOptionValue("mip_heuristic_effort")[1] == 0.0
    assert ExactConfig().heuristics is False
    assert config_from_dict({"heuristics": True, "time_limit": 5}).heuristics is True
    m = _relu_model(2, (12, 12), 3, seed=5)
    x = np.array([[0.5, 0.5], [0.3, 0.6]], dtype=np.float32).reshape(-1, 1, 1, 2)
    y = _pred(m, x)
    for method in ("minimize", "bisect"):
        a = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=20, method=method))
        h = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=20, method=method, heuristics=True))
        tol = 2e-3 if method == "bisect" else 1e-4
        np.testing.assert_allclose(a.upper, h.upper, rtol=tol)
        np.testing.assert_allclose(a.lower, h.lower, rtol=tol, atol=1e-6)


def test_bisection_brackets_the_minimisation():
    m = _relu_model(2, (12, 12), 3, seed=5)
    x = np.array([[0.3, 0.6]], dtype=np.float32).reshape(-1, 1, 1, 2)
    y = _pred(m, x)
    a = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=20))
    b = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=20, method="bisect"))
    assert a.status[0] == "optimal"
    assert b.lower[0] <= a.upper[0] + 1e-6 and a.lower[0] <= b.upper[0] + 1e-6
    assert b.upper[0] - b.lower[0] <= 2e-3 * b.upper[0] + 1e-6


# ------------------------------------------------------------ attack warm start

def _pgd_linf(m, x, y, n_dirs=256, scales=np.geomspace(0.005, 0.6, 40)):
    """A crude linf attack (only for tests): random sign directions times a grid of radii,
    one batched forward pass per point. Returns distances (inf if none) and examples."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    best = np.full(len(x), np.inf, dtype=np.float32)
    adv = x.copy()
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, m(xt, training=False)))
    fgsm = np.sign(tape.gradient(loss, xt).numpy())
    for i in range(len(x)):
        dirs = rng.choice([-1.0, 1.0], size=(n_dirs, *x.shape[1:])).astype(np.float32)
        dirs[0] = fgsm[i]
        cand = np.clip(x[i][None, None] + scales[:, None, None, None, None, None].astype(np.float32) * dirs[None],
                       0, 1).reshape(-1, *x.shape[1:])
        pred = np.argmax(m.predict(cand, batch_size=len(cand), verbose=0), axis=1)
        ok = np.flatnonzero(pred != y[i])
        if len(ok):
            d = LINF.distance(cand[ok], np.repeat(x[i : i + 1], len(ok), 0))
            j = int(np.argmin(d))
            best[i], adv[i] = d[j], cand[ok[j]]
    return best, adv


def test_exact_is_never_above_the_attack_and_the_witness_flips_the_label():
    m = _relu_model(16, (16,), 4, seed=11, in_shape=(4, 4, 1))
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 4, 1)).astype(np.float32)
    y = _pred(m, x)
    dist, adv = _pgd_linf(m, x, y)
    assert np.isfinite(dist).sum() >= 2  # a point the attack missed is searched up to max_radius
    res = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=30, max_radius=1.0),
                        attack_distances=dist, x_adv=adv)
    assert np.all(res.status != "time_limit"), res.meta["info"]
    assert np.all(res.upper <= dist + 1e-6)
    assert np.all(res.status[np.isfinite(dist)] == "optimal")
    assert np.all(res.lower <= res.upper)
    _check_witnesses(m, x, y, res)


def test_tiny_time_limit_gives_a_bracket_not_a_fake_optimum():
    m = _relu_model(16, (16, 16), 4, seed=7, in_shape=(4, 4, 1))
    rng = np.random.default_rng(1)
    x = rng.random((2, 4, 4, 1)).astype(np.float32)
    y = _pred(m, x)
    full = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=60, max_radius=0.5))
    tiny = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=0.02, max_radius=0.5))
    for i in range(len(x)):
        assert full.status[i] in ("optimal", "no_adversarial_in_domain")
        truth_lo, truth_hi = full.lower[i], full.upper[i]
        assert tiny.lower[i] <= truth_hi + 1e-6
        assert tiny.upper[i] >= truth_lo - 1e-6
        if tiny.status[i] == "optimal":  # only if the bracket really closed
            assert tiny.upper[i] - tiny.lower[i] <= 1e-4 * tiny.upper[i] + 1e-6
        else:
            assert tiny.status[i] == "time_limit"
    _check_witnesses(m, x, y, tiny)


def test_no_adversarial_in_domain_and_misclassified_points():
    m = _relu_model(2, (8,), 3, seed=4)
    x = np.array([[0.5, 0.5]], dtype=np.float32).reshape(-1, 1, 1, 2)
    y = _pred(m, x)
    res = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=20, max_radius=1e-3))
    assert res.status[0] == "no_adversarial_in_domain"
    assert res.lower[0] == pytest.approx(1e-3) and math.isinf(res.upper[0])
    wrong = (y + 1) % 3
    res = milp_brackets(m, x, wrong, "l1", ExactConfig(time_limit=5))
    # Misclassified: distance 0, counted apart and never as solved.
    assert res.status[0] == "misclassified" and res.lower[0] == 0 and res.upper[0] == 0
    summary = res.summary()
    assert summary["misclassified"] == 1 and summary["optimal"] == 0 and summary["n_classified"] == 0


# --------------------------------------------------------------------- layers

@pytest.mark.parametrize("padding,stride,size", [("same", 2, 7), ("same", 2, 8), ("valid", 2, 7), ("same", 1, 5)])
def test_conv2d_preactivations_in_the_milp_equal_tensorflow(padding, stride, size):
    rng = np.random.default_rng(0)
    inp = keras.Input((size, size, 2))
    h = keras.layers.Conv2D(3, 3, strides=stride, padding=padding, name="conv")(inp)
    h = keras.layers.ReLU()(h)
    out = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(h))
    m = keras.Model(inp, out)
    conv = m.get_layer("conv")
    k, b = conv.get_weights()
    conv.set_weights([rng.normal(size=k.shape).astype(np.float32), rng.normal(size=b.shape).astype(np.float32)])
    x = rng.random((1, size, size, 2)).astype(np.float32)
    ref = np.asarray(conv(x)).reshape(-1)
    net = network_from_keras(m)
    # The MILP encoding: inputs fixed to x, one affine layer, read back its variables.
    milp = MilpBuilder()
    xin = VarVector.of_vars(milp.add_vars(x.reshape(-1), x.reshape(-1)))
    conv_node = net.nodes[1]
    big = np.full(int(np.prod(conv_node.shape)), 1e6)
    box = (x.reshape(-1).astype(np.float64),) * 2
    z = conv_node.layer.emit(milp, [xin], [box], (-big, big))
    milp.set_cost(z.idx[:1], [0.0])
    r = run_highs(milp.to_highs(), 10)
    assert r.status == "optimal"
    np.testing.assert_allclose(r.x[z.idx], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.evaluate_numpy(x), np.asarray(m(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", ["softmax", "leaky_relu", "sigmoid_dense"])
def test_unsupported_layers_are_rejected_by_name(bad):
    inp = keras.Input((1, 1, 4))
    h = keras.layers.Flatten()(inp)
    if bad == "softmax":
        h = keras.layers.Dense(5, name="hidden")(h)
        h = keras.layers.Softmax(name="my_softmax")(h)
        name = "my_softmax"
    elif bad == "leaky_relu":
        h = keras.layers.LeakyReLU(name="my_leaky")(h)
        name = "my_leaky"
    else:
        h = keras.layers.Dense(5, activation="sigmoid", name="my_dense")(h)
        name = "my_dense"
    out = keras.layers.Dense(2)(h)
    with pytest.raises(ValueError, match=name):
        network_from_keras(keras.Model(inp, out))


def test_relu_inside_dense_and_dropout_are_accepted():
    inp = keras.Input((1, 1, 3))
    h = keras.layers.Dense(4, activation="relu")(keras.layers.Flatten()(inp))
    h = keras.layers.Dropout(0.5)(h)
    out = keras.layers.Dense(2, activation="linear")(h)
    m = keras.Model(inp, out)
    net = network_from_keras(m)
    assert [node.layer.kind for node in net.nodes[1:]] == ["flatten", "dense", "relu", "dense"]


def test_l2_is_refused_with_a_reason():
    m = _relu_model(2, (4,), 2, seed=0)
    x = np.full((1, 1, 1, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="quadratic"):
        milp_brackets(m, x, _pred(m, x), "l2")


def test_bounds_are_valid_and_lp_is_tighter():
    m = _relu_model(8, (16, 16), 3, seed=9)
    net = network_from_keras(m)
    rng = np.random.default_rng(0)
    x0 = rng.random(8)
    for norm in ("linf", "l1"):
        dom = InputDomain.ball(x0, parse_norm(norm), 0.2)
        ib = compute_bounds(net, dom, ["interval"])
        lb = compute_bounds(net, dom, ["interval", "lp"])
        # Sample the domain (for l1: random sparse-ish points inside the ball).
        d = rng.uniform(-1, 1, (2000, 8))
        if norm == "l1":
            d = d / np.abs(d).sum(1, keepdims=True) * rng.random((2000, 1))
        xs = np.clip(x0 + 0.2 * d, dom.lo, dom.hi)
        for i, h in enumerate(net.activations_numpy(xs)):
            h = h.reshape(len(xs), -1)
            assert np.all(h >= lb.pre[i][0] - 1e-9) and np.all(h <= lb.pre[i][1] + 1e-9)
            assert np.all(lb.pre[i][0] >= ib.pre[i][0] - 1e-9) and np.all(lb.pre[i][1] <= ib.pre[i][1] + 1e-9)
        assert lb.unstable(net) <= ib.unstable(net)


# -------------------------------------------------------------------- records

def test_records_round_trip(tmp_path):
    m = _relu_model(2, (6,), 3, seed=1)
    x = np.array([[0.5, 0.5], [0.2, 0.9]], dtype=np.float32).reshape(-1, 1, 1, 2)
    y = _pred(m, x)
    res = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=10), indices=[5, 2])
    save_results(tmp_path / "s.npz", res)
    back = load_results(tmp_path / "s.npz")
    assert back.norm == "linf"
    np.testing.assert_array_equal(back.index, [5, 2])
    np.testing.assert_array_equal(back.status, res.status)
    merged = ExactResults.concatenate([back])
    np.testing.assert_array_equal(merged.index, [2, 5])
    write_merged_json(tmp_path / "m.json", merged)
    text = (tmp_path / "m.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    data = read_merged_json(tmp_path / "m.json")
    assert data["norm"] == "linf" and [p["index"] for p in data["points"]] == [2, 5]
    assert json.loads(text)["summary"]["n"] == 2


# ------------------------------------------------------------------- pipeline

def test_shard_merge_and_figure(tmp_path):
    from robcurves.data import Dataset, save_dataset
    from robcurves.exact.figure import format_gap_statistics, plot_exact_vs_approx
    from robcurves.exact.stage import exact_shard, merge_exact
    from robcurves.models import save_model

    m = _relu_model(2, (8,), 3, seed=5)
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 1, 2)).astype(np.float32)
    y = _pred(m, x)
    save_model(m, tmp_path / "model.keras", {"input_shape": [1, 1, 2], "n_classes": 3, "bounds": [0.0, 1.0],
                                             "dataset": "toy", "made_by": {"kind": "test"}})
    save_dataset(tmp_path / "test.npz", Dataset(x, y, "toy", "test", ["a", "b", "c"], "test"))
    # An attack shard for points 0..2 (point 3 has none: it is searched up to max_radius).
    dist, adv = _pgd_linf(m, x[:3], y[:3])
    from attack_shards import warm_start_shard

    warm_start_shard(tmp_path / "att.npz", tmp_path / "model.keras", tmp_path / "test.npz", "linf", np.arange(3), dist,
                     adv, ["adversarial"] * 3)
    cfg = {"time_limit": 10, "tightening": ["interval", "symbolic", "lp"], "max_radius": {"linf": 1.0}}
    for s in range(2):
        exact_shard(str(tmp_path / "model.keras"), str(tmp_path / "test.npz"), str(tmp_path / f"s{s}of2.npz"),
                    "linf", s, 2, 4, cfg, attack_paths=[str(tmp_path / "att.npz")])
    merged = merge_exact([tmp_path / "s0of2.npz", tmp_path / "s1of2.npz"], str(tmp_path / "linf.json"), n_points=4)
    np.testing.assert_array_equal(merged.index, np.arange(4))
    assert np.all(merged.upper <= np.where(np.isfinite(merged.attack_distance), merged.attack_distance, np.inf) + 1e-6)
    assert math.isinf(merged.attack_distance[3])
    with pytest.raises(ValueError, match="expected"):
        merge_exact([tmp_path / "s0of2.npz"], str(tmp_path / "short.json"), n_points=4)
    stats = plot_exact_vs_approx([tmp_path / "linf.json"], [tmp_path / "f.pdf", tmp_path / "f.png"], labels=["toy"])
    assert (tmp_path / "f.pdf").stat().st_size > 0 and (tmp_path / "f.png").stat().st_size > 0
    assert stats[0]["n"] == 4 and "toy" in format_gap_statistics(stats)


def test_ascending_margin_queries_certify_a_valid_lower_bound():
    """The phase ``auto`` falls back on when time-outs left a wide bracket: margin queries
    a step above the lower bound. Its bound must stay below the true minimum and approach it."""
    import time

    from robcurves.exact.bounds import InputDomain
    from robcurves.exact.checker import keras_checker
    from robcurves.exact.strategies import SearchState, solve_ascend

    m = _relu_model(2, (12, 12), 3, seed=5)
    x = np.array([[0.3, 0.6]], dtype=np.float32).reshape(-1, 1, 1, 2)
    y = _pred(m, x)
    ref = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=20, method="minimize"))
    assert ref.status[0] == "optimal"
    net, checker = network_from_keras(m), keras_checker(m, "linf")
    st = SearchState(x0=x[0], y=int(y[0]))
    assert st.offer(checker.check(ref.witness[0], x[0], int(y[0])))
    dom = InputDomain.ball(x[0].reshape(-1).astype(np.float64), parse_norm("linf"), st.upper * 1.01)
    class_lb = {k: 0.0 for k in range(net.n_classes) if k != st.y}
    info: dict = {}
    lower = solve_ascend(net, checker, st, dom, ExactConfig(time_limit=20), time.perf_counter() + 20, info, 0.0,
                         class_lb)
    assert info["ascend"] and all(s["outcome"] in ("robust", "attacked", "unknown") for s in info["ascend"])
    # Every radius proven robust lies below the true minimum (at most the verified witness).
    assert all(s["r"] <= ref.upper[0] * (1 + 1e-6) for s in info["ascend"] if s["outcome"] == "robust")
    assert lower <= ref.upper[0] * (1 + 1e-6) + 1e-7  # the true minimum is at most the verified witness
    assert lower >= 0.99 * ref.lower[0]


# ------------------------------------------------------------ records and summaries

def _record(index, status, lower, upper, attack=math.inf, verified=False):
    from robcurves.exact import ExactResult

    return ExactResult(index, 0, "linf", status, lower, upper, None, -1, 1.0, 1.0, {}, attack,
                       attack_verified=verified, rel_tol=1e-4, abs_tol=1e-6)


def test_misclassified_points_are_counted_apart_and_never_solved(tmp_path):
    from robcurves.exact.figure import format_gap_statistics, gap_statistics, solved_caption

    recs = [_record(0, "misclassified", 0.0, 0.0, 0.0, True), _record(1, "misclassified", 0.0, 0.0, 0.0, True),
            _record(2, "optimal", 0.1, 0.1, 0.1, True), _record(3, "time_limit", 0.05, 0.2, 0.2, True),
            _record(4, "no_adversarial_in_domain", 1.0, math.inf)]
    res = ExactResults.from_records(recs, (1, 1, 2), "linf")
    s = res.summary()
    assert (s["n"], s["misclassified"], s["n_classified"], s["optimal"]) == (5, 2, 3, 1)
    assert s["optimal"] + s["time_limit"] + s["no_adversarial_in_domain"] == s["n_classified"]
    assert (s["optimal_rel_tol"], s["optimal_abs_tol"]) == (1e-4, 1e-6)
    # Ratios and times leave the misclassified points out too.
    assert s["median_lower_over_upper"] == pytest.approx(np.median([1.0, 0.25]))
    assert s["n_with_attack"] == 2
    # The merged file, the figure's statistics and title say the same.
    write_merged_json(tmp_path / "m.json", res)
    data = read_merged_json(tmp_path / "m.json")
    assert all("rel_tol" in p and "abs_tol" in p and "attack_verified" in p for p in data["points"])
    stats = gap_statistics(data)
    assert stats["optimal"] == 1 and stats["misclassified"] == 2 and stats["n_classified"] == 3
    assert solved_caption(stats) == "1/3 solved to rel. 1e-04 + abs. 1e-06; 2 misclassified"
    table = format_gap_statistics([{**stats, "label": "m", "norm": "linf"}])
    head, row = table.splitlines()
    assert dict(zip(head.split(","), row.split(",")))["misclassified"] == "2"
    # A record that claims to be solved but is misclassified does not exist: it has its own status.
    assert "misclassified" in __import__("robcurves.exact", fromlist=["RECORD_STATUSES"]).RECORD_STATUSES


def test_old_shards_without_the_new_fields_are_refused_with_a_reason(tmp_path):
    recs = [_record(0, "optimal", 0.1, 0.1)]
    res = ExactResults.from_records(recs, (1, 1, 2), "linf")
    save_results(tmp_path / "new.npz", res)
    with np.load(tmp_path / "new.npz") as f:
        old = {k: f[k] for k in f.files if k not in ("rel_tol", "abs_tol", "attack_verified")}
    np.savez(tmp_path / "old.npz", **old)
    with pytest.raises(ValueError, match="older robcurves"):
        load_results(tmp_path / "old.npz")


def test_bisect_records_store_the_looser_tolerance():
    m = _relu_model(2, (8,), 3, seed=4)
    x = np.array([[0.3, 0.6]], dtype=np.float32).reshape(-1, 1, 1, 2)
    y = _pred(m, x)
    res = milp_brackets(m, x, y, "linf", ExactConfig(time_limit=10, method="bisect"))
    assert res.rel_tol[0] == pytest.approx(1e-4 + 1e-3) and res.abs_tol[0] == 1e-6
    if res.status[0] == "optimal":
        assert res.upper[0] - res.lower[0] <= (res.rel_tol[0] * res.upper[0] + res.abs_tol[0]) * (1 + 1e-6)


def test_every_layer_type_emits_rows_that_reproduce_the_network():
    """Inputs fixed to a point: the MILP's logits equal the network's (Scale, Conv2D, ReLU,
    MaxPooling2D with binaries, AveragePooling2D, Add, GlobalAveragePooling2D, Dense)."""
    from network_cases import pooled_net, residual_net

    from robcurves.exact.bounds import compute_bounds, emit_network

    rng = np.random.default_rng(4)
    for make in (pooled_net, residual_net):
        net = make(rng)
        for _ in range(3):
            x0 = rng.random(net.n_inputs)
            dom = InputDomain.ball(x0, LINF, 0.02)
            bounds = compute_bounds(net, dom, ["interval", "symbolic"])
            milp = MilpBuilder()
            xin = VarVector.of_vars(milp.add_vars(x0, x0))
            hs = emit_network(milp, net, xin, bounds.pre)
            z = hs[-1]
            milp.set_cost(z.idx[z.idx >= 0][:1], [0.0])
            res = run_highs(milp.to_highs(), 20)
            assert res.status == "optimal"
            got = np.where(z.idx >= 0, res.x[np.maximum(z.idx, 0)], z.const)
            np.testing.assert_allclose(got, net.evaluate_numpy(x0[None])[0], rtol=1e-6, atol=1e-6)
        # inputs free in a box: the maximum of a logit is attained by its own input (the
        # encodings are exact, not relaxations) and beats every sampled point
        dom = InputDomain.ball(x0, LINF, 0.05)
        bounds = compute_bounds(net, dom, ["interval", "symbolic"])
        milp = MilpBuilder()
        xin = VarVector.of_vars(milp.add_vars(dom.lo, dom.hi))
        z = emit_network(milp, net, xin, bounds.pre)[-1]
        milp.set_cost([z.idx[0]], [-1.0])
        res = run_highs(milp.to_highs(), 10)
        assert res.x is not None and milp.binaries > 0
        xs = res.x[: net.n_inputs]
        assert net.evaluate_numpy(xs[None])[0, 0] == pytest.approx(-res.objective, abs=1e-5)
        samples = rng.uniform(dom.lo, dom.hi, size=(300, net.n_inputs))
        assert net.evaluate_numpy(samples)[:, 0].max() <= -res.dual_bound + 1e-6
