"""Run the attack under one Keras backend (``KERAS_BACKEND`` set by the caller); print JSON.

``python tests/attack_probe.py CASE.npz`` builds a Flatten-Dense-ReLU-Dense model from
the weights in ``CASE.npz`` (``w1, b1, w2, b2``), attacks its points (``x``, ``y``) in
every norm with the default preset and with a randomised PGD, and prints the verified
distances. With ``native=1`` in the case file the model is the backend's own (a PyTorch
``nn.Module`` under torch, a plain JAX function under jax) instead of a Keras model.
``tests/test_attack_backends.py`` compares the backends' answers.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def keras_model(w1, b1, w2, b2, shape):
    import keras

    inp = keras.Input(shape)
    d1 = keras.layers.Dense(w1.shape[1], activation="relu")
    d2 = keras.layers.Dense(w2.shape[1])
    model = keras.Model(inp, d2(d1(keras.layers.Flatten()(inp))))
    d1.set_weights([w1, b1])
    d2.set_weights([w2, b2])
    return model


def native_model(w1, b1, w2, b2, backend):
    if backend == "torch":
        import torch

        class MLP(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.l1 = torch.nn.Linear(w1.shape[0], w1.shape[1])
                self.l2 = torch.nn.Linear(w2.shape[0], w2.shape[1])
                with torch.no_grad():
                    self.l1.weight.copy_(torch.from_numpy(w1.T.copy()))
                    self.l1.bias.copy_(torch.from_numpy(b1))
                    self.l2.weight.copy_(torch.from_numpy(w2.T.copy()))
                    self.l2.bias.copy_(torch.from_numpy(b2))

            def forward(self, x):
                return self.l2(torch.relu(self.l1(x.reshape(x.shape[0], -1))))

        return MLP()
    import jax.numpy as jnp

    W1, B1, W2, B2 = map(jnp.asarray, (w1, b1, w2, b2))
    return lambda x: jnp.maximum(x.reshape(x.shape[0], -1) @ W1 + B1, 0.0) @ W2 + B2


def compiled_shapes() -> dict:
    """Under JAX: how many programs each compiled attack function holds (one per input
    shape; the engine pads batches to powers of two, so that a shrinking batch reuses a
    few). Empty under the other backends."""
    from robcurves.attacks import engine

    out = {}
    for _, cache in engine._BOUND:
        for key, fn in cache.items():
            sub = getattr(fn, "_cache", None)
            for k2, f2 in ((sub or {}).items() if isinstance(sub, dict) else []):
                if hasattr(f2, "_cache_size"):
                    out[repr(k2)] = int(f2._cache_size())
    return out


def main(path: str) -> None:
    from robcurves import backend as B
    from robcurves.attacks import minimal_perturbations

    f = np.load(path)
    x, y = f["x"].astype(np.float32), f["y"].astype(np.int64)
    w = [f[k].astype(np.float32) for k in ("w1", "b1", "w2", "b2")]
    native = bool(int(f["native"])) if "native" in f.files else False
    model = native_model(*w, B.name()) if native else keras_model(*w, x.shape[1:])
    out = {"backend": B.name(), "native": native}
    for norm in ("linf", "l2", "l1"):
        r = minimal_perturbations(model, x, y, norm, progress=False)
        out[norm] = r.distances.tolist()
        out[norm + "_status"] = r.status.tolist()
    rnd = minimal_perturbations(model, x, y, "l2", progress=False, seed=5,
                                methods=[{"name": "pgd_bisection", "restarts": 3, "steps": 10, "bisection_steps": 4}])
    out["pgd_restarts_l2"] = rnd.distances.tolist()
    out["tf_imported"] = "tensorflow" in sys.modules
    out["compiled_shapes"] = compiled_shapes()
    print("PROBE " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
