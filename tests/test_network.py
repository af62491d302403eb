"""The network description: layers against NumPy references, sound interval and linear bounds,
the Keras reader and its refusals."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from robcurves.network import (  # noqa: E402
    Add, AveragePooling2D, Conv2D, Dense, Domain, Flatten, GlobalAveragePooling2D, MaxPooling2D, Network, ReLU,
    Pad2D, Reshape, Scale, UnsupportedLayer, backward, concretize, crown_bounds, from_keras, identity_spec,
    interval_bounds, linear_bounds, to_keras,
)
from robcurves.network.layers import tf_same_pads  # noqa: E402

NORMS = ("linf", "l2", "l1")


def np_(t):
    return np.asarray(ops.convert_to_numpy(t), dtype=np.float64)


# ------------------------------------------------------------------ NumPy references

def ref_conv(x, k, b, strides, pads):
    """Direct loops over output positions (TF semantics: zero padding, HWIO kernel)."""
    n, H, W, _ = x.shape
    kh, kw, _, co = k.shape
    t, bo, l, r = pads
    xp = np.zeros((n, H + t + bo, W + l + r, x.shape[3]))
    xp[:, t:t + H, l:l + W] = x
    ho = (H + t + bo - kh) // strides[0] + 1
    wo = (W + l + r - kw) // strides[1] + 1
    out = np.zeros((n, ho, wo, co))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * strides[0]:i * strides[0] + kh, j * strides[1]:j * strides[1] + kw]
            out[:, i, j] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
    return out + (0 if b is None else b)


def same_pads(H, W, k, s):
    return (*tf_same_pads(H, k[0], s[0]), *tf_same_pads(W, k[1], s[1]))


def ref_pool(x, k, s, pads, op):
    """Direct loops; padding never counts (max: -inf, average: not in the count)."""
    n, H, W, C = x.shape
    t, b, l, r = pads
    ho, wo = (H + t + b - k[0]) // s[0] + 1, (W + l + r - k[1]) // s[1] + 1
    out = np.zeros((n, ho, wo, C))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s[0] - t, j * s[1] - l
            win = x[:, max(r0, 0):min(r0 + k[0], H), max(c0, 0):min(c0 + k[1], W)]
            out[:, i, j] = win.max(axis=(1, 2)) if op == "max" else win.mean(axis=(1, 2))
    return out


def random_layers(rng):
    """One instance of every layer type of this module, with a NumPy reference each."""
    out = []
    for (H, W, C), k, s, pad in [((7, 6, 2), (3, 3), (1, 1), "same"), ((7, 7, 3), (4, 4), (2, 2), "same"),
                                 ((8, 5, 2), (3, 2), (3, 2), "valid"), ((6, 6, 1), (2, 3), (2, 1), (1, 0, 2, 1)),
                                 ((5, 5, 2), (5, 5), (1, 1), "same")]:
        k_ = rng.normal(size=(*k, C, 3)).astype(np.float32)
        b_ = rng.normal(size=3).astype(np.float32)
        pads = pad if not isinstance(pad, str) else (same_pads(H, W, k, s) if pad == "same" else (0, 0, 0, 0))
        layer = Conv2D((H, W, C), k_, b_, s, pad, name=f"conv_{pad}")
        out.append((layer, lambda x, k_=k_, b_=b_, s=s, pads=pads: ref_conv(x, k_, b_, s, pads)))
    Wd = rng.normal(size=(12, 5)).astype(np.float32)
    bd = rng.normal(size=5).astype(np.float32)
    out.append((Dense((12,), Wd, bd), lambda x: x @ Wd + bd))
    out.append((ReLU((4, 3, 2)), lambda x: np.maximum(x, 0)))
    out.append((Flatten((4, 3, 2)), lambda x: x.reshape(len(x), -1)))
    out.append((Reshape((24,), (2, 4, 3)), lambda x: x.reshape(len(x), 2, 4, 3)))
    sc, of = rng.normal(size=3), rng.normal(size=3)
    out.append((Scale((4, 3, 3), sc, of), lambda x: x * sc + of))
    for (H, W, C), k, s, pad in [((6, 6, 2), (2, 2), (2, 2), "valid"), ((7, 5, 2), (3, 3), (2, 2), "same"),
                                 ((5, 6, 1), (2, 3), (1, 2), "same"), ((6, 6, 2), (3, 3), (2, 2), (1, 1, 1, 1))]:
        pads = pad if not isinstance(pad, str) else (same_pads(H, W, k, s) if pad == "same" else (0, 0, 0, 0))
        for cls, op in ((MaxPooling2D, "max"), (AveragePooling2D, "mean")):
            out.append((cls((H, W, C), k, s, pad, name=f"{op}_{pad}"),
                        lambda x, k=k, s=s, pads=pads, op=op: ref_pool(x, k, s, pads, op)))
    out.append((GlobalAveragePooling2D((4, 5, 3)), lambda x: x.mean(axis=(1, 2))))
    out.append((Pad2D((4, 5, 2), (1, 0, 2, -1)),
                lambda x: np.pad(x, ((0, 0), (1, 0), (2, 0), (0, 0)))[:, :, :-1]))
    return out


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def test_every_layer_evaluates_like_its_numpy_reference(rng):
    for layer, ref in random_layers(rng):
        x = rng.normal(size=(3, *layer.in_shape))
        want = ref(x)
        assert want.shape[1:] == layer.out_shape, layer
        got32 = np_(layer.evaluate(ops.convert_to_tensor(x.astype(np.float32))))
        got64 = np_(layer.evaluate(ops.convert_to_tensor(x)))
        np.testing.assert_allclose(got64, want, rtol=1e-10, atol=1e-10, err_msg=repr(layer))
        np.testing.assert_allclose(got32, want, rtol=1e-4, atol=1e-4, err_msg=repr(layer))
        np.testing.assert_allclose(layer.evaluate_numpy(x), want, rtol=1e-10, atol=1e-10, err_msg=repr(layer))
        np.testing.assert_allclose(layer.evaluate(x), want, rtol=1e-10, atol=1e-10, err_msg=repr(layer))  # NumPy side
    a, b = rng.normal(size=(2, 3, 4, 4, 2))
    add = Add([(4, 4, 2), (4, 4, 2)])
    np.testing.assert_allclose(np_(add.evaluate(ops.convert_to_tensor(a), ops.convert_to_tensor(b))), a + b)


def test_pools_match_keras(rng):
    for shape, k, s, pad in [((7, 7, 2), 2, 2, "same"), ((8, 6, 3), 3, 2, "valid"), ((5, 5, 1), 3, 1, "same")]:
        x = rng.random((2, *shape)).astype(np.float32)
        for kl, cls in ((keras.layers.MaxPooling2D(k, s, pad), MaxPooling2D),
                        (keras.layers.AveragePooling2D(k, s, pad), AveragePooling2D)):
            layer = cls(shape, (k, k), (s, s), pad)
            np.testing.assert_allclose(np_(layer.evaluate(ops.convert_to_tensor(x))), np.asarray(kl(x)), atol=1e-6)
    x = rng.random((2, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(np_(GlobalAveragePooling2D((4, 3, 5)).evaluate(ops.convert_to_tensor(x))),
                               np.asarray(keras.layers.GlobalAveragePooling2D()(x)), atol=1e-6)


def test_conv_matches_keras_conv2d_for_strides_and_paddings(rng):
    for shape, k, s, pad in [((9, 8, 2), 3, 2, "same"), ((8, 8, 1), 4, 2, "same"), ((9, 9, 3), 3, 3, "valid"),
                             ((6, 7, 2), (2, 3), (1, 2), "same")]:
        kl = keras.layers.Conv2D(3, k, strides=s, padding=pad)
        x = rng.random((2, *shape)).astype(np.float32)
        want = np.asarray(kl(x))
        layer = Conv2D(shape, np.asarray(kl.kernel), np.asarray(kl.bias), kl.strides, pad)
        np.testing.assert_allclose(np_(layer.evaluate(ops.convert_to_tensor(x))), want, atol=1e-5)


def test_numpy_and_keras_sides_agree(rng):
    """The same layer code on NumPy arrays (exact stage) and on tensors (training, GPU)."""
    for layer, _ in random_layers(rng):
        c = rng.normal(size=(2, *layer.in_shape))
        lo, hi = c - rng.random(c.shape), c + rng.random(c.shape)
        A = rng.normal(size=(2, 3, *layer.out_shape))
        T = ops.convert_to_tensor
        np_side = layer.interval((lo, hi)), layer.backward(A, [(lo, hi)])
        tf_side = layer.interval((T(lo), T(hi))), layer.backward(T(A), [(T(lo), T(hi))])
        assert isinstance(np_side[0][0], np.ndarray) and isinstance(np_side[1][0][0], np.ndarray)
        for a, b in zip(np_side[0], tf_side[0]):
            np.testing.assert_allclose(a, np_(b), rtol=1e-9, atol=1e-9, err_msg=repr(layer))
        np.testing.assert_allclose(np_side[1][0][0], np_(tf_side[1][0][0]), rtol=1e-9, atol=1e-9, err_msg=repr(layer))
        if np_side[1][1] is not None:
            np.testing.assert_allclose(np_side[1][1], np_(tf_side[1][1]), rtol=1e-9, atol=1e-9)


def test_affine_backward_is_the_transpose_and_matrix_is_the_map(rng):
    for layer, _ in random_layers(rng):
        if not layer.affine:
            continue
        x = rng.normal(size=(1, *layer.in_shape))
        a = rng.normal(size=(1, 2, *layer.out_shape))
        lx = np_(layer.linear(ops.convert_to_tensor(x)))
        (ax,), _ = layer.backward(ops.convert_to_tensor(a))
        ax = np_(ax)
        for s in range(2):
            np.testing.assert_allclose(np.sum(lx[0] * a[0, s]), np.sum(x[0] * ax[0, s]), rtol=1e-9, err_msg=repr(layer))
        M = layer.matrix().toarray()
        np.testing.assert_allclose(M @ x.reshape(-1), lx.reshape(-1), rtol=1e-9, atol=1e-9, err_msg=repr(layer))


def _box_samples(rng, lo, hi, n):
    """Random points and random corners of the boxes (lo, hi) of shape (B, *shape)."""
    u = rng.random((n, *lo.shape))
    corners = rng.random((n, *lo.shape)) < 0.5
    pts = np.concatenate([lo + u * (hi - lo), np.where(corners, lo, hi)])
    return pts  # (2n, B, *shape)


def test_every_layer_interval_and_backward_are_sound(rng):
    for layer, _ in random_layers(rng):
        B = 2
        c = rng.normal(size=(B, *layer.in_shape))
        lo, hi = c - rng.random(c.shape), c + rng.random(c.shape)
        ilo, ihi = (np_(t) for t in layer.interval((ops.convert_to_tensor(lo), ops.convert_to_tensor(hi))))
        A = rng.normal(size=(B, 3, *layer.out_shape))
        alpha = rng.random((B, *layer.in_shape)) if isinstance(layer, ReLU) else None
        for al in (None, alpha):
            (ax,), cst = layer.backward(ops.convert_to_tensor(A), [(ops.convert_to_tensor(lo), ops.convert_to_tensor(hi))],
                                        alpha=al)
            ax = np_(ax)
            cst = np.zeros((B, 3)) if cst is None else np_(cst)
            for p in _box_samples(rng, lo, hi, 200):
                out = layer.evaluate_numpy(p)
                assert np.all(out >= ilo - 1e-9) and np.all(out <= ihi + 1e-9), layer
                lhs = (A * out[:, None]).reshape(B, 3, -1).sum(-1)
                rhs = (ax * p[:, None]).reshape(B, 3, -1).sum(-1) + cst
                assert np.all(lhs >= rhs - 1e-9), layer


def test_relu_split_fixes_the_unit_and_alpha_is_clipped(rng):
    layer = ReLU((4,))
    lo, hi = np.array([[-1.0, -1.0, -2.0, 0.5]]), np.array([[2.0, 0.5, 1.0, 1.0]])
    A = np.ones((1, 1, 4))
    split = np.array([[1, -1, 0, 0]])
    (ax,), c = layer.backward(ops.convert_to_tensor(A), [(ops.convert_to_tensor(lo), ops.convert_to_tensor(hi))],
                              alpha=np.full((1, 4), 7.0), split=split)
    np.testing.assert_allclose(np_(ax)[0, 0], [1.0, 0.0, 1.0, 1.0])  # split active, inactive, alpha clipped to 1
    (ax,), c = layer.backward(ops.convert_to_tensor(-A), [(ops.convert_to_tensor(lo), ops.convert_to_tensor(hi))],
                              split=split)
    # upper line of unit 2: u/(u-l) (z - l) = (1/3)(z + 2); split units carry no intercept
    np.testing.assert_allclose(np_(ax)[0, 0], [-1.0, 0.0, -1 / 3, -1.0])
    np.testing.assert_allclose(np_(c)[0, 0], -2 / 3)


# ----------------------------------------------------------------------- networks

from network_cases import pooled_net, residual_net  # noqa: E402


def domain_samples(rng, x0, norm, eps, n, bounds=(0.0, 1.0)):
    """Points of the ball of radius eps in ``norm`` around each x0, intersected with the box:
    uniform-ish interior points and extreme points (vertices of the l1 ball, signs for linf)."""
    B = len(x0)
    d = int(np.prod(x0.shape[1:]))
    pts = []
    for _ in range(n):
        if norm == "linf":
            v = rng.uniform(-1, 1, size=(B, d))
            v = np.where(rng.random((B, d)) < 0.5, np.sign(v), v)
        elif norm == "l2":
            v = rng.normal(size=(B, d))
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            v *= rng.random((B, 1)) ** (1 / d) if rng.random() < 0.5 else 1.0
        else:
            if rng.random() < 0.5:  # a vertex
                v = np.zeros((B, d))
                v[np.arange(B), rng.integers(0, d, B)] = rng.choice([-1.0, 1.0], B)
            else:
                v = rng.laplace(size=(B, d))
                v /= np.abs(v).sum(axis=1, keepdims=True)
        p = x0.reshape(B, d) + eps * v
        pts.append(np.clip(p, *bounds).reshape(x0.shape))  # clipping towards x0 stays in the ball
    return pts


def _pgd_points(net, x0, norm, eps, node, unit_sign, steps=30):
    """Points of the domain pushed to extremes of one node's units (a strong soundness probe)."""
    x0t = tf.constant(x0, tf.float64)
    x = tf.Variable(x0t)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            val = tf.reduce_sum(unit_sign * net.activations(x)[node])
        g = tape.gradient(val, x)
        if norm == "linf":
            step = tf.sign(g) * eps / 8
        elif norm == "l2":
            step = g / (tf.norm(tf.reshape(g, (len(x0), -1)), axis=1)[:, None, None, None] + 1e-12) * eps / 8
        else:
            flat = tf.reshape(g, (len(x0), -1))
            idx = tf.argmax(tf.abs(flat), axis=1)
            step = tf.reshape(tf.one_hot(idx, flat.shape[1], dtype=tf.float64) * tf.sign(flat), g.shape) * eps / 4
        delta = x + step - x0t
        flat = tf.reshape(delta, (len(x0), -1))
        if norm == "linf":
            flat = tf.clip_by_value(flat, -eps, eps)
        elif norm == "l2":
            flat = flat * tf.minimum(1.0, eps / (tf.norm(flat, axis=1, keepdims=True) + 1e-12))
        else:  # scale back into the l1 ball (sound, not a projection)
            flat = flat * tf.minimum(1.0, eps / (tf.reduce_sum(tf.abs(flat), axis=1, keepdims=True) + 1e-12))
        x.assign(tf.clip_by_value(x0t + tf.reshape(flat, x0.shape), 0.0, 1.0))
    return x.numpy()


