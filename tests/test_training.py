"""Training rules of the model zoo (robcurves.training): offline, on small slices of digits."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from robcurves import training as T
from robcurves.data import Dataset, load_sklearn_digits
from robcurves.models import fc1, lenet_small
from robcurves.norms import parse_norm


@pytest.fixture(scope="module")
def digits():
    train, test = load_sklearn_digits()
    return train, test


def _subset(ds: Dataset, n: int) -> Dataset:
    return Dataset(ds.x[:n], ds.y[:n], ds.name, ds.split, ds.class_names, ds.source)


def _ce(model, ds):
    z = model(ds.x, training=False)
    return float(np.mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ds.y, logits=z).numpy()))


def _weights_equal(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def test_unknown_method_names_the_known_ones(digits):
    train, _ = digits
    model = lenet_small(train.input_shape, 10, seed=0)
    with pytest.raises(ValueError) as err:
        T.train_model(model, train, "fgsm", epochs=1, batch_size=32, learning_rate=1e-3, seed=0)
    msg = str(err.value)
    assert "'fgsm'" in msg
    for name in ("st", "at_linf", "at_l2", "mmr_at_linf", "mmr_at_l2", "ibp_linf", "ibp_l2"):
        assert name in msg


def test_bad_options_and_eps_give_clear_errors(digits):
    train, _ = digits
    model = lenet_small(train.input_shape, 10, seed=0)
    kw = dict(epochs=1, batch_size=32, learning_rate=1e-3, seed=0)
    with pytest.raises(ValueError, match="needs a positive finite eps"):
        T.train_model(model, train, "at_linf", **kw)
    with pytest.raises(ValueError, match="takes no eps"):
        T.train_model(model, train, "st", eps=0.1, **kw)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lamda'\]"):
        T.train_model(model, train, "mmr_at_linf", eps=0.1, lamda=1.0, **kw)


def test_chain_reproduces_the_model():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(7, 8, 8, 1)).astype(np.float32)
    for model in (lenet_small((8, 8, 1), 10, seed=1), fc1((8, 8, 1), 10, hidden=32, seed=1)):
        logits, pre = T.forward._forward(T.network_of(model), tf.constant(x))
        np.testing.assert_allclose(logits.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
        assert len(pre) == (3 if model.name == "cnn_lenet_small" else 1)


def test_st_is_deterministic_given_the_seed(digits):
    train = _subset(digits[0], 128)
    kw = dict(epochs=2, batch_size=64, learning_rate=1e-3)
    from tensorflow.python.framework import config as tf_config

    determinism_before = tf_config.is_op_determinism_enabled()
    models, records = [], []
    for seed in (3, 3):
        m = lenet_small(train.input_shape, 10, seed=0)
        records.append(T.train_model(m, train, "st", seed=seed, **kw))
        models.append(m)
    assert _weights_equal(models[0], models[1])
    assert records[0]["train_loss"] == records[1]["train_loss"]
    # Op determinism is switched on for training only, not left on for later code.
    assert tf_config.is_op_determinism_enabled() == determinism_before
    rec = records[0]
    assert rec["kind"] == "train" and rec["method"] == "st" and rec["seed"] == 3
    assert rec["epochs"] == 2 and len(rec["history"]) == 2 and rec["time_s"] > 0
    assert 0.0 <= rec["train_accuracy"] <= 1.0


def test_adversarial_training_is_deterministic_too(digits):
    """PGD random starts are seeded by (seed, step): two runs give the same weights."""
    train = _subset(digits[0], 64)
    models = []
    for _ in range(2):
        m = lenet_small(train.input_shape, 10, seed=0)
        T.train_model(m, train, "at_l2", eps=0.5, epochs=1, batch_size=32, learning_rate=1e-3, seed=5,
                      pgd_steps=2, ae_frac=1.0)
        models.append(m)
    assert _weights_equal(*models)


@pytest.mark.parametrize("method,eps", [
    ("st", None), ("at_linf", 0.1), ("at_l2", 0.5), ("mmr_at_linf", 0.1), ("mmr_at_l2", 0.5),
    ("ibp_linf", 0.05), ("ibp_l2", 0.2),
])
def test_every_method_lowers_the_loss(digits, method, eps):
    train = _subset(digits[0], 192)
    model = lenet_small(train.input_shape, 10, seed=0)
    fast = {"pgd_steps": 3} if method.startswith(("at", "mmr")) else {}
    before = _ce(model, train)
    if method.startswith("ibp"):
        norm = method.rsplit("_", 1)[1]
        worst_before = _verified_ce(model, train, eps, norm)
    rec = T.train_model(model, train, method, eps=eps, epochs=3, batch_size=64, learning_rate=3e-3, seed=0, **fast)
    assert np.isclose(rec["train_loss"], _ce(model, train), rtol=1e-4)
    assert rec["norm"] == (None if method == "st" else method.rsplit("_", 1)[1])
    if method.startswith("ibp"):  # IBP's objective: the cross-entropy of the worst-case margins
        assert rec["train_loss"] < before
        assert _verified_ce(model, train, eps, norm) < 0.8 * worst_before
    else:
        assert rec["train_loss"] < 0.8 * before, (method, before, rec["train_loss"])


def _verified_ce(model, ds, eps, norm):
    ub = T.margin_upper_bounds(model, ds.x, ds.y, eps, norm)
    return float(np.mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ds.y, logits=ub).numpy()))


def test_at_is_more_robust_than_st_at_the_training_eps(digits):
    train, test = digits
    train = _subset(train, 448)
    eps = 0.15
    errs = {}
    for method in ("st", "at_linf"):
        model = lenet_small(train.input_shape, 10, seed=0)
        T.train_model(model, train, method, eps=None if method == "st" else eps, epochs=6, batch_size=64,
                      learning_rate=3e-3, seed=0, **({} if method == "st" else {"ae_frac": 1.0, "pgd_steps": 5}))
        x, y = test.x[:200], test.y[:200]
        x_adv = T.pgd_attack(model, x, y, "linf", eps, steps=10, seed=0)
        assert np.max(np.abs(x_adv - x)) <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        errs[method] = float(np.mean(model(x_adv).numpy().argmax(1) != y))
    assert errs["at_linf"] < errs["st"] - 0.1, errs


def _ball_samples(rng, x, eps, norm, n):
    """n random points per row of x in the eps-ball (linf: also inside [0, 1])."""
    xs = np.repeat(x[:, None], n, axis=1)
    if norm == "linf":
        pts = xs + rng.uniform(-eps, eps, size=xs.shape)
        pts[:, : n // 2] = xs[:, : n // 2] + eps * rng.choice([-1.0, 1.0], size=xs[:, : n // 2].shape)  # corners
        return np.clip(pts, 0.0, 1.0).astype(np.float32)
    d = rng.normal(size=xs.shape)
    d /= np.linalg.norm(d.reshape(*d.shape[:2], -1), axis=2)[..., None, None, None]
    r = eps * np.sqrt(rng.uniform(size=(*xs.shape[:2], 1, 1, 1)))
    r[:, : n // 2] = eps  # on the sphere
    return (xs + r * d).astype(np.float32)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.8)])
@pytest.mark.parametrize("arch", ["lenet", "fc1"])
def test_ibp_bounds_contain_the_logits(norm, eps, arch):
    rng = np.random.default_rng(1)
    model = lenet_small((8, 8, 1), 10, seed=2) if arch == "lenet" else fc1((8, 8, 1), 10, hidden=40, seed=2)
    x = rng.uniform(size=(6, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=6)
    lo, hi = T.interval_bounds(model, x, eps, norm)
    ub = T.margin_upper_bounds(model, x, y, eps, norm)
    assert np.all(lo <= hi) and np.all(ub[np.arange(6), y] == 0)
    pts = _ball_samples(rng, x, eps, norm, 200)
    z = model(pts.reshape(-1, 8, 8, 1)).numpy().reshape(6, 200, 10)
    tol = 1e-4 * (1 + np.abs(z).max())
    assert np.all(z >= lo[:, None] - tol) and np.all(z <= hi[:, None] + tol)
    margins = z - np.take_along_axis(z, y[:, None, None], axis=2)
    assert np.all(margins <= ub[:, None] + tol)
    # The PGD adversarial examples are inside the bounds too.
    x_adv = T.pgd_attack(model, x, y, norm, eps, steps=10, seed=0)
    z_adv = model(x_adv).numpy()
    assert np.all(z_adv >= lo - tol) and np.all(z_adv <= hi + tol)
    # The elided margin bound is at least as tight as the difference of logit bounds.
    naive = hi - np.take_along_axis(lo, y[:, None], axis=1)
    off = np.arange(10)[None] != y[:, None]
    assert np.all(ub[off] <= naive[off] + tol)


def test_mmr_distances_match_the_geometry_of_a_one_layer_net():
    """For one hidden layer, the region distances are |z_i| / ||w_i||_q exactly."""
    rng = np.random.default_rng(0)
    model = fc1((8, 8, 1), 3, hidden=5, seed=0)
    x = rng.uniform(size=(4, 8, 8, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    ops = T.network_of(model)
    w, b = model.get_layer("fc1").get_weights()
    z = x.reshape(4, -1) @ w + b
    for norm, q in (("linf", 1), ("l2", 2)):
        gamma = 1e3  # every distance is below gamma: the term is the mean of 1 - d / gamma
        _, rb, _ = T.mmr._mmr_terms(ops, tf.constant(x), tf.constant(y), parse_norm(norm), 5, 3, gamma, gamma)
        dist = np.abs(z) / np.linalg.norm(w, ord=q, axis=0)
        np.testing.assert_allclose(rb.numpy(), np.mean(1 - dist / gamma, axis=1), rtol=1e-5)


@pytest.mark.parametrize("dense_conv_max", [0, 8192])  # conv Jacobians by convolution / by matrix
@pytest.mark.parametrize("norm,q", [("linf", 1), ("l2", 2)])
def test_mmr_geometry_matches_autodiff_on_a_cnn(monkeypatch, dense_conv_max, norm, q):
    """Region distances |z_i| / ||grad z_i||_q and the logit Jacobian agree with autodiff."""
    import robcurves.network.layers.affine as NL  # where Conv2D reads it

    monkeypatch.setattr(NL, "DENSE_JVP_MAX", dense_conv_max)
    rng = np.random.default_rng(3)
    model = lenet_small((8, 8, 1), 10, seed=4)
    ops = T.network_of(model)
    x = tf.constant(rng.uniform(size=(3, 8, 8, 1)).astype(np.float32))
    logits, dist, v = T.mmr._region_geometry(ops, x, parse_norm(norm))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z, pre = T.forward._forward(ops, x)
        pre = tf.concat([tf.reshape(p, (3, -1)) for p in pre], axis=1)
    jac_pre = tape.batch_jacobian(pre, x).numpy().reshape(3, pre.shape[1], -1)  # (B, n_hidden, d)
    jac_z = tape.batch_jacobian(z, x).numpy().reshape(3, 10, -1)
    np.testing.assert_allclose(v.numpy(), np.transpose(jac_z, (0, 2, 1)), rtol=1e-4, atol=1e-5)
    expected = np.abs(pre.numpy()) / np.maximum(np.linalg.norm(jac_pre, ord=q, axis=2), 1e-5)
    np.testing.assert_allclose(dist.numpy(), expected, rtol=1e-4, atol=1e-6)
