"""Two small networks of every layer type, for the network tests and the backend probe."""

import numpy as np

from robcurves.network import (
    Add, AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D, MaxPooling2D, Network, ReLU, Scale,
)


def residual_net(rng, shape=(6, 6, 2), n_classes=4):
    """conv -> relu -> conv -> add (residual) -> relu -> conv stride 2 -> relu -> flatten -> dense -> relu -> dense."""
    H, W, C = shape
    k = lambda *s: rng.normal(size=s).astype(np.float32) * 0.6  # noqa: E731
    c1 = Conv2D(shape, k(3, 3, C, 4), k(4), (1, 1), "same", name="c1")
    r1 = ReLU(c1.out_shape, name="r1")
    c2 = Conv2D(r1.out_shape, k(3, 3, 4, 4), k(4), (1, 1), "same", name="c2")
    add = Add([c2.out_shape, c1.out_shape], name="add")
    r2 = ReLU(add.out_shape, name="r2")
    c3 = Conv2D(r2.out_shape, k(2, 2, 4, 3), k(3), (2, 2), "valid", name="c3")
    r3 = ReLU(c3.out_shape, name="r3")
    fl = Flatten(r3.out_shape)
    d1 = Dense(fl.out_shape, k(fl.out_shape[0], 8), k(8), name="d1")
    r4 = ReLU(d1.out_shape, name="r4")
    d2 = Dense(r4.out_shape, k(8, n_classes), k(n_classes), name="logits")
    return Network(shape, [(c1, [0]), (r1, [1]), (c2, [2]), (add, [3, 1]), (r2, [4]), (c3, [5]), (r3, [6]),
                           (fl, [7]), (d1, [8]), (r4, [9]), (d2, [10])], name="residual")


def pooled_net(rng, shape=(8, 8, 2), n_classes=3):
    """scale (normalisation) -> conv -> relu -> maxpool -> conv -> add(avgpool skip) -> relu -> GAP -> dense."""
    k = lambda *s: rng.normal(size=s).astype(np.float32) * 0.6  # noqa: E731
    sc = Scale(shape, rng.uniform(0.5, 2, size=2), rng.normal(size=2) * 0.3, name="norm")
    c1 = Conv2D(shape, k(3, 3, 2, 4), k(4), (1, 1), "same", name="c1")
    r1 = ReLU(c1.out_shape, name="r1")
    mp = MaxPooling2D(r1.out_shape, (2, 2), (2, 2), "valid", name="mp")
    c2 = Conv2D(mp.out_shape, k(3, 3, 4, 4), k(4), (1, 1), "same", name="c2")
    ap = AveragePooling2D(r1.out_shape, (3, 3), (2, 2), "same", name="ap")
    add = Add([c2.out_shape, ap.out_shape], name="add")
    r2 = ReLU(add.out_shape, name="r2")
    gap = GlobalAveragePooling2D(r2.out_shape, name="gap")
    d = Dense(gap.out_shape, k(4, n_classes), k(n_classes), name="logits")
    return Network(shape, [(sc, [0]), (c1, [1]), (r1, [2]), (mp, [3]), (c2, [4]), (ap, [3]), (add, [5, 6]),
                           (r2, [7]), (gap, [8]), (d, [9])], name="pooled")


def random_relu_mlp(n_in: int, hidden: tuple[int, ...], n_out: int, seed: int, in_shape=None):
    """A Keras Flatten -> (Dense -> ReLU)* -> Dense model with seeded random float32 weights
    (He-like scale, biases N(0, 0.1)): the small exact-stage test networks."""
    import keras

    rng = np.random.default_rng(seed)
    inp = keras.Input(in_shape or (1, 1, n_in))
    h = keras.layers.Flatten()(inp)
    for i, width in enumerate(hidden):
        h = keras.layers.Dense(width, name=f"d{i}")(h)
        h = keras.layers.ReLU(name=f"r{i}")(h)
    out = keras.layers.Dense(n_out, name="logits")(h)
    m = keras.Model(inp, out)
    for layer in m.layers:
        if isinstance(layer, keras.layers.Dense):
            k, b = layer.get_weights()
            layer.set_weights([rng.normal(0, 1 / np.sqrt(k.shape[0]), k.shape).astype(np.float32),
                               rng.normal(0, 0.1, b.shape).astype(np.float32)])
    return m