@pytest.mark.parametrize("make", [residual_net, pooled_net])
@pytest.mark.parametrize("norm,eps", [("linf", 0.08), ("l2", 0.4), ("l1", 1.5)])
def test_network_interval_and_crown_bounds_are_sound(rng, norm, eps, make):
    net = make(rng)
    x0 = rng.random((3, *net.input_shape))
    dom = Domain.ball(x0, norm, eps)
    ib = [tuple(np_(t) for t in b) for b in interval_bounds(net, dom)]
    cb = [tuple(np_(t) for t in b) for b in crown_bounds(net, dom)]
    pts = domain_samples(rng, x0, norm, eps, 150)
    for sign in (1.0, -1.0):
        for node in (net.output, len(net.nodes) - 3, 4):
            pts.append(_pgd_points(net, x0, norm, eps, node, sign))
    for p in pts:
        assert np.all(dom_ok(p, x0, norm, eps))
        acts = net.activations_numpy(p)
        for i, a in enumerate(acts):
            for (lo, hi), what in ((ib[i], "interval"), (cb[i], "crown")):
                assert np.all(a >= lo - 1e-9) and np.all(a <= hi + 1e-9), (what, i, net.nodes[i].name)
    for i in range(len(net.nodes)):
        assert np.all(cb[i][0] >= ib[i][0] - 1e-12) and np.all(cb[i][1] <= ib[i][1] + 1e-12)
    # and the linear pass does real work: much tighter logits than intervals
    w_i, w_c = (ib[-1][1] - ib[-1][0]).mean(), (cb[-1][1] - cb[-1][0]).mean()
    assert w_c < 0.8 * w_i, (w_c, w_i)
    # the keras.ops side gives the same bounds
    cb_t = [tuple(np_(t) for t in b) for b in crown_bounds(net, dom.tensors())]
    for a, b in zip(cb, cb_t):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def dom_ok(p, x0, norm, eps):
    d = (p - x0).reshape(len(p), -1)
    n = {"linf": np.abs(d).max(1), "l2": np.linalg.norm(d, axis=1), "l1": np.abs(d).sum(1)}[norm]
    return (n <= eps * (1 + 1e-9)) & np.all((p >= 0) & (p <= 1), axis=tuple(range(1, p.ndim)))


