"""The attack engine against answers known in closed form (affine classifiers)."""

from __future__ import annotations

import os
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from scipy.optimize import brentq, linprog

keras = pytest.importorskip("keras")

from robcurves.attacks import (  # noqa: E402
    ATTACK_METHODS,
    AttackResult,
    MinimalNormAttack,
    default_methods,
    minimal_perturbations,
    validate_method_config,
    verify_adversarial,
)
from robcurves.norms import parse_norm  # noqa: E402

NORMS = ["linf", "l2", "l1"]
SHAPE = (4, 4, 1)
D = int(np.prod(SHAPE))
C = 4


def affine_model(W: np.ndarray, b: np.ndarray, shape=SHAPE, extra=None):
    """Keras model x -> W x + b on the flattened input (W is (classes, D))."""
    inp = keras.Input(shape)
    h = keras.layers.Flatten()(inp)
    dense = keras.layers.Dense(W.shape[0])
    out = dense(h)
    if extra is not None:
        out = extra(h, out)
    model = keras.Model(inp, out)
    dense.set_weights([W.T.astype(np.float32), b.astype(np.float32)])
    return model


def closed_form(W, b, X, labels, norm):
    """min_k (z_y - z_k) / ||w_y - w_k||_q, q the dual exponent: the box is inactive."""
    q = parse_norm(norm).dual_p
    Z = X @ W.T + b
    out = []
    for z, y in zip(Z, labels):
        out.append(min((z[y] - z[k]) / np.linalg.norm(W[y] - W[k], ord=q) for k in range(len(W)) if k != y))
    return np.array(out)


def box_constrained(W, b, x, y, norm):
    """The exact minimal distance with the box [0, 1] active: an LP (linf, l1) or the
    KKT condition of the projection QP (l2), per target class; +inf if unreachable."""
    z = W @ x + b
    lo, hi = -x, 1.0 - x
    best = np.inf
    for k in range(len(W)):
        if k == y:
            continue
        a, m = W[k] - W[y], z[y] - z[k]  # need a . delta >= m
        n = len(x)
        if norm == "linf":  # variables (delta, t)
            c = np.r_[np.zeros(n), 1.0]
            A = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))], [-a[None, :], np.zeros((1, 1))]])
            ub = np.r_[np.zeros(2 * n), -m]
            res = linprog(c, A_ub=A, b_ub=ub, bounds=[*zip(lo, hi), (0, None)], method="highs")
        elif norm == "l1":  # variables (delta, u), u >= |delta|
            c = np.r_[np.zeros(n), np.ones(n)]
            A = np.block([[np.eye(n), -np.eye(n)], [-np.eye(n), -np.eye(n)], [-a[None, :], np.zeros((1, n))]])
            ub = np.r_[np.zeros(2 * n), -m]
            res = linprog(c, A_ub=A, b_ub=ub, bounds=[*zip(lo, hi), *[(0, None)] * n], method="highs")
        else:  # l2: delta(lam) = clip(lam * a, lo, hi) with a . delta(lam) = m
            def reach(lam):
                return a @ np.clip(lam * a, lo, hi) - m
            if reach(1e9) < 0:
                continue
            lam = brentq(reach, 0.0, 1e9, xtol=1e-14, rtol=1e-14)
            best = min(best, float(np.linalg.norm(np.clip(lam * a, lo, hi))))
            continue
        if res.status == 0:
            best = min(best, float(res.fun))
    return best


@pytest.fixture(scope="module")
def affine_case():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(C, D))
    b = -W.sum(1) * 0.5 + rng.normal(size=C) * 0.1  # boundaries pass near the centre
    model = affine_model(W, b)
    X = rng.uniform(0.35, 0.65, size=(4000, D))
    labels = np.argmax(X @ W.T + b, axis=1)
    return W, b, model, X, labels


