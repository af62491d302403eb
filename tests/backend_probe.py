"""Run under one Keras backend (``KERAS_BACKEND`` set by the caller); print JSON.

``tests/test_backend.py`` starts this once per backend, because Keras fixes its backend
when it is first imported.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    import keras
    from keras import ops

    from robcurves import backend as B

    out: dict = {"backend": B.name()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7)).astype(np.float32)
    w = rng.normal(size=(7,)).astype(np.float32)

    # value_and_grad of a per-row function, with respect to the input and a parameter.
    def rows(xx, ww, unused):
        return ops.sum(ops.square(xx) * ww, axis=1)

    vg = B.value_and_grad(rows, argnums=(0, 1, 2))
    val, (gx, gw, gu) = vg(B.to_tensor(x), B.to_tensor(w), B.to_tensor(np.ones(3, np.float32)))
    out["vg_value"] = B.to_numpy(val).tolist()
    out["vg_gx"] = B.to_numpy(gx).tolist()
    out["vg_gw"] = B.to_numpy(gw).tolist()
    out["vg_unused"] = B.to_numpy(gu).tolist()

    # single argnum, aux output, nested argument
    def with_aux(params, xx):
        a, b = params["a"], params["b"]
        v = ops.sum(xx * a, axis=1) + b
        return v, ops.max(v)

    (v2, aux), g2 = B.value_and_grad(with_aux, argnums=0, has_aux=True)(
        {"a": B.to_tensor(w), "b": B.to_tensor(np.float32(2.0))}, B.to_tensor(x))
    out["aux"] = float(B.to_numpy(aux))
    out["g_nested_a"] = B.to_numpy(g2["a"]).tolist()
    out["g_nested_b"] = float(B.to_numpy(g2["b"]))

    # A compiled loop of gradient steps (fori_loop + value_and_grad inside).
    grad_rows = B.value_and_grad(rows, argnums=0)

    def descend(xx, ww):
        def body(i, z):
            _, g = grad_rows(z, ww, ww)
            return z - 0.1 * g

        return keras.ops.fori_loop(0, 5, body, xx)

    eager = descend(B.to_tensor(x), B.to_tensor(np.abs(w)))
    comp = B.compile(descend)(B.to_tensor(x), B.to_tensor(np.abs(w)))
    out["descend_eager"] = B.to_numpy(eager).tolist()
    out["descend_compiled"] = B.to_numpy(comp).tolist()

    # vjp of x @ A with respect to both
    a = rng.normal(size=(7, 3)).astype(np.float32)
    ct = rng.normal(size=(5, 3)).astype(np.float32)
    y, f = B.vjp(lambda xx, aa: ops.matmul(xx, aa), B.to_tensor(x), B.to_tensor(a))
    gx1, ga1 = f(B.to_tensor(ct))
    gx2, _ = f(B.to_tensor(2 * ct))  # a second call
    out["vjp_y"] = B.to_numpy(y).tolist()
    out["vjp_gx"] = B.to_numpy(gx1).tolist()
    out["vjp_ga"] = B.to_numpy(ga1).tolist()
    out["vjp_gx2"] = B.to_numpy(gx2).tolist()

    # random numbers: eager and compiled, uniform and normal
    seed = B.seed_pair(7, 3)
    out["bits"] = B.to_numpy(B.random_bits((4, 6), seed)).tolist()
    out["bits_compiled"] = B.to_numpy(B.compile(lambda s: B.random_bits((4, 6), s))(B.to_tensor(seed, "int32"))).tolist()
    u = B.to_numpy(B.random_uniform((20000,), seed, -1.0, 3.0))
    out["uniform_head"] = u[:8].tolist()
    out["uniform_stats"] = [float(u.min()), float(u.max()), float(u.mean()), float(u.var())]
    nrm = B.to_numpy(B.random_normal((20000,), seed))
    out["normal_head"] = nrm[:8].tolist()
    out["normal_stats"] = [float(nrm.mean()), float(nrm.var())]
    out["other_seed_bits"] = B.to_numpy(B.random_bits((4, 6), B.seed_pair(8, 3))).tolist()

    # logits_function: a Keras model; a native module / function of the backend
    inp = keras.Input((7,))
    model = keras.Model(inp, keras.layers.Dense(3, use_bias=False)(inp))
    model.layers[-1].set_weights([a])
    out["keras_logits"] = B.to_numpy(B.logits_function(model)(B.to_tensor(x))).tolist()
    if out["backend"] == "torch":
        import torch

        lin = torch.nn.Linear(7, 3, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(a.T.copy()))
        out["native_logits"] = B.to_numpy(B.logits_function(lin)(B.to_tensor(x))).tolist()
    elif out["backend"] == "jax":
        import jax.numpy as jnp

        aj = jnp.asarray(a)
        out["native_logits"] = B.to_numpy(B.logits_function(lambda xx: xx @ aj)(B.to_tensor(x))).tolist()
    out["tf_imported"] = "tensorflow" in sys.modules
    print("PROBE " + json.dumps(out))


if __name__ == "__main__":
    main()