def test_concretize_is_exact_for_a_linear_function():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(1, 2, 5))
    c = np.array([[0.5, -1.0]])
    x0 = np.full((1, 5), 0.5)
    # box only: the minimum is at a vertex
    dom = Domain.box(x0 - 0.1, x0 + 0.2)
    want = (np.minimum(A * (x0 - 0.1), A * (x0 + 0.2))).sum(-1) + c
    np.testing.assert_allclose(np_(concretize(ops.convert_to_tensor(A), ops.convert_to_tensor(c), dom)), want)
    # l1 ball inside a wide box: the dual (linf) norm bound, A x0 - eps max|A|
    dom = Domain.ball(x0, "l1", 0.3, bounds=(-10, 10))
    want = (A * x0).sum(-1) - 0.3 * np.abs(A).max(-1) + c
    np.testing.assert_allclose(np_(concretize(ops.convert_to_tensor(A), ops.convert_to_tensor(c), dom)), want)
    # l2 ball in a tight box: never looser than either bound
    dom = Domain.ball(x0, "l2", 0.3, bounds=(0.45, 0.55))
    got = np_(concretize(ops.convert_to_tensor(A), ops.convert_to_tensor(c), dom))
    box = (np.minimum(A * 0.45, A * 0.55)).sum(-1) + c
    ball = (A * x0).sum(-1) - 0.3 * np.linalg.norm(A, axis=-1) + c
    np.testing.assert_allclose(got, np.maximum(box, ball))