def _pick_inactive(W, b, X, labels, norm, n=12):
    d = closed_form(W, b, X, labels, norm)
    # Every coordinate can move by 0.35 without leaving [0, 1]; no optimal perturbation
    # moves any coordinate by more than its norm, so distances below 0.3 keep the box
    # inactive. Take a spread of classes.
    keep = np.flatnonzero((d > 0.02) & (d < 0.3))
    order = keep[np.argsort(labels[keep], kind="stable")]
    chosen = np.concatenate([order[labels[order] == c][: max(1, n // C)] for c in range(C)])[:n]
    return X[chosen].reshape(-1, *SHAPE).astype(np.float32), labels[chosen], d[chosen]


def _fast(method: str) -> dict:
    """Each method's defaults, as the pipeline would use them."""
    return {"name": method}


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("method", sorted(ATTACK_METHODS))
def test_affine_closed_form_within_one_percent(affine_case, norm, method):
    W, b, model, X, labels = affine_case
    if parse_norm(norm).name not in ATTACK_METHODS[method].norms:
        pytest.skip(f"{method} does not support {norm}")
    x, y, exact = _pick_inactive(W, b, X, labels, norm)
    res = minimal_perturbations(model, x, y, norm, methods=[_fast(method)], progress=False)
    assert (res.status == "adversarial").all(), res.status
    assert np.all(res.distances <= exact * 1.01), (res.distances / exact)
    assert np.all(res.distances >= exact * (1 - 1e-3)), (res.distances / exact)
    is_adv, dist = verify_adversarial(model, x, res.x_adv, y, norm)
    assert is_adv.all() and np.allclose(dist, res.distances)
    assert set(res.method) == {method}


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("method", sorted(ATTACK_METHODS))
def test_affine_box_active_matches_lp(norm, method):
    if parse_norm(norm).name not in ATTACK_METHODS[method].norms:
        pytest.skip(f"{method} does not support {norm}")
    rng = np.random.default_rng(1)
    shape, n_cls = (2, 2, 2), 3
    dim = 8
    W = rng.normal(size=(n_cls, dim))
    b = -W.sum(1) * 0.5
    model = affine_model(W, b, shape)
    xs, ys, exact = [], [], []
    for _ in range(400):
        # Many coordinates on the faces of the box, so that the box binds.
        x = np.where(rng.random(dim) < 0.6, rng.integers(0, 2, dim).astype(float), rng.uniform(0, 1, dim))
        x = x.astype(np.float32).astype(np.float64)
        y = int(np.argmax(W @ x + b))
        free = closed_form(W, b, x[None], np.array([y]), norm)[0]
        boxed = box_constrained(W, b, x, y, norm)
        if np.isfinite(boxed) and boxed > 1.05 * free and boxed > 1e-2:
            xs.append(x), ys.append(y), exact.append(boxed)
        if len(xs) == 6:
            break
    assert len(xs) >= 3, "test construction: not enough box-active points"
    x = np.array(xs, np.float32).reshape(-1, *shape)
    y, exact = np.array(ys), np.array(exact)
    res = minimal_perturbations(model, x, y, norm, methods=[_fast(method)], progress=False)
    assert (res.status == "adversarial").all(), res.status
    assert np.all(res.distances <= exact * 1.01), (res.distances / exact)
    assert np.all(res.distances >= exact * (1 - 1e-3)), (res.distances / exact)


class _ClaimsEverything(MinimalNormAttack):
    """A broken method: returns a tiny, harmless perturbation and calls it a success."""

    name = "_test_claims_everything"
    defaults = {}

    def _build(self, problem):
        def search(x, y, seeds, incumbent):
            n = len(x)
            return SimpleNamespace(x_adv=x + np.float32(1e-3), nonfinite=np.zeros(n, bool),
                                   gradients=np.zeros(n, np.int64), forwards=np.zeros(n, np.int64))
        return search


@pytest.fixture
def fake_method(monkeypatch):
    monkeypatch.setitem(ATTACK_METHODS, _ClaimsEverything.name, _ClaimsEverything)


def test_verification_rejects_unflipped_candidates(affine_case, fake_method):
    W, b, model, X, labels = affine_case
    x, y, _ = _pick_inactive(W, b, X, labels, "l2", n=8)
    res = minimal_perturbations(model, x, y, "l2", methods=[{"name": "_test_claims_everything", "refine_steps": 0}],
                                progress=False)
    assert (res.status == "not_found").all()
    assert np.isinf(res.distances).all()
    assert np.array_equal(res.x_adv, x)
    assert (res.method == "").all()
    # Verification itself: the candidates do not flip.
    is_adv, dist = verify_adversarial(model, x, x + 1e-3, y, "l2")
    assert not is_adv.any() and np.allclose(dist, 4e-3, rtol=1e-3)


def test_fake_method_never_beats_a_real_one(affine_case, fake_method):
    W, b, model, X, labels = affine_case
    x, y, exact = _pick_inactive(W, b, X, labels, "linf", n=4)
    res = minimal_perturbations(model, x, y, "linf", progress=False,
                                methods=[{"name": "_test_claims_everything", "refine_steps": 0}, {"name": "pgd_bisection"}])
    assert (res.method == "pgd_bisection").all()
    assert np.isinf(res.per_method["_test_claims_everything"]).all()
    assert np.all(res.distances <= exact * 1.01)


class _OOMUnlessSmall(MinimalNormAttack):
    """Pretends that batches of more than 2 points do not fit in memory."""

    name = "_test_oom_unless_small"
    defaults = {}
    sizes: list = []

    def _build(self, problem):
        class ResourceExhaustedError(RuntimeError):  # what TensorFlow raises, by name
            pass

        def search(x, y, seeds, incumbent):
            n = len(x)
            if n > 2:
                raise ResourceExhaustedError("OOM when allocating tensor (test)")
            _OOMUnlessSmall.sizes.append(n)
            return SimpleNamespace(x_adv=x, nonfinite=np.zeros(n, bool), gradients=np.zeros(n, np.int64),
                                   forwards=np.zeros(n, np.int64))
        return search


def test_batch_that_does_not_fit_is_split(affine_case, monkeypatch):
    monkeypatch.setitem(ATTACK_METHODS, _OOMUnlessSmall.name, _OOMUnlessSmall)
    _OOMUnlessSmall.sizes = []
    W, b, model, X, labels = affine_case
    x, y, _ = _pick_inactive(W, b, X, labels, "l2", n=7)
    res = minimal_perturbations(model, x, y, "l2", methods=[{"name": _OOMUnlessSmall.name, "refine_steps": 0}],
                                batch_size=7, progress=False)
    assert (res.status == "not_found").all()
    assert sum(_OOMUnlessSmall.sizes) == len(x) and max(_OOMUnlessSmall.sizes) <= 2


def test_progress_lines(affine_case, capsys):
    W, b, model, X, labels = affine_case
    x, y, _ = _pick_inactive(W, b, X, labels, "linf", n=4)
    minimal_perturbations(model, x, y, "linf", methods=[{"name": "fmn", "steps": 5}], batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "4/4 points (100.0%)" in err and "points/s" in err and "ETA" in err


def test_determinism_same_seed_same_distances(affine_case):
    W, b, model, X, labels = affine_case
    x, y, _ = _pick_inactive(W, b, X, labels, "l1", n=6)
    cfg = [{"name": "pgd_bisection", "restarts": 2, "bisection_steps": 4, "steps": 5}]
    r1 = minimal_perturbations(model, x, y, "l1", methods=cfg, seed=3, progress=False)
    r2 = minimal_perturbations(model, x, y, "l1", methods=cfg, seed=3, progress=False)
    assert np.array_equal(r1.distances, r2.distances)
    assert np.array_equal(r1.x_adv, r2.x_adv)


def test_misclassified_points_at_zero(affine_case):
    W, b, model, X, labels = affine_case
    x, y, _ = _pick_inactive(W, b, X, labels, "linf", n=4)
    y_wrong = (y + 1) % C
    res = minimal_perturbations(model, x, y_wrong, "linf", methods=[{"name": "fmn", "steps": 5}], progress=False)
    assert (res.status == "misclassified").all()
    assert (res.distances == 0).all() and np.array_equal(res.x_adv, x)
    assert (res.method == "").all()


def test_unbreakable_point_is_not_found():
    W = np.zeros((3, D))
    b = np.array([100.0, 0.0, 0.0])
    model = affine_model(W, b)
    x = np.full((2, *SHAPE), 0.5, np.float32)
    y = np.zeros(2, np.int64)
    for norm in NORMS:
        quick = [{"name": "fmn", "steps": 5}]
        if norm == "linf":  # the bisection's own "whole box tried" exit, once
            quick.append({"name": "pgd_bisection", "steps": 3, "bisection_steps": 2})
        res = minimal_perturbations(model, x, y, norm, methods=quick, progress=False)
        assert (res.status == "not_found").all(), res.status
        assert np.isinf(res.distances).all()
        assert not np.isnan(res.distances).any()


def test_shape_mismatch_names_both_shapes(affine_case):
    model = affine_case[2]
    x = np.full((2, 5, 5, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"\(4, 4, 1\).*\(5, 5, 1\)"):
        minimal_perturbations(model, x, np.zeros(2, np.int64), "l2", progress=False)


def test_nan_logits_on_clean_inputs_is_an_error():
    model = affine_model(np.ones((3, D)), np.zeros(3), extra=lambda h, out: keras.layers.Lambda(lambda t: t * np.nan)(out))
    x = np.full((2, *SHAPE), 0.5, np.float32)
    with pytest.raises(ValueError, match="non-finite logits"):
        minimal_perturbations(model, x, np.zeros(2, np.int64), "linf", progress=False)


def test_nan_during_search_marks_error_with_reason():
    rng = np.random.default_rng(5)
    W = rng.normal(size=(3, D))
    centre = np.full(D, 0.5, np.float32)
    b = -W @ centre
    b[0] += 3.0  # class 0 wins at the centre by a wide margin

    def poison(h, out):
        # Finite at the centre, NaN as soon as any pixel moves by more than 1e-3.
        import keras.ops as K
        gap = K.max(K.abs(h - centre), axis=1, keepdims=True)
        return out + 0.0 * K.sqrt(1e-3 - gap)

    model = affine_model(W, b, extra=poison)
    x = centre.reshape(1, *SHAPE).repeat(2, axis=0)
    quick = [{"name": "fmn", "steps": 10}, {"name": "pgd_bisection", "steps": 5, "bisection_steps": 2}]
    res = minimal_perturbations(model, x, np.zeros(2, np.int64), "linf", methods=quick, progress=False)
    assert (res.status == "error").all(), res.status
    assert all("non-finite" in r for r in res.reason)
    assert np.isinf(res.distances).all() and not np.isnan(res.distances).any()


def test_bad_inputs_fail_before_work(affine_case):
    model = affine_case[2]
    x = np.full((2, *SHAPE), 0.5, np.float32)
    with pytest.raises(ValueError, match="bounds"):
        minimal_perturbations(model, x + 1.0, np.zeros(2, np.int64), "l2", progress=False)
    with pytest.raises(ValueError, match="labels must lie in 0..3"):
        minimal_perturbations(model, x, np.array([0, 7]), "l2", progress=False)
    with pytest.raises(ValueError, match="unknown attack method 'nope'"):
        minimal_perturbations(model, x, np.zeros(2, np.int64), "l2", methods=[{"name": "nope"}], progress=False)


@pytest.mark.parametrize("norm", NORMS)
def test_linear_distance_matches_lp(norm):
    """The first-order step: the shortest perturbation inside the box that crosses one
    hyperplane, against the LP / KKT reference, with unreachable cases."""
    from robcurves import backend as B
    from robcurves.attacks.geometry import norm_ops

    rng = np.random.default_rng(7)
    rows, dim = 30, 6
    x = np.where(rng.random((rows, dim)) < 0.5, rng.integers(0, 2, (rows, dim)).astype(float), rng.random((rows, dim)))
    W = rng.normal(size=(2, dim))
    got, ref = [], []
    for i in range(rows):
        m = abs(rng.normal()) * 0.8
        b = np.array([m - W[0] @ x[i], -W[1] @ x[i]])  # z_0 - z_1 = m at x: a = w1 - w0
        ref.append(box_constrained(W, b, x[i], 0, norm))
        a = (W[1] - W[0])[None]
        got.append(B.to_numpy(norm_ops(norm).linear_distance(
            B.to_tensor(a), B.to_tensor([m]), B.to_tensor(-x[i][None]), B.to_tensor(1 - x[i][None])))[0])
    got, ref = np.array(got), np.array(ref)
    assert np.array_equal(np.isinf(got), np.isinf(ref)) and np.isinf(ref).any() and np.isfinite(ref).any()
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-4)


def test_validate_method_config():
    cfg = validate_method_config("linf", {"name": "pgd_bisection", "steps": 7})
    assert cfg["steps"] == 7 and "bisection_steps" in cfg
    with pytest.raises(ValueError, match="unknown option.*'stepz'"):
        validate_method_config("linf", {"name": "pgd_bisection", "stepz": 7})
    with pytest.raises(ValueError, match="'steps' must be int"):
        validate_method_config("l2", {"name": "pgd_bisection", "steps": "many"})
    with pytest.raises(ValueError, match="unknown attack method"):
        validate_method_config("l1", "magic")
    for norm in NORMS:
        for m in default_methods(norm):
            validate_method_config(norm, m)


def test_attack_statuses_have_their_own_name():
    """attacks' point statuses are ATTACK_STATUSES (exact has STATUSES of its own); no alias."""
    import robcurves.attacks as attacks
    from robcurves.attacks import result

    assert attacks.ATTACK_STATUSES == ("misclassified", "adversarial", "not_found", "error")
    assert not hasattr(attacks, "STATUSES") and not hasattr(result, "STATUSES")


def test_result_save_load_concatenate(tmp_path, affine_case):
    W, b, model, X, labels = affine_case
    x, y, _ = _pick_inactive(W, b, X, labels, "l2", n=4)
    y = y.copy()
    y[0] = (y[0] + 1) % C  # one misclassified point
    res = minimal_perturbations(model, x, y, "l2", methods=[{"name": "pgd_bisection", "bisection_steps": 3}],
                                progress=False)
    res.save(tmp_path / "a.npz")
    back = AttackResult.load(tmp_path / "a.npz")
    assert back.norm == "l2" and back.config == res.config
    for f in ("distances", "x_adv", "status", "reason", "method"):
        assert np.array_equal(getattr(back, f), getattr(res, f))
    assert np.array_equal(back.per_method["pgd_bisection"], res.per_method["pgd_bisection"])
    both = AttackResult.concatenate([res, back])
    assert len(both) == 2 * len(res) and both.status[0] == "misclassified"


# ----------------------------------------------------------------------------- budget, masking, presets
@pytest.fixture(scope="module")
def relu_case():
    """A small ReLU MLP on digits (scikit-learn's trainer) as Keras, and 16 test points."""
    from sklearn.neural_network import MLPClassifier

    from robcurves.data import load_sklearn_digits

    train, test = load_sklearn_digits(test_size=0.3, seed=0)
    clf = MLPClassifier(hidden_layer_sizes=(12,), activation="relu", max_iter=200, random_state=1)
    clf.fit(train.x.reshape(len(train.x), -1), train.y)
    inp = keras.Input(train.x.shape[1:])
    d1, d2 = keras.layers.Dense(12, activation="relu"), keras.layers.Dense(10)
    model = keras.Model(inp, d2(d1(keras.layers.Flatten()(inp))))
    d1.set_weights([clf.coefs_[0].astype(np.float32), clf.intercepts_[0].astype(np.float32)])
    d2.set_weights([clf.coefs_[1].astype(np.float32), clf.intercepts_[1].astype(np.float32)])
    ok = np.flatnonzero(clf.predict(test.x.reshape(len(test.x), -1)) == test.y)[:16]
    return model, test.x[ok], test.y[ok]


@pytest.mark.parametrize("norm", NORMS)
def test_compacted_batches_give_the_same_distances(relu_case, norm):
    """Rows that leave the batch (pruned or stopped early) change nothing but the cost."""
    model, x, y = relu_case
    early = {"name": "fmn", "targets": 3, "steps": 60, "patience": 10, "prune_after": 10, "prune_margin": 0.05}
    packed = minimal_perturbations(model, x, y, norm, methods=[early], progress=False)
    loose = minimal_perturbations(model, x, y, norm, methods=[{**early, "compact": False}], progress=False)
    np.testing.assert_allclose(packed.distances, loose.distances, rtol=1e-6)
    full = minimal_perturbations(model, x, y, norm, methods=[{**early, "patience": 0, "prune_after": 0}],
                                 progress=False)
    spent = packed.config["gradients_per_point"]["mean"]
    assert spent < 0.8 * loose.config["gradients_per_point"]["mean"], "compaction saved nothing"
    assert spent < 0.8 * full.config["gradients_per_point"]["mean"], "early stopping / pruning saved nothing"


def _quantised(W, b):
    """An affine classifier behind a quantising input layer: its gradient is zero."""
    inp = keras.Input(SHAPE)
    h = keras.layers.Flatten()(inp)
    q = keras.layers.Lambda(lambda t: keras.ops.round(t * 4.0) / 4.0)(h)
    dense = keras.layers.Dense(W.shape[0])
    model = keras.Model(inp, dense(q))
    dense.set_weights([W.T.astype(np.float32), b.astype(np.float32)])
    return model


@pytest.mark.parametrize("norm", NORMS)
def test_masking_check_flags_a_quantising_input_layer(affine_case, norm):
    from robcurves.attacks import masking_check

    W, b, plain, X, labels = affine_case
    masked = _quantised(W, b)
    x, y, _ = _pick_inactive(W, b, X, labels, norm, n=8)
    y = np.argmax(np.asarray(masked(x)), axis=1)
    res = minimal_perturbations(masked, x, y, norm, methods=[{"name": "fmn", "targets": 1, "steps": 20}],
                                progress=False)
    rep = masking_check(masked, x, y, res, queries=200)
    assert rep["checked"] == 8 and rep["beaten"] >= 4, rep
    assert res.config["masking_check"]["beaten"] == rep["beaten"]
    won = res.method == "masking_check"
    assert won.sum() == rep["beaten"]
    is_adv, dist = verify_adversarial(masked, x, res.x_adv, y, norm)
    assert is_adv[won].all() and np.allclose(dist[won], res.distances[won])
    # The same check on the plain model: gradients work, nothing to report.
    res2 = minimal_perturbations(plain, x, np.argmax(np.asarray(plain(x)), axis=1), norm, progress=False)
    rep2 = masking_check(plain, x, np.argmax(np.asarray(plain(x)), axis=1), res2, queries=200)
    assert rep2["beaten"] == 0, rep2


def test_presets():
    from robcurves.attacks import STRENGTHS

    assert STRENGTHS == ("fast", "default", "thorough")
    for norm in NORMS:
        assert default_methods(norm) == default_methods(norm, "default")
        cost = {}
        for s in STRENGTHS:
            ms = default_methods(norm, s)
            for m in ms:
                validate_method_config(norm, m)
            cost[s] = sum(max(1, m.get("targets", 1)) * m.get("steps", 100) for m in ms)
        assert cost["fast"] < cost["default"] < cost["thorough"], cost
    with pytest.raises(ValueError, match="unknown attack strength 'strong'"):
        default_methods("l2", "strong")


def test_warm_start_candidates_are_verified_and_shortened(affine_case):
    """Witnesses from another norm (or stage) compete as 'warm_start': verified, then
    shortened by the line search; a candidate that does not flip never counts."""
    W, b, model, X, labels = affine_case
    x, y, _ = _pick_inactive(W, b, X, labels, "l2", n=6)
    other = minimal_perturbations(model, x, y, "linf", progress=False)  # linf witnesses
    weak = [{"name": "fmn", "targets": 0, "steps": 1, "refine_steps": 0}]
    far = np.clip(x + 2.0 * (other.x_adv - x), 0.0, 1.0)  # beyond the boundary along the same direction
    res = minimal_perturbations(model, x, y, "l2", methods=weak, candidates=[far, x + 1e-3], progress=False)
    raw = parse_norm("l2").distance(other.x_adv, x)
    far_d = parse_norm("l2").distance(far, x)
    assert np.all(res.per_method["warm_start"] <= raw * 1.001), "the line search did not come back to the boundary"
    assert np.all(res.per_method["warm_start"] < far_d * 0.9)
    assert np.all(res.distances <= res.per_method["warm_start"])
    is_adv, dist = verify_adversarial(model, x, res.x_adv, y, "l2")
    assert is_adv.all() and np.allclose(dist, res.distances)
    with pytest.raises(ValueError, match="warm-start candidate has shape"):
        minimal_perturbations(model, x, y, "l2", methods=weak, candidates=[other.x_adv[:2]], progress=False)
