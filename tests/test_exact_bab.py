"""Branch and bound (robcurves.exact.bab): answers known by brute force, and soundness for float32."""

from __future__ import annotations

import itertools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from robcurves.adversarial import is_adversarial, verify_witnesses  # noqa: E402
from robcurves.exact.bab import BabConfig, BabSettings, BoundEngine, InputBall, bab_brackets  # noqa: E402
from robcurves.exact.bab import rounding  # noqa: E402
from robcurves.exact.bab.concretize import linear_lower  # noqa: E402
from robcurves.exact.bab.ops import numpy as to_np, tensor  # noqa: E402
from robcurves.norms import parse_norm  # noqa: E402
from network_cases import random_relu_mlp  # noqa: E402

NORMS = ("linf", "l2", "l1")


_mlp = random_relu_mlp  # one home: tests/network_cases.py


def _logits(m):
    return lambda x: np.asarray(m(np.asarray(x, np.float32), training=False), dtype=np.float32)


def _pred(m, x):
    return np.argmax(_logits(m)(x), axis=1)


def _sample_ball(rng, x0, norm, r, n, box=(0.0, 1.0)):
    """float32 points of the ball ∩ box: corners, surface and interior."""
    d = x0.size
    if norm == "linf":
        u = rng.choice([-1.0, 1.0], size=(n, d)) * np.where(rng.random((n, 1)) < 0.5, 1.0, rng.random((n, d)))
    elif norm == "l2":
        u = rng.normal(size=(n, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        u *= np.where(rng.random((n, 1)) < 0.5, 1.0, rng.random((n, 1)))
    else:
        u = rng.laplace(size=(n, d)) * (rng.random((n, d)) < 0.3)
        u /= np.maximum(np.abs(u).sum(1, keepdims=True), 1e-12)
        u *= np.where(rng.random((n, 1)) < 0.5, 1.0, rng.random((n, 1)))
    x = np.clip(x0.reshape(1, -1) + r * u * 0.9999, box[0], box[1]).astype(np.float32)
    dist = parse_norm(norm).distance(x, np.repeat(x0.reshape(1, -1).astype(np.float32), n, 0))
    return x[dist <= r]


def _check_witnesses(m, x, y, res):
    """Every finite upper bound carries a witness that the float32 model misclassifies, at that distance."""
    fin = np.isfinite(res.upper) & (res.upper > 0)
    if fin.any():
        ok, dist, _ = verify_witnesses(_logits(m), x[fin], res.witness[fin], y[fin], res.norm)
        assert ok.all()
        np.testing.assert_allclose(dist, res.upper[fin], rtol=1e-6)
    assert np.all(res.lower <= res.upper)


# ------------------------------------------------------------------ concretisation

@pytest.mark.parametrize("norm", NORMS)
def test_linear_minimum_over_ball_and_box_is_sound_and_attained(norm):
    """The closed forms never exceed ``lam . x`` on the domain, and their minimiser lies in
    the domain and attains them (so they are the exact minimum)."""
    rng = np.random.default_rng(0)
    p = parse_norm(norm).p
    for trial in range(6):
        n = 40
        x0 = rng.random(n)
        x0[: n // 3] = 0.0  # coordinates on the box boundary, as MNIST's background
        r = ([0.02, 0.1, 0.6] if norm == "linf" else [0.05, 0.3, 2.0])[trial % 3]
        ball = InputBall.make(x0, norm, r)
        lam = rng.normal(size=(3, n))
        lam[:, ::7] = 0.0
        val, xs = linear_lower(tensor(lam), tensor(ball.x0[None]), tensor(ball.dlo[None]), tensor(ball.dhi[None]),
                               tensor(np.array([r])), p, want_argmin=True)
        val, xs = to_np(val), to_np(xs)
        pts = _sample_ball(rng, x0, norm, r, 4000).astype(np.float64)
        assert len(pts) > 100
        assert np.all(val[:, None] <= (lam @ pts.T) + 1e-9)
        # the minimiser: in the box, in the ball, and it attains the value
        assert np.all(xs >= -1e-12) and np.all(xs <= 1 + 1e-12)
        dist = {"linf": np.abs(xs - x0).max(1), "l2": np.linalg.norm(xs - x0, axis=1),
                "l1": np.abs(xs - x0).sum(1)}[norm]
        assert np.all(dist <= r * (1 + 1e-9))
        np.testing.assert_allclose(np.sum(lam * xs, axis=1), val, rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------ soundness of the bounds

def _preactivations(m, x):
    """float32 pre-activations of every Dense layer of ``m`` (the float32 model users run)."""
    out, h = [], np.asarray(x, np.float32)
    for layer in m.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        h = layer(h)
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            out.append(np.asarray(h).reshape(len(x), -1))
    return out


@pytest.mark.parametrize("norm", NORMS)
def test_root_and_margin_bounds_hold_for_sampled_float32_points(norm):
    m = _mlp(8, (16, 16), 3, seed=9)
    eng = BoundEngine(m, norm)
    rng = np.random.default_rng(1)
    for r in ({"linf": (0.05, 0.2), "l2": (0.2, 0.8), "l1": (0.3, 1.5)}[norm]):
        x0 = rng.random(8)
        root = eng.root_bounds(InputBall.make(x0, norm, r))
        pts = _sample_ball(rng, x0, norm, r, 3000)
        pre = _preactivations(m, pts.reshape(-1, 1, 1, 8))
        for k, (lo, hi) in enumerate(zip(root.lower, root.upper)):
            assert np.all(pre[k] >= lo) and np.all(pre[k] <= hi)
        y = int(_pred(m, x0.reshape(1, 1, 1, 8).astype(np.float32))[0])
        C = eng.margin_rows(y, [k for k in range(3) if k != y])
        lb, _, _ = eng.optimise(root, eng.output, C, iters=20)
        z = _logits(m)(pts.reshape(-1, 1, 1, 8)).astype(np.float64)
        margins = z[:, [y]] - z[:, [k for k in range(3) if k != y]]
        assert np.all(lb[None] <= margins)


# --------------------------------------------------- minimal distances vs brute force

def _grid_best(m, x0, y, norm, n=401):
    g = np.linspace(0, 1, n, dtype=np.float32)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 1, 2)
    adv = is_adversarial(_logits(m)(grid), y)
    d = parse_norm(norm).distance(grid[adv], np.repeat(x0.reshape(1, 1, 1, 2), adv.sum(), 0))
    return float(d.min()), float(g[1] - g[0])


@pytest.mark.parametrize("norm", NORMS)
def test_2d_relu_network_matches_a_dense_grid(norm):
    """On a 2-D input the minimal distance is known from a dense grid (to one cell)."""
    m = _mlp(2, (12, 12), 3, seed=5)
    x = np.array([[0.5, 0.5], [0.3, 0.6], [0.7, 0.2]], dtype=np.float32).reshape(-1, 1, 1, 2)
    y = _pred(m, x)
    res = bab_brackets(m, x, y, norm, BabConfig(time_limit=60, rel_tol=0.01, max_radius=2.0))
    _check_witnesses(m, x, y, res)
    for i in range(len(x)):
        best, cell = _grid_best(m, x[i], int(y[i]), norm)
        slack = cell * (2 if norm == "l1" else 1)
        assert res.status[i] == "optimal", res.meta["info"][i]
        assert res.lower[i] <= best + 1e-6  # never above a grid point's distance
        assert res.upper[i] >= best - slack  # and the grid is within one cell of every point
        assert res.upper[i] - res.lower[i] <= 0.01 * res.upper[i] * (1 + 1e-9)


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_tiny_network_brackets_the_milp_optimum(norm):
    from robcurves.exact import ExactConfig
    from robcurves.exact import milp_brackets

    m = _mlp(6, (10, 10), 3, seed=3)
    rng = np.random.default_rng(4)
    x = rng.random((3, 1, 1, 6)).astype(np.float32)
    y = _pred(m, x)
    ref = milp_brackets(m, x, y, norm, ExactConfig(time_limit=30, method="minimize", max_radius=1.0 if norm == "linf"
                                                   else 6.0))
    res = bab_brackets(m, x, y, norm, BabConfig(time_limit=60, rel_tol=0.01,
                                                max_radius=1.0 if norm == "linf" else 6.0))
    _check_witnesses(m, x, y, res)
    for i in range(len(x)):
        assert ref.status[i] == "optimal"
        d = ref.upper[i]
        assert res.lower[i] <= d * (1 + 1e-4) + 1e-6, (res.lower[i], d)
        assert res.upper[i] >= ref.lower[i] * (1 - 1e-6) - 1e-7
        assert res.status[i] == "optimal" and res.lower[i] >= 0.99 * d * (1 - 1e-4)


def _qp_minimum(m, x0, y, box=(0.0, 1.0)):
    """Minimal l2 distance of a one-hidden-layer network by enumeration of activation
    patterns: in each linear region the problem is a convex QP (solved with SLSQP)."""
    from scipy.optimize import minimize

    (W0, b0), (W1, b1) = [layer.get_weights() for layer in m.layers if isinstance(layer, keras.layers.Dense)]
    W0, b0, W1, b1 = (a.astype(np.float64) for a in (W0, b0, W1, b1))
    n_h = W0.shape[1]
    x0 = x0.reshape(-1).astype(np.float64)
    best = np.inf
    for pattern in itertools.product([0.0, 1.0], repeat=n_h):
        D = np.array(pattern)
        sgn = 2 * D - 1
        for k in range(W1.shape[1]):
            if k == y:
                continue
            # logit_k - logit_y = c . x + c0 in this region
            v = (W1[:, k] - W1[:, y]) * D
            c, c0 = W0 @ v, b0 @ v + b1[k] - b1[y]
            cons = [{"type": "ineq", "fun": lambda x, c=c, c0=c0: c @ x + c0, "jac": lambda x, c=c: c},
                    {"type": "ineq", "fun": lambda x: sgn * (x @ W0 + b0), "jac": lambda x: (W0 * sgn).T}]
            r = minimize(lambda x: np.sum((x - x0) ** 2), np.clip(x0, *box), jac=lambda x: 2 * (x - x0),
                         bounds=[box] * len(x0), constraints=cons, method="SLSQP",
                         options={"ftol": 1e-14, "maxiter": 500})
            if r.success and c @ r.x + c0 >= -1e-9 and np.all(sgn * (r.x @ W0 + b0) >= -1e-9):
                best = min(best, float(np.sqrt(r.fun)))
    return best


def test_l2_minimal_distance_matches_qp_enumeration_over_activation_patterns():
    m = _mlp(3, (5,), 3, seed=2)
    rng = np.random.default_rng(7)
    x = rng.random((3, 1, 1, 3)).astype(np.float32)
    y = _pred(m, x)
    res = bab_brackets(m, x, y, "l2", BabConfig(time_limit=60, rel_tol=0.01, max_radius=2.0))
    _check_witnesses(m, x, y, res)
    for i in range(len(x)):
        d = _qp_minimum(m, x[i], int(y[i]))
        assert np.isfinite(d)
        assert res.lower[i] <= d * (1 + 1e-5) + 1e-7
        assert res.upper[i] >= d * (1 - 1e-5) - 1e-7
        assert res.status[i] == "optimal"


# ------------------------------------------------------- soundness for the float32 model

def _rounding_sensitive_model(A: float = 2.0 ** 17) -> keras.Model:
    """Two logits whose real-arithmetic margin is ``0.5 - x3`` (boundary at x3 = 0.5) but
    whose float32 margin carries rounding errors of up to ~0.02 from ``(A+1) x1 + A - (A x1 + A)``."""
    inp = keras.Input((1, 1, 3))
    h = keras.layers.ReLU()(keras.layers.Dense(4, name="d0")(keras.layers.Flatten()(inp)))
    m = keras.Model(inp, keras.layers.Dense(2, name="logits")(h))
    W0, b0 = np.zeros((3, 4), np.float32), np.zeros(4, np.float32)
    W0[0, 0], b0[0] = A, A
    W0[0, 1], b0[1] = A + 1, A
    W0[0, 2] = W0[2, 3] = 1.0
    W1, b1 = np.zeros((4, 2), np.float32), np.zeros(2, np.float32)
    W1[0, 0], W1[1, 0], W1[2, 0], b1[0] = -1, 1, -1, 0.5
    W1[3, 1] = 1
    m.get_layer("d0").set_weights([W0, b0])
    m.get_layer("logits").set_weights([W1, b1])
    return m


def test_certificates_hold_for_the_float32_model_where_real_arithmetic_would_not():
    """The real network is robust up to linf distance 0.4 around x0 = (0.3, 0.3, 0.1), but
    float32 rounding makes the Keras model adversarial at x3 = 0.49 for some x1: an
    exhaustive attack on the float32 model at 0.999 x the certified radius must fail."""
    m = _rounding_sensitive_model()
    x0 = np.array([0.3, 0.3, 0.1], np.float32).reshape(1, 1, 1, 3)
    y = np.array([0])
    rng = np.random.default_rng(0)
    x1 = np.concatenate([rng.random(20000), np.linspace(0, 1, 4001)]).astype(np.float32)
    probe = np.stack([x1, np.full_like(x1, 0.3), np.full_like(x1, 0.49)], 1).reshape(-1, 1, 1, 3)
    assert is_adversarial(_logits(m)(probe), 0).any()  # the float32 model really deviates
    res = bab_brackets(m, x0, y, "linf", BabConfig(time_limit=20, rel_tol=0.01, max_radius=0.6))
    L = float(res.lower[0])
    assert 0.05 < L < 0.4
    for t in np.linspace(0.0, 0.999 * L, 41):
        lo3 = np.float32(0.1 + t)
        cand = np.stack([x1, np.full_like(x1, 0.3), np.full_like(x1, lo3)], 1).reshape(-1, 1, 1, 3)
        dist = parse_norm("linf").distance(cand, np.repeat(x0, len(cand), 0))
        inside = dist <= L
        assert not is_adversarial(_logits(m)(cand[inside]), 0).any()


# ------------------------------------------------------------------- fixed thresholds

@pytest.mark.parametrize("norm", NORMS)
def test_fixed_thresholds_agree_with_the_grid_and_bracket_the_robust_error(norm):
    from robcurves.exact.bab.thresholds import robust_at_thresholds, union_robust_error_interval

    m = _mlp(2, (12, 12), 3, seed=5)
    rng = np.random.default_rng(3)
    x = rng.random((8, 1, 1, 2)).astype(np.float32)
    y = _pred(m, x)
    y[0] = (y[0] + 1) % 3  # one misclassified point: never robust
    truth = np.array([0.0] + [_grid_best(m, x[i], int(y[i]), norm)[0] for i in range(1, len(x))])
    cell = 2.5e-3 * (2 if norm == "l1" else 1)
    eps = [float(np.quantile(truth[1:], q)) for q in (0.3, 0.7)]
    res = robust_at_thresholds(m, x, y, norm, eps, time_limit=5.0)
    assert res.status.shape == (len(x), 2)
    for j, e in enumerate(res.eps):
        rob, non = res.status[:, j] == "robust", res.status[:, j] == "not_robust"
        assert not rob[0] and non[0]
        assert np.all(truth[rob] >= e - cell)  # a proof never contradicts the grid
        assert np.all(truth[non] <= e + cell)  # a witness within eps: the grid is within a cell of it
        true_re = np.mean(truth <= e)
        lo, hi = res.robust_error_interval()[j]
        assert lo - 1 / len(x) <= true_re <= hi + 1 / len(x)
        assert np.mean(res.status[:, j] == "unknown") <= 0.25
    lo, hi = union_robust_error_interval([res, res], [0, 1])
    assert lo == res.robust_error_interval()[1][0] and lo <= hi


def _conv_first_net(seed: int, box=(0.0, 1.0)):
    """conv 3x3 on a 10x10 input (each unit reads 9 of 100 coordinates) -> relu -> dense -> relu -> dense."""
    from robcurves.network import Conv2D, Dense, Flatten, Network, ReLU

    rng = np.random.default_rng(seed)
    k = lambda *s: rng.normal(size=s).astype(np.float32) * 0.5  # noqa: E731
    c1 = Conv2D((10, 10, 1), k(3, 3, 1, 3), k(3), (1, 1), "same", name="c1")
    r1 = ReLU(c1.out_shape, name="r1")
    fl = Flatten(r1.out_shape)
    d1 = Dense(fl.out_shape, k(fl.out_shape[0], 12) * 0.3, k(12), name="d1")
    r2 = ReLU(d1.out_shape, name="r2")
    d2 = Dense(r2.out_shape, k(12, 3), k(3), name="logits")
    return Network((10, 10, 1), [(c1, [0]), (r1, [1]), (fl, [2]), (d1, [3]), (r2, [4]), (d2, [5])], bounds=box)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("box", [(0.0, 1.0), (-1.0, 1.0)])
def test_direct_layer_rows_on_the_kernel_support_equal_the_full_crown_rows(norm, box):
    """The root's first-layer rows computed on the few input coordinates each unit reads
    (``_direct_rows``) give the full CROWN rows' bounds, rounding terms included (an input box
    of both signs exercises the ``(1 - m) mags`` term)."""
    net = _conv_first_net(4, box)
    eng = BoundEngine(net, norm)
    assert eng._direct_support(1) is not None and eng._direct_support(1)[0].shape[1] == 9
    rng = np.random.default_rng(2)
    r = {"linf": 0.1, "l2": 0.5, "l1": 1.5}[norm]
    balls = [InputBall.make(rng.uniform(*box, size=100) * (rng.random(100) < 0.6), norm, r, box) for _ in range(5)]
    lo = np.full((5, 300), -1e3)
    hi = np.full((5, 300), 1e3)
    roots = eng.root_bounds_batch(balls)
    pts, units = np.nonzero(np.ones((5, 300), bool))
    fast = eng._direct_rows(roots, 1, lo, hi, pts, units)
    eng._fns[("direct", 1)] = None  # the full rows through the generic pass
    slow = eng._crown_rows_batch(roots, 1, lo, hi, 0)
    for f, s in zip(fast, slow):
        np.testing.assert_allclose(f, s, rtol=1e-12, atol=1e-12)


def test_thresholds_crown_first_decides_as_alpha_on_every_row(monkeypatch):
    """Root proofs with CROWN first (alpha only for the points CROWN leaves open) are exactly
    the proofs of alpha on every row (the slow path), and CROWN alone does decide some."""
    from robcurves.exact.bab import bounds as bounds_mod
    from robcurves.exact.bab.thresholds import robust_at_thresholds

    m = _mlp(4, (16, 16), 3, seed=11)
    rng = np.random.default_rng(5)
    x = rng.random((24, 1, 1, 4)).astype(np.float32)
    y = _pred(m, x)
    eps = [0.02, 0.05, 0.08, 0.12]
    fast = robust_at_thresholds(m, x, y, "linf", eps, time_limit=0.0)
    plain = bounds_mod.BoundEngine.bound

    def no_crown(self, root, start, C, *a, **k):  # the margin rows never decided by CROWN alone
        lb = plain(self, root, start, C, *a, **k)
        return np.full_like(lb, -np.inf) if start == self.output and not k.get("full") else lb

    monkeypatch.setattr(bounds_mod.BoundEngine, "bound", no_crown)
    slow = robust_at_thresholds(m, x, y, "linf", eps, time_limit=0.0)
    assert slow.info["stats"]["root_crown_proven"] == [0] * len(eps)
    assert sum(fast.info["stats"]["root_crown_proven"]) > 0
    np.testing.assert_array_equal(fast.status, slow.status)
    # alpha matters here: some point is proven by alpha but not by CROWN
    assert sum(fast.info["stats"]["root_proven"]) > sum(fast.info["stats"]["root_crown_proven"])


def test_table1_certified_interval_from_exact_brackets():
    from robcurves.tables import RobustErrorRow, add_certified_columns, certified_robust_error

    lower = np.array([0.0, 0.09, 0.2, 0.3])
    upper = np.array([0.0, 0.1, 0.25, np.inf])
    assert certified_robust_error(lower, upper, 0.1) == (0.5, 0.5)
    assert certified_robust_error(lower, upper, 0.22) == (0.5, 0.75)
    rows = [RobustErrorRow("m", "linf", 0.22, 0.5, 0.1, 0.9, 4), RobustErrorRow("other", "linf", 0.1, 0.2, 0, 1, 4)]
    add_certified_columns(rows, {("m", "linf"): (lower, upper)})
    assert (rows[0].certified_low, rows[0].certified_high, rows[0].certified_n) == (0.5, 0.75, 4)
    assert math.isnan(rows[1].certified_low) and rows[1].certified_n == 0


def test_cli_exact_brackets_the_first_points(tmp_path):
    import json
    import subprocess
    import sys

    m = _mlp(6, (8,), 3, seed=1, in_shape=(1, 1, 6))
    m.save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 1, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=_pred(m, x))
    proc = subprocess.run([sys.executable, "-m", "robcurves", "--dataset", str(tmp_path / "d.npz"), "--model_path",
                           str(tmp_path / "m.keras"), "--norms", "inf", "2", "--exact", "2", "--exact_time_limit", "5",
                           "--save", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{") and "exact_method" in ln]
    assert [ln["norm"] for ln in lines] == ["linf", "l2"] and all(ln["exact_method"] == "bab" for ln in lines)
    for norm in ("linf", "l2"):
        data = json.loads((tmp_path / "out" / f"d_m_{norm}_exact.json").read_text())
        assert len(data["points"]) == 2 and all(p["lower"] <= (p["upper"] or np.inf) for p in data["points"])
    bad = subprocess.run([sys.executable, "-m", "robcurves", "--dataset", str(tmp_path / "d.npz"), "--model_path",
                          str(tmp_path / "m.keras"), "--exact", "-1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--exact" in bad.stderr and "Traceback" not in bad.stderr


def test_a_time_out_gives_a_correct_bracket():
    m = _mlp(6, (10, 10), 3, seed=3)
    rng = np.random.default_rng(4)
    x = rng.random((3, 1, 1, 6)).astype(np.float32)
    y = _pred(m, x)
    full = bab_brackets(m, x, y, "linf", BabConfig(time_limit=30, rel_tol=0.001, max_radius=1.0))
    tiny = bab_brackets(m, x, y, "linf", BabConfig(time_limit=0.05, rel_tol=0.001, max_radius=1.0))
    _check_witnesses(m, x, y, tiny)
    for i in range(len(x)):
        assert tiny.lower[i] <= full.upper[i] * (1 + 1e-9)
        assert tiny.upper[i] >= full.lower[i] * (1 - 1e-9)
        if tiny.status[i] == "optimal":  # only if the bracket really closed
            assert tiny.upper[i] - tiny.lower[i] <= 0.001 * tiny.upper[i] * (1 + 1e-9)
        else:
            assert tiny.status[i] == "time_limit"


def test_the_bounds_phase_starts_at_the_norms_fraction_of_the_top_radius():
    """l1/l2 start the bounds phase at ``search.LOW_START[norm]`` x the top radius (the
    attack's distance, here ``max_radius``), overridable per norm; linf starts at the top."""
    from robcurves.exact.bab.search import LOW_START

    m = _mlp(6, (10, 10), 3, seed=3)
    x = np.random.default_rng(4).random((1, 1, 1, 6)).astype(np.float32)
    y = _pred(m, x)

    def first_radius(norm, **kw):
        res = bab_brackets(m, x, y, norm, BabConfig(time_limit=2, max_radius=1.0, **kw))
        return res.meta["info"][0]["queries"][0]["r"]

    for norm in ("l1", "l2"):
        assert first_radius(norm) == pytest.approx(LOW_START[norm])
    assert first_radius("l1", low_start={"l1": 0.3}) == pytest.approx(0.3)
    assert first_radius("linf") == pytest.approx(1.0 - 0.9 * 0.01)


def test_branch_and_bound_stays_within_reach_of_where_the_bounds_failed():
    """l2: with a witness far above the certified radius (the attack's distance is 2-4x it on
    MMR MNIST), no branch-and-bound query goes more than ``reach`` above the larger of the
    smallest radius where the bounds alone failed and the largest radius proven so far: no
    ``top`` query at the witness's distance, no bisection up there."""
    from robcurves.exact.bab.search import SearchSettings

    m = _mlp(6, (10, 10), 3, seed=3)
    x = np.random.default_rng(4).random((1, 1, 1, 6)).astype(np.float32)
    y = _pred(m, x)
    # the witness: the box point of another class whose segment from x crosses the decision
    # boundary furthest away (far above the certified radius)
    f = _logits(m)
    cand = np.random.default_rng(0).random((4000, 1, 1, 6)).astype(np.float32)
    cand = cand[np.argmax(f(cand), axis=1) != y[0]][:400]
    ts = np.linspace(0, 1, 201)[1:, None, None, None]
    cross = [float(ts[np.argmax(np.argmax(f((x[0] + ts * (w - x[0])).astype(np.float32)), axis=1) != y[0])][0, 0, 0]
             * np.sqrt(np.sum((w - x[0]) ** 2))) for w in cand]
    w = cand[int(np.argmax(cross))][None]
    res = bab_brackets(m, x, y, "l2", BabConfig(time_limit=15),
                       attack_distances=np.sqrt(np.sum((w - x) ** 2, axis=(1, 2, 3))), x_adv=w)
    qs = res.meta["info"][0]["queries"]
    failed = [q["r"] for q in qs if not q["bab"] and q["outcome"] == "unknown"]
    assert failed and any(q["bab"] for q in qs)
    reach, proven = SearchSettings().reach["l2"], 0.0
    for q in qs:
        if q["bab"]:
            assert q["r"] <= (1 + reach) * max(min(failed), proven) * (1 + 1e-9), (q, min(failed), proven)
        if q["outcome"] == "robust":
            proven = max(proven, q["r"])


@pytest.mark.parametrize("norm", NORMS)
def test_alpha_crown_intermediate_bounds_are_tighter_and_hold_for_sampled_float32_points(norm):
    """``root_bounds(ball, k)``: alpha-CROWN for the units CROWN leaves unstable; the bounds
    are tighter in the deeper layers (inside CROWN's where the layers below are the same:
    deeper, CROWN's default slopes on tighter inputs can lose on a unit), and contain the
    float32 model's pre-activations at sampled points of the ball."""
    m = random_relu_mlp(8, (16, 16, 16), 3, seed=1)
    eng = BoundEngine(m, norm)
    rng = np.random.default_rng(1)
    r = {"linf": 0.15, "l2": 0.6, "l1": 1.2}[norm]
    x0 = rng.random(8)
    ball = InputBall.make(x0, norm, r)
    crown, alpha = eng.root_bounds(ball), eng.root_bounds(ball, 20)
    assert alpha.info["alpha_rows"] > 0
    for k in range(2):
        assert np.all(alpha.lower[k] >= crown.lower[k]) and np.all(alpha.upper[k] <= crown.upper[k])
    for k in (1, 2):  # the first layer is an affine map of the input: CROWN is exact there
        assert np.sum(alpha.upper[k] - alpha.lower[k]) < 0.97 * np.sum(crown.upper[k] - crown.lower[k])
    pts = _sample_ball(rng, x0, norm, r, 3000)
    pre = _preactivations(m, pts.reshape(-1, 1, 1, 8))
    for k, (lo, hi) in enumerate(zip(alpha.lower, alpha.upper)):
        assert np.all(pre[k] >= lo) and np.all(pre[k] <= hi)
    last = eng.root_bounds(ball, 20, layers=[-1])  # only the last ReLU layer optimised
    np.testing.assert_array_equal(last.lower[1], crown.lower[1])
    assert np.sum(last.upper[2] - last.lower[2]) < np.sum(crown.upper[2] - crown.lower[2])


def test_the_search_roots_use_the_iters_intermediate_knob():
    """``BabSettings.iters_intermediate`` reaches every root of the radius search (default:
    the norm's entry of ``domains.ITERS_INTERMEDIATE``), and tightens the root's margin bound."""
    from robcurves.exact.bab.domains import ITERS_INTERMEDIATE

    m = random_relu_mlp(8, (16, 16, 16), 3, seed=1)
    x = np.random.default_rng(1).random((1, 1, 1, 8)).astype(np.float32)
    y = _pred(m, x)

    def queries(norm, it):
        cfg = BabConfig(time_limit=3, max_radius=0.15, bab=BabSettings(iters_intermediate=it))
        res = bab_brackets(m, x, y, norm, cfg)
        return res.meta["info"][0]["queries"]

    for norm in ("linf", "l1"):
        assert queries(norm, None)[0]["root_iters"] == ITERS_INTERMEDIATE[norm]
    on, off = queries("linf", 20), queries("linf", 0)
    assert all(q["root_iters"] == 20 for q in on) and all(q["root_iters"] == 0 for q in off)
    assert on[0]["r"] == off[0]["r"] and on[0]["root_lb"] > off[0]["root_lb"] + 1e-3