def test_alpha_is_differentiable_and_optimising_it_tightens_a_sound_bound(rng):
    net = residual_net(rng)
    x0 = rng.random((1, *net.input_shape))
    dom = Domain.ball(x0, "linf", 0.05).tensors()  # tensors: differentiable
    bounds = crown_bounds(net, dom)
    relus = net.layer_nodes("relu")
    C = identity_spec(net.output_shape, 1)
    base, _ = linear_bounds(net, net.output, bounds, dom, C, which="lower")
    alphas = {j: tf.Variable(tf.cast(np_(bounds[net.nodes[j].inputs[0]][1]) > -np_(bounds[net.nodes[j].inputs[0]][0]),
                                     tf.float64)[:, None] * tf.ones((1, net.n_classes, *net.nodes[j].shape), tf.float64))
              for j in relus}
    opt = keras.optimizers.Adam(0.1)
    for _ in range(15):
        with tf.GradientTape() as tape:
            low, _ = linear_bounds(net, net.output, bounds, dom, C, alpha=alphas, which="lower")
            loss = -tf.reduce_sum(low)
        grads = tape.gradient(loss, list(alphas.values()))
        assert all(g is not None for g in grads)
        opt.apply_gradients(zip(grads, list(alphas.values())))
    low = np_(linear_bounds(net, net.output, bounds, dom, C, alpha=alphas, which="lower")[0])
    assert low.sum() > np_(base).sum()
    for p in domain_samples(rng, x0, "linf", 0.05, 100) + [_pgd_points(net, x0, "linf", 0.05, net.output, -1.0)]:
        assert np.all(net.evaluate_numpy(p) >= low - 1e-9)


def test_backward_on_a_graph_sums_the_branches(rng):
    net = residual_net(rng)
    x0 = rng.random((2, *net.input_shape))
    dom = Domain.ball(x0, "linf", 0.0)  # a point: every relu is stable, the linear bound is exact
    bounds = crown_bounds(net, dom)
    A = identity_spec(net.output_shape, 2)
    Ax, c = backward(net, net.output, A, bounds)
    z = np_(ops.sum(Ax * ops.expand_dims(ops.convert_to_tensor(x0), 1), axis=(2, 3, 4)) + c)
    np.testing.assert_allclose(z, net.evaluate_numpy(x0), rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------ Keras reader

def keras_residual(shape=(8, 8, 1), seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape)
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="c2")(a)
    b = keras.layers.ReLU(name="r2")(b)
    s = keras.layers.Add(name="add")([a, b])
    s = keras.layers.Dropout(0.3)(s)
    f = keras.layers.Flatten()(s)
    h = keras.layers.Dense(16, activation="relu")(f)
    out = keras.layers.Dense(5, name="logits")(h)
    return keras.Model(inp, out, name="kres")


def test_from_keras_functional_sequential_and_nested(rng):
    m = keras_residual()
    net = from_keras(m)
    assert net.kinds()["add"] == 1 and not net.is_chain and net.meta["softmax_removed"] is False
    assert any("Dropout" in r for r in net.meta["removed"])
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(net.predict(x), np.asarray(m(x)), atol=1e-5)
    seq = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 2, strides=2), keras.layers.ReLU(),
                            keras.layers.Reshape((27,)), keras.layers.Dense(4)])
    inner = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, padding="same", activation="relu")])
    outer = keras.Sequential([keras.Input((6, 6, 2)), inner, keras.layers.Flatten(), keras.layers.Dense(3)])
    for mm in (seq, outer):
        net = from_keras(mm)
        x = rng.random((3, 6, 6, 2)).astype(np.float32)
        np.testing.assert_allclose(net.predict(x), np.asarray(mm(x)), atol=1e-5)
        assert net.is_chain


def test_from_keras_removes_a_final_softmax(rng, caplog):
    keras.utils.set_random_seed(1)
    base = [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(8, activation="relu")]
    fused = keras.Sequential(base + [keras.layers.Dense(3, activation="softmax")])
    plain = keras.Sequential([keras.Input((4, 4, 1))] + fused.layers[:-1] + [keras.layers.Dense(3)])
    plain.layers[-1].set_weights(fused.layers[-1].get_weights())
    sep = keras.Sequential([keras.Input((4, 4, 1))] + plain.layers + [keras.layers.Softmax()])
    x = rng.random((5, 4, 4, 1)).astype(np.float32)
    for mm in (fused, sep):
        with caplog.at_level("WARNING", logger="robcurves.network"):
            net = from_keras(mm)
        assert net.meta["softmax_removed"] is True
        assert "softmax was removed" in caplog.text
        np.testing.assert_allclose(net.predict(x), np.asarray(plain(x)), atol=1e-5)


@pytest.mark.parametrize("make,name", [
    (lambda: keras.layers.LeakyReLU(name="leaky"), "leaky"),
    (lambda: keras.layers.Conv2D(2, 2, activation="tanh", name="tanhconv"), "tanhconv"),
    (lambda: keras.layers.ReLU(max_value=6.0, name="relu6"), "relu6"),
    (lambda: keras.layers.Conv2D(2, 2, dilation_rate=2, name="dilated"), "dilated"),
    (lambda: keras.layers.Softmax(name="midsoftmax"), "midsoftmax"),
])
def test_from_keras_rejects_by_name(make, name):
    m = keras.Sequential([keras.Input((6, 6, 1)), make(), keras.layers.Conv2D(2, 2), keras.layers.Flatten(),
                          keras.layers.Dense(3)])
    with pytest.raises(UnsupportedLayer, match=f"layer '{name}'") as err:
        from_keras(m)
    assert "supported:" in str(err.value) and "\n" not in str(err.value)


def test_from_keras_refuses_a_network_that_does_not_match(monkeypatch):
    m = keras_residual()
    import robcurves.network.layers as L

    monkeypatch.setattr(L.Add, "evaluate", lambda self, a, b: a - b)  # a wrong Add
    with pytest.raises(ValueError, match="refusing to build a wrong network"):
        from_keras(m)


def test_live_description_trains_with_the_model(rng):
    m = keras_residual()
    net = from_keras(m, live=True)
    x = tf.constant(rng.random((2, 8, 8, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net.evaluate(x) ** 2)
    grads = tape.gradient(loss, m.trainable_variables)
    assert all(g is not None for g in grads)
    m.layers[-1].bias.assign(m.layers[-1].bias + 1.0)  # the description follows the model
    np.testing.assert_allclose(np.asarray(net.evaluate(x)), np.asarray(m(x)), atol=1e-5)


def test_to_keras_round_trips_every_layer(rng, tmp_path):
    for make in (residual_net, pooled_net):
        net = make(rng)
        m = to_keras(net)
        m.save(tmp_path / "m.keras")
        back = keras.models.load_model(tmp_path / "m.keras", compile=False)
        x = rng.random((4, *net.input_shape)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(back(x)), net.predict(x), rtol=1e-5, atol=1e-5)
        again = from_keras(back)
        assert again.kinds() == net.kinds(), (again.kinds(), net.kinds())


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_keras_ops_side_runs_on_every_backend(backend):
    """Logits and bounds on JAX and (when importable) PyTorch equal the NumPy side (TensorFlow,
    the default backend, is what every other test here runs)."""
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    mod = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(mod) is None:
        pytest.skip(f"{mod} is not importable")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": str(root / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(root / "tests" / "network_backend_probe.py")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")][-1][6:])
    assert res["backend"] == backend
    for make in (residual_net, pooled_net):
        net = make(np.random.default_rng(7))
        x = np.random.default_rng(8).random((2, *net.input_shape))
        got = res[make.__name__]
        assert got["dtype"] == "float64"
        np.testing.assert_allclose(got["logits"], net.evaluate_numpy(x), rtol=1e-4, atol=1e-4)
        dom = Domain.ball(x, "l2", 0.3)
        for key, fn in (("interval", interval_bounds), ("crown", crown_bounds)):
            want = fn(net, dom)[-1]
            for g, w in zip(got[key], want):
                # float64 on both sides; 1e-6: the relaxation's discrete choices (argmax of
                # equal lower bounds in a max-pool window) may fall differently on a tie
                np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
